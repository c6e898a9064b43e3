//! The partitions this broker hosts, kept in step with the controller's metadata image
//! (Kafka's `ReplicaManager` and `LogManager` in one).
//!
//! ```text
//! controller image (watch) ──apply_image──> ReplicaManager ──> Partition { log, role }
//!                                               │                 ├─ Leader: serves produce,
//!                                               │                 │  consumers, followers
//!                                               │                 └─ Follower: fed by a fetcher
//!                                               └─ follower set ──> Fetchers (one per leader)
//! ```
//!
//! The image says, for every partition, its replicas, leader, ISR and epochs. Applying an
//! image opens the logs of partitions that name this broker, switches their roles, and
//! deletes the logs of partitions that no longer do (topic deleted, replica moved away).
//! Nothing here changes metadata: that goes through the controller.
//!
//! Locking: `state` (an `RwLock`) is held only to look up or replace the topic map; each
//! partition has its own mutex (see [`super::partition`]). Neither is held across `.await`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use crate::controller::{topic_config, MetadataImage, TopicRecord, METADATA_DIR};
use crate::log::{Log, LogConfig};
use crate::metrics::{BrokerMetrics, TopicMetrics};
use crate::server::config::BrokerConfig;
pub use crate::server::partition::{LogGuard, Partition, Role};

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

impl From<crate::controller::CommandError> for ApiError {
    fn from(e: crate::controller::CommandError) -> Self {
        ApiError {
            code: e.code,
            message: e.message,
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

/// File in a partition directory naming the topic id it belongs to (Kafka's
/// `partition.metadata`), so a directory left by a deleted topic is never taken for a new
/// topic of the same name.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// A topic and the partitions of it this broker hosts.
#[derive(Debug)]
pub struct TopicState {
    pub record: TopicRecord,
    pub log_config: LogConfig,
    /// By partition index; `None` where this broker is not a replica.
    pub hosted: Vec<Option<Arc<Partition>>>,
    /// The topic's traffic counters, when it has a partition here (see
    /// [`BrokerMetrics::topic`]): the Produce and Fetch handlers count into them.
    pub metrics: Option<TopicMetrics>,
}

impl TopicState {
    /// The hosted partition `index`, if this broker is one of its replicas.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.hosted.get(i))
            .and_then(|p| p.as_ref())
    }

    /// The partition for a client request: UNKNOWN_TOPIC_OR_PARTITION when the index does
    /// not exist, NOT_LEADER_OR_FOLLOWER when another broker holds it.
    pub fn lookup(&self, index: i32, broker_id: i32) -> Result<Arc<Partition>, ApiError> {
        if index < 0 || index >= self.record.partitions {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("{}-{index} does not exist", self.record.name),
            ));
        }
        self.partition(index).cloned().ok_or_else(|| {
            ApiError::new(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "broker {broker_id} is not a replica of {}-{index}",
                    self.record.name
                ),
            )
        })
    }

    /// Every hosted partition.
    pub fn partitions(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.hosted.iter().flatten()
    }
}

#[derive(Debug, Default)]
struct State {
    image: Arc<MetadataImage>,
    image_index: u64,
    topics: HashMap<String, Arc<TopicState>>,
    by_id: HashMap<Uuid, String>,
    /// Every hosted partition by (topic id, index).
    hosted: HashMap<(Uuid, i32), Arc<Partition>>,
    /// Stray partition directories are removed once, after the first image.
    strays_removed: bool,
}

/// What applying an image changed, for the callers that act on it.
#[derive(Debug, Default)]
pub struct ImageChanges {
    /// Partitions this broker follows, with their leader: the fetchers' work list.
    pub following: Vec<(Arc<Partition>, i32, i32)>,
    /// Partitions this broker now leads and did not before.
    pub became_leader: Vec<Arc<Partition>>,
    /// Partitions this broker led before and does not now (or no longer hosts).
    pub lost_leadership: Vec<(String, i32)>,
}

#[derive(Debug, Default)]
struct ProducerIdBlock {
    next: i64,
    end: i64,
}

/// Every partition on this broker.
#[derive(Debug)]
pub struct ReplicaManager {
    config: Arc<BrokerConfig>,
    state: RwLock<State>,
    /// Bumped after every append, high watermark move and image; long-polling fetches watch it.
    appended: watch::Sender<u64>,
    producer_ids: Mutex<ProducerIdBlock>,
    /// Raft log index of the image last applied.
    image_applied: watch::Sender<u64>,
    /// Random per process start; registered with the controller.
    incarnation: Uuid,
    /// What the broker counts as it works: requests, topic traffic, ISR changes.
    metrics: Arc<BrokerMetrics>,
}

