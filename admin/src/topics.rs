//! Topics: describe, create, grow, delete, configs, and the offsets of their partitions.
//!
//! | method | request | route |
//! |---|---|---|
//! | `describe_topics`, `describe_topic` | Metadata | any broker |
//! | `create_topic`, `create_topic_validate_only` | CreateTopics | any broker |
//! | `create_partitions` | CreatePartitions | any broker |
//! | `delete_topic` | DeleteTopics | any broker |
//! | `describe_topic_configs` | DescribeConfigs | any broker |
//! | `alter_topic_configs` | IncrementalAlterConfigs | any broker |
//! | `list_offsets` | Metadata, then ListOffsets | each partition's leader |

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use kafka_protocol::messages::delete_topics_request::{DeleteTopicState, DeleteTopicsRequest};
use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::BrokerId;
use uuid::Uuid;

use crate::admin::{is_route_error, Req};
use crate::error::{check, Error, Result};
use crate::protocol::{code, ids, str_bytes, topic_name};
use crate::{
    Admin, AlterConfigOp, ConfigEntry, ConfigSource, NewTopic, OffsetSpec, PartitionDescription,
    TopicDescription, TopicPartition,
};

/// `ConfigResource.Type.TOPIC`.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations (`AlterConfigOp.OpType`).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// ListOffsets' timestamp for the log end offset.
const LATEST_TIMESTAMP: i64 = -1;

impl Admin {
    /// Describes `names`, or every topic for `None`, sorted by name. Topics that do not
    /// exist are absent from the result rather than an error; any other topic-level Kafka
    /// error (an invalid name, no authorization) is.
    pub async fn describe_topics(&self, names: Option<&[String]>) -> Result<Vec<TopicDescription>> {
        if names.is_some_and(|n| n.is_empty()) {
            return Ok(Vec::new());
        }
        self.retrying(|| self.describe_topics_once(names)).await
    }

    /// Describes one topic; `None` when it does not exist.
    pub async fn describe_topic(&self, name: &str) -> Result<Option<TopicDescription>> {
        let topics = self.describe_topics(Some(&[name.to_string()])).await?;
        Ok(topics.into_iter().find(|t| t.name == name))
    }

