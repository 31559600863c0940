//! The writers of the watch-guarantee test: seeded puts, deletes, prefix
//! deletes and multi-key txns on a few keys, each outcome recorded, and the
//! check that every acknowledged write is in the history exactly where its
//! response said.

use super::*;

/// An acknowledged write: what its response says it did at `revision`.
#[derive(Clone, Debug)]
pub(super) struct Ack {
    revision: i64,
    puts: Vec<(String, String)>,
    /// (key, range_end, deleted count); range_end empty = the key alone.
    deletes: Vec<(Vec<u8>, Vec<u8>, i64)>,
}

#[derive(Default)]
pub(super) struct WriterLog {
    pub(super) acks: Vec<Ack>,
    /// Every value this writer sent, acknowledged or not.
    pub(super) attempted: Vec<String>,
    pub(super) ok: usize,
    pub(super) errors: usize,
    pub(super) first_error: Option<String>,
}

pub(super) async fn run_writer(
    id: usize,
    endpoint: String,
    seed: u64,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> WriterLog {
    let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut kv: KvClient = client(&endpoint).await.kv_client();
    let mut log = WriterLog::default();
    let mut n = 0;
    let mut failures = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let mut value = |j: usize| format!("w{id}-{n}-{j}");
        let roll = rng.below(100);
        let result: Result<Ack, String> = if roll < 40 {
            let key = pick_keys(&mut rng, 1)[0];
            let v = value(0);
            log.attempted.push(v.clone());
            let r = tokio::time::timeout(RPC_TIMEOUT, kv.put(key, v.as_str(), None)).await;
            match r {
                Ok(Ok(resp)) => Ok(Ack {
                    revision: resp.header().map_or(0, |h| h.revision()),
                    puts: vec![(key.into(), v)],
                    deletes: vec![],
                }),
                Ok(Err(e)) => Err(format!("put: {e}")),
                Err(_) => Err("put: client timeout".into()),
            }
        } else if roll < 65 {
            // One key, or a prefix (several keys in one revision).
            let (key, end, opts) = match rng.below(5) {
                0 => (
                    "wg/p/",
                    prefix_end("wg/p/"),
                    DeleteOptions::new().with_prefix(),
                ),
                1 => (
                    "wg/k",
                    prefix_end("wg/k"),
                    DeleteOptions::new().with_prefix(),
                ),
                _ => (pick_keys(&mut rng, 1)[0], vec![], DeleteOptions::new()),
            };
            let r = tokio::time::timeout(RPC_TIMEOUT, kv.delete(key, Some(opts))).await;
            match r {
                Ok(Ok(resp)) => Ok(Ack {
                    revision: resp.header().map_or(0, |h| h.revision()),
                    puts: vec![],
                    deletes: vec![(key.as_bytes().to_vec(), end, resp.deleted())],
                }),
                Ok(Err(e)) => Err(format!("delete: {e}")),
                Err(_) => Err("delete: client timeout".into()),
            }
        } else {
            // if version(k) > 0 then put a, put b, delete c else put c, put d
            let ks = pick_keys(&mut rng, 4);
            let cmp = pick_keys(&mut rng, 1)[0];
            let vals: Vec<String> = (0..4).map(&mut value).collect();
            log.attempted.extend(vals.iter().cloned());
            let txn = Txn::new()
                .when([Compare::version(cmp, CompareOp::Greater, 0)])
                .and_then([
                    TxnOp::put(ks[0], vals[0].as_str(), None),
                    TxnOp::put(ks[1], vals[1].as_str(), None),
                    TxnOp::delete(ks[2], None),
                ])
                .or_else([
                    TxnOp::put(ks[2], vals[2].as_str(), None),
                    TxnOp::put(ks[3], vals[3].as_str(), None),
                ]);
            let r = tokio::time::timeout(RPC_TIMEOUT, kv.txn(txn)).await;
            match r {
                Ok(Ok(resp)) => {
                    let revision = resp.header().map_or(0, |h| h.revision());
                    let (puts, deletes) = if resp.succeeded() {
                        let deleted = match resp.op_responses().get(2) {
                            Some(TxnOpResponse::Delete(d)) => d.deleted(),
                            other => panic!("txn delete answered with {other:?}"),
                        };
                        (
                            vec![
                                (ks[0].into(), vals[0].clone()),
                                (ks[1].into(), vals[1].clone()),
                            ],
                            vec![(ks[2].as_bytes().to_vec(), vec![], deleted)],
                        )
                    } else {
                        (
                            vec![
                                (ks[2].into(), vals[2].clone()),
                                (ks[3].into(), vals[3].clone()),
                            ],
                            vec![],
                        )
                    };
                    Ok(Ack {
                        revision,
                        puts,
                        deletes,
                    })
                }
                Ok(Err(e)) => Err(format!("txn: {e}")),
                Err(_) => Err("txn: client timeout".into()),
            }
        };
        done.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(ack) => {
                log.ok += 1;
                failures = 0;
                log.acks.push(ack);
            }
            Err(e) => {
                log.errors += 1;
                log.first_error.get_or_insert(e);
                failures += 1;
                // Back off while the node is down or without a leader.
                let pause = 25 * failures.min(8) + rng.below(25);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
    log
}

/// Every acknowledged write must be in the history at its revision, exactly;
/// every value in the history must have been sent by a writer.
pub(super) fn check_acks(
    history: &History,
    acks: &[Ack],
    attempted: &HashSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_revision: HashMap<i64, &Ack> = HashMap::new();
    for ack in acks {
        let wrote = !ack.puts.is_empty() || ack.deletes.iter().any(|d| d.2 > 0);
        if !wrote {
            continue;
        }
        if let Some(other) = by_revision.insert(ack.revision, ack) {
            problems.push(format!(
                "two acknowledged writes at revision {}: {other:?} and {ack:?}",
                ack.revision
            ));
            continue;
        }
        let events = history.at(ack.revision);
        let mut expected = ack.puts.len();
        let mut ok = ack.puts.iter().all(|(k, v)| {
            events
                .iter()
                .any(|e| e.kind == Kind::Put && &e.kv.key == k && &e.kv.value == v)
        });
        for (key, end, deleted) in &ack.deletes {
            let n = events
                .iter()
                .filter(|e| e.kind == Kind::Delete && in_range(e.kv.key.as_bytes(), key, end))
                .count() as i64;
            ok &= n == *deleted;
            expected += *deleted as usize;
        }
        if !ok || events.len() != expected {
            problems.push(format!(
                "acknowledged write {ack:?} is not what the history has at revision {}: {events:?}",
                ack.revision
            ));
        }
    }
    for e in history.events() {
        if e.kind == Kind::Put && !attempted.contains(&e.kv.value) {
            problems.push(format!("the history has a value nobody wrote: {e:?}"));
        }
    }
    problems
}
