//! Compiles etcd's API protos and Armada's own protos without a system
//! `protoc`: `protox` parses them into a descriptor set in pure Rust, which
//! `tonic_prost_build` turns into messages, clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/etcd/kv.proto",
        "proto/etcd/auth.proto",
        "proto/etcd/rpc.proto",
        "proto/etcd/v3lock.proto",
        "proto/etcd/v3election.proto",
        "proto/armada/tables.proto",
        "proto/armada/raft.proto",
        "proto/armada/replication.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto/etcd", "proto/armada"])?;
    tonic_prost_build::configure()
        // Raft log entries carry etcd requests as logical commands, and
        // apply results travel back through openraft: both need serde.
        .type_attribute(
            ".etcdserverpb",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .type_attribute(".mvccpb", "#[derive(serde::Serialize, serde::Deserialize)]")
        .type_attribute(".authpb", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_fds(fds)?;
    Ok(())
}
