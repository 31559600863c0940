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

    // Disarming while the map is still full does not let writes in: the
    // next write raises the alarm again.
    let disarm = AlarmRequest {
        action: AlarmAction::Deactivate as i32,
        member_id: alarms.alarms[0].member_id,
        alarm: AlarmType::Nospace as i32,
    };
    let disarmed = maintenance.alarm(disarm).await.unwrap().into_inner();
    assert_eq!(disarmed.alarms, alarms.alarms);
    let err = kv.put(put("small".into(), 1)).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");
    let again = maintenance.alarm(get_alarms).await.unwrap().into_inner();
    assert_eq!(again.alarms, alarms.alarms);

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
