//! The partitions this broker hosts: their logs, the topics they belong to, and the
//! operations the Kafka handlers perform on them (Kafka's `ReplicaManager` and `LogManager`
//! in one, for a single broker).
//!
//! ```text
//! handlers ──> ReplicaManager ──> Partition ──> Mutex<Log> ──> segment files
//!                 │    └────────> MetadataStore (topics, configs)
//!                 └─ appended: watch<u64> ──> long-polling fetches
//! ```
//!
//! Locking: `state` (an `RwLock`) is held only to look up or replace topics; each partition's
//! log has its own `Mutex`, held for one append or one read. Neither is held across `.await`:
//! callers run log work on the blocking pool, since an append may fsync.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use crate::controller::{self, topic_config, MetadataStore, TopicConfigs, TopicRecord};
use crate::log::{Log, LogConfig};
use crate::server::config::BrokerConfig;

/// A Kafka error code with a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: i16,
    pub message: String,
}

impl ApiError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code: error.code(),
            message: message.into(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One partition hosted here.
#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// `None` once the topic is deleted. A request that looked the partition up just before
    /// the deletion still holds this `Arc`; it must find no log rather than write into the
    /// directory, which a topic re-created under the same name may own by then.
    log: Mutex<Option<Log>>,
}

/// A locked, live partition log.
pub struct LogGuard<'a>(MutexGuard<'a, Option<Log>>);

impl std::ops::Deref for LogGuard<'_> {
    type Target = Log;
    fn deref(&self) -> &Log {
        // A LogGuard is only built around `Some` (see `Partition::log`).
        self.0.as_ref().expect("LogGuard holds a log")
    }
}

impl std::ops::DerefMut for LogGuard<'_> {
    fn deref_mut(&mut self) -> &mut Log {
        self.0.as_mut().expect("LogGuard holds a log")
    }
}

impl Partition {
    /// The partition's log, or `None` if its topic has been deleted. A panic while the lock
    /// was held means a broken invariant in the log; carrying on with that state could
    /// corrupt data, so it propagates.
    pub fn log(&self) -> Option<LogGuard<'_>> {
        let guard = self.log.lock().expect("partition log lock poisoned");
        guard.is_some().then(|| LogGuard(guard))
    }

    /// Closes the log and removes its directory; later `log()` calls find nothing.
    fn delete(&self) -> Result<(), crate::log::Error> {
        let log = self.log.lock().expect("partition log lock poisoned").take();
        match log {
            Some(log) => log.delete(),
            None => Ok(()),
        }
    }

    /// What a request gets for a partition deleted under it.
    pub fn deleted_error(&self) -> ApiError {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("{}-{} was deleted", self.topic, self.index),
        )
    }
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct TopicState {
    pub record: TopicRecord,
    pub log_config: LogConfig,
    pub partitions: Vec<Arc<Partition>>,
}

impl TopicState {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

#[derive(Debug)]
struct State {
    store: MetadataStore,
    /// Next producer id to hand out; ids up to `store.image().next_producer_id_block`
    /// (exclusive) are reserved and persisted.
    next_producer_id: i64,
    topics: HashMap<String, Arc<TopicState>>,
    by_id: HashMap<Uuid, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Metadata(#[from] controller::Error),
    #[error("cannot open partition {topic}-{partition} in {dir}: {source}")]
    Log {
        topic: String,
        partition: i32,
        dir: PathBuf,
        source: crate::log::Error,
    },
}

/// Every partition on this broker.
#[derive(Debug)]
pub struct ReplicaManager {
    config: Arc<BrokerConfig>,
    state: RwLock<State>,
    /// Bumped after every append (and topic change); fetches waiting for data watch it.
    appended: watch::Sender<u64>,
}

fn partition_dir(log_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    log_dir.join(format!("{topic}-{partition}"))
}

impl ReplicaManager {
    /// Loads the metadata and opens (recovering) every partition log it names.
    pub fn open(config: Arc<BrokerConfig>) -> Result<Self, OpenError> {
        let store = MetadataStore::open(&config.log_dir)?;
        let now = now_ms();
        let mut topics = HashMap::new();
        let mut by_id = HashMap::new();
        for record in store.image().topics.values() {
            let log_config = topic_config::log_config(&config.log, &record.configs);
            let partitions = (0..record.partitions)
                .map(|p| open_partition(&config.log_dir, &record.name, p, &log_config, now))
                .collect::<Result<Vec<_>, _>>()?;
            by_id.insert(record.topic_id, record.name.clone());
            topics.insert(
                record.name.clone(),
                Arc::new(TopicState {
                    record: record.clone(),
                    log_config,
                    partitions,
                }),
            );
        }
        Ok(ReplicaManager {
            config,
            state: RwLock::new(State {
                // Ids of a block reserved before the restart may have been handed out:
                // start at the end of it, and reserve a new block on the first request.
                next_producer_id: store.image().next_producer_id_block,
                store,
                topics,
                by_id,
            }),
            appended: watch::channel(0).0,
        })
    }

