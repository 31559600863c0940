pub mod api;
pub mod cli;
pub mod error;
pub mod kv;
pub mod pb;
pub mod raft;
pub mod server;
pub mod storage;
