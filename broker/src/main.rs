//! The `tributary` binary: `broker` (the production entry point), `dev` (one broker on
//! localhost with topic auto-creation, for trying things out, or with `--brokers N` a local
//! cluster of N broker processes, see [`tributary::devcluster`]), `topics`, `groups` and
//! `cluster` (the admin CLI, see [`tributary::cli`]).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tributary::cli::cluster::ClusterArgs;
use tributary::cli::groups::GroupsArgs;
use tributary::cli::topics::TopicsArgs;
use tributary::server::config::{machine_hostname, BrokerConfig, Properties};
use tributary::server::Broker;

#[derive(Parser)]
#[command(
    name = "tributary",
    version,
    about = "A streaming log broker that speaks the Kafka protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker from a Kafka-style properties file, `TRIBUTARY_*` environment variables
    /// and `--override key=value` flags (later ones win).
    Broker {
        /// Properties file (`key=value` lines, Kafka property names).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A `key=value` property that wins over the file and the environment. Repeatable.
        #[arg(long = "override", short = 'o', value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Run a broker on 127.0.0.1:9092 with data under ./data, for development; with
    /// `--brokers 3` (or 5), a local cluster of that many broker processes.
    ///
    /// A cluster's brokers listen on consecutive ports (Kafka from --port, gRPC from
    /// --controller-port), keep their data in <data-dir>/broker-<id>, and are listed with
    /// their pids and exact command lines in <data-dir>/cluster.json. Kill one with
    /// `kill -9 <pid>` to watch a failover; the others keep running, and the killed one can
    /// be restarted by hand with its "command" from cluster.json. Ctrl-C stops them all.
    Dev {
        /// Where the partitions and metadata live.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Kafka port on 127.0.0.1 (of broker 0; broker i uses port + i).
        #[arg(long, default_value_t = 9092)]
        port: u16,
        /// Number of brokers: 1 runs in this process; 3 or 5 run as child processes, each a
        /// voter of the metadata quorum.
        #[arg(long, default_value_t = 1)]
        brokers: usize,
        /// gRPC (controller and replication) port of broker 0; broker i uses this + i. Only
        /// with --brokers above 1.
        #[arg(long, default_value_t = 9192)]
        controller_port: u16,
        /// A `key=value` property, as for `broker`, given to every broker. Repeatable.
        #[arg(long = "override", short = 'o', value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Manage topics on a running broker: list, describe, create, delete, alter, configs.
    Topics(TopicsArgs),
    /// Inspect consumer groups and reset their offsets: list, describe, reset-offsets.
    Groups(GroupsArgs),
    /// Inspect and rearrange the cluster: describe, reassign, reassignments, drain,
    /// rebalance, elect-leaders.
    Cluster(ClusterArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRIBUTARY_LOG")
                // openraft reports every failed call to a stopped voter, several times a
                // second; the broker logs the fencing that follows instead.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "info,openraft=warn,openraft::replication=off,openraft::engine=error",
                    )
                }),
        )
        .init();

    let (props, dev) = match cli.command {
        Command::Topics(args) => admin(tributary::cli::topics::run(
            args,
            &mut std::io::stdout().lock(),
        )),
        Command::Groups(args) => admin(tributary::cli::groups::run(
            args,
            &mut std::io::stdout().lock(),
        )),
        Command::Cluster(args) => admin(tributary::cli::cluster::run(
            args,
            &mut std::io::stdout().lock(),
        )),
        Command::Broker { config, overrides } => {
            let mut props = match &config {
                Some(path) => Properties::from_file(path)?,
                None => Properties::default(),
            };
            props.merge_env(std::env::vars());
            props.merge_overrides(&overrides)?;
            (props, false)
        }
        Command::Dev {
            data_dir,
            port,
            brokers,
            controller_port,
            overrides,
        } if brokers != 1 => {
            return dev_cluster(tributary::devcluster::DevClusterSpec {
                brokers,
                data_dir: std::path::absolute(&data_dir)
                    .with_context(|| format!("invalid --data-dir {}", data_dir.display()))?,
                port,
                controller_port,
                overrides,
                executable: std::env::current_exe()
                    .context("cannot find this executable to start the brokers")?,
            });
        }
        Command::Dev {
            data_dir,
            port,
            overrides,
            ..
        } => {
            let mut props = Properties::default();
            props.set("log.dirs", &data_dir.to_string_lossy());
            props.set("listeners", &format!("PLAINTEXT://127.0.0.1:{port}"));
            props.set("auto.create.topics.enable", "true");
            props.merge_env(std::env::vars());
            props.merge_overrides(&overrides)?;
            (props, true)
        }
    };
    // The host name gives the broker id its default (`tributary-2` is broker 2).
    let hostname = machine_hostname().or_else(|| std::env::var("HOSTNAME").ok());
    let (config, ignored) =
        BrokerConfig::from_properties_with_hostname(&props, hostname.as_deref())
            .context("invalid configuration")?;
    for key in ignored {
        tracing::warn!(key, "unknown configuration key ignored");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config, dev))
}

/// `dev --brokers N` with N > 1: the supervisor of [`tributary::devcluster`], on a small
/// runtime of its own (it only waits for signals and child events).
fn dev_cluster(spec: tributary::devcluster::DevClusterSpec) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(tributary::devcluster::run(&spec))
        .context("dev cluster")
}

/// The admin CLI: a short-lived client of `tributary-admin` on a current-thread runtime of
/// its own. Errors, including Kafka error codes, go to stderr and exit with status 1.
fn admin(result: tributary::cli::Result<()>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    }
}

async fn run(config: BrokerConfig, dev: bool) -> anyhow::Result<()> {
    let broker_id = config.broker_id;
    let log_dir = config.log_dir.clone();
    let broker = Broker::bind(config).await?;
    let addr = broker.local_addr()?;
    let ctx = broker.context().clone();
    {
        // Tests and scripts wait for this line; print it only once the listener is bound.
        let mut out = std::io::stdout().lock();
        // The HTTP line goes out in the same write: a reader that takes the first line and
        // closes the pipe must not make the next write fail.
        let mut lines = format!("tributary broker {broker_id} listening on {addr}\n");
        if let Some(http) = broker.http_addr() {
            lines += &format!("tributary broker {broker_id} serving HTTP on {http}\n");
        }
        out.write_all(lines.as_bytes())?;
        if dev {
            writeln!(
                out,
                "bootstrap: {}:{}  data: {}  (Ctrl-C to stop)",
                ctx.advertised_host,
                ctx.advertised_port,
                log_dir.display()
            )?;
        }
        out.flush()?;
    }
    tracing::info!(%addr, log_dir = %log_dir.display(), "broker started");

    let shutdown = CancellationToken::new();
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stop signal received");
        signal_token.cancel();
    });
    broker.run(shutdown).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers the broker can only be killed; Ctrl-C still works.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
