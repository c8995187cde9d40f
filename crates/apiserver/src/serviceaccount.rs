//! Service-account tokens, as upstream's: the TokenRequest subresource
//! (`serviceaccounts/<name>/token`, authentication.k8s.io/v1), the bearer-token
//! authenticator for the JWTs it issues, and the ServiceAccount admission step on pod
//! creation (default `spec.serviceAccountName`, the `kube-api-access-<suffix>` projected
//! volume mounted at `/var/run/secrets/kubernetes.io/serviceaccount`).
//!
//! Tokens are ES256 JWTs signed with `<pki>/sa.key` (generated on first start, see
//! [`crate::pki`]); the issuer and the API audience are
//! `https://kubernetes.default.svc.cluster.local` (kubeadm's `--service-account-issuer`).
//! Claims follow upstream (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`, and the
//! private `kubernetes.io` claim naming the namespace, service account and the bound
//! pod/secret/node). A token is accepted while it is unexpired, names one of the API
//! audiences, and its service account (and bound object) still exists with the same uid.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::errors::{ApiError, ApiResult};
use crate::pki::Pki;
use crate::server::ApiServer;

/// The issuer (and default audience) of service-account tokens.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Default and minimum `spec.expirationSeconds` of a TokenRequest (upstream).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The token lifetime the ServiceAccount admission asks the kubelet for.
pub const ADMISSION_TOKEN_SECONDS: i64 = 3607;
/// Where the admission mounts the token volume.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap the root-CA publisher keeps in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// A reference inside the `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default)]
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
}

/// The claims of a service-account token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

/// `system:serviceaccount:<ns>:<name>`.
pub fn user_name(ns: &str, name: &str) -> String {
    format!("system:serviceaccount:{ns}:{name}")
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Signs and verifies service-account tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    pub issuer: String,
    /// The API server's audiences (`--api-audiences`, default the issuer).
    pub audiences: Vec<String>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenIssuer {
    /// From PEM keys: a PKCS#8 EC P-256 private key and its SPKI public key.
    pub fn from_pem(private: &[u8], public: &[u8]) -> Result<Self, String> {
        use base64::Engine;
        use sha2::Digest;
        let encoding = EncodingKey::from_ec_pem(private).map_err(|e| format!("sa.key: {e}"))?;
        let decoding = DecodingKey::from_ec_pem(public).map_err(|e| format!("sa.pub: {e}"))?;
        // Upstream's key id: base64url(sha256(DER of the public key)).
        let der = rustls_pemfile::read_one_from_slice(public)
            .ok()
            .flatten()
            .and_then(|(item, _)| match item {
                rustls_pemfile::Item::SubjectPublicKeyInfo(spki) => Some(spki.as_ref().to_vec()),
                _ => None,
            })
            .unwrap_or_else(|| public.to_vec());
        let kid =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
        Ok(TokenIssuer {
            encoding,
            decoding,
            kid,
            issuer: DEFAULT_ISSUER.into(),
            audiences: vec![DEFAULT_ISSUER.into()],
        })
    }

    /// The keys in the cluster PKI directory.
    pub fn load(pki: &Pki) -> Result<Self, String> {
        let private = std::fs::read(&pki.sa_key)
            .map_err(|e| format!("reading {}: {e}", pki.sa_key.display()))?;
        let public = std::fs::read(&pki.sa_pub)
            .map_err(|e| format!("reading {}: {e}", pki.sa_pub.display()))?;
        Self::from_pem(&private, &public)
    }

    /// Claims for a token issued now, valid for `seconds`.
    pub fn claims(
        &self,
        audiences: Vec<String>,
        seconds: i64,
        kubernetes: KubernetesClaim,
        now: i64,
    ) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            sub: user_name(&kubernetes.namespace, &kubernetes.serviceaccount.name),
            aud: audiences,
            exp: now + seconds,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes,
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// Check signature, issuer, time (60 s leeway, as upstream's go-jose) and audience.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[self.issuer.as_str()]);
        v.set_audience(&self.audiences);
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }
}

/// Whether a bearer token looks like a JWT signed by us (cheap pre-check).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

async fn object(server: &ApiServer, plural: &str, ns: &str, name: &str) -> Option<Value> {
    let info = server.resource("", "v1", plural)?;
    let key = crate::registry::object_key(&info, ns, name);
    server.cache.get(&key).await.map(|o| o.value())
}

