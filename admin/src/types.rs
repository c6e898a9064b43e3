//! The values [`Admin`](crate::Admin) takes and returns: plain data in Kafka's vocabulary,
//! with no protocol types in them.
//!
//! Every type derives serde with camelCase field names, the convention of Kubernetes
//! object status, so that an operator can report them as they are.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One partition of one topic. Orders by topic, then partition; displays as Kafka does,
/// `orders-3`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The cluster: its id, the active controller and its brokers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDescription {
    /// Empty when the broker reports none.
    pub cluster_id: String,
    /// The active controller, `None` while there is none (an election is in progress).
    pub controller_id: Option<i32>,
    /// Every broker the cluster knows, fenced ones included, sorted by id.
    pub brokers: Vec<BrokerDescription>,
}

/// One broker as the cluster describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerDescription {
    pub id: i32,
    /// The advertised host; may be empty for a fenced broker known only from replica lists.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Registered but not admitted by the controller: stopped, crashed or cut off. A fenced
    /// broker leads no partition and takes no new replicas.
    pub fenced: bool,
}

impl BrokerDescription {
    /// `host:port`, as clients connect to it.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A topic as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicDescription {
    pub name: String,
    /// Nil when the broker does not report topic ids (before Metadata v10).
    pub topic_id: Uuid,
    /// Kafka's own topics, such as `__consumer_offsets`.
    pub internal: bool,
    /// Sorted by partition.
    pub partitions: Vec<PartitionDescription>,
}

impl TopicDescription {
    /// The number of replicas of the first partition, as `kafka-topics.sh` reports the
    /// replication factor; 0 for a topic without partitions.
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// One partition of a [`TopicDescription`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionDescription {
    pub partition: i32,
    /// `None` while the partition has no leader.
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    /// The replicas, preferred leader first.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas on brokers that are offline (fenced, or with a failed log directory).
    pub offline_replicas: Vec<i32>,
}

/// A topic to create.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker's `num.partitions` (KIP-464).
    pub partitions: i32,
    /// -1: the broker's `default.replication.factor` (KIP-464).
    pub replication_factor: i16,
    /// Topic config overrides, such as `retention.ms`.
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` and `replication_factor` (either -1 for the broker's
    /// default) and no config overrides.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    /// Adds a config override.
    pub fn with_config(mut self, name: impl Into<String>, value: impl Into<String>) -> NewTopic {
        self.configs.insert(name.into(), value.into());
        self
    }
}

/// One config of a resource, as DescribeConfigs reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for a sensitive config or one without a value.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Set on the topic itself, rather than inherited from the broker or the default.
    pub fn is_topic_override(&self) -> bool {
        self.source == ConfigSource::DynamicTopic
    }
}

/// Where a config's value comes from: Kafka's `ConfigEntry.ConfigSource`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfigSource {
    /// Set on the topic (`DYNAMIC_TOPIC_CONFIG`).
    DynamicTopic,
    /// Set dynamically for this broker (`DYNAMIC_BROKER_CONFIG`).
    DynamicBroker,
    /// Set dynamically as the default of every broker (`DYNAMIC_DEFAULT_BROKER_CONFIG`).
    DynamicDefaultBroker,
    /// From the broker's configuration file (`STATIC_BROKER_CONFIG`).
    StaticBroker,
    /// Kafka's default (`DEFAULT_CONFIG`).
    Default,
    /// A broker logger level (`DYNAMIC_BROKER_LOGGER_CONFIG`).
    DynamicBrokerLogger,
    /// A client metrics subscription (`CLIENT_METRICS_CONFIG`).
    ClientMetrics,
    /// Set on a group (`GROUP_CONFIG`).
    Group,
    /// A source this client does not know (`UNKNOWN`).
    Unknown,
}

impl ConfigSource {
    /// The source of a DescribeConfigs `config_source` code.
    pub fn from_code(code: i8) -> ConfigSource {
        match code {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            7 => ConfigSource::ClientMetrics,
            8 => ConfigSource::Group,
            _ => ConfigSource::Unknown,
        }
    }

    /// Kafka's name, as `kafka-configs.sh` prints it: `DYNAMIC_TOPIC_CONFIG`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::ClientMetrics => "CLIENT_METRICS_CONFIG",
            ConfigSource::Group => "GROUP_CONFIG",
            ConfigSource::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of an IncrementalAlterConfigs request (`AlterConfigOp`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AlterConfigOp {
    /// Set an override.
    Set { name: String, value: String },
    /// Remove an override: the config reverts to the broker's value or the default.
    Delete { name: String },
}

impl AlterConfigOp {
    /// The config this operation changes.
    pub fn name(&self) -> &str {
        match self {
            AlterConfigOp::Set { name, .. } | AlterConfigOp::Delete { name } => name,
        }
    }
}

/// A partition reassignment in progress (ListPartitionReassignments).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OngoingReassignment {
    pub tp: TopicPartition,
    /// The replica set during the move: the target plus the replicas being removed.
    pub replicas: Vec<i32>,
    /// Replicas being added, catching up before they join the ISR.
    pub adding: Vec<i32>,
    /// Replicas removed once the added ones have caught up.
    pub removing: Vec<i32>,
}

/// The kind of leader election (`ElectionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// Move leadership to the preferred (first) replica, if it is in the ISR.
    Preferred,
    /// Elect a replica outside the ISR when no ISR member is alive; may lose data.
    Unclean,
}

