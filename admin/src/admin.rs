//! [`Admin`]: the shared admin client. It owns a pool of [`Connection`]s, learns the
//! brokers from Metadata and routes each request to the broker that can answer it.
//!
//! ```text
//!                      ┌─ Route::Any ─────────▶ the last broker that answered, then the
//!                      │                        others, then the bootstrap list
//! Admin::method ─▶ ────┼─ Route::Broker(id) ──▶ the broker's advertised address
//!                      └─ Route::Coordinator ─▶ FindCoordinator(group), cached
//!                                │
//!                  pool: address ─▶ Arc<tokio Mutex<Option<Connection>>>
//! ```
//!
//! Tributary, like Kafka in KRaft mode, forwards controller requests (CreateTopics,
//! AlterPartitionReassignments, ...) to the active controller itself, so those go to any
//! broker. ListOffsets must reach each partition's leader and group requests the group's
//! coordinator.
//!
//! Two kinds of retry, both bounded:
//! - A request that loses its connection (an I/O error: the broker went away or closed an
//!   idle connection) is sent once more, on another broker or a new connection. A timeout
//!   is not retried: the request may still be carried out.
//! - A response that says the route moved (`NOT_COORDINATOR`, `NOT_LEADER_OR_FOLLOWER`,
//!   `COORDINATOR_LOAD_IN_PROGRESS`, ...) is retried with a refreshed route, with backoff,
//!   at most [`MAX_ROUTE_ATTEMPTS`] times and within one request timeout.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::protocol::Request;
use tokio::time::Instant;

use crate::connection::{api_key, Connection, DEFAULT_REQUEST_TIMEOUT};
use crate::error::{Error, Result};
use crate::protocol::{code, topic_name};

/// How often a request whose route moved is tried, the first attempt included.
pub const MAX_ROUTE_ATTEMPTS: u32 = 20;
/// The first wait before a retry with a refreshed route; it doubles up to
/// [`MAX_ROUTE_BACKOFF`].
const INITIAL_ROUTE_BACKOFF: Duration = Duration::from_millis(50);
const MAX_ROUTE_BACKOFF: Duration = Duration::from_millis(500);
/// Connections kept at most; addresses no longer in Metadata are dropped past this.
const MAX_POOLED_CONNECTIONS: usize = 1024;
/// Coordinators remembered at most; the cache starts over past this.
const MAX_CACHED_COORDINATORS: usize = 4096;

