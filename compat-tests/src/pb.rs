//! Generated etcd v3 gRPC client stubs (see `build.rs`): `etcdserverpb`
//! holds the services and request/response messages, `mvccpb` the
//! `KeyValue`/`Event` types and `authpb` the auth types they reference;
//! `v3lockpb` and `v3electionpb` are etcd's Lock and Election services.

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

/// `v3lockpb`: the Lock service (Lock, Unlock).
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// `v3electionpb`: the Election service (Campaign, Proclaim, Leader,
/// Observe, Resign).
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
