//! Partition replication between brokers: followers pull from leaders over gRPC.
//!
//! ```text
//!  follower broker                                   leader broker
//!  Fetcher (one task per leader) ── Replica.Fetch ──> ReplicaService
//!    fetch offset = our log end                       Partition::fetch_for_follower
//!    last fetched epoch                                 ├─ diverging? → epoch + end offset
//!       ◄── batches, HW, log start, diverging ──────    ├─ follower progress → high watermark
//!    append_as_follower / truncate_diverging            └─ caught up, not in ISR → AlterPartition
//!
//!  IsrMonitor (leader): ISR members lagging past replica.lag.time.max.ms → AlterPartition
//! ```
//!
//! The leader answers a fetch at once when it has data (or an error) for the follower,
//! otherwise it holds the request until something is appended or `max_wait_ms` passes, so a
//! follower in the ISR learns about a new batch within one round trip, and an acks=all
//! producer is answered after about two.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::ResponseError;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tributary_proto::replica_client::ReplicaClient;
use tributary_proto::replica_server::{Replica, ReplicaServer};
use tributary_proto::{
    EpochEndOffset, FetchPartition, FetchedPartition, ReplicaFetchRequest, ReplicaFetchResponse,
};

use crate::controller::{Command, CommandError, MetadataImage, Outcome};
use crate::server::partition::{IsrChange, Partition};
use crate::server::replica_manager::{now_ms, ReplicaManager};

/// Largest gRPC message a replica fetch may carry either way.
pub const MAX_RPC_MESSAGE_BYTES: usize = 256 << 20;

/// Commits a metadata command through the controller (see `ControllerNode::submit`).
pub type SubmitFn = Arc<
    dyn Fn(Command) -> Pin<Box<dyn Future<Output = Result<Outcome, CommandError>> + Send>>
        + Send
        + Sync,
>;

/// How long a partition whose ISR change was refused waits before it may propose again (a
/// follower that restarts is refused until it is registered again; Kafka's leaders retry
/// AlterPartition with a backoff too).
const ISR_CHANGE_RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Asks the controller for an ISR change; on refusal the partition may propose again after
/// [`ISR_CHANGE_RETRY_BACKOFF`].
/// `committed` (the broker's ISR shrink or expansion counter) counts it once committed.
pub fn propose_isr_change(
    submit: &SubmitFn,
    partition: Arc<Partition>,
    change: IsrChange,
    committed: Counter,
) {
    let submit = submit.clone();
    tokio::spawn(async move {
        let partition_epoch = change.partition_epoch;
        tracing::info!(
            topic = %change.topic, partition = change.partition, new_isr = ?change.new_isr,
            "proposing ISR change"
        );
        let command = Command::AlterPartition {
            topic: change.topic.clone(),
            partition: change.partition,
            leader: partition.broker_id,
            leader_epoch: change.leader_epoch,
            partition_epoch,
            new_isr: change.new_isr.clone(),
        };
        match submit(command).await {
            Ok(_) => {
                committed.inc();
            }
            Err(e) => {
                tracing::warn!(
                    topic = %change.topic, partition = change.partition, error = %e,
                    "ISR change refused"
                );
                tokio::time::sleep(ISR_CHANGE_RETRY_BACKOFF).await;
                partition.clear_pending_isr(partition_epoch);
            }
        }
    });
}

/// The leader side of replication: the `Replica` gRPC service.
pub struct ReplicaService {
    replicas: Arc<ReplicaManager>,
    submit: SubmitFn,
}

impl ReplicaService {
    pub fn server(replicas: Arc<ReplicaManager>, submit: SubmitFn) -> ReplicaServer<Self> {
        ReplicaServer::new(ReplicaService { replicas, submit })
            .max_decoding_message_size(MAX_RPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RPC_MESSAGE_BYTES)
    }
}

fn fetched_error(p: &FetchPartition, code: i16, message: String) -> FetchedPartition {
    FetchedPartition {
        topic: p.topic.clone(),
        partition: p.partition,
        error_code: i32::from(code),
        error_message: message,
        high_watermark: -1,
        log_start_offset: -1,
        log_end_offset: -1,
        ..Default::default()
    }
}