/// How an [`Admin`] identifies itself and how long it waits.
#[derive(Clone, Debug)]
pub struct AdminOptions {
    /// The `client_id` of every request header; brokers log it and quotas key on it.
    pub client_id: String,
    /// Bounds every request (write and response), each connect and each retry loop.
    /// Requests that carry a server-side timeout (CreateTopics, ElectLeaders, ...) send
    /// four fifths of it, so that the broker answers before the client gives up.
    pub request_timeout: Duration,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions {
            client_id: "tributary-admin".to_string(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// The admin client. Cheap to clone (an `Arc` inside) and safe to share between tokio
/// tasks; requests to one broker take turns on its connection, requests to different
/// brokers run in parallel.
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

struct Inner {
    /// The bootstrap list, in the order given.
    bootstrap: Vec<String>,
    options: AdminOptions,
    /// What the client has learned. A std mutex: it is held for map lookups only, never
    /// across an `.await`.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// broker id → `host:port`, from the latest Metadata response that listed brokers.
    brokers: BTreeMap<i32, String>,
    /// The address that answered the last request routed to any broker; tried first next
    /// time, so that one connection serves them all.
    preferred: Option<String>,
    /// group id → its coordinator's address, from FindCoordinator.
    coordinators: HashMap<String, String>,
    /// address → its connection. The slot's tokio mutex is held for a whole request, which
    /// is what keeps one request in flight per connection; `None` until connected or after
    /// a failure broke the connection.
    pool: HashMap<String, Slot>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// A request as a route sends it: built already, or built for the negotiated version (for
/// requests whose shape changed between versions, such as FindCoordinator v4 batching its
/// keys).
pub(crate) enum Req<'a, R> {
    Ready(&'a R),
    /// Fails for a version the request cannot be expressed in.
    Versioned(&'a (dyn Fn(i16) -> Result<R> + Send + Sync)),
}

impl<R> Clone for Req<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Req<'_, R> {}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("bootstrap", &self.inner.bootstrap)
            .field("client_id", &self.inner.options.client_id)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Connects to the first reachable broker of `bootstrap` (`host:port,host:port`), with
    /// [`AdminOptions::default`].
    pub async fn connect(bootstrap: &str) -> Result<Admin> {
        Admin::connect_with(bootstrap, AdminOptions::default()).await
    }

    /// Connects to the first reachable broker of `bootstrap`, trying them in order; fails
    /// with the last broker's error when none is reachable, or [`Error::NoBrokers`] for an
    /// empty list.
    pub async fn connect_with(bootstrap: &str, options: AdminOptions) -> Result<Admin> {
        let bootstrap: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let admin = Admin {
            inner: Arc::new(Inner {
                bootstrap,
                options,
                state: Mutex::new(State::default()),
            }),
        };
        let mut last_error = Error::NoBrokers;
        for addr in &admin.inner.bootstrap {
            match admin.connected(addr).await {
                Ok(()) => {
                    admin.state().preferred = Some(addr.clone());
                    return Ok(admin);
                }
                Err(e) => {
                    tracing::debug!(addr, error = %e, "bootstrap broker unreachable");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// The options this client was made with.
    pub fn options(&self) -> &AdminOptions {
        &self.inner.options
    }

    /// Sends `req` to any live broker, at the highest version both sides know; returns the
    /// response and that version. The escape hatch for requests this client has no method
    /// for. Kafka error codes in the response are the caller's to check.
    pub async fn send_to_any<R: Request>(&self, req: R) -> Result<(R::Response, i16)> {
        self.call_any(Req::Ready(&req)).await
    }

    /// Sends `req` to broker `id`, like [`Admin::send_to_any`].
    pub async fn send_to_broker<R: Request>(&self, id: i32, req: R) -> Result<(R::Response, i16)> {
        self.call_broker(id, Req::Ready(&req)).await
    }

    /// The brokers learned from Metadata so far: id → `host:port`.
    pub fn known_brokers(&self) -> BTreeMap<i32, String> {
        self.state().brokers.clone()
    }

    // -----------------------------------------------------------------------------------
    // Routes
    // -----------------------------------------------------------------------------------

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a set of caches that every update leaves consistent, so a panic
        // elsewhere while it was held does not make it unusable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool slot of `addr`, made on first use.
    fn slot(&self, addr: &str) -> Slot {
        let mut state = self.state();
        if let Some(slot) = state.pool.get(addr) {
            return slot.clone();
        }
        if state.pool.len() >= MAX_POOLED_CONNECTIONS {
            // Keep the addresses still in use; brokers that left take their connections
            // with them.
            let State {
                pool,
                brokers,
                coordinators,
                ..
            } = &mut *state;
            pool.retain(|a, _| {
                self.inner.bootstrap.contains(a)
                    || brokers.values().any(|b| b == a)
                    || coordinators.values().any(|c| c == a)
            });
        }
        state.pool.entry(addr.to_string()).or_default().clone()
    }

    /// Makes sure `addr` has a working connection.
    async fn connected(&self, addr: &str) -> Result<()> {
        let slot = self.slot(addr);
        let mut guard = slot.lock().await;
        if guard.as_ref().is_none_or(Connection::is_broken) {
            *guard = Some(self.open(addr).await?);
        }
        Ok(())
    }

    async fn open(&self, addr: &str) -> Result<Connection> {
        let options = &self.inner.options;
        Connection::connect_with(addr, &options.client_id, options.request_timeout).await
    }

    /// Sends `req` on the connection to `addr`, connecting first if there is none. A
    /// failure that breaks the connection drops it, so the next request reconnects.
    async fn call_addr<R: Request>(
        &self,
        addr: &str,
        req: Req<'_, R>,
    ) -> Result<(R::Response, i16)> {
        let slot = self.slot(addr);
        let mut guard = slot.lock().await;
        let connection = match &mut *guard {
            Some(connection) if !connection.is_broken() => connection,
            slot => slot.insert(self.open(addr).await?),
        };
        let version = connection.version(api_key::<R>())?;
        let result = match req {
            Req::Ready(request) => connection.send_at(request, version).await,
            Req::Versioned(build) => match build(version) {
                Ok(request) => connection.send_at(&request, version).await,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = &result {
            if e.breaks_connection() {
                *guard = None;
            }
        }
        result.map(|response| (response, version))
    }

    /// Sends `req` to any broker: the preferred one first. A broker that cannot be reached
    /// is skipped (nothing was sent to it); a lost connection is retried once, on the next
    /// broker or, with only one, on a new connection.
    pub(crate) async fn call_any<R: Request>(&self, req: Req<'_, R>) -> Result<(R::Response, i16)> {
        let candidates = {
            let state = self.state();
            any_candidates(
                state.preferred.as_deref(),
                &state.brokers,
                &self.inner.bootstrap,
            )
        };
        let mut last_error = Error::NoBrokers;
        let mut lost_retried = false;
        let mut i = 0;
        while let Some(addr) = candidates.get(i) {
            match self.call_addr(addr, req).await {
                Ok(answer) => {
                    self.state().preferred = Some(addr.clone());
                    return Ok(answer);
                }
                Err(e @ (Error::Connect { .. } | Error::Resolve { .. })) => {
                    tracing::debug!(addr, error = %e, "broker unreachable; trying the next");
                    last_error = e;
                    i += 1;
                }
                Err(e @ Error::Io { .. }) if !lost_retried => {
                    tracing::debug!(addr, error = %e, "connection lost; retrying once");
                    lost_retried = true;
                    last_error = e;
                    // The last candidate is retried on a new connection.
                    if i + 1 < candidates.len() {
                        i += 1;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error)
    }

    /// Sends `req` to broker `id` (from Metadata), retrying once on a new connection if
    /// the connection is lost.
    pub(crate) async fn call_broker<R: Request>(
        &self,
        id: i32,
        req: Req<'_, R>,
    ) -> Result<(R::Response, i16)> {
        let addr = self.broker_addr(id).await?;
        match self.call_addr(&addr, req).await {
            Err(e @ Error::Io { .. }) => {
                tracing::debug!(addr, error = %e, "connection lost; retrying once");
                self.call_addr(&addr, req).await
            }
            other => other,
        }
    }

    /// Sends `req` to `group_id`'s coordinator. A lost connection forgets the coordinator
    /// and retries once on the one FindCoordinator names then.
    pub(crate) async fn call_coordinator<R: Request>(
        &self,
        group_id: &str,
        req: Req<'_, R>,
    ) -> Result<(R::Response, i16)> {
        let addr = self.coordinator(group_id).await?;
        match self.call_addr(&addr, req).await {
            Err(e) if e.is_connection_loss() => {
                tracing::debug!(addr, error = %e, "coordinator lost; looking it up again");
                self.forget_coordinator(group_id);
                let addr = self.coordinator(group_id).await?;
                self.call_addr(&addr, req).await
            }
            other => other,
        }
    }

    /// The address of broker `id`, refreshing Metadata once if it is not known.
    async fn broker_addr(&self, id: i32) -> Result<String> {
        if let Some(addr) = self.state().brokers.get(&id) {
            return Ok(addr.clone());
        }
        self.metadata(Some(&[])).await?;
        self.state()
            .brokers
            .get(&id)
            .cloned()
            .ok_or(Error::UnknownBroker { id })
    }

    /// The address of `group_id`'s coordinator, from the cache or FindCoordinator.
    async fn coordinator(&self, group_id: &str) -> Result<String> {
        if let Some(addr) = self.state().coordinators.get(group_id) {
            return Ok(addr.clone());
        }
        let key = crate::protocol::str_bytes(group_id);
        let build = move |version: i16| {
            use kafka_protocol::messages::FindCoordinatorRequest;
            // v4 batches keys in `coordinator_keys`; earlier versions have the single
            // `key`. Key type 0 is a group.
            Ok(if version >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![key.clone()])
            } else {
                FindCoordinatorRequest::default().with_key(key.clone())
            })
        };
        let (response, version) = self.call_any(Req::Versioned(&build)).await?;
        let (error_code, error_message, node_id, host, port) =
            if version >= 4 {
                let c = response.coordinators.into_iter().next().ok_or_else(|| {
                    Error::MissingResult {
                        operation: "FindCoordinator",
                        resource: group_id.to_string(),
                    }
                })?;
                (c.error_code, c.error_message, c.node_id, c.host, c.port)
            } else {
                (
                    response.error_code,
                    response.error_message,
                    response.node_id,
                    response.host,
                    response.port,
                )
            };
        crate::error::check(
            "FindCoordinator",
            Some(group_id),
            error_code,
            error_message.as_deref(),
        )?;
        let addr = format!("{}:{port}", host.as_str());
        let mut state = self.state();
        if state.coordinators.len() >= MAX_CACHED_COORDINATORS {
            state.coordinators.clear();
        }
        state
            .coordinators
            .insert(group_id.to_string(), addr.clone());
        state
            .brokers
            .entry(node_id.0)
            .or_insert_with(|| addr.clone());
        Ok(addr)
    }

    pub(crate) fn forget_coordinator(&self, group_id: &str) {
        self.state().coordinators.remove(group_id);
    }

    /// Metadata of `topics` (`None`: every topic; `Some(&[])`: brokers only), never
    /// creating a topic. Learns the brokers it lists.
    pub(crate) async fn metadata(&self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|topics| {
                topics
                    .iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let (response, _) = self.call_any(Req::Ready(&request)).await?;
        if !response.brokers.is_empty() {
            self.state().brokers = response
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                .collect();
        }
        Ok(response)
    }

    /// A bounded retry budget for one call: [`MAX_ROUTE_ATTEMPTS`] within one request
    /// timeout.
    pub(crate) fn route_retry(&self) -> RouteRetry {
        RouteRetry {
            deadline: Instant::now() + self.inner.options.request_timeout,
            attempts: 1,
            backoff: INITIAL_ROUTE_BACKOFF,
        }
    }

    /// Runs `attempt` until it succeeds or fails with an error that is not a moved route
    /// (see [`is_route_error`]), within a [`RouteRetry`] budget.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retry = self.route_retry();
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) if is_route_error(&e) => retry.wait(e).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// The `timeout_ms` sent with requests the broker may take a while over: four fifths
    /// of the request timeout, so the broker's answer arrives before the client gives up.
    pub(crate) fn server_timeout_ms(&self) -> i32 {
        let ms = self.inner.options.request_timeout.as_millis() * 4 / 5;
        i32::try_from(ms).unwrap_or(i32::MAX).max(1)
    }

    /// Every broker listed by the latest Metadata, refreshed now.
    pub(crate) async fn refreshed_brokers(&self) -> Result<BTreeMap<i32, String>> {
        self.metadata(Some(&[])).await?;
        Ok(self.known_brokers())
    }

    #[cfg(test)]
    pub(crate) fn for_tests(bootstrap: &[&str]) -> Admin {
        Admin {
            inner: Arc::new(Inner {
                bootstrap: bootstrap.iter().map(|s| s.to_string()).collect(),
                options: AdminOptions::default(),
                state: Mutex::new(State::default()),
            }),
        }
    }
}

/// The order in which a request for any broker tries addresses: the one that answered
/// last, then every broker Metadata listed (by id), then the bootstrap list; each once.
pub(crate) fn any_candidates(
    preferred: Option<&str>,
    brokers: &BTreeMap<i32, String>,
    bootstrap: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let all = preferred
        .into_iter()
        .chain(brokers.values().map(String::as_str))
        .chain(bootstrap.iter().map(String::as_str));
    for addr in all {
        if !out.iter().any(|a| a == addr) {
            out.push(addr.to_string());
        }
    }
    out
}

/// Kafka error codes that say the request went to the wrong broker or came too early, and
/// that a retry with a refreshed route can fix.
pub(crate) fn is_route_error(error: &Error) -> bool {
    matches!(
        error.kafka_code(),
        Some(
            code::LEADER_NOT_AVAILABLE
                | code::NOT_LEADER_OR_FOLLOWER
                | code::COORDINATOR_LOAD_IN_PROGRESS
                | code::COORDINATOR_NOT_AVAILABLE
                | code::NOT_COORDINATOR
                | code::NOT_CONTROLLER
                | code::FENCED_LEADER_EPOCH
                | code::UNKNOWN_LEADER_EPOCH
        )
    )
}

/// The retry budget of one call whose route moved: attempts, backoff and a deadline.
pub(crate) struct RouteRetry {
    deadline: Instant,
    /// Attempts made so far.
    attempts: u32,
    /// The wait before the next attempt.
    backoff: Duration,
}

impl RouteRetry {
    /// Waits before the next attempt after `error`, or returns `error` when the budget is
    /// spent.
    pub(crate) async fn wait(&mut self, error: Error) -> Result<()> {
        if self.attempts >= MAX_ROUTE_ATTEMPTS || Instant::now() + self.backoff > self.deadline {
            return Err(error);
        }
        tracing::debug!(error = %error, attempt = self.attempts, "retrying on a refreshed route");
        tokio::time::sleep(self.backoff).await;
        self.attempts += 1;
        self.backoff = (self.backoff * 2).min(MAX_ROUTE_BACKOFF);
        Ok(())
    }
}

/// Asserts at compile time that [`Admin`] can be shared between tasks.
const _: () = {
    const fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Admin>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(list: &[(i32, &str)]) -> BTreeMap<i32, String> {
        list.iter().map(|(id, a)| (*id, a.to_string())).collect()
    }

    #[test]
    fn any_route_tries_the_last_good_broker_then_metadata_then_bootstrap() {
        let bootstrap = vec!["b:1".to_string(), "a:1".to_string()];
        assert_eq!(
            any_candidates(None, &BTreeMap::new(), &bootstrap),
            ["b:1", "a:1"]
        );
        let known = brokers(&[(2, "c:1"), (0, "a:1"), (1, "d:1")]);
        assert_eq!(
            any_candidates(Some("d:1"), &known, &bootstrap),
            ["d:1", "a:1", "c:1", "b:1"]
        );
        assert!(any_candidates(None, &BTreeMap::new(), &[]).is_empty());
    }

    #[test]
    fn only_moved_routes_are_retried_with_a_refreshed_route() {
        let kafka = |code| Error::kafka("Op", None, code, None);
        for code in [5, 6, 14, 15, 16, 41, 74, 75] {
            assert!(is_route_error(&kafka(code)), "code {code}");
        }
        // Retriable for Kafka, but not a matter of routing: a retry meets the same answer
        // or, for a timeout, may apply a request twice.
        for code in [3, 7, 25, 27, 36] {
            assert!(!is_route_error(&kafka(code)), "code {code}");
        }
        assert!(!is_route_error(&Error::NoBrokers));
    }

    #[tokio::test(start_paused = true)]
    async fn route_retries_are_bounded_by_the_request_timeout() {
        let admin = Admin::for_tests(&["127.0.0.1:1"]);
        let mut retry = admin.route_retry();
        let started = Instant::now();
        let mut attempts = 1;
        while retry.wait(Error::kafka("Op", None, 16, None)).await.is_ok() {
            attempts += 1;
        }
        assert!(attempts > 5 && attempts <= MAX_ROUTE_ATTEMPTS, "{attempts}");
        assert!(started.elapsed() <= DEFAULT_REQUEST_TIMEOUT);
    }

    /// Every method's future can run on a multi-threaded runtime (`tokio::spawn`, kube-rs
    /// reconcilers); checked at compile time, nothing is awaited.
    #[test]
    fn method_futures_are_send() {
        fn send<T: Send>(_: T) {}
        let admin = Admin::for_tests(&[]);
        let tps = [crate::TopicPartition::new("t", 0)];
        let names = ["t".to_string()];
        send(admin.describe_cluster());
        send(admin.describe_topics(Some(&names)));
        send(admin.describe_topic("t"));
        send(admin.create_topic(&crate::NewTopic::new("t", 1, 1)));
        send(admin.create_topic_validate_only(&crate::NewTopic::new("t", 1, 1)));
        send(admin.create_partitions("t", 2));
        send(admin.delete_topic("t"));
        send(admin.describe_topic_configs("t"));
        send(admin.alter_topic_configs("t", &[]));
        send(admin.alter_partition_reassignments(&[]));
        send(admin.list_partition_reassignments());
        send(admin.list_partition_reassignments_of(&tps));
        send(admin.elect_preferred_leaders(Some(&tps)));
        send(admin.list_offsets(&tps, crate::OffsetSpec::Latest));
        send(admin.list_groups());
        send(admin.describe_group("g"));
        send(admin.group_offsets("g"));
        send(admin.alter_group_offsets("g", &BTreeMap::new()));
        send(admin.delete_group("g"));
        send(admin.send_to_any(MetadataRequest::default()));
    }

    #[test]
    fn server_timeout_is_four_fifths_of_the_request_timeout() {
        assert_eq!(Admin::for_tests(&[]).server_timeout_ms(), 8_000);
    }

    #[tokio::test]
    async fn an_empty_bootstrap_list_has_no_brokers() {
        assert!(matches!(Admin::connect(" , ").await, Err(Error::NoBrokers)));
    }
}
