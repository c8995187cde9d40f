//! Resource discovery shared by the controllers.
//!
//! Reads the legacy discovery documents (`/api`, `/apis`, and one resource list per
//! group version) and reduces them the way client-go's `ServerPreferredResources` does:
//! for every group/resource the preferred version of its group wins, otherwise the
//! first version that serves it. A group version whose resource list cannot be read is
//! reported in [`Discovered::failed`] instead of failing the whole discovery, so callers
//! can act on what was found (the namespace controller reports it in the
//! `NamespaceDeletionDiscoveryFailure` condition, the garbage collector keeps watching
//! what it already watched for those groups).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::discovery::ApiResource;

use crate::Error;

/// One top-level resource (no subresources) served at one group version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedResource {
    pub api: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl ServedResource {
    /// Whether every verb in `verbs` is served.
    pub fn supports(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|v| self.verbs.iter().any(|s| s == v))
    }

    /// `group/version/resource`, unique per served resource.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.api.group, self.api.version, self.api.plural
        )
    }

    /// `resource.group` as upstream prints group resources (`pods.`, `deployments.apps`).
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.api.plural, self.api.group)
    }
}

/// The listing of one API group as read from the server.
#[derive(Clone, Debug)]
pub struct GroupListing {
    pub name: String,
    pub preferred_version: Option<String>,
    /// Versions in server order, each with its resource list or the error reading it.
    pub versions: Vec<(String, Result<APIResourceList, String>)>,
}

/// Result of one discovery round.
#[derive(Clone, Debug, Default)]
pub struct Discovered {
    /// Every top-level resource of every served group version.
    pub all: Vec<Arc<ServedResource>>,
    /// One version per group/resource (see the module documentation).
    pub preferred: Vec<Arc<ServedResource>>,
    /// Group versions whose resource list could not be read, with the error.
    pub failed: BTreeMap<String, String>,
    by_gvk: HashMap<(String, String, String), Arc<ServedResource>>,
    by_gk: HashMap<(String, String), Arc<ServedResource>>,
}

/// Split an `apiVersion` into group and version (`v1` is the core group).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

impl Discovered {
    /// Reduce group listings to the discovered resources (pure; see the module docs).
    pub fn assemble(groups: Vec<GroupListing>) -> Self {
        let mut out = Discovered::default();
        // group/resource -> (version, resource), first version wins unless the preferred one comes later
        let mut preferred: BTreeMap<(String, String), Arc<ServedResource>> = BTreeMap::new();
        for g in groups {
            for (version, list) in g.versions {
                let list = match list {
                    Ok(l) => l,
                    Err(e) => {
                        let gv = if g.name.is_empty() {
                            version.clone()
                        } else {
                            format!("{}/{}", g.name, version)
                        };
                        out.failed.insert(gv, e);
                        continue;
                    }
                };
                for r in &list.resources {
                    if r.name.contains('/') {
                        continue; // subresource
                    }
                    let group = r.group.clone().unwrap_or_else(|| g.name.clone());
                    let ver = r.version.clone().unwrap_or_else(|| version.clone());
                    let api_version = if group.is_empty() {
                        ver.clone()
                    } else {
                        format!("{group}/{ver}")
                    };
                    let served = Arc::new(ServedResource {
                        api: ApiResource {
                            group: group.clone(),
                            version: ver,
                            api_version,
                            kind: r.kind.clone(),
                            plural: r.name.clone(),
                        },
                        namespaced: r.namespaced,
                        verbs: r.verbs.clone(),
                    });
                    out.all.push(served.clone());
                    out.by_gvk
                        .entry((
                            group.clone(),
                            served.api.version.clone(),
                            served.api.kind.clone(),
                        ))
                        .or_insert_with(|| served.clone());
                    let is_preferred = g.preferred_version.as_deref() == Some(version.as_str());
                    let gr = (group.clone(), r.name.clone());
                    if !preferred.contains_key(&gr) || is_preferred {
                        preferred.insert(gr, served.clone());
                    }
                }
            }
        }
        for r in preferred.into_values() {
            out.by_gk
                .entry((r.api.group.clone(), r.api.kind.clone()))
                .or_insert_with(|| r.clone());
            out.preferred.push(r);
        }
        out
    }

    /// The resource that serves `kind` at `api_version`; when that exact version is not
    /// served, the preferred resource of the same group and kind (the object is the same).
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<Arc<ServedResource>> {
        let (g, v) = split_api_version(api_version);
        self.by_gvk
            .get(&(g.to_string(), v.to_string(), kind.to_string()))
            .or_else(|| self.by_gk.get(&(g.to_string(), kind.to_string())))
            .cloned()
    }
}

