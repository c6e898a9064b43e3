//! Broker metrics, in Prometheus text format: every metric name and help text lives here.
//!
//! ```text
//! hot path: counted as it happens                  scrape: computed on GET /metrics
//! serve_connection ─ record_request ─┐              StateCollector (blocking pool)
//!   per API key: requests, errors,   │                ├─ ReplicaManager: its metadata image
//!   latency histogram                ├─> Registry <───┤    (offline partitions) and hosted
//! Produce ─ TopicMetrics: bytes and  │  ("tributary_" │    partitions (leaders, under-
//!   messages in (leader append)      │   prefix)      │    replicated, log sizes)
//! Fetch ─── TopicMetrics: bytes out  │                ├─ GroupCoordinator: groups by state
//! ISR change committed ─ isr_* ──────┘                └─ the active controller's id
//! ```
//!
//! The counters the request path bumps are created before the first request and their
//! handles kept where the path already looks ([`BrokerMetrics::record_request`] indexes
//! them by API key, [`crate::server::replica_manager::TopicState::metrics`] holds the
//! topic's), so recording one request is a few atomic adds and one histogram update, with
//! no label set built and no map looked up. Everything that derives from state (partition
//! counts, log sizes, groups, the controller) is read at scrape time instead of kept up to
//! date by every change: it costs nothing between scrapes and cannot drift from the state.
//!
//! Names follow Kafka's JMX metrics where one exists (`BytesInPerSec` ->
//! `tributary_topic_bytes_in_total`, `UnderReplicatedPartitions` ->
//! `tributary_under_replicated_partitions`), in Prometheus form: snake case, units last,
//! `_total` on counters. The HTTP side is [`crate::server::http`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ResponseKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::controller::NO_LEADER;
use crate::group::coordinator::GroupCoordinator;
use crate::group::membership::GroupState;
use crate::server::replica_manager::{ReplicaManager, Role};

/// Every metric name starts with this and an underscore.
pub const PREFIX: &str = "tributary";

/// `Content-Type` of [`encode`]'s output: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the request latency buckets, in seconds: from a quarter of a
/// millisecond (a Metadata answer from memory) to 10 s (a fetch long-poll, an acks=all
/// write waiting out its timeout).
const LATENCY_BUCKETS_SECONDS: [f64; 15] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_SECONDS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    /// The API's name as Kafka's protocol guide spells it: `Produce`, `Fetch`, ...
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

/// One API key's series, created up front for every key the broker serves.
#[derive(Debug)]
struct ApiMetrics {
    requests: Counter,
    errors: Counter,
    duration: Histogram,
}

/// One topic's traffic counters on this broker. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct TopicMetrics {
    /// Bytes of record batches appended as the leader (Kafka's `BytesInPerSec`).
    pub bytes_in: Counter,
    /// Records appended as the leader (`MessagesInPerSec`).
    pub messages_in: Counter,
    /// Bytes of record batches sent to consumers (`BytesOutPerSec`).
    pub bytes_out: Counter,
}

impl TopicMetrics {
    /// Counts one successful leader append of `bytes` bytes holding `records` records.
    pub fn appended(&self, bytes: usize, records: u64) {
        self.bytes_in.inc_by(bytes as u64);
        self.messages_in.inc_by(records);
    }
}

/// The metrics recorded as things happen. One per broker, owned by the
/// [`ReplicaManager`] (as Kafka's `ReplicaManager` owns its ISR and topic meters), so the
/// request handlers, the replication service and the ISR monitor all reach it.
#[derive(Debug)]
pub struct BrokerMetrics {
    requests: Family<ApiLabel, Counter>,
    request_errors: Family<ApiLabel, Counter>,
    request_duration: Family<ApiLabel, Histogram, fn() -> Histogram>,
    /// Handles into the three families above, by API key (`ApiKey as i16`); `None` for
    /// keys the broker does not serve.
    apis: Vec<Option<ApiMetrics>>,
    topic_bytes_in: Family<TopicLabel, Counter>,
    topic_messages_in: Family<TopicLabel, Counter>,
    topic_bytes_out: Family<TopicLabel, Counter>,
    /// The topics with series in the three topic families: those with a partition on this
    /// broker, so the series of a deleted or moved-away topic goes with it.
    topics: Mutex<HashSet<String>>,
    /// ISR shrinks and expansions this broker proposed as a leader and the controller
    /// committed (Kafka's `IsrShrinksPerSec`, `IsrExpandsPerSec`).
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics::new()
    }
}

