//! The key index and the transaction evaluator.
//!
//! [`Index`] holds the latest version of every live key in memory, so reads at the
//! latest revision never touch the disk. [`Overlay`] layers uncommitted changes on
//! top of it: the writer evaluates a whole batch of transactions against one overlay
//! (each transaction sees the ones before it), persists the result, and only then
//! installs the overlay's changes into the index. Everything here is pure: no I/O
//! except through the `past` callback that serves past-revision reads.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::iter::Peekable;

use bytes::Bytes;

use crate::keys::KeyRange;
use crate::{
    Compare, CompareOp, CompareTarget, Event, EventType, KeyValue, Op, OpResponse, RangeRequest,
    RangeResponse, Revision, StoreError, Txn,
};

/// The latest state: live key → its current version.
pub(crate) type Index = BTreeMap<Bytes, KeyValue>;

/// Pending changes over an [`Index`]: `Some` is a new version, `None` a deletion.
pub(crate) type Changes = BTreeMap<Bytes, Option<KeyValue>>;

/// Serves a range at a past revision (from disk).
pub(crate) type PastReader<'a> =
    dyn FnMut(&RangeRequest, &KeyRange) -> Result<RangeResponse, StoreError> + 'a;

/// An index plus uncommitted changes, read as one state.
pub(crate) struct Overlay<'a> {
    base: &'a Index,
    changes: Changes,
}

/// What a transaction did.
pub(crate) struct Applied {
    pub succeeded: bool,
    pub responses: Vec<OpResponse>,
    /// The changes it made, in operation order. Every event carries its `prev_kv`
    /// (watchers that did not ask for it strip it), and `kv.mod_revision` is the
    /// transaction's revision.
    pub events: Vec<Event>,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(base: &'a Index) -> Self {
        Overlay {
            base,
            changes: Changes::new(),
        }
    }

    /// Gives up the pending changes (to install them once they are durable).
    pub(crate) fn into_changes(self) -> Changes {
        self.changes
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&KeyValue> {
        match self.changes.get(key) {
            Some(change) => change.as_ref(),
            None => self.base.get(key),
        }
    }

    /// Live keys in `range`, in key order.
    pub(crate) fn scan<'s>(
        &'s self,
        range: &KeyRange,
    ) -> Box<dyn Iterator<Item = &'s KeyValue> + 's> {
        match range {
            KeyRange::Single(key) => Box::new(self.get(key).into_iter()),
            KeyRange::Span { .. } => match range.bounds() {
                None => Box::new(std::iter::empty()),
                Some(bounds) => Box::new(Merge {
                    base: self.base.range::<[u8], _>(bounds).peekable(),
                    changes: self.changes.range::<[u8], _>(bounds).peekable(),
                }),
            },
        }
    }

    /// Builds a range response at the overlay's state.
    pub(crate) fn range(
        &self,
        range: &KeyRange,
        req: &RangeRequest,
        header: Revision,
    ) -> RangeResponse {
        let mut out = RangeCollector::new(req);
        for kv in self.scan(range) {
            if out.wants_kv() {
                out.push(kv.clone());
            } else {
                out.skip();
            }
        }
        out.finish(header)
    }

    fn set(
        &mut self,
        key: Bytes,
        value: Option<KeyValue>,
        undo: &mut Vec<(Bytes, Option<Option<KeyValue>>)>,
    ) {
        let before = self.changes.insert(key.clone(), value);
        undo.push((key, before));
    }

    /// Runs `txn` against the overlay. `rev` is the revision the transaction commits as
    /// if it writes anything. On error the overlay is left as it was.
    pub(crate) fn apply_txn(
        &mut self,
        txn: &Txn,
        rev: Revision,
        past: &mut PastReader<'_>,
    ) -> Result<Applied, StoreError> {
        let succeeded = txn
            .compare
            .iter()
            .all(|c| compare_holds(self.get(&c.key), c));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let mut undo = Vec::new();
        let result = self.apply_ops(ops, rev, past, &mut undo);
        match result {
            Ok((responses, events)) => Ok(Applied {
                succeeded,
                responses,
                events,
            }),
            Err(e) => {
                for (key, before) in undo.into_iter().rev() {
                    match before {
                        Some(v) => self.changes.insert(key, v),
                        None => self.changes.remove(&key),
                    };
                }
                Err(e)
            }
        }
    }

