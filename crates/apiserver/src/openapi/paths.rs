//! The operations of one resource, in a form independent of the OpenAPI version.
//!
//! Upstream publishes, per resource: list / create / deletecollection on the collection,
//! read / replace / patch / delete on an object, a list "for all namespaces" for
//! namespaced resources, and the subresources (status, scale, log, exec, …). Operation
//! ids, actions and parameters follow upstream's conventions so clients that look them up
//! (kubectl checks a PATCH operation's `fieldValidation` parameter) find them. The
//! deprecated `/watch/` paths are not published: `watch=true` on the list is the
//! supported way to watch.

use api::catalog::{ResourceInfo, Subresource};

use super::registry::Gvk;

/// One path and its operations.
pub(crate) struct PathSpec {
    pub path: String,
    /// Parameters shared by every operation on the path.
    pub params: Vec<Param>,
    pub ops: Vec<Op>,
}

/// One operation.
pub(crate) struct Op {
    /// Lower-case HTTP method.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    /// `x-kubernetes-action`.
    pub action: &'static str,
    /// `x-kubernetes-group-version-kind`.
    pub gvk: Gvk,
    pub params: Vec<Param>,
    pub body: Option<Body>,
    pub responses: Vec<Resp>,
    pub tag: String,
    pub produces: Produces,
}

/// A request body.
pub(crate) enum Body {
    /// An object of this definition.
    Def(String),
    /// A patch document; `strategic` when strategic merge patches are accepted.
    Patch { strategic: bool },
    /// `DeleteOptions`, optional.
    Delete,
}

/// One response.
pub(crate) struct Resp {
    pub code: &'static str,
    pub description: &'static str,
    pub schema: Option<RespSchema>,
}

pub(crate) enum RespSchema {
    Def(String),
    /// A plain string (logs, streams).
    Text,
}

/// Media types an operation produces.
#[derive(Clone, Copy)]
pub(crate) enum Produces {
    Object,
    List,
    Text,
    Any,
}

impl Produces {
    pub(crate) fn types(self) -> &'static [&'static str] {
        match self {
            Produces::Object => &["application/json", "application/yaml"],
            Produces::List => &[
                "application/json",
                "application/yaml",
                "application/json;stream=watch",
            ],
            Produces::Text => &["text/plain"],
            Produces::Any => &["*/*"],
        }
    }
}

/// A path or query parameter.
#[derive(Clone)]
pub(crate) struct Param {
    pub name: &'static str,
    /// `path` or `query`.
    pub location: &'static str,
    pub description: String,
    /// `string`, `boolean` or `integer`.
    pub ty: &'static str,
    pub required: bool,
}

/// Patch media types, in upstream's order.
pub(crate) fn patch_types(strategic: bool) -> Vec<&'static str> {
    let mut types = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if strategic {
        types.push("application/strategic-merge-patch+json");
    }
    types.push("application/apply-patch+yaml");
    types
}

fn query(name: &'static str, ty: &'static str, description: &str) -> Param {
    Param {
        name,
        location: "query",
        description: description.to_string(),
        ty,
        required: false,
    }
}

fn path_param(name: &'static str, description: String) -> Param {
    Param {
        name,
        location: "path",
        description,
        ty: "string",
        required: true,
    }
}

fn pretty() -> Param {
    query(
        "pretty",
        "string",
        "If 'true', the output is indented for humans.",
    )
}

fn dry_run() -> Param {
    query(
        "dryRun",
        "string",
        "When present, the request is processed fully but nothing is persisted. The only valid value is All.",
    )
}

fn field_manager() -> Param {
    query(
        "fieldManager",
        "string",
        "Name of the actor making the change, recorded in managedFields. At most 128 printable characters. Required for apply patches.",
    )
}

fn field_validation() -> Param {
    query(
        "fieldValidation",
        "string",
        "What to do with fields of the object that the schema does not know or that are duplicated: Ignore drops them silently, Warn drops them and returns a warning header for each, Strict rejects the request. Defaults to Warn.",
    )
}

fn force() -> Param {
    query(
        "force",
        "boolean",
        "Apply patches only: take over fields owned by other managers instead of reporting a conflict. Must be unset for other patch types.",
    )
}

fn write_params() -> Vec<Param> {
    vec![dry_run(), field_manager(), field_validation()]
}

