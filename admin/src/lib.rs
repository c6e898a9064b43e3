//! An async Kafka admin client on `kafka-protocol` and tokio: topics, configs, offsets,
//! consumer groups, partition reassignments and leader elections, against Tributary or
//! any Kafka broker that speaks the same APIs. The `tributary` CLI and the operator use it.
//!
//! | module | owns |
//! |---|---|
//! | `admin.rs` | [`Admin`] and [`AdminOptions`]: the connection pool, routing (any broker, a partition's leader, a group's coordinator) and bounded retries |
//! | `topics.rs` | topic methods: describe, create, grow, delete, configs, [`Admin::list_offsets`] |
//! | `groups.rs` | group methods: list, describe, committed offsets, offset resets, delete |
//! | `cluster.rs` | cluster methods: describe, reassignments, leader elections |
//! | [`connection`] | [`Connection`]: one TCP connection, ApiVersions negotiation, framing, request timeouts |
//! | `types.rs` | the plain data the methods take and return ([`TopicPartition`], [`TopicDescription`], ...) |
//! | `assignment.rs` | [`decode_assignment`]: the consumer protocol's member assignment bytes |
//! | `error.rs` | [`Error`], [`Result`] and [`error_name`] |
//!
//! ```text
//! caller ──▶ Admin::create_topic(&NewTopic) ──▶ route ──▶ pool[addr]: Connection ──TCP──▶ broker
//!                 ◀── Ok(topic id) | Err(Error::Kafka { name: "TopicAlreadyExists", .. })
//! ```
//!
//! Kafka error codes that mean the operation failed become [`Error::Kafka`] with the code,
//! Kafka's name for it and the broker's message; codes that mean "ask elsewhere" are
//! retried internally within the request timeout. Every request is bounded by
//! [`AdminOptions::request_timeout`] and every response frame by
//! [`connection::MAX_FRAME_BYTES`].
//!
//! ```no_run
//! # async fn example() -> tributary_admin::Result<()> {
//! use tributary_admin::{Admin, NewTopic, OffsetSpec, TopicPartition};
//!
//! let admin = Admin::connect("127.0.0.1:9092").await?;
//! match admin.create_topic(&NewTopic::new("orders", 3, -1)).await {
//!     Ok(_) => {}
//!     Err(e) if e.kafka_name() == Some("TopicAlreadyExists") => {}
//!     Err(e) => return Err(e),
//! }
//! let ends = admin
//!     .list_offsets(&[TopicPartition::new("orders", 0)], OffsetSpec::Latest)
//!     .await?;
//! println!("log end offsets: {ends:?}");
//! # Ok(())
//! # }
//! ```

mod admin;
mod assignment;
mod cluster;
pub mod connection;
mod error;
mod groups;
mod protocol;
mod time;
mod topics;
mod types;

pub use admin::{Admin, AdminOptions, MAX_ROUTE_ATTEMPTS};
pub use assignment::decode_assignment;
pub use connection::Connection;
pub use error::{error_name, Error, Result};
pub use time::parse_rfc3339_ms;
pub use types::{
    AlterConfigOp, BrokerDescription, ClusterDescription, ConfigEntry, ConfigSource, Election,
    ElectionType, GroupDescription, GroupListing, MemberDescription, NewTopic, OffsetSpec,
    OngoingReassignment, PartitionDescription, TopicDescription, TopicPartition,
};

/// kafka-protocol, re-exported so that callers of [`Admin::send_to_any`] and
/// [`Connection::send`] name the same request types this crate was built with.
pub use kafka_protocol;
/// The API keys [`Connection::version`] takes.
pub use kafka_protocol::messages::ApiKey;
