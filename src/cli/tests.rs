//! The command line's tests: flag parsing, defaults, TLS flag checks and
//! the config file.

use super::*;

/// `armada leader <extra>`'s node configuration.
fn leader(extra: &[&str]) -> Result<NodeConfig> {
    let mut argv = vec!["armada", "leader"];
    argv.extend(extra);
    let Command::Leader(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("leader")
    };
    args.node_config()
}

#[test]
fn sizes_and_rtts_that_overflow_are_refused() {
    assert!(leader(&["--storage.map-size=64MiB"]).is_ok());
    let huge = [
        "--raft.rtt=1000000000000000000ms",
        "--raft.election-rtt=100",
    ];
    assert!(leader(&huge).unwrap_err().to_string().contains("too large"));
    assert!(leader(&["--raft.rtt=100000000000000000000ms"]).is_err());
}

#[test]
fn initial_members() {
    let m = parse_initial_members("1=127.0.0.1:5012, 2=127.0.0.1:5013,3=h:1").unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[&2].addr, "127.0.0.1:5013");
    assert!(parse_initial_members("").unwrap().is_empty());
    for bad in ["1", "x=h:1", "0=h:1", "1=", "1=http://h:1", "1=h:1,1=h:2"] {
        assert!(parse_initial_members(bad).is_err(), "{bad}");
    }
    let ok = leader(&[
        "--raft.node-id=2",
        "--raft.address=127.0.0.1:5013",
        "--raft.initial-members=1=127.0.0.1:5012,2=127.0.0.1:5013",
    ])
    .unwrap();
    assert_eq!(ok.registry.group.members.len(), 2);
    assert_eq!(ok.raft_listen.to_string(), "127.0.0.1:5013");
    assert!(leader(&["--raft.initial-members=2=127.0.0.1:5013"]).is_err());
    assert!(leader(&["--raft.initial-members=1=127.0.0.1:9"]).is_err());
    assert!(leader(&["--raft.heartbeat-rtt=5", "--raft.election-rtt=15"]).is_err());
    assert!(leader(&["--raft.heartbeat-rtt=5", "--raft.election-rtt=16"]).is_ok());
    assert!(leader(&[]).unwrap().replication.is_none());
    let on = leader(&[
        "--replication.enabled",
        "--replication.address=http://127.0.0.1:9444",
    ]);
    let on = on.unwrap().replication.unwrap();
    assert_eq!(on.listen.to_string(), "127.0.0.1:9444");
    assert_eq!(on.max_send, 4 << 20);
    let tls = leader(&[
        "--replication.enabled",
        "--replication.cert-filename=/nonexistent.pem",
    ]);
    assert!(tls.unwrap_err().to_string().contains("/nonexistent.pem"));
}

#[test]
fn tls_flags_must_agree_with_the_address() {
    let err = |extra: &[&str]| leader(extra).unwrap_err().to_string();
    let api_certs = ["--api.cert-filename=/c.pem", "--api.key-filename=/k.pem"];
    let e = err(&[&["--api.address=http://127.0.0.1:2379"], &api_certs[..]].concat());
    assert!(
        e.contains("is http:// but TLS certificate flags are set"),
        "{e}"
    );
    let e = err(&["--api.address=https://127.0.0.1:2379"]);
    assert!(
        e.contains("--api.cert-filename and --api.key-filename are not set"),
        "{e}"
    );
    let e = err(&[
        "--api.address=https://127.0.0.1:2379",
        "--api.cert-filename=/c.pem",
    ]);
    assert!(e.contains("go together"), "{e}");
    let e = err(&["--api.ca-filename=/ca.pem"]);
    assert!(e.contains("--api.ca-filename needs TLS"), "{e}");
    let e = err(&["--rest.address=https://127.0.0.1:8079"]);
    assert!(e.contains("--rest.cert-filename"), "{e}");
    for raft in [
        &["--raft.cert-filename=/c.pem"][..],
        &["--raft.cert-filename=/c.pem", "--raft.ca-filename=/ca.pem"],
        &["--raft.cert-filename=/c.pem", "--raft.key-filename=/k.pem"],
    ] {
        assert!(err(raft).contains("go together"), "{raft:?}");
    }
    // The flags agree: now the files are read, and a missing one is named.
    let e = err(&[&["--api.address=https://127.0.0.1:2379"], &api_certs[..]].concat());
    assert!(e.contains("/c.pem"), "{e}");
}

#[test]
fn https_api_address_serves_tls_and_advertises_https() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let cert_flag = format!("--api.cert-filename={}", c.display());
    let key_flag = format!("--api.key-filename={}", k.display());
    let cfg = leader(&[
        "--api.address=https://127.0.0.1:2379",
        &cert_flag,
        &key_flag,
    ])
    .unwrap();
    assert!(cfg.api_tls.is_some() && cfg.rest_tls.is_none() && cfg.raft_tls.is_none());
    assert_eq!(cfg.api_advertise, "https://127.0.0.1:2379");
    // A bare host:port follows the certificate flags, as before TLS.
    let cfg = leader(&["--api.address=127.0.0.1:2379", &cert_flag, &key_flag]).unwrap();
    assert!(cfg.api_tls.is_some());
    let plain = leader(&[]).unwrap();
    assert!(plain.api_tls.is_none() && plain.registry.peer_tls.is_none());
    assert_eq!(plain.api_advertise, "http://127.0.0.1:2379");
    // A key that is not the certificate's is refused at start.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&k, other.serialize_pem()).unwrap();
    let e = leader(&[
        "--api.address=https://127.0.0.1:2379",
        &cert_flag,
        &key_flag,
    ]);
    assert!(e.is_err());
}

#[test]
fn defaults_match_design() {
    let cli = Cli::try_parse_from(["armada", "leader"]).unwrap();
    let Command::Leader(args) = cli.command else {
        panic!("leader")
    };
    let cfg = args.node_config().unwrap();
    assert_eq!(cfg.api_listen.to_string(), "127.0.0.1:2379");
    assert_eq!(cfg.rest_listen.to_string(), "127.0.0.1:8079");
    assert_eq!(
        cfg.registry.state_machine_dir,
        PathBuf::from("./armada-data/state-machine")
    );
    assert_eq!(cfg.default_table, "default");
    assert_eq!(cfg.group().election_ms, 1000);
    // etcd's gRPC limits: a 2 GiB send limit, unlimited streams.
    assert_eq!(cfg.group().send_limit, i32::MAX as u64);
    assert_eq!(cfg.max_concurrent_streams, u32::MAX);
}

#[test]
fn config_file_fills_missing_flags_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("armada.toml");
    std::fs::write(
        &path,
        "data-dir = \"/x\"\n[api]\naddress = \"http://127.0.0.1:1\"\ndefault-table = \"t\"\n",
    )
    .unwrap();
    let argv = vec![
        "armada".into(),
        "leader".into(),
        format!("--config={}", path.display()),
        "--api.default-table=u".into(),
    ];
    let argv = args_with_config_file(argv).unwrap();
    let cli = Cli::try_parse_from(argv).unwrap();
    let Command::Leader(args) = cli.command else {
        panic!("leader")
    };
    assert_eq!(args.api_default_table, "u");
    assert_eq!(args.api_address, "http://127.0.0.1:1");
    assert_eq!(args.data_dir, PathBuf::from("/x"));
}
