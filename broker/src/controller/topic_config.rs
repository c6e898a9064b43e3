//! Topic-level configuration: the Kafka keys a topic may override, their validation, and
//! the effective [`LogConfig`] of a topic (its overrides on top of the broker's `log.*`
//! defaults).
//!
//! Values are kept as the strings the client sent, like Kafka's `TopicConfig`, so that
//! `DescribeConfigs` shows them back unchanged.

use std::collections::BTreeMap;

use crate::log::LogConfig;

/// The overrides set on one topic, by Kafka key.
pub type TopicConfigs = BTreeMap<String, String>;

/// One topic configuration key: its name, the broker key that sets its default, and how a
/// value is checked.
struct Key {
    name: &'static str,
    broker_key: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// An integer at least this large.
    Long(i64),
    /// One of these words.
    Choice(&'static [&'static str]),
    Bool,
}

const KEYS: &[Key] = &[
    Key {
        name: "cleanup.policy",
        broker_key: "log.cleanup.policy",
        kind: Kind::Choice(&["delete"]),
    },
    Key {
        name: "compression.type",
        broker_key: "compression.type",
        kind: Kind::Choice(&["producer"]),
    },
    Key {
        name: "flush.messages",
        broker_key: "log.flush.interval.messages",
        kind: Kind::Long(1),
    },
    Key {
        name: "flush.ms",
        broker_key: "log.flush.interval.ms",
        kind: Kind::Long(0),
    },
    Key {
        name: "index.interval.bytes",
        broker_key: "log.index.interval.bytes",
        kind: Kind::Long(0),
    },
    Key {
        name: "max.message.bytes",
        broker_key: "message.max.bytes",
        kind: Kind::Long(0),
    },
    Key {
        name: "message.timestamp.type",
        broker_key: "log.message.timestamp.type",
        kind: Kind::Choice(&["CreateTime"]),
    },
    Key {
        name: "min.insync.replicas",
        broker_key: "min.insync.replicas",
        kind: Kind::Long(1),
    },
    Key {
        name: "retention.bytes",
        broker_key: "log.retention.bytes",
        kind: Kind::Long(-1),
    },
    Key {
        name: "retention.ms",
        broker_key: "log.retention.ms",
        kind: Kind::Long(-1),
    },
    Key {
        name: "segment.bytes",
        broker_key: "log.segment.bytes",
        kind: Kind::Long(14),
    },
    Key {
        name: "segment.ms",
        broker_key: "log.roll.ms",
        kind: Kind::Long(1),
    },
    Key {
        name: "unclean.leader.election.enable",
        broker_key: "unclean.leader.election.enable",
        kind: Kind::Bool,
    },
];

/// Why a topic configuration was refused; shown to the client as the error message of
/// `INVALID_CONFIG`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    #[error("unknown topic config {0:?}")]
    Unknown(String),
    #[error("invalid value {value:?} for topic config {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// Checks one `key=value` override.
pub fn validate(key: &str, value: &str) -> Result<(), TopicConfigError> {
    let spec = KEYS
        .iter()
        .find(|k| k.name == key)
        .ok_or_else(|| TopicConfigError::Unknown(key.to_string()))?;
    let invalid = |reason: String| TopicConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    match spec.kind {
        Kind::Long(min) => {
            let n: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("not an integer".into()))?;
            if n < min {
                return Err(invalid(format!("must be at least {min}")));
            }
            if matches!(key, "max.message.bytes" | "min.insync.replicas") && n > i32::MAX as i64 {
                return Err(invalid(format!("must be at most {}", i32::MAX)));
            }
        }
        Kind::Choice(words) => {
            if !words.contains(&value.trim()) {
                let supported = words.join(", ");
                return Err(invalid(format!("this broker supports only: {supported}")));
            }
        }
        Kind::Bool => {
            if !matches!(value.trim(), "true" | "false") {
                return Err(invalid("expected true or false".into()));
            }
        }
    }
    Ok(())
}

/// Checks every override.
pub fn validate_all(configs: &TopicConfigs) -> Result<(), TopicConfigError> {
    configs.iter().try_for_each(|(k, v)| validate(k, v))
}

fn long(configs: &TopicConfigs, key: &str) -> Option<i64> {
    configs.get(key).and_then(|v| v.trim().parse().ok())
}

/// The topic's log configuration: overrides on top of the broker defaults. Overrides are
/// validated before they are stored, so a value that does not parse cannot occur here.
pub fn log_config(defaults: &LogConfig, configs: &TopicConfigs) -> LogConfig {
    let mut c = defaults.clone();
    if let Some(v) = long(configs, "segment.bytes") {
        c.segment_bytes = v as u64;
    }
    if let Some(v) = long(configs, "segment.ms") {
        c.segment_ms = v;
    }
    if let Some(v) = long(configs, "retention.ms") {
        c.retention_ms = v;
    }
    if let Some(v) = long(configs, "retention.bytes") {
        c.retention_bytes = v;
    }
    if let Some(v) = long(configs, "index.interval.bytes") {
        c.index_interval_bytes = v.min(u32::MAX as i64) as u32;
    }
    if let Some(v) = long(configs, "flush.messages") {
        c.flush_messages = v as u64;
    }
    if let Some(v) = long(configs, "flush.ms") {
        c.flush_ms = v;
    }
    if let Some(v) = long(configs, "max.message.bytes") {
        c.max_message_bytes = v as u32;
    }
    c
}

