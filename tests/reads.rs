//! Reads never enter the log: read-only Txns, linearizable and
//! serializable, nested or not, are served like Ranges on every member of a
//! leader cluster and on a follower cluster, and the raft index of the
//! table's group does not move for them (a write Txn does).

mod common;

use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use armada::pb::etcdserverpb::{
    compare, request_op, response_op, Compare, PutRequest, RangeRequest, RequestOp, StatusRequest,
    TxnRequest, TxnResponse,
};
use common::replication::{channel, start_pair, wait_same};
use common::Cluster;
use tonic::transport::Channel;

fn range_op(key: &str, serializable: bool) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.into(),
            serializable,
            ..Default::default()
        })),
    }
}

/// `if value(key) == value { get key } else { get other; txn { get key } }`,
/// every range serializable or not.
fn read_txn(key: &str, value: &str, serializable: bool) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            key: key.into(),
            target: compare::CompareTarget::Value as i32,
            result: compare::CompareResult::Equal as i32,
            target_union: Some(compare::TargetUnion::Value(value.into())),
            ..Default::default()
        }],
        success: vec![range_op(key, serializable)],
        failure: vec![
            range_op("other", serializable),
            RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    success: vec![range_op(key, serializable)],
                    ..Default::default()
                })),
            },
        ],
    }
}

async fn raft_index(ch: &Channel) -> (u64, u64) {
    let st = MaintenanceClient::new(ch.clone())
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    (st.raft_index, st.raft_applied_index)
}

async fn txn(ch: &Channel, req: TxnRequest) -> TxnResponse {
    KvClient::new(ch.clone())
        .txn(req)
        .await
        .unwrap()
        .into_inner()
}

async fn put(ch: &Channel, key: &str, value: &str) -> i64 {
    let req = PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    let resp = KvClient::new(ch.clone()).put(req).await.unwrap();
    resp.into_inner().header.unwrap().revision
}

/// The value a read-only txn's chosen branch read for `key` (the success
/// branch's range, or the failure branch's nested one).
fn value_read(resp: &TxnResponse) -> Vec<u8> {
    let mut responses = &resp.responses;
    if !resp.succeeded {
        let Some(response_op::Response::ResponseTxn(nested)) = &responses[1].response else {
            panic!("no nested txn response: {resp:?}");
        };
        responses = &nested.responses;
    }
    let Some(response_op::Response::ResponseRange(r)) = &responses[0].response else {
        panic!("no range response: {resp:?}");
    };
    r.kvs[0].value.clone()
}

/// Runs read-only txns of every kind on `ch` and checks what they read.
async fn read_only_txns(ch: &Channel, key: &str, value: &str, revision: i64) {
    for serializable in [false, true] {
        for (compared, succeeded) in [(value, true), ("something else", false)] {
            let resp = txn(ch, read_txn(key, compared, serializable)).await;
            assert_eq!(resp.succeeded, succeeded, "{resp:?}");
            assert_eq!(value_read(&resp), value.as_bytes(), "{resp:?}");
            assert!(resp.header.unwrap().revision >= revision);
        }
    }
    // Only compares: an empty branch.
    let compares_only = TxnRequest {
        success: vec![],
        failure: vec![],
        ..read_txn(key, value, false)
    };
    assert!(txn(ch, compares_only).await.succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_txns_leave_the_raft_index_alone_on_every_member() {
    let cluster = Cluster::start(3, &[]);
    cluster.wait_leader().await;
    let revision = put(&cluster.channel(1).await, "k", "v").await;
    cluster.wait_converged().await;
    let mut before = Vec::new();
    for id in 1..=3 {
        before.push(raft_index(&cluster.channel(id).await).await);
    }
    for id in 1..=3 {
        read_only_txns(&cluster.channel(id).await, "k", "v", revision).await;
    }
    for id in 1..=3 {
        let after = raft_index(&cluster.channel(id).await).await;
        assert_eq!(after, before[id - 1], "node {id}'s raft index moved");
    }

    // A txn that writes goes through the log.
    let mut write = read_txn("k", "v", false);
    write.success.push(RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: "k2".into(),
            value: "v2".into(),
            ..Default::default()
        })),
    });
    assert!(txn(&cluster.channel(2).await, write).await.succeeded);
    let (index, _) = raft_index(&cluster.channel(2).await).await;
    assert!(index > before[1].0, "a write txn did not enter the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_txns_on_a_follower_cluster_stay_local() {
    let pair = start_pair().await;
    let (leader, follower) = (channel(&pair.leader).await, channel(&pair.follower).await);
    let revision = put(&leader, "k", "v").await;
    assert_eq!(wait_same(&leader, &follower, "default").await, revision);

    let (on_leader, on_follower) = (raft_index(&leader).await, raft_index(&follower).await);
    read_only_txns(&follower, "k", "v", revision).await;
    assert_eq!(raft_index(&follower).await, on_follower);
    assert_eq!(raft_index(&leader).await, on_leader);
}

/// A response over `--api.max-send-bytes` is grpc-go's error with the
/// response's size (the answer etcd's clients get past etcd's limit), for a
/// Range and a read-only Txn; a DeleteRange whose prev_kvs are too large is
/// applied all the same, as in etcd. A smaller answer is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_send_limit_is_grpcs_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(
        dir.path(),
        common::Ports::pick(),
        &["--api.max-send-bytes=64KiB"],
    );
    let ch = server.ready().await;
    let value = "v".repeat(20_000);
    for i in 0..5 {
        put(&ch, &format!("big/{i}"), &value).await;
    }
    let mut kv = KvClient::new(ch.clone());
    let all = RangeRequest {
        key: "big/".into(),
        range_end: "big0".into(),
        ..Default::default()
    };
    let refused = kv.range(all.clone()).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let message = refused.message();
    let size: u64 = message
        .strip_prefix("grpc: trying to send message larger than max (")
        .and_then(|m| m.strip_suffix(" vs. 65536)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{message}"));
    assert!(size > 100_000 && size < 101_000, "{message}");

    // What fits is served: three values, or every key without values.
    let three = kv
        .range(RangeRequest {
            limit: 3,
            ..all.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((three.kvs.len(), three.count, three.more), (3, 5, true));
    let keys = kv
        .range(RangeRequest {
            keys_only: true,
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(keys.into_inner().kvs.len(), 5);

    let read_only = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(all.clone())),
        }],
        ..Default::default()
    };
    let refused = kv.txn(read_only).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );

    let delete = armada::pb::etcdserverpb::DeleteRangeRequest {
        key: all.key.clone(),
        range_end: all.range_end.clone(),
        prev_kv: true,
    };
    let refused = kv.delete_range(delete).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let left = kv
        .range(RangeRequest {
            count_only: true,
            ..all
        })
        .await
        .unwrap();
    assert_eq!(left.into_inner().count, 0, "the delete was applied");
}
