//! Key ranges and request validation, shared by every layer of the store.
//!
//! etcd addresses keys with a `key` plus an optional `range_end`: no end (or an
//! empty one) means the single key, `"\0"` means "every key from `key` on", and
//! anything else means the half-open interval `[key, range_end)`. [`KeyRange`] is
//! that convention parsed once, so the index, the disk layer and the watchers all
//! agree on which keys a request touches.

use std::collections::HashSet;
use std::ops::Bound;

use bytes::Bytes;

use crate::{Op, RangeRequest, StoreError, Txn};

/// Lower and upper bound of a key range, as `BTreeMap::range` takes them.
pub(crate) type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The keys one request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyRange {
    /// Exactly one key.
    Single(Bytes),
    /// `[start, end)`; `end == None` reaches to the end of the key space.
    Span { start: Bytes, end: Option<Bytes> },
}

impl KeyRange {
    /// Parses etcd's `key`/`range_end` pair. An empty key is rejected like etcd does.
    pub(crate) fn new(key: &Bytes, range_end: Option<&Bytes>) -> Result<Self, StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidArgument("key is not provided".into()));
        }
        Ok(match range_end {
            None => KeyRange::Single(key.clone()),
            Some(end) if end.is_empty() => KeyRange::Single(key.clone()),
            Some(end) if end.as_ref() == b"\0" => KeyRange::Span {
                start: key.clone(),
                end: None,
            },
            Some(end) => KeyRange::Span {
                start: key.clone(),
                end: Some(end.clone()),
            },
        })
    }

    /// Whether `key` lies in the range.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_ref() == key,
            KeyRange::Span { start, end } => {
                key >= start.as_ref() && end.as_ref().is_none_or(|end| key < end.as_ref())
            }
        }
    }

    /// Bounds usable with `BTreeMap::range`, or `None` when the range selects nothing
    /// (an end at or before the start; `BTreeMap::range` would panic on it).
    pub(crate) fn bounds(&self) -> Option<Bounds<'_>> {
        match self {
            KeyRange::Single(k) => Some((Bound::Included(k.as_ref()), Bound::Included(k.as_ref()))),
            KeyRange::Span { start, end: None } => {
                Some((Bound::Included(start.as_ref()), Bound::Unbounded))
            }
            KeyRange::Span {
                start,
                end: Some(end),
            } => (end > start).then(|| {
                (
                    Bound::Included(start.as_ref()),
                    Bound::Excluded(end.as_ref()),
                )
            }),
        }
    }
}

/// Checks a range request's fields and parses its key range.
pub(crate) fn validate_range(req: &RangeRequest) -> Result<KeyRange, StoreError> {
    if req.limit < 0 {
        return Err(StoreError::InvalidArgument(format!(
            "negative limit {}",
            req.limit
        )));
    }
    if req.revision < 0 {
        return Err(StoreError::InvalidArgument(format!(
            "negative revision {}",
            req.revision
        )));
    }
    KeyRange::new(&req.key, req.range_end.as_ref())
}

/// Checks every operation of a transaction, and rejects a branch that writes the same
/// key twice (two puts, or a put inside a deleted range), as etcd does: such a branch
/// would need two versions of one key in a single revision.
pub(crate) fn validate_txn(txn: &Txn) -> Result<(), StoreError> {
    for c in &txn.compare {
        if c.key.is_empty() {
            return Err(StoreError::InvalidArgument(
                "compare key is not provided".into(),
            ));
        }
    }
    validate_branch(&txn.success)?;
    validate_branch(&txn.failure)
}

fn validate_branch(ops: &[Op]) -> Result<(), StoreError> {
    let mut puts: HashSet<&[u8]> = HashSet::new();
    let mut deletes = Vec::new();
    for op in ops {
        match op {
            Op::Put { key, .. } => {
                if key.is_empty() {
                    return Err(StoreError::InvalidArgument("key is not provided".into()));
                }
                if !puts.insert(key.as_ref()) {
                    return Err(duplicate_key());
                }
            }
            Op::Delete { key, range_end, .. } => {
                deletes.push(KeyRange::new(key, range_end.as_ref())?)
            }
            Op::Range(req) => {
                validate_range(req)?;
            }
        }
    }
    if puts.iter().any(|k| deletes.iter().any(|d| d.contains(k))) {
        return Err(duplicate_key());
    }
    Ok(())
}

