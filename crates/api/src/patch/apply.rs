//! Server-side apply (`application/apply-patch+yaml`) and field ownership
//! (`metadata.managedFields`), after upstream's field manager and structured-merge-diff.
//!
//! Every write records which manager set which fields:
//! - ordinary creates, updates and patches call [`update_managed_fields`], which gives
//!   the writing manager (operation `Update`, e.g. `kubectl-client-side-apply`,
//!   `kubectl-edit`, `kube-controller-manager`) every field it added or changed and takes
//!   those fields from everyone else;
//! - server-side apply ([`server_side_apply`]) merges the applied configuration into the
//!   live object, fails with [`ApplyError::Conflicts`] when it would change fields
//!   another manager owns (unless forced, which transfers them), makes the applier the
//!   owner of exactly the fields of its configuration, and removes fields it applied
//!   before but no longer applies, unless someone else owns them.
//!
//! Field sets are stored in upstream's `FieldsV1` format ([`super::fieldpath`]); entries
//! are identified by manager, operation, subresource and (for `Update`) API version, and
//! sorted as upstream sorts them. As upstream, at most ten `Update` entries are kept
//! (older ones are merged into `ancient-changes`), metadata fields the server owns
//! (`name`, `uid`, `resourceVersion`…) are never recorded, and an apply by `kubectl`
//! may take over fields recorded in the client-side `last-applied-configuration`
//! annotation without conflicts, then keeps that annotation up to date.
//!
//! Not done: conversion between API versions (all entries are treated as describing the
//! object's current version) and the per-kind "reset fields" upstream ignores; here a
//! main-resource apply ignores `status` and a status-subresource apply ignores `spec`.

use serde_json::{Map, Value};

use super::fieldpath::{PathElement, Set, path_string};
use super::schema::{self, Node, Shape};
use super::typed;

/// The annotation client-side `kubectl apply` keeps its last applied configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// At most this many `Update` entries are kept.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";
const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

/// One field another manager owns that an apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager's name, e.g. `kubectl-client-side-apply`.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The API version of an `Update` entry (empty for `Apply`).
    pub api_version: String,
    /// The subresource the owner wrote through (empty for the main resource).
    pub subresource: String,
    /// The field, in upstream's path notation (`.spec.replicas`).
    pub field: String,
}

impl Conflict {
    /// The owner as upstream prints it: `"kube-controller-manager" using apps/v1`, or
    /// `"kubectl"` for an applier.
    pub fn manager_description(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out = format!("{out} with subresource {:?}", self.subresource);
        }
        if self.operation == UPDATE {
            out = format!("{out} using {}", self.api_version);
        }
        out
    }

    /// The `message` of this conflict's `StatusCause` (type `FieldManagerConflict`,
    /// field [`Conflict::field`]).
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager_description(),
            only.field
        );
    }
    let mut managers: Vec<(&str, &str, &str, &str)> = conflicts
        .iter()
        .map(|c| {
            (
                c.manager.as_str(),
                c.operation.as_str(),
                c.api_version.as_str(),
                c.subresource.as_str(),
            )
        })
        .collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for (manager, operation, api_version, subresource) in managers {
        let mut owned = conflicts.iter().filter(|c| {
            (
                c.manager.as_str(),
                c.operation.as_str(),
                c.api_version.as_str(),
                c.subresource.as_str(),
            ) == (manager, operation, api_version, subresource)
        });
        if let Some(first) = owned.next() {
            lines.push(format!("conflicts with {}:", first.manager_description()));
            lines.push(format!("- {}", first.field));
        }
        lines.extend(owned.map(|c| format!("- {}", c.field)));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Why a server-side apply failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (409 Conflict; one `StatusCause` of
    /// type `FieldManagerConflict` per conflict).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is not acceptable (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The applied configuration does not fit the type's schema; upstream answers 500
    /// with this message (`failed to create typed patch object (…): .spec.x: field not
    /// declared in schema`).
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    /// The HTTP status code upstream answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::BadRequest(_) => 400,
            ApplyError::Invalid(_) => 500,
        }
    }

    /// The `reason` of upstream's `Status` (empty for `StatusReasonUnknown`).
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflicts(_) => "Conflict",
            ApplyError::BadRequest(_) => "BadRequest",
            ApplyError::Invalid(_) => "",
        }
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: Option<String>,
    set: Set,
}

impl Entry {
    /// Upstream's identity: apply entries ignore the API version.
    fn id(&self) -> (String, String, String, String) {
        let version = if self.operation == APPLY {
            String::new()
        } else {
            self.api_version.clone()
        };
        (
            self.manager.clone(),
            self.operation.clone(),
            version,
            self.subresource.clone(),
        )
    }

    fn conflict(&self, field: String) -> Conflict {
        Conflict {
            manager: self.manager.clone(),
            operation: self.operation.clone(),
            api_version: if self.operation == APPLY {
                String::new()
            } else {
                self.api_version.clone()
            },
            subresource: self.subresource.clone(),
            field,
        }
    }
}