impl BrokerMetrics {
    pub fn new() -> BrokerMetrics {
        let requests = Family::<ApiLabel, Counter>::default();
        let request_errors = Family::<ApiLabel, Counter>::default();
        let request_duration =
            Family::<ApiLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let max_key = crate::kafka::SUPPORTED_APIS
            .iter()
            .map(|(key, _, _)| *key as i16)
            .max()
            .unwrap_or(0);
        let mut apis: Vec<Option<ApiMetrics>> = (0..=max_key).map(|_| None).collect();
        for (key, _, _) in crate::kafka::SUPPORTED_APIS {
            let label = ApiLabel {
                api: api_name(*key),
            };
            apis[*key as i16 as usize] = Some(ApiMetrics {
                requests: requests.get_or_create_owned(&label),
                errors: request_errors.get_or_create_owned(&label),
                duration: request_duration.get_or_create_owned(&label),
            });
        }
        BrokerMetrics {
            requests,
            request_errors,
            request_duration,
            apis,
            topic_bytes_in: Family::default(),
            topic_messages_in: Family::default(),
            topic_bytes_out: Family::default(),
            topics: Mutex::new(HashSet::new()),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
        }
    }

    /// Counts one request of `key` answered (or closed) after `elapsed`; `error` when the
    /// answer carries an error code (see [`carries_error`]) or the connection was closed
    /// instead. Keys the broker does not serve are not counted (they never reach a handler).
    pub fn record_request(&self, key: ApiKey, elapsed: Duration, error: bool) {
        let Some(Some(api)) = self.apis.get(key as i16 as usize) else {
            return;
        };
        api.requests.inc();
        api.duration.observe(elapsed.as_secs_f64());
        if error {
            api.errors.inc();
        }
    }

    /// The counters of `topic`, created (at zero) if it has none yet. For the replica
    /// manager, once per image for each topic with a partition here; request handlers use
    /// the handles it keeps.
    pub fn topic(&self, topic: &str) -> TopicMetrics {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if !topics.contains(topic) {
            topics.insert(topic.to_string());
        }
        let label = TopicLabel {
            topic: topic.to_string(),
        };
        TopicMetrics {
            bytes_in: self.topic_bytes_in.get_or_create_owned(&label),
            messages_in: self.topic_messages_in.get_or_create_owned(&label),
            bytes_out: self.topic_bytes_out.get_or_create_owned(&label),
        }
    }

    /// Drops the series of every topic not in `hosted` (deleted, or no partition left here).
    pub fn retain_topics(&self, hosted: &HashSet<&str>) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.retain(|topic| {
            if hosted.contains(topic.as_str()) {
                return true;
            }
            let label = TopicLabel {
                topic: topic.clone(),
            };
            self.topic_bytes_in.remove(&label);
            self.topic_messages_in.remove(&label);
            self.topic_bytes_out.remove(&label);
            false
        });
    }

    /// Adds every metric of this broker to `registry`: these counters, and the gauges
    /// `state` computes at each scrape.
    pub fn register(&self, registry: &mut Registry, state: StateCollector) {
        registry.register(
            "requests",
            "Kafka requests handled, by API",
            self.requests.clone(),
        );
        registry.register(
            "request_errors",
            "Kafka requests answered with an error code (top level or for any partition, \
             topic, group or resource), or whose connection was closed instead, by API",
            self.request_errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a decoded Kafka request to its response being ready, by API (a \
             fetch's long-poll and an acks=all produce's wait for replication included)",
            self.request_duration.clone(),
        );
        registry.register(
            "topic_bytes_in",
            "Bytes of record batches appended by this broker as the leader, by topic \
             (retried batches an idempotent producer had already written not counted)",
            self.topic_bytes_in.clone(),
        );
        registry.register(
            "topic_messages_in",
            "Records appended by this broker as the leader, by topic",
            self.topic_messages_in.clone(),
        );
        registry.register(
            "topic_bytes_out",
            "Bytes of record batches sent to consumers in Fetch responses, by topic",
            self.topic_bytes_out.clone(),
        );
        registry.register(
            "isr_shrinks",
            "ISR shrinks this broker proposed as a leader (a follower lagging past \
             replica.lag.time.max.ms) and the controller committed",
            self.isr_shrinks.clone(),
        );
        registry.register(
            "isr_expands",
            "ISR expansions this broker proposed as a leader (a follower caught up) and the \
             controller committed",
            self.isr_expands.clone(),
        );
        registry.register_collector(Box::new(state));
    }
}

