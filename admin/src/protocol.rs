//! Small conversions between this crate's types and kafka-protocol's, and the Kafka error
//! codes the client acts on.

use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

/// Kafka error codes (`Errors.java`) that the client branches on.
pub(crate) mod code {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

pub(crate) fn ids(brokers: &[BrokerId]) -> Vec<i32> {
    brokers.iter().map(|b| b.0).collect()
}

#[cfg(test)]
mod tests {
    use super::code;
    use crate::error_name;

    #[test]
    fn codes_carry_kafkas_names() {
        for (c, name) in [
            (code::UNKNOWN_TOPIC_OR_PARTITION, "UnknownTopicOrPartition"),
            (code::LEADER_NOT_AVAILABLE, "LeaderNotAvailable"),
            (code::NOT_LEADER_OR_FOLLOWER, "NotLeaderOrFollower"),
            (
                code::COORDINATOR_LOAD_IN_PROGRESS,
                "CoordinatorLoadInProgress",
            ),
            (code::COORDINATOR_NOT_AVAILABLE, "CoordinatorNotAvailable"),
            (code::NOT_COORDINATOR, "NotCoordinator"),
            (code::NOT_CONTROLLER, "NotController"),
            (code::GROUP_ID_NOT_FOUND, "GroupIdNotFound"),
            (code::FENCED_LEADER_EPOCH, "FencedLeaderEpoch"),
            (code::UNKNOWN_LEADER_EPOCH, "UnknownLeaderEpoch"),
            (code::ELECTION_NOT_NEEDED, "ElectionNotNeeded"),
            (code::UNKNOWN_TOPIC_ID, "UnknownTopicId"),
        ] {
            assert_eq!(error_name(c), name);
        }
    }
}