/// The managers of an object.
#[derive(Clone, Debug, Default)]
struct Managers(Vec<Entry>);

impl Managers {
    /// Decodes `metadata.managedFields`; `None` if any entry is malformed.
    fn decode(object: &Value) -> Option<Managers> {
        let entries = match object.pointer("/metadata/managedFields") {
            None | Some(Value::Null) => return Some(Managers::default()),
            Some(Value::Array(entries)) => entries,
            Some(_) => return None,
        };
        let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
        for entry in entries {
            let text = |key: &str| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let operation = text("operation");
            if operation != APPLY && operation != UPDATE {
                return None;
            }
            let api_version = text("apiVersion");
            if api_version.is_empty() || text("fieldsType") != "FieldsV1" {
                return None;
            }
            let set = match entry.get("fieldsV1") {
                None | Some(Value::Null) => Set::new(),
                Some(fields) => Set::from_fields_v1(fields).ok()?,
            };
            let decoded = Entry {
                manager: text("manager"),
                operation,
                api_version,
                subresource: text("subresource"),
                time: entry
                    .get("time")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                set,
            };
            // Later duplicates replace earlier ones, as upstream's map does.
            out.retain(|e| e.id() != decoded.id());
            out.push(decoded);
        }
        Some(Managers(out))
    }

    fn get(&self, id: &(String, String, String, String)) -> Option<&Entry> {
        self.0.iter().find(|e| &e.id() == id)
    }

    fn get_mut(&mut self, id: &(String, String, String, String)) -> Option<&mut Entry> {
        self.0.iter_mut().find(|e| &e.id() == id)
    }

    fn union_all(&self) -> Set {
        self.0.iter().fold(Set::new(), |acc, e| acc.union(&e.set))
    }

    fn drop_empty(&mut self) {
        self.0.retain(|e| !e.set.is_empty());
    }

    /// Merges the oldest `Update` entries into per-version `ancient-changes` entries so
    /// that at most [`MAX_UPDATE_MANAGERS`] remain.
    fn cap_updaters(&mut self) {
        let mut updaters: Vec<usize> = (0..self.0.len())
            .filter(|&i| self.0[i].operation != APPLY)
            .collect();
        if updaters.len() <= MAX_UPDATE_MANAGERS {
            return;
        }
        let seconds = |e: &Entry| e.time.as_deref().map(unix_seconds).unwrap_or(0);
        updaters.sort_by(|&a, &b| {
            let (ea, eb) = (&self.0[a], &self.0[b]);
            seconds(ea)
                .cmp(&seconds(eb))
                .then_with(|| ea.id().cmp(&eb.id()))
        });
        let mut remaining = updaters.len();
        let mut first_of_version: Vec<(String, usize)> = Vec::new();
        let mut removed: Vec<usize> = Vec::new();
        for &i in &updaters {
            if remaining <= MAX_UPDATE_MANAGERS {
                break;
            }
            let version = self.0[i].api_version.clone();
            let Some(first) = first_of_version
                .iter()
                .find(|(v, _)| *v == version)
                .map(|(_, f)| *f)
            else {
                first_of_version.push((version, i));
                continue;
            };
            let bucket_id = (
                ANCIENT_CHANGES.to_string(),
                UPDATE.to_string(),
                version.clone(),
                String::new(),
            );
            // Upstream moves the first entry of the version into the bucket when there
            // is no bucket yet, and otherwise leaves it alone.
            let bucket = match (0..self.0.len())
                .find(|&b| !removed.contains(&b) && self.0[b].id() == bucket_id)
            {
                Some(b) => b,
                None => {
                    let entry = &mut self.0[first];
                    entry.manager = ANCIENT_CHANGES.into();
                    entry.subresource = String::new();
                    first
                }
            };
            let set = self.0[i].set.clone();
            let time = self.0[i].time.clone();
            let bucket = &mut self.0[bucket];
            bucket.set = bucket.set.union(&set);
            bucket.time = time;
            removed.push(i);
            remaining -= 1;
        }
        let mut index = 0;
        self.0.retain(|_| {
            let keep = !removed.contains(&index);
            index += 1;
            keep
        });
    }

    /// The `managedFields` list, sorted as upstream sorts it; `None` when empty.
    fn encode(&self) -> Option<Value> {
        if self.0.is_empty() {
            return None;
        }
        let mut entries: Vec<&Entry> = self.0.iter().collect();
        let seconds = |e: &Entry| e.time.as_deref().map(unix_seconds).unwrap_or(0);
        entries.sort_by(|a, b| {
            a.operation
                .cmp(&b.operation)
                .then_with(|| seconds(a).cmp(&seconds(b)))
                .then_with(|| a.manager.cmp(&b.manager))
                .then_with(|| a.api_version.cmp(&b.api_version))
                .then_with(|| a.subresource.cmp(&b.subresource))
        });
        let list = entries
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), Value::String(e.manager.clone()));
                m.insert("operation".into(), Value::String(e.operation.clone()));
                m.insert("apiVersion".into(), Value::String(e.api_version.clone()));
                if let Some(time) = &e.time {
                    m.insert("time".into(), Value::String(time.clone()));
                }
                m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), Value::String(e.subresource.clone()));
                }
                Value::Object(m)
            })
            .collect();
        Some(Value::Array(list))
    }
}

