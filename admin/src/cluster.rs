//! The cluster: brokers and controller, partition reassignments and leader elections.
//!
//! | method | requests | route |
//! |---|---|---|
//! | `describe_cluster` | DescribeCluster (and Metadata for fenced brokers before v2), or Metadata | any broker |
//! | `alter_partition_reassignments` | AlterPartitionReassignments | any broker |
//! | `list_partition_reassignments` | ListPartitionReassignments | any broker |
//! | `elect_preferred_leaders`, `elect_leaders` | ElectLeaders | any broker |
//! | `unregister_broker` | UnregisterBroker | any broker |

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_partition_reassignments_request::{
    AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::{ElectLeadersRequest, TopicPartitions};
use kafka_protocol::messages::list_partition_reassignments_request::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsTopics,
};
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, UnregisterBrokerRequest};

use crate::admin::Req;
use crate::error::{check, Error, Result};
use crate::protocol::{code, ids, topic_name};
use crate::{
    Admin, BrokerDescription, ClusterDescription, Election, ElectionType, OngoingReassignment,
    TopicPartition,
};

impl Admin {
    /// Removes broker `id` from the cluster's metadata for good (KIP-631,
    /// `kafka-cluster.sh unregister`), so Metadata and DescribeCluster stop listing it.
    /// Tributary refuses a broker that still heartbeats or still holds a replica
    /// (`INVALID_REQUEST`, with the reason), and an unknown one (`BROKER_ID_NOT_REGISTERED`).
    pub async fn unregister_broker(&self, id: i32) -> Result<()> {
        let request = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
        self.retrying(|| async {
            let (response, _) = self.call_any(Req::Ready(&request)).await?;
            check(
                "UnregisterBroker",
                Some(&format!("broker {id}")),
                response.error_code,
                response.error_message.as_deref(),
            )
        })
        .await
    }