/// Run one discovery round against the server. Fails only when the root documents
/// (`/api`, `/apis`) cannot be read; per-group-version failures are in `failed`.
pub async fn discover(client: &Client) -> Result<Discovered, Error> {
    let core = client
        .list_core_api_versions()
        .await
        .map_err(|e| Error::Discovery(e.to_string()))?;
    let groups = client
        .list_api_groups()
        .await
        .map_err(|e| Error::Discovery(e.to_string()))?;

    let mut listings = Vec::new();
    let core_versions = join_all(core.versions.iter().map(|v| async move {
        (
            v.clone(),
            client
                .list_core_api_resources(v)
                .await
                .map_err(|e| e.to_string()),
        )
    }))
    .await;
    listings.push(GroupListing {
        name: String::new(),
        preferred_version: core.versions.first().cloned(),
        versions: core_versions,
    });
    let fetched = join_all(groups.groups.iter().map(|g| async move {
        let versions = join_all(g.versions.iter().map(|gv| async move {
            (
                gv.version.clone(),
                client
                    .list_api_group_resources(&gv.group_version)
                    .await
                    .map_err(|e| e.to_string()),
            )
        }))
        .await;
        GroupListing {
            name: g.name.clone(),
            preferred_version: g.preferred_version.as_ref().map(|p| p.version.clone()),
            versions,
        }
    }))
    .await;
    listings.extend(fetched);
    Ok(Discovered::assemble(listings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn res(name: &str, kind: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
        APIResource {
            name: name.into(),
            kind: kind.into(),
            namespaced,
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn list(gv: &str, rs: Vec<APIResource>) -> Result<APIResourceList, String> {
        Ok(APIResourceList {
            group_version: gv.into(),
            resources: rs,
        })
    }

    fn sample() -> Discovered {
        Discovered::assemble(vec![
            GroupListing {
                name: String::new(),
                preferred_version: Some("v1".into()),
                versions: vec![(
                    "v1".into(),
                    list(
                        "v1",
                        vec![
                            res(
                                "configmaps",
                                "ConfigMap",
                                true,
                                &[
                                    "create",
                                    "delete",
                                    "deletecollection",
                                    "get",
                                    "list",
                                    "watch",
                                ],
                            ),
                            res("pods", "Pod", true, &["delete", "get", "list", "watch"]),
                            res("pods/status", "Pod", true, &["get", "patch"]),
                            res(
                                "namespaces",
                                "Namespace",
                                false,
                                &["create", "delete", "get", "list", "watch"],
                            ),
                            res("bindings", "Binding", true, &["create"]),
                        ],
                    ),
                )],
            },
            GroupListing {
                name: "example.com".into(),
                // preferred comes second in server order: it must still win
                preferred_version: Some("v2".into()),
                versions: vec![
                    (
                        "v1".into(),
                        list(
                            "example.com/v1",
                            vec![
                                res("widgets", "Widget", true, &["list"]),
                                res("olds", "Old", true, &["list"]),
                            ],
                        ),
                    ),
                    (
                        "v2".into(),
                        list(
                            "example.com/v2",
                            vec![res("widgets", "Widget", true, &["list", "watch", "delete"])],
                        ),
                    ),
                ],
            },
            GroupListing {
                name: "broken.io".into(),
                preferred_version: Some("v1".into()),
                versions: vec![("v1".into(), Err("boom".into()))],
            },
        ])
    }

    #[test]
    fn preferred_resources_table() {
        let d = sample();
        let mut got: Vec<String> = d.preferred.iter().map(|r| r.key()).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "/v1/bindings",
                "/v1/configmaps",
                "/v1/namespaces",
                "/v1/pods",
                "example.com/v1/olds",
                "example.com/v2/widgets"
            ]
        );
        assert_eq!(d.all.len(), 7);
        assert_eq!(
            d.failed.get("broken.io/v1").map(String::as_str),
            Some("boom")
        );
    }

    #[test]
    fn resolve_table() {
        let d = sample();
        let cases = [
            ("v1", "ConfigMap", Some("/v1/configmaps")),
            ("example.com/v1", "Widget", Some("example.com/v1/widgets")),
            ("example.com/v3", "Widget", Some("example.com/v2/widgets")),
            ("example.com/v9", "Old", Some("example.com/v1/olds")),
            ("apps/v1", "Deployment", None),
            ("v1", "Nope", None),
        ];
        for (av, kind, want) in cases {
            assert_eq!(
                d.resolve(av, kind).map(|r| r.key()),
                want.map(String::from),
                "{av} {kind}"
            );
        }
    }

    #[test]
    fn verbs_and_names() {
        let d = sample();
        let pods = d.resolve("v1", "Pod").expect("pods");
        assert!(pods.supports(&["list", "watch", "delete"]));
        assert!(!pods.supports(&["deletecollection"]));
        assert_eq!(pods.group_resource(), "pods.");
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }
}