    pub fn config(&self) -> &Arc<BrokerConfig> {
        &self.config
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Poisoning means a panic mid-update of the topic map: a broken invariant.
        self.state.read().expect("replica manager lock poisoned")
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().expect("replica manager lock poisoned")
    }

    pub fn cluster_id(&self) -> String {
        self.read_state().store.image().cluster_id.clone()
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicState>> {
        self.read_state().topics.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<TopicState>> {
        let state = self.read_state();
        state
            .by_id
            .get(&id)
            .and_then(|name| state.topics.get(name))
            .cloned()
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<TopicState>> {
        let mut topics: Vec<_> = self.read_state().topics.values().cloned().collect();
        topics.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        topics
    }

    /// A producer id never handed out before, from this broker's reserved block; a new block
    /// of [`controller::PRODUCER_ID_BLOCK_SIZE`] ids is persisted in the metadata image first
    /// when the current one is used up (Kafka's `ProducerIdManager.generateProducerId`).
    pub fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        let mut state = self.write_state();
        if state.next_producer_id >= state.store.image().next_producer_id_block {
            let block_start = state.next_producer_id;
            let block_end = block_start + controller::PRODUCER_ID_BLOCK_SIZE;
            state
                .store
                .update(|image| image.next_producer_id_block = block_end)
                .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
            tracing::info!(block_start, block_end, "reserved a block of producer ids");
        }
        let id = state.next_producer_id;
        state.next_producer_id += 1;
        Ok(id)
    }

    /// True if `producer_id` was handed out by [`ReplicaManager::allocate_producer_id`] (here
    /// or before a restart, as far as the reserved blocks tell).
    pub fn is_allocated_producer_id(&self, producer_id: i64) -> bool {
        producer_id >= 0 && producer_id < self.read_state().next_producer_id
    }

    /// Waits for appends: the value changes after each one.
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Creates an internal topic (`__consumer_offsets`) with configs that clients may not
    /// set, such as `cleanup.policy=compact`.
    pub fn create_internal_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: TopicConfigs,
    ) -> Result<Arc<TopicState>, ApiError> {
        self.create_topic_checked(name, partitions, -1, configs, false, false)
    }

    /// CreateTopics. `replication_factor` -1 means the broker default.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<Arc<TopicState>, ApiError> {
        self.create_topic_checked(
            name,
            partitions,
            replication_factor,
            configs,
            validate_only,
            true,
        )
    }

