//! The `armada` binary: parse the command line, set up logging, run.

use armada::cli::{args_with_config_file, Cli, Command, TableAction};
use armada::pb::armada::tables_client::TablesClient;
use armada::pb::armada::{CreateTableRequest, DeleteTableRequest, ListTablesRequest};
use clap::Parser;

/// mimalloc instead of glibc's malloc: watch fan-out allocates on the hub's
/// thread and frees on the stream senders', which in glibc contends on
/// arena locks (a third of the server's samples in a 1000-watcher profile).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(level: &str, dev: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if dev {
            "debug,openraft=info".to_string()
        } else {
            format!("{},openraft=warn", level.to_lowercase())
        })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if dev {
        builder.init();
    } else {
        builder.json().init();
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv = args_with_config_file(std::env::args().collect())?;
    let cli = Cli::parse_from(argv);
    match cli.command {
        Command::Version => println!(
            "armada {} (etcd API {})",
            env!("CARGO_PKG_VERSION"),
            armada::server::ETCD_VERSION
        ),
        Command::Leader(args) => {
            init_tracing(&args.log_level, args.dev_mode);
            let cfg = args.node_config()?;
            armada::server::serve(cfg, shutdown_signal()).await?;
        }
        Command::Follower(args) => {
            init_tracing(&args.node.log_level, args.node.dev_mode);
            let cfg = args.node_config()?;
            armada::server::serve(cfg, shutdown_signal()).await?;
        }
        Command::Table(t) => {
            let mut endpoint = tonic::transport::Endpoint::from_shared(t.endpoint.clone())?;
            if t.endpoint.starts_with("https://") {
                let mut tls = tonic::transport::ClientTlsConfig::new();
                if let Some(ca) = &t.cacert {
                    tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(
                        std::fs::read(ca)?,
                    ));
                }
                if let (Some(cert), Some(key)) = (&t.cert, &t.key) {
                    tls = tls.identity(tonic::transport::Identity::from_pem(
                        std::fs::read(cert)?,
                        std::fs::read(key)?,
                    ));
                }
                endpoint = endpoint.tls_config(tls)?;
            }
            let mut client = TablesClient::new(endpoint.connect().await?);
            match t.action {
                TableAction::Create { name } => {
                    let resp = client
                        .create(CreateTableRequest { name })
                        .await?
                        .into_inner();
                    if let Some(table) = resp.table {
                        println!("created table {} (epoch {})", table.name, table.epoch);
                    }
                }
                TableAction::Delete { name } => {
                    client
                        .delete(DeleteTableRequest { name: name.clone() })
                        .await?;
                    println!("deleted table {name}");
                }
                TableAction::List => {
                    for table in client.list(ListTablesRequest {}).await?.into_inner().tables {
                        println!("{}\t{}", table.name, table.epoch);
                    }
                }
            }
        }
    }
    Ok(())
}