/// `min.insync.replicas` of a topic: its override, else `broker_default` (the broker's
/// `min.insync.replicas`, [`BrokerConfig::min_insync_replicas`]). With acks=all, a write
/// is refused with `NOT_ENOUGH_REPLICAS` while the ISR is smaller than this.
///
/// [`BrokerConfig::min_insync_replicas`]: crate::server::config::BrokerConfig::min_insync_replicas
pub fn min_insync_replicas(broker_default: i32, configs: &TopicConfigs) -> i32 {
    // Validation bounds the override to 1..=i32::MAX, so the conversion cannot fail for a
    // stored value; the fallback covers a value stored before that bound existed.
    long(configs, "min.insync.replicas")
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or(broker_default)
}

/// One row of `DescribeConfigs` for a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    /// Set on the topic rather than inherited from the broker.
    pub is_override: bool,
    /// The broker key the default comes from.
    pub broker_key: &'static str,
}

/// Every topic config with its effective value, in name order; `min_insync_replicas` is
/// the broker's default for that key.
pub fn describe(
    defaults: &LogConfig,
    min_insync_replicas: i32,
    configs: &TopicConfigs,
) -> Vec<ConfigEntry> {
    let never = |v: u64| {
        if v == u64::MAX {
            i64::MAX.to_string()
        } else {
            v.to_string()
        }
    };
    KEYS.iter()
        .map(|k| {
            let default = match k.name {
                "cleanup.policy" => "delete".to_string(),
                "compression.type" => "producer".to_string(),
                "flush.messages" => never(defaults.flush_messages),
                "flush.ms" => defaults.flush_ms.to_string(),
                "index.interval.bytes" => defaults.index_interval_bytes.to_string(),
                "max.message.bytes" => defaults.max_message_bytes.to_string(),
                "message.timestamp.type" => "CreateTime".to_string(),
                "min.insync.replicas" => min_insync_replicas.to_string(),
                "retention.bytes" => defaults.retention_bytes.to_string(),
                "retention.ms" => defaults.retention_ms.to_string(),
                "segment.bytes" => defaults.segment_bytes.to_string(),
                "segment.ms" => defaults.segment_ms.to_string(),
                "unclean.leader.election.enable" => "false".to_string(),
                other => unreachable!("topic config {other} has no default"),
            };
            match configs.get(k.name) {
                Some(v) => ConfigEntry {
                    name: k.name,
                    value: v.clone(),
                    is_override: true,
                    broker_key: k.broker_key,
                },
                None => ConfigEntry {
                    name: k.name,
                    value: default,
                    is_override: false,
                    broker_key: k.broker_key,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "60000").is_ok());
        assert!(matches!(
            validate("retention.ms", "-2"),
            Err(TopicConfigError::Invalid { .. })
        ));
        assert!(matches!(
            validate("retention.ms", "soon"),
            Err(TopicConfigError::Invalid { .. })
        ));
        assert_eq!(
            validate("no.such.key", "1"),
            Err(TopicConfigError::Unknown("no.such.key".into()))
        );
        let err = validate("cleanup.policy", "compact")
            .unwrap_err()
            .to_string();
        assert!(err.contains("delete"), "{err}");
        assert!(validate("segment.bytes", "13").is_err());
        assert!(validate("unclean.leader.election.enable", "yes").is_err());
        assert!(validate("min.insync.replicas", "2").is_ok());
        assert!(validate("min.insync.replicas", "0").is_err());
        assert!(validate("min.insync.replicas", "2147483648").is_err());
    }

    #[test]
    fn min_insync_replicas_override_wins_over_broker_default() {
        let mut configs = TopicConfigs::new();
        assert_eq!(min_insync_replicas(2, &configs), 2);
        assert_eq!(min_insync_replicas(1, &configs), 1);
        configs.insert("min.insync.replicas".into(), "3".into());
        assert_eq!(min_insync_replicas(2, &configs), 3);
        assert_eq!(min_insync_replicas(1, &configs), 3);
        assert_eq!(min_insync_replicas(1, &configs), 3);
    }

    #[test]
    fn overrides_win_over_defaults() {
        let defaults = LogConfig::default();
        let mut configs = TopicConfigs::new();
        configs.insert("retention.ms".into(), "1000".into());
        configs.insert("segment.bytes".into(), "4096".into());
        let c = log_config(&defaults, &configs);
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.segment_bytes, 4096);
        assert_eq!(c.retention_bytes, defaults.retention_bytes);
        let rows = describe(&defaults, 1, &configs);
        let retention = rows.iter().find(|r| r.name == "retention.ms").unwrap();
        assert!(retention.is_override);
        assert_eq!(retention.value, "1000");
        let bytes = rows.iter().find(|r| r.name == "retention.bytes").unwrap();
        assert!(!bytes.is_override);
        assert_eq!(bytes.value, "-1");
    }
}
