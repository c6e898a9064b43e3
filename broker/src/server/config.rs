//! Broker configuration: Kafka property names, read from a properties file, then
//! `TRIBUTARY_*` environment variables, then `--override key=value` flags (last wins).
//!
//! ```text
//! server.properties ──┐
//! TRIBUTARY_LOG_DIRS ─┼─> Properties (key → value) ──parse──> BrokerConfig ──validate──> Arc<BrokerConfig>
//! --override k=v ─────┘
//! ```
//!
//! The environment variable for a key is `TRIBUTARY_` followed by the key in upper case with
//! dots as underscores (`log.retention.ms` → `TRIBUTARY_LOG_RETENTION_MS`), the convention of
//! the common Kafka container images. Keys this broker does not know are logged and ignored,
//! so an existing Kafka `server.properties` can be carried over.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::log::LogConfig;

/// Environment variable prefix for configuration keys.
pub const ENV_PREFIX: &str = "TRIBUTARY_";

const HOUR_MS: i64 = 60 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected `key=value`, found {text:?}")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("override {0:?} is not of the form key=value")]
    Override(String),
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Conflict(String),
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Raw `key → value` properties, before parsing.
#[derive(Debug, Clone, Default)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Reads a Java-style properties file: `key=value` or `key: value`, `#` and `!` comments.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut props = Properties::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some(split) = line.find(['=', ':']) else {
                return Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    line: number + 1,
                    text: line.to_string(),
                });
            };
            props.set(line[..split].trim(), line[split + 1..].trim());
        }
        Ok(props)
    }

    /// Adds every `TRIBUTARY_*` variable from `vars` (pass `std::env::vars()` from `main`),
    /// except `TRIBUTARY_LOG`, the log filter.
    pub fn merge_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        for (name, value) in vars {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                // TRIBUTARY_LOG is the log filter (read in main), not a setting.
                if key.is_empty() || key == "LOG" {
                    continue;
                }
                self.set(&key.to_ascii_lowercase().replace('_', "."), &value);
            }
        }
    }

    /// Adds `key=value` overrides from the command line.
    pub fn merge_overrides(&mut self, overrides: &[String]) -> Result<()> {
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::Override(item.clone()))?;
            self.set(key.trim(), value.trim());
        }
        Ok(())
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_string(), value.to_string());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// A `PLAINTEXT://host:port` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub host: String,
    pub port: u16,
}

impl Listener {
    pub fn parse(key: &str, value: &str) -> Result<Self> {
        let invalid = |reason: &str| ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if value.contains(',') {
            return Err(invalid("only one listener is supported"));
        }
        let rest = match value.split_once("://") {
            Some((name, rest)) if name.eq_ignore_ascii_case("PLAINTEXT") => rest,
            Some(_) => return Err(invalid("only the PLAINTEXT security protocol is supported")),
            None => value,
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected PLAINTEXT://host:port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid("port must be a number from 0 to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Listener {
            host: host.to_string(),
            port,
        })
    }

    /// The address to bind; an empty host binds every interface, as in Kafka.
    pub fn bind_addr(&self) -> Result<SocketAddr> {
        resolve(self, "listeners")
    }

    /// `host:port`, with an IPv6 host in brackets: the form gRPC clients and
    /// `controller.quorum.voters` entries use.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Resolves a listener to the socket address to bind; errors name `key`.
fn resolve(listener: &Listener, key: &str) -> Result<SocketAddr> {
    let host = if listener.host.is_empty() {
        "0.0.0.0"
    } else {
        &listener.host
    };
    (host, listener.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError::Invalid {
            key: key.into(),
            value: format!("{host}:{}", listener.port),
            reason: "host does not resolve".into(),
        })
}

/// Port of `controller.listener` on a broker that is not a voter of a multi-broker quorum.
pub const DEFAULT_CONTROLLER_PORT: u16 = 9093;

/// Port of `http.listener` (`/healthz`, `/readyz`, `/metrics`): Redpanda's, the other
/// Kafka-API broker's, for its admin and metrics endpoints, so a scrape config or a probe
/// written for one fits the other. It is clear of Kafka's 9092 and 9093, of the JMX
/// exporter's 9404 that Kafka images run as a sidecar, and of the operator's 8080.
pub const DEFAULT_HTTP_PORT: u16 = 9644;

/// Smallest `controller.election.timeout.ms`: twice the Raft heartbeat interval (100 ms).
pub const MIN_ELECTION_TIMEOUT_MS: i64 = 200;

/// What a `host:port` value is for, which decides what it may leave out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HostPort {
    /// A listener to bind: an empty host binds every interface, port 0 picks a free port.
    Bind,
    /// An address other brokers dial: a host is required; port 0 stands for the bound port.
    Advertised,
    /// A `controller.quorum.voters` entry: host and a real port are required.
    Voter,
}

/// Parses `host:port` (an IPv6 host in brackets). Kafka names its listeners
/// (`CONTROLLER://host:port`); the gRPC listener has no security protocol to choose, so a
/// `scheme://` prefix is refused rather than silently dropped.
fn parse_host_port(key: &str, value: &str, kind: HostPort) -> Result<Listener> {
    let text = value.trim();
    if text.contains("://") {
        return Err(invalid(key, value, "expected host:port, without a scheme"));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, value, "expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, value, "port must be a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() && kind != HostPort::Bind {
        return Err(invalid(key, value, "a host is required"));
    }
    if port == 0 && kind == HostPort::Voter {
        return Err(invalid(key, value, "a voter needs a fixed port, not 0"));
    }
    Ok(Listener {
        host: host.to_string(),
        port,
    })
}

/// Parses `controller.quorum.voters`: `id@host:port,id@host:port,...` as in Kafka. Empty
/// means standalone. A quorum has 1, 3 or 5 voters.
pub fn parse_quorum_voters(key: &str, value: &str) -> Result<BTreeMap<i32, String>> {
    let mut voters = BTreeMap::new();
    if value.trim().is_empty() {
        return Ok(voters);
    }
    for entry in value.split(',').map(str::trim) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| invalid(key, value, format!("entry {entry:?} is not id@host:port")))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| {
                invalid(
                    key,
                    value,
                    format!("entry {entry:?}: the id must be a broker id (an integer ≥ 0)"),
                )
            })?;
        let addr = addr.trim();
        parse_host_port(key, addr, HostPort::Voter)
            .map_err(|_| invalid(key, value, format!("entry {entry:?} is not id@host:port")))?;
        if let Some((other, _)) = voters.iter().find(|(_, a)| a.as_str() == addr) {
            return Err(invalid(
                key,
                value,
                format!("voters {other} and {id} have the same address {addr}"),
            ));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(invalid(key, value, format!("voter id {id} appears twice")));
        }
    }
    match voters.len() {
        1 | 3 | 5 => Ok(voters),
        n => Err(invalid(
            key,
            value,
            format!(
                "{n} voters: a quorum needs 1, 3 or 5. A majority of 2 is 2 and of 4 is 3, so \
                 those tolerate no more failed voters than 1 or 3 do"
            ),
        )),
    }
}

