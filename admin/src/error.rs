//! [`Error`]: everything an admin call can fail with, and [`error_name`]: Kafka's names for
//! its error codes.
//!
//! Kafka error codes travel in response bodies. The admin client turns a non-zero code that
//! means the operation failed into [`Error::Kafka`], keeping the code, its name, the
//! broker's `error_message` and the resource (topic, partition, group) it was about, so
//! that a caller can act on it (`error.kafka_name() == Some("TopicAlreadyExists")`) and a
//! person can read it. Transport failures (resolve, connect, I/O, timeout) are variants of
//! their own.

use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything an admin call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A broker address (`host:port`) did not resolve.
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        /// The address as given (`kafka-0.kafka:9092`).
        addr: String,
        source: std::io::Error,
    },
    /// No TCP connection could be made to any address `addr` resolved to.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address as given.
        addr: String,
        /// The error of the last address tried.
        source: std::io::Error,
    },
    /// Writing a request or reading its response failed; the connection is dropped.
    #[error("{api:?} request to {addr} failed: {source}")]
    Io {
        api: ApiKey,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// No response within the request timeout; the connection is dropped, since its
    /// response may still arrive and would answer the next request.
    #[error("{api:?} request to {addr} timed out after {timeout:?}")]
    Timeout {
        api: ApiKey,
        addr: SocketAddr,
        timeout: Duration,
    },
    /// kafka-protocol refused to encode the request at the negotiated version (a field
    /// set that the version does not have).
    #[error("cannot encode {api:?} v{version}: {message}")]
    Encode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    /// The response did not decode at the version it was asked at.
    #[error("cannot decode the {api:?} v{version} response: {message}")]
    Decode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    /// A response frame announced a length below zero or above the client's bound.
    #[error("response frame of {len} bytes from {addr} is out of range")]
    FrameLength { addr: SocketAddr, len: i32 },
    /// A response answered another request than the one in flight.
    #[error("{api:?} response carries correlation id {received}, expected {sent}")]
    CorrelationId {
        api: ApiKey,
        sent: i32,
        received: i32,
    },
    /// The broker and this client share no version of `api`.
    #[error("the broker does not support {api:?} (broker versions {broker:?}, ours {ours_min}-{ours_max})")]
    UnsupportedApi {
        api: ApiKey,
        /// The broker's (min, max), or `None` when it does not advertise the API at all.
        broker: Option<(i16, i16)>,
        ours_min: i16,
        ours_max: i16,
    },
    /// A Kafka error code from the broker. Displays as `resource: Name: message` (the
    /// operation stands in for the resource when there is none), for example
    /// `orders: TopicAlreadyExists: Topic 'orders' already exists.`
    #[error(
        "{}: {}{}",
        resource.as_deref().unwrap_or(operation),
        DisplayName(*code, name),
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    Kafka {
        /// The request that failed, as Kafka names the API: `CreateTopics`.
        operation: &'static str,
        /// What it was about: a topic, `topic-partition`, a group, or `None` for the
        /// request as a whole.
        resource: Option<String>,
        /// The Kafka error code.
        code: i16,
        /// [`error_name`] of `code`: `TopicAlreadyExists`.
        name: &'static str,
        /// The broker's `error_message`, when the response carries one.
        message: Option<String>,
    },
    /// The response has no entry for something the request asked about.
    #[error("the broker's response has no result for {resource}")]
    MissingResult {
        operation: &'static str,
        resource: String,
    },
    /// A broker id that no Metadata response has listed.
    #[error("broker {id} is not in the cluster's metadata")]
    UnknownBroker { id: i32 },
    /// The bootstrap list is empty, or no known broker could be reached.
    #[error("no broker is reachable: the bootstrap list is empty or every broker failed")]
    NoBrokers,
    /// An argument the client refuses before sending anything.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The Kafka error code of an [`Error::Kafka`].
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Kafka's name of the error code of an [`Error::Kafka`], as [`error_name`] gives it.
    pub fn kafka_name(&self) -> Option<&'static str> {
        match self {
            Error::Kafka { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether the same call may succeed if made again later: transport failures (the
    /// broker may be restarting, a name may not resolve yet in a new cluster) and the Kafka
    /// error codes Kafka itself classes as retriable (`RetriableException`): routing moved
    /// (`NOT_CONTROLLER`, `NOT_COORDINATOR`, `NOT_LEADER_OR_FOLLOWER`), the cluster is busy
    /// (`COORDINATOR_LOAD_IN_PROGRESS`, `LEADER_NOT_AVAILABLE`, `REQUEST_TIMED_OUT`) or its
    /// metadata is still propagating (`UNKNOWN_TOPIC_OR_PARTITION`).
    ///
    /// Malformed or unexpected responses are not retriable: another try meets the same
    /// broker.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Resolve { .. }
            | Error::Connect { .. }
            | Error::Io { .. }
            | Error::Timeout { .. }
            | Error::NoBrokers => true,
            Error::Kafka { code, .. } => is_retriable_code(*code),
            Error::Encode { .. }
            | Error::Decode { .. }
            | Error::FrameLength { .. }
            | Error::CorrelationId { .. }
            | Error::UnsupportedApi { .. }
            | Error::MissingResult { .. }
            | Error::UnknownBroker { .. }
            | Error::InvalidArgument(_) => false,
        }
    }

    /// The connection that produced this error is unusable: its stream may hold half a
    /// frame, or a late response to a request given up on.
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Error::Io { .. }
                | Error::Timeout { .. }
                | Error::FrameLength { .. }
                | Error::CorrelationId { .. }
                | Error::Decode { .. }
        )
    }

    /// Worth one more try on another connection: the broker went away or closed an idle
    /// connection. A timeout is not: the request may still be carried out, and the time
    /// budget is spent.
    pub(crate) fn is_connection_loss(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Connect { .. })
    }

    /// Builds an [`Error::Kafka`] for a non-zero `code`.
    pub(crate) fn kafka(
        operation: &'static str,
        resource: Option<String>,
        code: i16,
        message: Option<&str>,
    ) -> Error {
        Error::Kafka {
            operation,
            resource,
            code,
            name: error_name(code),
            message: message.map(str::to_string),
        }
    }
}