fn list_params() -> Vec<Param> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "Ask a watch for BOOKMARK events. Servers may ignore it; ignored outside watches.",
        ),
        query(
            "continue",
            "string",
            "The token returned by a previous paginated list, to fetch the next page.",
        ),
        query(
            "fieldSelector",
            "string",
            "Only return objects whose fields match this selector. Defaults to everything.",
        ),
        query(
            "labelSelector",
            "string",
            "Only return objects whose labels match this selector. Defaults to everything.",
        ),
        query(
            "limit",
            "integer",
            "The most objects to return in one response; the rest can be fetched with the returned continue token.",
        ),
        query(
            "resourceVersion",
            "string",
            "Constrains which resource versions the request may be served from (see resourceVersionMatch). Defaults to the most recent data.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "How resourceVersion applies to a list: Exact or NotOlderThan.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "For watches: first send the current objects as ADDED events, then a BOOKMARK marking the end of them.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "Time limit of the list or watch call, in seconds.",
        ),
        query(
            "watch",
            "boolean",
            "Watch for changes instead of listing: return a stream of add, update and delete events.",
        ),
    ]
}

fn delete_params(collection: bool) -> Vec<Param> {
    let mut params = Vec::new();
    if collection {
        params.push(query(
            "continue",
            "string",
            "The token returned by a previous paginated list, to fetch the next page.",
        ));
    }
    params.push(dry_run());
    if collection {
        params.push(query(
            "fieldSelector",
            "string",
            "Only delete objects whose fields match this selector.",
        ));
    }
    params.push(query(
        "gracePeriodSeconds",
        "integer",
        "Seconds the object has to terminate gracefully; 0 deletes immediately. Defaults to the kind's own grace period.",
    ));
    params.push(query(
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Delete objects that cannot be read from storage (for example undecryptable ones). Dangerous; requires extra permission.",
    ));
    if collection {
        params.push(query(
            "labelSelector",
            "string",
            "Only delete objects whose labels match this selector.",
        ));
        params.push(query(
            "limit",
            "integer",
            "The most objects to handle in one call.",
        ));
    }
    params.push(query(
        "orphanDependents",
        "boolean",
        "Deprecated: use propagationPolicy. Whether dependents are orphaned instead of garbage collected.",
    ));
    params.push(query(
        "propagationPolicy",
        "string",
        "How dependents are garbage collected: Orphan, Background or Foreground.",
    ));
    if collection {
        params.push(query(
            "resourceVersion",
            "string",
            "Constrains which resource versions the list may be served from.",
        ));
        params.push(query(
            "resourceVersionMatch",
            "string",
            "How resourceVersion applies: Exact or NotOlderThan.",
        ));
        params.push(query(
            "sendInitialEvents",
            "boolean",
            "Only meaningful for watches; not used when deleting.",
        ));
        params.push(query(
            "timeoutSeconds",
            "integer",
            "Time limit of the call, in seconds.",
        ));
    }
    params
}

fn log_params() -> Vec<Param> {
    vec![
        query(
            "container",
            "string",
            "The container to read logs of. May be omitted when the pod has one container.",
        ),
        query("follow", "boolean", "Keep streaming the log as it grows."),
        query(
            "insecureSkipTLSVerifyBackend",
            "boolean",
            "Do not verify the kubelet's serving certificate.",
        ),
        query(
            "limitBytes",
            "integer",
            "Stop after this many bytes of log.",
        ),
        query(
            "previous",
            "boolean",
            "Return the log of the previous, terminated instance of the container.",
        ),
        query(
            "sinceSeconds",
            "integer",
            "Only lines newer than this many seconds. Exclusive with sinceTime.",
        ),
        query(
            "sinceTime",
            "string",
            "Only lines newer than this RFC 3339 time. Exclusive with sinceSeconds.",
        ),
        query(
            "stream",
            "string",
            "Which stream to return: All, Stdout or Stderr.",
        ),
        query(
            "tailLines",
            "integer",
            "Only this many lines from the end of the log.",
        ),
        query(
            "timestamps",
            "boolean",
            "Prefix each line with an RFC 3339 timestamp.",
        ),
    ]
}

