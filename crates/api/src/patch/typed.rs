//! Schema-aware operations on objects for server-side apply, after upstream's
//! structured-merge-diff `typed` package: the field set of an object, the comparison of
//! two objects, merging an applied configuration into a live object and removing a set
//! of fields.
//!
//! Positions are typed by [`Node`]s: structs and maps are granular unless marked
//! atomic, lists are atomic, sets or maps keyed by some fields, and positions without a
//! schema are deduced from the value (maps granular, lists atomic).

use serde_json::{Map, Value};

use super::fieldpath::{Path, PathElement, Set, values_equal};
use super::meta;
use super::schema::{ListKind, Node, Shape};
use super::zero::zero_fields;

/// What a position holds, from its schema and its value.
#[derive(Clone, Copy)]
enum Kind {
    /// Struct (declared fields) or map (arbitrary keys).
    Map {
        node: Node,
        atomic: bool,
    },
    List {
        items: Node,
        kind: ListKind,
    },
    Scalar,
}

impl Kind {
    fn of(node: Node, value: Option<&Value>) -> Kind {
        match (node.shape(), value) {
            (
                Shape::Struct { atomic, .. } | Shape::Map { atomic, .. },
                None | Some(Value::Object(_) | Value::Null),
            ) => Kind::Map { node, atomic },
            (Shape::List { items, kind }, None | Some(Value::Array(_) | Value::Null)) => {
                Kind::List { items, kind }
            }
            (Shape::Deduced, Some(Value::Object(_))) => Kind::Map {
                node,
                atomic: false,
            },
            (Shape::Deduced, Some(Value::Array(_))) => Kind::List {
                items: Node::DEDUCED,
                kind: ListKind::Atomic,
            },
            _ => Kind::Scalar,
        }
    }

    fn same_as(&self, other: &Kind) -> bool {
        matches!(
            (self, other),
            (Kind::Map { .. }, Kind::Map { .. })
                | (Kind::List { .. }, Kind::List { .. })
                | (Kind::Scalar, Kind::Scalar)
        )
    }
}

/// The schema position of field `key` in a map or struct position, and whether it is a
/// named field (a struct's declared property, or any key of a schemaless object, which
/// stands for a custom resource's structural schema) rather than a map key.
fn field_node(node: Node, key: &str) -> (Node, bool) {
    match node.shape() {
        Shape::Struct { .. } => match node.field(key) {
            Some(child) => (child, true),
            None => (Node::DEDUCED, false),
        },
        Shape::Map { values, .. } => (values, false),
        _ => (Node::DEDUCED, true),
    }
}

/// A copy of `value` with the zero-valued fields upstream's typed objects carry filled
/// in (see [`super::zero`]), for comparisons.
pub(crate) fn materialized(value: &Value, node: Node) -> Value {
    let mut value = value.clone();
    materialize(&mut value, node);
    value
}

fn materialize(value: &mut Value, node: Node) {
    match (node.shape(), value) {
        (Shape::Struct { name, .. }, Value::Object(map)) => {
            for (_, property, zero) in zero_fields(name) {
                if !map.contains_key(*property) {
                    map.insert(property.to_string(), zero.value());
                }
            }
            for (key, child) in map.iter_mut() {
                if let Some(child_node) = node.field(key) {
                    materialize(child, child_node);
                }
            }
        }
        (Shape::Map { values, .. }, Value::Object(map)) => {
            map.values_mut().for_each(|v| materialize(v, values))
        }
        (Shape::List { items, .. }, Value::Array(list)) => {
            list.iter_mut().for_each(|v| materialize(v, items))
        }
        _ => {}
    }
}

