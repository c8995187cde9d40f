//! Backend-level tests of the etcd semantics, run against [`MemoryStore`] (the same
//! engine as the embedded store; the embedded-only properties — restart and crash
//! durability — are tested in [`crate::embedded`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::*;

pub(crate) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub(crate) fn put_op(key: &str, value: &str) -> Op {
    Op::Put {
        key: b(key),
        value: b(value),
        prev_kv: false,
    }
}

pub(crate) async fn put(store: &dyn Backend, key: &str, value: &str) -> Revision {
    let resp = store
        .txn(Txn {
            success: vec![put_op(key, value)],
            ..Default::default()
        })
        .await
        .expect("put");
    assert!(resp.succeeded);
    resp.revision
}

pub(crate) async fn delete(store: &dyn Backend, key: &str, range_end: Option<&str>) -> TxnResponse {
    store
        .txn(Txn {
            success: vec![Op::Delete {
                key: b(key),
                range_end: range_end.map(b),
                prev_kv: true,
            }],
            ..Default::default()
        })
        .await
        .expect("delete")
}

pub(crate) async fn get(
    store: &dyn Backend,
    key: &str,
    revision: Revision,
) -> Result<Option<KeyValue>, StoreError> {
    let resp = store
        .range(RangeRequest {
            key: b(key),
            revision,
            ..Default::default()
        })
        .await?;
    Ok(resp.kvs.into_iter().next())
}

fn prefix(p: &str) -> RangeRequest {
    RangeRequest {
        key: b(p),
        range_end: Some(prefix_end(p.as_bytes())),
        ..Default::default()
    }
}

fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn mem() -> Arc<MemoryStore> {
    MemoryStore::new().expect("memory store")
}

/// Reads events until one at `last` revision (inclusive) arrived.
pub(crate) async fn collect_until(stream: &mut WatchStream, last: Revision) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("watch stalled")
            .expect("watch ended early")
            .expect("watch error");
        let rev = next.kv.mod_revision;
        events.push(next);
        if rev >= last {
            return events;
        }
    }
}

/// Asserts events carry exactly the revisions `from..=to`, in order, one per revision
/// (the writers in these tests put one key per transaction).
pub(crate) fn assert_contiguous(events: &[Event], from: Revision, to: Revision) {
    let revs: Vec<Revision> = events.iter().map(|e| e.kv.mod_revision).collect();
    let want: Vec<Revision> = (from..=to).collect();
    assert_eq!(
        revs, want,
        "events must cover every revision exactly once, in order"
    );
}

#[tokio::test]
async fn revisions_and_versions() {
    let s = mem();
    assert_eq!(
        s.current_revision(),
        1,
        "an empty store is at revision 1, like etcd"
    );
    assert_eq!(put(&*s, "a", "1").await, 2);
    assert_eq!(put(&*s, "a", "2").await, 3);
    let a = get(&*s, "a", 0).await.expect("get").expect("present");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));

    // A multi-op transaction commits as exactly one revision.
    let resp = s
        .txn(Txn {
            success: vec![put_op("x", "1"), put_op("y", "1"), put_op("z", "1")],
            ..Default::default()
        })
        .await
        .expect("txn");
    assert_eq!(resp.revision, 4);
    let all = s.range(prefix("")).await;
    assert!(all.is_err(), "an empty key is rejected");
    let xyz = s
        .range(RangeRequest {
            key: b("x"),
            range_end: Some(b("\0")),
            ..Default::default()
        })
        .await
        .expect("range");
    assert!(
        xyz.kvs
            .iter()
            .all(|kv| kv.mod_revision == 4 && kv.create_revision == 4 && kv.version == 1)
    );
    assert_eq!(xyz.revision, 4);

    // Delete and re-create: a new generation.
    assert_eq!(delete(&*s, "a", None).await.revision, 5);
    assert_eq!(put(&*s, "a", "3").await, 6);
    let a = get(&*s, "a", 0).await.expect("get").expect("present");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (6, 6, 1));
    assert_eq!(s.current_revision(), 6);
}