    async fn describe_topics_once(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<TopicDescription>> {
        let response = self.metadata(names).await?;
        let mut topics = Vec::with_capacity(response.topics.len());
        for t in response.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            match t.error_code {
                0 => {}
                code::UNKNOWN_TOPIC_OR_PARTITION | code::UNKNOWN_TOPIC_ID => continue,
                error_code => return Err(Error::kafka("Metadata", Some(name), error_code, None)),
            }
            let mut partitions: Vec<PartitionDescription> = t
                .partitions
                .iter()
                .map(|p| PartitionDescription {
                    partition: p.partition_index,
                    leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                    leader_epoch: p.leader_epoch,
                    replicas: ids(&p.replica_nodes),
                    isr: ids(&p.isr_nodes),
                    offline_replicas: ids(&p.offline_replicas),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            topics.push(TopicDescription {
                name,
                topic_id: t.topic_id,
                internal: t.is_internal,
                partitions,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Creates `topic`; returns its id (nil from brokers older than CreateTopics v7).
    ///
    /// A retry after a lost connection can meet `TopicAlreadyExists` when the first
    /// attempt was carried out; a caller that wants "exists" to be success checks
    /// [`Error::kafka_name`].
    pub async fn create_topic(&self, topic: &NewTopic) -> Result<Uuid> {
        self.retrying(|| self.create_topic_once(topic, false)).await
    }

    /// Asks the controller whether `topic` could be created, creating nothing.
    pub async fn create_topic_validate_only(&self, topic: &NewTopic) -> Result<()> {
        self.retrying(|| self.create_topic_once(topic, true))
            .await
            .map(drop)
    }

    async fn create_topic_once(&self, topic: &NewTopic, validate_only: bool) -> Result<Uuid> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(self.server_timeout_ms())
            .with_validate_only(validate_only)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(&topic.name))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                        })
                        .collect(),
                )]);
        let (response, _) = self.call_any(Req::Ready(&request)).await?;
        let result = response
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == topic.name)
            .ok_or_else(|| missing("CreateTopics", &topic.name))?;
        check(
            "CreateTopics",
            Some(&topic.name),
            result.error_code,
            result.error_message.as_deref(),
        )?;
        Ok(result.topic_id)
    }

    /// Grows `topic` to `total` partitions; the broker places the new ones. Kafka cannot
    /// shrink a topic: a smaller `total` fails with `InvalidPartitions`.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        self.retrying(|| async {
            let request = CreatePartitionsRequest::default()
                .with_timeout_ms(self.server_timeout_ms())
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(topic))
                    .with_count(total)
                    // None, not an empty list: the broker places the new partitions.
                    .with_assignments(None)]);
            let (response, _) = self.call_any(Req::Ready(&request)).await?;
            let result = response
                .results
                .iter()
                .find(|t| t.name.0.as_str() == topic)
                .ok_or_else(|| missing("CreatePartitions", topic))?;
            check(
                "CreatePartitions",
                Some(topic),
                result.error_code,
                result.error_message.as_deref(),
            )
        })
        .await
    }

    /// Deletes `topic`. The deletion completes asynchronously: Metadata may list the topic
    /// for a moment after this returns.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let timeout_ms = self.server_timeout_ms();
        let build = move |version: i16| {
            // v6 names topics in `topics` (by name or id); older versions in `topic_names`.
            Ok(if version >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic_name(topic)))
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic_name(topic)])
            }
            .with_timeout_ms(timeout_ms))
        };
        self.retrying(|| async {
            let (response, _) = self.call_any(Req::Versioned(&build)).await?;
            let result = response
                .responses
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
                .ok_or_else(|| missing("DeleteTopics", topic))?;
            check(
                "DeleteTopics",
                Some(topic),
                result.error_code,
                result.error_message.as_deref(),
            )
        })
        .await
    }

    /// Every config of `topic` with its value and source, sorted by name.
    pub async fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        self.retrying(|| async {
            let request = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TYPE_TOPIC)
                    .with_resource_name(str_bytes(topic))
                    .with_configuration_keys(None),
            ]);
            let (response, _) = self.call_any(Req::Ready(&request)).await?;
            let result = response
                .results
                .into_iter()
                .find(|r| r.resource_name.as_str() == topic)
                .ok_or_else(|| missing("DescribeConfigs", topic))?;
            check(
                "DescribeConfigs",
                Some(topic),
                result.error_code,
                result.error_message.as_deref(),
            )?;
            let mut configs: Vec<ConfigEntry> = result
                .configs
                .into_iter()
                .map(|c| ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    source: ConfigSource::from_code(c.config_source),
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                })
                .collect();
            configs.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(configs)
        })
        .await
    }

    /// Sets and removes config overrides of `topic` (IncrementalAlterConfigs: configs not
    /// named keep their values).
    pub async fn alter_topic_configs(&self, topic: &str, ops: &[AlterConfigOp]) -> Result<()> {
        let configs: Vec<AlterableConfig> = ops
            .iter()
            .map(|op| match op {
                AlterConfigOp::Set { name, value } => AlterableConfig::default()
                    .with_name(str_bytes(name))
                    .with_config_operation(OP_SET)
                    .with_value(Some(str_bytes(value))),
                AlterConfigOp::Delete { name } => AlterableConfig::default()
                    .with_name(str_bytes(name))
                    .with_config_operation(OP_DELETE)
                    .with_value(None),
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(str_bytes(topic))
                .with_configs(configs),
        ]);
        self.retrying(|| async {
            let (response, _) = self.call_any(Req::Ready(&request)).await?;
            let result = response
                .responses
                .iter()
                .find(|r| r.resource_name.as_str() == topic)
                .ok_or_else(|| missing("IncrementalAlterConfigs", topic))?;
            check(
                "IncrementalAlterConfigs",
                Some(topic),
                result.error_code,
                result.error_message.as_deref(),
            )
        })
        .await
    }

    /// The offset `spec` names of each of `partitions`, asked of each partition's leader.
    ///
    /// For [`OffsetSpec::Timestamp`], a partition with no record at or after the timestamp
    /// maps to its log end offset, which is where Kafka's `kafka-consumer-groups.sh
    /// --reset-offsets --to-datetime` puts a group in that case (the consumer would
    /// otherwise start from its `auto.offset.reset`).
    ///
    /// A partition that does not exist fails the call with `UnknownTopicOrPartition` for
    /// it; one whose leader moved or is being elected is retried with fresh Metadata.
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut offsets = self.list_offsets_at(partitions, spec.timestamp()).await?;
        if let OffsetSpec::Timestamp(_) = spec {
            let none: Vec<TopicPartition> = offsets
                .iter()
                .filter(|(_, offset)| **offset < 0)
                .map(|(tp, _)| tp.clone())
                .collect();
            if !none.is_empty() {
                offsets.extend(self.list_offsets_at(&none, LATEST_TIMESTAMP).await?);
            }
        }
        Ok(offsets)
    }

    async fn list_offsets_at(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut pending: BTreeSet<TopicPartition> = partitions.iter().cloned().collect();
        let mut found = BTreeMap::new();
        let mut retry = self.route_retry();
        while !pending.is_empty() {
            if let Err(e) = self
                .list_offsets_round(&mut pending, &mut found, timestamp)
                .await
            {
                // A leader that went away is as good as one that moved: Metadata will
                // name the new one.
                if !(is_route_error(&e) || e.is_connection_loss()) {
                    return Err(e);
                }
                retry.wait(e).await?;
            }
        }
        Ok(found)
    }

    /// One round: Metadata for the pending partitions' topics, then ListOffsets to each
    /// leader. Answers move from `pending` to `found`. A moved route is returned only after
    /// every leader was asked, so the next round retries just what is left.
    async fn list_offsets_round(
        &self,
        pending: &mut BTreeSet<TopicPartition>,
        found: &mut BTreeMap<TopicPartition, i64>,
        timestamp: i64,
    ) -> Result<()> {
        let topics: Vec<String> = pending
            .iter()
            .map(|tp| tp.topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let metadata = self.metadata(Some(&topics)).await?;
        // topic → (error code, partition → leader)
        let mut leaders: HashMap<&str, (i16, HashMap<i32, i32>)> = HashMap::new();
        for t in &metadata.topics {
            if let Some(name) = &t.name {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.leader_id.0))
                    .collect();
                leaders.insert(name.0.as_str(), (t.error_code, partitions));
            }
        }
        let mut moved: Option<Error> = None;
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for tp in pending.iter() {
            let resource = || Some(tp.to_string());
            let leader = match leaders.get(tp.topic.as_str()) {
                None => {
                    return Err(Error::kafka(
                        "ListOffsets",
                        resource(),
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        None,
                    ))
                }
                Some((0, partitions)) => match partitions.get(&tp.partition) {
                    Some(leader) => *leader,
                    None => {
                        return Err(Error::kafka(
                            "ListOffsets",
                            resource(),
                            code::UNKNOWN_TOPIC_OR_PARTITION,
                            None,
                        ))
                    }
                },
                Some((error_code, _)) => {
                    let e = Error::kafka("ListOffsets", resource(), *error_code, None);
                    if !is_route_error(&e) {
                        return Err(e);
                    }
                    moved.get_or_insert(e);
                    continue;
                }
            };
            if leader < 0 {
                moved.get_or_insert_with(|| {
                    Error::kafka("ListOffsets", resource(), code::LEADER_NOT_AVAILABLE, None)
                });
                continue;
            }
            by_leader.entry(leader).or_default().push(tp.clone());
        }
        for (leader, tps) in by_leader {
            let request = list_offsets_request(&tps, timestamp);
            let response = match self.call_broker(leader, Req::Ready(&request)).await {
                Ok((response, _)) => response,
                Err(e) if e.is_connection_loss() || matches!(e, Error::UnknownBroker { .. }) => {
                    moved.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for tp in tps {
                let result = response
                    .topics
                    .iter()
                    .filter(|t| t.name.0.as_str() == tp.topic)
                    .flat_map(|t| &t.partitions)
                    .find(|p| p.partition_index == tp.partition)
                    .ok_or_else(|| missing("ListOffsets", &tp.to_string()))?;
                if result.error_code == 0 {
                    pending.remove(&tp);
                    found.insert(tp, result.offset);
                    continue;
                }
                let e = Error::kafka("ListOffsets", Some(tp.to_string()), result.error_code, None);
                if !is_route_error(&e) {
                    return Err(e);
                }
                moved.get_or_insert(e);
            }
        }
        match moved {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// ListOffsets for `partitions` at `timestamp`, as a consumer asks (replica id -1, read
/// uncommitted: the latest offset is the high watermark).
fn list_offsets_request(partitions: &[TopicPartition], timestamp: i64) -> ListOffsetsRequest {
    let mut by_topic: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(timestamp),
        );
    }
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

fn missing(operation: &'static str, resource: &str) -> Error {
    Error::MissingResult {
        operation,
        resource: resource.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_offsets_groups_partitions_by_topic() {
        let request = list_offsets_request(
            &[
                TopicPartition::new("b", 1),
                TopicPartition::new("a", 0),
                TopicPartition::new("b", 0),
            ],
            -2,
        );
        let topics: Vec<(String, Vec<i32>)> = request
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        assert_eq!(
            topics,
            [("a".to_string(), vec![0]), ("b".to_string(), vec![1, 0])]
        );
        assert!(request
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .all(|p| p.timestamp == -2 && p.current_leader_epoch == -1));
        assert_eq!(request.replica_id, BrokerId(-1));
    }
}