/// The path element identifying a list item, or why it has none.
pub(crate) fn item_element(
    item: &Value,
    items: Node,
    kind: ListKind,
) -> Result<PathElement, String> {
    match kind {
        ListKind::Map(keys) => {
            let Value::Object(map) = item else {
                return Err(if item.is_null() {
                    "associative list with keys may not have a null element".into()
                } else {
                    "associative list with keys may not have non-map elements".into()
                });
            };
            let mut fields = Vec::with_capacity(keys.len());
            for key in keys {
                let value = match map.get(*key) {
                    Some(v) => v.clone(),
                    None => match items
                        .definition()
                        .and_then(|d| meta::list_key_default(d, key))
                    {
                        Some(default) => Value::String(default.into()),
                        None => {
                            return Err(format!(
                                "associative list with keys has an element that omits key field {key:?} (and doesn't have default value)"
                            ));
                        }
                    },
                };
                fields.push((key.to_string(), value));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
        ListKind::Set => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => {
                Err("associative list without keys has an element that's an explicit null".into())
            }
            scalar => Ok(PathElement::Value(scalar.clone())),
        },
        ListKind::Atomic => Err("invalid indexing of non-associative list".into()),
    }
}

/// The path elements of a list's items, `None` if some item has none (the list is then
/// handled as a whole).
fn item_elements(list: &[Value], items: Node, kind: ListKind) -> Option<Vec<PathElement>> {
    list.iter()
        .map(|item| item_element(item, items, kind).ok())
        .collect()
}

/// The items of two list sides (absent or non-list sides are empty) with their path
/// elements; `None` if some item on either side has none.
#[allow(clippy::type_complexity)]
fn keyed_items<'a>(
    lhs: Option<&'a Value>,
    rhs: Option<&'a Value>,
    items: Node,
    kind: ListKind,
) -> Option<(&'a [Value], Vec<PathElement>, &'a [Value], Vec<PathElement>)> {
    let side = |v: Option<&'a Value>| {
        v.and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let (l, r) = (side(lhs), side(rhs));
    Some((
        l,
        item_elements(l, items, kind)?,
        r,
        item_elements(r, items, kind)?,
    ))
}

/// Every leaf field and list item of `value`, as upstream's `ToFieldSet`.
pub(crate) fn field_set(value: &Value, node: Node) -> Set {
    let mut set = Set::new();
    collect(value, node, &mut Vec::new(), &mut set);
    set
}

fn collect(value: &Value, node: Node, path: &mut Path, set: &mut Set) {
    match Kind::of(node, Some(value)) {
        Kind::Scalar => set.insert(path),
        Kind::List {
            kind: ListKind::Atomic,
            ..
        }
        | Kind::Map { atomic: true, .. } => set.insert(path),
        Kind::List { items, kind } => {
            let Some(list) = value.as_array() else { return };
            let Some(elements) = item_elements(list, items, kind) else {
                set.insert(path);
                return;
            };
            let mut seen: Vec<&PathElement> = Vec::new();
            let mut duplicates: Vec<&PathElement> = Vec::new();
            for pe in &elements {
                if seen.contains(&pe) {
                    if !duplicates.contains(&pe) {
                        path.push(pe.clone());
                        set.insert(path);
                        path.pop();
                        duplicates.push(pe);
                    }
                } else {
                    seen.push(pe);
                }
            }
            for (item, pe) in list.iter().zip(&elements) {
                if duplicates.contains(&pe) {
                    continue;
                }
                path.push(pe.clone());
                collect(item, items, path, set);
                set.insert(path);
                path.pop();
            }
        }
        Kind::Map { node, .. } => {
            let Some(map) = value.as_object() else { return };
            for (key, child) in map {
                let (child_node, declared) = field_node(node, key);
                path.push(PathElement::Field(key.clone()));
                collect(child, child_node, path, set);
                let empty_map = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty_map || !declared {
                    set.insert(path);
                }
                path.pop();
            }
        }
    }
}

/// The fields added, modified and removed between two versions of an object.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

/// Compares `lhs` (old) with `rhs` (new), as upstream's `Compare`.
pub(crate) fn compare(lhs: &Value, rhs: &Value, node: Node) -> Comparison {
    Walk {
        materialize: false,
        skip_managed_fields: false,
    }
    .compare(lhs, rhs, node)
}

/// What [`compare`] finds between the [`materialized`] copies of `lhs` and `rhs`,
/// leaving out `metadata.managedFields` (which no manager owns), without making those
/// copies: equal subtrees are skipped before anything is filled in, and the zero-valued
/// fields are filled in only where the two sides differ. A write usually changes a
/// small part of an object (a pod's status, its `nodeName`), and materializing both
/// whole versions took a quarter of the API server's CPU under load.
pub(crate) fn compare_materializing(lhs: &Value, rhs: &Value, node: Node) -> Comparison {
    Walk {
        materialize: true,
        skip_managed_fields: true,
    }
    .compare(lhs, rhs, node)
}