fn partition_dir(log_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    log_dir.join(format!("{topic}-{partition}"))
}

impl ReplicaManager {
    pub fn new(config: Arc<BrokerConfig>) -> Self {
        ReplicaManager {
            config,
            state: RwLock::new(State::default()),
            appended: watch::channel(0).0,
            producer_ids: Mutex::new(ProducerIdBlock::default()),
            image_applied: watch::channel(0).0,
            incarnation: Uuid::new_v4(),
            metrics: Arc::new(BrokerMetrics::new()),
        }
    }

    pub fn metrics(&self) -> &Arc<BrokerMetrics> {
        &self.metrics
    }

    pub fn config(&self) -> &Arc<BrokerConfig> {
        &self.config
    }

    pub fn incarnation(&self) -> Uuid {
        self.incarnation
    }

    pub fn broker_id(&self) -> i32 {
        self.config.broker_id
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Poisoning means a panic mid-update of the topic map: a broken invariant.
        self.state.read().expect("replica manager lock poisoned")
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().expect("replica manager lock poisoned")
    }

    pub fn cluster_id(&self) -> String {
        self.read_state().image.cluster_id.clone()
    }

    /// The metadata image last applied, and its Raft log index.
    pub fn image(&self) -> (u64, Arc<MetadataImage>) {
        let state = self.read_state();
        (state.image_index, state.image.clone())
    }

    /// Opens the logs of the partitions `image` assigns to this broker that are not in
    /// `hosted` yet. A log that cannot be opened is logged and left out.
    fn open_new_replicas(
        &self,
        image: &MetadataImage,
        hosted: &HashMap<(Uuid, i32), Arc<Partition>>,
        now: i64,
    ) -> HashMap<(Uuid, i32), Arc<Partition>> {
        let me = self.config.broker_id;
        let mut opened = HashMap::new();
        for record in image.topics.values() {
            let mut log_config = None;
            for (p, assignment) in record.assignments.iter().enumerate() {
                let key = (record.topic_id, p as i32);
                if !assignment.replicas.contains(&me) || hosted.contains_key(&key) {
                    continue;
                }
                let log_config = log_config.get_or_insert_with(|| {
                    topic_config::log_config(&self.config.log, &record.configs)
                });
                match open_partition(&self.config.log_dir, record, key.1, log_config, me, now) {
                    Ok(partition) => {
                        opened.insert(key, partition);
                    }
                    Err(e) => tracing::error!(
                        topic = %record.name, partition = key.1, error = %e,
                        "cannot open partition log"
                    ),
                }
            }
        }
        opened
    }

