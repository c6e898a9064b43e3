//! The admin command line: `tributary topics ...`, `groups ...` and `cluster ...`, in the
//! spirit of Kafka's `kafka-topics.sh`, `kafka-configs.sh` and their siblings.
//!
//! | module | owns |
//! |---|---|
//! | [`topics`] | the `topics` subcommands (clap types), the admin calls they make and their plain-text output |
//! | [`groups`] | the `groups` subcommands: list, describe, reset-offsets (like `kafka-consumer-groups.sh`) |
//! | [`cluster`] | the `cluster` subcommands: describe, reassign, reassignments, drain, rebalance, elect-leaders (like `kafka-reassign-partitions.sh` and `kafka-leader-election.sh`) |
//!
//! ```text
//! main ──▶ topics::run ──▶ block_on(Admin::create_topic(...)) ──tributary-admin──TCP──▶ broker
//!                 │ stdout: aligned text            stderr: `error: ...`, exit status 1
//! ```
//!
//! The requests themselves are [`tributary_admin`]'s: the async admin client the operator
//! uses too. A command is one short sequence of calls, so each runs on a current-thread
//! tokio runtime of its own. Kafka error codes in responses arrive as
//! [`tributary_admin::Error::Kafka`] and print as `resource: KafkaName: message`.

pub mod cluster;
pub mod groups;
pub mod topics;

use std::future::Future;

use tributary_admin::{Admin, AdminOptions};

/// The `client_id` the CLI's requests carry.
const CLIENT_ID: &str = "tributary-cli";

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
    /// A request failed: a Kafka error code, a lost connection, a timeout, ...
    #[error(transparent)]
    Admin(#[from] tributary_admin::Error),
    /// A failure the command itself detected, such as a reset on a group with members.
    #[error("{0}")]
    Command(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// Runs one command's calls to completion on a current-thread runtime: the CLI makes one
/// request at a time, so more threads would only cost start-up time.
pub(crate) fn block_on<T>(command: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?
        .block_on(command)
}

/// Connects to the bootstrap server; failing to reach it names it as such.
pub(crate) async fn connect(bootstrap: &str) -> Result<Admin> {
    let options = AdminOptions {
        client_id: CLIENT_ID.to_string(),
        ..AdminOptions::default()
    };
    Admin::connect_with(bootstrap, options)
        .await
        .map_err(|e| match e {
            tributary_admin::Error::Resolve { addr, source } => Error::Resolve {
                bootstrap: addr,
                source,
            },
            tributary_admin::Error::Connect { addr, source } => Error::Connect {
                bootstrap: addr,
                source,
            },
            other => Error::Admin(other),
        })
}

/// The error Metadata gives a topic that does not exist, which the admin client reports as
/// an absent topic: commands that name one topic fail with it, as they always have.
pub(crate) fn unknown_topic(topic: &str) -> Error {
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    Error::Admin(tributary_admin::Error::Kafka {
        operation: "Metadata",
        resource: Some(topic.to_string()),
        code: UNKNOWN_TOPIC_OR_PARTITION,
        name: tributary_admin::error_name(UNKNOWN_TOPIC_OR_PARTITION),
        message: None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_topic_prints_as_metadata_reports_it() {
        assert_eq!(
            unknown_topic("orders").to_string(),
            "orders: UnknownTopicOrPartition"
        );
    }
}