fn unix_seconds(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// The fields the server owns, never recorded for any manager.
fn strip_server_fields(mut set: Set) -> Set {
    let f = |name: &str| PathElement::Field(name.into());
    set.remove(&[f("apiVersion")]);
    set.remove(&[f("kind")]);
    set.remove(&[f("metadata")]);
    for field in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.remove(&[f("metadata"), f(field)]);
    }
    set
}

/// Which top-level fields an apply through the main resource or a subresource ignores.
fn ignored(set: &Set, node: Node, subresource: &str) -> Set {
    let has_status = matches!(node.shape(), Shape::Struct { properties, .. } if properties.contains_key("status"));
    let f = |name: &str| PathElement::Field(name.into());
    let mut out = set.clone();
    let drop = |out: &mut Set, name: &str| {
        let mut s = Set::new();
        s.insert(&[f(name)]);
        if let Some(children) = out.with_prefix(&f(name)) {
            for path in children.paths() {
                let mut full = vec![f(name)];
                full.extend(path);
                s.insert(&full);
            }
        }
        *out = out.difference(&s);
    };
    match subresource {
        "" if has_status => drop(&mut out, "status"),
        "status" => drop(&mut out, "spec"),
        _ => {}
    }
    out
}

/// A copy of `object` without `metadata.managedFields`.
fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.shift_remove("managedFields");
    }
    object
}

/// Sets (or removes) `metadata.managedFields`.
fn with_managed_fields(mut object: Value, managers: &Managers) -> Value {
    set_managed_fields(&mut object, managers);
    object
}

/// Sets (or removes) `metadata.managedFields` in place.
fn set_managed_fields(object: &mut Value, managers: &Managers) {
    let encoded = managers.encode();
    if let Value::Object(map) = object {
        let metadata = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(metadata) = metadata {
            // Removed first, so the list ends metadata wherever it was before.
            metadata.shift_remove("managedFields");
            if let Some(list) = encoded {
                metadata.insert("managedFields".into(), list);
            }
        }
    }
}

/// Removes `null` members of objects at every depth (upstream's typed objects omit them).
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The definition of an object from its `apiVersion` and `kind`.
fn definition_of(object: &Value) -> Option<String> {
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    schema::definition_for(group, version, kind)
}

fn manager_name(manager: &str) -> String {
    if manager.is_empty() {
        "unknown".into()
    } else {
        manager.into()
    }
}

/// The outcome of comparing the old and new object for the other managers.
struct Ownership {
    conflicts: Vec<(usize, Set)>,
    removed: Set,
    changed: Set,
}

