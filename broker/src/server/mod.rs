//! Process wiring: the metadata quorum, the partitions, the Kafka and gRPC listeners, the
//! background tasks, and shutdown in order.
//!
//! ```text
//! bind: ReplicaManager ─ gRPC listener (Raft, Controller, Replica) ─ ControllerNode
//!       ├─> HTTP listener: /healthz, /readyz, /metrics (see `http`), from here on
//!       ├─> lifecycle: register with the controller, heartbeat
//!       ├─> image follower: committed image ─> ReplicaManager::apply_image ─> fetchers, groups
//!       └─> wait until the controller has unfenced this broker
//! run:  accept Kafka connections; retention, flush, ISR monitor, group timers
//! stop: controlled shutdown (leaderships move away while clients are still served)
//!       → stop accepting → connections finish the request in hand (bounded by
//!       shutdown.grace.ms) → background tasks stop → every log fsynced → return
//! ```

pub mod config;
pub mod http;
pub mod partition;
pub mod replica_manager;
pub mod replication;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::BrokerConfig;
use self::replica_manager::{now_ms, ApiError, ReplicaManager};
use self::replication::{FetcherConfig, Fetchers, ReplicaService, SubmitFn};
use crate::controller::node::{ControllerConfig, ControllerNode};
use crate::controller::{BrokerRecord, Command, Outcome};
use crate::group::coordinator::{CoordinatorConfig, GroupCoordinator};

/// What every request handler can reach.
pub struct BrokerContext {
    pub config: Arc<BrokerConfig>,
    pub replicas: Arc<ReplicaManager>,
    /// The metadata quorum: the committed image and the way to change it.
    pub controller: Arc<ControllerNode>,
    /// Consumer groups and their committed offsets.
    pub groups: Arc<GroupCoordinator>,
    pub fetchers: Arc<Fetchers>,
    /// Host and port that Metadata advertises to clients.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// `host:port` other brokers reach this one's gRPC listener at.
    pub rpc_addr: String,
}

impl std::fmt::Debug for BrokerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerContext")
            .field("broker_id", &self.config.broker_id)
            .field("advertised_host", &self.advertised_host)
            .field("advertised_port", &self.advertised_port)
            .field("rpc_addr", &self.rpc_addr)
            .finish()
    }
}

impl BrokerContext {
    /// How long a metadata change may take to commit before the client is told to retry.
    pub fn controller_timeout(&self) -> Duration {
        Duration::from_millis(self.config.controller_request_timeout_ms)
    }

    /// Whether this broker has gone a session timeout without a heartbeat accepted by the
    /// active controller (it cannot tell a controller election from being cut off).
    pub fn lease_lapsed(&self) -> bool {
        self.controller
            .broker_lease_lapsed(Duration::from_millis(self.config.broker_session_timeout_ms))
    }

    /// Whether this broker leads `partition` only in its own stale view: no heartbeat has
    /// reached the controller and no follower has fetched for a session timeout (plus a
    /// follower's long-poll). The controller has fenced it by then and elected a new leader;
    /// a controller election alone does not trip this, as followers keep fetching. Such a
    /// leader takes no writes and answers no metadata for the partition (see the Produce
    /// and Metadata handlers), so clients go to the brokers that know the new leader.
    pub fn cut_off_leader(&self, partition: &replica_manager::Partition) -> bool {
        let window = self.config.broker_session_timeout_ms + self.config.replica_fetch_wait_max_ms;
        self.lease_lapsed() && partition.followers_silent(replica_manager::now_ms(), window as i64)
    }

    /// Commits `command` through the controller; the change is visible here on return.
    pub async fn submit(&self, command: Command) -> Result<Outcome, ApiError> {
        let outcome = self
            .controller
            .submit(command, self.controller_timeout())
            .await
            .map_err(ApiError::from)?;
        // The controller node has applied the command; the partitions, topics and producer
        // ids that handlers read follow it a moment later.
        let committed = self.controller.image().borrow().0;
        if !self
            .replicas
            .wait_image(committed, self.controller_timeout())
            .await
        {
            tracing::warn!(
                index = committed,
                "the broker's partitions did not catch up with the metadata image in time"
            );
        }
        Ok(outcome)
    }

    pub fn submitter(&self) -> SubmitFn {
        submitter(&self.controller, self.controller_timeout())
    }
}

fn submitter(controller: &Arc<ControllerNode>, timeout: Duration) -> SubmitFn {
    let controller = controller.clone();
    Arc::new(move |command| {
        let controller = controller.clone();
        Box::pin(async move { controller.submit(command, timeout).await })
    })
}