/// How a comparison walks the two objects.
#[derive(Clone, Copy)]
struct Walk {
    /// Treat both sides as if [`materialize`]d (zero-valued fields filled in).
    materialize: bool,
    /// Leave `metadata.managedFields` out of the comparison.
    skip_managed_fields: bool,
}

static ZERO_STRUCT: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| Value::Object(Map::new()));
static ZERO_NULL: Value = Value::Null;

/// The zero-valued fields [`materialize`] fills into an object at `node`.
fn struct_zeros(node: Node) -> &'static [(&'static str, &'static str, super::zero::Zero)] {
    match node.shape() {
        Shape::Struct { name, .. } => zero_fields(name),
        _ => &[],
    }
}

fn zero_ref(zero: super::zero::Zero) -> &'static Value {
    match zero {
        super::zero::Zero::Struct => &ZERO_STRUCT,
        super::zero::Zero::Null => &ZERO_NULL,
    }
}

impl Walk {
    /// The comparison of two whole objects at `node`.
    fn compare(self, lhs: &Value, rhs: &Value, node: Node) -> Comparison {
        let mut cmp = Comparison::default();
        self.compare_at(Some(lhs), Some(rhs), node, &mut Vec::new(), &mut cmp);
        cmp
    }

    fn compare_at(
        self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        node: Node,
        path: &mut Path,
        cmp: &mut Comparison,
    ) {
        let is_leaf = self.compare_kind(lhs, rhs, node, path, cmp);
        if !is_leaf {
            if lhs.is_none() {
                cmp.added.insert(path);
            } else if rhs.is_none() {
                cmp.removed.insert(path);
            }
        }
    }

    /// True if `value` is null, absent or an empty list or object, once materialized.
    fn is_empty(self, value: Option<&Value>, node: Node) -> bool {
        match value {
            Some(Value::Object(m)) if self.materialize => {
                m.is_empty() && struct_zeros(node).is_empty()
            }
            _ => is_empty_container(value),
        }
    }

    /// Compares one position; returns true if it was handled as a leaf.
    fn compare_kind(
        self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        node: Node,
        path: &mut Path,
        cmp: &mut Comparison,
    ) -> bool {
        // Equal subtrees (equal once materialized too) hold no changes.
        if let (Some(l), Some(r)) = (lhs, rhs)
            && l == r
        {
            return true;
        }
        let kind = effective_kind(lhs, rhs, node);
        match kind {
            Kind::Scalar
            | Kind::List {
                kind: ListKind::Atomic,
                ..
            }
            | Kind::Map { atomic: true, .. } => {
                self.leaf(lhs, rhs, node, path, cmp);
                true
            }
            _ if kinds_differ(lhs, rhs, node) => {
                self.leaf(lhs, rhs, node, path, cmp);
                true
            }
            _ if self.is_empty(lhs, node) && self.is_empty(rhs, node) => {
                self.leaf(lhs, rhs, node, path, cmp);
                true
            }
            Kind::List { items, kind } => {
                // Materializing an item never adds a list key: the zero-valued fields
                // are structs and non-omitempty pointers, slices and maps.
                let Some((l, lpe, r, rpe)) = keyed_items(lhs, rhs, items, kind) else {
                    self.leaf(lhs, rhs, node, path, cmp);
                    return true;
                };
                self.compare_lists(l, &lpe, r, &rpe, items, path, cmp);
                false
            }
            Kind::Map { node, .. } => {
                let empty = Map::new();
                let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
                let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
                let zeros = if self.materialize {
                    struct_zeros(node)
                } else {
                    &[]
                };
                let l_zeros = lhs.is_some_and(Value::is_object);
                let r_zeros = rhs.is_some_and(Value::is_object);
                let skip = self.skip_managed_fields
                    && matches!(path.as_slice(), [PathElement::Field(f)] if f == "metadata");
                let keys = l
                    .keys()
                    .map(String::as_str)
                    .chain(r.keys().map(String::as_str).filter(|k| !l.contains_key(*k)))
                    .chain(
                        zeros
                            .iter()
                            .map(|z| z.1)
                            .filter(|k| !l.contains_key(*k) && !r.contains_key(*k)),
                    );
                for key in keys {
                    if skip && key == "managedFields" {
                        continue;
                    }
                    let (child, _) = field_node(node, key);
                    path.push(PathElement::Field(key.to_string()));
                    let lv = side(l, l_zeros, zeros, key);
                    let rv = side(r, r_zeros, zeros, key);
                    self.compare_at(lv, rv, child, path, cmp);
                    path.pop();
                }
                false
            }
        }
    }