/// One pass over the requested partitions on the blocking pool. ISR expansions are proposed
/// from here, not by the caller: the request may be dropped (the follower gave up on it),
/// and a partition marked as having a proposal in flight must always get one.
fn leader_pass(
    replicas: &ReplicaManager,
    request: &ReplicaFetchRequest,
    submit: &SubmitFn,
) -> Vec<FetchedPartition> {
    let now = now_ms();
    let mut budget = request.max_bytes.max(1) as usize;
    let mut out = Vec::with_capacity(request.partitions.len());
    for p in &request.partitions {
        let partition = match replicas
            .topic(&p.topic)
            .ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("topic {:?} does not exist", p.topic),
                )
            })
            .and_then(|t| {
                t.lookup(p.partition, replicas.broker_id())
                    .map_err(|e| (e.code, e.message))
            }) {
            Ok(partition) => partition,
            Err((code, message)) => {
                out.push(fetched_error(p, code, message));
                continue;
            }
        };
        let max_bytes = (p.partition_max_bytes.max(1) as usize).min(budget.max(1));
        let result = partition.fetch_for_follower(
            request.replica_id,
            p.fetch_offset,
            p.current_leader_epoch,
            p.last_fetched_epoch,
            max_bytes,
            now,
        );
        budget = budget.saturating_sub(result.records.len());
        if let Some(change) = result.expand_isr {
            let expands = replicas.metrics().isr_expands.clone();
            propose_isr_change(submit, partition.clone(), change, expands);
        }
        out.push(FetchedPartition {
            topic: p.topic.clone(),
            partition: p.partition,
            error_code: i32::from(result.error),
            error_message: result.message,
            high_watermark: result.high_watermark,
            log_start_offset: result.log_start_offset,
            log_end_offset: result.log_end_offset,
            records: result.records.to_vec(),
            diverging_epoch: result
                .diverging
                .map(|(epoch, end_offset)| EpochEndOffset { epoch, end_offset }),
        });
    }
    out
}

#[tonic::async_trait]
impl Replica for ReplicaService {
    async fn fetch(
        &self,
        request: tonic::Request<ReplicaFetchRequest>,
    ) -> Result<tonic::Response<ReplicaFetchResponse>, tonic::Status> {
        let request = Arc::new(request.into_inner());
        let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
        let min_bytes = request.min_bytes.max(1) as usize;
        let mut appended = self.replicas.subscribe_appends();
        loop {
            // Mark the current appends as seen before reading, so one that lands during the
            // read wakes the wait below.
            appended.borrow_and_update();
            let replicas = self.replicas.clone();
            let pass_request = request.clone();
            let submit = self.submit.clone();
            let partitions =
                tokio::task::spawn_blocking(move || leader_pass(&replicas, &pass_request, &submit))
                    .await
                    .map_err(|e| tonic::Status::internal(format!("fetch pass failed: {e}")))?;
            let bytes: usize = partitions.iter().map(|p| p.records.len()).sum();
            let notable = partitions
                .iter()
                .any(|p| p.error_code != 0 || p.diverging_epoch.is_some());
            if bytes >= min_bytes || notable || Instant::now() >= deadline {
                return Ok(tonic::Response::new(ReplicaFetchResponse { partitions }));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                changed = appended.changed() => {
                    if changed.is_err() {
                        return Ok(tonic::Response::new(ReplicaFetchResponse { partitions }));
                    }
                }
            }
        }
    }
}

/// Settings of the follower fetchers.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    pub broker_id: i32,
    pub incarnation: String,
    pub max_wait_ms: u32,
    pub max_bytes: u32,
    pub partition_max_bytes: u32,
    pub backoff: Duration,
}

/// What one fetcher pulls: (topic, partition) → (partition, leader epoch).
type Targets = BTreeMap<(String, i32), (Arc<Partition>, i32)>;

struct FetcherHandle {
    addr: String,
    targets: Arc<Mutex<Targets>>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
}

/// The follower side: one fetcher task per leader broker, each pulling every partition
/// this broker follows on that leader.
pub struct Fetchers {
    replicas: Arc<ReplicaManager>,
    config: FetcherConfig,
    by_leader: Mutex<HashMap<i32, FetcherHandle>>,
    shutdown: CancellationToken,
}

