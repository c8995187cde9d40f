//! Field paths and field sets as server-side apply records them in
//! `metadata.managedFields[].fieldsV1` (upstream's `FieldsV1` format, from
//! structured-merge-diff).
//!
//! A path is a list of elements: a struct or map field (`f:replicas`), a list item
//! identified by its key fields (`k:{"name":"web"}`), a set item identified by its
//! value (`v:"finalizer.example.com"`) or, rarely, an index (`i:0`). A set of paths is a
//! tree: in `FieldsV1` every node is an object whose keys are serialized path elements,
//! and a `"."` key marks a node that is itself a member of the set as well as the parent
//! of others.
//!
//! Elements are ordered as upstream orders them (fields, then keys, then values, then
//! indices), so `fieldsV1` serializes byte for byte as upstream's does.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// A malformed `fieldsV1` document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("FieldsV1 must be a JSON object")]
    NotAnObject,
    #[error("key must be 2 characters long: {0:?}")]
    TooShort(String),
    #[error("missing colon: {0}")]
    MissingColon(String),
    #[error("invalid path element {element:?}: {reason}")]
    Invalid { element: String, reason: String },
}

/// One step of a field path.
#[derive(Clone, Debug)]
pub enum PathElement {
    /// A field of a struct or a key of a map.
    Field(String),
    /// An item of an associative list, by its key fields (sorted by name).
    Key(Vec<(String, Value)>),
    /// An item of a set, by its value.
    Value(Value),
    /// An item of a list by position.
    Index(i64),
}

/// A path from the root of an object.
pub type Path = Vec<PathElement>;

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The `FieldsV1` key of this element, e.g. `f:spec` or `k:{"name":"web"}`.
    pub fn serialize(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{}:{}", go_json_string(name), go_json(value)))
                    .collect();
                format!("k:{{{}}}", parts.join(","))
            }
            PathElement::Value(value) => format!("v:{}", go_json(value)),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key. `Ok(None)` for element types this version does not know
    /// (upstream drops those).
    pub fn parse(key: &str) -> Result<Option<PathElement>, FieldsError> {
        let invalid = |reason: String| FieldsError::Invalid {
            element: key.to_string(),
            reason,
        };
        let bytes = key.as_bytes();
        if bytes.len() < 2 {
            return Err(FieldsError::TooShort(key.to_string()));
        }
        if bytes[1] != b':' {
            return Err(FieldsError::MissingColon(key.to_string()));
        }
        let rest = &key[2..];
        Ok(Some(match bytes[0] {
            b'f' => PathElement::Field(rest.to_string()),
            b'v' => {
                PathElement::Value(serde_json::from_str(rest).map_err(|e| invalid(e.to_string()))?)
            }
            b'k' => {
                let Value::Object(map) =
                    serde_json::from_str(rest).map_err(|e| invalid(e.to_string()))?
                else {
                    return Err(invalid("key is not an object".into()));
                };
                let mut fields: Vec<(String, Value)> = map.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                PathElement::Key(fields)
            }
            b'i' => PathElement::Index(
                rest.parse()
                    .map_err(|e: std::num::ParseIntError| invalid(e.to_string()))?,
            ),
            _ => return Ok(None),
        }))
    }
}

/// Upstream's human-readable form of a path, as in conflict messages:
/// `.spec.template.spec.containers[name="web"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

impl std::fmt::Display for PathElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={}", smd_string(value)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(value) => write!(f, "[={}]", smd_string(value)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Upstream's total order of JSON values: numbers (compared by value), strings,
/// booleans, lists, maps, null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (a, b) in x.iter().zip(y) {
                let c = compare_values(a, b);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<(&String, &Value)> = x.iter().collect();
            let mut ys: Vec<(&String, &Value)> = y.iter().collect();
            xs.sort_by(|a, b| a.0.cmp(b.0));
            ys.sort_by(|a, b| a.0.cmp(b.0));
            for ((ak, av), (bk, bv)) in xs.iter().zip(&ys) {
                let c = ak.cmp(bk).then_with(|| compare_values(av, bv));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => rank(a).cmp(&rank(b)),
    }
}

/// JSON equality with numbers compared by value, as upstream compares values.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

/// A value as structured-merge-diff prints it in paths: strings quoted, numbers and
/// booleans bare.
fn smd_string(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::String(_) => value.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(smd_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", smd_string(v)))
            .collect(),
        other => other.to_string(),
    }
}