    fn leaf(
        self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        node: Node,
        path: &Path,
        cmp: &mut Comparison,
    ) {
        match (lhs, rhs) {
            (None, Some(_)) => cmp.added.insert(path),
            (Some(_), None) => cmp.removed.insert(path),
            (Some(l), Some(r)) if !self.equal(l, r, node) => cmp.modified.insert(path),
            _ => {}
        }
    }

    /// [`values_equal`] of the two values as this walk sees them.
    fn equal(self, l: &Value, r: &Value, node: Node) -> bool {
        if l == r {
            return true;
        }
        if self.materialize && (l.is_object() || l.is_array()) {
            values_equal(&materialized(l, node), &materialized(r, node))
        } else {
            values_equal(l, r)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn compare_lists(
        self,
        l: &[Value],
        lpe: &[PathElement],
        r: &[Value],
        rpe: &[PathElement],
        items: Node,
        path: &mut Path,
        cmp: &mut Comparison,
    ) {
        // Group the items of each side by element, keeping first-seen order.
        let mut order: Vec<&PathElement> = Vec::new();
        let lg = group(l, lpe);
        let rg = group(r, rpe);
        for (pe, _) in &lg {
            order.push(pe);
        }
        for (pe, _) in &rg {
            if !order.contains(&pe) {
                order.push(pe);
            }
        }
        for pe in order {
            let lv: &[&Value] = lg
                .iter()
                .find(|(p, _)| p == pe)
                .map(|(_, g)| g.as_slice())
                .unwrap_or_default();
            let rv: &[&Value] = rg
                .iter()
                .find(|(p, _)| p == pe)
                .map(|(_, g)| g.as_slice())
                .unwrap_or_default();
            path.push(pe.clone());
            match (lv.len(), rv.len()) {
                (0, 0) => {}
                (0 | 1, 0 | 1) => {
                    self.compare_at(lv.first().copied(), rv.first().copied(), items, path, cmp)
                }
                (l, r) if l >= 2 && r >= 2 => {
                    if lv.len() != rv.len()
                        || lv.iter().zip(rv).any(|(a, b)| !self.equal(a, b, items))
                    {
                        cmp.modified.insert(path);
                    }
                }
                (l, _) if l >= 2 => {
                    if let Some(r) = rv.first() {
                        self.compare_at(None, Some(r), items, path, cmp);
                    }
                    cmp.removed.insert(path);
                }
                _ => {
                    if let Some(l) = lv.first() {
                        self.compare_at(Some(l), None, items, path, cmp);
                    }
                    cmp.added.insert(path);
                }
            }
            path.pop();
        }
    }
}

/// The field `key` of an object side of a comparison: its member, or the zero value
/// materializing fills in (`fill`: the side is an object).
fn side<'a>(
    map: &'a Map<String, Value>,
    fill: bool,
    zeros: &'static [(&'static str, &'static str, super::zero::Zero)],
    key: &str,
) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        if fill {
            zeros.iter().find(|z| z.1 == key).map(|z| zero_ref(z.2))
        } else {
            None
        }
    })
}

/// The items of a list grouped by path element, in first-seen order.
fn group<'a>(list: &'a [Value], pes: &[PathElement]) -> Vec<(PathElement, Vec<&'a Value>)> {
    let mut groups: Vec<(PathElement, Vec<&'a Value>)> = Vec::new();
    for (item, pe) in list.iter().zip(pes) {
        match groups.iter_mut().find(|(p, _)| p == pe) {
            Some((_, g)) => g.push(item),
            None => groups.push((pe.clone(), vec![item])),
        }
    }
    groups
}

fn is_empty_container(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        _ => false,
    }
}