#[tokio::test]
async fn reads_and_no_op_writes_do_not_create_revisions() {
    let s = mem();
    put(&*s, "a", "1").await;
    let before = s.current_revision();
    // Read-only transaction.
    let r = s
        .txn(Txn {
            success: vec![Op::Range(RangeRequest {
                key: b("a"),
                ..Default::default()
            })],
            ..Default::default()
        })
        .await
        .expect("txn");
    assert_eq!(r.revision, before);
    // Failed compare with a read-only failure branch.
    let r = s
        .txn(Txn {
            compare: vec![Compare {
                key: b("a"),
                op: CompareOp::Equal,
                target: CompareTarget::Version(7),
            }],
            success: vec![put_op("a", "2")],
            failure: vec![],
        })
        .await
        .expect("txn");
    assert!(!r.succeeded);
    assert_eq!(r.revision, before);
    // Deleting nothing.
    let r = delete(&*s, "missing", None).await;
    assert_eq!(r.revision, before);
    assert!(matches!(
        r.responses[0],
        OpResponse::Delete { deleted: 0, .. }
    ));
    assert_eq!(s.current_revision(), before);
    assert_eq!(s.stats().write_txns, 1);
}

/// The Kubernetes GuaranteedUpdate pattern: compare mod_revision, put on success,
/// read the current object on failure.
#[tokio::test]
async fn compare_and_swap() {
    let s = mem();
    let created = s
        .txn(Txn {
            compare: vec![Compare {
                key: b("k"),
                op: CompareOp::Equal,
                target: CompareTarget::ModRevision(0),
            }],
            success: vec![put_op("k", "v1")],
            failure: vec![Op::Range(RangeRequest {
                key: b("k"),
                ..Default::default()
            })],
        })
        .await
        .expect("create");
    assert!(created.succeeded);
    let cas = |expected: Revision, value: &'static str| Txn {
        compare: vec![Compare {
            key: b("k"),
            op: CompareOp::Equal,
            target: CompareTarget::ModRevision(expected),
        }],
        success: vec![Op::Put {
            key: b("k"),
            value: b(value),
            prev_kv: true,
        }],
        failure: vec![Op::Range(RangeRequest {
            key: b("k"),
            ..Default::default()
        })],
    };
    let ok = s.txn(cas(created.revision, "v2")).await.expect("cas");
    assert!(ok.succeeded);
    assert_eq!(ok.revision, created.revision + 1);
    assert!(matches!(&ok.responses[0], OpResponse::Put { prev_kv: Some(p) } if p.value == b("v1")));

    let stale = s.txn(cas(created.revision, "v3")).await.expect("cas");
    assert!(!stale.succeeded);
    assert_eq!(
        stale.revision, ok.revision,
        "a failed compare creates no revision"
    );
    let OpResponse::Range(current) = &stale.responses[0] else {
        panic!("failure branch reads")
    };
    assert_eq!(current.kvs[0].value, b("v2"));
    assert_eq!(current.kvs[0].mod_revision, ok.revision);

    // Value compare on a missing key is always false, even NotEqual.
    let r = s
        .txn(Txn {
            compare: vec![Compare {
                key: b("nope"),
                op: CompareOp::NotEqual,
                target: CompareTarget::Value(b("x")),
            }],
            success: vec![put_op("nope", "1")],
            failure: vec![],
        })
        .await
        .expect("txn");
    assert!(!r.succeeded);
}

#[tokio::test]
async fn concurrent_cas_has_one_winner_per_revision() {
    let s = mem();
    let start = put(&*s, "counter", "0").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.txn(Txn {
                compare: vec![Compare {
                    key: b("counter"),
                    op: CompareOp::Equal,
                    target: CompareTarget::ModRevision(start),
                }],
                success: vec![put_op("counter", &i.to_string())],
                failure: vec![],
            })
            .await
            .expect("txn")
            .succeeded
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.expect("task"));
    }
    assert_eq!(winners, 1);
    assert_eq!(s.current_revision(), start + 1);
}

