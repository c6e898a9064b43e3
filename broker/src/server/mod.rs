//! Process wiring: open the partitions, accept Kafka connections, run the background
//! tasks (retention, time-based flush), and shut down in order.
//!
//! ```text
//! main ── shutdown: CancellationToken ──┬─> accept loop ──> one task per connection
//!                                       ├─> retention task (log.retention.check.interval.ms)
//!                                       ├─> flush task (log.flush.scheduler.interval.ms)
//!                                       └─> group timers (session timeouts, join phases)
//! on cancel: stop accepting → connections finish the request in hand (bounded by
//! shutdown.grace.ms, then aborted) → background tasks stop → every log fsynced → return
//! ```

pub mod config;
pub mod replica_manager;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::BrokerConfig;
use self::replica_manager::{now_ms, ReplicaManager};
use crate::group::coordinator::{CoordinatorConfig, GroupCoordinator};

/// What every request handler can reach.
#[derive(Debug)]
pub struct BrokerContext {
    pub config: Arc<BrokerConfig>,
    pub replicas: Arc<ReplicaManager>,
    /// Consumer groups and their committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// Host and port that Metadata advertises to clients.
    pub advertised_host: String,
    pub advertised_port: i32,
}

/// A broker whose listener is bound but which does not serve yet.
pub struct Broker {
    ctx: Arc<BrokerContext>,
    listener: TcpListener,
}

impl Broker {
    /// Opens (recovering) every partition and binds the listener. Blocking file work runs
    /// before the first connection is accepted.
    pub async fn bind(config: BrokerConfig) -> anyhow::Result<Broker> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.log_dir).map_err(|e| {
            anyhow::anyhow!("cannot create log.dirs {}: {e}", config.log_dir.display())
        })?;
        let open_config = config.clone();
        let replicas =
            tokio::task::spawn_blocking(move || ReplicaManager::open(open_config)).await??;
        let replicas = Arc::new(replicas);
        let groups = Arc::new(GroupCoordinator::new(
            replicas.clone(),
            CoordinatorConfig {
                group: config.group.clone(),
                offsets_topic_num_partitions: config.offsets_topic_num_partitions,
                offsets_topic_segment_bytes: config.offsets_topic_segment_bytes,
                offset_metadata_max_bytes: config.offset_metadata_max_bytes,
                offsets_retention_ms: config.offsets_retention_ms,
                offsets_retention_check_interval_ms: config.offsets_retention_check_interval_ms,
            },
        ));
        let loading = groups.clone();
        tokio::task::spawn_blocking(move || loading.load()).await??;
        let listener = TcpListener::bind(config.listener.bind_addr()?)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {:?}: {e}", config.listener))?;
        let bound = listener.local_addr()?;
        let (advertised_host, advertised_port) = match &config.advertised_listener {
            Some(l) => (l.host.clone(), i32::from(l.port)),
            None => {
                let host = if config.listener.host.is_empty() || bound.ip().is_unspecified() {
                    hostname()
                } else {
                    config.listener.host.clone()
                };
                (host, i32::from(bound.port()))
            }
        };
        Ok(Broker {
            ctx: Arc::new(BrokerContext {
                config,
                replicas,
                groups,
                advertised_host,
                advertised_port,
            }),
            listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn context(&self) -> &Arc<BrokerContext> {
        &self.ctx
    }

    /// Serves until `shutdown` is cancelled, then stops in order and flushes every log.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Broker { ctx, listener } = self;
        let tasks = TaskTracker::new();
        let connections = TaskTracker::new();

        tasks.spawn(retention_task(ctx.clone(), shutdown.child_token()));
        tasks.spawn(flush_task(ctx.clone(), shutdown.child_token()));
        tasks.spawn(ctx.groups.clone().run_timers(shutdown.child_token()));
        tasks.spawn(ctx.groups.clone().run_offset_expiry(shutdown.child_token()));

        let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
        let mut backoff = Duration::from_millis(5);
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit?,
            };
            let accepted: std::io::Result<(TcpStream, SocketAddr)> = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let ctx = ctx.clone();
                    let token = shutdown.child_token();
                    connections.spawn(async move {
                        if let Err(e) = crate::kafka::serve_connection(stream, ctx, token).await {
                            tracing::debug!(%peer, error = %e, "connection ended");
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        drop(listener);
        tracing::info!("shutting down: no longer accepting connections");

        connections.close();
        let grace = Duration::from_millis(ctx.config.shutdown_grace_ms);
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "connections still busy after the grace period; dropping them"
            );
        }
        tasks.close();
        tasks.wait().await;

        let replicas = ctx.replicas.clone();
        let failures = tokio::task::spawn_blocking(move || replicas.flush_all()).await?;
        if failures > 0 {
            anyhow::bail!("{failures} partition logs could not be flushed at shutdown");
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

async fn retention_task(ctx: Arc<BrokerContext>, shutdown: CancellationToken) {
    let period = Duration::from_millis(ctx.config.log_retention_check_interval_ms);
    every(period, shutdown, "retention", move || {
        ctx.replicas.run_retention(now_ms());
    })
    .await;
}

async fn flush_task(ctx: Arc<BrokerContext>, shutdown: CancellationToken) {
    let period = Duration::from_millis(ctx.config.log_flush_scheduler_interval_ms);
    every(period, shutdown, "flush", move || {
        ctx.replicas.flush_due(now_ms())
    })
    .await;
}

/// Runs blocking `work` on the blocking pool every `period` until `shutdown`; a run that
/// overruns delays the next instead of piling up.
async fn every(
    period: Duration,
    shutdown: CancellationToken,
    name: &'static str,
    work: impl Fn() + Send + Sync + 'static,
) {
    let work = Arc::new(work);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let work = work.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || work()).await {
            tracing::error!(task = name, error = %e, "background task failed");
        }
    }
}
