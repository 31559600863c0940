//! Data-driven test of the MVCC keyspace: `testscripts/*.txt` in, a
//! transcript out, compared with `testscripts/*.golden`. Regenerate on
//! purpose with `UPDATE_GOLDEN=1 cargo test --lib testscripts` and review
//! the diff.

use std::fmt::Write;
use std::path::Path;

use super::mvcc::MvccDb;
use crate::kv::apply::apply;
use crate::kv::command::Command;
use crate::kv::{range, KeyRange, MvccRead};
use crate::pb::etcdserverpb::{
    compare, request_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'0') {
            out.push(0);
            i += 2;
        } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn run(db: &MvccDb, line: &str, out: &mut String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (rev_args, args): (Vec<&str>, Vec<&str>) =
        words[1..].iter().partition(|w| w.starts_with("rev="));
    let rev = rev_args.first().map_or(0, |w| w[4..].parse().unwrap());
    let cmd = match words[0] {
        "put" => Command::Put(PutRequest {
            key: unescape(args[0]),
            value: unescape(args[1]),
            prev_kv: true,
            ..Default::default()
        }),
        "del" => Command::DeleteRange(DeleteRangeRequest {
            key: unescape(args[0]),
            range_end: args.get(1).map(|e| unescape(e)).unwrap_or_default(),
            ..Default::default()
        }),
        "compact" => Command::Compact(CompactionRequest {
            revision: args[0].parse().unwrap(),
            physical: true,
        }),
        "txn-cas" => {
            let key = unescape(args[0]);
            let put = PutRequest {
                key: key.clone(),
                value: unescape(args[2]),
                ..Default::default()
            };
            let get = RangeRequest {
                key: key.clone(),
                ..Default::default()
            };
            Command::Txn(TxnRequest {
                compare: vec![Compare {
                    key,
                    target: compare::CompareTarget::Mod as i32,
                    result: compare::CompareResult::Equal as i32,
                    target_union: Some(compare::TargetUnion::ModRevision(args[1].parse().unwrap())),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(put)),
                }],
                failure: vec![RequestOp {
                    request: Some(request_op::Request::RequestRange(get)),
                }],
            })
        }
        "get" => {
            let req = RangeRequest {
                key: unescape(args[0]),
                range_end: args.get(1).map(|e| unescape(e)).unwrap_or_default(),
                revision: rev,
                ..Default::default()
            };
            let resp = db.read(|r| {
                let s = r.revision_state()?;
                range::range(
                    r,
                    &req,
                    s.current,
                    s.compacted,
                    &mut range::SendBudget::new(u64::MAX),
                )
            });
            match resp {
                Ok(resp) => {
                    writeln!(
                        out,
                        "  rev={} count={}",
                        resp.header.unwrap().revision,
                        resp.count
                    )
                    .unwrap();
                    for kv in resp.kvs {
                        writeln!(
                            out,
                            "  {:?}={:?} create={} mod={} ver={}",
                            String::from_utf8_lossy(&kv.key),
                            String::from_utf8_lossy(&kv.value),
                            kv.create_revision,
                            kv.mod_revision,
                            kv.version
                        )
                        .unwrap();
                    }
                }
                Err(e) => writeln!(out, "  error: {e}").unwrap(),
            }
            return;
        }
        "hashkv" => {
            let h = db
                .read(|r| r.hash_kv(rev.max(r.revision_state()?.current)))
                .unwrap();
            let again = db
                .read(|r| r.hash_kv(rev.max(r.revision_state()?.current)))
                .unwrap();
            writeln!(out, "  deterministic={} nonzero={}", h == again, h != 0).unwrap();
            return;
        }
        "state" => {
            let (s, versions) = db
                .read(|r| {
                    let mut n = 0;
                    r.scan(
                        &KeyRange::new(b"\0", b"\0"),
                        r.revision_state()?.current,
                        &mut |_| {
                            n += 1;
                            true
                        },
                    )?;
                    Ok((r.revision_state()?, n))
                })
                .unwrap();
            writeln!(
                out,
                "  current={} compacted={} live_keys={versions}",
                s.current, s.compacted
            )
            .unwrap();
            return;
        }
        other => panic!("unknown command {other}"),
    };
    let result = db
        .write(|w| apply(w, &cmd, &mut Default::default(), u64::MAX))
        .unwrap();
    writeln!(
        out,
        "  {}",
        format!("{result:?}")
            .replace("cluster_id: 0, member_id: 0, ", "")
            .replace(", raft_term: 0", "")
    )
    .unwrap();
}

#[test]
fn mvcc_testscripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/testscripts");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "txt") {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let db = MvccDb::open(tmp.path(), 64 << 20).unwrap();
        let mut out = String::new();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                writeln!(out, "{line}").unwrap();
                continue;
            }
            writeln!(out, "> {line}").unwrap();
            run(&db, line, &mut out);
        }
        let golden = path.with_extension("golden");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &out).unwrap();
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        assert_eq!(out, expected, "{} differs from its golden", path.display());
    }
}