#[tokio::test]
async fn txn_ops_see_earlier_writes() {
    let s = mem();
    put(&*s, "a", "old").await;
    let r = s
        .txn(Txn {
            success: vec![
                put_op("a", "new"),
                Op::Range(RangeRequest {
                    key: b("a"),
                    ..Default::default()
                }),
                Op::Delete {
                    key: b("a"),
                    range_end: Some(b("b")),
                    prev_kv: true,
                },
            ],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(r, Err(StoreError::InvalidArgument(_))),
        "a put inside a deleted range is a duplicate key"
    );
    let r = s
        .txn(Txn {
            success: vec![
                put_op("b", "new"),
                Op::Range(RangeRequest {
                    key: b("b"),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        })
        .await
        .expect("txn");
    let OpResponse::Range(read) = &r.responses[1] else {
        panic!("range response")
    };
    assert_eq!(read.kvs[0].value, b("new"));
    assert_eq!(read.revision, r.revision);
}

#[tokio::test]
async fn ranges_with_limit_count_and_prefix() {
    let s = mem();
    for k in ["/pods/a", "/pods/b", "/pods/c", "/pods0", "/services/a"] {
        put(&*s, k, "v").await;
    }
    let all = s.range(prefix("/pods/")).await.expect("range");
    assert_eq!(keys(&all), ["/pods/a", "/pods/b", "/pods/c"]);
    assert_eq!((all.count, all.more), (3, false));

    let limited = s
        .range(RangeRequest {
            limit: 2,
            ..prefix("/pods/")
        })
        .await
        .expect("range");
    assert_eq!(keys(&limited), ["/pods/a", "/pods/b"]);
    assert_eq!((limited.count, limited.more), (3, true));

    // Continue after the last key, as the apiserver paginates.
    let rest = s
        .range(RangeRequest {
            key: b("/pods/b\0"),
            limit: 2,
            ..prefix("/pods/")
        })
        .await
        .expect("range");
    assert_eq!(keys(&rest), ["/pods/c"]);
    assert!(!rest.more);

    let counted = s
        .range(RangeRequest {
            count_only: true,
            ..prefix("/")
        })
        .await
        .expect("range");
    assert_eq!((counted.count, counted.kvs.len()), (5, 0));

    let names = s
        .range(RangeRequest {
            keys_only: true,
            ..prefix("/services/")
        })
        .await
        .expect("range");
    assert_eq!(names.kvs[0].value, Bytes::new());
    assert_eq!(names.kvs[0].version, 1);

    let from_key = s
        .range(RangeRequest {
            key: b("/pods0"),
            range_end: Some(b("\0")),
            ..Default::default()
        })
        .await
        .expect("range");
    assert_eq!(keys(&from_key), ["/pods0", "/services/a"]);

    let inverted = s
        .range(RangeRequest {
            key: b("/z"),
            range_end: Some(b("/a")),
            ..Default::default()
        })
        .await
        .expect("range");
    assert_eq!(inverted.count, 0);
}

#[tokio::test]
async fn reads_at_past_revisions() {
    let s = mem();
    let r1 = put(&*s, "/a", "1").await;
    let r2 = put(&*s, "/a", "2").await;
    let r3 = put(&*s, "/b", "1").await;
    let r4 = delete(&*s, "/a", None).await.revision;

    let at = |rev| RangeRequest {
        revision: rev,
        ..prefix("/")
    };
    // (revision, expected (key, value) pairs)
    let cases: Vec<(Revision, Vec<(&str, &str)>)> = vec![
        (1, vec![]),
        (r1, vec![("/a", "1")]),
        (r2, vec![("/a", "2")]),
        (r3, vec![("/a", "2"), ("/b", "1")]),
        (r4, vec![("/b", "1")]),
    ];
    for (rev, want) in cases {
        let resp = s.range(at(rev)).await.expect("range");
        let got: Vec<(String, String)> = resp
            .kvs
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(got, want, "at revision {rev}");
        assert_eq!(resp.count, want.len() as i64);
        assert_eq!(resp.revision, rev, "the revision the read was served at");
    }
    let old = get(&*s, "/a", r2)
        .await
        .expect("get")
        .expect("present at r2");
    assert_eq!(
        (old.create_revision, old.mod_revision, old.version),
        (r1, r2, 2)
    );
    let limited = s
        .range(RangeRequest {
            limit: 1,
            keys_only: true,
            ..at(r3)
        })
        .await
        .expect("range");
    assert_eq!(
        (keys(&limited), limited.count, limited.more),
        (vec!["/a".to_string()], 2, true)
    );
    assert!(limited.kvs[0].value.is_empty());

    let future = s.range(at(r4 + 1)).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { requested, current }) if requested == r4 + 1 && current == r4)
    );

    // A transaction can read the past too (through the writer).
    let r = s
        .txn(Txn {
            success: vec![
                put_op("/c", "1"),
                Op::Range(RangeRequest {
                    key: b("/a"),
                    revision: r1,
                    ..Default::default()
                }),
            ],
            ..Default::default()
        })
        .await
        .expect("txn");
    let OpResponse::Range(read) = &r.responses[1] else {
        panic!("range response")
    };
    assert_eq!(read.kvs[0].value, b("1"));
    assert_eq!(read.revision, r1);
}

#[tokio::test]
async fn compaction_keeps_latest_versions_and_rejects_old_reads() {
    let s = mem();
    put(&*s, "/a", "1").await;
    put(&*s, "/a", "2").await;
    let gone = put(&*s, "/gone", "x").await;
    put(&*s, "/b", "1").await;
    delete(&*s, "/gone", None).await;
    let before = put(&*s, "/b", "2").await;
    let latest_a = put(&*s, "/a", "3").await;

    s.compact(before).await.expect("compact");
    assert_eq!(s.compacted_revision(), before);
    assert!(matches!(
        s.range(RangeRequest { revision: before - 1, ..prefix("/") }).await,
        Err(StoreError::Compacted { requested, compacted }) if requested == before - 1 && compacted == before
    ));
    assert!(matches!(
        get(&*s, "/gone", gone).await,
        Err(StoreError::Compacted { .. })
    ));
    // At the compacted revision itself every live key is still readable.
    let at = s
        .range(RangeRequest {
            revision: before,
            ..prefix("/")
        })
        .await
        .expect("range");
    assert_eq!(keys(&at), ["/a", "/b"]);
    assert_eq!(at.kvs[0].value, b("2"));
    let now = s.range(prefix("/")).await.expect("range");
    assert_eq!(keys(&now), ["/a", "/b"]);
    assert_eq!(now.kvs[0].mod_revision, latest_a);

    assert!(matches!(
        s.compact(before).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        s.compact(latest_a + 1).await,
        Err(StoreError::FutureRevision { .. })
    ));
    assert!(matches!(
        s.watch(WatchRequest {
            start_revision: before - 1,
            ..watch_prefix("/")
        })
        .await,
        Err(StoreError::Compacted { .. })
    ));
    // A watch from the compacted revision still sees its events.
    let mut w = s
        .watch(WatchRequest {
            start_revision: before,
            prev_kv: true,
            ..watch_prefix("/")
        })
        .await
        .expect("watch");
    let events = collect_until(&mut w, latest_a).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].prev_kv.as_ref().map(|p| p.value.clone()),
        Some(b("1")),
        "prev_kv survives compaction"
    );
    // Compacting everything still keeps the live keys.
    s.compact(latest_a).await.expect("compact");
    let now = s
        .range(RangeRequest {
            revision: latest_a,
            ..prefix("/")
        })
        .await
        .expect("range");
    assert_eq!(keys(&now), ["/a", "/b"]);
}

