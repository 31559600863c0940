pub mod error;
pub mod pb;
