//! The leader cluster's replication API (`armada.replication.v1`) against a
//! real `armada leader --replication.enabled` process: Metadata.Get,
//! Log.Replicate (batches bounded by the send limit, leader indexes,
//! USE_SNAPSHOT / LEADER_BEHIND / EPOCH_CHANGED, a following stream that
//! pushes new commits) and Snapshot.Stream (header, checksummed chunks, a
//! trailer, and a copy whose HashKV equals the server's).

mod common;

use std::time::{Duration, Instant};

use armada::kv::command::Command;
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use armada::pb::etcdserverpb::{HashKvRequest, PutRequest};
use armada::pb::replication::log_client::LogClient;
use armada::pb::replication::metadata_client::MetadataClient;
use armada::pb::replication::snapshot_client::SnapshotClient;
use armada::pb::replication::{
    MetadataRequest, ReplicateRequest, ReplicateResponse, Signal, SnapshotRequest,
};
use armada::replication::wire::from_wire;
use common::{free_port, wait_until, wait_until_every, Ports, Server};
use tonic::transport::Channel;
use tonic::Code;

/// Small enough that 40 puts of 1 KiB span several messages.
const MAX_SEND: usize = 16 * 1024 + 4096;

struct Leader {
    server: Server,
    _dir: tempfile::TempDir,
    replication: Channel,
    replication_url: String,
    api: Channel,
}

async fn start_leader() -> Leader {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(
        &dir.path().join("leader"),
        Ports::pick(),
        &[
            "--replication.enabled",
            &format!("--replication.address=http://127.0.0.1:{port}"),
            &format!("--replication.max-send-message-size-bytes={MAX_SEND}"),
            "--raft.snapshot-entries=20",
            "--raft.compaction-overhead=5",
        ],
    );
    let api = server.ready().await;
    let replication_url = format!("http://127.0.0.1:{port}");
    let replication = Channel::from_shared(replication_url.clone())
        .unwrap()
        .connect()
        .await
        .expect("replication port");
    Leader {
        server,
        _dir: dir,
        replication,
        replication_url,
        api,
    }
}