impl Fetchers {
    pub fn new(
        replicas: Arc<ReplicaManager>,
        config: FetcherConfig,
        shutdown: CancellationToken,
    ) -> Fetchers {
        Fetchers {
            replicas,
            config,
            by_leader: Mutex::new(HashMap::new()),
            shutdown,
        }
    }

    /// Points the fetchers at what this broker follows now: `(partition, leader, epoch)`.
    pub fn update(&self, following: &[(Arc<Partition>, i32, i32)], image: &MetadataImage) {
        let mut wanted: HashMap<i32, Targets> = HashMap::new();
        for (partition, leader, epoch) in following {
            wanted.entry(*leader).or_default().insert(
                (partition.topic.clone(), partition.index),
                (partition.clone(), *epoch),
            );
        }
        let mut by_leader = self.by_leader.lock().expect("fetchers lock poisoned");
        by_leader.retain(|leader, handle| {
            let keep = wanted.contains_key(leader)
                && image
                    .brokers
                    .get(leader)
                    .is_some_and(|b| b.rpc_addr == handle.addr);
            if !keep {
                handle.cancel.cancel();
            }
            keep
        });
        for (leader, targets) in wanted {
            if let Some(handle) = by_leader.get(&leader) {
                *handle.targets.lock().expect("fetcher targets poisoned") = targets;
                handle.wake.notify_one();
                continue;
            }
            let Some(addr) = image.brokers.get(&leader).map(|b| b.rpc_addr.clone()) else {
                tracing::warn!(leader, "leader is not registered; cannot follow it yet");
                continue;
            };
            let handle = FetcherHandle {
                addr: addr.clone(),
                targets: Arc::new(Mutex::new(targets)),
                wake: Arc::new(Notify::new()),
                cancel: self.shutdown.child_token(),
            };
            tokio::spawn(run_fetcher(
                self.replicas.clone(),
                self.config.clone(),
                leader,
                addr,
                handle.targets.clone(),
                handle.wake.clone(),
                handle.cancel.clone(),
            ));
            by_leader.insert(leader, handle);
        }
    }
}

fn connect(addr: &str) -> Result<ReplicaClient<Channel>, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    Ok(ReplicaClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(MAX_RPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RPC_MESSAGE_BYTES))
}

async fn run_fetcher(
    replicas: Arc<ReplicaManager>,
    config: FetcherConfig,
    leader: i32,
    addr: String,
    targets: Arc<Mutex<Targets>>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    tracing::info!(leader, %addr, "fetcher started");
    let mut client: Option<ReplicaClient<Channel>> = None;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let current: Targets = targets.lock().expect("fetcher targets poisoned").clone();
        if current.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = wake.notified() => continue,
            }
        }
        let mut partitions = Vec::with_capacity(current.len());
        for ((topic, index), (partition, epoch)) in &current {
            let Some((fetch_offset, last_fetched_epoch)) = partition.follower_fetch_state() else {
                continue;
            };
            partitions.push(FetchPartition {
                topic: topic.clone(),
                partition: *index,
                fetch_offset,
                current_leader_epoch: *epoch,
                last_fetched_epoch,
                log_start_offset: -1,
                partition_max_bytes: config.partition_max_bytes,
            });
        }
        let request = ReplicaFetchRequest {
            replica_id: config.broker_id,
            incarnation: config.incarnation.clone(),
            max_wait_ms: config.max_wait_ms,
            min_bytes: 1,
            max_bytes: config.max_bytes,
            partitions,
        };
        let c = match &mut client {
            Some(c) => c,
            None => match connect(&addr) {
                Ok(c) => client.insert(c),
                Err(e) => {
                    tracing::warn!(leader, %addr, error = %e, "cannot reach leader");
                    if backoff(&cancel, config.backoff).await {
                        break;
                    }
                    continue;
                }
            },
        };
        let timeout = Duration::from_millis(u64::from(config.max_wait_ms)) + Duration::from_secs(5);
        tracing::trace!(leader, partitions = request.partitions.len(), "fetch sent");
        let response = tokio::select! {
            _ = cancel.cancelled() => break,
            // A new work list (leader change, partition added) restarts the fetch.
            _ = wake.notified() => {
                tracing::trace!(leader, "fetch restarted for a new work list");
                continue;
            }
            r = tokio::time::timeout(timeout, c.fetch(request)) => r,
        };
        let response = match response {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                tracing::debug!(leader, %addr, error = %status, "replica fetch failed");
                client = None;
                if backoff(&cancel, config.backoff).await {
                    break;
                }
                continue;
            }
            Err(_) => {
                tracing::debug!(leader, %addr, "replica fetch timed out");
                client = None;
                continue;
            }
        };
        tracing::trace!(
            leader,
            partitions = response.partitions.len(),
            bytes = response
                .partitions
                .iter()
                .map(|p| p.records.len())
                .sum::<usize>(),
            errors = response
                .partitions
                .iter()
                .filter(|p| p.error_code != 0)
                .count(),
            diverging = response
                .partitions
                .iter()
                .filter(|p| p.diverging_epoch.is_some())
                .count(),
            "fetch response"
        );
        let by_key = current;
        let results = tokio::task::spawn_blocking(move || {
            let mut progressed = false;
            let mut trouble = false;
            for p in response.partitions {
                let Some((partition, epoch)) = by_key.get(&(p.topic.clone(), p.partition)) else {
                    continue;
                };
                match follower_apply(partition, *epoch, p) {
                    Ok(moved) => progressed |= moved,
                    Err(message) => {
                        trouble = true;
                        tracing::debug!(
                            topic = %partition.topic, partition = partition.index, leader,
                            error = %message, "replica fetch not applied"
                        );
                    }
                }
            }
            (progressed, trouble)
        })
        .await;
        match results {
            Ok((progressed, trouble)) => {
                if progressed {
                    replicas.notify_appended();
                }
                if trouble && backoff(&cancel, config.backoff).await {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(leader, error = %e, "applying a replica fetch failed");
                if backoff(&cancel, config.backoff).await {
                    break;
                }
            }
        }
    }
    tracing::info!(leader, %addr, "fetcher stopped");
}

