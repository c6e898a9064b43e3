//! The controller node: what the rest of the broker uses of the metadata quorum.
//!
//! Every broker runs one [`ControllerNode`]. On a voter it owns the Raft instance and, while
//! that instance leads, the active controller's duties; on any other broker it follows the
//! committed image over `WatchMetadata`. Either way it offers the same three things: the
//! committed image ([`ControllerNode::image`]), [`ControllerNode::submit`] for changes, and
//! the broker lifecycle (registration, heartbeats, controlled shutdown).
//!
//! ```text
//!                 submit(Command) ──> leader here? ──yes──> raft.client_write ──┐
//!                                        │ no                                   │
//!                                        └──> gRPC Submit to the active ───────┤ log index
//!                                             controller (retry on 41)          ▼
//!                                                          wait until image() has applied it
//!
//!  active controller duties (only while this voter leads):
//!    BrokerHeartbeat ──> last_heartbeat_ms ──every 100 ms──> brokers_to_fence ──> FenceBroker
//!      fenced + caught up ──> UnfenceBroker      want_shutdown ──> ControlledShutdown, then
//!                                                 FenceBroker once it leads nothing movable
//!    every leader.imbalance.check.interval ──> ElectLeaders { preferred: true }
//!    a brand-new cluster ──> InitCluster
//!
//!  non-voters: WatchMetadata from a voter (rotating on failure) ──> image()
//! ```
//!
//! Commands are at-least-once: a submit whose answer is lost (the active controller died
//! after committing) is retried and may commit twice. Every [`Command`] is safe to repeat
//! (a second `CreateTopic` is refused as a duplicate, a second producer-id block is skipped),
//! as with Kafka's forwarded requests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use kafka_protocol::ResponseError;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Channel, Endpoint};
use tributary_proto::controller_client::ControllerClient;
use tributary_proto::controller_server::ControllerServer;
use tributary_proto::raft_server::RaftServer;
use tributary_proto::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, MetadataImageMessage, SubmitRequest,
    SubmitResponse, WatchMetadataRequest,
};
use uuid::Uuid;

use super::duties;
use super::raft::log_store::LogStore;
use super::raft::network::NetworkFactory;
use super::raft::state_machine::{ImageSender, StateMachineStore};
use super::raft::{raft_config, raft_dir, MetadataRaft, Response, MAX_RPC_MESSAGE_BYTES};
use super::service::{ControllerService, RaftService};
use super::{BrokerRecord, Command, CommandError, MetadataImage, Outcome};

/// How often the active controller looks for brokers to fence.
const FENCE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a single controller RPC (Submit, BrokerHeartbeat) may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the active controller waits for one of its own writes to commit.
const LOCAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// First and largest pause between retries while no active controller answers.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Largest pause between `WatchMetadata` attempts on a non-voter.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// HTTP/2 pings on controller connections, and how long an unanswered ping may take.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Images buffered per `WatchMetadata` stream; only the newest matters, so few suffice.
const WATCH_STREAM_BUFFER: usize = 4;

/// The committed image as this node has it: last applied log index and the image.
pub type ImageWatch = watch::Receiver<(u64, Arc<MetadataImage>)>;

/// How this broker takes part in the metadata quorum.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This broker's id (`node.id`).
    pub node_id: i32,
    /// Voters `id -> "host:port"` (controller.quorum.voters). Empty = a single-node quorum
    /// of this broker alone (standalone broker): the node then initializes itself and needs
    /// no network.
    pub voters: BTreeMap<i32, String>,
    /// `<log.dirs>`; Raft files go in `<log.dirs>/__cluster_metadata/raft`.
    pub data_dir: PathBuf,
    /// Randomized Raft election timeout range; (500, 1000) by default. Heartbeats go every
    /// 100 ms.
    pub election_timeout_ms: (u64, u64),
    /// A broker silent this long is fenced (`broker.session.timeout.ms`).
    pub broker_session_timeout_ms: u64,
    /// How often the active controller moves leaderships back to preferred replicas
    /// (`leader.imbalance.check.interval.seconds`, in ms here); 0 turns it off.
    pub leader_imbalance_check_interval_ms: u64,
}

impl ControllerConfig {
    /// A standalone broker's quorum (itself alone) with the default timings.
    pub fn standalone(node_id: i32, data_dir: PathBuf) -> ControllerConfig {
        ControllerConfig {
            node_id,
            voters: BTreeMap::new(),
            data_dir,
            election_timeout_ms: (500, 1000),
            broker_session_timeout_ms: 1000,
            leader_imbalance_check_interval_ms: 300_000,
        }
    }
}

/// Why a write could not be made here; the caller tries again elsewhere or later.
#[derive(Debug)]
enum WriteError {
    /// Another voter leads (if known).
    NotLeader(Option<i32>),
    /// Raft is stopping, or the write did not commit in time.
    Unavailable(String),
}

/// State of the active controller's duties, valid while this node leads.
#[derive(Debug, Default)]
struct DutyState {
    /// Last heartbeat per broker, in ms since this node started. Seeded with "now" for
    /// every registered broker on becoming leader, so a new leader grants each a full
    /// session before fencing it.
    last_heartbeat_ms: BTreeMap<i32, i64>,
    /// Log index of each broker's registration, for registrations committed through this
    /// node: a broker is unfenced only once its image has applied its own registration.
    registered_at: BTreeMap<i32, (Uuid, u64)>,
}

