//! Joining worker nodes (`flotilla agent`), k3s style.
//!
//! On first start the server writes a join token to `<data-dir>/token` (mode 0600) in
//! k3s's format `K10<sha256 hex of the cluster CA certificate PEM>::server:<secret>`;
//! it stays the same across restarts (`--token` chooses the secret). The API server:
//!
//! * authenticates the secret as a bearer token of [`BOOTSTRAP_USER`] in the group
//!   [`BOOTSTRAP_GROUP`] (upstream's bootstrap-token identity), allowed by the
//!   `AllowAuthenticated` authorizer;
//! * serves the cluster CA certificate anonymously at `GET /cacerts`, so an agent can
//!   fetch it over an unverified connection and pin it against the hash in the token;
//! * at `GET /v1-flotilla/client-kubelet?nodeName=N` gives a caller of the bootstrap
//!   group (or `system:masters`) a client certificate for `system:node:N` in group
//!   `system:nodes`, signed by the cluster CA — the node's own identity (k3s's
//!   `/v1-k3s/client-kubelet.crt`).

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::auth::UserInfo;

/// The k3s token prefix (token format version 10).
pub const TOKEN_PREFIX: &str = "K10";
/// The user a join secret authenticates as.
pub const BOOTSTRAP_USER: &str = "system:bootstrap:node-join";
/// The group of [`BOOTSTRAP_USER`]: may obtain node credentials.
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers";
/// The path serving the cluster CA certificate (anonymous).
pub const CACERTS_PATH: &str = "/cacerts";
/// The path issuing a node's client certificate.
pub const NODE_CREDENTIALS_PATH: &str = "/v1-flotilla/client-kubelet";
/// Group of node identities (`system:node:<name>`).
pub const NODES_GROUP: &str = "system:nodes";

/// A join token as given to an agent: the secret, and the CA hash when it is a full
/// `K10…` token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    /// Lower-case hex SHA-256 of the cluster CA certificate PEM.
    pub ca_hash: Option<String>,
    /// The bearer secret.
    pub secret: String,
}

impl JoinToken {
    /// Parses a full token (`K10<hash>::<user>:<secret>`) or a bare secret.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the token is empty".into());
        }
        if let Some(rest) = text.strip_prefix(TOKEN_PREFIX)
            && let Some((hash, creds)) = rest.split_once("::")
        {
            let hash = hash.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "token {TOKEN_PREFIX}…: the CA hash must be 64 hex digits (sha256)"
                ));
            }
            let secret = match creds.split_once(':') {
                Some((_user, secret)) => secret,
                None => creds,
            };
            check_secret(secret)?;
            return Ok(JoinToken {
                ca_hash: Some(hash),
                secret: secret.to_string(),
            });
        }
        check_secret(text)?;
        Ok(JoinToken {
            ca_hash: None,
            secret: text.to_string(),
        })
    }

    /// The full token for a CA certificate PEM.
    pub fn full(ca_pem: &[u8], secret: &str) -> String {
        format!("{TOKEN_PREFIX}{}::server:{secret}", ca_hash(ca_pem))
    }
}

fn check_secret(secret: &str) -> Result<(), String> {
    if secret.is_empty() {
        return Err("the token's secret is empty".into());
    }
    if secret
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ',')
    {
        return Err(
            "the token's secret must not contain spaces, commas or control characters".into(),
        );
    }
    Ok(())
}

/// Lower-case hex SHA-256 of a CA certificate PEM, as in k3s tokens.
pub fn ca_hash(ca_pem: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(ca_pem))
}

/// Where the join token lives.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("token")
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("join token {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("join token {where_}: {why}")]
    Invalid { where_: String, why: String },
}