fn connect_params(sub: &str) -> Vec<Param> {
    let streams = || {
        vec![
            query(
                "container",
                "string",
                "The container to connect to. May be omitted when the pod has one container.",
            ),
            query("stderr", "boolean", "Redirect the standard error stream."),
            query("stdin", "boolean", "Redirect the standard input stream."),
            query("stdout", "boolean", "Redirect the standard output stream."),
            query("tty", "boolean", "Allocate a terminal."),
        ]
    };
    match sub {
        "exec" => {
            let mut p = vec![query(
                "command",
                "string",
                "The command to run, one argument per parameter.",
            )];
            p.extend(streams());
            p
        }
        "attach" => streams(),
        "portforward" => vec![query("ports", "integer", "The ports to forward.")],
        "proxy" => vec![query("path", "string", "The path to proxy to.")],
        _ => Vec::new(),
    }
}

/// `apps` → `Apps`, `rbac.authorization.k8s.io` → `RbacAuthorization`, core → `Core`.
pub(crate) fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_string();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    trimmed.split(['.', '-']).map(capitalize).collect()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Resolves a GVK to the definition describing it.
pub(crate) type Lookup<'a> = &'a dyn Fn(&Gvk) -> Option<String>;

fn ok(schema: Option<String>, codes: &[(&'static str, &'static str)]) -> Vec<Resp> {
    let mut out: Vec<Resp> = codes
        .iter()
        .map(|(code, description)| Resp {
            code,
            description,
            schema: schema.clone().map(RespSchema::Def),
        })
        .collect();
    out.push(Resp {
        code: "401",
        description: "Unauthorized",
        schema: None,
    });
    out
}

const OK: (&str, &str) = ("200", "OK");
const CREATED: (&str, &str) = ("201", "Created");
const ACCEPTED: (&str, &str) = ("202", "Accepted");

struct Ctx<'a> {
    info: &'a ResourceInfo,
    gv: String,
    scope: &'static str,
    tag: String,
    lookup: Lookup<'a>,
}

impl Ctx<'_> {
    fn id(&self, verb: &str, suffix: &str) -> String {
        format!("{verb}{}{}{}{suffix}", self.gv, self.scope, self.info.kind)
    }

    fn op(
        &self,
        method: &'static str,
        id: String,
        description: String,
        action: &'static str,
        gvk: Gvk,
    ) -> Op {
        Op {
            method,
            id,
            description,
            action,
            gvk,
            params: Vec::new(),
            body: None,
            responses: Vec::new(),
            tag: self.tag.clone(),
            produces: Produces::Object,
        }
    }
}