/// Kafka's name of an API key (`Produce`, `OffsetCommit`), for the `api` label.
fn api_name(key: ApiKey) -> String {
    // ApiKey's Debug form is its variant name, which is Kafka's name for the API.
    format!("{key:?}")
}

/// A registry holding everything [`BrokerMetrics::register`] adds, with the `tributary_`
/// prefix.
pub fn registry(metrics: &BrokerMetrics, state: StateCollector) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    metrics.register(&mut registry, state);
    registry
}

/// The metrics in `registry` in Prometheus text format (see [`CONTENT_TYPE`]).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(64 * 1024);
    // Writing into a String cannot fail, and the collectors here return no errors of
    // their own; an error would leave a half-written body, so send none rather than that.
    if prometheus_client::encoding::prometheus_text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// Whether `response` carries a non-zero error code at its top level or for any of the
/// partitions, topics, groups or resources it answers for: Kafka's `errorCounts()` reduced
/// to one bit. It walks the response once, without allocating.
pub fn carries_error(response: &ResponseKind) -> bool {
    fn any<T>(items: &[T], f: impl Fn(&T) -> bool) -> bool {
        items.iter().any(f)
    }
    match response {
        ResponseKind::Produce(r) => any(&r.responses, |t| {
            any(&t.partition_responses, |p| p.error_code != 0)
        }),
        ResponseKind::Fetch(r) => {
            r.error_code != 0 || any(&r.responses, |t| any(&t.partitions, |p| p.error_code != 0))
        }
        ResponseKind::ListOffsets(r) => {
            any(&r.topics, |t| any(&t.partitions, |p| p.error_code != 0))
        }
        ResponseKind::Metadata(r) => {
            r.error_code != 0
                || any(&r.topics, |t| {
                    t.error_code != 0 || any(&t.partitions, |p| p.error_code != 0)
                })
        }
        ResponseKind::ApiVersions(r) => r.error_code != 0,
        ResponseKind::CreateTopics(r) => any(&r.topics, |t| t.error_code != 0),
        ResponseKind::DeleteTopics(r) => any(&r.responses, |t| t.error_code != 0),
        ResponseKind::DeleteRecords(r) => {
            any(&r.topics, |t| any(&t.partitions, |p| p.error_code != 0))
        }
        ResponseKind::DescribeConfigs(r) => any(&r.results, |c| c.error_code != 0),
        ResponseKind::AlterConfigs(r) => any(&r.responses, |c| c.error_code != 0),
        ResponseKind::IncrementalAlterConfigs(r) => any(&r.responses, |c| c.error_code != 0),
        ResponseKind::CreatePartitions(r) => any(&r.results, |t| t.error_code != 0),
        ResponseKind::DescribeCluster(r) => r.error_code != 0,
        ResponseKind::InitProducerId(r) => r.error_code != 0,
        ResponseKind::FindCoordinator(r) => {
            r.error_code != 0 || any(&r.coordinators, |c| c.error_code != 0)
        }
        ResponseKind::JoinGroup(r) => r.error_code != 0,
        ResponseKind::SyncGroup(r) => r.error_code != 0,
        ResponseKind::Heartbeat(r) => r.error_code != 0,
        ResponseKind::LeaveGroup(r) => r.error_code != 0 || any(&r.members, |m| m.error_code != 0),
        ResponseKind::OffsetCommit(r) => {
            any(&r.topics, |t| any(&t.partitions, |p| p.error_code != 0))
        }
        ResponseKind::OffsetFetch(r) => {
            r.error_code != 0
                || any(&r.topics, |t| any(&t.partitions, |p| p.error_code != 0))
                || any(&r.groups, |g| {
                    g.error_code != 0
                        || any(&g.topics, |t| any(&t.partitions, |p| p.error_code != 0))
                })
        }
        ResponseKind::OffsetDelete(r) => {
            r.error_code != 0 || any(&r.topics, |t| any(&t.partitions, |p| p.error_code != 0))
        }
        ResponseKind::ListGroups(r) => r.error_code != 0,
        ResponseKind::DescribeGroups(r) => any(&r.groups, |g| g.error_code != 0),
        ResponseKind::DeleteGroups(r) => any(&r.results, |g| g.error_code != 0),
        ResponseKind::ElectLeaders(r) => {
            r.error_code != 0
                || any(&r.replica_election_results, |t| {
                    any(&t.partition_result, |p| p.error_code != 0)
                })
        }
        ResponseKind::AlterPartitionReassignments(r) => {
            r.error_code != 0 || any(&r.responses, |t| any(&t.partitions, |p| p.error_code != 0))
        }
        ResponseKind::ListPartitionReassignments(r) => r.error_code != 0,
        // The broker answers no other API (see `SUPPORTED_APIS`).
        _ => false,
    }
}