/// `Ok(())` for error code 0, otherwise [`Error::Kafka`].
pub(crate) fn check(
    operation: &'static str,
    resource: Option<&str>,
    code: i16,
    message: Option<&str>,
) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    Err(Error::kafka(
        operation,
        resource.map(str::to_string),
        code,
        message,
    ))
}

/// Kafka's classification of `code` (`Errors.java`, through kafka-protocol's
/// `ResponseError::is_retriable`); unknown codes are not retriable.
pub(crate) fn is_retriable_code(code: i16) -> bool {
    kafka_protocol::ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

/// Shows a name, with the code for codes this client does not know.
struct DisplayName(i16, &'static str);

impl std::fmt::Display for DisplayName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            UNKNOWN => write!(f, "{UNKNOWN}({})", self.0),
            name => f.write_str(name),
        }
    }
}

/// The name [`error_name`] gives codes it does not know.
const UNKNOWN: &str = "Unknown";

/// Kafka's name of an error code: the `Errors.java` constant in PascalCase
/// (`TOPIC_ALREADY_EXISTS` is `TopicAlreadyExists`, `INVALID_TOPIC_EXCEPTION` is
/// `InvalidTopicException`), exactly as kafka-protocol's `ResponseError` names its
/// variants, so these names match what its `Debug` prints. `"None"` for 0 and `"Unknown"`
/// for a code this client does not know.
pub fn error_name(code: i16) -> &'static str {
    match code {
        0 => "None",
        -1 => "UnknownServerError",
        1 => "OffsetOutOfRange",
        2 => "CorruptMessage",
        3 => "UnknownTopicOrPartition",
        4 => "InvalidFetchSize",
        5 => "LeaderNotAvailable",
        6 => "NotLeaderOrFollower",
        7 => "RequestTimedOut",
        8 => "BrokerNotAvailable",
        9 => "ReplicaNotAvailable",
        10 => "MessageTooLarge",
        11 => "StaleControllerEpoch",
        12 => "OffsetMetadataTooLarge",
        13 => "NetworkException",
        14 => "CoordinatorLoadInProgress",
        15 => "CoordinatorNotAvailable",
        16 => "NotCoordinator",
        17 => "InvalidTopicException",
        18 => "RecordListTooLarge",
        19 => "NotEnoughReplicas",
        20 => "NotEnoughReplicasAfterAppend",
        21 => "InvalidRequiredAcks",
        22 => "IllegalGeneration",
        23 => "InconsistentGroupProtocol",
        24 => "InvalidGroupId",
        25 => "UnknownMemberId",
        26 => "InvalidSessionTimeout",
        27 => "RebalanceInProgress",
        28 => "InvalidCommitOffsetSize",
        29 => "TopicAuthorizationFailed",
        30 => "GroupAuthorizationFailed",
        31 => "ClusterAuthorizationFailed",
        32 => "InvalidTimestamp",
        33 => "UnsupportedSaslMechanism",
        34 => "IllegalSaslState",
        35 => "UnsupportedVersion",
        36 => "TopicAlreadyExists",
        37 => "InvalidPartitions",
        38 => "InvalidReplicationFactor",
        39 => "InvalidReplicaAssignment",
        40 => "InvalidConfig",
        41 => "NotController",
        42 => "InvalidRequest",
        43 => "UnsupportedForMessageFormat",
        44 => "PolicyViolation",
        45 => "OutOfOrderSequenceNumber",
        46 => "DuplicateSequenceNumber",
        47 => "InvalidProducerEpoch",
        48 => "InvalidTxnState",
        49 => "InvalidProducerIdMapping",
        50 => "InvalidTransactionTimeout",
        51 => "ConcurrentTransactions",
        52 => "TransactionCoordinatorFenced",
        53 => "TransactionalIdAuthorizationFailed",
        54 => "SecurityDisabled",
        55 => "OperationNotAttempted",
        56 => "KafkaStorageError",
        57 => "LogDirNotFound",
        58 => "SaslAuthenticationFailed",
        59 => "UnknownProducerId",
        60 => "ReassignmentInProgress",
        61 => "DelegationTokenAuthDisabled",
        62 => "DelegationTokenNotFound",
        63 => "DelegationTokenOwnerMismatch",
        64 => "DelegationTokenRequestNotAllowed",
        65 => "DelegationTokenAuthorizationFailed",
        66 => "DelegationTokenExpired",
        67 => "InvalidPrincipalType",
        68 => "NonEmptyGroup",
        69 => "GroupIdNotFound",
        70 => "FetchSessionIdNotFound",
        71 => "InvalidFetchSessionEpoch",
        72 => "ListenerNotFound",
        73 => "TopicDeletionDisabled",
        74 => "FencedLeaderEpoch",
        75 => "UnknownLeaderEpoch",
        76 => "UnsupportedCompressionType",
        77 => "StaleBrokerEpoch",
        78 => "OffsetNotAvailable",
        79 => "MemberIdRequired",
        80 => "PreferredLeaderNotAvailable",
        81 => "GroupMaxSizeReached",
        82 => "FencedInstanceId",
        83 => "EligibleLeadersNotAvailable",
        84 => "ElectionNotNeeded",
        85 => "NoReassignmentInProgress",
        86 => "GroupSubscribedToTopic",
        87 => "InvalidRecord",
        88 => "UnstableOffsetCommit",
        89 => "ThrottlingQuotaExceeded",
        90 => "ProducerFenced",
        91 => "ResourceNotFound",
        92 => "DuplicateResource",
        93 => "UnacceptableCredential",
        94 => "InconsistentVoterSet",
        95 => "InvalidUpdateVersion",
        96 => "FeatureUpdateFailed",
        97 => "PrincipalDeserializationFailure",
        98 => "SnapshotNotFound",
        99 => "PositionOutOfRange",
        100 => "UnknownTopicId",
        101 => "DuplicateBrokerRegistration",
        102 => "BrokerIdNotRegistered",
        103 => "InconsistentTopicId",
        104 => "InconsistentClusterId",
        105 => "TransactionalIdNotFound",
        106 => "FetchSessionTopicIdError",
        107 => "IneligibleReplica",
        108 => "NewLeaderElected",
        109 => "OffsetMovedToTieredStorage",
        110 => "FencedMemberEpoch",
        111 => "UnreleasedInstanceId",
        112 => "UnsupportedAssignor",
        113 => "StaleMemberEpoch",
        114 => "MismatchedEndpointType",
        115 => "UnsupportedEndpointType",
        116 => "UnknownControllerId",
        117 => "UnknownSubscriptionId",
        118 => "TelemetryTooLarge",
        119 => "InvalidRegistration",
        120 => "TransactionAbortable",
        121 => "InvalidRecordState",
        122 => "ShareSessionNotFound",
        123 => "InvalidShareSessionEpoch",
        124 => "FencedStateEpoch",
        125 => "InvalidVoterKey",
        126 => "DuplicateVoter",
        127 => "VoterNotFound",
        128 => "InvalidRegularExpression",
        129 => "RebootstrapRequired",
        130 => "StreamsInvalidTopology",
        131 => "StreamsInvalidTopologyEpoch",
        132 => "StreamsTopologyFenced",
        133 => "ShareSessionLimitReached",
        _ => UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::ResponseError;

    #[test]
    fn names_match_kafka_protocol() {
        for code in -1..=300i16 {
            match ResponseError::try_from_code(code) {
                None => assert_eq!(error_name(code), "None"),
                Some(ResponseError::Unknown(_)) => assert_eq!(error_name(code), "Unknown"),
                Some(e) => assert_eq!(error_name(code), format!("{e:?}"), "code {code}"),
            }
        }
        assert_eq!(error_name(36), "TopicAlreadyExists");
        assert_eq!(error_name(37), "InvalidPartitions");
        assert_eq!(error_name(3), "UnknownTopicOrPartition");
    }

    #[test]
    fn kafka_errors_display_resource_name_and_message() {
        let e = Error::kafka("CreateTopics", Some("orders".into()), 36, Some("exists"));
        assert_eq!(e.to_string(), "orders: TopicAlreadyExists: exists");
        assert_eq!(e.kafka_code(), Some(36));
        assert_eq!(e.kafka_name(), Some("TopicAlreadyExists"));
        let e = Error::kafka("ElectLeaders", None, 31, None);
        assert_eq!(e.to_string(), "ElectLeaders: ClusterAuthorizationFailed");
        let e = Error::kafka("ListGroups", None, 999, None);
        assert_eq!(e.to_string(), "ListGroups: Unknown(999)");
        assert_eq!(Error::NoBrokers.kafka_code(), None);
    }

    #[test]
    fn retriable_errors_follow_kafka() {
        let kafka = |code| Error::kafka("Op", None, code, None);
        for code in [5, 6, 7, 14, 15, 16, 41] {
            assert!(kafka(code).is_retriable(), "code {code}");
        }
        for code in [36, 37, 40, 25, 27, 999] {
            assert!(!kafka(code).is_retriable(), "code {code}");
        }
        let io = Error::Io {
            api: ApiKey::Metadata,
            addr: "127.0.0.1:9092".parse().unwrap(),
            source: std::io::ErrorKind::ConnectionReset.into(),
        };
        assert!(io.is_retriable() && io.breaks_connection() && io.is_connection_loss());
        let timeout = Error::Timeout {
            api: ApiKey::Metadata,
            addr: "127.0.0.1:9092".parse().unwrap(),
            timeout: Duration::from_secs(1),
        };
        assert!(timeout.is_retriable() && timeout.breaks_connection());
        assert!(!timeout.is_connection_loss());
    }
}
