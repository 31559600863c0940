//! Runs one scenario (`*.txt` under `scenarios/`) or etcdctl case file
//! (under `etcdctl/`) and prints its transcript, for writing and debugging
//! cases:
//!
//! ```text
//! cargo run -p compat-tests --example run -- <file> [etcd|armada|http://127.0.0.1:PORT] [--log]
//! ```
//!
//! The default target is a fresh real etcd; `--log` also prints the fresh
//! server's log afterwards.

use compat_tests::flags::ServerFlags;
use compat_tests::server::Server;
use compat_tests::{dsl, etcdctl, runner};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let show_log = args.iter().any(|a| a == "--log");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let Some(file) = pos.first() else {
        eprintln!("usage: run <file> [etcd|armada|http://127.0.0.1:PORT] [--log]");
        std::process::exit(2);
    };
    let target = pos.get(1).map(|s| s.as_str()).unwrap_or("etcd");
    let src = std::fs::read_to_string(file).expect("read case file");
    let flags = ServerFlags::parse(&src).expect("flags");
    let server = match target {
        "etcd" => Some(Server::etcd_with(&flags)),
        "armada" => Some(Server::armada_with(&flags)),
        _ => None,
    };
    let endpoint = server
        .as_ref()
        .map(|s| s.endpoint())
        .unwrap_or_else(|| target.to_string());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let is_etcdctl = std::path::Path::new(file.as_str())
        .parent()
        .is_some_and(|p| p.ends_with("etcdctl"));
    let out = if is_etcdctl {
        let items = etcdctl::parse_cases(&src).expect("parse");
        rt.block_on(etcdctl::run_cases(&endpoint, &items))
    } else {
        let items = dsl::parse_script(&src).expect("parse");
        rt.block_on(runner::run_script(&endpoint, &items))
    };
    match out {
        Ok(t) => print!("{t}"),
        Err(e) => eprintln!("error: {e}"),
    }
    if let (true, Some(s)) = (show_log, &server) {
        eprintln!("--- {} log ---\n{}", s.kind(), s.log());
    }
}