/// Upstream's `update`: what changed between `old` and `new`, which other managers'
/// fields that touches, and the removed fields.
fn changes(
    old: &Value,
    new: &Value,
    node: Node,
    managers: &Managers,
    workflow: Option<&(String, String, String, String)>,
    filter: impl Fn(Set) -> Set,
) -> Ownership {
    let cmp = typed::compare_materializing(old, new, node);
    let changed = filter(cmp.modified.union_with(cmp.added));
    let removed = filter(cmp.removed);
    let conflicts = managers
        .0
        .iter()
        .enumerate()
        .filter(|(_, e)| workflow.is_none_or(|w| &e.id() != w))
        .map(|(i, e)| (i, e.set.intersection(&changed)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    Ownership {
        conflicts,
        removed,
        changed,
    }
}

/// Records the field ownership of an ordinary write (create, update or non-apply patch)
/// and returns `new` with `metadata.managedFields` updated.
///
/// `old` is the stored object (`None` on create); `manager` the field manager (the
/// `fieldManager` parameter or the client's user agent; empty means `unknown`);
/// `operation` is `"Update"` for ordinary writes; `api_version` the version the request
/// used; `now` an RFC 3339 timestamp (`2024-01-01T00:00:00Z`). The manager takes every
/// field it added or changed; fields it removed are released by every manager. If the
/// client sent `managedFields: []` the history is reset; managedFields the client
/// changed are honoured, as upstream does.
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    now: &str,
) -> Value {
    update_managed_fields_for_subresource(old, new, manager, operation, api_version, None, now)
}

/// [`update_managed_fields`] for a write through a subresource (e.g. `status`); the
/// entry records the subresource and the client cannot change `managedFields` there.
pub fn update_managed_fields_for_subresource(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
) -> Value {
    let mut out = new.clone();
    record_managed_fields(
        old,
        &mut out,
        manager,
        operation,
        api_version,
        subresource,
        now,
    );
    out
}

/// [`update_managed_fields_for_subresource`] in place: sets `new`'s
/// `metadata.managedFields` without copying the object.
pub fn record_managed_fields(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let definition = definition_of(new);
    let node = Node::root(definition.as_deref());
    let subresource = subresource.unwrap_or_default();
    let old_managers = old.and_then(Managers::decode).unwrap_or_default();
    let mut managers = if !subresource.is_empty() {
        old_managers
    } else {
        match new.pointer("/metadata/managedFields") {
            Some(Value::Array(list))
                if list.is_empty() || (list.len() == 1 && list[0] == Value::Object(Map::new())) =>
            {
                Managers::default()
            }
            _ => match Managers::decode(new) {
                Some(m) if !m.0.is_empty() => m,
                _ => old_managers,
            },
        }
    };
    // `changes` leaves managedFields out of the comparison.
    let empty = Value::Object(Map::new());
    let own = changes(old.unwrap_or(&empty), new, node, &managers, None, |s| s);
    for (i, set) in &own.conflicts {
        managers.0[*i].set = managers.0[*i].set.difference(set);
    }
    if !own.removed.is_empty() {
        for entry in &mut managers.0 {
            entry.set = entry.set.difference(&own.removed);
        }
    }
    let current = strip_server_fields(own.changed);
    if !current.is_empty() {
        let entry = Entry {
            manager: manager_name(manager),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: Some(now.to_string()),
            set: current,
        };
        match managers.get_mut(&entry.id()) {
            Some(previous) => {
                previous.set = std::mem::take(&mut previous.set).union_with(entry.set);
                previous.api_version = entry.api_version;
                previous.time = entry.time;
            }
            None => managers.0.push(entry),
        }
    }
    managers.drop_empty();
    managers.cap_updaters();
    set_managed_fields(new, &managers);
}

/// Applies `applied` (the decoded `application/apply-patch+yaml` body) for `manager`.
///
/// `live` is the stored object (`None` creates); `force` takes conflicting fields from
/// their owners; `definition` names the type's OpenAPI definition (`None`: looked up
/// from `apiVersion`/`kind`, schemaless for custom resources); `now` is an RFC 3339
/// timestamp. Returns the merged object with `metadata.managedFields` updated.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    definition: Option<&str>,
    now: &str,
) -> Result<Value, ApplyError> {
    server_side_apply_for_subresource(live, applied, manager, force, definition, None, now)
}

