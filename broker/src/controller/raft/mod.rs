//! The metadata quorum's Raft plumbing: openraft's type configuration and the three pieces
//! openraft drives — the metadata log on disk, the state machine holding the
//! [`MetadataImage`](super::MetadataImage), and the gRPC network between voters.
//!
//! ```text
//!             client_write(Command)                 AppendEntries / Vote / InstallSnapshot
//!  ControllerNode ──────────────> openraft::Raft <──────────────────────────────> other voters
//!                                   │        │                (network.rs, tonic, JSON)
//!              append/truncate/purge│        │apply committed entries
//!                                   ▼        ▼
//!     log_store.rs: <log.dirs>/__cluster_metadata/raft/   state_machine.rs: MetadataImage
//!       vote.json, committed.json, metadata.log             ──> watch (index, Arc<image>)
//!                                                           snapshot.bin (every ~1000 entries)
//! ```
//!
//! Node ids are broker ids (`node.id`), widened to `u64` because openraft wants unsigned ids;
//! a voter's [`BasicNode::addr`](openraft::BasicNode) is the `host:port` of its gRPC listener.

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{BasicNode, Config, SnapshotPolicy};

use super::{Command, CommandError, Outcome, METADATA_DIR};

/// What applying one committed entry answers to whoever proposed it: the [`Outcome`], or
/// the [`CommandError`] that refused it (a refused command is committed all the same; it
/// just changes nothing).
pub type Response = Result<Outcome, CommandError>;

openraft::declare_raft_types!(
    /// openraft's type configuration for the metadata quorum.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The running Raft instance of a voter.
pub type MetadataRaft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<u64, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, BasicNode>;
pub type StorageError = openraft::StorageError<u64>;

/// Raft log entries kept between snapshots. The metadata log is small, so a snapshot every
/// thousand entries bounds both restart replay and the cost of rewriting the log on purge.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 1000;

/// Largest snapshot piece per InstallSnapshot RPC. The chunk travels as a JSON array of
/// numbers (up to 4 bytes per byte), so this keeps a message well under gRPC's limits.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 512 * 1024;

/// Largest gRPC message the Raft and controller services accept or send: snapshot chunks,
/// batches of entries, and whole metadata images on `WatchMetadata`.
pub const MAX_RPC_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Where the metadata log lives: `<log.dirs>/__cluster_metadata/raft`.
pub fn raft_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(METADATA_DIR).join("raft")
}

/// openraft's configuration: 100 ms heartbeats and a randomized election timeout. A lost
/// active controller is replaced after about two election timeouts: followers first wait
/// out the old leader's lease before they vote (measured 1.7–1.8 s with the default 500 ms;
/// Kafka's KRaft takes ~2 s of fetch timeout plus the election).
pub fn raft_config(election_timeout_ms: (u64, u64)) -> anyhow::Result<Arc<Config>> {
    let (min, max) = election_timeout_ms;
    let config = Config {
        cluster_name: "tributary-metadata".into(),
        heartbeat_interval: 100,
        election_timeout_min: min,
        election_timeout_max: max,
        // Snapshots go out in chunks; give each chunk time on a loaded machine.
        install_snapshot_timeout: 2_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_ENTRIES),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        // Entries kept behind a snapshot let a briefly lagging voter catch up from the log
        // instead of receiving a whole snapshot.
        max_in_snapshot_log_to_keep: SNAPSHOT_EVERY_ENTRIES / 2,
        ..Config::default()
    };
    let config = config.validate().map_err(|e| {
        anyhow::anyhow!("invalid Raft configuration (election timeout {min}..{max} ms): {e}")
    })?;
    Ok(Arc::new(config))
}
