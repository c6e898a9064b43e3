//! The `tributary` binary: `broker` (the production entry point), `dev` (one broker on
//! localhost with topic auto-creation, for trying things out), `topics` and `groups` (the
//! admin CLI, see [`tributary::cli`]).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tributary::cli::groups::GroupsArgs;
use tributary::cli::topics::TopicsArgs;
use tributary::server::config::{BrokerConfig, Properties};
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
    /// Run one broker on 127.0.0.1:9092 with data under ./data, for development.
    Dev {
        /// Where the partitions and metadata live.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 9092)]
        port: u16,
        /// A `key=value` property, as for `broker`. Repeatable.
        #[arg(long = "override", short = 'o', value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Manage topics on a running broker: list, describe, create, delete, alter, configs.
    Topics(TopicsArgs),
    /// Inspect consumer groups and reset their offsets: list, describe, reset-offsets.
    Groups(GroupsArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRIBUTARY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
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
            overrides,
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
    let (config, ignored) =
        BrokerConfig::from_properties(&props).context("invalid configuration")?;
    for key in ignored {
        tracing::warn!(key, "unknown configuration key ignored");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config, dev))
}

/// The admin CLI: a short-lived blocking client that needs no runtime. Errors, including
/// Kafka error codes, go to stderr and exit with status 1.
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
        writeln!(out, "tributary broker {broker_id} listening on {addr}")?;
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