/// True if both sides hold non-null values of different kinds.
fn kinds_differ(lhs: Option<&Value>, rhs: Option<&Value>, node: Node) -> bool {
    match (lhs, rhs) {
        (Some(l), Some(r)) if !l.is_null() && !r.is_null() => {
            !Kind::of(node, Some(l)).same_as(&Kind::of(node, Some(r)))
        }
        _ => false,
    }
}

/// The kind used for a pair of values: the new side's when the two disagree.
fn effective_kind(lhs: Option<&Value>, rhs: Option<&Value>, node: Node) -> Kind {
    match (lhs, rhs) {
        (_, Some(r)) if !r.is_null() => Kind::of(node, Some(r)),
        (Some(l), _) => Kind::of(node, Some(l)),
        (None, r) => Kind::of(node, r),
    }
}

/// Merges `rhs` (applied configuration) into `lhs` (live object), as upstream's
/// `Merge`: the configuration wins on every field it sets; keyed list items merge by
/// key, in the configuration's order for items it lists.
pub(crate) fn merge(lhs: &Value, rhs: &Value, node: Node) -> Value {
    merge_at(Some(lhs), Some(rhs), node).unwrap_or(Value::Null)
}

fn merge_at(lhs: Option<&Value>, rhs: Option<&Value>, node: Node) -> Option<Value> {
    let kind = effective_kind(lhs, rhs, node);
    let keep_rhs = || rhs.or(lhs).cloned();
    // A live value of another kind than the applied one is replaced.
    let lhs = if kinds_differ(lhs, rhs, node) {
        None
    } else {
        lhs
    };
    match kind {
        Kind::Scalar
        | Kind::List {
            kind: ListKind::Atomic,
            ..
        }
        | Kind::Map { atomic: true, .. } => keep_rhs(),
        _ if is_empty_container(lhs) && is_empty_container(rhs) => keep_rhs(),
        Kind::List { items, kind } => {
            let Some((l, lpe, r, rpe)) = keyed_items(lhs, rhs, items, kind) else {
                return keep_rhs();
            };
            let merged = merge_lists(l, &lpe, r, &rpe, items);
            (!merged.is_empty()).then_some(Value::Array(merged))
        }
        Kind::Map { node, .. } => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = Map::new();
            for key in l.keys().chain(r.keys().filter(|k| !l.contains_key(*k))) {
                let (child, _) = field_node(node, key);
                if let Some(v) = merge_at(l.get(key), r.get(key), child) {
                    out.insert(key.clone(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
    }
}

/// Upstream's list merge: walks both lists, emitting live-only items in place and
/// applied items in the applied order, merging items present on both sides.
fn merge_lists(
    l: &[Value],
    lpe: &[PathElement],
    r: &[Value],
    rpe: &[PathElement],
    items: Node,
) -> Vec<Value> {
    let find = |pes: &[PathElement], pe: &PathElement| pes.iter().position(|p| p == pe);
    // Live items that appear more than once are not merged with the applied item.
    let live_value = |pe: &PathElement| -> Option<Value> {
        let first = find(lpe, pe)?;
        if lpe.iter().filter(|p| *p == pe).count() > 1 {
            Some(Value::Null)
        } else {
            Some(l[first].clone())
        }
    };
    let in_rhs = |pe: &PathElement| find(rpe, pe).is_some();
    let mut shared: std::collections::VecDeque<&PathElement> =
        rpe.iter().filter(|pe| find(lpe, pe).is_some()).collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: Vec<PathElement> = Vec::new();
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lpe.len() || ri < rpe.len() {
        if li < lpe.len() && ri < rpe.len() {
            let pe = &lpe[li];
            if *pe == rpe[ri] {
                merged_rhs.push(pe.clone());
                let lv = live_value(pe);
                if let Some(v) = merge_at(lv.as_ref(), Some(&r[ri]), items) {
                    out.push(v);
                }
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if in_rhs(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lpe.len() {
            let pe = &lpe[li];
            if !in_rhs(pe) {
                if let Some(v) = merge_at(Some(&l[li]), None, items) {
                    out.push(v);
                }
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < rpe.len() {
            let pe = &rpe[ri];
            merged_rhs.push(pe.clone());
            let lv = live_value(pe);
            if let Some(v) = merge_at(lv.as_ref(), Some(&r[ri]), items) {
                out.push(v);
            }
            ri += 1;
            if next_shared.is_some_and(|n| n == pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    out
}

/// `value` without the fields and items in `remove`, as upstream's `RemoveItems`.
/// Structs and maps left empty by the removal are removed too.
pub(crate) fn remove_items(value: &Value, remove: &Set, node: Node) -> Value {
    remove_at(value, remove, node).unwrap_or_else(|| Value::Object(Map::new()))
}

fn remove_at(value: &Value, remove: &Set, node: Node) -> Option<Value> {
    match Kind::of(node, Some(value)) {
        Kind::Scalar => Some(value.clone()),
        Kind::List {
            kind: ListKind::Atomic,
            ..
        }
        | Kind::Map { atomic: true, .. } => None,
        Kind::List { items, kind } => {
            let list = value.as_array()?;
            if list.is_empty() {
                return None;
            }
            let mut out = Vec::new();
            for item in list {
                let Ok(pe) = item_element(item, items, kind) else {
                    out.push(item.clone());
                    continue;
                };
                if remove.has_member(&pe) {
                    continue;
                }
                match remove.with_prefix(&pe) {
                    Some(subset) => out.extend(remove_at(item, subset, items)),
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        Kind::Map { node, .. } => {
            let map = value.as_object()?;
            if map.is_empty() {
                return None;
            }
            let mut out = Map::new();
            for (key, child) in map {
                let pe = PathElement::Field(key.clone());
                if remove.has_member(&pe) {
                    continue;
                }
                match remove.with_prefix(&pe) {
                    Some(subset) => {
                        let (child_node, _) = field_node(node, key);
                        if let Some(v) = remove_at(child, subset, child_node) {
                            out.insert(key.clone(), v);
                        }
                    }
                    None => {
                        out.insert(key.clone(), child.clone());
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
    }
}

/// `set` plus every struct field that has paths below it, as upstream's
/// `EnsureNamedFieldsAreMembers` (so that removing the set removes emptied structs).
pub(crate) fn with_named_fields(set: &Set, node: Node) -> Set {
    let mut out = Set::new();
    for member in set.members() {
        out.add_member(member.clone());
    }
    let is_struct = matches!(node.shape(), Shape::Struct { .. });
    for (pe, child) in set.children() {
        let child_node = match pe {
            PathElement::Field(name) => {
                if is_struct && node.field(name).is_some() {
                    out.add_member(pe.clone());
                }
                node.field(name).unwrap_or(Node::DEDUCED)
            }
            PathElement::Key(_) | PathElement::Value(_) | PathElement::Index(_) => node.items(),
        };
        *out.child_mut(pe.clone()) = with_named_fields(child, child_node);
    }
    out
}

/// Checks an applied configuration against the schema as upstream does before an apply:
/// no undeclared fields in structs, list items identifiable by their keys, no duplicate
/// items. Returns upstream-style messages (`.spec.foo: field not declared in schema`).
pub(crate) fn validate(value: &Value, node: Node) -> Vec<String> {
    let mut errors = Vec::new();
    validate_at(value, node, &mut Vec::new(), &mut errors);
    errors
}

fn validate_at(value: &Value, node: Node, path: &mut Path, errors: &mut Vec<String>) {
    let at = |path: &Path| super::fieldpath::path_string(path);
    match node.shape() {
        Shape::Struct { .. } | Shape::Map { .. } => match value {
            Value::Object(map) => {
                let is_struct = matches!(node.shape(), Shape::Struct { .. });
                for (key, child) in map {
                    path.push(PathElement::Field(key.clone()));
                    match node.field(key) {
                        Some(child_node) => validate_at(child, child_node, path, errors),
                        None if is_struct => {
                            errors.push(format!("{}: field not declared in schema", at(path)))
                        }
                        None => {}
                    }
                    path.pop();
                }
            }
            Value::Null => {}
            other => errors.push(format!("{}: expected map, got {}", at(path), other)),
        },
        Shape::List { items, kind } => match value {
            Value::Array(list) => {
                let mut seen: Vec<PathElement> = Vec::new();
                for (i, item) in list.iter().enumerate() {
                    if kind == ListKind::Atomic {
                        path.push(PathElement::Index(i as i64));
                        validate_at(item, items, path, errors);
                        path.pop();
                        continue;
                    }
                    match item_element(item, items, kind) {
                        Ok(pe) => {
                            if seen.contains(&pe) {
                                errors
                                    .push(format!("{}: duplicate entries for key {pe}", at(path)));
                                continue;
                            }
                            path.push(pe.clone());
                            validate_at(item, items, path, errors);
                            path.pop();
                            seen.push(pe);
                        }
                        Err(reason) => errors.push(format!("{}: element {i}: {reason}", at(path))),
                    }
                }
            }
            Value::Null => {}
            other => errors.push(format!("{}: expected list, got {}", at(path), other)),
        },
        Shape::Scalar => {
            if value.is_object() || value.is_array() {
                errors.push(format!("{}: expected scalar, got {}", at(path), value));
            }
        }
        Shape::Deduced => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::fieldpath::path_string;
    use serde_json::json;

    fn deployment_node() -> Node {
        Node::root(Some("io.k8s.api.apps.v1.Deployment"))
    }

    fn paths(set: &Set) -> Vec<String> {
        set.paths().iter().map(|p| path_string(p)).collect()
    }

    #[test]
    fn field_set_of_a_deployment() {
        let obj = json!({
            "metadata": {"labels": {"app": "web"}, "finalizers": ["x"]},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {
                    "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}], "args": ["a"]}],
                    "volumes": [{"name": "v", "emptyDir": {}}]
                }}
            }
        });
        let set = field_set(&obj, deployment_node());
        let c = ".spec.template.spec.containers[name=\"web\"]";
        assert_eq!(
            paths(&set),
            vec![
                ".metadata.finalizers[=\"x\"]".to_string(),
                ".metadata.labels.app".into(),
                ".spec.replicas".into(),
                ".spec.selector".into(),
                c.into(),
                format!("{c}.args"),
                format!("{c}.image"),
                format!("{c}.name"),
                format!("{c}.ports[containerPort=80,protocol=\"TCP\"]"),
                format!("{c}.ports[containerPort=80,protocol=\"TCP\"].containerPort"),
                ".spec.template.spec.volumes[name=\"v\"]".into(),
                ".spec.template.spec.volumes[name=\"v\"].emptyDir".into(),
                ".spec.template.spec.volumes[name=\"v\"].name".into(),
            ]
        );
    }

    #[test]
    fn compare_reports_added_modified_removed() {
        let old = json!({"spec": {"replicas": 1, "paused": true, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let new = json!({"spec": {"replicas": 2, "minReadySeconds": 5, "template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}}});
        let cmp = compare(&old, &new, deployment_node());
        assert_eq!(paths(&cmp.modified), [".spec.replicas"]);
        assert_eq!(paths(&cmp.removed), [".spec.paused"]);
        assert_eq!(
            paths(&cmp.added),
            [
                ".spec.minReadySeconds",
                ".spec.template.spec.containers[name=\"b\"]",
                ".spec.template.spec.containers[name=\"b\"].name"
            ]
        );
    }

    #[test]
    fn merge_keeps_live_items_and_applied_order() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a1"}, {"name": "injected", "image": "p"}, {"name": "b", "image": "b1"}
        ]}}}});
        let applied = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "b2"}, {"name": "a", "image": "a2"}, {"name": "c", "image": "c1"}
        ]}}}});
        let merged = merge(&live, &applied, deployment_node());
        let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(|l| l.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["injected", "b", "a", "c"]);
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"][1]["image"],
            "b2"
        );
        // Atomic lists and maps are replaced.
        let live = json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}, "template": {"spec": {"tolerations": [{"key": "x"}]}}}});
        let applied = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "template": {"spec": {"tolerations": [{"key": "y"}]}}}});
        assert_eq!(merge(&live, &applied, deployment_node()), applied);
    }

    #[test]
    fn remove_items_drops_fields_items_and_emptied_parents() {
        let obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 3, "template": {"spec": {
            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let mut remove = Set::new();
        remove.insert(&[
            PathElement::Field("metadata".into()),
            PathElement::Field("labels".into()),
            PathElement::Field("a".into()),
        ]);
        remove.insert(&[
            PathElement::Field("spec".into()),
            PathElement::Field("replicas".into()),
        ]);
        let containers = [
            PathElement::Field("spec".into()),
            PathElement::Field("template".into()),
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
        ];
        let mut b = containers.to_vec();
        b.push(PathElement::Key(vec![("name".into(), json!("b"))]));
        remove.insert(&b);
        let got = remove_items(&obj, &remove, deployment_node());
        assert_eq!(
            got,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}})
        );
    }

    #[test]
    fn validation_errors() {
        let cases = [
            (json!({"spec": {"replicas": 1}}), vec![]),
            (
                json!({"spec": {"replicaz": 1}}),
                vec![".spec.replicaz: field not declared in schema"],
            ),
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}}),
                vec![".spec.template.spec.containers: duplicate entries for key [name=\"a\"]"],
            ),
            (
                json!({"spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}}),
                vec![
                    ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)",
                ],
            ),
            (
                json!({"spec": {"selector": "x"}}),
                vec![".spec.selector: expected map, got \"x\""],
            ),
            (json!({"metadata": {"labels": {"any": "thing"}}}), vec![]),
        ];
        for (value, want) in cases {
            assert_eq!(validate(&value, deployment_node()), want, "{value}");
        }
    }
}