/// [`server_side_apply`] through a subresource (e.g. `status`).
pub fn server_side_apply_for_subresource(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    definition: Option<&str>,
    subresource: Option<&str>,
    now: &str,
) -> Result<Value, ApplyError> {
    let Value::Object(config) = applied else {
        return Err(ApplyError::BadRequest(
            "the apply patch must be an object".into(),
        ));
    };
    let text = |key: &str| config.get(key).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let invalid_type = || {
        ApplyError::BadRequest(format!(
            "invalid object type: {group}/{version}, Kind={kind}"
        ))
    };
    if version.is_empty() || kind.is_empty() {
        return Err(invalid_type());
    }
    let definition = definition
        .map(str::to_string)
        .or_else(|| definition_of(applied));
    if let Some((g, v, k)) = definition.as_deref().and_then(schema::kind_of_definition)
        && (g, v, k) != (group, version, kind)
    {
        return Err(invalid_type());
    }
    if let Some(live_version) = live
        .and_then(|l| l.get("apiVersion"))
        .and_then(Value::as_str)
        && live_version != api_version
    {
        return Err(ApplyError::BadRequest(format!(
            "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {live_version}"
        )));
    }
    if config
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let node = Node::root(definition.as_deref());
    let errors = typed::validate(applied, node);
    if !errors.is_empty() {
        let text = |key: &str| {
            applied
                .pointer(&format!("/metadata/{key}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let details = if let [only] = errors.as_slice() {
            only.clone()
        } else {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            format!("errors:\n{}", lines.join("\n"))
        };
        return Err(ApplyError::Invalid(format!(
            "failed to create typed patch object ({}/{}; {group}/{version}, Kind={kind}): {details}",
            text("namespace"),
            text("name")
        )));
    }

    let subresource = subresource.unwrap_or_default();
    let filter = |set: Set| ignored(&set, node, subresource);
    let mut managers = live.and_then(Managers::decode).unwrap_or_default();
    let live_clean = match live {
        Some(live) => without_managed_fields(live),
        None => {
            let mut empty = Map::new();
            empty.insert("apiVersion".into(), Value::String(api_version.into()));
            empty.insert("kind".into(), Value::String(kind.into()));
            Value::Object(empty)
        }
    };
    let id = (
        manager_name(manager),
        APPLY.to_string(),
        String::new(),
        subresource.to_string(),
    );

    let merged = typed::merge(&live_clean, applied, node);
    let last_set = managers.get(&id).map(|e| e.set.clone()).unwrap_or_default();
    let config_set = filter(typed::field_set(applied, node));
    let previous_set = managers.get(&id).map(|e| e.set.clone());
    match managers.get_mut(&id) {
        Some(entry) => {
            entry.set = config_set.clone();
            entry.api_version = api_version.to_string();
        }
        None => managers.0.push(Entry {
            manager: id.0.clone(),
            operation: APPLY.into(),
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: None,
            set: config_set.clone(),
        }),
    }
    let mut merged = prune(merged, &managers, &last_set, node);

    let own = changes(&live_clean, &merged, node, &managers, Some(&id), filter);
    if !own.conflicts.is_empty() && !force {
        let mut conflicts: Vec<Conflict> = Vec::new();
        for (i, set) in &own.conflicts {
            let entry = &managers.0[*i];
            let allowed = if id.0 == "kubectl" {
                fields_from_last_applied(&live_clean, node)
            } else {
                None
            };
            conflicts.extend(
                set.paths()
                    .into_iter()
                    .filter(|path| !allowed.as_ref().is_some_and(|a| a.has(path)))
                    .map(|path| entry.conflict(path_string(&path))),
            );
        }
        if !conflicts.is_empty() {
            return Err(ApplyError::Conflicts(conflicts));
        }
    }
    for (i, set) in &own.conflicts {
        managers.0[*i].set = managers.0[*i].set.difference(set);
    }
    if !own.removed.is_empty() {
        for entry in managers.0.iter_mut().filter(|e| e.id() != id) {
            entry.set = entry.set.difference(&own.removed);
        }
    }
    if let Some(entry) = managers.get_mut(&id) {
        entry.set = strip_server_fields(std::mem::take(&mut entry.set));
        let changed_object = !crate::patch::fieldpath::values_equal(&live_clean, &merged);
        let changed_entry = previous_set.as_ref() != Some(&entry.set);
        if changed_object || changed_entry || entry.time.is_none() {
            entry.time = Some(now.to_string());
        }
    }
    managers.drop_empty();

    if id.0 == "kubectl" {
        refresh_last_applied(&mut merged, applied);
    }
    strip_nulls(&mut merged);
    Ok(with_managed_fields(merged, &managers))
}

/// Upstream's prune: fields the applier applied last time but not now are removed from
/// the merged object unless some manager (the applier's new configuration included)
/// still owns them.
fn prune(merged: Value, managers: &Managers, last_set: &Set, node: Node) -> Value {
    if last_set.is_empty() {
        return merged;
    }
    let named = |set: &Set| typed::with_named_fields(set, node);
    let pruned = typed::remove_items(&merged, &named(last_set), node);
    // Add back what anyone owns.
    let merged_set = named(&typed::field_set(&merged, node));
    let pruned_set = named(&typed::field_set(&pruned, node));
    let owned = named(&managers.union_all());
    let pruned = typed::remove_items(
        &merged,
        &merged_set.difference(&pruned_set.union(&owned)),
        node,
    );
    // Add back what the applier never owned.
    let pruned_set = named(&typed::field_set(&pruned, node));
    let last = named(last_set);
    typed::remove_items(
        &merged,
        &merged_set.difference(&pruned_set).intersection(&last),
        node,
    )
}

/// The fields of the client-side apply annotation that still hold their applied values
/// in the live object: `kubectl` may take these over from other managers without
/// conflicts (upgrading from client-side to server-side apply).
fn fields_from_last_applied(live: &Value, node: Node) -> Option<Set> {
    let annotation = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()?;
    if annotation.is_empty() {
        return None;
    }
    let last_applied: Value = serde_json::from_str(annotation).ok()?;
    if last_applied.get("apiVersion") != live.get("apiVersion") {
        return None;
    }
    let set = typed::field_set(&last_applied, node);
    let cmp = typed::compare(&last_applied, &typed::materialized(live, node), node);
    Some(
        set.difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// Keeps an existing client-side apply annotation in step with a server-side apply by
/// `kubectl`.
fn refresh_last_applied(object: &mut Value, applied: &Value) {
    let has_annotation = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|a| !a.is_empty());
    if !has_annotation {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(annotations)) = config.pointer_mut("/metadata/annotations") {
        annotations.shift_remove(LAST_APPLIED_ANNOTATION);
    }
    let encoded = serde_json::to_string(&config).unwrap_or_default();
    if let Some(Value::Object(annotations)) = object.pointer_mut("/metadata/annotations") {
        annotations.insert(
            LAST_APPLIED_ANNOTATION.into(),
            Value::String(format!("{encoded}\n")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2024-01-01T00:00:00Z";
    const T1: &str = "2024-01-01T00:01:00Z";
    const T2: &str = "2024-01-01T00:02:00Z";

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}
                }
            }
        })
    }

    fn entries(object: &Value) -> Vec<(String, String, String)> {
        object["metadata"]["managedFields"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|e| {
                        let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                        (s("manager"), s("operation"), s("time"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn fields_of<'a>(object: &'a Value, manager: &str) -> &'a Value {
        object["metadata"]["managedFields"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["manager"] == manager))
            .map(|e| &e["fieldsV1"])
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn create_records_an_update_entry_in_upstream_format() {
        let created = update_managed_fields(
            None,
            &deployment(1, "nginx"),
            "kubectl-create",
            UPDATE,
            "apps/v1",
            T0,
        );
        let mf = &created["metadata"]["managedFields"];
        assert_eq!(
            mf,
            &json!([{
                "manager": "kubectl-create",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": T0,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                                ".": {}, "f:image": {}, "f:name": {}, "f:resources": {}
                            }}}
                        }
                    }
                }
            }])
        );
        // Entry keys serialize in upstream's order.
        assert!(mf.to_string().starts_with(
            "[{\"manager\":\"kubectl-create\",\"operation\":\"Update\",\"apiVersion\""
        ));
    }

    #[test]
    fn updates_move_ownership_between_managers() {
        let created = update_managed_fields(
            None,
            &deployment(1, "nginx"),
            "kubectl-client-side-apply",
            UPDATE,
            "apps/v1",
            T0,
        );
        // The controller manager scales; it takes .spec.replicas.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(3);
        let scaled = update_managed_fields(
            Some(&created),
            &scaled,
            "kube-controller-manager",
            UPDATE,
            "apps/v1",
            T1,
        );
        assert_eq!(
            fields_of(&scaled, "kube-controller-manager"),
            &json!({"f:spec": {"f:replicas": {}}})
        );
        assert!(
            fields_of(&scaled, "kubectl-client-side-apply")
                .pointer("/f:spec/f:replicas")
                .is_none()
        );
        assert_eq!(
            entries(&scaled),
            [
                (
                    "kubectl-client-side-apply".to_string(),
                    UPDATE.to_string(),
                    T0.to_string()
                ),
                (
                    "kube-controller-manager".to_string(),
                    UPDATE.to_string(),
                    T1.to_string()
                ),
            ]
        );
        // A write that changes nothing keeps the entries and their times.
        let same = update_managed_fields(
            Some(&scaled),
            &scaled,
            "kubectl-edit",
            UPDATE,
            "apps/v1",
            T2,
        );
        assert_eq!(
            same["metadata"]["managedFields"],
            scaled["metadata"]["managedFields"]
        );
        // Removing a label releases it.
        let mut unlabelled = scaled.clone();
        unlabelled["metadata"]["labels"] = json!({});
        let unlabelled = update_managed_fields(
            Some(&scaled),
            &unlabelled,
            "kubectl-edit",
            UPDATE,
            "apps/v1",
            T2,
        );
        assert!(
            fields_of(&unlabelled, "kubectl-client-side-apply")
                .pointer("/f:metadata/f:labels/f:app")
                .is_none()
        );
        // Clients sending managedFields: [] reset the history.
        let mut reset = scaled.clone();
        reset["metadata"]["managedFields"] = json!([]);
        reset["spec"]["paused"] = json!(true);
        let reset =
            update_managed_fields(Some(&scaled), &reset, "kubectl-edit", UPDATE, "apps/v1", T2);
        assert_eq!(
            entries(&reset),
            [(
                "kubectl-edit".to_string(),
                UPDATE.to_string(),
                T2.to_string()
            )]
        );
        // Status writes record the subresource.
        let mut status = scaled.clone();
        status["status"] = json!({"replicas": 3});
        let status = update_managed_fields_for_subresource(
            Some(&scaled),
            &status,
            "kube-controller-manager",
            UPDATE,
            "apps/v1",
            Some("status"),
            T2,
        );
        let entry = status["metadata"]["managedFields"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["subresource"] == "status"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    }

    #[test]
    fn update_managers_are_capped() {
        // Twelve managers each add their own key; the three oldest end up in one
        // `ancient-changes` entry (the first two merged, then the third), leaving ten.
        let mut object =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
        for i in 1..=12 {
            let mut next = object.clone();
            next["data"][format!("k{i:02}")] = json!("v");
            let time = format!("2024-01-01T00:00:{i:02}Z");
            object = update_managed_fields(
                Some(&object),
                &next,
                &format!("m{i:02}"),
                UPDATE,
                "v1",
                &time,
            );
        }
        let got: Vec<(String, String)> = entries(&object).into_iter().map(|e| (e.0, e.2)).collect();
        let mut want = vec![(
            "ancient-changes".to_string(),
            "2024-01-01T00:00:03Z".to_string(),
        )];
        want.extend((4..=12).map(|i| (format!("m{i:02}"), format!("2024-01-01T00:00:{i:02}Z"))));
        assert_eq!(got, want);
        assert_eq!(
            fields_of(&object, "ancient-changes"),
            &json!({"f:data": {"f:k01": {}, "f:k02": {}, "f:k03": {}}})
        );
    }

    #[test]
    fn apply_create_update_and_removal() {
        let config = deployment(2, "nginx:1");
        let created = server_side_apply(None, &config, "helm", false, None, T0).unwrap();
        assert_eq!(created["spec"], config["spec"]);
        assert_eq!(
            entries(&created),
            [("helm".to_string(), APPLY.to_string(), T0.to_string())]
        );
        assert_eq!(
            fields_of(&created, "helm").pointer("/f:spec/f:template/f:spec/f:containers"),
            Some(&json!({"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}))
        );
        assert!(
            created["metadata"]["managedFields"][0]
                .get("apiVersion")
                .is_some()
        );

        // Re-applying without the label and with a new image removes the label it owned.
        let mut config2 = deployment(2, "nginx:2");
        config2["metadata"]
            .as_object_mut()
            .map(|m| m.shift_remove("labels"));
        let updated = server_side_apply(Some(&created), &config2, "helm", false, None, T1).unwrap();
        assert_eq!(
            updated["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        assert!(updated["metadata"].get("labels").is_none(), "{updated:#}");

        // A field another manager also owns survives removal from the config.
        let mut labelled = updated.clone();
        labelled["metadata"]["labels"] = json!({"team": "a"});
        let labelled = update_managed_fields(
            Some(&updated),
            &labelled,
            "kubectl-label",
            UPDATE,
            "apps/v1",
            T1,
        );
        let mut config3 = config2.clone();
        config3["metadata"]["labels"] = json!({"team": "a"});
        let both = server_side_apply(Some(&labelled), &config3, "helm", false, None, T2).unwrap();
        let without = server_side_apply(Some(&both), &config2, "helm", false, None, T2).unwrap();
        assert_eq!(without["metadata"]["labels"], json!({"team": "a"}));

        // Removing a container from the config removes it from the object.
        let mut two = deployment(2, "nginx:2");
        if let Some(containers) = two["spec"]["template"]["spec"]["containers"].as_array_mut() {
            containers.push(json!({"name": "side", "image": "busybox"}));
        }
        let with_side = server_side_apply(Some(&created), &two, "helm", false, None, T1).unwrap();
        assert_eq!(
            with_side["spec"]["template"]["spec"]["containers"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        let one = server_side_apply(
            Some(&with_side),
            &deployment(2, "nginx:2"),
            "helm",
            false,
            None,
            T2,
        )
        .unwrap();
        assert_eq!(
            one["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx:2"}])
        );
    }

    #[test]
    fn apply_conflicts_and_force() {
        let created =
            server_side_apply(None, &deployment(2, "nginx:1"), "kubectl", false, None, T0).unwrap();
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        let scaled = update_managed_fields(
            Some(&created),
            &scaled,
            "kubectl-client-side-apply",
            UPDATE,
            "apps/v1",
            T1,
        );

        let err = server_side_apply(
            Some(&scaled),
            &deployment(3, "nginx:1"),
            "kubectl",
            false,
            None,
            T2,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        assert_eq!((err.status_code(), err.reason()), (409, "Conflict"));
        let ApplyError::Conflicts(conflicts) = &err else {
            unreachable!()
        };
        assert_eq!(
            conflicts[0].cause_message(),
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        );
        assert_eq!(conflicts[0].field, ".spec.replicas");

        // Applying the value already there is not a conflict: ownership is shared.
        let shared = server_side_apply(
            Some(&scaled),
            &deployment(5, "nginx:1"),
            "kubectl",
            false,
            None,
            T2,
        )
        .unwrap();
        assert!(
            fields_of(&shared, "kubectl")
                .pointer("/f:spec/f:replicas")
                .is_some()
        );
        assert!(
            fields_of(&shared, "kubectl-client-side-apply")
                .pointer("/f:spec/f:replicas")
                .is_some()
        );

        // Force takes the field.
        let forced = server_side_apply(
            Some(&scaled),
            &deployment(3, "nginx:1"),
            "kubectl",
            true,
            None,
            T2,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(fields_of(&forced, "kubectl-client-side-apply").is_null());
        assert!(
            fields_of(&forced, "kubectl")
                .pointer("/f:spec/f:replicas")
                .is_some()
        );

        // Updates never conflict: the controller manager silently takes the field.
        let mut rescaled = forced.clone();
        rescaled["spec"]["replicas"] = json!(1);
        let rescaled = update_managed_fields(
            Some(&forced),
            &rescaled,
            "kube-controller-manager",
            UPDATE,
            "apps/v1",
            T2,
        );
        assert!(
            fields_of(&rescaled, "kubectl")
                .pointer("/f:spec/f:replicas")
                .is_none()
        );
        assert_eq!(
            fields_of(&rescaled, "kube-controller-manager"),
            &json!({"f:spec": {"f:replicas": {}}})
        );

        // Two appliers conflicting on two fields.
        let mut other = deployment(7, "nginx:9");
        other["metadata"]
            .as_object_mut()
            .map(|m| m.shift_remove("labels"));
        let err = server_side_apply(Some(&created), &other, "argo", false, None, T2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
        );
    }

    #[test]
    fn kubectl_takes_over_client_side_applied_fields() {
        let mut config = deployment(2, "nginx:1");
        let annotation = serde_json::to_string(&config).unwrap_or_default();
        config["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: annotation });
        let live = update_managed_fields(
            None,
            &config,
            "kubectl-client-side-apply",
            UPDATE,
            "apps/v1",
            T0,
        );
        // kubectl apply --server-side with a new replica count: no conflict for "kubectl".
        let applied = server_side_apply(
            Some(&live),
            &deployment(4, "nginx:1"),
            "kubectl",
            false,
            None,
            T1,
        )
        .unwrap();
        assert_eq!(applied["spec"]["replicas"], 4);
        let refreshed: Value = applied["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        assert_eq!(refreshed["spec"]["replicas"], 4);
        // Any other manager name still conflicts.
        assert!(matches!(
            server_side_apply(
                Some(&live),
                &deployment(4, "nginx:1"),
                "helm",
                false,
                None,
                T1
            ),
            Err(ApplyError::Conflicts(_))
        ));
    }

    #[test]
    fn apply_errors() {
        let cases: Vec<(Value, Option<&str>, u16, &str)> = vec![
            (
                json!({"metadata": {"name": "x"}}),
                None,
                400,
                "invalid object type: /, Kind=",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "managedFields": [{}]}}),
                None,
                400,
                "metadata.managedFields must be nil",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": "d"}, "spec": {"replicaz": 1}}),
                None,
                500,
                "failed to create typed patch object (d/x; apps/v1, Kind=Deployment): .spec.replicaz: field not declared in schema",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}),
                Some("io.k8s.api.apps.v1.Deployment"),
                400,
                "invalid object type: /v1, Kind=Pod",
            ),
            (
                json!("nope"),
                None,
                400,
                "the apply patch must be an object",
            ),
        ];
        for (config, definition, code, message) in cases {
            let err = server_side_apply(None, &config, "m", false, definition, T0).unwrap_err();
            assert_eq!(err.status_code(), code, "{message}");
            assert_eq!(err.to_string(), message);
        }
        let live = deployment(1, "a");
        let mut v1beta1 = deployment(1, "a");
        v1beta1["apiVersion"] = json!("apps/v1beta1");
        let err = server_side_apply(
            Some(&live),
            &v1beta1,
            "m",
            false,
            Some("io.k8s.api.apps.v1.Deployment"),
            T0,
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn malformed_input_never_panics() {
        let live = server_side_apply(None, &deployment(1, "a"), "m", false, None, T0).unwrap();
        let mut broken_live = live.clone();
        broken_live["metadata"]["managedFields"] = json!([{"manager": 1, "fieldsV1": "x"}]);
        broken_live["spec"]["template"]["spec"]["containers"] = json!([null, 1, {"image": "x"}]);
        let mut configs = Vec::new();
        for containers in [
            json!("x"),
            json!([null]),
            json!([{"name": {"a": 1}}]),
            json!([[1]]),
        ] {
            let mut c = deployment(1, "a");
            c["spec"]["template"]["spec"]["containers"] = containers;
            configs.push(c);
        }
        let mut finalizers = deployment(1, "a");
        finalizers["metadata"]["finalizers"] = json!([{"a": 1}, null]);
        configs.push(finalizers);
        for config in &configs {
            for l in [&live, &broken_live] {
                let _ = server_side_apply(Some(l), config, "m", false, None, T1);
                let _ = update_managed_fields(Some(l), config, "m", UPDATE, "apps/v1", T1);
                let _ = update_managed_fields(Some(config), l, "m", UPDATE, "apps/v1", T1);
            }
        }
        // A broken managedFields list is treated as empty rather than failing writes.
        let updated = update_managed_fields(Some(&broken_live), &live, "m2", UPDATE, "apps/v1", T1);
        assert!(updated["metadata"]["managedFields"].is_array());
    }

    #[test]
    fn custom_resources_apply_schemaless() {
        let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 1, "tags": ["a"], "nested": {"x": 1, "y": 2}}});
        let created = server_side_apply(None, &cr, "op", false, None, T0).unwrap();
        assert_eq!(
            fields_of(&created, "op"),
            &json!({"f:spec": {"f:nested": {"f:x": {}, "f:y": {}}, "f:size": {}, "f:tags": {}}})
        );
        let mut smaller = cr.clone();
        smaller["spec"]["nested"] = json!({"x": 1});
        let updated = server_side_apply(Some(&created), &smaller, "op", false, None, T1).unwrap();
        assert_eq!(updated["spec"]["nested"], json!({"x": 1}));
    }
}
