//! Differential etcd-compatibility harness for Armada: scenario files in a
//! small etcdctl-like DSL ([`dsl`], Watch streams in [`watch_cmd`] and
//! [`watch_stream`], Lease in [`lease_cmd`], alarms in [`alarm_cmd`], Lock
//! and Election in [`lock_cmd`] and [`concurrency`], aliases of
//! server-chosen values in [`names`]) and etcdctl invocations
//! ([`etcdctl`], long-running ones in [`etcdctl_bg`]) are run against a
//! fresh real etcd and a fresh Armada ([`server`], per-file [`flags`]),
//! their responses rendered canonically ([`render`], [`runner`]) and
//! compared with committed golden transcripts recorded from etcd 3.4.23
//! ([`suite`]).
//! The crate carries its own etcd gRPC stubs ([`pb`]) and deliberately does
//! not depend on the `armada` crate.

pub mod alarm_cmd;
pub mod concurrency;
pub mod dsl;
pub mod etcdctl;
pub mod etcdctl_bg;
pub mod etcdctl_mask;
pub mod flags;
pub mod lease_cmd;
pub mod lock_cmd;
pub mod names;
pub mod pb;
pub mod render;
pub mod runner;
pub mod server;
pub mod suite;
pub mod watch_cmd;
pub mod watch_stream;