/// A broker's handle on the metadata quorum. See the module documentation.
pub struct ControllerNode {
    config: ControllerConfig,
    /// The Raft instance; `None` on a broker that is not a voter.
    raft: Option<MetadataRaft>,
    /// Publishes the committed image: from the state machine on voters, from the
    /// `WatchMetadata` follower task on non-voters.
    image_tx: ImageSender,
    image_rx: ImageWatch,
    /// The active controller as last told by a voter (-1: unknown). Voters read Raft's own
    /// view instead.
    leader_hint: AtomicI32,
    /// Round-robin position among the voters when no active controller is known.
    next_voter: AtomicUsize,
    /// Lazily connected clients of the voters' Controller services.
    clients: Mutex<BTreeMap<i32, ControllerClient<Channel>>>,
    duties: Mutex<DutyState>,
    /// Time origin of `last_heartbeat_ms`: a monotonic clock, immune to wall-clock jumps.
    started: Instant,
    /// When this node's own broker last had a heartbeat (or its registration) accepted by
    /// the active controller, in milliseconds since `started` plus one (0: never).
    broker_lease_ms: AtomicU64,
    /// Cancelled by [`ControllerNode::shutdown`]; every background task watches it.
    shutdown: CancellationToken,
    /// Owns the background tasks (duties, metadata follower, WatchMetadata streams).
    tasks: TaskTracker,
}

impl std::fmt::Debug for ControllerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerNode")
            .field("node_id", &self.config.node_id)
            .field("voter", &self.is_voter())
            .field("active_controller", &self.active_controller())
            .field("image_index", &self.image_rx.borrow().0)
            .finish()
    }
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

