//! Image references, normalised like Docker and containerd do
//! (`busybox` → `docker.io/library/busybox:latest`).

use std::fmt;
use std::str::FromStr;

/// Errors of reference parsing.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The text is not a valid image reference.
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid {
        /// What the caller gave.
        input: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A parsed, normalised image reference: registry, repository, and a tag and/or digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    inner: oci_client::Reference,
}

impl ImageRef {
    /// Parses `s` like `docker pull` does. Rejects empty strings, upper-case repository
    /// names, bad tags and malformed digests.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let invalid = |reason: String| ReferenceError::Invalid {
            input: s.to_string(),
            reason,
        };
        if s.trim().is_empty() {
            return Err(invalid("empty reference".into()));
        }
        if s != s.trim() || s.chars().any(char::is_whitespace) {
            return Err(invalid("contains whitespace".into()));
        }
        let inner = oci_client::Reference::from_str(s).map_err(|e| invalid(e.to_string()))?;
        if let Some(d) = inner.digest() {
            crate::content::Digest::parse(d).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(Self { inner })
    }

    /// The registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The repository path, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The tag, if any (`latest` is filled in when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// The canonical full name, e.g. `docker.io/library/busybox:latest`.
    pub fn canonical(&self) -> String {
        self.inner.whole()
    }

    /// The same repository pinned to `digest`.
    pub(crate) fn with_digest(&self, digest: &str) -> oci_client::Reference {
        oci_client::Reference::with_digest(
            self.registry().to_string(),
            self.repository().to_string(),
            digest.to_string(),
        )
    }

    pub(crate) fn oci(&self) -> &oci_client::Reference {
        &self.inner
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({})", self.canonical())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("user/app:v1", "docker.io/user/app:v1"),
            ("index.docker.io/user/app", "docker.io/user/app:latest"),
            ("127.0.0.1:5000/x/y:tag", "127.0.0.1:5000/x/y:tag"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("quay.io/a/b/c:1", "quay.io/a/b/c:1"),
        ];
        for (input, want) in cases {
            let r = ImageRef::parse(input).unwrap();
            assert_eq!(r.canonical(), want, "{input}");
        }
        let r = ImageRef::parse("127.0.0.1:5000/x/y:tag").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "x/y");
        assert_eq!(r.tag(), Some("tag"));
    }

    #[test]
    fn digest_references() {
        let r = ImageRef::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.canonical(), format!("docker.io/library/busybox@{D}"));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/x:t@{D}")).unwrap();
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.digest(), Some(D));
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "  ",
            "Busybox",
            "busybox:",
            "busybox@sha256:xyz",
            "busybox@sha256:0123",
            "a b",
            "busybox:tag with space",
            "/busybox",
            "busybox//x",
            "host:5000/",
            ":tag",
        ] {
            let err = ImageRef::parse(bad).expect_err(bad);
            assert!(
                err.to_string().starts_with("invalid image reference"),
                "{bad}: {err}"
            );
        }
    }
}