/// Applies one partition of a fetch response on the follower. Ok(true) when the log or its
/// high watermark moved.
fn follower_apply(partition: &Partition, epoch: i32, p: FetchedPartition) -> Result<bool, String> {
    if let Some(diverging) = p.diverging_epoch {
        partition
            .truncate_diverging(diverging.epoch, diverging.end_offset)
            .map_err(|e| e.message)?;
        return Ok(true);
    }
    let code = i16::try_from(p.error_code).unwrap_or(i16::MIN);
    if code == ResponseError::OffsetOutOfRange.code() {
        let (fetch_offset, _) = partition
            .follower_fetch_state()
            .ok_or_else(|| "partition is gone".to_string())?;
        if fetch_offset < p.log_start_offset {
            // The leader no longer has what we miss: start over at its log start.
            partition
                .restart_log_at(p.log_start_offset)
                .map_err(|e| e.message)?;
        } else if p.log_end_offset >= 0 && fetch_offset > p.log_end_offset {
            // Ahead of the leader without a divergence point to go by: keep what it has.
            partition
                .truncate_diverging(-1, p.log_end_offset)
                .map_err(|e| e.message)?;
        }
        return Ok(true);
    }
    if code != 0 {
        return Err(format!("error code {code}: {}", p.error_message));
    }
    partition
        .append_as_follower(epoch, &p.records, p.high_watermark, p.log_start_offset)
        .map_err(|e| e.message)
}

/// Waits `period` unless cancelled first; true when cancelled.
async fn backoff(cancel: &CancellationToken, period: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(period) => false,
    }
}

/// Leader side: takes lagging followers out of the ISR (through the controller) every
/// half `replica.lag.time.max.ms`.
pub async fn run_isr_monitor(
    replicas: Arc<ReplicaManager>,
    submit: SubmitFn,
    max_lag_ms: i64,
    shutdown: CancellationToken,
) {
    let period = Duration::from_millis((max_lag_ms / 2).clamp(50, 5_000) as u64);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = now_ms();
        for partition in replicas.all_partitions() {
            if let Some(change) = partition.isr_shrink(now, max_lag_ms) {
                let shrinks = replicas.metrics().isr_shrinks.clone();
                propose_isr_change(&submit, partition, change, shrinks);
            }
        }
    }
}