impl ControllerNode {
    /// Opens the metadata log (voters) and starts the node's background work. Returns once
    /// Raft runs; the quorum forms in the background as the other voters come up.
    pub async fn start(config: ControllerConfig) -> anyhow::Result<Arc<ControllerNode>> {
        let voter = config.voters.is_empty() || config.voters.contains_key(&config.node_id);
        anyhow::ensure!(
            config.node_id >= 0,
            "node.id {} is negative; Raft node ids are broker ids and must be >= 0",
            config.node_id
        );
        let (image_tx, image_rx) = watch::channel((0, Arc::new(MetadataImage::default())));
        let raft = if voter {
            Some(Self::start_raft(&config, image_tx.clone()).await?)
        } else {
            None
        };
        let node = Arc::new(ControllerNode {
            config,
            raft,
            image_tx,
            image_rx,
            leader_hint: AtomicI32::new(-1),
            next_voter: AtomicUsize::new(0),
            clients: Mutex::new(BTreeMap::new()),
            duties: Mutex::new(DutyState::default()),
            started: Instant::now(),
            broker_lease_ms: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        if node.raft.is_some() {
            node.tasks.spawn(node.clone().run_duties());
        } else {
            anyhow::ensure!(
                !node.config.voters.is_empty(),
                "broker {} is not a voter and no voters are configured",
                node.config.node_id
            );
            node.tasks.spawn(node.clone().follow_metadata());
        }
        tracing::info!(
            node_id = node.config.node_id,
            voter,
            voters = ?node.config.voters,
            "controller node started"
        );
        Ok(node)
    }

    async fn start_raft(
        config: &ControllerConfig,
        image_tx: ImageSender,
    ) -> anyhow::Result<MetadataRaft> {
        let dir = raft_dir(&config.data_dir);
        let open_dir = dir.clone();
        let (log_store, state_machine) = tokio::task::spawn_blocking(move || {
            let log = LogStore::open(&open_dir)?;
            let sm = StateMachineStore::open(&open_dir, image_tx)?;
            Ok::<_, std::io::Error>((log, sm))
        })
        .await
        .context("metadata log open task failed")?
        .with_context(|| format!("opening the metadata log in {}", dir.display()))?;
        let raft_config = raft_config(config.election_timeout_ms)?;
        let id = config.node_id as u64;
        let raft = MetadataRaft::new(id, raft_config, NetworkFactory, log_store, state_machine)
            .await
            .with_context(|| format!("starting Raft for node {id}"))?;

        let initialized = raft
            .is_initialized()
            .await
            .context("reading Raft state on start")?;
        if !initialized {
            let members: BTreeMap<u64, BasicNode> = if config.voters.is_empty() {
                BTreeMap::from([(id, BasicNode::default())])
            } else {
                config
                    .voters
                    .iter()
                    .map(|(&id, addr)| (id as u64, BasicNode::new(addr)))
                    .collect()
            };
            tracing::info!(?members, "initializing a new metadata quorum");
            match raft.initialize(members).await {
                Ok(()) => {}
                // Another voter got there first (its log reached us): the goal is met.
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    tracing::debug!("metadata quorum already initialized: {e}");
                }
                Err(e) => {
                    if let Err(stop) = raft.shutdown().await {
                        tracing::warn!("Raft did not stop cleanly: {stop}");
                    }
                    return Err(anyhow::anyhow!("initializing the metadata quorum: {e}"));
                }
            }
        }
        Ok(raft)
    }

    /// The Raft gRPC service to mount on this broker's gRPC listener (voters answer it;
    /// other brokers answer FAILED_PRECONDITION).
    pub fn raft_service(self: &Arc<Self>) -> RaftServer<RaftService> {
        RaftServer::new(RaftService::new(self.clone()))
            .max_decoding_message_size(MAX_RPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RPC_MESSAGE_BYTES)
    }

    /// The Controller gRPC service to mount next to [`raft_service`](Self::raft_service).
    pub fn controller_service(self: &Arc<Self>) -> ControllerServer<ControllerService> {
        ControllerServer::new(ControllerService::new(self.clone()))
            .max_decoding_message_size(MAX_RPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RPC_MESSAGE_BYTES)
    }

    /// Committed image as applied here (voters) or as streamed from a voter (non-voters).
    /// Index 0 and the default image before anything is known.
    pub fn image(&self) -> ImageWatch {
        self.image_rx.clone()
    }

    pub fn is_voter(&self) -> bool {
        self.raft.is_some()
    }

    pub(crate) fn raft(&self) -> Option<&MetadataRaft> {
        self.raft.as_ref()
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Current active controller id, if known (for DescribeCluster / Metadata controller_id).
    pub fn active_controller(&self) -> Option<i32> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        match &self.raft {
            Some(raft) => raft.metrics().borrow().current_leader.map(|id| id as i32),
            None => Some(self.leader_hint.load(Ordering::Relaxed)).filter(|&id| id >= 0),
        }
    }

    /// Whether this node is the active controller right now.
    fn is_leader(&self) -> bool {
        self.raft.as_ref().is_some_and(|raft| {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            metrics.running_state.is_ok()
                && metrics.state == ServerState::Leader
                && metrics.current_leader == Some(self.config.node_id as u64)
        })
    }

    fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// Commits `command` through the active controller (a local write when this node leads,
    /// otherwise a gRPC Submit to the leader; on NOT_CONTROLLER, an unreachable controller
    /// or no leader yet it retries with backoff until `timeout`), then waits until this
    /// node's own image has applied the returned log index, so the caller's next read sees
    /// it. Errors: the [`CommandError`] from `apply`, or REQUEST_TIMED_OUT (7) /
    /// NOT_CONTROLLER (41) with a message on timeout.
    pub async fn submit(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<Outcome, CommandError> {
        let deadline = Instant::now() + timeout;
        let (index, response) = self.commit(&command, deadline).await?;
        self.wait_applied(index, deadline).await?;
        response
    }

    /// Commits `command` somewhere, retrying until `deadline`; returns the log index and
    /// what applying it answered.
    async fn commit(
        &self,
        command: &Command,
        deadline: Instant,
    ) -> Result<(u64, Response), CommandError> {
        let mut backoff = RETRY_BACKOFF_MIN;
        let mut reached_controller = false;
        let mut last_problem = String::from("no active controller is known yet");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let (error, what) = if reached_controller {
                    (
                        ResponseError::RequestTimedOut,
                        "the active controller did not commit",
                    )
                } else {
                    (
                        ResponseError::NotController,
                        "no active controller answered",
                    )
                };
                return Err(CommandError::new(
                    error,
                    format!("{what} {} in time: {last_problem}", command_name(command)),
                ));
            }
            let attempt = if self.is_leader() {
                reached_controller = true;
                match self
                    .write_local(command.clone(), remaining.min(LOCAL_WRITE_TIMEOUT))
                    .await
                {
                    Ok(done) => return Ok(done),
                    Err(WriteError::NotLeader(leader)) => {
                        format!("leadership moved to {leader:?}")
                    }
                    Err(WriteError::Unavailable(why)) => why,
                }
            } else {
                match self
                    .submit_remote(command, remaining.min(RPC_TIMEOUT))
                    .await
                {
                    Ok(done) => return Ok(done),
                    Err(RemoteFailure::NotController(why)) => why,
                    Err(RemoteFailure::Unreachable(why)) => why,
                    Err(RemoteFailure::TimedOut(why)) => {
                        reached_controller = true;
                        why
                    }
                }
            };
            tracing::debug!(command = command_name(command), "submit retry: {attempt}");
            last_problem = attempt;
            let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.shutdown.cancelled() => {
                    return Err(CommandError::new(
                        ResponseError::NotController,
                        format!("controller node {} is shutting down", self.config.node_id),
                    ));
                }
            }
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        }
    }

    /// Waits until this node's image has applied log `index`.
    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), CommandError> {
        let mut rx = self.image_rx.clone();
        let waited =
            tokio::time::timeout_at(deadline, rx.wait_for(|(applied, _)| *applied >= index))
                .await
                .map(|applied| applied.map(|_| ()));
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_closed)) => Err(CommandError::new(
                ResponseError::RequestTimedOut,
                format!("committed at index {index}, but this node stopped before applying it"),
            )),
            Err(_elapsed) => Err(CommandError::new(
                ResponseError::RequestTimedOut,
                format!(
                    "committed at index {index}, but broker {} had applied only up to {} in time",
                    self.config.node_id,
                    self.image_rx.borrow().0
                ),
            )),
        }
    }

    /// Proposes `command` to the local Raft, which must lead. Returns once it is applied
    /// here.
    async fn write_local(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<(u64, Response), WriteError> {
        let Some(raft) = &self.raft else {
            return Err(WriteError::NotLeader(self.active_controller()));
        };
        let registration = match &command {
            Command::RegisterBroker { broker } => Some((broker.id, broker.incarnation)),
            _ => None,
        };
        match tokio::time::timeout(timeout, raft.client_write(command)).await {
            Ok(Ok(written)) => {
                if let (Some((id, incarnation)), Ok(_)) = (registration, &written.data) {
                    self.note_registration(id, incarnation, written.log_id.index);
                }
                Ok((written.log_id.index, written.data))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                Err(WriteError::NotLeader(forward.leader_id.map(|id| id as i32)))
            }
            Ok(Err(e)) => Err(WriteError::Unavailable(format!(
                "Raft on node {} refused the write: {e}",
                self.config.node_id
            ))),
            Err(_elapsed) => Err(WriteError::Unavailable(format!(
                "the write did not commit within {} ms (no quorum?)",
                timeout.as_millis()
            ))),
        }
    }

    /// The voter to ask: the known active controller, else the next voter in turn.
    fn pick_voter(&self) -> Option<(i32, String)> {
        if let Some(leader) = self.active_controller() {
            if let Some(addr) = self.config.voters.get(&leader) {
                return Some((leader, addr.clone()));
            }
        }
        let n = self.config.voters.len();
        if n == 0 {
            return None;
        }
        let i = self.next_voter.fetch_add(1, Ordering::Relaxed) % n;
        self.config
            .voters
            .iter()
            .nth(i)
            .map(|(&id, addr)| (id, addr.clone()))
    }

    fn note_leader(&self, leader_hint: i32) {
        if self.raft.is_none() && leader_hint >= 0 {
            self.leader_hint.store(leader_hint, Ordering::Relaxed);
        }
    }

    fn forget_leader(&self, id: i32) {
        let _ = self
            .leader_hint
            .compare_exchange(id, -1, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn controller_client(&self, id: i32, addr: &str) -> Result<ControllerClient<Channel>, String> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| "controller client cache lock poisoned".to_string())?;
        if let Some(client) = clients.get(&id) {
            return Ok(client.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("voter {id} address {addr:?} is not usable: {e}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            // Pings find a voter that vanished without closing the connection (a host
            // gone, a partition), so a WatchMetadata stream moves on to another voter.
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_lazy();
        let client = ControllerClient::new(channel)
            .max_decoding_message_size(MAX_RPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RPC_MESSAGE_BYTES);
        clients.insert(id, client.clone());
        Ok(client)
    }

    fn drop_client(&self, id: i32) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(&id);
        }
    }

    /// Sends `command` to the active controller over gRPC.
    async fn submit_remote(
        &self,
        command: &Command,
        timeout: Duration,
    ) -> Result<(u64, Response), RemoteFailure> {
        let Some((target, addr)) = self.pick_voter() else {
            return Err(RemoteFailure::NotController(
                "no voters are configured".into(),
            ));
        };
        let mut client = self
            .controller_client(target, &addr)
            .map_err(RemoteFailure::Unreachable)?;
        // Serializing a command (strings, numbers, ids) cannot fail.
        let bytes = serde_json::to_vec(command).expect("commands serialize");
        let mut request = tonic::Request::new(SubmitRequest { command: bytes });
        request.set_timeout(timeout);
        let response = match tokio::time::timeout(timeout, client.submit(request)).await {
            Err(_elapsed) => {
                return Err(RemoteFailure::TimedOut(format!(
                    "Submit to controller {target} at {addr} took over {} ms",
                    timeout.as_millis()
                )))
            }
            Ok(Err(status)) => {
                self.drop_client(target);
                self.forget_leader(target);
                return Err(RemoteFailure::Unreachable(format!(
                    "Submit to controller {target} at {addr}: {status}"
                )));
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        decode_submit_response(response, target, |hint| {
            if hint >= 0 {
                self.note_leader(hint);
            } else {
                self.forget_leader(target);
            }
        })
        .inspect(|_| self.note_leader(target))
    }

    /// Serves a Submit RPC: commits the command if this node leads, else NOT_CONTROLLER.
    pub(crate) async fn handle_submit(&self, request: SubmitRequest) -> SubmitResponse {
        let not_controller = |leader: Option<i32>| SubmitResponse {
            error_code: code(ResponseError::NotController).into(),
            error_message: format!(
                "broker {} is not the active controller",
                self.config.node_id
            ),
            outcome: Vec::new(),
            log_index: 0,
            leader_hint: leader.unwrap_or(-1),
        };
        let command: Command = match serde_json::from_slice(&request.command) {
            Ok(command) => command,
            Err(e) => {
                return SubmitResponse {
                    error_code: code(ResponseError::InvalidRequest).into(),
                    error_message: format!("Submit carries no valid command: {e}"),
                    outcome: Vec::new(),
                    log_index: 0,
                    leader_hint: -1,
                }
            }
        };
        if !self.is_leader() {
            return not_controller(self.active_controller());
        }
        match self.write_local(command, LOCAL_WRITE_TIMEOUT).await {
            Ok((log_index, response)) => encode_submit_response(log_index, response),
            Err(WriteError::NotLeader(leader)) => not_controller(leader),
            Err(WriteError::Unavailable(why)) => SubmitResponse {
                error_code: code(ResponseError::RequestTimedOut).into(),
                error_message: why,
                outcome: Vec::new(),
                log_index: 0,
                leader_hint: -1,
            },
        }
    }

    fn note_registration(&self, id: i32, incarnation: Uuid, log_index: u64) {
        if let Ok(mut duties) = self.duties.lock() {
            duties.registered_at.insert(id, (incarnation, log_index));
        }
    }

    /// Serves a BrokerHeartbeat (from the RPC or from this node's own broker lifecycle).
    pub(crate) async fn handle_heartbeat(
        &self,
        request: BrokerHeartbeatRequest,
    ) -> BrokerHeartbeatResponse {
        let answer = |error: Option<(ResponseError, String)>, fenced: bool, ready: bool| {
            let (error_code, error_message) =
                error.map_or((0, String::new()), |(e, m)| (code(e).into(), m));
            BrokerHeartbeatResponse {
                error_code,
                error_message,
                fenced,
                shutdown_ready: ready,
                leader_hint: self.active_controller().unwrap_or(-1),
            }
        };
        let id = request.broker_id;
        if !self.is_leader() {
            let message = format!(
                "broker {} is not the active controller",
                self.config.node_id
            );
            return answer(Some((ResponseError::NotController, message)), true, false);
        }
        let incarnation = match Uuid::parse_str(&request.incarnation) {
            Ok(incarnation) => incarnation,
            Err(e) => {
                let message = format!("incarnation {:?} is not a UUID: {e}", request.incarnation);
                return answer(Some((ResponseError::InvalidRequest, message)), true, false);
            }
        };
        let image = self.image_rx.borrow().1.clone();
        let Some(broker) = image.brokers.get(&id) else {
            let message = format!("broker {id} is not registered; register before heartbeating");
            return answer(
                Some((ResponseError::BrokerIdNotRegistered, message)),
                true,
                false,
            );
        };
        if broker.incarnation != incarnation {
            let message = format!(
                "broker {id} is registered with incarnation {}, not {incarnation}; register again",
                broker.incarnation
            );
            return answer(
                Some((ResponseError::StaleBrokerEpoch, message)),
                true,
                false,
            );
        }
        let (fenced, shutting_down) = (broker.fenced, broker.shutting_down);
        let caught_up = {
            let Ok(mut duties) = self.duties.lock() else {
                let message = "controller duty state lock poisoned".to_string();
                return answer(
                    Some((ResponseError::UnknownServerError, message)),
                    fenced,
                    false,
                );
            };
            duties.last_heartbeat_ms.insert(id, self.now_ms());
            match duties.registered_at.get(&id) {
                Some((registered, index)) if *registered == incarnation => {
                    request.metadata_offset >= *index
                }
                // Registered through an earlier leader: its registration call waited for its
                // own image to apply the registration before heartbeating.
                _ => true,
            }
        };

        if request.want_shutdown {
            if !shutting_down {
                if let Err(e) = self.duty_write(Command::ControlledShutdown { id }).await {
                    return answer(Some(e), fenced, false);
                }
                tracing::info!(broker = id, "controlled shutdown: moving leaderships away");
            }
            let image = self.image_rx.borrow().1.clone();
            let ready = !duties::leads_anything_movable(&image, id);
            let mut fenced = image.brokers.get(&id).is_none_or(|b| b.fenced);
            if ready && !fenced {
                // Out of every ISR at once, rather than after its session times out.
                if let Err(e) = self.duty_write(Command::FenceBroker { id }).await {
                    return answer(Some(e), fenced, false);
                }
                fenced = true;
                tracing::info!(broker = id, "controlled shutdown complete");
            }
            return answer(None, fenced, ready);
        }

        if fenced && !shutting_down && caught_up {
            if let Err(e) = self.duty_write(Command::UnfenceBroker { id }).await {
                return answer(Some(e), true, false);
            }
            tracing::info!(broker = id, "broker unfenced");
            return answer(None, false, false);
        }
        answer(None, fenced, false)
    }

    /// A write made by the active controller for its duties; errors as a Kafka code.
    async fn duty_write(&self, command: Command) -> Result<Outcome, (ResponseError, String)> {
        match self.write_local(command.clone(), LOCAL_WRITE_TIMEOUT).await {
            Ok((_, Ok(outcome))) => Ok(outcome),
            Ok((_, Err(refused))) => {
                tracing::warn!(command = ?command, "controller duty command refused: {refused}");
                Err((ResponseError::UnknownServerError, refused.message))
            }
            Err(WriteError::NotLeader(_)) => Err((
                ResponseError::NotController,
                format!("broker {} lost the controller role", self.config.node_id),
            )),
            Err(WriteError::Unavailable(why)) => Err((ResponseError::RequestTimedOut, why)),
        }
    }

    /// Runs the active controller's duties whenever this voter leads.
    async fn run_duties(self: Arc<Self>) {
        let Some(raft) = self.raft.clone() else {
            return;
        };
        let mut metrics = raft.metrics();
        loop {
            while !self.is_leader() {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    changed = metrics.changed() => if changed.is_err() { return },
                }
            }
            tracing::info!(
                node_id = self.config.node_id,
                "this node is now the active controller"
            );
            self.lead(&mut metrics).await;
            if self.shutdown.is_cancelled() {
                return;
            }
            tracing::info!(
                node_id = self.config.node_id,
                "this node is no longer the active controller"
            );
        }
    }

    /// One leadership term's duties; returns when leadership is lost or on shutdown.
    async fn lead(&self, metrics: &mut watch::Receiver<openraft::RaftMetrics<u64, BasicNode>>) {
        let image = self.image_rx.borrow().1.clone();
        if let Ok(mut duties) = self.duties.lock() {
            let now = self.now_ms();
            duties.last_heartbeat_ms = image.brokers.keys().map(|&id| (id, now)).collect();
        }
        if image.cluster_id.is_empty() {
            // A brand-new cluster. If the image only lags, apply ignores the command.
            let cluster_id = super::new_cluster_id();
            match self
                .duty_write(Command::InitCluster {
                    cluster_id: cluster_id.clone(),
                })
                .await
            {
                Ok(_) => tracing::info!(%cluster_id, "initialized the cluster id"),
                Err((_, why)) => tracing::warn!("could not set the cluster id: {why}"),
            }
        }
        let mut fence_tick = tokio::time::interval(FENCE_CHECK_INTERVAL);
        fence_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let imbalance_ms = self.config.leader_imbalance_check_interval_ms;
        let mut imbalance_tick = tokio::time::interval(Duration::from_millis(imbalance_ms.max(1)));
        imbalance_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        imbalance_tick.reset();
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                changed = metrics.changed() => {
                    if changed.is_err() || !self.is_leader() {
                        return;
                    }
                }
                _ = fence_tick.tick() => self.fence_silent_brokers().await,
                _ = imbalance_tick.tick(), if imbalance_ms > 0 => self.elect_preferred_leaders().await,
            }
        }
    }

    async fn fence_silent_brokers(&self) {
        let image = self.image_rx.borrow().1.clone();
        let to_fence = match self.duties.lock() {
            Ok(duties) => duties::brokers_to_fence(
                &image,
                &duties.last_heartbeat_ms,
                self.now_ms(),
                self.config.broker_session_timeout_ms as i64,
            ),
            Err(_) => return,
        };
        for id in to_fence {
            tracing::warn!(
                broker = id,
                session_timeout_ms = self.config.broker_session_timeout_ms,
                "fencing a broker that stopped heartbeating"
            );
            if let Err((_, why)) = self.duty_write(Command::FenceBroker { id }).await {
                tracing::warn!(broker = id, "could not fence: {why}");
                return;
            }
        }
    }

    async fn elect_preferred_leaders(&self) {
        let image = self.image_rx.borrow().1.clone();
        let partitions = duties::preferred_leader_elections(&image);
        if partitions.is_empty() {
            return;
        }
        tracing::info!(
            count = partitions.len(),
            "moving leaderships back to preferred replicas"
        );
        let command = Command::ElectLeaders {
            partitions,
            preferred: true,
        };
        if let Err((_, why)) = self.duty_write(command).await {
            tracing::warn!("preferred leader election failed: {why}");
        }
    }

    /// One heartbeat to the active controller (a local call when this node leads).
    async fn heartbeat(
        &self,
        broker_id: i32,
        incarnation: Uuid,
        want_shutdown: bool,
    ) -> Result<BrokerHeartbeatResponse, String> {
        let request = BrokerHeartbeatRequest {
            broker_id,
            incarnation: incarnation.to_string(),
            metadata_offset: self.image_rx.borrow().0,
            want_shutdown,
        };
        if self.is_leader() {
            return Ok(self.handle_heartbeat(request).await);
        }
        let (target, addr) = self
            .pick_voter()
            .ok_or_else(|| "no voters are configured".to_string())?;
        let mut client = self.controller_client(target, &addr)?;
        let mut rpc = tonic::Request::new(request);
        rpc.set_timeout(RPC_TIMEOUT);
        let response = match tokio::time::timeout(RPC_TIMEOUT, client.broker_heartbeat(rpc)).await {
            Err(_elapsed) => {
                return Err(format!(
                    "heartbeat to controller {target} at {addr} timed out"
                ))
            }
            Ok(Err(status)) => {
                self.drop_client(target);
                self.forget_leader(target);
                return Err(format!(
                    "heartbeat to controller {target} at {addr}: {status}"
                ));
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        if response.error_code == i32::from(code(ResponseError::NotController)) {
            if response.leader_hint >= 0 {
                self.note_leader(response.leader_hint);
            } else {
                self.forget_leader(target);
            }
        } else {
            self.note_leader(target);
        }
        Ok(response)
    }

    /// Broker lifecycle, run by every broker (voter or not) as a background task until
    /// `shutdown`: registers `registration` (`Command::RegisterBroker`, retried until it
    /// succeeds), then heartbeats every `interval` to the active controller (BrokerHeartbeat
    /// RPC, or a local call when this node leads). Registers again if the controller no
    /// longer knows this incarnation. Returns when `shutdown` is cancelled.
    pub async fn run_broker_lifecycle(
        self: Arc<Self>,
        registration: BrokerRecord,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let id = registration.id;
        let incarnation = registration.incarnation;
        loop {
            let mut backoff = RETRY_BACKOFF_MIN;
            loop {
                let command = Command::RegisterBroker {
                    broker: registration.clone(),
                };
                let result = tokio::select! {
                    () = shutdown.cancelled() => return,
                    result = self.submit(command, RPC_TIMEOUT) => result,
                };
                match result {
                    Ok(_) => {
                        tracing::info!(broker = id, %incarnation, "registered with the controller");
                        self.renew_broker_lease();
                        break;
                    }
                    Err(e) => tracing::warn!(broker = id, "registration failed, retrying: {e}"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }

            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let result = tokio::select! {
                    () = shutdown.cancelled() => return,
                    result = self.heartbeat(id, incarnation, false) => result,
                };
                match result {
                    Ok(r) if r.error_code == 0 => self.renew_broker_lease(),
                    Ok(r)
                        if r.error_code
                            == i32::from(code(ResponseError::BrokerIdNotRegistered))
                            || r.error_code == i32::from(code(ResponseError::StaleBrokerEpoch)) =>
                    {
                        tracing::warn!(
                            broker = id,
                            "controller asks to register again: {}",
                            r.error_message
                        );
                        break;
                    }
                    Ok(r) => tracing::debug!(
                        broker = id,
                        code = r.error_code,
                        "heartbeat refused: {}",
                        r.error_message
                    ),
                    Err(e) => tracing::debug!(broker = id, "heartbeat failed: {e}"),
                }
            }
        }
    }

    fn renew_broker_lease(&self) {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        self.broker_lease_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Whether this node's broker has gone longer than `session_timeout` without a
    /// heartbeat accepted by the active controller. The controller fences a broker that
    /// quiet for that long and elects new leaders for its partitions, so a broker whose lease
    /// lapsed is, or is about to be, a stale leader: it stops acting as one for clients (see
    /// the Produce, Metadata and InitProducerId handlers) until a heartbeat gets through.
    /// False before the first registration.
    pub fn broker_lease_lapsed(&self, session_timeout: Duration) -> bool {
        let last = self.broker_lease_ms.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let now = self.started.elapsed().as_millis() as u64 + 1;
        now.saturating_sub(last) > session_timeout.as_millis() as u64
    }

    /// Controlled shutdown: heartbeats with want_shutdown=true until the controller answers
    /// shutdown_ready (it has moved leaderships away) or `timeout`; returns whether it
    /// completed.
    pub async fn controlled_shutdown(
        &self,
        broker_id: i32,
        incarnation: Uuid,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                tracing::warn!(
                    broker = broker_id,
                    "controlled shutdown did not complete in time"
                );
                return false;
            }
            match tokio::time::timeout(remaining, self.heartbeat(broker_id, incarnation, true))
                .await
            {
                Ok(Ok(r)) if r.error_code == 0 && r.shutdown_ready => return true,
                Ok(Ok(r)) if r.error_code != 0 => {
                    tracing::debug!(
                        broker = broker_id,
                        "controlled shutdown heartbeat refused: {}",
                        r.error_message
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(
                    broker = broker_id,
                    "controlled shutdown heartbeat failed: {e}"
                ),
                Err(_elapsed) => return false,
            }
            let pause =
                Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }

    /// A stream of this node's committed image for `WatchMetadata`: the current image when
    /// it is newer than `after_index`, then every change, until the receiver goes away or
    /// the node shuts down.
    pub(crate) fn watch_stream(
        &self,
        after_index: u64,
    ) -> mpsc::Receiver<Result<MetadataImageMessage, tonic::Status>> {
        let (tx, rx) = mpsc::channel(WATCH_STREAM_BUFFER);
        let mut images = self.image_rx.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let mut sent = after_index;
            loop {
                let (index, image) = images.borrow_and_update().clone();
                if index > sent {
                    // Serializing the image cannot fail (plain data, string keys).
                    let bytes = serde_json::to_vec(&*image).expect("metadata image serializes");
                    let message = MetadataImageMessage {
                        log_index: index,
                        image: bytes,
                    };
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        sent_ok = tx.send(Ok(message)) => if sent_ok.is_err() { return },
                    }
                    sent = index;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    changed = images.changed() => if changed.is_err() { return },
                }
            }
        });
        rx
    }

    /// On a non-voter: follows the committed image from the voters' `WatchMetadata`,
    /// moving on to the next voter (with backoff) whenever a stream fails or ends.
    async fn follow_metadata(self: Arc<Self>) {
        let voters: Vec<(i32, String)> = self
            .config
            .voters
            .iter()
            .map(|(&id, a)| (id, a.clone()))
            .collect();
        let mut backoff = RETRY_BACKOFF_MIN;
        for (id, addr) in voters.iter().cycle() {
            if self.shutdown.is_cancelled() {
                return;
            }
            match self.follow_voter(*id, addr).await {
                Ok(true) => backoff = RETRY_BACKOFF_MIN,
                Ok(false) => {}
                Err(e) => tracing::debug!(voter = id, "metadata stream failed: {e}"),
            }
            if self.shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(WATCH_BACKOFF_MAX);
        }
    }

    /// Streams images from one voter until the stream ends, fails or the node shuts down;
    /// returns whether any image arrived.
    async fn follow_voter(&self, id: i32, addr: &str) -> Result<bool, String> {
        let mut client = self.controller_client(id, addr)?;
        let after_index = self.image_rx.borrow().0;
        let call = client.watch_metadata(WatchMetadataRequest { after_index });
        let mut stream = tokio::select! {
            () = self.shutdown.cancelled() => return Ok(false),
            response = tokio::time::timeout(RPC_TIMEOUT, call) => match response {
                Err(_elapsed) => return Err(format!("WatchMetadata to voter {id} at {addr} timed out")),
                Ok(Err(status)) => {
                    self.drop_client(id);
                    return Err(format!("WatchMetadata to voter {id} at {addr}: {status}"));
                }
                Ok(Ok(response)) => response.into_inner(),
            },
        };
        let mut received = false;
        loop {
            let message = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(received),
                message = stream.message() => message,
            };
            match message {
                Ok(Some(message)) => {
                    let image: MetadataImage =
                        serde_json::from_slice(&message.image).map_err(|e| {
                            format!("voter {id} sent an image that does not decode: {e}")
                        })?;
                    received = true;
                    self.image_tx.send_if_modified(|current| {
                        if message.log_index > current.0 {
                            *current = (message.log_index, Arc::new(image));
                            true
                        } else {
                            false
                        }
                    });
                }
                Ok(None) => return Ok(received),
                Err(status) => {
                    self.drop_client(id);
                    return Err(format!("WatchMetadata from voter {id} at {addr}: {status}"));
                }
            }
        }
    }

    /// Stops the node: background tasks end and Raft stops cleanly. The gRPC services
    /// answer errors afterwards; the broker stops its server separately.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Some(raft) = &self.raft {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(
                    node_id = self.config.node_id,
                    "Raft did not stop cleanly: {e}"
                );
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
        tracing::info!(node_id = self.config.node_id, "controller node stopped");
    }
}

