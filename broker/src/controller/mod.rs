//! Cluster metadata: which topics exist, their ids, partition counts and configuration.
//!
//! On a single broker the metadata is a small JSON image in the log directory, rewritten
//! atomically (write a temporary file, fsync, rename, fsync the directory) on every change.
//! The multi-broker cluster replaces this store with a Raft metadata log; the
//! [`MetadataImage`] type is what both hand to the rest of the broker.
//!
//! ```text
//! CreateTopics / DeleteTopics / CreatePartitions / AlterConfigs
//!        │
//!        ▼
//! MetadataStore::apply(change) ──> <log.dirs>/__cluster_metadata/image.json
//! ```

pub mod duties;
pub mod image;
pub mod node;
pub mod placement;
pub mod prepare;
pub mod raft;
pub mod service;
pub mod topic_config;

use std::io::Write;
use std::path::{Path, PathBuf};

use uuid::Uuid;

pub use image::{
    BrokerRecord, Command, CommandError, MetadataImage, Outcome, PartitionRecord, TopicRecord,
    NO_LEADER,
};
pub use topic_config::TopicConfigs;

/// Name of the directory, inside `log.dirs`, that holds the metadata image.
pub const METADATA_DIR: &str = "__cluster_metadata";
const IMAGE_FILE: &str = "image.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metadata I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata image {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Producer ids handed out per metadata write (Kafka's `ProducerIdManager` block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The metadata image and the file it lives in.
#[derive(Debug)]
pub struct MetadataStore {
    dir: PathBuf,
    image: MetadataImage,
}

impl MetadataStore {
    /// Loads the image from `log_dir`, or starts an empty one with a new cluster id.
    pub fn open(log_dir: &Path) -> Result<Self> {
        let dir = log_dir.join(METADATA_DIR);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(IMAGE_FILE);
        let image = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let image = MetadataImage {
                    cluster_id: new_cluster_id(),
                    ..MetadataImage::default()
                };
                let mut store = MetadataStore { dir, image };
                store.persist()?;
                return Ok(store);
            }
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(MetadataStore { dir, image })
    }

    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Applies `change` to a copy of the image, persists it, and only then makes it current,
    /// so a failed write leaves the old image in force.
    pub fn update<T>(&mut self, change: impl FnOnce(&mut MetadataImage) -> T) -> Result<T> {
        let mut next = self.image.clone();
        let out = change(&mut next);
        let previous = std::mem::replace(&mut self.image, next);
        if let Err(e) = self.persist() {
            self.image = previous;
            return Err(e);
        }
        Ok(out)
    }

    fn persist(&mut self) -> Result<()> {
        let path = self.dir.join(IMAGE_FILE);
        let tmp = self.dir.join(format!("{IMAGE_FILE}.tmp"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        // Serializing plain data with string keys cannot fail.
        let bytes = serde_json::to_vec_pretty(&self.image).expect("metadata image serializes");
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

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
    fn image_survives_reopen_and_failed_updates_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = MetadataStore::open(dir.path()).unwrap();
        let cluster_id = store.image().cluster_id.clone();
        assert_eq!(cluster_id.len(), 22);
        let id = Uuid::new_v4();
        store
            .update(|image| {
                image.topics.insert(
                    "orders".into(),
                    TopicRecord {
                        name: "orders".into(),
                        topic_id: id,
                        partitions: 3,
                        configs: [("retention.ms".to_string(), "1000".to_string())].into(),
                        assignments: Vec::new(),
                    },
                )
            })
            .unwrap();
        drop(store);
        let store = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.image().cluster_id, cluster_id);
        assert_eq!(store.image().topics["orders"].topic_id, id);
        assert_eq!(store.image().topics["orders"].partitions, 3);
    }

    #[test]
    fn images_without_producer_id_blocks_still_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(METADATA_DIR)).unwrap();
        std::fs::write(
            dir.path().join(METADATA_DIR).join(IMAGE_FILE),
            br#"{"cluster_id":"abc","topics":{}}"#,
        )
        .unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.image().next_producer_id_block, 0);
    }

    #[test]
    fn corrupt_image_is_an_error_not_an_empty_cluster() {
        let dir = tempfile::tempdir().unwrap();
        MetadataStore::open(dir.path()).unwrap();
        std::fs::write(dir.path().join(METADATA_DIR).join(IMAGE_FILE), b"{not json").unwrap();
        assert!(matches!(
            MetadataStore::open(dir.path()),
            Err(Error::Corrupt { .. })
        ));
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
