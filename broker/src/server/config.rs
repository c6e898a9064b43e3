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
use std::net::{SocketAddr, ToSocketAddrs};
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

    /// Adds every `TRIBUTARY_*` variable from `vars` (pass `std::env::vars()` from `main`).
    pub fn merge_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        for (name, value) in vars {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                if key.is_empty() {
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
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        (host, self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ConfigError::Invalid {
                key: "listeners".into(),
                value: format!("{host}:{}", self.port),
                reason: "host does not resolve".into(),
            })
    }
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
    /// `group.min.session.timeout.ms`, `group.max.session.timeout.ms`,
    /// `group.initial.rebalance.delay.ms`, `group.max.size`.
    pub group: crate::group::membership::GroupConfig,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`: segment size of `__consumer_offsets` (compaction only
    /// cleans rolled segments).
    pub offsets_topic_segment_bytes: u64,
    /// `offset.metadata.max.bytes`: longest metadata of a committed offset; longer ones get
    /// OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes` (or the Tributary-only `offsets.retention.ms`, which
    /// overrides it): how long the committed offsets of an empty group are kept, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are removed.
    pub offsets_retention_check_interval_ms: u64,
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
            group: crate::group::membership::GroupConfig::default(),
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 104_857_600,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
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
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.size",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "offset.metadata.max.bytes",
    "offsets.retention.minutes",
    "offsets.retention.ms",
    "offsets.retention.check.interval.ms",
];

impl BrokerConfig {
    /// Parses and validates properties. Returns the config and the keys that were ignored.
    pub fn from_properties(props: &Properties) -> Result<(BrokerConfig, Vec<String>)> {
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

    /// Checks the values that only conflict in combination.
    pub fn validate(self) -> Result<BrokerConfig> {
        if self.default_replication_factor != 1 {
            return Err(ConfigError::Conflict(format!(
                "default.replication.factor={} needs {} brokers; this broker runs alone",
                self.default_replication_factor, self.default_replication_factor
            )));
        }
        if self.log.max_message_bytes >= self.socket_request_max_bytes {
            return Err(ConfigError::Conflict(format!(
                "message.max.bytes={} must be below socket.request.max.bytes={}",
                self.log.max_message_bytes, self.socket_request_max_bytes
            )));
        }
        self.listener.bind_addr()?;
        Ok(self)
    }
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
    fn listener_forms() {
        let l = Listener::parse("listeners", "PLAINTEXT://127.0.0.1:0").unwrap();
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.1", 0));
        let l = Listener::parse("listeners", "PLAINTEXT://:9092").unwrap();
        assert_eq!(l.bind_addr().unwrap().port(), 9092);
        assert!(Listener::parse("listeners", "PLAINTEXT://a:1,PLAINTEXT://b:2").is_err());
        assert!(Listener::parse("listeners", "PLAINTEXT://host:99999").is_err());
    }
}