/// JSON as Go's encoder writes it (HTML-sensitive characters escaped), so that keys of
/// `fieldsV1` match upstream's byte for byte.
fn go_json(value: &Value) -> String {
    match value {
        Value::String(s) => go_json_string(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_json).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}:{}", go_json_string(k), go_json(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

fn go_json_string(s: &str) -> String {
    let encoded = Value::String(s.to_string()).to_string();
    encoded
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// A set of field paths, stored as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    /// Elements whose path (this node's path plus the element) is in the set.
    members: BTreeSet<PathElement>,
    /// Subtrees below elements.
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    /// The empty set.
    pub fn new() -> Set {
        Set::default()
    }

    /// True if the set has no paths.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    /// Adds a path (the empty path is ignored).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// True if the path is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// True if `element` alone is a member.
    pub fn has_member(&self, element: &PathElement) -> bool {
        self.members.contains(element)
    }

    /// The paths below `element`, relative to it (empty if none).
    pub fn with_prefix(&self, element: &PathElement) -> Option<&Set> {
        self.children.get(element).filter(|c| !c.is_empty())
    }

    /// The direct members.
    pub fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    /// The subtrees.
    pub fn children(&self) -> impl Iterator<Item = (&PathElement, &Set)> {
        self.children.iter()
    }

    pub(crate) fn add_member(&mut self, element: PathElement) {
        self.members.insert(element);
    }

    pub(crate) fn child_mut(&mut self, element: PathElement) -> &mut Set {
        self.children.entry(element).or_default()
    }

    fn prune_empty(mut self) -> Set {
        self.children.retain(|_, c| !c.is_empty());
        self
    }

    /// Paths in either set.
    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out.prune_empty()
    }

    /// Paths in either set, consuming both (no copies of either).
    pub fn union_with(mut self, mut other: Set) -> Set {
        if self.is_empty() {
            return other;
        }
        if other.is_empty() {
            return self;
        }
        if self.members.len() < other.members.len() {
            std::mem::swap(&mut self.members, &mut other.members);
        }
        self.members.append(&mut other.members);
        for (pe, child) in other.children {
            let merged = match self.children.remove(&pe) {
                Some(mine) => mine.union_with(child),
                None => child,
            };
            self.children.insert(pe, merged);
        }
        self.prune_empty()
    }

    /// Removes one path (not the paths below it), as `difference` with a set of that
    /// path does, in place.
    pub fn remove(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Paths in `self` but not in `other` (a member of `other` does not remove the
    /// paths below it, as upstream's `Difference`).
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .map(|(pe, child)| match other.children.get(pe) {
                Some(theirs) => (pe.clone(), child.difference(theirs)),
                None => (pe.clone(), child.clone()),
            })
            .collect();
        Set { members, children }.prune_empty()
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                other
                    .children
                    .get(pe)
                    .map(|theirs| (pe.clone(), child.intersection(theirs)))
            })
            .collect();
        Set { members, children }.prune_empty()
    }

    /// Every path, in upstream's iteration order (members before subtrees, each sorted).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for member in &self.members {
            let mut path = prefix.clone();
            path.push(member.clone());
            out.push(path);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` document of the set.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !(self.members.is_empty() && self.children.is_empty()) {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        // Merge the two sorted sequences, as upstream does.
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let next_member = members.peek().copied();
            let next_child = children.peek().map(|(pe, _)| *pe);
            match (next_member, next_child) {
                (None, None) => break,
                (Some(m), c) if c.is_none_or(|c| m < c) => {
                    out.insert(m.serialize(), Value::Object(Map::new()));
                    members.next();
                }
                (m, Some(c)) if m.is_none_or(|m| c < m) => {
                    if let Some((_, child)) = children.next() {
                        out.insert(c.serialize(), Value::Object(child.emit(false)));
                    }
                }
                (Some(m), Some(_)) => {
                    if let Some((_, child)) = children.next() {
                        out.insert(m.serialize(), Value::Object(child.emit(true)));
                    }
                    members.next();
                }
                _ => break,
            }
        }
        out
    }

    /// Parses a `fieldsV1` document.
    pub fn from_fields_v1(fields: &Value) -> Result<Set, FieldsError> {
        let Value::Object(map) = fields else {
            return Err(FieldsError::NotAnObject);
        };
        Ok(Set::read(map)?.0.unwrap_or_default())
    }

    /// Returns the subtree (if any) and whether the node itself is a member.
    fn read(map: &Map<String, Value>) -> Result<(Option<Set>, bool), FieldsError> {
        let mut set: Option<Set> = None;
        let mut is_member = false;
        for (key, value) in map {
            if key == "." {
                is_member = true;
                continue;
            }
            let Some(pe) = PathElement::parse(key)? else {
                continue;
            };
            let Value::Object(child) = value else {
                return Err(FieldsError::NotAnObject);
            };
            let (grandchildren, child_is_member) = Set::read(child)?;
            if child_is_member {
                set.get_or_insert_with(Set::new).members.insert(pe.clone());
            }
            if let Some(grandchildren) = grandchildren {
                set.get_or_insert_with(Set::new)
                    .children
                    .insert(pe, grandchildren);
            }
        }
        if set.is_none() {
            is_member = true;
        }
        Ok((set, is_member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    fn k(name: &str, value: Value) -> PathElement {
        PathElement::Key(vec![(name.into(), value)])
    }

    #[test]
    fn path_elements_round_trip() {
        let cases = [
            (f("replicas"), "f:replicas", ".replicas"),
            (
                k("name", json!("web")),
                "k:{\"name\":\"web\"}",
                "[name=\"web\"]",
            ),
            (
                PathElement::Key(vec![
                    ("containerPort".into(), json!(80)),
                    ("protocol".into(), json!("TCP")),
                ]),
                "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
                "[containerPort=80,protocol=\"TCP\"]",
            ),
            (
                PathElement::Value(json!("a.example.com/x")),
                "v:\"a.example.com/x\"",
                "[=\"a.example.com/x\"]",
            ),
            (
                PathElement::Value(json!("<&>")),
                "v:\"\\u003c\\u0026\\u003e\"",
                "[=\"<&>\"]",
            ),
            (PathElement::Index(3), "i:3", "[3]"),
        ];
        for (pe, serialized, shown) in cases {
            assert_eq!(pe.serialize(), serialized);
            assert_eq!(PathElement::parse(serialized), Ok(Some(pe.clone())));
            assert_eq!(pe.to_string(), shown);
        }
        assert_eq!(PathElement::parse("x:whatever"), Ok(None));
        assert!(PathElement::parse("f").is_err());
        assert!(PathElement::parse("fx").is_err());
        assert!(PathElement::parse("k:[1]").is_err());
        assert!(PathElement::parse("v:{").is_err());
        assert!(PathElement::parse("i:x").is_err());
    }

    #[test]
    fn ordering_matches_upstream() {
        let mut elements = [
            PathElement::Index(0),
            PathElement::Value(json!("a")),
            k("name", json!("b")),
            f("z"),
            PathElement::Value(json!(2)),
            f("a"),
            k("name", json!("a")),
            PathElement::Value(json!(1.5)),
        ];
        elements.sort();
        let shown: Vec<String> = elements.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                ".a",
                ".z",
                "[name=\"a\"]",
                "[name=\"b\"]",
                "[=1.5]",
                "[=2]",
                "[=\"a\"]",
                "[0]"
            ]
        );
    }

    #[test]
    fn fields_v1_round_trip_and_set_algebra() {
        let fields = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}
            }
        });
        let set = Set::from_fields_v1(&fields).unwrap();
        assert_eq!(set.to_fields_v1().to_string(), fields.to_string());
        let web = k("name", json!("web"));
        let image = vec![
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            web.clone(),
            f("image"),
        ];
        assert!(set.has(&image));
        assert!(set.has(&[f("metadata"), f("labels")]));
        assert!(!set.has(&[f("metadata")]));
        let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(
            paths,
            [
                ".metadata.labels",
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"web\"]",
                ".spec.template.spec.containers[name=\"web\"].image",
                ".spec.template.spec.containers[name=\"web\"].name",
            ]
        );

        let mut other = Set::new();
        other.insert(&image);
        other.insert(&[f("spec"), f("paused")]);
        let diff = set.difference(&other);
        assert!(!diff.has(&image) && diff.has(&[f("spec"), f("replicas")]));
        let both = set.intersection(&other);
        assert_eq!(both.paths(), vec![image.clone()]);
        let all = set.union(&other);
        assert!(all.has(&[f("spec"), f("paused")]) && all.has(&image));
        assert!(set.difference(&set).is_empty());
        assert_eq!(Set::from_fields_v1(&json!({})).unwrap(), Set::new());
        assert_eq!(
            Set::from_fields_v1(&json!([])),
            Err(FieldsError::NotAnObject)
        );
    }
}

#[cfg(test)]
mod owned_ops_tests {
    use super::*;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    fn set(paths: &[&[&str]]) -> Set {
        let mut s = Set::new();
        for p in paths {
            s.insert(&p.iter().map(|n| f(n)).collect::<Vec<_>>());
        }
        s
    }

    #[test]
    fn owned_union_and_remove_match_the_copying_operations() {
        let sets = [
            set(&[]),
            set(&[&["a"], &["b", "c"], &["b", "d", "e"]]),
            set(&[&["b"], &["b", "c"], &["x", "y"]]),
            set(&[
                &["metadata"],
                &["metadata", "name"],
                &["metadata", "labels", "app"],
            ]),
        ];
        for a in &sets {
            for b in &sets {
                assert_eq!(a.clone().union_with(b.clone()), a.union(b), "{a:?} + {b:?}");
            }
        }
        for a in &sets {
            for path in [
                &["b", "c"][..],
                &["metadata"],
                &["metadata", "name"],
                &["b", "d", "e"],
            ] {
                let path: Vec<PathElement> = path.iter().map(|n| f(n)).collect();
                let mut removed = a.clone();
                removed.remove(&path);
                let mut one = Set::new();
                one.insert(&path);
                assert_eq!(removed, a.difference(&one), "{a:?} - {path:?}");
            }
        }
    }
}