/// A broker whose listeners are bound and which has joined the cluster, but does not serve
/// Kafka clients yet.
pub struct Broker {
    ctx: Arc<BrokerContext>,
    listener: TcpListener,
    /// Stops the tasks started in `bind` (lifecycle, image follower, gRPC and HTTP servers).
    background: CancellationToken,
    background_tasks: TaskTracker,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; `None` when `http.listener`
    /// is empty.
    http_addr: Option<SocketAddr>,
}

impl Broker {
    /// Starts the metadata quorum member, registers with the controller, and waits until
    /// the controller has unfenced this broker (it has caught up with the metadata), so
    /// that the first client finds the cluster as it is.
    pub async fn bind(config: BrokerConfig) -> anyhow::Result<Broker> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.log_dir).map_err(|e| {
            anyhow::anyhow!("cannot create log.dirs {}: {e}", config.log_dir.display())
        })?;
        let background = CancellationToken::new();
        let background_tasks = TaskTracker::new();
        let replicas = Arc::new(ReplicaManager::new(config.clone()));

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

        let rpc_listener = TcpListener::bind(config.controller_listener.bind_addr()?)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on controller.listener {:?}: {e}",
                    config.controller_listener
                )
            })?;
        let rpc_bound = rpc_listener.local_addr()?;
        let http_listener = match &config.http_listener {
            Some(l) => Some(http::bind(l).await?),
            None => None,
        };
        let http_addr = http_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let rpc_addr = {
            let l = &config.controller_advertised_listener;
            let host = if l.host.is_empty() {
                advertised_host.clone()
            } else {
                l.host.clone()
            };
            let port = if l.port == 0 {
                rpc_bound.port()
            } else {
                l.port
            };
            format!("{host}:{port}")
        };

        let controller = ControllerNode::start(ControllerConfig {
            node_id: config.broker_id,
            voters: config.controller_quorum_voters.clone(),
            data_dir: config.log_dir.clone(),
            election_timeout_ms: (
                config.controller_election_timeout_ms,
                config.controller_election_timeout_ms * 2,
            ),
            broker_session_timeout_ms: config.broker_session_timeout_ms,
            leader_imbalance_check_interval_ms: if config.auto_leader_rebalance_enable {
                config.leader_imbalance_check_interval_seconds * 1000
            } else {
                0
            },
        })
        .await?;
        let submit = submitter(
            &controller,
            Duration::from_millis(config.controller_request_timeout_ms),
        );

        // One gRPC server for Raft, the controller and replication.
        {
            let server = tonic::transport::Server::builder()
                .add_service(controller.raft_service())
                .add_service(controller.controller_service())
                .add_service(ReplicaService::server(replicas.clone(), submit.clone()));
            // Nagle must be off on accepted sockets too: a replica fetch answer held back by
            // it waits for the peer's delayed ACK (40 ms), and every acks=all write waits
            // for one. `Server::tcp_nodelay` does not reach connections from an incoming
            // stream, so the stream sets it itself.
            let incoming =
                tonic::transport::server::TcpIncoming::from(rpc_listener).with_nodelay(Some(true));
            let stop = background.clone();
            background_tasks.spawn(async move {
                if let Err(e) = server
                    .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                    .await
                {
                    tracing::error!(error = %e, "gRPC server failed");
                }
            });
        }

        let fetchers = Arc::new(Fetchers::new(
            replicas.clone(),
            FetcherConfig {
                broker_id: config.broker_id,
                incarnation: replicas.incarnation().to_string(),
                max_wait_ms: config.replica_fetch_wait_max_ms as u32,
                max_bytes: config.replica_fetch_response_max_bytes,
                partition_max_bytes: config.replica_fetch_max_bytes,
                backoff: Duration::from_millis(config.replica_fetch_backoff_ms),
            },
            background.child_token(),
        ));
        let groups = Arc::new(GroupCoordinator::new(
            replicas.clone(),
            CoordinatorConfig::from_broker(&config),
        ));
        let ctx = Arc::new(BrokerContext {
            config: config.clone(),
            replicas: replicas.clone(),
            controller: controller.clone(),
            groups,
            fetchers,
            advertised_host: advertised_host.clone(),
            advertised_port,
            rpc_addr: rpc_addr.clone(),
        });

        // Probes are answered from here on, while the broker waits to be admitted below:
        // /healthz says the process is up, /readyz what it is waiting for.
        if let Some(listener) = http_listener {
            background_tasks.spawn(http::serve(listener, ctx.clone(), background.child_token()));
        }
        background_tasks.spawn(follow_image(ctx.clone(), background.child_token()));
        let registration = BrokerRecord {
            id: config.broker_id,
            incarnation: replicas.incarnation(),
            host: advertised_host,
            port: advertised_port,
            rack: config.broker_rack.clone(),
            rpc_addr,
            fenced: true,
            shutting_down: false,
        };
        background_tasks.spawn(controller.clone().run_broker_lifecycle(
            registration,
            Duration::from_millis(config.broker_heartbeat_interval_ms),
            background.child_token(),
        ));

        // Serve clients only once this very process is registered and unfenced.
        let mut images = controller.image();
        let me = config.broker_id;
        let incarnation = replicas.incarnation();
        let mut last_log = tokio::time::Instant::now();
        loop {
            let unfenced = {
                let (_, image) = &*images.borrow_and_update();
                image
                    .brokers
                    .get(&me)
                    .is_some_and(|b| !b.fenced && b.incarnation == incarnation)
            };
            if unfenced
                && replicas
                    .image()
                    .1
                    .brokers
                    .get(&me)
                    .is_some_and(|b| !b.fenced)
            {
                break;
            }
            if last_log.elapsed() > Duration::from_secs(5) {
                tracing::info!(
                    active_controller = ?controller.active_controller(),
                    "waiting for the controller to admit this broker"
                );
                last_log = tokio::time::Instant::now();
            }
            tokio::select! {
                changed = images.changed() => changed?,
                // The replica manager applies images on its own task; check it again soon.
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        tracing::info!(broker = me, "admitted to the cluster");
        Ok(Broker {
            ctx,
            listener,
            background,
            background_tasks,
            http_addr,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound address of `http.listener`, if it is on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn context(&self) -> &Arc<BrokerContext> {
        &self.ctx
    }

    /// Serves until `shutdown` is cancelled, then stops in order and flushes every log.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Broker {
            ctx,
            listener,
            background,
            background_tasks,
            http_addr: _,
        } = self;
        let tasks = TaskTracker::new();
        let connections = TaskTracker::new();
        let accepting = CancellationToken::new();

        tasks.spawn(retention_task(ctx.clone(), accepting.child_token()));
        tasks.spawn(flush_task(ctx.clone(), accepting.child_token()));
        tasks.spawn(replication::run_isr_monitor(
            ctx.replicas.clone(),
            ctx.submitter(),
            ctx.config.replica_lag_time_max_ms as i64,
            accepting.child_token(),
        ));
        tasks.spawn(ctx.groups.clone().run_timers(accepting.child_token()));
        tasks.spawn(
            ctx.groups
                .clone()
                .run_offset_expiry(accepting.child_token()),
        );

        // A stop signal first moves leaderships away while clients are still served, so
        // they find the new leaders without errors (controlled shutdown).
        {
            let ctx = ctx.clone();
            let accepting = accepting.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                if ctx.config.controlled_shutdown_enable {
                    let timeout = Duration::from_millis(ctx.config.controlled_shutdown_timeout_ms);
                    tracing::info!("controlled shutdown: moving leaderships away");
                    let done = ctx
                        .controller
                        .controlled_shutdown(
                            ctx.config.broker_id,
                            ctx.replicas.incarnation(),
                            timeout,
                        )
                        .await;
                    if done {
                        tracing::info!("controlled shutdown: leaderships moved");
                    } else {
                        tracing::warn!(
                            ?timeout,
                            "controlled shutdown did not complete in time; stopping anyway"
                        );
                    }
                }
                accepting.cancel();
            });
        }

        let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
        let mut backoff = Duration::from_millis(5);
        loop {
            let permit = tokio::select! {
                _ = accepting.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit?,
            };
            let accepted: std::io::Result<(TcpStream, SocketAddr)> = tokio::select! {
                _ = accepting.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let ctx = ctx.clone();
                    let token = accepting.child_token();
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
        background.cancel();
        background_tasks.close();
        background_tasks.wait().await;
        ctx.controller.shutdown().await;

        let replicas = ctx.replicas.clone();
        let failures = tokio::task::spawn_blocking(move || replicas.flush_all()).await?;
        if failures > 0 {
            anyhow::bail!("{failures} partition logs could not be flushed at shutdown");
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Applies every committed metadata image to the partitions here, then points the fetchers
/// and the group coordinator at the result.
async fn follow_image(ctx: Arc<BrokerContext>, shutdown: CancellationToken) {
    let mut images = ctx.controller.image();
    loop {
        let (index, image) = images.borrow_and_update().clone();
        let replicas = ctx.replicas.clone();
        let applied = image.clone();
        match tokio::task::spawn_blocking(move || replicas.apply_image(index, applied)).await {
            Ok(changes) => {
                ctx.fetchers.update(&changes.following, &image);
                ctx.groups
                    .leadership_changed(&changes.became_leader, &changes.lost_leadership);
            }
            Err(e) => tracing::error!(error = %e, "applying a metadata image failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = images.changed() => if changed.is_err() { return },
        }
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
