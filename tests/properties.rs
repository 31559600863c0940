//! Property tests over everything that parses bytes from outside: etcd
//! requests (decoded, validated and applied to a real LMDB store), the
//! on-disk key encodings, the replication wire format and the snapshot
//! stream. Arbitrary input gives a clear error or a correct result, never a
//! panic; encodings round-trip and keep their order.

use armada::error::{Error, EtcdError};
use armada::kv::apply::{apply, Changes, MAX_HELD_EVENT_BYTES};
use armada::kv::command::{Applied, Command};
use armada::kv::range::{range, SendBudget};
use armada::kv::validate;
use armada::kv::MvccRead;
use armada::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use armada::pb::replication::{self as pb, SnapshotChunk, SnapshotHeader, SnapshotTrailer};
use armada::replication::snapshot_stream::receive_snapshot;
use armada::replication::wire::{entry_from_wire, entry_to_wire};
use armada::storage::keys::{decode_revision_key, decode_version_key, revision_key, version_key};
use armada::storage::mvcc::MvccDb;
use proptest::prelude::*;
use prost::Message;

/// Bytes biased towards short keys and the bytes that matter to encodings.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![Just(0u8), Just(0xff), Just(b'a'), any::<u8>()],
        0..6,
    )
}

/// A range end: none, a key, `\0` (all keys from the key on).
fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), Just(vec![0]), key()]
}

fn range_request() -> impl Strategy<Value = RangeRequest> {
    (
        key(),
        range_end(),
        -2..12i64,
        -1..4i64,
        -1..4i32,
        -1..6i32,
        any::<bool>(),
    )
        .prop_map(
            |(key, range_end, revision, limit, sort_order, sort_target, keys_only)| RangeRequest {
                key,
                range_end,
                revision,
                limit,
                sort_order,
                sort_target,
                keys_only,
                ..Default::default()
            },
        )
}

/// Any op of a txn, nested txns one level deep.
fn request_op(nested: bool) -> BoxedStrategy<RequestOp> {
    use armada::pb::etcdserverpb::request_op::Request;
    let put = (key(), key(), -1..3i64, any::<bool>(), any::<bool>()).prop_map(
        |(key, value, lease, ignore_value, prev_kv)| {
            Request::RequestPut(PutRequest {
                key,
                value,
                lease,
                ignore_value,
                prev_kv,
                ..Default::default()
            })
        },
    );
    let del = (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
        Request::RequestDeleteRange(DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        })
    });
    let get = range_request().prop_map(Request::RequestRange);
    let op = if nested {
        prop_oneof![
            put,
            del,
            get,
            txn_request(false).prop_map(Request::RequestTxn)
        ]
        .boxed()
    } else {
        prop_oneof![put, del, get].boxed()
    };
    op.prop_map(|r| RequestOp { request: Some(r) }).boxed()
}

fn txn_request(nested: bool) -> BoxedStrategy<TxnRequest> {
    let compare = (key(), range_end(), 0..5i32, -1..4i32, -1..8i64).prop_map(
        |(key, range_end, target, result, n)| {
            use armada::pb::etcdserverpb::compare::TargetUnion;
            let target_union = match target {
                0 => TargetUnion::Version(n),
                1 => TargetUnion::CreateRevision(n),
                2 => TargetUnion::ModRevision(n),
                3 => TargetUnion::Value(vec![b'a'; n.max(0) as usize]),
                _ => TargetUnion::Lease(n),
            };
            Compare {
                key,
                range_end,
                target,
                result,
                target_union: Some(target_union),
            }
        },
    );
    let ops = || prop::collection::vec(request_op(nested), 0..4);
    (prop::collection::vec(compare, 0..3), ops(), ops())
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
        .boxed()
}