fn uid_of(v: &Value) -> &str {
    v["metadata"]["uid"].as_str().unwrap_or("")
}

/// Authenticate a service-account JWT: signature, time, audience, then the service
/// account and bound objects must still exist with the uids the token names.
pub async fn authenticate(server: &ApiServer, token: &str) -> Result<UserInfo, String> {
    let issuer = server
        .sa_tokens
        .as_ref()
        .ok_or("service-account tokens are not configured")?;
    let c = issuer.verify(token)?;
    let k = &c.kubernetes;
    let ns = k.namespace.as_str();
    let sa_name = k.serviceaccount.name.as_str();
    if ns.is_empty() || sa_name.is_empty() || c.sub != user_name(ns, sa_name) {
        return Err("token does not name a service account".into());
    }
    let sa = object(server, "serviceaccounts", ns, sa_name)
        .await
        .ok_or_else(|| format!("service account {ns}/{sa_name} has been deleted"))?;
    if !k.serviceaccount.uid.is_empty() && uid_of(&sa) != k.serviceaccount.uid {
        return Err(format!(
            "service account UID ({}) does not match claim ({})",
            uid_of(&sa),
            k.serviceaccount.uid
        ));
    }
    let now = chrono::Utc::now();
    for (plural, r) in [("pods", &k.pod), ("secrets", &k.secret)] {
        let Some(r) = r else { continue };
        let obj = object(server, plural, ns, &r.name)
            .await
            .ok_or_else(|| format!("{plural} {ns}/{} has been deleted", r.name))?;
        if uid_of(&obj) != r.uid {
            return Err(format!(
                "{plural} {ns}/{} UID ({}) does not match claim ({})",
                r.name,
                uid_of(&obj),
                r.uid
            ));
        }
        if let Some(ts) = obj["metadata"]["deletionTimestamp"].as_str()
            && chrono::DateTime::parse_from_rfc3339(ts).is_ok_and(|t| t < now)
        {
            return Err(format!("{plural} {ns}/{} is being deleted", r.name));
        }
    }
    Ok(UserInfo {
        name: c.sub.clone(),
        uid: uid_of(&sa).to_string(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    })
}

fn invalid(name: &str, field: &str, reason: &str, msg: String) -> ApiError {
    ApiError::invalid(
        "TokenRequest",
        "authentication.k8s.io",
        name,
        vec![(reason.into(), msg, field.into())],
    )
}

/// POST `serviceaccounts/<name>/token`: issue a TokenRequest.
pub async fn token_request(
    server: &ApiServer,
    ns: &str,
    name: &str,
    body: Value,
    dry_run: bool,
) -> ApiResult<Value> {
    if let Some(k) = body["kind"].as_str().filter(|k| !k.is_empty())
        && k != "TokenRequest"
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind (TokenRequest)"
        )));
    }
    let issuer = server
        .sa_tokens
        .as_ref()
        .ok_or_else(|| ApiError::internal("service-account token signing is not configured"))?;
    let sa = object(server, "serviceaccounts", ns, name)
        .await
        .ok_or_else(|| ApiError::not_found("serviceaccounts", "", name))?;
    let spec = &body["spec"];
    let mut audiences: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = issuer.audiences.clone();
    }
    let seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        v => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    if seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            "FieldValueInvalid",
            format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
        ));
    }
    if seconds > 1 << 32 {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            "FieldValueTooLong",
            format!(
                "Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let mut claim = KubernetesClaim {
        namespace: ns.into(),
        serviceaccount: Ref {
            name: name.into(),
            uid: uid_of(&sa).into(),
        },
        ..Default::default()
    };
    let bound = &spec["boundObjectRef"];
    if bound.is_object() {
        let kind = bound["kind"].as_str().unwrap_or("");
        let api_version = bound["apiVersion"].as_str().unwrap_or("v1");
        let bname = bound["name"].as_str().unwrap_or("");
        let buid = bound["uid"].as_str().unwrap_or("");
        if bname.is_empty() {
            return Err(invalid(
                name,
                "spec.boundObjectRef.name",
                "FieldValueRequired",
                "Required value".into(),
            ));
        }
        let (plural, obj) = match (api_version, kind) {
            ("v1", "Pod") => {
                let pod = object(server, "pods", ns, bname)
                    .await
                    .ok_or_else(|| ApiError::not_found("pods", "", bname))?;
                let pod_sa = pod["spec"]["serviceAccountName"].as_str().unwrap_or("");
                if pod_sa != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                ("pods", pod)
            }
            ("v1", "Secret") => {
                let secret = object(server, "secrets", ns, bname)
                    .await
                    .ok_or_else(|| ApiError::not_found("secrets", "", bname))?;
                ("secrets", secret)
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {api_version}, Kind={kind}"
                )));
            }
        };
        if !buid.is_empty() && buid != uid_of(&obj) {
            return Err(ApiError::conflict(
                kind,
                "",
                bname,
                &format!(
                    "the UID in the bound object reference ({buid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        let r = Ref {
            name: bname.into(),
            uid: uid_of(&obj).into(),
        };
        if plural == "pods" {
            if let Some(node) = obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                let node_uid = match server.resource("", "v1", "nodes") {
                    Some(info) => server
                        .cache
                        .get(&crate::registry::object_key(&info, "", node))
                        .await
                        .map(|o| uid_of(&o.value()).to_string())
                        .unwrap_or_default(),
                    None => String::new(),
                };
                if !node_uid.is_empty() {
                    claim.node = Some(Ref {
                        name: node.into(),
                        uid: node_uid,
                    });
                }
            }
            claim.pod = Some(r);
        } else {
            claim.secret = Some(r);
        }
    }
    let now = now_secs();
    let claims = issuer.claims(audiences.clone(), seconds, claim, now);
    let token = if dry_run {
        String::new()
    } else {
        issuer.sign(&claims).map_err(ApiError::internal)?
    };
    let expiration = chrono::DateTime::from_timestamp(claims.exp, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut spec_out = json!({"audiences": audiences, "expirationSeconds": seconds});
    if bound.is_object() {
        spec_out["boundObjectRef"] = bound.clone();
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "creationTimestamp": crate::registry::now_rfc3339(),
        },
        "spec": spec_out,
        "status": {"token": token, "expirationTimestamp": expiration},
    }))
}