    fn create_topic_checked(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: TopicConfigs,
        validate_only: bool,
        validate_configs: bool,
    ) -> Result<Arc<TopicState>, ApiError> {
        controller::validate_topic_name(name)
            .map_err(|m| ApiError::new(ResponseError::InvalidTopicException, m))?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if partitions <= 0 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be larger than 0, not {partitions}"),
            ));
        }
        let replication_factor = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        if replication_factor != 1 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {replication_factor} is larger than the 1 available broker"
                ),
            ));
        }
        if validate_configs {
            topic_config::validate_all(&configs)
                .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        }
        let mut state = self.write_state();
        if state.topics.contains_key(name) {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            ));
        }
        let record = TopicRecord {
            name: name.to_string(),
            topic_id: Uuid::new_v4(),
            partitions,
            configs,
            assignments: Vec::new(),
        };
        let log_config = topic_config::log_config(&self.config.log, &record.configs);
        if validate_only {
            return Ok(Arc::new(TopicState {
                record,
                log_config,
                partitions: Vec::new(),
            }));
        }
        let now = now_ms();
        let logs = (0..partitions)
            .map(|p| open_partition(&self.config.log_dir, name, p, &log_config, now))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        state
            .store
            .update(|image| image.topics.insert(name.to_string(), record.clone()))
            .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        let topic = Arc::new(TopicState {
            record,
            log_config,
            partitions: logs,
        });
        state.by_id.insert(topic.record.topic_id, name.to_string());
        state.topics.insert(name.to_string(), topic.clone());
        drop(state);
        self.notify_appended();
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// DeleteTopics: forgets the topic, then removes its partition directories.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid, ApiError> {
        let mut state = self.write_state();
        let Some(topic) = state.topics.get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        state
            .store
            .update(|image| image.topics.remove(name))
            .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        state.topics.remove(name);
        state.by_id.remove(&topic.record.topic_id);
        drop(state);
        for partition in &topic.partitions {
            if let Err(e) = partition.delete() {
                tracing::warn!(
                    topic = name, partition = partition.index, error = %e,
                    "cannot remove partition directory"
                );
            }
        }
        self.notify_appended();
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.record.topic_id)
    }

    /// CreatePartitions: grows a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let mut state = self.write_state();
        let Some(topic) = state.topics.get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        let current = topic.record.partitions;
        if count <= current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("topic {name:?} has {current} partitions; the count can only grow, and {count} is not larger"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let now = now_ms();
        let mut partitions = topic.partitions.clone();
        for p in current..count {
            partitions.push(
                open_partition(&self.config.log_dir, name, p, &topic.log_config, now)
                    .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?,
            );
        }
        let mut record = topic.record.clone();
        record.partitions = count;
        state
            .store
            .update(|image| image.topics.insert(name.to_string(), record.clone()))
            .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        state.topics.insert(
            name.to_string(),
            Arc::new(TopicState {
                record,
                log_config: topic.log_config.clone(),
                partitions,
            }),
        );
        drop(state);
        self.notify_appended();
        Ok(())
    }

    /// Replaces a topic's overrides with `configs` (AlterConfigs) after validating them, and
    /// applies them to the open logs at once.
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        topic_config::validate_all(&configs)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        let mut state = self.write_state();
        let Some(topic) = state.topics.get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        if validate_only {
            return Ok(());
        }
        let mut record = topic.record.clone();
        record.configs = configs;
        state
            .store
            .update(|image| image.topics.insert(name.to_string(), record.clone()))
            .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        let log_config = topic_config::log_config(&self.config.log, &record.configs);
        for partition in &topic.partitions {
            if let Some(mut log) = partition.log() {
                log.update_config(log_config.clone());
            }
        }
        state.topics.insert(
            name.to_string(),
            Arc::new(TopicState {
                record,
                log_config,
                partitions: topic.partitions.clone(),
            }),
        );
        tracing::info!(topic = name, "updated topic configs");
        Ok(())
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.read_state()
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// Deletes segments past retention on every partition. Blocking: call from the blocking
    /// pool. Returns how many segments went.
    pub fn run_retention(&self, now_ms: i64) -> usize {
        let mut deleted = 0;
        for topic in self.topics() {
            if topic
                .record
                .configs
                .get("cleanup.policy")
                .map(String::as_str)
                != Some("compact")
            {
                continue;
            }
            // Only internal topics can be compacted (clients may not set the policy).
            for partition in &topic.partitions {
                let Some(mut log) = partition.log() else {
                    continue;
                };
                if let Err(e) = log.compact(now_ms) {
                    tracing::error!(
                        topic = %partition.topic, partition = partition.index, error = %e,
                        "compaction failed"
                    );
                }
            }
        }
        for partition in self.all_partitions() {
            let Some(mut log) = partition.log() else {
                continue;
            };
            if partition.topic == crate::group::coordinator::OFFSETS_TOPIC {
                // Compacted, never deleted by time or size.
                continue;
            }
            match log.apply_retention(now_ms) {
                Ok(n) => deleted += n,
                Err(e) => tracing::error!(
                    topic = %partition.topic, partition = partition.index, error = %e,
                    "retention failed"
                ),
            }
        }
        if deleted > 0 {
            tracing::info!(segments = deleted, "retention deleted segments");
        }
        deleted
    }

    /// Applies `flush.ms` to every partition. Blocking.
    pub fn flush_due(&self, now_ms: i64) {
        for partition in self.all_partitions() {
            let Some(mut log) = partition.log() else {
                continue;
            };
            if let Err(e) = log.flush_if_due(now_ms) {
                tracing::error!(
                    topic = %partition.topic, partition = partition.index, error = %e,
                    "flush failed"
                );
            }
        }
    }

    /// fsyncs every partition, checkpoints its recovery point and marks it cleanly closed.
    /// The last step of a shutdown: nothing may append afterwards. Blocking.
    pub fn flush_all(&self) -> usize {
        let mut failures = 0;
        for partition in self.all_partitions() {
            let Some(mut log) = partition.log() else {
                continue;
            };
            if let Err(e) = log.close_cleanly() {
                failures += 1;
                tracing::error!(
                    topic = %partition.topic, partition = partition.index, error = %e,
                    "flush failed"
                );
            }
        }
        failures
    }
}