    fn apply_ops(
        &mut self,
        ops: &[Op],
        rev: Revision,
        past: &mut PastReader<'_>,
        undo: &mut Vec<(Bytes, Option<Option<KeyValue>>)>,
    ) -> Result<(Vec<OpResponse>, Vec<Event>), StoreError> {
        let mut responses = Vec::with_capacity(ops.len());
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Put {
                    key,
                    value,
                    prev_kv,
                } => {
                    let prev = self.get(key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                    };
                    self.set(key.clone(), Some(kv.clone()), undo);
                    responses.push(OpResponse::Put {
                        prev_kv: if *prev_kv { prev.clone() } else { None },
                    });
                    events.push(Event {
                        kind: EventType::Put,
                        kv,
                        prev_kv: prev,
                    });
                }
                Op::Delete {
                    key,
                    range_end,
                    prev_kv,
                } => {
                    let range = KeyRange::new(key, range_end.as_ref())?;
                    let doomed: Vec<KeyValue> = self.scan(&range).cloned().collect();
                    for old in &doomed {
                        self.set(old.key.clone(), None, undo);
                        events.push(Event {
                            kind: EventType::Delete,
                            kv: KeyValue {
                                key: old.key.clone(),
                                value: Bytes::new(),
                                create_revision: 0,
                                mod_revision: rev,
                                version: 0,
                            },
                            prev_kv: Some(old.clone()),
                        });
                    }
                    responses.push(OpResponse::Delete {
                        deleted: doomed.len() as i64,
                        prev_kvs: if *prev_kv { doomed } else { Vec::new() },
                    });
                }
                Op::Range(req) => {
                    let range = crate::keys::validate_range(req)?;
                    // Like etcd, reads inside a transaction see its earlier writes; a
                    // read at the latest revision reports the revision the transaction
                    // has reached so far.
                    let current = if events.is_empty() { rev - 1 } else { rev };
                    let resp = match req.revision {
                        0 => self.range(&range, req, current),
                        r if r == current => self.range(&range, req, current),
                        r if r > current => {
                            return Err(StoreError::FutureRevision {
                                requested: r,
                                current,
                            });
                        }
                        _ => past(req, &range)?,
                    };
                    responses.push(OpResponse::Range(resp));
                }
            }
        }
        Ok((responses, events))
    }
}

/// Installs committed changes into the index.
pub(crate) fn install(index: &mut Index, changes: Changes) {
    for (key, change) in changes {
        match change {
            Some(kv) => index.insert(key, kv),
            None => index.remove(&key),
        };
    }
}

/// Evaluates one compare against the key's current version (`None`: missing key).
/// As in etcd, a missing key has revisions and version 0, and a value compare on a
/// missing key is always false.
pub(crate) fn compare_holds(kv: Option<&KeyValue>, c: &Compare) -> bool {
    let ord = match (&c.target, kv) {
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Value(want), Some(kv)) => kv.value.as_ref().cmp(want.as_ref()),
        (CompareTarget::ModRevision(want), kv) => kv.map_or(0, |kv| kv.mod_revision).cmp(want),
        (CompareTarget::CreateRevision(want), kv) => {
            kv.map_or(0, |kv| kv.create_revision).cmp(want)
        }
        (CompareTarget::Version(want), kv) => kv.map_or(0, |kv| kv.version).cmp(want),
    };
    match c.op {
        CompareOp::Equal => ord == Ordering::Equal,
        CompareOp::NotEqual => ord != Ordering::Equal,
        CompareOp::Greater => ord == Ordering::Greater,
        CompareOp::Less => ord == Ordering::Less,
    }
}

/// Accumulates a range response: applies `limit`, `keys_only` and `count_only`, and
/// counts every key in the range.
pub(crate) struct RangeCollector {
    limit: usize,
    keys_only: bool,
    count_only: bool,
    kvs: Vec<KeyValue>,
    count: i64,
}

impl RangeCollector {
    pub(crate) fn new(req: &RangeRequest) -> Self {
        RangeCollector {
            limit: usize::try_from(req.limit).unwrap_or(0),
            keys_only: req.keys_only,
            count_only: req.count_only,
            kvs: Vec::new(),
            count: 0,
        }
    }

    /// Whether the next key's data is still needed (else just count it with [`Self::skip`]).
    pub(crate) fn wants_kv(&self) -> bool {
        !self.count_only && (self.limit == 0 || self.kvs.len() < self.limit)
    }