/// A store with `puts` applied, one revision each.
fn store_with(puts: Vec<(Vec<u8>, Vec<u8>)>) -> (tempfile::TempDir, MvccDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = MvccDb::open(dir.path(), 1 << 26).unwrap();
    for (key, value) in puts.into_iter().filter(|(k, _)| !k.is_empty()) {
        let put = Command::Put(PutRequest {
            key,
            value,
            ..Default::default()
        });
        db.write(|w| apply(w, &put, &mut Default::default(), u64::MAX))
            .unwrap()
            .unwrap();
    }
    (dir, db)
}

fn range_at(
    db: &MvccDb,
    req: &RangeRequest,
    limit: u64,
) -> armada::error::Result<armada::pb::etcdserverpb::RangeResponse> {
    db.read(|r| {
        let st = r.revision_state()?;
        range(
            r,
            req,
            st.current,
            st.compacted,
            &mut SendBudget::new(limit),
        )
    })
}

fn put_all(n: usize) -> Command {
    Command::Txn(TxnRequest {
        success: (0..n)
            .map(|i| RequestOp {
                request: Some(armada::pb::etcdserverpb::request_op::Request::RequestPut(
                    PutRequest {
                        key: format!("k{i:05}").into_bytes(),
                        value: vec![b'v'; i % 7],
                        ..Default::default()
                    },
                )),
            })
            .collect(),
        ..Default::default()
    })
}

/// A DeleteRange reads and deletes its range in batches: across several
/// batches it deletes exactly what one scan sees, and its prev_kvs are
/// those versions in key order.
#[test]
fn delete_range_in_batches_deletes_what_one_scan_sees() {
    let (_dir, db) = store_with(Vec::new());
    // More keys than one txn may hold: several txns of 128 puts.
    for chunk in 0..20 {
        let Command::Txn(mut txn) = put_all(128) else {
            unreachable!()
        };
        for op in &mut txn.success {
            if let Some(armada::pb::etcdserverpb::request_op::Request::RequestPut(p)) =
                &mut op.request
            {
                p.key = format!("k{chunk:02}{}", String::from_utf8_lossy(&p.key)).into_bytes();
            }
        }
        db.write(|w| apply(w, &Command::Txn(txn), &mut Default::default(), u64::MAX))
            .unwrap()
            .unwrap();
    }
    let all = RangeRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        ..Default::default()
    };
    let sub = RangeRequest {
        key: b"k03".to_vec(),
        range_end: b"k17".to_vec(),
        ..Default::default()
    };
    let before = range_at(&db, &sub, u64::MAX).unwrap();
    assert_eq!(before.kvs.len(), 14 * 128);
    let del = Command::DeleteRange(DeleteRangeRequest {
        key: sub.key.clone(),
        range_end: sub.range_end.clone(),
        prev_kv: true,
    });
    let mut changes = Changes::default();
    let Ok(Ok(Applied::DeleteRange(resp))) = db.write(|w| apply(w, &del, &mut changes, u64::MAX))
    else {
        panic!("delete failed");
    };
    assert_eq!(resp.deleted, 14 * 128);
    assert_eq!(resp.prev_kvs, before.kvs);
    let revision = before.header.as_ref().unwrap().revision + 1;
    assert_eq!(changes.revision, Some(revision));
    assert_eq!(changes.events.len(), 14 * 128);
    assert!((changes.events.iter()).all(|e| e.kv.as_ref().unwrap().mod_revision == revision));
    assert!(range_at(&db, &sub, u64::MAX).unwrap().kvs.is_empty());
    assert_eq!(range_at(&db, &all, u64::MAX).unwrap().count, 6 * 128);
}