/// Why a remote Submit did not commit.
#[derive(Debug)]
enum RemoteFailure {
    /// The voter asked is not the active controller (or none is known).
    NotController(String),
    /// The voter could not be reached.
    Unreachable(String),
    /// The active controller was reached but did not answer in time.
    TimedOut(String),
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::InitCluster { .. } => "InitCluster",
        Command::RegisterBroker { .. } => "RegisterBroker",
        Command::FenceBroker { .. } => "FenceBroker",
        Command::UnfenceBroker { .. } => "UnfenceBroker",
        Command::ControlledShutdown { .. } => "ControlledShutdown",
        Command::UnregisterBroker { .. } => "UnregisterBroker",
        Command::CreateTopic { .. } => "CreateTopic",
        Command::DeleteTopic { .. } => "DeleteTopic",
        Command::CreatePartitions { .. } => "CreatePartitions",
        Command::SetTopicConfigs { .. } => "SetTopicConfigs",
        Command::AlterPartition { .. } => "AlterPartition",
        Command::ElectLeaders { .. } => "ElectLeaders",
        Command::Reassign { .. } => "Reassign",
        Command::AllocateProducerIds { .. } => "AllocateProducerIds",
    }
}

fn encode_submit_response(log_index: u64, response: Response) -> SubmitResponse {
    match response {
        Ok(outcome) => SubmitResponse {
            error_code: 0,
            error_message: String::new(),
            // Serializing an outcome (numbers, a UUID) cannot fail.
            outcome: serde_json::to_vec(&outcome).expect("outcomes serialize"),
            log_index,
            leader_hint: -1,
        },
        Err(refused) => SubmitResponse {
            error_code: refused.code.into(),
            error_message: refused.message,
            outcome: Vec::new(),
            log_index,
            leader_hint: -1,
        },
    }
}

