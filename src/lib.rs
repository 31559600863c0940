pub mod error;
pub mod kv;
pub mod storage;
pub mod pb;