/// A successful election of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Election {
    /// The leader changed.
    Elected,
    /// The partition was led as asked already (`ELECTION_NOT_NEEDED`).
    NotNeeded,
}

/// Which offset [`Admin::list_offsets`](crate::Admin::list_offsets) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the high watermark).
    Latest,
    /// The first offset whose record timestamp is at or after this many milliseconds since
    /// the Unix epoch, or the log end offset when there is none.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The ListOffsets timestamp: -2 earliest, -1 latest.
    pub(crate) fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// A group as ListGroups lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupListing {
    pub group_id: String,
    /// `consumer` for consumer groups; empty for a group that only commits offsets.
    pub protocol_type: String,
    /// `Stable`, `Empty`, ...; `None` from brokers older than ListGroups v4.
    pub state: Option<String>,
}

/// A group as DescribeGroups describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupDescription {
    pub group_id: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead`.
    pub state: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignor chosen for the current generation (`range`, `cooperative-sticky`);
    /// empty while the group has none.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// One member of a [`GroupDescription`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberDescription {
    pub member_id: String,
    /// Set for static members (`group.instance.id`, KIP-345).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The partitions assigned to the member, sorted; decoded for consumer groups only
    /// (empty for other protocol types and for bytes that do not decode).
    pub assignment: Vec<TopicPartition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_partitions_order_by_topic_then_partition_and_display_like_kafka() {
        let mut tps = [
            TopicPartition::new("b", 0),
            TopicPartition::new("a", 10),
            TopicPartition::new("a", 2),
        ];
        tps.sort();
        assert_eq!(
            tps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["a-2", "a-10", "b-0"]
        );
    }

    #[test]
    fn config_sources_round_trip_their_codes_and_names() {
        for code in 0..=9 {
            let source = ConfigSource::from_code(code);
            assert_eq!(source == ConfigSource::Unknown, !(1..=8).contains(&code));
        }
        assert_eq!(ConfigSource::from_code(1).as_str(), "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(ConfigSource::from_code(5).to_string(), "DEFAULT_CONFIG");
        let entry = ConfigEntry {
            name: "retention.ms".into(),
            value: Some("1000".into()),
            source: ConfigSource::DynamicTopic,
            read_only: false,
            sensitive: false,
        };
        assert!(entry.is_topic_override());
    }

    #[test]
    fn status_types_serialize_in_camel_case() {
        let tp = TopicPartition::new("orders", 1);
        assert_eq!(
            serde_json::to_string(&tp).unwrap(),
            r#"{"topic":"orders","partition":1}"#
        );
        let listing = GroupListing {
            group_id: "g".into(),
            protocol_type: "consumer".into(),
            state: Some("Stable".into()),
        };
        let json = serde_json::to_value(&listing).unwrap();
        assert_eq!(json["groupId"], "g");
        assert_eq!(json["protocolType"], "consumer");
    }
}
