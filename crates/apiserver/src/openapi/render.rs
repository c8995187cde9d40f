//! Rendering of the documents: the OpenAPI 3 document of one group-version, its index,
//! and the swagger 2.0 document of everything.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use api::catalog::ResourceInfo;
use serde_json::{Map, Value, json};

use super::Model;
use super::fields::{Mode, Resolve};
use super::paths::{Body, Op, Param, PathSpec, RespSchema, patch_types, resource_paths};
use super::registry::{
    DELETE_OPTIONS, Gvk, PATCH, Registry, STATUS, V2_PREFIX, V3_PREFIX, WATCH_EVENT, references,
};

/// `info.version` of every document.
pub const INFO_VERSION: &str = "v1.33.0";

/// Kinds whose definitions are shared by every group-version (registered in each).
const SHARED_KINDS: [(&str, &str); 2] = [
    (DELETE_OPTIONS, "DeleteOptions"),
    (WATCH_EVENT, "WatchEvent"),
];

/// The registry and the current custom resources, seen together.
pub(crate) struct Source<'a> {
    pub registry: &'a Registry,
    pub model: &'a Model,
}

impl Resolve for Source<'_> {
    fn resolve(&self, name: &str) -> Option<(&Value, Mode)> {
        if let Some(def) = self.registry.definition_v2(name) {
            return Some((def, Mode::Builtin));
        }
        self.model.customs.values().find_map(|c| {
            if c.defs.name == name {
                Some((&c.defs.v3, Mode::Structural))
            } else if c.defs.list_name == name {
                Some((&c.defs.list_v3, Mode::Structural))
            } else {
                None
            }
        })
    }
}

/// `api/v1` or `apis/<group>/<version>`.
pub(crate) fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

impl Source<'_> {
    pub(crate) fn resources(&self) -> impl Iterator<Item = &ResourceInfo> {
        self.model
            .builtins
            .iter()
            .chain(self.model.customs.values().map(|c| &c.info))
    }

    /// Every served group-version, as (group, version).
    pub(crate) fn group_versions(&self) -> BTreeSet<(String, String)> {
        self.resources()
            .map(|r| (r.group.clone(), r.version.clone()))
            .collect()
    }

    /// The definition name for a GVK.
    pub(crate) fn lookup(&self, gvk: &Gvk) -> Option<String> {
        if let Some(name) = self.registry.definition_for(gvk) {
            return Some(name.to_string());
        }
        self.model.customs.values().find_map(|c| {
            if c.info.group != gvk.group || c.info.version != gvk.version {
                None
            } else if c.info.kind == gvk.kind {
                Some(c.defs.name.clone())
            } else if c.info.list_kind == gvk.kind {
                Some(c.defs.list_name.clone())
            } else {
                None
            }
        })
    }

    fn definition(&self, name: &str, v3: bool) -> Option<Cow<'_, Value>> {
        if let Some(def) = self.registry.definition(name, v3) {
            return Some(def);
        }
        self.model.customs.values().find_map(|c| {
            let (def, list) = if v3 {
                (&c.defs.v3, &c.defs.list_v3)
            } else {
                (&c.defs.v2, &c.defs.list_v2)
            };
            if c.defs.name == name {
                Some(Cow::Borrowed(def))
            } else if c.defs.list_name == name {
                Some(Cow::Borrowed(list))
            } else {
                None
            }
        })
    }

    /// The definitions reachable from `roots`, sorted by name. The shared kinds are
    /// registered in the core group and in `only` if given, else in every served
    /// group-version (so that a group-version's document depends on nothing else and can
    /// be cached on its own).
    fn closure(
        &self,
        roots: Vec<String>,
        v3: bool,
        only: Option<(&str, &str)>,
    ) -> Map<String, Value> {
        let mut out = BTreeMap::new();
        let mut queue: VecDeque<String> = roots.into();
        while let Some(name) = queue.pop_front() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(def) = self.definition(&name, v3) else {
                continue;
            };
            let mut refs = Vec::new();
            references(&def, &mut refs);
            queue.extend(refs);
            out.insert(name, def.into_owned());
        }
        let gvs = match only {
            Some((group, version)) => BTreeSet::from([(group.to_string(), version.to_string())]),
            None => self.group_versions(),
        };
        for (name, kind) in SHARED_KINDS {
            if let Some(Value::Object(def)) = out.get_mut(name) {
                let mut list = vec![Gvk::new("", "v1", kind).to_json()];
                list.extend(
                    gvs.iter()
                        .filter(|(g, _)| !g.is_empty())
                        .map(|(g, v)| Gvk::new(g, v, kind).to_json()),
                );
                def.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
            }
        }
        out.into_iter().collect()
    }

    /// The root definitions of a set of resources: their kinds, lists and shared kinds.
    fn roots<'r>(&self, resources: impl Iterator<Item = &'r ResourceInfo>) -> Vec<String> {
        let mut roots: Vec<String> = [STATUS, DELETE_OPTIONS, WATCH_EVENT, PATCH]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for r in resources {
            roots.extend(self.lookup(&Gvk::new(&r.group, &r.version, &r.kind)));
            roots.extend(self.lookup(&Gvk::new(&r.group, &r.version, &r.list_kind)));
        }
        roots
    }

    fn paths<'r>(&self, resources: impl Iterator<Item = &'r ResourceInfo>) -> Vec<PathSpec> {
        let lookup = |gvk: &Gvk| self.lookup(gvk);
        let mut specs: Vec<PathSpec> = resources.flat_map(|r| resource_paths(r, &lookup)).collect();
        specs.sort_by(|a, b| a.path.cmp(&b.path));
        specs
    }
}

