//! The log's one error type, [`Error`], and the record-batch validation error it wraps,
//! [`BatchError`](crate::log::BatchError).
//!
//! Each variant maps to the Kafka error code a handler puts in the response body through
//! [`Error::kafka_error_code`]; I/O failures map to `KAFKA_STORAGE_ERROR` and are the only
//! operational faults here.

use std::io;
use std::path::PathBuf;

use crate::log::batch::BatchError;
use crate::log::producer_state::ProducerError;

/// Kafka error codes used by the log (see Kafka's `org.apache.kafka.common.protocol.Errors`).
pub mod kafka_code {
    /// `UNKNOWN_SERVER_ERROR`.
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    /// `OFFSET_OUT_OF_RANGE`.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// `CORRUPT_MESSAGE`.
    pub const CORRUPT_MESSAGE: i16 = 2;
    /// `NOT_LEADER_OR_FOLLOWER`.
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    /// `MESSAGE_TOO_LARGE`.
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    /// `KAFKA_STORAGE_ERROR`.
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    /// `UNSUPPORTED_COMPRESSION_TYPE`.
    pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
    /// `INVALID_RECORD`.
    pub const INVALID_RECORD: i16 = 87;
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 =
        crate::log::producer_state::OUT_OF_ORDER_SEQUENCE_NUMBER;
    /// `INVALID_PRODUCER_EPOCH`.
    pub const INVALID_PRODUCER_EPOCH: i16 = crate::log::producer_state::INVALID_PRODUCER_EPOCH;
}

/// Result type of the log module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the partition log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record batch handed to `append_as_leader` failed validation; nothing was appended.
    #[error("invalid record batch at byte {position} of the appended records: {source}")]
    InvalidBatch {
        /// Byte position of the offending batch inside the appended buffer.
        position: usize,
        /// What was wrong with it.
        #[source]
        source: BatchError,
    },

    /// One record batch is larger than `max.message.bytes`; nothing was appended.
    #[error("record batch of {batch_bytes} bytes exceeds max.message.bytes = {max_message_bytes}")]
    MessageTooLarge {
        /// Size of the offending batch.
        batch_bytes: usize,
        /// The configured limit.
        max_message_bytes: u32,
    },

    /// A fetch or `DeleteRecords` named an offset outside `[log_start_offset, log_end_offset]`.
    #[error(
        "offset {requested} is out of range [{log_start_offset}, {log_end_offset}] of log {dir}"
    )]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: i64,
        /// The log start offset at the time of the request.
        log_start_offset: i64,
        /// The log end offset at the time of the request.
        log_end_offset: i64,
        /// The partition directory, to say which partition.
        dir: PathBuf,
    },

    /// An idempotent producer's batch failed the sequence or epoch check (KIP-98); nothing
    /// was appended.
    #[error("producer state check failed in {dir}: {source}")]
    Producer {
        /// The partition directory, to say which partition.
        dir: PathBuf,
        /// Which check failed, with both sides of it.
        #[source]
        source: ProducerError,
    },

    /// A follower append does not continue the log: a batch fetched from the leader starts
    /// before the offset the log (or the previous batch of the same append) ends at, or, for
    /// a strict append, anywhere else than exactly there. Nothing was appended: the fetch
    /// offset and the log disagree, which a fetcher must resolve (truncate or refetch).
    #[error(
        "follower append to {dir}: the batch at byte {position} starts at offset \
         {base_offset}, but the log continues at {expected_offset}"
    )]
    UnexpectedAppendOffset {
        /// The partition directory, to say which partition.
        dir: PathBuf,
        /// Byte position of the offending batch inside the appended buffer.
        position: usize,
        /// Offset the batch had to start at (the log end offset, or the previous batch's
        /// next offset).
        expected_offset: i64,
        /// Offset the batch starts at.
        base_offset: i64,
    },

    /// A leader append or epoch assignment names a leader epoch older than the newest one
    /// in the log's leader epoch cache: the caller has been replaced as leader. Nothing was
    /// appended; epochs in a log never go backwards.
    #[error(
        "leader epoch {leader_epoch} is older than the latest epoch {latest_epoch} of log {dir}"
    )]
    StaleLeaderEpoch {
        /// The partition directory, to say which partition.
        dir: PathBuf,
        /// The epoch the caller appended with.
        leader_epoch: i32,
        /// The latest epoch in the leader epoch cache.
        latest_epoch: i32,
    },

    /// A file operation failed.
    #[error("I/O error while {action} {path}: {source}")]
    Io {
        /// What the log was doing, e.g. "appending to".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A small checkpoint file (`log-start-offset`, `recovery-point-offset-checkpoint`) does
    /// not hold what it should. The log refuses to open rather than guess.
    #[error("corrupt checkpoint file {path}: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// The Kafka error code a request handler should answer with.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Error::InvalidBatch { source, .. } => source.kafka_error_code(),
            Error::MessageTooLarge { .. } => kafka_code::MESSAGE_TOO_LARGE,
            Error::OffsetOutOfRange { .. } => kafka_code::OFFSET_OUT_OF_RANGE,
            Error::Producer { source, .. } => source.kafka_error_code(),
            // Internal to replication: no client sends a follower append.
            Error::UnexpectedAppendOffset { .. } => kafka_code::UNKNOWN_SERVER_ERROR,
            // The broker thinks it leads but its log has seen a newer leader: the client should
            // refresh its metadata and retry elsewhere.
            Error::StaleLeaderEpoch { .. } => kafka_code::NOT_LEADER_OR_FOLLOWER,
            Error::Io { .. } | Error::CorruptCheckpoint { .. } => kafka_code::KAFKA_STORAGE_ERROR,
        }
    }

    /// Builds a closure that wraps an `io::Error` with what was being done and to which file,
    /// for use with `map_err`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