    /// The cluster id, the active controller and every broker, fenced ones included.
    ///
    /// DescribeCluster v2 (KIP-1073) lists fenced brokers itself. Before it, DescribeCluster
    /// lists the unfenced brokers only, and Metadata is asked for the rest: a broker that
    /// Metadata lists and DescribeCluster does not is fenced (Tributary's Metadata keeps
    /// fenced brokers so that clients keep their connection state). A broker without
    /// DescribeCluster (before Kafka 2.8) is described from Metadata alone, with every
    /// broker unfenced.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        self.retrying(|| self.describe_cluster_once()).await
    }

    async fn describe_cluster_once(&self) -> Result<ClusterDescription> {
        // Endpoint type 1 (brokers) is the default; v2 may include fenced brokers.
        let build = |version: i16| {
            Ok(DescribeClusterRequest::default()
                .with_include_cluster_authorized_operations(false)
                .with_include_fenced_brokers(version >= 2))
        };
        let (response, version) = match self.call_any(Req::Versioned(&build)).await {
            Ok(answer) => answer,
            Err(Error::UnsupportedApi { .. }) => {
                return self.describe_cluster_from_metadata().await
            }
            Err(e) => return Err(e),
        };
        check(
            "DescribeCluster",
            None,
            response.error_code,
            response.error_message.as_deref(),
        )?;
        let mut brokers: BTreeMap<i32, BrokerDescription> = response
            .brokers
            .into_iter()
            .map(|b| {
                let id = b.broker_id.0;
                let broker = BrokerDescription {
                    id,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                    fenced: b.is_fenced,
                };
                (id, broker)
            })
            .collect();
        if version < 2 {
            let metadata = self.metadata(Some(&[])).await?;
            for b in metadata.brokers {
                brokers
                    .entry(b.node_id.0)
                    .or_insert_with(|| BrokerDescription {
                        id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.map(|r| r.to_string()),
                        fenced: true,
                    });
            }
        }
        Ok(ClusterDescription {
            cluster_id: response.cluster_id.to_string(),
            controller_id: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
            brokers: brokers.into_values().collect(),
        })
    }

    async fn describe_cluster_from_metadata(&self) -> Result<ClusterDescription> {
        let metadata = self.metadata(Some(&[])).await?;
        let mut brokers: Vec<BrokerDescription> = metadata
            .brokers
            .into_iter()
            .map(|b| BrokerDescription {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
                fenced: false,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterDescription {
            cluster_id: metadata
                .cluster_id
                .map(|c| c.to_string())
                .unwrap_or_default(),
            controller_id: (metadata.controller_id.0 >= 0).then_some(metadata.controller_id.0),
            brokers,
        })
    }

    /// Starts moving each partition to a new replica list (preferred leader first), or
    /// cancels its reassignment in progress (`None`); the replication factor may change.
    /// Returns each partition's result in the order given; a failure of the request as a
    /// whole is the outer `Err`.
    pub async fn alter_partition_reassignments(
        &self,
        moves: &[(TopicPartition, Option<Vec<i32>>)],
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let mut topics: Vec<ReassignableTopic> = Vec::new();
        for (tp, target) in moves {
            let partition = ReassignablePartition::default()
                .with_partition_index(tp.partition)
                .with_replicas(
                    target
                        .as_ref()
                        .map(|t| t.iter().copied().map(BrokerId).collect()),
                );
            match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(
                    ReassignableTopic::default()
                        .with_name(topic_name(&tp.topic))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.server_timeout_ms())
            .with_allow_replication_factor_change(true)
            .with_topics(topics);
        let response = self
            .retrying(|| async {
                let (response, _) = self.call_any(Req::Ready(&request)).await?;
                check(
                    "AlterPartitionReassignments",
                    None,
                    response.error_code,
                    response.error_message.as_deref(),
                )?;
                Ok(response)
            })
            .await?;
        Ok(moves
            .iter()
            .map(|(tp, _)| {
                let result = response
                    .responses
                    .iter()
                    .filter(|t| t.name.0.as_str() == tp.topic)
                    .flat_map(|t| &t.partitions)
                    .find(|p| p.partition_index == tp.partition)
                    .ok_or_else(|| Error::MissingResult {
                        operation: "AlterPartitionReassignments",
                        resource: tp.to_string(),
                    })
                    .and_then(|p| {
                        check(
                            "AlterPartitionReassignments",
                            Some(&tp.to_string()),
                            p.error_code,
                            p.error_message.as_deref(),
                        )
                    });
                (tp.clone(), result)
            })
            .collect())
    }

    /// Every partition reassignment in progress, sorted by partition.
    pub async fn list_partition_reassignments(&self) -> Result<Vec<OngoingReassignment>> {
        self.list_reassignments(None).await
    }

    /// The reassignments in progress of `partitions` only, sorted; a partition that is not
    /// being reassigned is absent.
    pub async fn list_partition_reassignments_of(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<OngoingReassignment>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        self.list_reassignments(Some(partitions)).await
    }

    async fn list_reassignments(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<OngoingReassignment>> {
        let topics = partitions.map(|partitions| {
            let mut by_topic: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
            for tp in partitions {
                by_topic.entry(&tp.topic).or_default().insert(tp.partition);
            }
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    ListPartitionReassignmentsTopics::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(partitions.into_iter().collect())
                })
                .collect()
        });
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.server_timeout_ms())
            .with_topics(topics);
        self.retrying(|| async {
            let (response, _) = self.call_any(Req::Ready(&request)).await?;
            check(
                "ListPartitionReassignments",
                None,
                response.error_code,
                response.error_message.as_deref(),
            )?;
            let mut ongoing: Vec<OngoingReassignment> = response
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| OngoingReassignment {
                        tp: TopicPartition::new(t.name.0.as_str(), p.partition_index),
                        replicas: ids(&p.replicas),
                        adding: ids(&p.adding_replicas),
                        removing: ids(&p.removing_replicas),
                    })
                })
                .collect();
            ongoing.sort_by(|a, b| a.tp.cmp(&b.tp));
            Ok(ongoing)
        })
        .await
    }

    /// Moves leadership of `partitions` (every partition for `None`) to their preferred
    /// replicas. Per partition, sorted: `Ok` when the preferred replica leads now, elected
    /// by this call or already (`ELECTION_NOT_NEEDED`), or the Kafka error that prevented
    /// it (`PreferredLeaderNotAvailable`, `UnknownTopicOrPartition`, ...).
    pub async fn elect_preferred_leaders(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let results = self
            .elect_leaders(ElectionType::Preferred, partitions)
            .await?;
        Ok(results
            .into_iter()
            .map(|(tp, result)| (tp, result.map(drop)))
            .collect())
    }

    /// Leader elections of `kind` for `partitions` (every partition for `None`), telling an
    /// election that changed the leader from one that was not needed. Sorted by partition.
    pub async fn elect_leaders(
        &self,
        kind: ElectionType,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<(TopicPartition, Result<Election>)>> {
        let topic_partitions = partitions.map(|partitions| {
            let mut by_topic: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
            for tp in partitions {
                by_topic.entry(&tp.topic).or_default().insert(tp.partition);
            }
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(partitions.into_iter().collect())
                })
                .collect()
        });
        // `ElectionType`: 0 preferred, 1 unclean. v0 knows only preferred elections and
        // has no field for it.
        let election_type = match kind {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        };
        let timeout_ms = self.server_timeout_ms();
        let build = |version: i16| {
            if version < 1 && kind != ElectionType::Preferred {
                // Refuse rather than run a preferred election in its place.
                return Err(Error::InvalidArgument(format!(
                    "ElectLeaders v{version} knows only preferred leader elections"
                )));
            }
            Ok(ElectLeadersRequest::default()
                .with_election_type(if version >= 1 { election_type } else { 0 })
                .with_timeout_ms(timeout_ms)
                .with_topic_partitions(topic_partitions.clone()))
        };
        let response = self
            .retrying(|| async {
                let (response, _) = self.call_any(Req::Versioned(&build)).await?;
                check("ElectLeaders", None, response.error_code, None)?;
                Ok(response)
            })
            .await?;
        let mut results: Vec<(TopicPartition, Result<Election>)> = response
            .replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result.iter().map(|p| {
                    let tp = TopicPartition::new(t.topic.0.as_str(), p.partition_id);
                    let result = match p.error_code {
                        0 => Ok(Election::Elected),
                        code::ELECTION_NOT_NEEDED => Ok(Election::NotNeeded),
                        error_code => Err(Error::kafka(
                            "ElectLeaders",
                            Some(tp.to_string()),
                            error_code,
                            p.error_message.as_deref(),
                        )),
                    };
                    (tp, result)
                })
            })
            .collect();
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(results)
    }
}
