//! Cluster metadata and the controller quorum that keeps it.
//!
//! The metadata (brokers, topics with their partitions' replicas, leaders, ISRs and epochs,
//! topic configs, producer id blocks) is a [`MetadataImage`], the state machine of a Raft
//! log kept by the controller voters ([`node::ControllerNode`], openraft over gRPC). Every
//! broker applies committed images to its partitions; changes reach the log as
//! [`Command`]s prepared from client requests ([`prepare`]) and applied deterministically
//! ([`image::apply`]). See `docs/design/cluster.md`.
//!
//! ```text
//! CreateTopics / AlterConfigs / AlterPartition / ... (any broker)
//!        │ prepare (validation, placement)
//!        ▼
//! ControllerNode::submit ──gRPC──> active controller ──Raft──> every voter: apply(image, command)
//!        │                                                      │
//!        └─ returns once this broker applied the change <───────┘ image watch
//! ```

pub mod duties;
pub mod image;
pub mod node;
pub mod placement;
pub mod prepare;
pub mod raft;
pub mod service;
pub mod topic_config;

use uuid::Uuid;

pub use image::{
    BrokerRecord, Command, CommandError, MetadataImage, Outcome, PartitionRecord, TopicRecord,
    NO_LEADER,
};
pub use topic_config::TopicConfigs;

/// Name of the directory, inside `log.dirs`, that holds the Raft metadata log (`raft/`).
pub const METADATA_DIR: &str = "__cluster_metadata";

/// Producer ids per block handed to a broker (Kafka's `ProducerIdManager` block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// A cluster id in Kafka's form: a random UUID as 22 characters of URL-safe base64.
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| {
            let shift = 128i32 - 6 * (i + 1);
            let index = if shift >= 0 {
                (bytes >> shift) & 63
            } else {
                (bytes << -shift) & 63
            };
            ALPHABET[index as usize] as char
        })
        .collect()
}

/// Kafka's topic name rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    if name == METADATA_DIR {
        return Err(format!("topic name {name:?} is reserved"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_characters_and_differ() {
        let a = new_cluster_id();
        let b = new_cluster_id();
        assert_eq!(a.len(), 22);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }

    #[test]
    fn topic_names_follow_kafka() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }
}