/// A write whose watch events pass [`MAX_HELD_EVENT_BYTES`] keeps none of
/// them (watchers read its revision back from the store), and is applied.
#[test]
fn a_huge_delete_keeps_no_events() {
    let value = vec![b'x'; 1 << 20];
    let n = MAX_HELD_EVENT_BYTES / value.len() + 2;
    let (_dir, db) = store_with(
        (0..n)
            .map(|i| (format!("k{i:03}").into_bytes(), value.clone()))
            .collect(),
    );
    let del = Command::DeleteRange(DeleteRangeRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        prev_kv: false,
    });
    let mut changes = Changes::default();
    let applied = db
        .write(|w| apply(w, &del, &mut changes, u64::MAX))
        .unwrap();
    let Ok(Applied::DeleteRange(resp)) = applied else {
        panic!("{applied:?}");
    };
    assert_eq!(resp.deleted, n as i64);
    assert!(
        changes.dropped && changes.events.is_empty(),
        "{}",
        changes.events.len()
    );
    assert_eq!(changes.revision, Some(n as i64 + 2));
}

/// Over the send limit, a write is applied all the same (etcd applies it,
/// then fails to send the answer), with its watch events; only its response
/// is not built.
#[test]
fn a_write_whose_response_is_too_large_is_applied() {
    let (_dir, db) = store_with(
        (0..50)
            .map(|i| (format!("k{i:02}").into_bytes(), vec![b'x'; 100]))
            .collect(),
    );
    let del = Command::DeleteRange(DeleteRangeRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        prev_kv: true,
    });
    let mut changes = Changes::default();
    let applied = db.write(|w| apply(w, &del, &mut changes, 1000)).unwrap();
    let Ok(Applied::ResponseTooLarge { size, limit: 1000 }) = applied else {
        panic!("{applied:?}");
    };
    assert!(size > 50 * 100, "{size}");
    assert_eq!(changes.events.len(), 50);
    let all = RangeRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        ..Default::default()
    };
    assert_eq!(range_at(&db, &all, u64::MAX).unwrap().count, 0);

    // A write txn with a large range: the put is applied.
    let (_dir, db) = store_with(
        (0..50)
            .map(|i| (format!("k{i:02}").into_bytes(), vec![b'x'; 100]))
            .collect(),
    );
    let txn = Command::Txn(TxnRequest {
        success: vec![
            RequestOp {
                request: Some(armada::pb::etcdserverpb::request_op::Request::RequestRange(
                    all.clone(),
                )),
            },
            RequestOp {
                request: Some(armada::pb::etcdserverpb::request_op::Request::RequestPut(
                    PutRequest {
                        key: b"z".to_vec(),
                        ..Default::default()
                    },
                )),
            },
        ],
        ..Default::default()
    });
    let applied = db
        .write(|w| apply(w, &txn, &mut Default::default(), 1000))
        .unwrap();
    assert!(
        matches!(applied, Ok(Applied::ResponseTooLarge { limit: 1000, .. })),
        "{applied:?}"
    );
    let z = RangeRequest {
        key: b"z".to_vec(),
        ..Default::default()
    };
    assert_eq!(range_at(&db, &z, u64::MAX).unwrap().count, 1);
    // Read-only, the same txn is the error and nothing else.
    let read_only = TxnRequest {
        success: vec![RequestOp {
            request: Some(armada::pb::etcdserverpb::request_op::Request::RequestRange(
                all,
            )),
        }],
        ..Default::default()
    };
    let read = db
        .read(|r| armada::kv::txn::read_txn(r, &read_only, 1000))
        .unwrap();
    assert!(
        matches!(read, Err(EtcdError::ResponseTooLarge { limit: 1000, .. })),
        "{read:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Under a send limit, a Range answers exactly as without one, or (when
    /// the answer is larger than the limit) grpc-go's error with the
    /// answer's exact size. Sorted with a limit, the check may also refuse
    /// an answer that fits (see `range::TopK`), never accept one that does not.
    #[test]
    fn a_range_under_a_send_limit_is_the_whole_answer_or_grpcs_error(
        puts in prop::collection::vec((key(), prop::collection::vec(any::<u8>(), 0..80)), 0..24),
        req in range_request(),
        (min_mod, max_create) in (0..6i64, 0..20i64),
        limit in 0..1500u64,
    ) {
        let (_dir, db) = store_with(puts);
        let req = RangeRequest { min_mod_revision: min_mod, max_create_revision: max_create, ..req };
        if validate::range(&req).is_err() {
            return Ok(());
        }
        let full = range_at(&db, &req, u64::MAX);
        let capped = range_at(&db, &req, limit);
        match full {
            Err(e) => prop_assert_eq!(format!("{:?}", Err::<(), _>(e)), format!("{:?}", capped.map(|_| ()))),
            Ok(full) => {
                let size = full.encoded_len() as u64;
                let sorted_top = req.limit > 0 && (req.sort_order != 0 || req.sort_target != 0);
                match capped {
                    Ok(capped) => {
                        prop_assert!(size <= limit);
                        prop_assert_eq!(capped, full);
                    }
                    Err(Error::Etcd(EtcdError::ResponseTooLarge { size: s, limit: l })) => {
                        prop_assert_eq!(l, limit);
                        prop_assert!(size > limit || sorted_top, "{size} <= {limit}");
                        if !sorted_top {
                            prop_assert_eq!(s, size);
                        }
                    }
                    Err(e) => prop_assert!(false, "{e:?}"),
                }
            }
        }
    }

    #[test]
    fn any_txn_validates_and_applies_as_etcd_errors_or_results(
        setup in prop::collection::vec((key(), key()), 0..4),
        txns in prop::collection::vec(txn_request(true), 1..4),
        compact in -1..6i64,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = MvccDb::open(dir.path(), 1 << 24).unwrap();
        for (k, v) in setup.into_iter().filter(|(k, _)| !k.is_empty()) {
            let put = Command::Put(PutRequest { key: k, value: v, ..Default::default() });
            db.write(|w| apply(w, &put, &mut Default::default(), u64::MAX)).unwrap().unwrap();
        }
        let compact = Command::Compact(CompactionRequest { revision: compact, physical: true });
        prop_assert!(db.write(|w| apply(w, &compact, &mut Default::default(), u64::MAX)).is_ok());
        for txn in txns {
            if validate::txn(&txn).is_err() {
                continue;
            }
            let read_only = armada::kv::txn::is_read_only(&txn);
            let cmd = Command::Txn(txn.clone());
            let applied = db.write(|w| apply(w, &cmd, &mut Default::default(), u64::MAX));
            prop_assert!(applied.is_ok(), "{txn:?}: {applied:?}");
            if read_only {
                // Served outside the log, a read-only txn answers the same.
                let read = db.read(|r| armada::kv::txn::read_txn(r, &txn, u64::MAX)).unwrap();
                let Ok(Ok(armada::kv::command::Applied::Txn(mut applied))) = applied else {
                    prop_assert!(read.is_err(), "{txn:?}");
                    continue;
                };
                let mut read = read.unwrap();
                applied.header = None;
                read.header = None;
                prop_assert_eq!(read, applied);
            }
        }
    }

    #[test]
    fn version_keys_round_trip_and_keep_order(
        a in key(), b in key(),
        (m1, s1, m2, s2) in (0..1000i64, 0..4i64, 0..1000i64, 0..4i64),
    ) {
        let (ka, kb) = (version_key(&a, m1, s1), version_key(&b, m2, s2));
        prop_assert_eq!(decode_version_key(&ka), Some((a.clone(), m1, s1)));
        // Keys in bytewise order, then versions in revision order.
        prop_assert_eq!(ka.cmp(&kb), (&a, m1, s1).cmp(&(&b, m2, s2)));
        let r = revision_key(m1, s1);
        prop_assert_eq!(decode_revision_key(&r), Some((m1, s1)));
    }

    #[test]
    fn any_bytes_decode_to_a_key_or_to_nothing(raw in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Some((k, m, s)) = decode_version_key(&raw) {
            prop_assert_eq!(version_key(&k, m, s), raw.clone());
        }
        let _ = decode_revision_key(&raw);
    }

    #[test]
    fn any_replicated_entry_bytes_give_commands_or_an_error(
        raw in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        if let Ok(entry) = pb::Entry::decode(raw.as_slice()) {
            if let Ok(e) = entry_from_wire(entry.clone()) {
                // What decodes re-encodes to the same entry.
                prop_assert_eq!(entry_to_wire(e.leader_index, &e.commands), entry);
            }
        }
    }

    #[test]
    fn any_request_bytes_validate_and_apply_without_panicking(
        kind in 0..5u8,
        raw in prop::collection::vec(any::<u8>(), 0..160),
        setup in prop::collection::vec((key(), key()), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = MvccDb::open(dir.path(), 1 << 24).unwrap();
        for (k, v) in setup.into_iter().filter(|(k, _)| !k.is_empty()) {
            let put = Command::Put(PutRequest { key: k, value: v, ..Default::default() });
            db.write(|w| apply(w, &put, &mut Default::default(), u64::MAX)).unwrap().unwrap();
        }
        let bytes = raw.as_slice();
        // Decoded like the API decodes it, validated like the API does, and
        // applied if valid: an etcd error or a response, never a panic and
        // never a storage error.
        let cmd = match kind {
            0 => PutRequest::decode(bytes).ok()
                .filter(|r| validate::put(r).is_ok()).map(Command::Put),
            1 => DeleteRangeRequest::decode(bytes).ok()
                .filter(|r| validate::delete_range(r).is_ok()).map(Command::DeleteRange),
            2 => TxnRequest::decode(bytes).ok()
                .filter(|r| validate::txn(r).is_ok()).map(Command::Txn),
            3 => CompactionRequest::decode(bytes).ok()
                .filter(|r| validate::compact(r).is_ok()).map(Command::Compact),
            _ => {
                if let Ok(r) = RangeRequest::decode(bytes) {
                    if validate::range(&r).is_ok() {
                        let read = db.read(|rd| {
                            let st = armada::kv::MvccRead::revision_state(rd)?;
                            let mut budget = SendBudget::new(u64::MAX);
                            armada::kv::range::range(rd, &r, st.current, st.compacted, &mut budget)
                        });
                        prop_assert!(!matches!(read, Err(ref e) if !e.is_deterministic()), "{read:?}");
                    }
                }
                None
            }
        };
        if let Some(cmd) = cmd {
            let applied = db.write(|w| apply(w, &cmd, &mut Default::default(), u64::MAX));
            prop_assert!(applied.is_ok(), "{cmd:?}: {applied:?}");
        }
    }

    #[test]
    fn any_snapshot_stream_is_taken_whole_or_refused(
        chunks in prop::collection::vec(
            prop_oneof![
                (0..64u64).prop_map(|size| SnapshotChunk {
                    header: Some(SnapshotHeader { table: "t".into(), size, ..Default::default() }),
                    ..Default::default()
                }),
                (prop::collection::vec(any::<u8>(), 0..24), any::<bool>()).prop_map(|(data, good)| {
                    let crc32 = if good { crc32fast::hash(&data) } else { 7 };
                    SnapshotChunk { data, crc32, ..Default::default() }
                }),
                (0..64u64, any::<u32>(), any::<u32>()).prop_map(|(size, crc32, header_crc32)| {
                    SnapshotChunk {
                        trailer: Some(SnapshotTrailer { size, crc32, header_crc32 }),
                        ..Default::default()
                    }
                }),
            ],
            0..8,
        ),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.mdb");
        let stream = futures::stream::iter(chunks.clone().into_iter().map(Ok));
        let got = rt.block_on(receive_snapshot(stream, &path, 0));
        // Accepted only when it is exactly a header, good chunks adding up to
        // the announced size, and a trailer with that size and checksum.
        let whole: Vec<u8> = chunks.iter().skip(1).take_while(|c| c.trailer.is_none())
            .flat_map(|c| c.data.clone()).collect();
        if let Ok(header) = got {
            prop_assert_eq!(header.size, whole.len() as u64);
            prop_assert_eq!(std::fs::read(&path).unwrap(), whole);
        }
    }
}
