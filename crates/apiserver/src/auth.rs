//! Authentication and authorization.
//!
//! Requests are authenticated by a client certificate signed by the cluster CA (user =
//! CN, groups = O) or by a bearer token from a static token file (upstream's CSV format
//! `token,user,uid,"group1,group2"`), or by a service-account JWT
//! ([`crate::serviceaccount`]). Anonymous requests are refused except on the health
//! endpoints (upstream's `anonymous.conditions` for `/healthz`, `/livez`, `/readyz`) and
//! `/cacerts`. The node join secret (`crate::join`) is a bearer token too.
//! Authorization goes through the [`Authorizer`] trait; the default one allows every
//! authenticated user (RBAC comes with a later issue).

use std::collections::HashMap;
use std::path::Path;

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading token file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("token file {path} line {line}: {why}")]
    Parse {
        path: String,
        line: usize,
        why: String,
    },
}

/// Static bearer tokens (`--token-auth-file`).
#[derive(Clone, Debug, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, why)| TokenFileError::Parse {
            path: path.display().to_string(),
            line,
            why,
        })
    }

    /// Parse upstream's CSV: `token,user,uid[,"group1,group2,..."]`, extra columns ignored.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut tokens = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err((i + 1, "expected at least 3 columns: token,user,uid".into()));
            }
            if fields[0].is_empty() || fields[1].is_empty() {
                return Err((i + 1, "token and user name must not be empty".into()));
            }
            let mut groups: Vec<String> = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            groups.push("system:authenticated".into());
            tokens.insert(
                fields[0].clone(),
                UserInfo {
                    name: fields[1].clone(),
                    uid: fields[2].clone(),
                    groups,
                },
            );
        }
        Ok(TokenFile { tokens })
    }

    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }

    pub fn insert(&mut self, token: String, user: UserInfo) {
        self.tokens.insert(token, user);
    }
}

/// Minimal RFC 4180 field splitting (quoted fields, doubled quotes).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// User from a verified client certificate (DER): CN is the user, each O a group.
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    groups.push("system:authenticated".into());
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
    })
}

/// The attributes an authorizer decides on (upstream's authorizer.Attributes).
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub verb: &'a str,
    pub namespace: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    /// Set for non-resource requests (`/healthz`, `/version`, …).
    pub path: &'a str,
    pub resource_request: bool,
}

pub enum Decision {
    Allow,
    Deny(String),
}

/// Decides whether an authenticated request may proceed.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, attrs: &Attributes<'_>) -> Decision;
}

/// Allows every authenticated user; `system:masters` is always allowed (as upstream).
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, attrs: &Attributes<'_>) -> Decision {
        if attrs
            .user
            .groups
            .iter()
            .any(|g| g == "system:masters" || g == "system:authenticated")
        {
            Decision::Allow
        } else {
            Decision::Deny(format!(
                "User \"{}\" cannot {} resource",
                attrs.user.name, attrs.verb
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_parses_upstream_csv() {
        let tf = TokenFile::parse("t1,alice,u1,\"dev,ops\"\n# comment\n\nt2,bob,u2\n").unwrap();
        let a = tf.authenticate("t1").unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(
            tf.authenticate("t2").unwrap().groups,
            vec!["system:authenticated"]
        );
        assert!(tf.authenticate("nope").is_none());
        assert!(TokenFile::parse("onlytoken\n").is_err());
    }
}