async fn put(api: &Channel, key: &str, value: &[u8]) -> i64 {
    let resp = KvClient::new(api.clone())
        .put(PutRequest {
            key: key.into(),
            value: value.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    resp.header.unwrap().revision
}

fn request(epoch: u64, from: u64, follow: bool) -> ReplicateRequest {
    ReplicateRequest {
        table: "default".into(),
        epoch,
        leader_index: from,
        follow,
        cluster: String::new(),
    }
}

/// Every message of a non-following Log.Replicate.
async fn replicate(ch: &Channel, req: ReplicateRequest) -> Vec<ReplicateResponse> {
    let mut stream = LogClient::new(ch.clone())
        .replicate(req)
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await.unwrap() {
        out.push(msg);
    }
    out
}

/// The Put keys carried by `msgs`, in order, checking leader indexes rise.
fn put_keys(msgs: &[ReplicateResponse]) -> Vec<String> {
    let mut last = 0;
    let mut keys = Vec::new();
    for msg in msgs {
        for entry in &msg.entries {
            assert!(entry.leader_index > last, "leader indexes must rise");
            last = entry.leader_index;
            for cmd in entry.commands.clone() {
                if let Command::Put(p) = from_wire(cmd).unwrap() {
                    keys.push(String::from_utf8(p.key).unwrap());
                }
            }
        }
    }
    keys
}

async fn default_epoch(ch: &Channel) -> u64 {
    let tables = MetadataClient::new(ch.clone())
        .get(MetadataRequest {})
        .await
        .unwrap()
        .into_inner()
        .tables;
    let table = tables
        .iter()
        .find(|t| t.name == "default")
        .expect("default");
    assert_ne!(table.epoch, 0);
    table.epoch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_replicate_streams_commands_and_signals() {
    let leader = start_leader().await;
    let (api, ch) = (&leader.api, &leader.replication);
    let epoch = default_epoch(ch).await;

    let value = vec![b'x'; 1024];
    for i in 0..10 {
        put(api, &format!("k{i:02}"), &value).await;
    }
    let msgs = replicate(ch, request(epoch, 1, false)).await;
    let keys = put_keys(&msgs);
    let want: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, want);
    let last = msgs.last().unwrap();
    assert_eq!(last.signal, Signal::None as i32);
    assert_eq!(last.sent_through, last.last_index);
    assert!(
        msgs.len() > 1,
        "1 KiB puts under a ~4 KiB budget span messages"
    );
    for msg in &msgs {
        assert!(
            prost::Message::encoded_len(msg) <= MAX_SEND,
            "a message exceeds the send limit"
        );
        assert_eq!(msg.epoch, epoch);
    }

    // From the middle: only what follows.
    let from = msgs[0].entries.last().unwrap().leader_index + 1;
    let rest = put_keys(&replicate(ch, request(epoch, from, false)).await);
    assert_eq!(rest, want[keys.len() - rest.len()..]);

    // Ahead of the leader, another epoch, an unknown table.
    let ahead = replicate(ch, request(epoch, last.last_index + 2, false)).await;
    assert_eq!(ahead.len(), 1);
    assert_eq!(ahead[0].signal, Signal::LeaderBehind as i32);
    let other = replicate(ch, request(epoch + 1, 1, false)).await;
    assert_eq!(other[0].signal, Signal::EpochChanged as i32);
    assert_eq!(other[0].epoch, epoch);
    let missing = LogClient::new(ch.clone())
        .replicate(ReplicateRequest {
            table: "nope".into(),
            ..request(0, 1, false)
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // A follower of another leader cluster is refused.
    let wrong = LogClient::new(ch.clone())
        .replicate(ReplicateRequest {
            cluster: "another-cluster".into(),
            ..request(0, 1, false)
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::FailedPrecondition, "{wrong:?}");
    assert!(wrong.message().contains("another-cluster"), "{wrong:?}");

    // A following stream pushes a new commit without being asked again.
    let mut stream = LogClient::new(ch.clone())
        .replicate(request(epoch, last.sent_through + 1, true))
        .await
        .unwrap()
        .into_inner();
    let rev = put(api, "pushed", b"now").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let pushed = loop {
        let msg = tokio::time::timeout_at(deadline.into(), stream.message())
            .await
            .expect("no push within 30 s")
            .unwrap()
            .expect("stream ended");
        if !msg.entries.is_empty() {
            break msg;
        }
    };
    assert_eq!(put_keys(&[pushed]), ["pushed"]);
    assert_eq!(rev, 12);

    // Past compaction: USE_SNAPSHOT (wait until a snapshot purged index 1).
    // Each probe that does not see it yet writes one more entry: that paces
    // the probes, no pause between them.
    let mut n = 0;
    let what = "the log to be compacted (fill puts so far)";
    wait_until_every(what, Duration::from_secs(60), Duration::ZERO, async || {
        let msgs = replicate(ch, request(epoch, 1, false)).await;
        if msgs[0].signal == Signal::UseSnapshot as i32 {
            return Ok(());
        }
        put(api, &format!("fill{n}"), b"v").await;
        n += 1;
        Err(n)
    })
    .await;
    drop(leader.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_stream_is_a_checksummed_consistent_copy() {
    let leader = start_leader().await;
    let (api, ch) = (&leader.api, &leader.replication);
    let epoch = default_epoch(ch).await;
    let mut rev = 0;
    for i in 0..30 {
        rev = put(api, &format!("s{i:02}"), &vec![b'y'; 2048]).await;
    }
    let mut stream = SnapshotClient::new(ch.clone())
        .stream(SnapshotRequest {
            table: "default".into(),
            cluster: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let header = stream.message().await.unwrap().unwrap().header.unwrap();
    assert_eq!((header.table.as_str(), header.epoch), ("default", epoch));
    assert_eq!(header.revision, rev);
    assert_eq!(header.compact_revision, -1);
    assert!(header.leader_index > 0);
    let mut data = Vec::new();
    let trailer = loop {
        let chunk = stream.message().await.unwrap().expect("no trailer");
        if let Some(trailer) = chunk.trailer {
            break trailer;
        }
        assert_eq!(crc32fast::hash(&chunk.data), chunk.crc32, "chunk checksum");
        assert!(chunk.data.len() <= MAX_SEND);
        data.extend_from_slice(&chunk.data);
    };
    assert!(stream.message().await.unwrap().is_none());
    assert_eq!(trailer.size, data.len() as u64);
    assert_eq!(header.size, data.len() as u64);
    assert_eq!(trailer.crc32, crc32fast::hash(&data));

    // The copy is the table at `header.revision`.
    let path = leader._dir.path().join("copy.mdb");
    std::fs::write(&path, &data).unwrap();
    let copy_hash = armada::storage::mvcc::SnapshotFile::open(&path)
        .unwrap()
        .with(|r| r.hash_kv(rev))
        .unwrap();
    let server_hash = MaintenanceClient::new(api.clone())
        .hash_kv(HashKvRequest { revision: rev })
        .await
        .unwrap()
        .into_inner()
        .hash;
    assert_eq!(copy_hash, server_hash);
    // The scratch copy is gone once streamed.
    let scratch = leader._dir.path().join("leader/raft/replication");
    wait_until(
        "the snapshot copy to be removed",
        Duration::from_secs(10),
        async || {
            std::fs::read_dir(&scratch)
                .unwrap()
                .next()
                .is_none()
                .then_some(())
        },
    )
    .await;

    // At most 4 streams at once on a node; a finished one makes room. With
    // a table larger than what the transport buffers, a stream nobody
    // reads stays open.
    for i in 0..40 {
        put(api, &format!("big{i:02}"), &vec![b'z'; 100 << 10]).await;
    }
    // Each on its own connection: unread streams sharing one would stall
    // the others on HTTP/2's connection window.
    let open = || async {
        let own = Channel::from_shared(leader.replication_url.clone()).unwrap();
        SnapshotClient::new(own.connect().await.unwrap())
            .stream(SnapshotRequest {
                table: "default".into(),
                cluster: String::new(),
            })
            .await
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(open().await.unwrap().into_inner());
    }
    let refused = open().await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let mut done = held.pop().unwrap();
    while done.message().await.unwrap().is_some() {}
    wait_until(
        "a finished stream's permit to be returned",
        Duration::from_secs(10),
        async || open().await.ok(),
    )
    .await;
}