/// The trailing ordinal of a host name, as a StatefulSet names its pods: `tributary-2` →
/// 2, `my-kafka-10.headless.svc` → 10. The ordinal must follow a `-` in the first DNS
/// label, so a machine named `ubuntu2204` does not become broker 2204.
pub fn broker_id_from_hostname(hostname: &str) -> Option<i32> {
    let label = hostname.trim().split('.').next()?;
    let (_, digits) = label.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// This machine's host name from `/proc/sys/kernel/hostname` (Linux); `None` elsewhere or
/// when empty. `main` falls back to the `HOSTNAME` environment variable.
pub fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Everything the broker reads from its configuration. Defaults are Kafka's.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `broker.id` or `node.id`.
    pub broker_id: i32,
    /// `listeners`: where the Kafka protocol is served.
    pub listener: Listener,
    /// `advertised.listeners`: what Metadata tells clients; defaults to the listener (with
    /// the bound port when the listener asks for port 0).
    pub advertised_listener: Option<Listener>,
    /// `log.dirs` (or `log.dir`): one directory holding every partition.
    pub log_dir: PathBuf,
    /// `num.partitions`: partitions of an auto-created topic.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// Topic defaults from `log.segment.bytes`, `log.roll.ms`, `log.retention.ms`,
    /// `log.retention.bytes`, `log.index.interval.bytes`, `log.flush.interval.messages`,
    /// `log.flush.interval.ms`, `message.max.bytes`.
    pub log: LogConfig,
    /// `log.retention.check.interval.ms`: how often retention runs.
    pub log_retention_check_interval_ms: u64,
    /// `log.flush.scheduler.interval.ms`: how often `flush.ms` is checked.
    pub log_flush_scheduler_interval_ms: u64,
    /// `socket.request.max.bytes`: a larger request frame closes the connection.
    pub socket_request_max_bytes: u32,
    /// `max.connections`: accepted connections beyond this wait for a free slot.
    pub max_connections: usize,
    /// `connections.max.idle.ms`: a connection that sends no request for this long is
    /// closed.
    pub connections_max_idle_ms: u64,
    /// `shutdown.grace.ms`: how long in-flight requests may run after a stop signal.
    pub shutdown_grace_ms: u64,
    /// `http.listener` (Tributary): where `/healthz`, `/readyz` and `/metrics` are served.
    /// Every interface by default: the kubelet probes the pod's IP. `None` (the key set
    /// to an empty value) serves no HTTP at all.
    pub http_listener: Option<Listener>,
    /// `group.min.session.timeout.ms`, `group.max.session.timeout.ms`,
    /// `group.initial.rebalance.delay.ms`, `group.max.size`.
    pub group: crate::group::membership::GroupConfig,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`: segment size of `__consumer_offsets` (compaction only
    /// cleans rolled segments).
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.topic.replication.factor`: replicas of each `__consumer_offsets` partition.
    /// The topic is created when this many brokers are live (a standalone broker uses 1).
    pub offsets_topic_replication_factor: i16,
    /// `offset.metadata.max.bytes`: longest metadata of a committed offset; longer ones get
    /// OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes` (or the Tributary-only `offsets.retention.ms`, which
    /// overrides it): how long the committed offsets of an empty group are kept, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are removed.
    pub offsets_retention_check_interval_ms: u64,
    /// `offsets.commit.timeout.ms`: how long a write to `__consumer_offsets` may wait for
    /// every in-sync replica before the client is told to retry.
    pub offsets_commit_timeout_ms: u64,

    // ---- Cluster: metadata quorum, liveness, replication ----
    /// `controller.quorum.voters`: the Raft voters, broker id → `host:port` of their gRPC
    /// listener. Empty means standalone: a single-node quorum of this broker alone, which
    /// needs no network.
    pub controller_quorum_voters: BTreeMap<i32, String>,
    /// `controller.listener`: where this broker serves gRPC (Raft, controller, replication).
    /// Port 0 binds a free port; only a standalone broker defaults to that, because nobody
    /// else needs to reach it.
    pub controller_listener: Listener,
    /// `controller.advertised.listener`: the `host:port` other brokers use to reach
    /// `controller_listener` (followers fetch from it). Port 0 stands for the bound port.
    pub controller_advertised_listener: Listener,
    /// `broker.rack`: spreads a partition's replicas across racks when every broker has one.
    pub broker_rack: Option<String>,
    /// `broker.session.timeout.ms`: a broker that has not heartbeated for this long is
    /// fenced and loses its leaderships. Lower than Kafka's 9000 so failover is quick.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the active controller.
    pub broker_heartbeat_interval_ms: u64,
    /// `replica.lag.time.max.ms`: a follower that has not caught up to the leader's log end
    /// for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits at the leader for new
    /// data. At most `replica_lag_time_max_ms`, or idle followers would drop out of the ISR.
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.max.bytes`: bytes a follower fetch asks for per partition (a larger
    /// first batch is still returned whole, KIP-74).
    pub replica_fetch_max_bytes: u32,
    /// `replica.fetch.response.max.bytes`: bytes one follower fetch response may carry.
    pub replica_fetch_response_max_bytes: u32,
    /// `replica.fetch.backoff.ms`: pause after a failed follower fetch.
    pub replica_fetch_backoff_ms: u64,
    /// `min.insync.replicas`: the broker default of the topic key of the same name; with
    /// acks=all a write is refused (`NOT_ENOUGH_REPLICAS`) while the ISR is smaller.
    pub min_insync_replicas: i32,
    /// `controlled.shutdown.enable`: on SIGTERM, move leaderships away before stopping.
    pub controlled_shutdown_enable: bool,
    /// `controlled.shutdown.timeout.ms` (Tributary): how long a controlled shutdown may wait
    /// for its leaderships to move before the broker stops anyway.
    pub controlled_shutdown_timeout_ms: u64,
    /// `controller.request.timeout.ms` (Tributary): how long a metadata change (topic
    /// creation, an ISR change, ...) may take to commit before the request fails with a
    /// retriable error.
    pub controller_request_timeout_ms: u64,
    /// `auto.leader.rebalance.enable`: the active controller moves leadership back to each
    /// partition's preferred (first) replica once it is in sync.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often that check runs.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `controller.election.timeout.ms` (Tributary): lower bound of the Raft election
    /// timeout; the upper bound is twice this (each node draws at random in between).
    pub controller_election_timeout_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            broker_id: 0,
            listener: Listener {
                host: String::new(),
                port: 9092,
            },
            advertised_listener: None,
            log_dir: PathBuf::from("/tmp/tributary-logs"),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            log: LogConfig::default(),
            log_retention_check_interval_ms: 300_000,
            log_flush_scheduler_interval_ms: 1_000,
            socket_request_max_bytes: 104_857_600,
            max_connections: 10_000,
            connections_max_idle_ms: 600_000,
            shutdown_grace_ms: 10_000,
            http_listener: Some(Listener {
                host: "0.0.0.0".into(),
                port: DEFAULT_HTTP_PORT,
            }),
            group: crate::group::membership::GroupConfig::default(),
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_topic_replication_factor: 3,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_commit_timeout_ms: 5_000,
            controller_quorum_voters: BTreeMap::new(),
            controller_listener: Listener {
                host: "127.0.0.1".into(),
                port: 0,
            },
            controller_advertised_listener: Listener {
                host: "localhost".into(),
                port: 0,
            },
            broker_rack: None,
            broker_session_timeout_ms: 1_000,
            broker_heartbeat_interval_ms: 200,
            replica_lag_time_max_ms: 10_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_response_max_bytes: 10_485_760,
            replica_fetch_backoff_ms: 100,
            min_insync_replicas: 1,
            controlled_shutdown_enable: true,
            controlled_shutdown_timeout_ms: 30_000,
            controller_request_timeout_ms: 30_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            controller_election_timeout_ms: 500,
        }
    }
}

/// Every key `BrokerConfig::from_properties` reads; others are logged and ignored.
pub const KNOWN_KEYS: &[&str] = &[
    "broker.id",
    "node.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.flush.scheduler.interval.ms",
    "message.max.bytes",
    "socket.request.max.bytes",
    "max.connections",
    "connections.max.idle.ms",
    "shutdown.grace.ms",
    "http.listener",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.size",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "offsets.topic.replication.factor",
    "offset.metadata.max.bytes",
    "offsets.retention.minutes",
    "offsets.retention.ms",
    "offsets.retention.check.interval.ms",
    "offsets.commit.timeout.ms",
    "controller.quorum.voters",
    "controller.listener",
    "controller.advertised.listener",
    "broker.rack",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "replica.lag.time.max.ms",
    "replica.fetch.wait.max.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.backoff.ms",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "controlled.shutdown.enable",
    "controlled.shutdown.timeout.ms",
    "controller.request.timeout.ms",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "controller.election.timeout.ms",
];

impl BrokerConfig {
    /// Parses and validates properties, with the machine's host name (see
    /// [`machine_hostname`]) for the defaults that depend on it. Returns the config and the
    /// keys that were ignored.
    pub fn from_properties(props: &Properties) -> Result<(BrokerConfig, Vec<String>)> {
        Self::from_properties_with_hostname(props, machine_hostname().as_deref())
    }

    /// Parses and validates properties. `hostname` feeds two defaults: the broker id of a
    /// cluster member (`controller.quorum.voters` set) when neither `broker.id` nor
    /// `node.id` is set (its trailing ordinal, see [`broker_id_from_hostname`]), and the
    /// host of `controller.advertised.listener` when the Kafka listener binds every
    /// interface. Taking it as a parameter keeps this pure,
    /// so tests do not depend on the machine they run on.
    pub fn from_properties_with_hostname(
        props: &Properties,
        hostname: Option<&str>,
    ) -> Result<(BrokerConfig, Vec<String>)> {
        let mut c = BrokerConfig::default();
        if let Some(v) = props.get("node.id") {
            c.broker_id = parse_num("node.id", v, 0, i32::MAX as i64)? as i32;
        }
        if let Some(v) = props.get("broker.id") {
            c.broker_id = parse_num("broker.id", v, 0, i32::MAX as i64)? as i32;
        }
        if let Some(v) = props.get("listeners") {
            c.listener = Listener::parse("listeners", v)?;
        }
        if let Some(v) = props.get("advertised.listeners") {
            c.advertised_listener = Some(Listener::parse("advertised.listeners", v)?);
        }
        if let Some(v) = props.get("log.dirs").or_else(|| props.get("log.dir")) {
            if v.contains(',') {
                return Err(ConfigError::Invalid {
                    key: "log.dirs".into(),
                    value: v.into(),
                    reason: "only one log directory is supported".into(),
                });
            }
            c.log_dir = PathBuf::from(v);
        }
        if let Some(v) = props.get("num.partitions") {
            c.num_partitions = parse_num("num.partitions", v, 1, i32::MAX as i64)? as i32;
        }
        if let Some(v) = props.get("default.replication.factor") {
            c.default_replication_factor =
                parse_num("default.replication.factor", v, 1, i16::MAX as i64)? as i16;
        }
        if let Some(v) = props.get("auto.create.topics.enable") {
            c.auto_create_topics_enable = parse_bool("auto.create.topics.enable", v)?;
        }
        if let Some(v) = props.get("log.segment.bytes") {
            c.log.segment_bytes = parse_num("log.segment.bytes", v, 100, i32::MAX as i64)? as u64;
        }
        if let Some(v) = props.get("log.roll.hours") {
            c.log.segment_ms = parse_num("log.roll.hours", v, 1, i64::MAX / HOUR_MS)? * HOUR_MS;
        }
        if let Some(v) = props.get("log.roll.ms") {
            c.log.segment_ms = parse_num("log.roll.ms", v, 1, i64::MAX)?;
        }
        if let Some(v) = props.get("log.retention.hours") {
            c.log.retention_ms = retention("log.retention.hours", v, HOUR_MS)?;
        }
        if let Some(v) = props.get("log.retention.minutes") {
            c.log.retention_ms = retention("log.retention.minutes", v, 60_000)?;
        }
        if let Some(v) = props.get("log.retention.ms") {
            c.log.retention_ms = retention("log.retention.ms", v, 1)?;
        }
        if let Some(v) = props.get("log.retention.bytes") {
            c.log.retention_bytes = parse_num("log.retention.bytes", v, -1, i64::MAX)?;
        }
        if let Some(v) = props.get("log.index.interval.bytes") {
            c.log.index_interval_bytes =
                parse_num("log.index.interval.bytes", v, 0, i32::MAX as i64)? as u32;
        }
        if let Some(v) = props.get("log.flush.interval.messages") {
            c.log.flush_messages = parse_num("log.flush.interval.messages", v, 1, i64::MAX)? as u64;
        }
        if let Some(v) = props.get("log.flush.interval.ms") {
            c.log.flush_ms = parse_num("log.flush.interval.ms", v, 0, i64::MAX)?;
        }
        if let Some(v) = props.get("message.max.bytes") {
            c.log.max_message_bytes = parse_num("message.max.bytes", v, 0, i32::MAX as i64)? as u32;
        }
        if let Some(v) = props.get("log.retention.check.interval.ms") {
            c.log_retention_check_interval_ms =
                parse_num("log.retention.check.interval.ms", v, 1, i64::MAX)? as u64;
        }
        if let Some(v) = props.get("log.flush.scheduler.interval.ms") {
            c.log_flush_scheduler_interval_ms =
                parse_num("log.flush.scheduler.interval.ms", v, 1, i64::MAX)? as u64;
        }
        if let Some(v) = props.get("socket.request.max.bytes") {
            c.socket_request_max_bytes =
                parse_num("socket.request.max.bytes", v, 1, i32::MAX as i64)? as u32;
        }
        if let Some(v) = props.get("max.connections") {
            c.max_connections = parse_num("max.connections", v, 1, 1 << 20)? as usize;
        }
        if let Some(v) = props.get("connections.max.idle.ms") {
            c.connections_max_idle_ms =
                parse_num("connections.max.idle.ms", v, 1, i64::MAX)? as u64;
        }
        if let Some(v) = props.get("shutdown.grace.ms") {
            c.shutdown_grace_ms = parse_num("shutdown.grace.ms", v, 0, i64::MAX)? as u64;
        }
        if let Some(v) = props.get("http.listener") {
            c.http_listener = if v.trim().is_empty() {
                None
            } else {
                Some(parse_host_port("http.listener", v, HostPort::Bind)?)
            };
        }
        let int_max = i64::from(i32::MAX);
        if let Some(v) = props.get("group.min.session.timeout.ms") {
            c.group.group_min_session_timeout_ms =
                parse_num("group.min.session.timeout.ms", v, 0, int_max)? as i32;
        }
        if let Some(v) = props.get("group.max.session.timeout.ms") {
            c.group.group_max_session_timeout_ms =
                parse_num("group.max.session.timeout.ms", v, 0, int_max)? as i32;
        }
        if let Some(v) = props.get("group.initial.rebalance.delay.ms") {
            c.group.group_initial_rebalance_delay_ms =
                parse_num("group.initial.rebalance.delay.ms", v, 0, int_max)? as i32;
        }
        if let Some(v) = props.get("group.max.size") {
            c.group.group_max_size = parse_num("group.max.size", v, 1, int_max)? as usize;
        }
        if let Some(v) = props.get("offsets.topic.num.partitions") {
            c.offsets_topic_num_partitions =
                parse_num("offsets.topic.num.partitions", v, 1, int_max)? as i32;
        }
        if let Some(v) = props.get("offsets.topic.segment.bytes") {
            c.offsets_topic_segment_bytes =
                parse_num("offsets.topic.segment.bytes", v, 100, int_max)? as u64;
        }
        if let Some(v) = props.get("offsets.topic.replication.factor") {
            c.offsets_topic_replication_factor = parse_num(
                "offsets.topic.replication.factor",
                v,
                1,
                i64::from(i16::MAX),
            )? as i16;
        }
        if let Some(v) = props.get("offset.metadata.max.bytes") {
            c.offset_metadata_max_bytes =
                parse_num("offset.metadata.max.bytes", v, 0, int_max)? as usize;
        }
        if let Some(v) = props.get("offsets.retention.minutes") {
            c.offsets_retention_ms =
                parse_num("offsets.retention.minutes", v, 1, i64::MAX / 60_000)? * 60_000;
        }
        if let Some(v) = props.get("offsets.retention.ms") {
            c.offsets_retention_ms = parse_num("offsets.retention.ms", v, 1, i64::MAX)?;
        }
        if let Some(v) = props.get("offsets.retention.check.interval.ms") {
            c.offsets_retention_check_interval_ms =
                parse_num("offsets.retention.check.interval.ms", v, 1, i64::MAX)? as u64;
        }
        if let Some(v) = props.get("offsets.commit.timeout.ms") {
            c.offsets_commit_timeout_ms =
                parse_num("offsets.commit.timeout.ms", v, 1, int_max)? as u64;
        }
        c.parse_cluster_keys(props, hostname)?;
        if c.group.group_min_session_timeout_ms > c.group.group_max_session_timeout_ms {
            return Err(ConfigError::Conflict(format!(
                "group.min.session.timeout.ms ({}) is larger than group.max.session.timeout.ms ({})",
                c.group.group_min_session_timeout_ms, c.group.group_max_session_timeout_ms
            )));
        }
        let ignored = props
            .0
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok((c.validate()?, ignored))
    }

    /// Reads the cluster keys (metadata quorum, liveness, replication) and fills in the
    /// listener defaults that depend on the voters, the broker id and the Kafka listener.
    fn parse_cluster_keys(&mut self, props: &Properties, hostname: Option<&str>) -> Result<()> {
        let c = self;
        if let Some(v) = props.get("controller.quorum.voters") {
            c.controller_quorum_voters = parse_quorum_voters("controller.quorum.voters", v)?;
        }
        let id_set = props.get("node.id").is_some() || props.get("broker.id").is_some();
        if !id_set && !c.controller_quorum_voters.is_empty() {
            // A StatefulSet pod `tributary-2` is broker 2 without a per-pod config file.
            // Only in a cluster: a standalone broker stays broker 0 whatever the machine is
            // called, as before clusters existed.
            if let Some(id) = hostname.and_then(broker_id_from_hostname) {
                c.broker_id = id;
            }
        }
        c.controller_listener = match props.get("controller.listener") {
            Some(v) => parse_host_port("controller.listener", v, HostPort::Bind)?,
            None => match c.controller_quorum_voters.get(&c.broker_id) {
                // A voter serves on its voter entry's port, on every interface: the entry's
                // host may be a name (a Kubernetes service) that does not resolve to a local
                // interface address.
                Some(entry) => Listener {
                    host: "0.0.0.0".into(),
                    port: parse_host_port("controller.quorum.voters", entry, HostPort::Voter)?.port,
                },
                None if !c.controller_quorum_voters.is_empty() => Listener {
                    host: "0.0.0.0".into(),
                    port: DEFAULT_CONTROLLER_PORT,
                },
                // Standalone: nobody else needs to reach it, so bind loopback, any port.
                None => Listener {
                    host: "127.0.0.1".into(),
                    port: 0,
                },
            },
        };
        c.controller_advertised_listener = match props.get("controller.advertised.listener") {
            Some(v) => parse_host_port("controller.advertised.listener", v, HostPort::Advertised)?,
            None => match c.controller_quorum_voters.get(&c.broker_id) {
                Some(entry) => parse_host_port("controller.quorum.voters", entry, HostPort::Voter)?,
                None => Listener {
                    host: c.advertised_kafka_host(hostname),
                    port: c.controller_listener.port,
                },
            },
        };
        if let Some(v) = props.get("broker.rack") {
            let rack = v.trim();
            c.broker_rack = (!rack.is_empty()).then(|| rack.to_string());
        }
        let int_max = i64::from(i32::MAX);
        if let Some(v) = props.get("broker.session.timeout.ms") {
            c.broker_session_timeout_ms =
                parse_num("broker.session.timeout.ms", v, 1, int_max)? as u64;
        }
        if let Some(v) = props.get("broker.heartbeat.interval.ms") {
            c.broker_heartbeat_interval_ms =
                parse_num("broker.heartbeat.interval.ms", v, 1, int_max)? as u64;
        }
        if let Some(v) = props.get("replica.lag.time.max.ms") {
            c.replica_lag_time_max_ms = parse_num("replica.lag.time.max.ms", v, 1, int_max)? as u64;
        }
        if let Some(v) = props.get("replica.fetch.wait.max.ms") {
            c.replica_fetch_wait_max_ms =
                parse_num("replica.fetch.wait.max.ms", v, 0, int_max)? as u64;
        }
        if let Some(v) = props.get("replica.fetch.max.bytes") {
            c.replica_fetch_max_bytes = parse_num("replica.fetch.max.bytes", v, 1, int_max)? as u32;
        }
        if let Some(v) = props.get("replica.fetch.response.max.bytes") {
            c.replica_fetch_response_max_bytes =
                parse_num("replica.fetch.response.max.bytes", v, 1, int_max)? as u32;
        }
        if let Some(v) = props.get("replica.fetch.backoff.ms") {
            c.replica_fetch_backoff_ms =
                parse_num("replica.fetch.backoff.ms", v, 0, int_max)? as u64;
        }
        if let Some(v) = props.get("min.insync.replicas") {
            c.min_insync_replicas = parse_num("min.insync.replicas", v, 1, int_max)? as i32;
        }
        if let Some(v) = props.get("unclean.leader.election.enable") {
            if parse_bool("unclean.leader.election.enable", v)? {
                return Err(invalid(
                    "unclean.leader.election.enable",
                    v,
                    "unclean leader election is not supported: a leader is only ever elected \
                     from the in-sync replicas, so no acknowledged write is lost",
                ));
            }
        }
        if let Some(v) = props.get("controlled.shutdown.enable") {
            c.controlled_shutdown_enable = parse_bool("controlled.shutdown.enable", v)?;
        }
        if let Some(v) = props.get("controller.request.timeout.ms") {
            c.controller_request_timeout_ms =
                parse_num("controller.request.timeout.ms", v, 1, int_max)? as u64;
        }
        if let Some(v) = props.get("controlled.shutdown.timeout.ms") {
            c.controlled_shutdown_timeout_ms =
                parse_num("controlled.shutdown.timeout.ms", v, 0, int_max)? as u64;
        }
        if let Some(v) = props.get("auto.leader.rebalance.enable") {
            c.auto_leader_rebalance_enable = parse_bool("auto.leader.rebalance.enable", v)?;
        }
        if let Some(v) = props.get("leader.imbalance.check.interval.seconds") {
            c.leader_imbalance_check_interval_seconds =
                parse_num("leader.imbalance.check.interval.seconds", v, 1, int_max)? as u64;
        }
        if let Some(v) = props.get("controller.election.timeout.ms") {
            let ms = parse_num("controller.election.timeout.ms", v, 0, int_max)?;
            if ms < MIN_ELECTION_TIMEOUT_MS {
                return Err(invalid(
                    "controller.election.timeout.ms",
                    v,
                    format!(
                        "must be at least {MIN_ELECTION_TIMEOUT_MS}: the Raft leader heartbeats \
                         every 100 ms, and a shorter timeout starts elections between heartbeats"
                    ),
                ));
            }
            c.controller_election_timeout_ms = ms as u64;
        }
        Ok(())
    }

    /// The host Metadata gives clients for this broker: `advertised.listeners`, else the
    /// listener's host, else (the listener binds every interface) the machine's host name.
    fn advertised_kafka_host(&self, hostname: Option<&str>) -> String {
        if let Some(l) = self
            .advertised_listener
            .as_ref()
            .filter(|l| !l.host.is_empty())
        {
            return l.host.clone();
        }
        let host = &self.listener.host;
        let every_interface =
            host.is_empty() || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if !every_interface {
            return host.clone();
        }
        hostname
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
            .to_string()
    }

    /// Standalone: no `controller.quorum.voters`, so this broker is a quorum of one.
    pub fn is_standalone(&self) -> bool {
        self.controller_quorum_voters.is_empty()
    }

    /// This broker is a Raft voter: listed in the voters, or standalone.
    pub fn is_voter(&self) -> bool {
        self.is_standalone() || self.controller_quorum_voters.contains_key(&self.broker_id)
    }

    /// The Raft election timeout range `(controller.election.timeout.ms, twice that)`.
    pub fn controller_election_timeout_range_ms(&self) -> (u64, u64) {
        let low = self.controller_election_timeout_ms;
        (low, low.saturating_mul(2))
    }

    /// Period of the preferred-leader check in ms, 0 when `auto.leader.rebalance.enable`
    /// is false (the controller's convention for "off").
    pub fn leader_imbalance_check_interval_ms(&self) -> u64 {
        if self.auto_leader_rebalance_enable {
            self.leader_imbalance_check_interval_seconds
                .saturating_mul(1000)
        } else {
            0
        }
    }

    /// Checks the values that only conflict in combination.
    pub fn validate(self) -> Result<BrokerConfig> {
        if self.default_replication_factor != 1 && self.is_standalone() {
            return Err(ConfigError::Conflict(format!(
                "default.replication.factor={} needs {} brokers; this broker runs alone \
                 (set controller.quorum.voters to run a cluster)",
                self.default_replication_factor, self.default_replication_factor
            )));
        }
        if self.broker_heartbeat_interval_ms >= self.broker_session_timeout_ms {
            return Err(ConfigError::Conflict(format!(
                "broker.heartbeat.interval.ms={} must be below broker.session.timeout.ms={}, \
                 or a healthy broker is fenced between two heartbeats",
                self.broker_heartbeat_interval_ms, self.broker_session_timeout_ms
            )));
        }
        if self.replica_fetch_wait_max_ms > self.replica_lag_time_max_ms {
            return Err(ConfigError::Conflict(format!(
                "replica.fetch.wait.max.ms={} must not exceed replica.lag.time.max.ms={}, \
                 or followers of an idle partition drop out of the ISR while they wait",
                self.replica_fetch_wait_max_ms, self.replica_lag_time_max_ms
            )));
        }
        resolve(&self.controller_listener, "controller.listener")?;
        if self.log.max_message_bytes >= self.socket_request_max_bytes {
            return Err(ConfigError::Conflict(format!(
                "message.max.bytes={} must be below socket.request.max.bytes={}",
                self.log.max_message_bytes, self.socket_request_max_bytes
            )));
        }
        self.listener.bind_addr()?;
        if let Some(http) = &self.http_listener {
            resolve(http, "http.listener")?;
            for (key, other) in [
                ("listeners", &self.listener),
                ("controller.listener", &self.controller_listener),
            ] {
                if listeners_clash(http, other) {
                    return Err(ConfigError::Conflict(format!(
                        "http.listener={} and {key}={} bind the same port",
                        http.host_port(),
                        other.host_port()
                    )));
                }
            }
        }
        Ok(self)
    }
}

/// Whether two listeners would bind the same fixed port on a shared address: the same
/// host, or either of them every interface. Port 0 (any free port) never clashes.
fn listeners_clash(a: &Listener, b: &Listener) -> bool {
    let every_interface = |l: &Listener| {
        l.host.is_empty() || l.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
    };
    a.port != 0
        && a.port == b.port
        && (a.host == b.host || every_interface(a) || every_interface(b))
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses an integer within `[min, max]`.
pub fn parse_num(key: &str, value: &str, min: i64, max: i64) -> Result<i64> {
    let n: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not an integer"))?;
    if n < min || n > max {
        return Err(invalid(key, value, format!("must be from {min} to {max}")));
    }
    Ok(n)
}

pub fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

/// A retention time in `unit_ms` units; -1 means unlimited, as in Kafka.
fn retention(key: &str, value: &str, unit_ms: i64) -> Result<i64> {
    let n = parse_num(key, value, -1, i64::MAX / unit_ms)?;
    Ok(if n < 0 { -1 } else { n * unit_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        let mut p = Properties::default();
        for (k, v) in pairs {
            p.set(k, v);
        }
        p
    }

    #[test]
    fn defaults_are_kafkas() {
        let (c, ignored) = BrokerConfig::from_properties(&Properties::default()).unwrap();
        assert!(ignored.is_empty());
        assert_eq!(c.log.retention_ms, 7 * 24 * HOUR_MS);
        assert_eq!(c.log.segment_bytes, 1 << 30);
        assert_eq!(c.log.max_message_bytes, 1_048_588);
        assert_eq!(c.listener.port, 9092);
        assert_eq!(c.num_partitions, 1);
    }

    #[test]
    fn file_then_env_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(
            &path,
            "# comment\nlog.dirs=/a\nnum.partitions: 3\nlog.retention.hours=1\nzookeeper.connect=x\n",
        )
        .unwrap();
        let mut p = Properties::from_file(&path).unwrap();
        p.merge_env([
            ("TRIBUTARY_LOG_DIRS".to_string(), "/b".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ]);
        p.merge_overrides(&["num.partitions=5".to_string()])
            .unwrap();
        let (c, ignored) = BrokerConfig::from_properties(&p).unwrap();
        assert_eq!(c.log_dir, PathBuf::from("/b"));
        assert_eq!(c.num_partitions, 5);
        assert_eq!(c.log.retention_ms, HOUR_MS);
        assert_eq!(ignored, vec!["zookeeper.connect".to_string()]);
    }

    #[test]
    fn ms_keys_win_over_hours() {
        let p = props(&[("log.retention.hours", "1"), ("log.retention.ms", "5000")]);
        assert_eq!(
            BrokerConfig::from_properties(&p)
                .unwrap()
                .0
                .log
                .retention_ms,
            5000
        );
        let p = props(&[("log.retention.ms", "-1")]);
        assert_eq!(
            BrokerConfig::from_properties(&p)
                .unwrap()
                .0
                .log
                .retention_ms,
            -1
        );
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let err = BrokerConfig::from_properties(&props(&[("num.partitions", "zero")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("num.partitions") && err.contains("zero"),
            "{err}"
        );
        let err = BrokerConfig::from_properties(&props(&[("listeners", "SSL://:9093")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PLAINTEXT"), "{err}");
        let err = BrokerConfig::from_properties(&props(&[
            ("message.max.bytes", "2000"),
            ("socket.request.max.bytes", "1000"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("message.max.bytes") && err.contains("socket.request.max.bytes"),
            "{err}"
        );
        // A batch larger than a segment gets a segment of its own, as in Kafka.
        assert!(BrokerConfig::from_properties(&props(&[("log.segment.bytes", "1048576")])).is_ok());
        assert!(Properties::default()
            .merge_overrides(&["novalue".into()])
            .is_err());
    }

    #[test]
    fn http_listener_defaults_on_and_can_be_turned_off() {
        let c = cluster(&[], None);
        let http = c.http_listener.as_ref().expect("on by default");
        assert_eq!(http.host_port(), "0.0.0.0:9644");
        assert_eq!(c.http_listener, BrokerConfig::default().http_listener);
        assert_eq!(
            cluster(&[("http.listener", "127.0.0.1:0")], None)
                .http_listener
                .map(|l| l.host_port()),
            Some("127.0.0.1:0".to_string())
        );
        assert_eq!(
            cluster(&[("http.listener", ":8081")], None)
                .http_listener
                .map(|l| l.bind_addr().unwrap().port()),
            Some(8081)
        );
        assert_eq!(cluster(&[("http.listener", "")], None).http_listener, None);
        assert_eq!(
            cluster(&[("http.listener", "  ")], None).http_listener,
            None
        );
        let mut env = Properties::default();
        env.merge_env([(
            "TRIBUTARY_HTTP_LISTENER".to_string(),
            "[::1]:9000".to_string(),
        )]);
        let (c, ignored) = BrokerConfig::from_properties_with_hostname(&env, None).unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(c.http_listener.unwrap().host_port(), "[::1]:9000");

        for (value, needle) in [
            ("9644", "host:port"),
            ("http://0.0.0.0:9644", "scheme"),
            ("0.0.0.0:70000", "0 to 65535"),
            ("0.0.0.0:http", "0 to 65535"),
        ] {
            let err = cluster_err(&[("http.listener", value)]);
            assert!(
                err.contains("http.listener") && err.contains(needle),
                "{value}: {err}"
            );
        }
        // The same port as another listener of the broker.
        let err = cluster_err(&[("http.listener", ":9092")]);
        assert!(
            err.contains("http.listener=:9092") && err.contains("listeners="),
            "{err}"
        );
        let err = cluster_err(&[
            ("http.listener", "127.0.0.1:7000"),
            ("controller.listener", "0.0.0.0:7000"),
        ]);
        assert!(err.contains("controller.listener=0.0.0.0:7000"), "{err}");
        // Different hosts, or port 0, do not clash.
        cluster(
            &[
                ("listeners", "PLAINTEXT://127.0.0.1:9092"),
                ("http.listener", "127.0.0.2:9092"),
            ],
            None,
        );
        cluster(
            &[
                ("listeners", "PLAINTEXT://127.0.0.1:0"),
                ("http.listener", "127.0.0.1:0"),
            ],
            None,
        );
    }

    #[test]
    fn listener_forms() {
        let l = Listener::parse("listeners", "PLAINTEXT://127.0.0.1:0").unwrap();
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.1", 0));
        let l = Listener::parse("listeners", "PLAINTEXT://:9092").unwrap();
        assert_eq!(l.bind_addr().unwrap().port(), 9092);
        assert!(Listener::parse("listeners", "PLAINTEXT://a:1,PLAINTEXT://b:2").is_err());
        assert!(Listener::parse("listeners", "PLAINTEXT://host:99999").is_err());
    }

    fn cluster(pairs: &[(&str, &str)], hostname: Option<&str>) -> BrokerConfig {
        BrokerConfig::from_properties_with_hostname(&props(pairs), hostname)
            .unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
            .0
    }

    fn cluster_err(pairs: &[(&str, &str)]) -> String {
        BrokerConfig::from_properties_with_hostname(&props(pairs), None)
            .unwrap_err()
            .to_string()
    }

    const VOTERS: &str = "0@tributary-0.tb:9093, 1@tributary-1.tb:9093,2@tributary-2.tb:9093";

    #[test]
    fn broker_id_is_the_trailing_ordinal_of_the_host_name() {
        assert_eq!(broker_id_from_hostname("tributary-2"), Some(2));
        assert_eq!(broker_id_from_hostname("my-kafka-10"), Some(10));
        assert_eq!(
            broker_id_from_hostname("tributary-0.tributary.ns.svc"),
            Some(0)
        );
        assert_eq!(broker_id_from_hostname("node-007\n"), Some(7));
        assert_eq!(broker_id_from_hostname("tributary"), None);
        assert_eq!(broker_id_from_hostname("ubuntu2204"), None);
        assert_eq!(broker_id_from_hostname("tributary-"), None);
        assert_eq!(broker_id_from_hostname("tributary-2a"), None);
        assert_eq!(broker_id_from_hostname("host.tributary-2"), None);
        assert_eq!(broker_id_from_hostname("big-99999999999"), None);
        assert_eq!(broker_id_from_hostname(""), None);

        let voters = ("controller.quorum.voters", VOTERS);
        assert_eq!(cluster(&[voters], Some("tributary-2")).broker_id, 2);
        assert_eq!(cluster(&[voters], Some("laptop")).broker_id, 0);
        assert_eq!(cluster(&[voters], None).broker_id, 0);
        let five = cluster(&[voters, ("broker.id", "5")], Some("tributary-2"));
        assert_eq!(five.broker_id, 5);
        assert!(!five.is_voter());
        let four = cluster(&[voters, ("node.id", "4")], Some("tributary-2"));
        assert_eq!(four.broker_id, 4);
        // A standalone broker keeps id 0, so a machine's name cannot change it.
        assert_eq!(cluster(&[], Some("tributary-2")).broker_id, 0);
    }

    #[test]
    fn cluster_defaults() {
        let c = cluster(&[], None);
        assert!(c.is_standalone() && c.is_voter());
        assert!(c.controller_quorum_voters.is_empty());
        assert_eq!(c.controller_listener.host_port(), "127.0.0.1:0");
        assert_eq!(c.broker_rack, None);
        assert_eq!(c.broker_session_timeout_ms, 1000);
        assert_eq!(c.broker_heartbeat_interval_ms, 200);
        assert_eq!(c.replica_lag_time_max_ms, 10_000);
        assert_eq!(c.replica_fetch_wait_max_ms, 500);
        assert_eq!(c.replica_fetch_max_bytes, 1_048_576);
        assert_eq!(c.replica_fetch_response_max_bytes, 10_485_760);
        assert_eq!(c.replica_fetch_backoff_ms, 100);
        assert_eq!(c.min_insync_replicas, 1);
        assert!(c.controlled_shutdown_enable);
        assert_eq!(c.controlled_shutdown_timeout_ms, 30_000);
        assert!(c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_seconds, 300);
        assert_eq!(c.leader_imbalance_check_interval_ms(), 300_000);
        assert_eq!(c.controller_election_timeout_range_ms(), (500, 1000));
        // Defaults and from_properties agree on everything both set.
        let d = BrokerConfig::default();
        assert_eq!(d.broker_session_timeout_ms, c.broker_session_timeout_ms);
        assert_eq!(d.controller_listener, c.controller_listener);
    }

    #[test]
    fn cluster_keys_are_read() {
        let c = cluster(
            &[
                ("broker.rack", " us-east-1a "),
                ("broker.session.timeout.ms", "600"),
                ("broker.heartbeat.interval.ms", "100"),
                ("replica.lag.time.max.ms", "2000"),
                ("replica.fetch.wait.max.ms", "2000"),
                ("replica.fetch.max.bytes", "1024"),
                ("replica.fetch.response.max.bytes", "4096"),
                ("replica.fetch.backoff.ms", "0"),
                ("min.insync.replicas", "2"),
                ("unclean.leader.election.enable", "false"),
                ("controlled.shutdown.enable", "false"),
                ("controlled.shutdown.timeout.ms", "5000"),
                ("auto.leader.rebalance.enable", "false"),
                ("leader.imbalance.check.interval.seconds", "10"),
                ("controller.election.timeout.ms", "300"),
            ],
            None,
        );
        assert_eq!(c.broker_rack.as_deref(), Some("us-east-1a"));
        assert_eq!(
            (c.broker_session_timeout_ms, c.broker_heartbeat_interval_ms),
            (600, 100)
        );
        assert_eq!(
            (c.replica_lag_time_max_ms, c.replica_fetch_wait_max_ms),
            (2000, 2000)
        );
        assert_eq!(
            (
                c.replica_fetch_max_bytes,
                c.replica_fetch_response_max_bytes
            ),
            (1024, 4096)
        );
        assert_eq!(c.replica_fetch_backoff_ms, 0);
        assert_eq!(c.min_insync_replicas, 2);
        assert!(!c.controlled_shutdown_enable);
        assert_eq!(c.controlled_shutdown_timeout_ms, 5000);
        assert!(!c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_seconds, 10);
        assert_eq!(
            c.leader_imbalance_check_interval_ms(),
            0,
            "rebalance is off"
        );
        assert_eq!(c.controller_election_timeout_range_ms(), (300, 600));
        assert_eq!(cluster(&[("broker.rack", "")], None).broker_rack, None);
    }

    #[test]
    fn quorum_voters_parse_like_kafka() {
        let c = cluster(
            &[("controller.quorum.voters", VOTERS), ("broker.id", "1")],
            None,
        );
        assert_eq!(
            c.controller_quorum_voters,
            BTreeMap::from([
                (0, "tributary-0.tb:9093".to_string()),
                (1, "tributary-1.tb:9093".to_string()),
                (2, "tributary-2.tb:9093".to_string()),
            ])
        );
        assert!(!c.is_standalone() && c.is_voter());
        let one = cluster(&[("controller.quorum.voters", "0@[::1]:9093")], None);
        assert_eq!(one.controller_quorum_voters[&0], "[::1]:9093");
        assert!(cluster(&[("controller.quorum.voters", " ")], None).is_standalone());
        let five = "0@a:1,1@a:2,2@a:3,3@a:4,4@a:5";
        let c = cluster(
            &[("controller.quorum.voters", five), ("broker.id", "7")],
            None,
        );
        assert!(!c.is_voter(), "broker 7 is not among the voters");

        for (value, needle) in [
            ("0@a:1,1@a:2", "1, 3 or 5"),
            ("0@a:1,1@a:2,2@a:3,3@a:4", "tolerate no more"),
            ("0@a:1,0@b:1,2@c:1", "appears twice"),
            ("0@a:1,1@a:1,2@c:1", "same address"),
            ("0@a:1,1:a:2,2@a:3", "id@host:port"),
            ("x@a:1", "broker id"),
            ("-1@a:1", "broker id"),
            ("0@a", "id@host:port"),
            ("0@:9093", "id@host:port"),
            ("0@a:0", "id@host:port"),
            ("0@a:70000", "id@host:port"),
            ("0@a:1,", "id@host:port"),
        ] {
            let err = cluster_err(&[("controller.quorum.voters", value)]);
            assert!(
                err.contains("controller.quorum.voters") && err.contains(needle),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn controller_listener_defaults() {
        // A voter serves on its entry's port on every interface and advertises the entry.
        let c = cluster(&[("controller.quorum.voters", VOTERS)], Some("tributary-2"));
        assert_eq!(c.broker_id, 2);
        assert_eq!(c.controller_listener.host_port(), "0.0.0.0:9093");
        assert_eq!(
            c.controller_advertised_listener.host_port(),
            "tributary-2.tb:9093"
        );
        // A broker outside the voters: port 9093, advertised under its Kafka host.
        let c = cluster(
            &[
                ("controller.quorum.voters", VOTERS),
                ("broker.id", "3"),
                ("listeners", "PLAINTEXT://10.0.0.7:9092"),
            ],
            Some("ignored"),
        );
        assert_eq!(c.controller_listener.host_port(), "0.0.0.0:9093");
        assert_eq!(
            c.controller_advertised_listener.host_port(),
            "10.0.0.7:9093"
        );
        let c = cluster(
            &[
                ("controller.quorum.voters", VOTERS),
                ("broker.id", "3"),
                ("listeners", "PLAINTEXT://:9092"),
                ("controller.listener", ":7000"),
            ],
            Some("tributary-3"),
        );
        assert_eq!(c.controller_listener.host_port(), ":7000");
        assert_eq!(
            c.controller_advertised_listener.host_port(),
            "tributary-3:7000"
        );
        let c = cluster(
            &[
                ("controller.quorum.voters", VOTERS),
                ("broker.id", "3"),
                ("advertised.listeners", "PLAINTEXT://kafka-3.example:9092"),
            ],
            Some("tributary-3"),
        );
        assert_eq!(
            c.controller_advertised_listener.host_port(),
            "kafka-3.example:9093"
        );
        // Standalone: loopback, any port (the server advertises the bound one).
        let c = cluster(&[("listeners", "PLAINTEXT://127.0.0.1:9092")], None);
        assert_eq!(c.controller_listener.host_port(), "127.0.0.1:0");
        assert_eq!(c.controller_advertised_listener.host_port(), "127.0.0.1:0");
        // Explicit values win, including over the voter entry (a proxy in front of it).
        let c = cluster(
            &[
                ("controller.quorum.voters", "0@127.0.0.1:4000"),
                ("controller.listener", "127.0.0.1:5000"),
                ("controller.advertised.listener", "127.0.0.1:4000"),
            ],
            None,
        );
        assert_eq!(c.controller_listener.host_port(), "127.0.0.1:5000");
        assert_eq!(
            c.controller_advertised_listener.host_port(),
            "127.0.0.1:4000"
        );
        assert_eq!(
            cluster(&[("controller.listener", "[::1]:5000")], None)
                .controller_listener
                .host_port(),
            "[::1]:5000"
        );

        let err = cluster_err(&[("controller.listener", "CONTROLLER://:9093")]);
        assert!(
            err.contains("controller.listener") && err.contains("scheme"),
            "{err}"
        );
        let err = cluster_err(&[("controller.advertised.listener", ":9093")]);
        assert!(err.contains("host is required"), "{err}");
        let err = cluster_err(&[("controller.listener", "localhost")]);
        assert!(err.contains("host:port"), "{err}");
    }

    #[test]
    fn cluster_keys_that_conflict_are_refused() {
        let err = cluster_err(&[
            ("broker.session.timeout.ms", "500"),
            ("broker.heartbeat.interval.ms", "500"),
        ]);
        assert!(
            err.contains("broker.heartbeat.interval.ms=500")
                && err.contains("broker.session.timeout.ms=500"),
            "{err}"
        );
        let err = cluster_err(&[
            ("replica.lag.time.max.ms", "1000"),
            ("replica.fetch.wait.max.ms", "1001"),
        ]);
        assert!(
            err.contains("replica.fetch.wait.max.ms=1001")
                && err.contains("replica.lag.time.max.ms=1000"),
            "{err}"
        );
        let err = cluster_err(&[("unclean.leader.election.enable", "true")]);
        assert!(err.contains("not supported"), "{err}");
        let err = cluster_err(&[("unclean.leader.election.enable", "maybe")]);
        assert!(err.contains("true or false"), "{err}");
        let err = cluster_err(&[("controller.election.timeout.ms", "150")]);
        assert!(err.contains("at least 200"), "{err}");
        let err = cluster_err(&[("min.insync.replicas", "0")]);
        assert!(err.contains("min.insync.replicas"), "{err}");
        // A replication factor above 1 needs a cluster.
        let err = cluster_err(&[("default.replication.factor", "3")]);
        assert!(err.contains("controller.quorum.voters"), "{err}");
        let c = cluster(
            &[
                ("default.replication.factor", "3"),
                ("controller.quorum.voters", VOTERS),
            ],
            None,
        );
        assert_eq!(c.default_replication_factor, 3);
    }

    #[test]
    fn every_cluster_key_is_known() {
        let p = props(&[
            ("controller.quorum.voters", VOTERS),
            ("controller.listener", "0.0.0.0:9093"),
            ("controller.advertised.listener", "h:9093"),
            ("broker.rack", "r"),
            ("broker.session.timeout.ms", "1500"),
            ("broker.heartbeat.interval.ms", "250"),
            ("replica.lag.time.max.ms", "10000"),
            ("replica.fetch.wait.max.ms", "500"),
            ("replica.fetch.max.bytes", "1048576"),
            ("replica.fetch.response.max.bytes", "10485760"),
            ("replica.fetch.backoff.ms", "100"),
            ("min.insync.replicas", "1"),
            ("unclean.leader.election.enable", "false"),
            ("controlled.shutdown.enable", "true"),
            ("controlled.shutdown.timeout.ms", "30000"),
            ("auto.leader.rebalance.enable", "true"),
            ("leader.imbalance.check.interval.seconds", "300"),
            ("controller.election.timeout.ms", "500"),
        ]);
        let (_, ignored) = BrokerConfig::from_properties_with_hostname(&p, None).unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
    }
}