/// The gauges computed at scrape time from the broker's state. Registered as a
/// prometheus-client [`Collector`], so each scrape reads the state as it is then.
pub struct StateCollector {
    replicas: Arc<ReplicaManager>,
    groups: Arc<GroupCoordinator>,
    /// The active controller's id when known (`ControllerNode::active_controller`); a
    /// function, so the collector can be built without a running metadata quorum.
    active_controller: Box<dyn Fn() -> Option<i32> + Send + Sync>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector")
            .field("broker_id", &self.replicas.broker_id())
            .finish()
    }
}

impl StateCollector {
    pub fn new(
        replicas: Arc<ReplicaManager>,
        groups: Arc<GroupCoordinator>,
        active_controller: impl Fn() -> Option<i32> + Send + Sync + 'static,
    ) -> StateCollector {
        StateCollector {
            replicas,
            groups,
            active_controller: Box::new(active_controller),
        }
    }

    /// Reads the state the gauges show. Takes each hosted partition's lock in turn (briefly:
    /// its role and log size are in memory), so scrapes run on the blocking pool.
    pub fn snapshot(&self) -> StateSnapshot {
        let (_, image) = self.replicas.image();
        let mut s = StateSnapshot {
            active_controller: (self.active_controller)().unwrap_or(-1),
            ..StateSnapshot::default()
        };
        for topic in image.topics.values() {
            for p in &topic.assignments {
                if p.leader == NO_LEADER {
                    s.offline_partitions += 1;
                }
            }
        }
        for topic in self.replicas.topics() {
            for partition in topic.partitions() {
                s.partitions += 1;
                if let Role::Leader(leader) = partition.role() {
                    s.leader_partitions += 1;
                    // Kafka's rule: the leader counts its partition under-replicated while
                    // the ISR is smaller than the replica set, not counting replicas a
                    // reassignment is still adding.
                    let adding = topic
                        .record
                        .assignments
                        .get(partition.index as usize)
                        .map_or(0, |a| a.adding_replicas.len());
                    if leader.isr.len() < leader.replicas.len().saturating_sub(adding) {
                        s.under_replicated_partitions += 1;
                    }
                }
                if let Some(log) = partition.log() {
                    s.log_sizes.push((
                        topic.record.name.clone(),
                        partition.index,
                        log.size_bytes(),
                    ));
                }
            }
        }
        s.log_sizes.sort_unstable();
        s.groups = self.groups.group_counts();
        s
    }
}