fn reference(name: &str, v3: bool) -> Value {
    json!({"$ref": format!("{}{name}", if v3 { V3_PREFIX } else { V2_PREFIX })})
}

fn param_v2(p: &Param) -> Value {
    let mut m = Map::new();
    m.insert("description".into(), p.description.clone().into());
    m.insert("in".into(), p.location.into());
    m.insert("name".into(), p.name.into());
    if p.required {
        m.insert("required".into(), true.into());
    }
    m.insert("type".into(), p.ty.into());
    m.insert("uniqueItems".into(), true.into());
    Value::Object(m)
}

fn param_v3(p: &Param) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), p.name.into());
    m.insert("in".into(), p.location.into());
    m.insert("description".into(), p.description.clone().into());
    if p.required {
        m.insert("required".into(), true.into());
    }
    m.insert("schema".into(), json!({"type": p.ty, "uniqueItems": true}));
    Value::Object(m)
}

fn extensions(op: &Op, m: &mut Map<String, Value>) {
    m.insert("x-kubernetes-action".into(), op.action.into());
    m.insert("x-kubernetes-group-version-kind".into(), op.gvk.to_json());
}

fn op_v2(op: &Op) -> Value {
    let mut m = Map::new();
    m.insert("description".into(), op.description.clone().into());
    let consumes: Vec<&str> = match op.body {
        Some(Body::Patch { strategic }) => patch_types(strategic),
        _ => vec!["*/*"],
    };
    m.insert("consumes".into(), json!(consumes));
    m.insert("produces".into(), json!(op.produces.types()));
    m.insert("schemes".into(), json!(["https"]));
    m.insert("tags".into(), json!([op.tag]));
    m.insert("operationId".into(), op.id.clone().into());
    let mut params: Vec<Value> = Vec::new();
    match &op.body {
        Some(Body::Def(def)) => {
            params.push(json!({"in": "body", "name": "body", "required": true, "schema": reference(def, false)}));
        }
        Some(Body::Patch { .. }) => {
            params.push(json!({"in": "body", "name": "body", "required": true, "schema": reference(PATCH, false)}));
        }
        Some(Body::Delete) => {
            params.push(
                json!({"in": "body", "name": "body", "schema": reference(DELETE_OPTIONS, false)}),
            );
        }
        None => {}
    }
    params.extend(op.params.iter().map(param_v2));
    if !params.is_empty() {
        m.insert("parameters".into(), Value::Array(params));
    }
    let mut responses = Map::new();
    for r in &op.responses {
        let mut resp = Map::new();
        resp.insert("description".into(), r.description.into());
        match &r.schema {
            Some(RespSchema::Def(def)) => {
                resp.insert("schema".into(), reference(def, false));
            }
            Some(RespSchema::Text) => {
                resp.insert("schema".into(), json!({"type": "string"}));
            }
            None => {}
        }
        responses.insert(r.code.into(), Value::Object(resp));
    }
    m.insert("responses".into(), Value::Object(responses));
    extensions(op, &mut m);
    Value::Object(m)
}