    /// Waits until an image at least as new as Raft log index `index` is applied; false if
    /// `timeout` passes first.
    pub async fn wait_image(&self, index: u64, timeout: Duration) -> bool {
        let mut applied = self.image_applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|&i| i >= index))
            .await
            .is_ok_and(|r| r.is_ok())
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

    /// Every partition hosted here.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.read_state().hosted.values().cloned().collect()
    }

    /// The next producer id from this broker's block, if any is left.
    pub fn take_producer_id(&self) -> Option<i64> {
        let mut block = self.producer_ids.lock().expect("producer id lock poisoned");
        (block.next < block.end).then(|| {
            block.next += 1;
            block.next - 1
        })
    }

    /// A new block `[start, end)` handed to this broker by the controller.
    pub fn add_producer_id_block(&self, start: i64, end: i64) {
        let mut block = self.producer_ids.lock().expect("producer id lock poisoned");
        if start >= block.end {
            *block = ProducerIdBlock { next: start, end };
        }
    }

    /// True if `producer_id` was handed out by the cluster (its block is committed).
    ///
    /// The block this broker holds counts too: the controller's answer to the allocation
    /// can arrive before this broker's copy of the image includes it.
    pub fn is_allocated_producer_id(&self, producer_id: i64) -> bool {
        let held_end = self
            .producer_ids
            .lock()
            .expect("producer id lock poisoned")
            .end;
        producer_id >= 0
            && producer_id < held_end.max(self.read_state().image.next_producer_id_block)
    }

    /// Waits for appends: the value changes after each one.
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Brings the hosted partitions in line with a committed image. Blocking (opens and
    /// deletes logs): call from the blocking pool, from one task at a time. Images older
    /// than the last applied one are ignored.
    pub fn apply_image(&self, index: u64, image: Arc<MetadataImage>) -> ImageChanges {
        let me = self.config.broker_id;
        let now = now_ms();
        let mut changes = ImageChanges::default();
        // New replicas' logs are opened (created, recovered) before the state is locked:
        // that touches the disk, for each of possibly hundreds of partitions, while
        // request handlers and heartbeats on the async runtime read the state.
        let mut opened = {
            let state = self.read_state();
            if index < state.image_index {
                return changes;
            }
            self.open_new_replicas(&image, &state.hosted, now)
        };
        let mut state = self.write_state();
        if index < state.image_index {
            return changes;
        }
        let mut topics = HashMap::new();
        let mut by_id = HashMap::new();
        let mut hosted: HashMap<(Uuid, i32), Arc<Partition>> = HashMap::new();
        for record in image.topics.values() {
            let log_config = topic_config::log_config(&self.config.log, &record.configs);
            let mut slots = Vec::with_capacity(record.assignments.len());
            for (p, assignment) in record.assignments.iter().enumerate() {
                let p = p as i32;
                if !assignment.replicas.contains(&me) {
                    slots.push(None);
                    continue;
                }
                let key = (record.topic_id, p);
                let partition = match state.hosted.get(&key) {
                    Some(existing) => {
                        if let Some(mut log) = existing.log() {
                            if log.config() != &log_config {
                                log.update_config(log_config.clone());
                            }
                        }
                        existing.clone()
                    }
                    None => match opened.remove(&key) {
                        Some(partition) => partition,
                        // Its log could not be opened (logged there).
                        None => {
                            slots.push(None);
                            continue;
                        }
                    },
                };
                let was_leader = matches!(partition.role(), Role::Leader(_));
                partition.apply_record(
                    assignment.leader,
                    assignment.leader_epoch,
                    assignment.partition_epoch,
                    &assignment.replicas,
                    &assignment.isr,
                    now,
                );
                match partition.role() {
                    Role::Leader(_) if !was_leader => changes.became_leader.push(partition.clone()),
                    Role::Leader(_) => {}
                    Role::Follower {
                        leader,
                        leader_epoch,
                    } => {
                        if was_leader {
                            changes.lost_leadership.push((record.name.clone(), p));
                        }
                        changes
                            .following
                            .push((partition.clone(), leader, leader_epoch));
                    }
                    Role::Offline => {
                        if was_leader {
                            changes.lost_leadership.push((record.name.clone(), p));
                        }
                    }
                }
                hosted.insert(key, partition.clone());
                slots.push(Some(partition));
            }
            by_id.insert(record.topic_id, record.name.clone());
            let metrics = slots
                .iter()
                .any(Option::is_some)
                .then(|| self.metrics.topic(&record.name));
            topics.insert(
                record.name.clone(),
                Arc::new(TopicState {
                    record: record.clone(),
                    log_config,
                    hosted: slots,
                    metrics,
                }),
            );
        }
        self.metrics.retain_topics(
            &topics
                .values()
                .filter(|t| t.metrics.is_some())
                .map(|t| t.record.name.as_str())
                .collect(),
        );
        let gone: Vec<Arc<Partition>> = state
            .hosted
            .iter()
            .filter(|(key, _)| !hosted.contains_key(key))
            .map(|(_, p)| p.clone())
            .collect();
        // Only once the controller has unfenced this very process: it does so after the
        // broker has caught up with the metadata log, so the image is not a stale one from
        // before a restart, in which newer partitions would look like strays.
        let remove_strays = !state.strays_removed
            && image
                .brokers
                .get(&me)
                .is_some_and(|b| !b.fenced && b.incarnation == self.incarnation);
        state.topics = topics;
        state.by_id = by_id;
        state.hosted = hosted;
        state.image = image;
        state.image_index = index;
        if remove_strays {
            state.strays_removed = true;
        }
        let kept: HashSet<PathBuf> = state
            .hosted
            .values()
            .filter_map(|p| p.log().map(|l| l.dir().to_path_buf()))
            .collect();
        drop(state);
        self.image_applied.send_if_modified(|applied| {
            let newer = index > *applied;
            *applied = (*applied).max(index);
            newer
        });
        for partition in gone {
            if matches!(partition.role(), Role::Leader(_)) {
                changes
                    .lost_leadership
                    .push((partition.topic.clone(), partition.index));
            }
            tracing::info!(
                topic = %partition.topic, partition = partition.index,
                "removing replica no longer assigned to this broker"
            );
            if let Err(e) = partition.delete() {
                tracing::warn!(
                    topic = %partition.topic, partition = partition.index, error = %e,
                    "cannot remove partition directory"
                );
            }
        }
        if remove_strays {
            remove_stray_dirs(&self.config.log_dir, &kept);
        }
        self.notify_appended();
        changes
    }

    /// Deletes segments past retention (leaders and followers, below the high watermark)
    /// and compacts compacted topics. Blocking. Returns how many segments went.
    pub fn run_retention(&self, now_ms: i64) -> usize {
        let mut deleted = 0;
        for topic in self.topics() {
            let compacted = topic
                .record
                .configs
                .get("cleanup.policy")
                .map(String::as_str)
                == Some("compact");
            for partition in topic.partitions() {
                let Some(mut log) = partition.log() else {
                    continue;
                };
                let hw = log.high_watermark();
                if compacted {
                    if let Err(e) = log.compact_below(now_ms, hw) {
                        tracing::error!(
                            topic = %partition.topic, partition = partition.index, error = %e,
                            "compaction failed"
                        );
                    }
                    continue;
                }
                match log.apply_retention_below(now_ms, hw) {
                    Ok(n) => deleted += n,
                    Err(e) => tracing::error!(
                        topic = %partition.topic, partition = partition.index, error = %e,
                        "retention failed"
                    ),
                }
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

/// Opens (recovering) or creates the log of one assigned partition. A directory holding a
/// different topic id (left by a deleted topic of the same name) is wiped first.
fn open_partition(
    log_dir: &Path,
    record: &TopicRecord,
    partition: i32,
    config: &LogConfig,
    broker_id: i32,
    now_ms: i64,
) -> Result<Arc<Partition>, crate::log::Error> {
    let dir = partition_dir(log_dir, &record.name, partition);
    let marker = dir.join(PARTITION_METADATA_FILE);
    let expected = format!("version: 0\ntopic_id: {}\n", record.topic_id);
    match std::fs::read_to_string(&marker) {
        Ok(found) if found == expected => {}
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "partition directory belongs to an older topic of the same name; removing it");
            std::fs::remove_dir_all(&dir).map_err(crate::log::Error::io("removing", &dir))?;
        }
        Err(_) => {}
    }
    let log = Log::open(&dir, config.clone(), now_ms)?;
    if !marker.exists() {
        std::fs::write(&marker, expected).map_err(crate::log::Error::io("writing", &marker))?;
    }
    Ok(Arc::new(Partition::new(
        &record.name,
        partition,
        record.topic_id,
        broker_id,
        log,
    )))
}

/// Removes `<topic>-<n>` directories that no assigned partition uses: partitions deleted
/// or moved away while this broker was down.
fn remove_stray_dirs(log_dir: &Path, kept: &HashSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name == METADATA_DIR || !path.is_dir() || kept.contains(&path) {
            continue;
        }
        let looks_like_partition = name
            .rsplit_once('-')
            .is_some_and(|(topic, n)| !topic.is_empty() && n.parse::<u32>().is_ok());
        if !looks_like_partition || !path.join(PARTITION_METADATA_FILE).exists() {
            continue;
        }
        tracing::info!(dir = %path.display(), "removing a partition no longer assigned to this broker");
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(dir = %path.display(), error = %e, "cannot remove stray partition");
        }
    }
}

/// Effective `min.insync.replicas` of a topic.
pub fn min_insync_replicas(config: &BrokerConfig, topic: &TopicState) -> usize {
    topic_config::min_insync_replicas(config.min_insync_replicas, &topic.record.configs).max(1)
        as usize
}

/// For tests and tools: the leaders by partition in an image.
pub fn leaders(image: &MetadataImage, topic: &str) -> BTreeMap<i32, i32> {
    image
        .topics
        .get(topic)
        .map(|t| {
            t.assignments
                .iter()
                .enumerate()
                .map(|(i, a)| (i as i32, a.leader))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_block_counts_as_allocated_before_the_image_shows_it() {
        let replicas = ReplicaManager::new(Arc::new(BrokerConfig::default()));
        assert!(!replicas.is_allocated_producer_id(0));
        replicas.add_producer_id_block(0, 1000);
        assert_eq!(replicas.take_producer_id(), Some(0));
        assert!(replicas.is_allocated_producer_id(0));
        assert!(replicas.is_allocated_producer_id(999));
        assert!(!replicas.is_allocated_producer_id(1000));
        assert!(!replicas.is_allocated_producer_id(-1));
    }
}