pub fn unknown_topic(name: &str) -> ApiError {
    ApiError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name:?} does not exist"),
    )
}

fn open_partition(
    log_dir: &Path,
    topic: &str,
    partition: i32,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Arc<Partition>, OpenError> {
    let dir = partition_dir(log_dir, topic, partition);
    let log = Log::open(&dir, config.clone(), now_ms).map_err(|source| OpenError::Log {
        topic: topic.to_string(),
        partition,
        dir: dir.clone(),
        source,
    })?;
    Ok(Arc::new(Partition {
        topic: topic.to_string(),
        index: partition,
        log: Mutex::new(Some(log)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::build_batch;

    fn manager(dir: &Path) -> ReplicaManager {
        let config = BrokerConfig {
            log_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        };
        ReplicaManager::open(Arc::new(config)).unwrap()
    }

    #[test]
    fn a_partition_held_across_topic_deletion_cannot_touch_the_recreated_topic() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = manager(dir.path());
        let old = replicas
            .create_topic("orders", 1, 1, TopicConfigs::new(), false)
            .unwrap();
        let stale = old.partitions[0].clone();
        replicas.delete_topic("orders").unwrap();
        assert!(!dir.path().join("orders-0").exists());
        let new = replicas
            .create_topic("orders", 1, 1, TopicConfigs::new(), false)
            .unwrap();

        // A request that looked up the old partition before the deletion finds no log.
        assert!(stale.log().is_none());
        assert_eq!(
            stale.deleted_error().code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        // The re-created topic starts empty and its directory holds only its own segment.
        let mut batch = build_batch(0, 0, &[(None, Some(b"v"))]);
        let info = new.partitions[0]
            .log()
            .unwrap()
            .append_as_leader(&mut batch, 0)
            .unwrap();
        assert_eq!(info.base_offset, 0);
        let logs = std::fs::read_dir(dir.path().join("orders-0"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".log")
            })
            .count();
        assert_eq!(logs, 1);
    }

    #[test]
    fn topics_and_configs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = manager(dir.path());
        let configs: TopicConfigs = [("retention.ms".to_string(), "1000".to_string())].into();
        let id = replicas
            .create_topic("events", 3, -1, configs, false)
            .unwrap()
            .record
            .topic_id;
        replicas.flush_all();
        drop(replicas);
        let replicas = manager(dir.path());
        let topic = replicas.topic_by_id(id).unwrap();
        assert_eq!(topic.record.name, "events");
        assert_eq!(topic.partitions.len(), 3);
        assert_eq!(topic.log_config.retention_ms, 1000);
    }

    #[test]
    fn producer_ids_never_repeat_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = manager(dir.path());
        let first: Vec<i64> = (0..3)
            .map(|_| replicas.allocate_producer_id().unwrap())
            .collect();
        assert_eq!(first, vec![0, 1, 2]);
        assert!(replicas.is_allocated_producer_id(2));
        assert!(!replicas.is_allocated_producer_id(3));
        drop(replicas);
        let replicas = manager(dir.path());
        let next = replicas.allocate_producer_id().unwrap();
        assert_eq!(next, controller::PRODUCER_ID_BLOCK_SIZE);
        // Crossing a block boundary reserves the next block.
        for _ in 1..controller::PRODUCER_ID_BLOCK_SIZE {
            replicas.allocate_producer_id().unwrap();
        }
        assert_eq!(
            replicas.allocate_producer_id().unwrap(),
            2 * controller::PRODUCER_ID_BLOCK_SIZE
        );
        drop(replicas);
        let replicas = manager(dir.path());
        assert_eq!(
            replicas.allocate_producer_id().unwrap(),
            3 * controller::PRODUCER_ID_BLOCK_SIZE
        );
    }
}