fn op_v3(op: &Op) -> Value {
    let mut m = Map::new();
    m.insert("tags".into(), json!([op.tag]));
    m.insert("description".into(), op.description.clone().into());
    m.insert("operationId".into(), op.id.clone().into());
    if !op.params.is_empty() {
        m.insert(
            "parameters".into(),
            Value::Array(op.params.iter().map(param_v3).collect()),
        );
    }
    let body = match &op.body {
        Some(Body::Def(def)) => Some((json!({"*/*": {"schema": reference(def, true)}}), true)),
        Some(Body::Patch { strategic }) => {
            let content: Map<String, Value> = patch_types(*strategic)
                .into_iter()
                .map(|t| (t.to_string(), json!({"schema": reference(PATCH, true)})))
                .collect();
            Some((Value::Object(content), true))
        }
        Some(Body::Delete) => Some((
            json!({"*/*": {"schema": reference(DELETE_OPTIONS, true)}}),
            false,
        )),
        None => None,
    };
    if let Some((content, required)) = body {
        let mut b = Map::new();
        b.insert("content".into(), content);
        if required {
            b.insert("required".into(), true.into());
        }
        m.insert("requestBody".into(), Value::Object(b));
    }
    let mut responses = Map::new();
    for r in &op.responses {
        let mut resp = Map::new();
        resp.insert("description".into(), r.description.into());
        let schema = match &r.schema {
            Some(RespSchema::Def(def)) => Some(reference(def, true)),
            Some(RespSchema::Text) => Some(json!({"type": "string"})),
            None => None,
        };
        if let Some(schema) = schema {
            let content: Map<String, Value> = op
                .produces
                .types()
                .iter()
                .map(|t| (t.to_string(), json!({"schema": schema})))
                .collect();
            resp.insert("content".into(), Value::Object(content));
        }
        responses.insert(r.code.into(), Value::Object(resp));
    }
    m.insert("responses".into(), Value::Object(responses));
    extensions(op, &mut m);
    Value::Object(m)
}

fn paths_json(specs: &[PathSpec], v3: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for spec in specs {
        let mut item = Map::new();
        for op in &spec.ops {
            item.insert(op.method.into(), if v3 { op_v3(op) } else { op_v2(op) });
        }
        let params: Vec<Value> = spec
            .params
            .iter()
            .map(|p| if v3 { param_v3(p) } else { param_v2(p) })
            .collect();
        if !params.is_empty() {
            item.insert("parameters".into(), Value::Array(params));
        }
        // Two resources never share a path; should they, the later operations win.
        match out.get_mut(&spec.path) {
            Some(Value::Object(existing)) => existing.extend(item),
            _ => {
                out.insert(spec.path.clone(), Value::Object(item));
            }
        }
    }
    out
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": INFO_VERSION})
}

const BEARER_DESCRIPTION: &str = "Bearer token authentication";

/// The OpenAPI 3 document of one group-version, or `None` if nothing is served there.
pub(crate) fn v3_document(src: &Source<'_>, group: &str, version: &str) -> Option<Value> {
    let in_gv = || {
        src.resources()
            .filter(|r| r.group == group && r.version == version)
    };
    in_gv().next()?;
    let specs = src.paths(in_gv());
    let paths = Value::Object(paths_json(&specs, true));
    let mut roots = src.roots(in_gv());
    references(&paths, &mut roots);
    let schemas = src.closure(roots, true, Some((group, version)));
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {"type": "apiKey", "description": BEARER_DESCRIPTION, "name": "authorization", "in": "header"},
            },
        },
    }))
}

/// The swagger 2.0 document of everything served.
pub(crate) fn v2_document(src: &Source<'_>) -> Value {
    let specs = src.paths(src.resources());
    let paths = Value::Object(paths_json(&specs, false));
    let mut roots = src.roots(src.resources());
    references(&paths, &mut roots);
    let definitions = src.closure(roots, false, None);
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {"description": BEARER_DESCRIPTION, "in": "header", "name": "authorization", "type": "apiKey"},
        },
        "security": [{"BearerToken": []}],
    })
}
