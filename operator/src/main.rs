//! `tributary-operator`: watches Cluster, Topic and ConsumerGroup resources and reconciles
//! them against the brokers, while holding the leader Lease.
//!
//! ```text
//! main: config -> logs -> /metrics /healthz /readyz -> API server reachable (ready)
//!   -> wait for the Lease -> controllers (per watched namespace, per kind) + Lease renewal
//!   SIGTERM/SIGINT -> controllers finish the reconciliations in hand -> Lease released
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tributary_operator::controller::{self, Context, Intervals};
use tributary_operator::crd::{Cluster, ConsumerGroup, Topic};
use tributary_operator::leader::{LeaderElector, LeaseConfig};
use tributary_operator::telemetry::{self, Metrics};

/// The operator's configuration: flags, or the environment variables named beside them.
#[derive(Parser, Debug)]
#[command(name = "tributary-operator", version, about)]
struct Config {
    /// Namespaces to watch, repeated or comma-separated; none: every namespace.
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Address of the HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, in `tracing` EnvFilter syntax (`info`, `tributary_operator=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Run the controllers only while holding the leader Lease (needed for more than one
    /// replica).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "tributary-operator")]
    lease_name: String,
    /// Namespace of the leader Lease: the operator's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease; default: the host name and process id.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long a Lease that is not renewed stays held.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How often the leader renews the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    lease_renew_every: Duration,
    /// How often a Topic is compared with its Kafka topic when nothing changed (drift made
    /// by other tools is corrected within this).
    #[arg(long, env = "TOPIC_RESYNC_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    topic_resync_interval: Duration,
    /// How often a ConsumerGroup's status (state, members, lag) is refreshed.
    #[arg(long, env = "GROUP_REFRESH_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    group_refresh_interval: Duration,
    /// How often a Cluster's reachability and brokers are checked.
    #[arg(long, env = "CLUSTER_REFRESH_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    cluster_refresh_interval: Duration,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms, 30s, 2m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "{s:?} is not a duration such as 500ms, 30s, 2m or 1h"
        )),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)?;
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let metrics = Arc::new(Metrics::default());
    let listener = telemetry::bind(config.metrics_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let http = tokio::spawn(telemetry::serve(
        listener,
        metrics.clone(),
        shutdown.clone(),
    ));

    let client = Client::try_default().await?;
    let version = loop {
        match client.apiserver_version().await {
            Ok(v) => break v,
            Err(e) => {
                tracing::warn!(error = %e, "the Kubernetes API server does not answer yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    tracing::info!(version = %version.git_version, "connected to the Kubernetes API server");
    metrics.set_ready();

    let mut elector = config.leader_elect.then(|| {
        LeaderElector::new(
            client.clone(),
            LeaseConfig {
                namespace: config.lease_namespace.clone(),
                name: config.lease_name.clone(),
                identity: config.identity.clone().unwrap_or_else(default_identity),
                lease_duration: config.lease_duration,
                renew_every: config.lease_renew_every,
            },
        )
    });
    if let Some(elector) = elector.as_mut() {
        let identity = elector.config().identity.clone();
        tracing::info!(lease = %config.lease_name, %identity, "waiting for the leader Lease");
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "reading the leader Lease failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(elector.config().renew_every) => {}
            }
        }
        tracing::info!(%identity, "leading: starting the controllers");
    }
    metrics.set_leader(true);

    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        Intervals {
            topic_resync: config.topic_resync_interval,
            group_refresh: config.group_refresh_interval,
            cluster_refresh: config.cluster_refresh_interval,
            ..Intervals::default()
        },
    ));
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut controllers = Vec::new();
    for scope in scopes {
        let stop = shutdown.clone();
        controllers.push(tokio::spawn(controller::cluster::run(
            api::<Cluster>(&client, &scope),
            api::<StatefulSet>(&client, &scope),
            ctx.clone(),
            async move { stop.cancelled().await },
        )));
        let stop = shutdown.clone();
        controllers.push(tokio::spawn(controller::topic::run(
            api::<Topic>(&client, &scope),
            api::<Cluster>(&client, &scope),
            ctx.clone(),
            async move { stop.cancelled().await },
        )));
        let stop = shutdown.clone();
        controllers.push(tokio::spawn(controller::consumer_group::run(
            api::<ConsumerGroup>(&client, &scope),
            ctx.clone(),
            async move { stop.cancelled().await },
        )));
    }

    if let Some(mut elector) = elector {
        let (renew_every, lease_duration) = {
            let lease = elector.config();
            (lease.renew_every, lease.lease_duration)
        };
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(renew_every) => {}
            }
            match elector.try_acquire_or_renew().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    tracing::error!("another replica took the leader Lease: exiting");
                    std::process::exit(1);
                }
                Err(e) => tracing::warn!(error = %e, "renewing the leader Lease failed"),
            }
            if renewed.elapsed() >= lease_duration {
                tracing::error!("could not renew the leader Lease in time: exiting");
                std::process::exit(1);
            }
        }
        join_all(controllers).await;
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %e, "releasing the leader Lease failed");
        }
    } else {
        join_all(controllers).await;
    }
    let _ = http.await;
    tracing::info!("stopped");
    Ok(())
}

fn api<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "tributary-operator".to_string());
    format!("{host}-{}", std::process::id())
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: finishing the reconciliations in hand");
    shutdown.cancel();
}