/// What the scrape-time gauges show, read in one pass (see [`StateCollector::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSnapshot {
    /// Partitions with a replica on this broker (Kafka's `PartitionCount`).
    pub partitions: u64,
    /// Partitions this broker leads (`LeaderCount`).
    pub leader_partitions: u64,
    /// Partitions this broker leads whose ISR is short of the replica set
    /// (`UnderReplicatedPartitions`).
    pub under_replicated_partitions: u64,
    /// Partitions in the whole cluster without a leader, as this broker's metadata image
    /// has them (`OfflinePartitionsCount`).
    pub offline_partitions: u64,
    /// -1 when unknown (no quorum, or an election under way).
    pub active_controller: i32,
    /// `(topic, partition, bytes)` of every hosted partition's log, sorted.
    pub log_sizes: Vec<(String, i32, u64)>,
    /// Groups this broker coordinates, by state.
    pub groups: Vec<(GroupState, usize)>,
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let me = self.replicas.broker_id();
        let s = self.snapshot();
        let mut gauge = |name: &str, help: &str, value: i64| -> std::fmt::Result {
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
        };
        gauge(
            "partitions",
            "Partitions with a replica on this broker.",
            s.partitions as i64,
        )?;
        gauge(
            "leader_partitions",
            "Partitions this broker leads.",
            s.leader_partitions as i64,
        )?;
        gauge(
            "under_replicated_partitions",
            "Partitions this broker leads whose in-sync replica set is smaller than their \
             replica set.",
            s.under_replicated_partitions as i64,
        )?;
        gauge(
            "offline_partitions",
            "Partitions of the whole cluster that have no leader, in this broker's metadata \
             image: the same on every broker, so aggregate with max, not sum.",
            s.offline_partitions as i64,
        )?;
        gauge(
            "active_controller_id",
            "Broker id of the active controller (the metadata quorum's Raft leader), -1 \
             when unknown.",
            i64::from(s.active_controller),
        )?;
        gauge(
            "active_controller",
            "1 on the broker that is the active controller, 0 on the others.",
            i64::from(s.active_controller == me),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "log_size_bytes",
                "Size of a partition's log on this broker's disk: every segment file.",
                None,
                MetricType::Gauge,
            )?;
            for (topic, partition, bytes) in &s.log_sizes {
                let labels = ([("topic", topic.as_str())], [("partition", *partition)]);
                ConstGauge::new(*bytes as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "consumer_groups",
            "Consumer groups this broker coordinates, by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in &s.groups {
            let labels = [("state", state.name())];
            ConstGauge::new(*count as i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_api_is_counted_under_its_kafka_name() {
        let metrics = BrokerMetrics::new();
        metrics.record_request(ApiKey::Produce, Duration::from_micros(300), false);
        metrics.record_request(ApiKey::Produce, Duration::from_millis(3), true);
        metrics.record_request(ApiKey::OffsetCommit, Duration::from_millis(1), false);
        // Not served: not counted, and no panic.
        metrics.record_request(ApiKey::EndTxn, Duration::from_millis(1), false);
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register("requests", "r", metrics.requests.clone());
        registry.register("request_errors", "e", metrics.request_errors.clone());
        registry.register(
            "request_duration_seconds",
            "d",
            metrics.request_duration.clone(),
        );
        let text = encode(&registry);
        assert!(
            text.contains("tributary_requests_total{api=\"Produce\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("tributary_requests_total{api=\"OffsetCommit\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tributary_requests_total{api=\"Fetch\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("EndTxn"), "{text}");
        assert!(
            text.contains("tributary_request_errors_total{api=\"Produce\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "tributary_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0005\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tributary_request_duration_seconds_bucket{api=\"Produce\",le=\"0.005\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("tributary_request_duration_seconds_count{api=\"Produce\"} 2\n"),
            "{text}"
        );
        for (key, _, _) in crate::kafka::SUPPORTED_APIS {
            assert!(
                text.contains(&format!("api=\"{}\"", api_name(*key))),
                "{key:?} has no series"
            );
        }
    }

    #[test]
    fn topic_series_follow_the_hosted_topics() {
        let metrics = BrokerMetrics::new();
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register("topic_bytes_in", "b", metrics.topic_bytes_in.clone());
        registry.register("topic_messages_in", "m", metrics.topic_messages_in.clone());
        let orders = metrics.topic("orders");
        orders.appended(1000, 10);
        // A second handle (the next image's) shares the counts.
        metrics.topic("orders").appended(24, 1);
        metrics.topic("audit");
        let text = encode(&registry);
        assert!(
            text.contains("tributary_topic_bytes_in_total{topic=\"orders\"} 1024\n"),
            "{text}"
        );
        assert!(
            text.contains("tributary_topic_messages_in_total{topic=\"orders\"} 11\n"),
            "{text}"
        );
        assert!(
            text.contains("tributary_topic_bytes_in_total{topic=\"audit\"} 0\n"),
            "{text}"
        );
        metrics.retain_topics(&HashSet::from(["audit"]));
        let text = encode(&registry);
        assert!(!text.contains("orders"), "{text}");
        assert!(text.contains("topic=\"audit\""), "{text}");
        // The old handle still counts, into a series nobody exports any more.
        orders.appended(1, 1);
        assert!(!encode(&registry).contains("orders"));
    }

    #[test]
    fn errors_are_found_at_any_level() {
        use kafka_protocol::messages::produce_response::{
            PartitionProduceResponse, TopicProduceResponse,
        };
        use kafka_protocol::messages::{HeartbeatResponse, ProduceResponse};
        let produce = |codes: &[i16]| {
            ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
                TopicProduceResponse::default().with_partition_responses(
                    codes
                        .iter()
                        .map(|c| PartitionProduceResponse::default().with_error_code(*c))
                        .collect(),
                ),
            ]))
        };
        assert!(!carries_error(&produce(&[0, 0])));
        assert!(carries_error(&produce(&[0, 6])));
        assert!(!carries_error(&ResponseKind::Heartbeat(
            HeartbeatResponse::default()
        )));
        assert!(carries_error(&ResponseKind::Heartbeat(
            HeartbeatResponse::default().with_error_code(27)
        )));
    }
}
