//! Compiles etcd's API protos (shared with the server in `../proto/etcd`)
//! into client-only tonic stubs, so the harness speaks raw etcd gRPC without
//! depending on the `armada` crate or on a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "../proto/etcd/kv.proto",
        "../proto/etcd/auth.proto",
        "../proto/etcd/rpc.proto",
        "../proto/etcd/v3lock.proto",
        "../proto/etcd/v3election.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["../proto/etcd"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
