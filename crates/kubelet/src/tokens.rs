//! The kubelet's service-account token manager (upstream `pkg/kubelet/token`): tokens
//! for `serviceAccountToken` projections are requested through the TokenRequest API
//! (`serviceaccounts/<name>/token`), bound to the pod, with the projection's audience
//! and expiration, cached, and requested anew once 80% of their lifetime has passed
//! (less a small jitter) or they are older than 24 hours.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// Tokens older than this are refreshed whatever their lifetime (upstream `maxTTL`).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Upper bound of the random early refresh (upstream `maxJitter`).
pub const MAX_JITTER: Duration = Duration::from_secs(10);

/// What identifies a token: service account, audience, lifetime and bound pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub namespace: String,
    pub service_account: String,
    pub audience: String,
    pub expiration_seconds: i64,
    pub pod_name: String,
    pub pod_uid: String,
}

#[derive(Clone, Debug)]
struct Cached {
    token: String,
    issued: Timestamp,
    expires: Timestamp,
}

/// Whether a token issued at `issued` and expiring at `expires` must be requested
/// again at `now` (`jitter` makes refreshes of many pods spread out).
pub fn requires_refresh(
    issued: Timestamp,
    expires: Timestamp,
    now: Timestamp,
    jitter: Duration,
) -> bool {
    if now >= expires {
        return true;
    }
    let Ok(age) = Duration::try_from(now.duration_since(issued)) else {
        return false;
    };
    if age >= MAX_TTL {
        return true;
    }
    let ttl = Duration::try_from(expires.duration_since(issued)).unwrap_or_default();
    age + jitter >= ttl.mul_f64(0.8)
}

/// Caches tokens per [`TokenKey`] and asks the API server for new ones when due.
#[derive(Default)]
pub struct TokenManager {
    cache: Mutex<HashMap<TokenKey, Cached>>,
}

impl TokenManager {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token for `key`, from the cache while it is fresh, else from the API.
    pub async fn token(&self, client: &kube::Client, key: &TokenKey) -> Result<String, String> {
        let now = Timestamp::now();
        let jitter = MAX_JITTER.mul_f64(rand_fraction());
        if let Some(c) = self.lock().get(key)
            && !requires_refresh(c.issued, c.expires, now, jitter)
        {
            return Ok(c.token.clone());
        }
        match request(client, key).await {
            Ok((token, expires)) => {
                self.lock().insert(
                    key.clone(),
                    Cached {
                        token: token.clone(),
                        issued: now,
                        expires,
                    },
                );
                Ok(token)
            }
            // A still-valid cached token is better than none (upstream does the same).
            Err(e) => match self.lock().get(key) {
                Some(c) if now < c.expires => {
                    tracing::warn!(
                        "refreshing the token of {}/{} failed, keeping the old one: {e}",
                        key.namespace,
                        key.service_account
                    );
                    Ok(c.token.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Forget the tokens bound to a pod that is gone.
    pub fn forget_pod(&self, pod_uid: &str) {
        self.lock().retain(|k, _| k.pod_uid != pod_uid);
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn rand_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() % 1000) as f64 / 1000.0
}

async fn request(client: &kube::Client, key: &TokenKey) -> Result<(String, Timestamp), String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &key.namespace);
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if key.audience.is_empty() {
                Vec::new()
            } else {
                vec![key.audience.clone()]
            },
            expiration_seconds: Some(key.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(key.pod_name.clone()),
                uid: Some(key.pod_uid.clone()),
            }),
        },
        ..Default::default()
    };
    let out: TokenRequest = api
        .create_subresource("token", &key.service_account, &PostParams::default(), &tr)
        .await
        .map_err(|e| {
            format!(
                "failed to fetch token for service account {}/{}: {e}",
                key.namespace, key.service_account
            )
        })?;
    let status = out
        .status
        .ok_or_else(|| "TokenRequest returned no status".to_string())?;
    if status.token.is_empty() {
        return Err("TokenRequest returned an empty token".into());
    }
    Ok((status.token, status.expiration_timestamp.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_eighty_percent_or_a_day() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| Timestamp::from_second(1_000_000 + s).unwrap();
        let hour = at(3600);
        // 3600 s token: fresh until 2880 s (80%), due from then on.
        assert!(!requires_refresh(t0, hour, at(0), Duration::ZERO));
        assert!(!requires_refresh(t0, hour, at(2879), Duration::ZERO));
        assert!(requires_refresh(t0, hour, at(2880), Duration::ZERO));
        // Jitter brings it forward.
        assert!(requires_refresh(
            t0,
            hour,
            at(2875),
            Duration::from_secs(10)
        ));
        // Expired.
        assert!(requires_refresh(t0, hour, at(4000), Duration::ZERO));
        // A year-long token is refreshed after 24 h.
        let year = at(365 * 86400);
        assert!(!requires_refresh(t0, year, at(86399), Duration::ZERO));
        assert!(requires_refresh(t0, year, at(86400), Duration::ZERO));
    }
}
