//! The partition log: Kafka's storage layer, files only, no network.
//!
//! ```text
//! Log (partition_log)        one partition directory: append, read, retention, recovery
//!  └─ LogSegment (segment)   <base offset>.log + .index + .timeindex
//!      ├─ OffsetIndex (index)  sparse last-offset → file position
//!      └─ TimeIndex   (index)  sparse max-timestamp → offset
//! batch                      RecordBatch v2 header parsing and validation, builder
//! cleaner                    compaction: keep the latest record per key (Kafka's Cleaner)
//! error                      Error (with Kafka error codes) and Result
//! leader_epoch               LeaderEpochCache: where each leader epoch starts (leader-epoch-checkpoint)
//! producer_state             idempotent producers: sequence checks, duplicates, snapshots
//! ```
//!
//! Request handlers call [`Log::append_as_leader`] with a produce request's records and
//! [`Log::read`] for fetches; batches travel as raw bytes and are never decompressed.
//! Replication appends with [`Log::append_as_leader_with_epoch`] on the leader and
//! [`Log::append_as_follower`] on followers, finds divergence with
//! [`Log::end_offset_for_epoch`] and cuts it with [`Log::truncate_to`].
//! The on-disk layout, recovery algorithm and retention rules are described in
//! `docs/design/log.md`.

pub mod batch;
pub mod cleaner;
pub mod error;
pub mod index;
pub mod leader_epoch;
pub mod partition_log;
pub mod producer_state;
pub mod segment;

pub use batch::{
    build_batch, decode_records, encode_batch, set_base_offset, set_partition_leader_epoch,
    split_batches, validate_batch, BatchError, BatchHeader, Compression, KeyValue, Record,
    RecordHeader,
};
pub use cleaner::CleanStats;
pub use error::{kafka_code, Error, Result};
pub use index::{OffsetIndex, OffsetPosition, TimeIndex, TimestampOffset};
pub use leader_epoch::{EpochEntry, LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use partition_log::{AppendInfo, FetchData, Log, LogConfig};
pub use segment::LogSegment;