fn duplicate_key() -> StoreError {
    StoreError::InvalidArgument("duplicate key given in txn request".into())
}

/// Whether a transaction may write (either branch holds a put or a delete).
pub(crate) fn txn_may_write(txn: &Txn) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .any(|op| !matches!(op, Op::Range(_)))
}

/// Whether a transaction reads at a past revision (needs the disk, not just the index).
pub(crate) fn txn_reads_past(txn: &Txn) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .any(|op| matches!(op, Op::Range(r) if r.revision != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn parses_etcd_range_convention() {
        let cases: &[(&str, Option<&str>, KeyRange)] = &[
            ("a", None, KeyRange::Single(b("a"))),
            ("a", Some(""), KeyRange::Single(b("a"))),
            (
                "a",
                Some("\0"),
                KeyRange::Span {
                    start: b("a"),
                    end: None,
                },
            ),
            (
                "a",
                Some("c"),
                KeyRange::Span {
                    start: b("a"),
                    end: Some(b("c")),
                },
            ),
        ];
        for (key, end, want) in cases {
            let got = KeyRange::new(&b(key), end.map(b).as_ref()).expect("valid range");
            assert_eq!(&got, want, "key {key:?} end {end:?}");
        }
        assert!(matches!(
            KeyRange::new(&b(""), None),
            Err(StoreError::InvalidArgument(_))
        ));
    }

    #[test]
    fn contains_and_bounds() {
        // (key, range_end, probe, contained)
        let cases: &[(&str, Option<&str>, &str, bool)] = &[
            ("a", None, "a", true),
            ("a", None, "ab", false),
            ("a", Some("c"), "a", true),
            ("a", Some("c"), "bzzz", true),
            ("a", Some("c"), "c", false),
            ("a", Some("c"), "0", false),
            ("b", Some("\0"), "zzz", true),
            ("b", Some("\0"), "a", false),
            ("c", Some("a"), "b", false),
        ];
        for (key, end, probe, want) in cases {
            let r = KeyRange::new(&b(key), end.map(b).as_ref()).expect("valid range");
            assert_eq!(
                r.contains(probe.as_bytes()),
                *want,
                "{key:?}..{end:?} contains {probe:?}"
            );
        }
        let inverted = KeyRange::new(&b("c"), Some(&b("a"))).expect("valid range");
        assert!(inverted.bounds().is_none());
        let equal = KeyRange::new(&b("c"), Some(&b("c"))).expect("valid range");
        assert!(equal.bounds().is_none());
    }

    fn put(k: &str) -> Op {
        Op::Put {
            key: b(k),
            value: b("v"),
            prev_kv: false,
        }
    }

    fn del(k: &str, end: Option<&str>) -> Op {
        Op::Delete {
            key: b(k),
            range_end: end.map(b),
            prev_kv: false,
        }
    }

    #[test]
    fn txn_validation() {
        // (success ops, failure ops, valid)
        let cases: Vec<(Vec<Op>, Vec<Op>, bool)> = vec![
            (vec![put("a"), put("b")], vec![], true),
            (vec![put("a"), put("a")], vec![], false),
            (vec![put("a")], vec![put("a")], true),
            (vec![put("b"), del("a", Some("c"))], vec![], false),
            (vec![put("c"), del("a", Some("c"))], vec![], true),
            (vec![del("a", Some("c")), del("b", Some("d"))], vec![], true),
            (vec![put("")], vec![], false),
            (vec![del("", None)], vec![], false),
            (
                vec![Op::Range(RangeRequest {
                    key: b("a"),
                    limit: -1,
                    ..Default::default()
                })],
                vec![],
                false,
            ),
            (vec![], vec![put("x"), put("x")], false),
        ];
        for (i, (success, failure, valid)) in cases.into_iter().enumerate() {
            let txn = Txn {
                compare: vec![],
                success,
                failure,
            };
            assert_eq!(validate_txn(&txn).is_ok(), valid, "case {i}");
        }
    }
}