    pub(crate) fn push(&mut self, mut kv: KeyValue) {
        self.count += 1;
        if self.keys_only {
            kv.value = Bytes::new();
        }
        self.kvs.push(kv);
    }

    pub(crate) fn skip(&mut self) {
        self.count += 1;
    }

    pub(crate) fn finish(self, revision: Revision) -> RangeResponse {
        RangeResponse {
            more: !self.count_only && self.count > self.kvs.len() as i64,
            count: self.count,
            kvs: self.kvs,
            revision,
        }
    }
}

/// Merges the index with the changes layered over it, both in key order.
struct Merge<'s, A, B>
where
    A: Iterator<Item = (&'s Bytes, &'s KeyValue)>,
    B: Iterator<Item = (&'s Bytes, &'s Option<KeyValue>)>,
{
    base: Peekable<A>,
    changes: Peekable<B>,
}

impl<'s, A, B> Iterator for Merge<'s, A, B>
where
    A: Iterator<Item = (&'s Bytes, &'s KeyValue)>,
    B: Iterator<Item = (&'s Bytes, &'s Option<KeyValue>)>,
{
    type Item = &'s KeyValue;

    fn next(&mut self) -> Option<&'s KeyValue> {
        loop {
            let order = match (self.base.peek(), self.changes.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((c, _))) => b.cmp(c),
            };
            match order {
                Ordering::Less => return self.base.next().map(|(_, kv)| kv),
                Ordering::Equal => {
                    self.base.next();
                    if let Some((_, Some(kv))) = self.changes.next() {
                        return Some(kv);
                    }
                }
                Ordering::Greater => {
                    if let Some((_, Some(kv))) = self.changes.next() {
                        return Some(kv);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn kv(key: &str, value: &str, create: Revision, modr: Revision, version: i64) -> KeyValue {
        KeyValue {
            key: b(key),
            value: b(value),
            create_revision: create,
            mod_revision: modr,
            version,
        }
    }

    fn no_past() -> impl FnMut(&RangeRequest, &KeyRange) -> Result<RangeResponse, StoreError> {
        |_, _| {
            Err(StoreError::InvalidArgument(
                "no past reads in this test".into(),
            ))
        }
    }

    #[test]
    fn compares() {
        let present = kv("k", "m", 3, 7, 2);
        use CompareOp::*;
        use CompareTarget::*;
        // (key present?, op, target, holds)
        let cases: Vec<(bool, CompareOp, CompareTarget, bool)> = vec![
            (true, Equal, ModRevision(7), true),
            (true, Equal, ModRevision(6), false),
            (true, NotEqual, ModRevision(6), true),
            (true, Greater, ModRevision(6), true),
            (true, Less, ModRevision(8), true),
            (true, Less, ModRevision(7), false),
            (true, Equal, CreateRevision(3), true),
            (true, Equal, Version(2), true),
            (true, Greater, Version(2), false),
            (true, Equal, Value(b("m")), true),
            (true, Greater, Value(b("a")), true),
            (true, Less, Value(b("z")), true),
            (true, NotEqual, Value(b("m")), false),
            (false, Equal, ModRevision(0), true),
            (false, Equal, CreateRevision(0), true),
            (false, Equal, Version(0), true),
            (false, Less, Version(1), true),
            (false, Equal, Value(b("")), false),
            (false, NotEqual, Value(b("x")), false),
        ];
        for (i, (present_key, op, target, want)) in cases.into_iter().enumerate() {
            let c = Compare {
                key: b("k"),
                op,
                target,
            };
            let subject = present_key.then_some(&present);
            assert_eq!(compare_holds(subject, &c), want, "case {i}: {c:?}");
        }
    }

    #[test]
    fn overlay_merges_changes_in_key_order() {
        let mut index = Index::new();
        for (k, v) in [("a", "1"), ("b", "2"), ("d", "4")] {
            index.insert(b(k), kv(k, v, 2, 2, 1));
        }
        let mut overlay = Overlay::new(&index);
        let mut undo = Vec::new();
        overlay.set(b("b"), None, &mut undo);
        overlay.set(b("c"), Some(kv("c", "3", 3, 3, 1)), &mut undo);
        overlay.set(b("d"), Some(kv("d", "44", 2, 3, 2)), &mut undo);
        overlay.set(b("e"), None, &mut undo);
        let all = KeyRange::new(&b("a"), Some(&b("\0"))).expect("valid range");
        let got: Vec<(String, String)> = overlay
            .scan(&all)
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )
            })
            .collect();
        let want =
            [("a", "1"), ("c", "3"), ("d", "44")].map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(got, want);
        assert!(overlay.get(b"b").is_none());
        assert_eq!(index.len(), 3, "the base index is untouched");
    }

    #[test]
    fn range_limit_count_keys_only() {
        let mut index = Index::new();
        for k in ["a", "b", "c", "d"] {
            index.insert(b(k), kv(k, "v", 2, 2, 1));
        }
        let overlay = Overlay::new(&index);
        // (limit, keys_only, count_only, kvs, more, count)
        let cases = [
            (0, false, false, 4, false, 4),
            (2, false, false, 2, true, 4),
            (4, false, false, 4, false, 4),
            (9, false, false, 4, false, 4),
            (0, true, false, 4, false, 4),
            (0, false, true, 0, false, 4),
            (1, false, true, 0, false, 4),
        ];
        for (limit, keys_only, count_only, n, more, count) in cases {
            let req = RangeRequest {
                key: b("a"),
                range_end: Some(b("z")),
                limit,
                keys_only,
                count_only,
                ..Default::default()
            };
            let range = crate::keys::validate_range(&req).expect("valid range");
            let resp = overlay.range(&range, &req, 9);
            assert_eq!(
                resp.kvs.len(),
                n,
                "limit {limit} keys_only {keys_only} count_only {count_only}"
            );
            assert_eq!(resp.more, more);
            assert_eq!(resp.count, count);
            assert_eq!(resp.revision, 9);
            assert!(resp.kvs.iter().all(|kv| kv.value.is_empty() == keys_only));
        }
    }

    #[test]
    fn failed_txn_leaves_overlay_unchanged() {
        let index = Index::new();
        let mut overlay = Overlay::new(&index);
        let txn = Txn {
            compare: vec![],
            success: vec![
                Op::Put {
                    key: b("a"),
                    value: b("1"),
                    prev_kv: false,
                },
                Op::Range(RangeRequest {
                    key: b("a"),
                    revision: 5,
                    ..Default::default()
                }),
            ],
            failure: vec![],
        };
        let err = overlay.apply_txn(&txn, 2, &mut no_past());
        assert!(matches!(
            err,
            Err(StoreError::FutureRevision {
                requested: 5,
                current: 2
            })
        ));
        assert!(overlay.get(b"a").is_none());
        assert!(overlay.into_changes().is_empty());
    }

    #[test]
    fn put_delete_metadata() {
        let index = Index::new();
        let mut overlay = Overlay::new(&index);
        let put = |v: &str| Txn {
            success: vec![Op::Put {
                key: b("k"),
                value: b(v),
                prev_kv: true,
            }],
            ..Default::default()
        };
        let first = overlay
            .apply_txn(&put("1"), 2, &mut no_past())
            .expect("put");
        assert_eq!(first.events[0].kv, kv("k", "1", 2, 2, 1));
        assert!(first.events[0].prev_kv.is_none());
        let second = overlay
            .apply_txn(&put("2"), 3, &mut no_past())
            .expect("put");
        assert_eq!(second.events[0].kv, kv("k", "2", 2, 3, 2));
        assert!(
            matches!(&second.responses[0], OpResponse::Put { prev_kv: Some(p) } if p.value == b("1"))
        );
        let delete = Txn {
            success: vec![Op::Delete {
                key: b("k"),
                range_end: None,
                prev_kv: true,
            }],
            ..Default::default()
        };
        let third = overlay
            .apply_txn(&delete, 4, &mut no_past())
            .expect("delete");
        assert_eq!(third.events[0].kind, EventType::Delete);
        assert_eq!(third.events[0].kv, kv("k", "", 0, 4, 0));
        let again = overlay
            .apply_txn(&delete, 5, &mut no_past())
            .expect("delete");
        assert!(
            again.events.is_empty(),
            "deleting a missing key changes nothing"
        );
        let fourth = overlay
            .apply_txn(&put("3"), 5, &mut no_past())
            .expect("put");
        assert_eq!(
            fourth.events[0].kv,
            kv("k", "3", 5, 5, 1),
            "re-creation starts a new generation"
        );
    }
}