#[cfg(test)]
mod lazy_compare_tests {
    use super::*;
    use serde_json::json;

    /// What `compare_materializing` must equal: `compare` of the materialized copies,
    /// without managedFields.
    fn eager(lhs: &Value, rhs: &Value, node: Node) -> Comparison {
        let strip = |v: &Value| {
            let mut v = materialized(v, node);
            if let Some(Value::Object(m)) = v.get_mut("metadata") {
                m.shift_remove("managedFields");
            }
            v
        };
        compare(&strip(lhs), &strip(rhs), node)
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "x"},
                "managedFields": [{"manager": "m", "operation": "Update", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]},
            "spec": {
                "containers": [
                    {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}],
                     "resources": {}, "env": [{"name": "X", "value": "1"}]},
                    {"name": "b", "image": "busybox", "args": ["sleep", "1"]}
                ],
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "affinity": {"nodeAffinity": {}}
            },
            "status": {"phase": "Pending"}
        })
    }

    #[test]
    fn lazy_comparison_equals_the_materialized_one() {
        let node = Node::root(Some("io.k8s.api.core.v1.Pod"));
        let base = pod();
        let mut cases: Vec<(Value, Value)> = vec![
            (json!({}), base.clone()),
            (base.clone(), json!({})),
            (base.clone(), base.clone()),
        ];
        let edits: Vec<fn(&mut Value)> = vec![
            |p| p["spec"]["nodeName"] = json!("n1"),
            |p| {
                p["status"] = json!({"phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]})
            },
            |p| p["status"] = json!({}),
            |p| {
                p["spec"]["containers"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("resources");
            },
            |p| {
                if let Some(c) = p.pointer_mut("/spec/containers/1") {
                    c["resources"] = json!({"limits": {"cpu": "1"}});
                }
            },
            |p| {
                p["spec"]["containers"].as_array_mut().unwrap().remove(0);
            },
            |p| {
                p["spec"]["containers"][0]["ports"] =
                    json!([{"containerPort": 80}, {"containerPort": 80}])
            },
            |p| {
                p["spec"]["containers"][0]["env"] =
                    json!([{"name": "X", "value": "2"}, {"name": "X", "value": "1"}])
            },
            |p| p["spec"]["affinity"] = json!(null),
            |p| p["spec"]["affinity"] = json!({}),
            |p| {
                p["metadata"].as_object_mut().unwrap().remove("labels");
            },
            |p| p["metadata"]["managedFields"] = json!([]),
            |p| p["spec"]["tolerations"] = json!("not a list"),
            |p| p["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]),
        ];
        for edit in &edits {
            let mut changed = base.clone();
            edit(&mut changed);
            cases.push((base.clone(), changed.clone()));
            cases.push((changed.clone(), base.clone()));
            for other in &edits {
                let mut both = changed.clone();
                other(&mut both);
                cases.push((changed.clone(), both));
            }
        }
        for (lhs, rhs) in &cases {
            let lazy = compare_materializing(lhs, rhs, node);
            let want = eager(lhs, rhs, node);
            assert_eq!(
                (&lazy.added, &lazy.modified, &lazy.removed),
                (&want.added, &want.modified, &want.removed),
                "{lhs}\n -> {rhs}"
            );
        }
    }
}