/// The projected volume the admission adds for the pod's token (upstream's
/// `kube-api-access-<suffix>`).
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": ADMISSION_TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]
        }
    })
}

/// Whether the pod is a kubelet's mirror of a static pod.
pub fn is_mirror_pod(pod: &Value) -> bool {
    pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string()
}

/// ServiceAccount admission of a pod create (upstream `ServiceAccount` plugin): mirror
/// pods may not use service accounts (nor secrets/configMaps/tokens); other pods get
/// `serviceAccountName: default` unless set, the service account must exist (the
/// `default` one is waited for briefly, as upstream, since its controller creates it
/// right after the namespace), and unless `automountServiceAccountToken` is false (on
/// the pod, else on the service account) the token volume is added and mounted
/// read-only in every container and init container that does not mount that path.
pub async fn admit_pod(server: &ApiServer, ns: &str, pod: &mut Value) -> ApiResult<()> {
    let pod_name = pod["metadata"]["name"]
        .as_str()
        .or(pod["metadata"]["generateName"].as_str())
        .unwrap_or("")
        .to_string();
    let forbidden =
        |why: String| ApiError::forbidden(format!("pods \"{pod_name}\" is forbidden: {why}"));
    if is_mirror_pod(pod) {
        if pod["spec"]["serviceAccountName"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            return Err(forbidden(
                "a mirror pod may not reference service accounts".into(),
            ));
        }
        for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            let sources = v["projected"]["sources"].as_array();
            if v["secret"].is_object()
                || sources.is_some_and(|s| {
                    s.iter()
                        .any(|s| s["secret"].is_object() || s["serviceAccountToken"].is_object())
                })
            {
                return Err(forbidden(format!(
                    "a mirror pod may not reference secrets (volume {:?})",
                    v["name"].as_str().unwrap_or("")
                )));
            }
        }
        return Ok(());
    }
    let sa_name = match pod["spec"]["serviceAccountName"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => {
            // Deprecated `serviceAccount` is honoured as upstream's defaulting does.
            let s = pod["spec"]["serviceAccount"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string();
            pod["spec"]["serviceAccountName"] = json!(s);
            s
        }
    };
    if pod["spec"]["serviceAccount"].is_null() {
        pod["spec"]["serviceAccount"] = json!(sa_name);
    }
    let attempts = if sa_name == "default" { 10 } else { 1 };
    let mut sa = None;
    for i in 0..attempts {
        if i > 0 {
            let ms = 100 + rand::random::<u64>() % 100;
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        sa = object(server, "serviceaccounts", ns, &sa_name).await;
        if sa.is_some() {
            break;
        }
    }
    let Some(sa) = sa else {
        return Err(forbidden(format!(
            "error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found"
        )));
    };
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or(sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    // Already mounted at the token path (by the user): leave the pod alone, as upstream.
    let mounts_token = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH))
    };
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let taken = |n: &str| volumes.iter().any(|v| v["name"] == n);
    let mut volume_name = String::new();
    for _ in 0..10 {
        let n = format!("kube-api-access-{}", crate::registry::random_suffix(5));
        if !taken(&n) {
            volume_name = n;
            break;
        }
    }
    if volume_name.is_empty() {
        return Err(ApiError::internal("could not pick a token volume name"));
    }
    let mut used = false;
    for list in ["initContainers", "containers"] {
        let Some(cs) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for c in cs.iter_mut() {
            if mounts_token(c) {
                continue;
            }
            let m = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
            match c["volumeMounts"].as_array_mut() {
                Some(ms) => ms.push(m),
                None => c["volumeMounts"] = json!([m]),
            }
            used = true;
        }
    }
    if used {
        let mut volumes = volumes;
        volumes.push(token_volume(&volume_name));
        pod["spec"]["volumes"] = Value::Array(volumes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let key = rcgen::KeyPair::generate().unwrap();
        TokenIssuer::from_pem(
            key.serialize_pem().as_bytes(),
            key.public_key_pem().as_bytes(),
        )
        .unwrap()
    }

    fn claim() -> KubernetesClaim {
        KubernetesClaim {
            namespace: "ns".into(),
            serviceaccount: Ref {
                name: "default".into(),
                uid: "sa-uid".into(),
            },
            pod: Some(Ref {
                name: "p".into(),
                uid: "pod-uid".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn claims_are_upstream_shaped() {
        let i = issuer();
        let c = i.claims(vec![DEFAULT_ISSUER.into()], 3600, claim(), 1_000_000);
        assert_eq!(c.sub, "system:serviceaccount:ns:default");
        assert_eq!((c.iat, c.nbf, c.exp), (1_000_000, 1_000_000, 1_003_600));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["kubernetes.io"]["namespace"], "ns");
        assert_eq!(v["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(v["kubernetes.io"]["pod"]["name"], "p");
        assert!(v["kubernetes.io"].get("secret").is_none());
        assert_eq!(v["aud"], json!([DEFAULT_ISSUER]));
    }

    #[test]
    fn verify_checks_signature_expiry_and_audience() {
        let i = issuer();
        let now = now_secs();
        let good = i
            .sign(&i.claims(vec![DEFAULT_ISSUER.into()], 600, claim(), now))
            .unwrap();
        assert!(looks_like_jwt(&good));
        let header = jsonwebtoken::decode_header(&good).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert!(header.kid.is_some());
        assert_eq!(i.verify(&good).unwrap().kubernetes, claim());
        // Expired (beyond the leeway).
        let old = i
            .sign(&i.claims(vec![DEFAULT_ISSUER.into()], 600, claim(), now - 1000))
            .unwrap();
        assert!(i.verify(&old).unwrap_err().contains("Expired"));
        // Another audience.
        let other = i
            .sign(&i.claims(vec!["vault".into()], 600, claim(), now))
            .unwrap();
        assert!(i.verify(&other).unwrap_err().contains("Audience"));
        // Signed by another key.
        let stranger = issuer()
            .sign(&i.claims(vec![DEFAULT_ISSUER.into()], 600, claim(), now))
            .unwrap();
        assert!(i.verify(&stranger).is_err());
        // Tampered payload.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = stranger.split('.').nth(1).unwrap().to_string();
        parts[1] = &forged;
        assert!(i.verify(&parts.join(".")).is_err());
        assert!(i.verify("not-a-jwt").is_err());
    }

    #[test]
    fn token_volume_is_upstreams() {
        let v = token_volume("kube-api-access-abcde");
        assert_eq!(v["projected"]["defaultMode"], 420);
        let s = &v["projected"]["sources"];
        assert_eq!(s[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(s[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(s[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(s[1]["configMap"]["items"][0]["key"], "ca.crt");
        assert_eq!(
            s[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }
}
