//! Generated etcd v3 gRPC client stubs (see `build.rs`): `etcdserverpb`
//! holds the services and request/response messages, `mvccpb` the
//! `KeyValue`/`Event` types and `authpb` the auth types they reference.

#![allow(clippy::all, missing_docs)]

/// `etcdserverpb`: KV, Lease, Maintenance, Cluster, Watch and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// `mvccpb`: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// `authpb`: users, roles and permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}
