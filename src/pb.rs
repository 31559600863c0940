//! Generated protobuf and gRPC code: etcd's API (`etcdserverpb`, `mvccpb`,
//! `authpb`, `v3lockpb`, `v3electionpb`, wire-compatible with etcd 3.5) and Armada's own services.
//! Generated only; nothing hand-written lives here.

#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

pub mod armada {
    tonic::include_proto!("armada.v1");

    // Nested as deep as its package, so that the generated paths to etcd's
    // messages (`super::super::super::super::etcdserverpb`) resolve.
    pub mod replication {
        pub mod v1 {
            tonic::include_proto!("armada.replication.v1");
        }
    }
}

pub mod raft {
    tonic::include_proto!("armada.raft.v1");
}

pub use armada::replication::v1 as replication;