#[tokio::test]
async fn delete_range_with_prev_kv() {
    let s = mem();
    for k in ["/x/1", "/x/2", "/x/3", "/y"] {
        put(&*s, k, k).await;
    }
    let r = delete(&*s, "/x/", Some("/x/3")).await;
    let OpResponse::Delete { deleted, prev_kvs } = &r.responses[0] else {
        panic!("delete response")
    };
    assert_eq!(*deleted, 2);
    assert_eq!(
        prev_kvs
            .iter()
            .map(|kv| kv.value.clone())
            .collect::<Vec<_>>(),
        [b("/x/1"), b("/x/2")]
    );
    let left = s
        .range(RangeRequest {
            key: b("/"),
            range_end: Some(b("\0")),
            ..Default::default()
        })
        .await
        .expect("range");
    assert_eq!(keys(&left), ["/x/3", "/y"]);
}

#[tokio::test]
async fn invalid_requests_are_errors() {
    let s = mem();
    let bad_ranges = [
        RangeRequest {
            key: b(""),
            ..Default::default()
        },
        RangeRequest {
            key: b("a"),
            limit: -1,
            ..Default::default()
        },
        RangeRequest {
            key: b("a"),
            revision: -3,
            ..Default::default()
        },
    ];
    for req in bad_ranges {
        assert!(matches!(
            s.range(req).await,
            Err(StoreError::InvalidArgument(_))
        ));
    }
    let dup = Txn {
        success: vec![put_op("a", "1"), put_op("a", "2")],
        ..Default::default()
    };
    assert!(matches!(
        s.txn(dup).await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        s.watch(WatchRequest {
            key: b(""),
            ..Default::default()
        })
        .await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        s.watch(WatchRequest {
            key: b("a"),
            start_revision: -1,
            ..Default::default()
        })
        .await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert_eq!(s.current_revision(), 1);
}

fn watch_prefix(p: &str) -> WatchRequest {
    WatchRequest {
        key: b(p),
        range_end: Some(prefix_end(p.as_bytes())),
        ..Default::default()
    }
}

#[tokio::test]
async fn watch_replays_history_then_follows_live() {
    let s = mem();
    let first = put(&*s, "/w/a", "1").await;
    put(&*s, "/other", "x").await;
    put(&*s, "/w/b", "1").await;
    delete(&*s, "/w/a", None).await;

    let mut w = s
        .watch(WatchRequest {
            start_revision: first,
            prev_kv: true,
            ..watch_prefix("/w/")
        })
        .await
        .expect("watch");
    let live1 = put(&*s, "/w/b", "2").await;
    let history = collect_until(&mut w, live1).await;
    let summary: Vec<(EventType, String, Revision)> = history
        .iter()
        .map(|e| {
            (
                e.kind,
                String::from_utf8_lossy(&e.kv.key).into_owned(),
                e.kv.mod_revision,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (EventType::Put, "/w/a".to_string(), first),
            (EventType::Put, "/w/b".to_string(), first + 2),
            (EventType::Delete, "/w/a".to_string(), first + 3),
            (EventType::Put, "/w/b".to_string(), live1),
        ]
    );
    assert_eq!(
        history[2].prev_kv.as_ref().map(|p| p.value.clone()),
        Some(b("1")),
        "delete carries the old value"
    );
    assert_eq!(history[2].kv.value, Bytes::new());
    assert_eq!(
        history[3].prev_kv.as_ref().map(|p| p.mod_revision),
        Some(first + 2)
    );
    assert!(history[0].prev_kv.is_none());

    // Without prev_kv, from "now": only new events, without previous values.
    let mut now = s.watch(watch_prefix("/w/")).await.expect("watch");
    let next = put(&*s, "/w/c", "1").await;
    let update = put(&*s, "/w/c", "2").await;
    let seen = collect_until(&mut now, update).await;
    assert_eq!(
        seen.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(),
        [next, update]
    );
    assert!(seen.iter().all(|e| e.prev_kv.is_none()));

    // A single-key watch ignores other keys.
    let mut one = s
        .watch(WatchRequest {
            key: b("/w/c"),
            start_revision: first,
            ..Default::default()
        })
        .await
        .expect("watch");
    let seen = collect_until(&mut one, update).await;
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn watch_of_a_closed_store_ends_with_closed() {
    let s = mem();
    let mut w = s.watch(watch_prefix("/")).await.expect("watch");
    drop(s);
    let end = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("stream ends");
    assert!(matches!(end, Some(Err(StoreError::Closed))));
    assert!(w.next().await.is_none());
}

#[tokio::test]
async fn lagging_watcher_fails_if_its_history_is_compacted() {
    let s = MemoryStore::with_watch_buffer(1).expect("store");
    let start = put(&*s, "/k", "0").await;
    let mut w = s
        .watch(WatchRequest {
            start_revision: start,
            ..watch_prefix("/")
        })
        .await
        .expect("watch");
    let mut last = start;
    for i in 0..5 {
        last = put(&*s, "/k", &i.to_string()).await;
    }
    s.compact(last).await.expect("compact");
    let first = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("stream answers");
    assert!(
        matches!(first, Some(Err(StoreError::Compacted { requested, .. })) if requested == start)
    );
    assert!(w.next().await.is_none(), "the stream ends after the error");
}

/// Many concurrent writers; watchers start at different times (from history, from a
/// recent revision, from now) and one reads slowly with a tiny live buffer so it has to
/// catch up from disk repeatedly. Each must see every revision from its start exactly
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_revision_once_under_concurrent_writes() {
    let s = MemoryStore::with_watch_buffer(4).expect("store");
    let writers = 8;
    let per_writer = 150;
    let mut early = s
        .watch(WatchRequest {
            start_revision: 2,
            ..watch_prefix("/c/")
        })
        .await
        .expect("watch");
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                put(&*s, &format!("/c/{w}/{}", i % 10), &i.to_string()).await;
            }
        }));
    }
    // Start more watchers while the writes are running.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mid_rev = s.current_revision();
    let mut from_mid = s
        .watch(WatchRequest {
            start_revision: mid_rev.max(2),
            ..watch_prefix("/c/")
        })
        .await
        .expect("watch");
    let mut from_now = s.watch(watch_prefix("/c/")).await.expect("watch");
    let now_start = s.current_revision();
    let slow = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut w = s
                .watch(WatchRequest {
                    start_revision: 2,
                    ..watch_prefix("/c/")
                })
                .await
                .expect("watch");
            let mut events = Vec::new();
            while events.len() < writers * per_writer + 1 {
                if events.len() % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                match w.next().await {
                    Some(Ok(e)) => events.push(e),
                    other => panic!("slow watcher ended: {other:?}"),
                }
            }
            events
        })
    };
    for t in tasks {
        t.await.expect("writer");
    }
    // One more write, so that even the "from now" watcher has something to see.
    let last = put(&*s, "/c/final", "1").await;
    assert_eq!(last, 2 + (writers * per_writer) as Revision);

    let replays_before = s.stats().watch_replays;
    assert_contiguous(&collect_until(&mut early, last).await, 2, last);
    assert!(
        s.stats().watch_replays > replays_before,
        "the unpolled watcher lagged and caught up from disk"
    );
    assert_contiguous(
        &collect_until(&mut from_mid, last).await,
        mid_rev.max(2),
        last,
    );
    let now_events = collect_until(&mut from_now, last).await;
    assert!(
        now_events
            .first()
            .is_some_and(|e| e.kv.mod_revision <= now_start + 1)
    );
    assert_contiguous(&now_events, now_events[0].kv.mod_revision, last);
    let slow = tokio::time::timeout(Duration::from_secs(15), slow)
        .await
        .expect("slow watcher finishes")
        .expect("task");
    assert_contiguous(&slow, 2, last);

    // The events match the final state: the last event per key is its current version.
    let mut latest: BTreeMap<Bytes, KeyValue> = BTreeMap::new();
    for e in &slow {
        latest.insert(e.kv.key.clone(), e.kv.clone());
    }
    let state = s.range(prefix("/c/")).await.expect("range");
    assert_eq!(state.kvs, latest.into_values().collect::<Vec<_>>());
}
