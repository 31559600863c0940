//! Differential etcd-compatibility harness for Armada: scenario files in a
//! small etcdctl-like DSL ([`dsl`]) and etcdctl invocations ([`etcdctl`])
//! are run against a fresh real etcd and a fresh Armada ([`server`]), their
//! responses rendered canonically ([`render`], [`runner`]) and compared
//! with committed golden transcripts recorded from etcd 3.4.23 ([`suite`]).
//! The crate carries its own etcd gRPC stubs ([`pb`]) and deliberately does
//! not depend on the `armada` crate.

pub mod dsl;
pub mod etcdctl;
pub mod pb;
pub mod render;
pub mod runner;
pub mod server;
pub mod suite;