/// Reads a Submit answer: committed (with what apply said) or NOT_CONTROLLER.
fn decode_submit_response(
    response: SubmitResponse,
    target: i32,
    on_not_controller: impl FnOnce(i32),
) -> Result<(u64, Response), RemoteFailure> {
    let not_controller = i32::from(code(ResponseError::NotController));
    let timed_out = i32::from(code(ResponseError::RequestTimedOut));
    match response.error_code {
        0 => {
            let outcome: Outcome = serde_json::from_slice(&response.outcome).map_err(|e| {
                RemoteFailure::Unreachable(format!(
                    "controller {target} sent an outcome that does not decode: {e}"
                ))
            })?;
            Ok((response.log_index, Ok(outcome)))
        }
        c if c == not_controller => {
            on_not_controller(response.leader_hint);
            Err(RemoteFailure::NotController(format!(
                "broker {target} is not the active controller (hint: {})",
                response.leader_hint
            )))
        }
        // Not committed: the controller could not reach its quorum in time.
        c if c == timed_out && response.log_index == 0 => Err(RemoteFailure::TimedOut(format!(
            "controller {target}: {}",
            response.error_message
        ))),
        c => Ok((
            response.log_index,
            Err(CommandError {
                code: i16::try_from(c).unwrap_or(code(ResponseError::UnknownServerError)),
                message: response.error_message,
            }),
        )),
    }
}

#[cfg(test)]
#[path = "node_test.rs"]
mod tests;
