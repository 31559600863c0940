//! A full LMDB map is etcd's NOSPACE: writes fail with `etcdserver: mvcc:
//! database space exceeded`, the alarm is listed, reads keep being served,
//! nothing acknowledged is lost, and after a restart with a larger
//! `--storage.map-size` the alarm is still raised (it is replicated table
//! state, as in etcd) until it is disarmed; then writes go through.

mod common;

use armada::pb::etcdserverpb::alarm_request::AlarmAction;
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use armada::pb::etcdserverpb::{AlarmRequest, AlarmType, PutRequest, RangeRequest, StatusRequest};
use common::{Ports, Server};
use tonic::Code;

const SMALL_MAP: &str = "--storage.map-size=4194304";

fn put(key: String, size: usize) -> PutRequest {
    PutRequest {
        key: key.into_bytes(),
        value: vec![b'x'; size],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_map_raises_nospace_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    let mut server = Server::start(dir.path(), ports, &[SMALL_MAP]);
    let ch = server.ready().await;
    let mut kv = KvClient::new(ch.clone());
    let mut maintenance = MaintenanceClient::new(ch.clone());

    let get_alarms = AlarmRequest {
        action: AlarmAction::Get as i32,
        ..Default::default()
    };
    let alarms = maintenance.alarm(get_alarms).await.unwrap().into_inner();
    assert!(alarms.alarms.is_empty());

    // 100 KB values into a 4 MiB map: it must fill well before 100 puts.
    let mut acked = 0;
    let err = loop {
        match kv.put(put(format!("big/{acked:03}"), 100_000)).await {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 100, "a 4 MiB map took {acked} puts of 100 KB");
    };
    assert!(acked > 0);
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");
    // Small writes are refused too, as in etcd: the alarm gates every write.
    let err = kv.put(put("small".into(), 1)).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");

    let alarms = maintenance.alarm(get_alarms).await.unwrap().into_inner();
    assert_eq!(alarms.alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms.alarms[0].alarm, AlarmType::Nospace as i32);
    let status = maintenance
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        status.errors.iter().any(|e| e.contains("alarm:NOSPACE")),
        "{status:?}"
    );
    let (_, metrics) = server.http_get("/metrics").await;
    assert!(metrics.contains("armada_alarm_nospace{table=\"default\"} 1"));

    // Reads are still served, with every acknowledged write.
    let all = kv
        .range(RangeRequest {
            key: b"big/".to_vec(),
            range_end: b"big0".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.count, acked);

    // Disarming while the map is still full makes no room: the next write
    // that does not fit raises the alarm again, which again refuses every
    // write, small ones included.
    let disarm = AlarmRequest {
        action: AlarmAction::Deactivate as i32,
        member_id: alarms.alarms[0].member_id,
        alarm: AlarmType::Nospace as i32,
    };
    let disarmed = maintenance.alarm(disarm).await.unwrap().into_inner();
    assert_eq!(disarmed.alarms, alarms.alarms);
    let err = kv.put(put("big/again".into(), 100_000)).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");
    let again = maintenance.alarm(get_alarms).await.unwrap().into_inner();
    assert_eq!(again.alarms, alarms.alarms);
    let err = kv.put(put("small".into(), 1)).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");

    // Recovery: restart with a larger map. The alarm survives the restart
    // and refuses writes until it is disarmed; then writes go through.
    server.kill9();
    let server = Server::start(dir.path(), ports, &["--storage.map-size=67108864"]);
    let ch = server.ready().await;
    let mut kv = KvClient::new(ch.clone());
    let err = kv.put(put("after".into(), 10)).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");
    let mut maintenance = MaintenanceClient::new(ch);
    let alarms = maintenance.alarm(get_alarms).await.unwrap().into_inner();
    assert_eq!(alarms.alarms.len(), 1, "{alarms:?}");
    let disarmed = maintenance.alarm(disarm).await.unwrap().into_inner();
    assert_eq!(disarmed.alarms, alarms.alarms);
    let resp = kv.put(put("after".into(), 10)).await.unwrap().into_inner();
    assert_eq!(resp.header.unwrap().revision, acked + 2);
    let all = kv
        .range(RangeRequest {
            key: b"big/".to_vec(),
            range_end: b"big0".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.count, acked);
}

/// Runs Debian's etcdctl (v3 API) against `endpoint`, with `stdin` as its
/// standard input; returns (success, stdout, stderr).
fn etcdctl(endpoint: &str, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl must be installed (Debian's etcd-client)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// etcd's documented NOSPACE recovery (op-guide "Space quota"), with
/// etcdctl as written there: fill with 1 MiB puts until the space is
/// exceeded, see the alarm, compact to the current revision, defrag,
/// disarm, and writes work again, large ones included, with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcds_documented_nospace_recovery_works_with_etcdctl() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Ports::pick(), &["--storage.map-size=16777216"]);
    let ch = server.ready().await;
    let ep = server.endpoint.clone();
    let run = |args: &[&str], stdin: &[u8]| etcdctl(&ep, args, stdin);
    let value = |i: usize| -> Vec<u8> { (0..1 << 20).map(|j| (i * 7 + j * 13) as u8).collect() };

    // while [ 1 ]; do dd if=/dev/urandom bs=1024 count=1024 | etcdctl put key || break; done
    let mut puts = 0;
    let stderr = loop {
        let (ok, _, err) = run(&["put", "key"], &value(puts));
        if !ok {
            break err;
        }
        puts += 1;
        assert!(puts < 64, "a 16 MiB map took {puts} puts of 1 MiB");
    };
    assert!(puts > 0);
    assert!(
        stderr.contains("etcdserver: mvcc: database space exceeded"),
        "{stderr}"
    );
    let (ok, alarms, _) = run(&["alarm", "list"], b"");
    assert!(ok && alarms.contains("alarm:NOSPACE"), "{alarms}");
    let (ok, _, err) = run(&["put", "small", "1"], b"");
    assert!(!ok && err.contains("database space exceeded"), "{err}");

    // rev=$(etcdctl endpoint status --write-out="json" | egrep -o '"revision":[0-9]*' | ...)
    let (ok, status, _) = run(&["endpoint", "status", "--write-out=json"], b"");
    assert!(ok, "{status}");
    let rev = status.split("\"revision\":").nth(1).unwrap();
    let rev: String = rev.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(rev, (puts + 1).to_string(), "{status}");
    let (ok, out, err) = run(&["compact", &rev], b"");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("compacted revision {rev}"));
    let (ok, out, err) = run(&["defrag"], b"");
    assert!(ok, "{err}");
    assert!(out.contains("Finished defragmenting etcd member"), "{out}");
    // The defrag gave the files' free pages back: the database (both LMDB
    // environments) is a fraction of its size at the alarm.
    let db_size = |status: &str| -> u64 {
        let size = status.split("\"dbSize\":").nth(1).unwrap();
        size.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let (ok, after, _) = run(&["endpoint", "status", "--write-out=json"], b"");
    assert!(ok, "{after}");
    assert!(
        db_size(&after) * 3 < db_size(&status),
        "before: {status}\nafter: {after}"
    );
    let (ok, out, err) = run(&["alarm", "disarm"], b"");
    assert!(ok && out.contains("alarm:NOSPACE"), "{out} {err}");
    let (ok, out, err) = run(&["put", "newkey", "123"], b"");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "OK");
    let (_, alarms, _) = run(&["alarm", "list"], b"");
    assert!(alarms.trim().is_empty(), "{alarms}");

    // Nothing acknowledged was lost, and the space really came back: as
    // many 1 MiB puts fit again as before the alarm, less one.
    let got = KvClient::new(ch)
        .range(RangeRequest {
            key: b"key".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        got.kvs[0].value == value(puts - 1),
        "the last acknowledged value"
    );
    for i in 0..puts - 1 {
        let (ok, _, err) = run(&["put", "key"], &value(100 + i));
        assert!(ok, "1 MiB put {i} after the recovery: {err}");
    }
}
