//! The admin command line: `tributary topics ...`, `groups ...` and `cluster ...`, in the
//! spirit of Kafka's `kafka-topics.sh`, `kafka-configs.sh` and their siblings.
//!
//! | module | owns |
//! |---|---|
//! | [`client`] | [`client::AdminClient`]: one blocking TCP connection, ApiVersions negotiation, request/response framing |
//! | [`topics`] | the `topics` subcommands (clap types), the requests they send and their plain-text output |
//! | [`groups`] | the `groups` subcommands: list, describe, reset-offsets (like `kafka-consumer-groups.sh`) |
//! | [`cluster`] | the `cluster` subcommands: describe, reassign, reassignments, drain, rebalance, elect-leaders (like `kafka-reassign-partitions.sh` and `kafka-leader-election.sh`) |
//!
//! ```text
//! main ──▶ topics::run ──▶ AdminClient::send(CreateTopicsRequest, ...) ──TCP──▶ broker
//!                 │ stdout: aligned text            stderr: `error: ...`, exit status 1
//! ```
//!
//! The CLI is synchronous on purpose: one request at a time over a `std::net::TcpStream`
//! with read and write timeouts, so it needs neither the tokio runtime nor tracing and it
//! links no C library (no librdkafka). Kafka error codes in responses become
//! [`Error::Broker`], named as `kafka_protocol::ResponseError` names them.

pub mod client;
pub mod cluster;
pub mod groups;
pub mod topics;

use std::net::SocketAddr;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

/// Everything an admin command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot resolve bootstrap server {bootstrap}: {source}")]
    Resolve {
        bootstrap: String,
        source: std::io::Error,
    },
    #[error("cannot connect to bootstrap server {bootstrap}: {source}")]
    Connect {
        bootstrap: String,
        source: std::io::Error,
    },
    #[error("{api:?} request to {addr} failed: {source}")]
    Io {
        api: ApiKey,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot encode {api:?} v{version}: {message}")]
    Encode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("cannot decode the {api:?} v{version} response: {message}")]
    Decode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("response frame of {len} bytes from {addr} is out of range")]
    FrameLength { addr: SocketAddr, len: i32 },
    #[error("{api:?} response carries correlation id {received}, expected {sent}")]
    CorrelationId {
        api: ApiKey,
        sent: i32,
        received: i32,
    },
    #[error("the broker does not support {api:?} (broker versions {broker:?}, ours {ours_min}-{ours_max})")]
    UnsupportedApi {
        api: ApiKey,
        /// The broker's (min, max), or `None` when it does not advertise the API at all.
        broker: Option<(i16, i16)>,
        ours_min: i16,
        ours_max: i16,
    },
    /// A Kafka error code from the broker, for `resource` (a topic name, or the request).
    /// `code` prints with its Kafka name (`TopicAlreadyExists`).
    #[error("{resource}: {code:?}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        resource: String,
        code: ResponseError,
        message: Option<String>,
    },
    #[error("the broker's response has no result for {resource}")]
    MissingResult { resource: String },
    /// A failure the command itself detected, such as a reset on a group with members.
    #[error("{0}")]
    Command(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Ok(())` for error code 0, otherwise [`Error::Broker`] with the broker's message, if any.
pub(crate) fn check(resource: &str, error_code: i16, message: Option<&str>) -> Result<()> {
    if error_code == 0 {
        return Ok(());
    }
    let code =
        ResponseError::try_from_code(error_code).unwrap_or(ResponseError::Unknown(error_code));
    Err(Error::Broker {
        resource: resource.to_string(),
        code,
        message: message.map(str::to_string),
    })
}

/// The broker every admin command talks to; flattened into each command's arguments.
#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// Broker to talk to, as HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "TRIBUTARY_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap_server: String,
}

/// Writes a command's output lines. A closed stdout (`| head`) is not worth an error
/// message, so writing stops quietly at the first failure.
pub(crate) fn print_lines(out: &mut impl std::io::Write, lines: Vec<String>) {
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    let _ = out.flush();
}