/// Every path of one resource. `root` is `/api/v1` or `/apis/<group>/<version>`.
pub(crate) fn resource_paths(info: &ResourceInfo, lookup: Lookup<'_>) -> Vec<PathSpec> {
    let root = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    let ctx = Ctx {
        info,
        gv: format!("{}{}", group_camel(&info.group), capitalize(&info.version)),
        scope: if info.namespaced { "Namespaced" } else { "" },
        tag: format!(
            "{}_{}",
            lower_first(&group_camel(&info.group)),
            info.version
        ),
        lookup,
    };
    let has = |verb: &str| info.verbs.iter().any(|v| v == verb);
    let kind = &info.kind;
    let gvk = Gvk::new(&info.group, &info.version, kind);
    let def = lookup(&gvk);
    let list_def = lookup(&Gvk::new(&info.group, &info.version, &info.list_kind));
    let status_def = lookup(&Gvk::new("", "v1", "Status"));

    let collection = if info.namespaced {
        format!("{root}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{root}/{}", info.plural)
    };
    let item = format!("{collection}/{{name}}");
    let namespace = || {
        path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects".into(),
        )
    };
    let name = |of: &str| path_param("name", format!("name of the {of}"));
    let mut collection_params = Vec::new();
    if info.namespaced {
        collection_params.push(namespace());
    }
    collection_params.push(pretty());
    let mut item_params = vec![name(kind)];
    if info.namespaced {
        item_params.push(namespace());
    }
    item_params.push(pretty());

    let mut out = Vec::new();

    // The collection.
    let mut ops = Vec::new();
    if has("list") {
        let mut op = ctx.op(
            "get",
            ctx.id("list", ""),
            format!("list or watch objects of kind {kind}"),
            "list",
            gvk.clone(),
        );
        op.params = list_params();
        op.responses = ok(list_def.clone(), &[OK]);
        op.produces = Produces::List;
        ops.push(op);
    }
    if has("create") {
        let mut op = ctx.op(
            "post",
            ctx.id("create", ""),
            format!("create a {kind}"),
            "post",
            gvk.clone(),
        );
        op.params = write_params();
        op.body = def.clone().map(Body::Def);
        op.responses = ok(def.clone(), &[OK, CREATED, ACCEPTED]);
        ops.push(op);
    }
    if has("deletecollection") {
        let id = format!("delete{}Collection{}{kind}", ctx.gv, ctx.scope);
        let mut op = ctx.op(
            "delete",
            id,
            format!("delete a collection of {kind} objects"),
            "deletecollection",
            gvk.clone(),
        );
        op.params = delete_params(true);
        op.body = Some(Body::Delete);
        op.responses = ok(status_def.clone(), &[OK]);
        ops.push(op);
    }
    if !ops.is_empty() {
        out.push(PathSpec {
            path: collection,
            params: collection_params,
            ops,
        });
    }

    // One object.
    let mut ops = Vec::new();
    if has("get") {
        let mut op = ctx.op(
            "get",
            ctx.id("read", ""),
            format!("read the specified {kind}"),
            "get",
            gvk.clone(),
        );
        op.responses = ok(def.clone(), &[OK]);
        ops.push(op);
    }
    if has("update") {
        let mut op = ctx.op(
            "put",
            ctx.id("replace", ""),
            format!("replace the specified {kind}"),
            "put",
            gvk.clone(),
        );
        op.params = write_params();
        op.body = def.clone().map(Body::Def);
        op.responses = ok(def.clone(), &[OK, CREATED]);
        ops.push(op);
    }
    if has("patch") {
        ops.push(patch_op(
            &ctx,
            ctx.id("patch", ""),
            format!("partially update the specified {kind}"),
            gvk.clone(),
            def.clone(),
        ));
    }
    if has("delete") {
        let mut op = ctx.op(
            "delete",
            ctx.id("delete", ""),
            format!("delete a {kind}"),
            "delete",
            gvk.clone(),
        );
        op.params = delete_params(false);
        op.body = Some(Body::Delete);
        op.responses = ok(status_def.clone(), &[OK, ACCEPTED]);
        ops.push(op);
    }
    if !ops.is_empty() {
        out.push(PathSpec {
            path: item.clone(),
            params: item_params.clone(),
            ops,
        });
    }

    // Every namespace.
    if info.namespaced && has("list") {
        let id = format!("list{}{kind}ForAllNamespaces", ctx.gv);
        let mut op = ctx.op(
            "get",
            id,
            format!("list or watch objects of kind {kind}"),
            "list",
            gvk.clone(),
        );
        op.params = list_params();
        op.responses = ok(list_def, &[OK]);
        op.produces = Produces::List;
        out.push(PathSpec {
            path: format!("{root}/{}", info.plural),
            params: vec![pretty()],
            ops: vec![op],
        });
    }

    for sub in &info.subresources {
        out.extend(subresource_paths(&ctx, sub, &item, &item_params));
    }
    out
}

fn patch_op(ctx: &Ctx<'_>, id: String, description: String, gvk: Gvk, def: Option<String>) -> Op {
    let mut op = ctx.op("patch", id, description, "patch", gvk);
    op.params = vec![dry_run(), field_manager(), field_validation(), force()];
    op.body = Some(Body::Patch {
        strategic: !ctx.info.custom,
    });
    op.responses = ok(def, &[OK, CREATED]);
    op
}