/// Makes sure `<data-dir>/token` holds the cluster's join token and returns its
/// secret: `chosen` (`--token`, a secret or a full token of this cluster) if given,
/// else the one already written, else a new random one.
pub fn ensure_token(
    data_dir: &Path,
    ca_pem: &[u8],
    chosen: Option<&str>,
) -> Result<String, TokenError> {
    let path = token_path(data_dir);
    let hash = ca_hash(ca_pem);
    let check = |t: JoinToken, where_: &str| -> Result<String, TokenError> {
        if let Some(h) = &t.ca_hash
            && *h != hash
        {
            return Err(TokenError::Invalid {
                where_: where_.to_string(),
                why: "its CA hash is not this cluster's CA (a token of another cluster?)".into(),
            });
        }
        Ok(t.secret)
    };
    let secret = match chosen {
        Some(c) => check(
            JoinToken::parse(c).map_err(|why| TokenError::Invalid {
                where_: "--token".into(),
                why,
            })?,
            "--token",
        )?,
        None => match std::fs::read_to_string(&path) {
            Ok(text) => {
                let where_ = path.display().to_string();
                check(
                    JoinToken::parse(&text).map_err(|why| TokenError::Invalid {
                        where_: where_.clone(),
                        why,
                    })?,
                    &where_,
                )?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut b = [0u8; 16];
                rand::Rng::fill(&mut rand::rng(), &mut b);
                hex::encode(b)
            }
            Err(source) => return Err(TokenError::Io { path, source }),
        },
    };
    let full = JoinToken::full(ca_pem, &secret);
    if std::fs::read_to_string(&path)
        .ok()
        .as_deref()
        .map(str::trim)
        != Some(full.as_str())
    {
        write_private(&path, &format!("{full}\n"))
            .map_err(|source| TokenError::Io { path, source })?;
    }
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The identity a join secret authenticates as.
pub fn bootstrap_user() -> UserInfo {
    UserInfo {
        name: BOOTSTRAP_USER.into(),
        uid: String::new(),
        groups: vec![BOOTSTRAP_GROUP.into(), "system:authenticated".into()],
    }
}

/// Whether `user` may obtain node credentials.
pub fn may_join(user: &UserInfo) -> bool {
    user.groups
        .iter()
        .any(|g| g == BOOTSTRAP_GROUP || g == "system:masters")
}

/// A node's credentials, as `GET /v1-flotilla/client-kubelet` returns them (JSON).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    /// The user name in the certificate (`system:node:<name>`).
    pub user: String,
    /// Client certificate PEM.
    pub certificate: String,
    /// Its private key PEM.
    pub key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_bare_tokens() {
        let full = JoinToken::full(b"pem", "s3cret");
        assert!(full.starts_with("K10") && full.ends_with("::server:s3cret"));
        let t = JoinToken::parse(&full).unwrap();
        assert_eq!(t.secret, "s3cret");
        assert_eq!(t.ca_hash.as_deref(), Some(ca_hash(b"pem").as_str()));
        assert_eq!(
            JoinToken::parse(" bare \n").unwrap(),
            JoinToken {
                ca_hash: None,
                secret: "bare".into()
            }
        );
        assert!(JoinToken::parse("K10abc::server:x").is_err());
        assert!(JoinToken::parse("").is_err());
        assert!(JoinToken::parse("a b").is_err());
        assert!(JoinToken::parse(&format!("K10{}::server:", "0".repeat(64))).is_err());
    }

    #[test]
    fn token_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s1 = ensure_token(dir.path(), b"ca", None).unwrap();
        let path = token_path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), JoinToken::full(b"ca", &s1));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(s1.len(), 32);
        // A restart keeps it.
        assert_eq!(ensure_token(dir.path(), b"ca", None).unwrap(), s1);
        // A chosen secret replaces it; a full token of this CA is accepted too.
        assert_eq!(
            ensure_token(dir.path(), b"ca", Some("mine")).unwrap(),
            "mine"
        );
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("::server:mine\n")
        );
        let full = JoinToken::full(b"ca", "other");
        assert_eq!(
            ensure_token(dir.path(), b"ca", Some(&full)).unwrap(),
            "other"
        );
        // A full token of another CA is refused.
        let foreign = JoinToken::full(b"another ca", "x");
        assert!(ensure_token(dir.path(), b"ca", Some(&foreign)).is_err());
    }
}