fn subresource_paths(
    ctx: &Ctx<'_>,
    sub: &Subresource,
    item: &str,
    item_params: &[Param],
) -> Vec<PathSpec> {
    let kind = &ctx.info.kind;
    let suffix = capitalize(&sub.name);
    let gvk = Gvk::new(&sub.group, &sub.version, &sub.kind);
    let def = (ctx.lookup)(&gvk);
    let has = |verb: &str| sub.verbs.iter().any(|v| v == verb);
    let path = format!("{item}/{}", sub.name);
    let mut out = Vec::new();

    if sub.kind.ends_with("Options") {
        // Streaming "connect" subresources (exec, attach, portforward, proxy).
        let methods: [(&str, &'static str, &str); 7] = [
            ("get", "get", "Get"),
            ("create", "post", "Post"),
            ("put", "put", "Put"),
            ("patch", "patch", "Patch"),
            ("delete", "delete", "Delete"),
            ("head", "head", "Head"),
            ("options", "options", "Options"),
        ];
        let connect_ops = |with_path: bool| -> Vec<Op> {
            methods
                .iter()
                .filter(|(verb, _, _)| has(verb))
                .map(|(_, method, word)| {
                    let id = format!(
                        "connect{}{word}{}{kind}{suffix}{}",
                        ctx.gv,
                        ctx.scope,
                        if with_path { "WithPath" } else { "" }
                    );
                    let description = format!(
                        "connect {} requests to {} of {kind}",
                        word.to_uppercase(),
                        sub.name
                    );
                    let mut op = ctx.op(method, id, description, "connect", gvk.clone());
                    op.params = connect_params(&sub.name);
                    op.responses = vec![
                        Resp {
                            code: "200",
                            description: "OK",
                            schema: Some(RespSchema::Text),
                        },
                        Resp {
                            code: "401",
                            description: "Unauthorized",
                            schema: None,
                        },
                    ];
                    op.produces = Produces::Any;
                    op
                })
                .collect()
        };
        let mut params = item_params.to_vec();
        params.retain(|p| p.name != "pretty");
        out.push(PathSpec {
            path: path.clone(),
            params: params.clone(),
            ops: connect_ops(false),
        });
        if sub.name == "proxy" {
            let mut with_path = params;
            with_path.insert(1, path_param("path", "path to the resource".into()));
            out.push(PathSpec {
                path: format!("{path}/{{path}}"),
                params: with_path,
                ops: connect_ops(true),
            });
        }
        return out;
    }

    if sub.name == "log" {
        let mut op = ctx.op(
            "get",
            ctx.id("read", &suffix),
            format!("read the log of the specified {kind}"),
            "get",
            gvk,
        );
        op.params = log_params();
        op.responses = vec![
            Resp {
                code: "200",
                description: "OK",
                schema: Some(RespSchema::Text),
            },
            Resp {
                code: "401",
                description: "Unauthorized",
                schema: None,
            },
        ];
        op.produces = Produces::Text;
        out.push(PathSpec {
            path,
            params: item_params.to_vec(),
            ops: vec![op],
        });
        return out;
    }

    let mut ops = Vec::new();
    if has("get") {
        let mut op = ctx.op(
            "get",
            ctx.id("read", &suffix),
            format!("read {} of the specified {kind}", sub.name),
            "get",
            gvk.clone(),
        );
        op.responses = ok(def.clone(), &[OK]);
        ops.push(op);
    }
    if has("create") {
        let mut op = ctx.op(
            "post",
            ctx.id("create", &suffix),
            format!("create {} of a {kind}", sub.name),
            "post",
            gvk.clone(),
        );
        op.params = write_params();
        op.body = def.clone().map(Body::Def);
        op.responses = ok(def.clone(), &[OK, CREATED, ACCEPTED]);
        ops.push(op);
    }
    if has("update") {
        let mut op = ctx.op(
            "put",
            ctx.id("replace", &suffix),
            format!("replace {} of the specified {kind}", sub.name),
            "put",
            gvk.clone(),
        );
        op.params = write_params();
        op.body = def.clone().map(Body::Def);
        op.responses = ok(def.clone(), &[OK, CREATED]);
        ops.push(op);
    }
    if has("patch") {
        let description = format!("partially update {} of the specified {kind}", sub.name);
        ops.push(patch_op(
            ctx,
            ctx.id("patch", &suffix),
            description,
            gvk.clone(),
            def.clone(),
        ));
    }
    if !ops.is_empty() {
        // Body-carrying subresources of a whole object name the object, not the body kind.
        let mut params = item_params.to_vec();
        if let Some(first) = params.first_mut() {
            first.description = format!(
                "name of the {}",
                if sub.kind == *kind { kind } else { &sub.kind }
            );
        }
        out.push(PathSpec { path, params, ops });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_table() {
        let cases = [
            ("", "Core"),
            ("apps", "Apps"),
            ("rbac.authorization.k8s.io", "RbacAuthorization"),
            ("apiextensions.k8s.io", "Apiextensions"),
            ("example.com", "ExampleCom"),
            ("my-group.io", "MyGroupIo"),
        ];
        for (group, want) in cases {
            assert_eq!(group_camel(group), want, "{group}");
        }
    }

    #[test]
    fn deployment_operations_follow_upstream_ids() {
        let cat = api::catalog::builtin();
        let deploy = cat.iter().find(|r| r.kind == "Deployment").unwrap();
        let lookup = |g: &Gvk| Some(format!("def.{}", g.kind));
        let paths = resource_paths(deploy, &lookup);
        let ids: Vec<(&str, &str, &str)> = paths
            .iter()
            .flat_map(|p| {
                p.ops
                    .iter()
                    .map(move |o| (p.path.as_str(), o.method, o.id.as_str()))
            })
            .collect();
        let want = [
            (
                "/apis/apps/v1/namespaces/{namespace}/deployments",
                "get",
                "listAppsV1NamespacedDeployment",
            ),
            (
                "/apis/apps/v1/namespaces/{namespace}/deployments",
                "post",
                "createAppsV1NamespacedDeployment",
            ),
            (
                "/apis/apps/v1/namespaces/{namespace}/deployments",
                "delete",
                "deleteAppsV1CollectionNamespacedDeployment",
            ),
            (
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                "patch",
                "patchAppsV1NamespacedDeployment",
            ),
            (
                "/apis/apps/v1/deployments",
                "get",
                "listAppsV1DeploymentForAllNamespaces",
            ),
            (
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
                "patch",
                "patchAppsV1NamespacedDeploymentScale",
            ),
            (
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status",
                "get",
                "readAppsV1NamespacedDeploymentStatus",
            ),
        ];
        for w in want {
            assert!(ids.contains(&w), "missing {w:?} in {ids:?}");
        }
        let scale = paths.iter().find(|p| p.path.ends_with("/scale")).unwrap();
        assert!(
            scale
                .ops
                .iter()
                .all(|o| o.gvk == Gvk::new("autoscaling", "v1", "Scale"))
        );
    }

    #[test]
    fn pod_connect_and_log_operations() {
        let cat = api::catalog::builtin();
        let pods = cat.iter().find(|r| r.kind == "Pod").unwrap();
        let lookup = |g: &Gvk| Some(format!("def.{}", g.kind));
        let paths = resource_paths(pods, &lookup);
        let find = |suffix: &str| paths.iter().find(|p| p.path.ends_with(suffix)).unwrap();
        let exec = find("/exec");
        let get = exec.ops.iter().find(|o| o.method == "get").unwrap();
        assert_eq!(get.id, "connectCoreV1GetNamespacedPodExec");
        assert_eq!(get.action, "connect");
        assert!(get.params.iter().any(|p| p.name == "command"));
        let proxy = find("/proxy/{path}");
        assert!(
            proxy
                .ops
                .iter()
                .any(|o| o.id == "connectCoreV1PutNamespacedPodProxyWithPath")
        );
        let log = find("/log");
        assert_eq!(log.ops[0].id, "readCoreV1NamespacedPodLog");
        let eviction = find("/eviction");
        assert_eq!(eviction.ops[0].id, "createCoreV1NamespacedPodEviction");
        assert_eq!(eviction.ops[0].gvk, Gvk::new("policy", "v1", "Eviction"));
    }

    #[test]
    fn verbs_limit_operations() {
        let cat = api::catalog::builtin();
        let bindings = cat.iter().find(|r| r.kind == "Binding").unwrap();
        let lookup = |g: &Gvk| Some(g.kind.clone());
        let paths = resource_paths(bindings, &lookup);
        let ops: Vec<&str> = paths
            .iter()
            .flat_map(|p| p.ops.iter().map(|o| o.id.as_str()))
            .collect();
        assert_eq!(ops, vec!["createCoreV1NamespacedBinding"]);
        let ns = cat.iter().find(|r| r.kind == "Namespace").unwrap();
        let paths = resource_paths(ns, &lookup);
        assert!(
            paths
                .iter()
                .all(|p| p.ops.iter().all(|o| o.action != "deletecollection"))
        );
        assert!(
            paths
                .iter()
                .any(|p| p.path == "/api/v1/namespaces/{name}/finalize")
        );
    }
}
