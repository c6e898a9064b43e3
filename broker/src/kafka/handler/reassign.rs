//! AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders (KIP-455,
//! KIP-460): moving replicas between brokers and leadership back to preferred replicas.
//!
//! Each partition of a request is checked against this broker's copy of the metadata and
//! committed as its own [`Command`] through the controller, so one refused partition does
//! not hold the others back, and `apply` checks again at the command's place in the log.
//!
//! ```text
//! AlterPartitionReassignments ─> per partition: checks ─> Command::Reassign{target | None}
//!                                       (replicas catch up, join the ISR; `apply` completes)
//! ListPartitionReassignments ──> image.reassignments() (replicas, adding, removing)
//! ElectLeaders (PREFERRED) ────> prepare::elect_leaders ─> Command::ElectLeaders{preferred}
//! ElectLeaders (UNCLEAN) ──────> INVALID_REQUEST: only clean elections exist here
//! ```
//!
//! The answer to AlterPartitionReassignments means "started", as in Kafka: completion is
//! visible through ListPartitionReassignments (the partition leaves the list) and Metadata.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::controller::{prepare, Command, MetadataImage, PartitionRecord};
use crate::server::replica_manager::ApiError;
use crate::server::BrokerContext;

/// The newest committed metadata this broker has: the controller node's image, which
/// `submit` waits for, rather than the replica manager's, which follows it a moment later.
/// A client that changes something and then asks (Alter then List, or an election and
/// its result) reads its own write.
fn committed_image(ctx: &BrokerContext) -> Arc<MetadataImage> {
    ctx.controller.image().borrow().1.clone()
}

/// `ElectionType.PREFERRED` of ElectLeaders (and the only type v0 knows).
pub const ELECTION_PREFERRED: i8 = 0;
/// `ElectionType.UNCLEAN`: refused, since a replica outside the ISR may lack acknowledged
/// writes and this broker never elects one.
pub const ELECTION_UNCLEAN: i8 = 1;

pub async fn alter_partition_reassignments(
    ctx: &Arc<BrokerContext>,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    // KIP-860 (v1): the client may forbid replication-factor changes; before v1 they are
    // always allowed.
    let allow_rf_change = version < 1 || request.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let target = p
                .replicas
                .map(|replicas| replicas.iter().map(|b| b.0).collect::<Vec<i32>>());
            let result = reassign(ctx, &name, p.partition_index, target, allow_rf_change).await;
            let response =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match result {
                Ok(()) => response.with_error_message(None),
                Err(ApiError { code, message }) => response
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_error_message(None)
        .with_responses(responses)
}

/// Starts (`Some(target)`) or cancels (`None`) the reassignment of one partition.
///
/// The checks here give Kafka's answers without a trip through the metadata log for
/// requests that cannot succeed; `apply` repeats the decisive ones (registered, distinct
/// brokers; an ISR member kept; a reassignment to cancel) on the image the command meets.
async fn reassign(
    ctx: &BrokerContext,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<(), ApiError> {
    let image = committed_image(ctx);
    check_reassignment(&image, topic, partition, target.as_deref(), allow_rf_change)?;
    let cancel = target.is_none();
    ctx.submit(Command::Reassign {
        topic: topic.to_string(),
        partition,
        target: target.clone(),
    })
    .await?;
    if cancel {
        tracing::info!(topic, partition, "cancelled partition reassignment");
    } else {
        tracing::info!(topic, partition, ?target, "started partition reassignment");
    }
    Ok(())
}

/// Kafka's refusals of one partition of AlterPartitionReassignments, decided on `image`.
pub fn check_reassignment(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
    allow_rf_change: bool,
) -> Result<(), ApiError> {
    let record = image.partition(topic, partition).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("partition {topic}-{partition} does not exist"),
        )
    })?;
    let Some(target) = target else {
        if !record.is_reassigning() {
            return Err(ApiError::new(
                ResponseError::NoReassignmentInProgress,
                format!("no reassignment of {topic}-{partition} is in progress"),
            ));
        }
        return Ok(());
    };
    let invalid = |message: String| ApiError::new(ResponseError::InvalidReplicaAssignment, message);
    if target.is_empty() {
        return Err(invalid(format!(
            "the target replica list of {topic}-{partition} is empty"
        )));
    }
    for (i, r) in target.iter().enumerate() {
        if target[..i].contains(r) {
            return Err(invalid(format!(
                "the target replicas {target:?} of {topic}-{partition} list broker {r} twice"
            )));
        }
        if !image.brokers.contains_key(r) {
            return Err(invalid(format!(
                "the target replicas {target:?} of {topic}-{partition} include broker {r}, but no such broker is registered"
            )));
        }
    }
    // Kafka's `validateManualPartitionAssignment`: someone in the target must be able to
    // lead, or the partition would end up with no possible leader.
    if !target.iter().any(|r| image.is_eligible(*r)) {
        return Err(invalid(format!(
            "all brokers of the target replicas {target:?} of {topic}-{partition} are fenced or in controlled shutdown"
        )));
    }
    let current = original_replicas(record);
    if !allow_rf_change && current.len() != target.len() {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "The replication factor of {topic}-{partition} is changed from {} to {}, and the request does not allow that",
                current.len(),
                target.len()
            ),
        ));
    }
    Ok(())
}

/// The replicas before any reassignment in progress: what the replication factor is now.
fn original_replicas(record: &PartitionRecord) -> Vec<i32> {
    record
        .replicas
        .iter()
        .copied()
        .filter(|r| !record.adding_replicas.contains(r))
        .collect()
}

pub fn list_partition_reassignments(
    ctx: &BrokerContext,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = committed_image(ctx);
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    ListPartitionReassignmentsResponse::default()
        .with_error_message(None)
        .with_topics(ongoing_reassignments(&image, wanted.as_deref()))
}

/// Partitions with a reassignment in progress, by topic in name order; only those of
/// `wanted` (topic, partitions) when given. As in Kafka, unknown topics and partitions that
/// are not being reassigned are simply absent.
pub fn ongoing_reassignments(
    image: &MetadataImage,
    wanted: Option<&[(String, Vec<i32>)]>,
) -> Vec<OngoingTopicReassignment> {
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for (topic, index, record) in image.reassignments() {
        let requested = wanted.is_none_or(|wanted| {
            wanted
                .iter()
                .any(|(t, partitions)| *t == topic && partitions.contains(&index))
        });
        if !requested {
            continue;
        }
        let brokers = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
        let ongoing = OngoingPartitionReassignment::default()
            .with_partition_index(index)
            .with_replicas(brokers(&record.replicas))
            .with_adding_replicas(brokers(&record.adding_replicas))
            .with_removing_replicas(brokers(&record.removing_replicas));
        match topics.last_mut() {
            Some(last) if last.name.0.as_str() == topic => last.partitions.push(ongoing),
            _ => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_partitions(vec![ongoing]),
            ),
        }
    }
    topics
}

pub async fn elect_leaders(
    ctx: &Arc<BrokerContext>,
    request: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let image = committed_image(ctx);
    // v0 has no election type: it elects preferred leaders.
    let election_type = if version >= 1 {
        request.election_type
    } else {
        ELECTION_PREFERRED
    };
    let all = request.topic_partitions.is_none();
    let partitions: Vec<(String, i32)> = match request.topic_partitions {
        None => image
            .partitions()
            .map(|(topic, index, _)| (topic.to_string(), index))
            .collect(),
        Some(topics) => topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect(),
    };
    let refusal = match election_type {
        ELECTION_PREFERRED => None,
        ELECTION_UNCLEAN => Some("unclean leader election is not supported"),
        _ => Some("unknown election type; 0 (PREFERRED) is supported"),
    };
    let results = match refusal {
        // Every partition of the cluster refused one by one says less than one top-level
        // code; only v1+ can ask for a type other than PREFERRED, and v1+ has that field.
        Some(_) if all => {
            return ElectLeadersResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code());
        }
        Some(why) => partitions
            .into_iter()
            .map(|(topic, index)| {
                let error = ApiError::new(ResponseError::InvalidRequest, why);
                (topic, index, Some(error))
            })
            .collect(),
        None => elect_preferred(ctx, &image, &partitions).await,
    };
    let mut topics: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, index, error) in results {
        // Kafka leaves out, of an election over every partition, those already led by
        // their preferred replica.
        if all
            && error
                .as_ref()
                .is_some_and(|e| e.code == ResponseError::ElectionNotNeeded.code())
        {
            continue;
        }
        let result = PartitionResult::default().with_partition_id(index);
        let result = match error {
            None => result.with_error_message(None),
            Some(ApiError { code, message }) => result
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message))),
        };
        match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
            Some(t) => t.partition_result.push(result),
            None => topics.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(topics)
}

/// Preferred elections for `partitions`: one command for all that can happen, then each
/// checked on the image that applied it (the command only carries a wish; an ISR change
/// committed in between can make an election impossible, and `apply` then skips it).
async fn elect_preferred(
    ctx: &BrokerContext,
    image: &MetadataImage,
    partitions: &[(String, i32)],
) -> Vec<(String, i32, Option<ApiError>)> {
    let plan = prepare::elect_leaders(image, partitions, true);
    let submitted = match plan.command {
        Some(command) => Some(ctx.submit(command).await),
        None => None,
    };
    let after = committed_image(ctx);
    plan.results
        .into_iter()
        .map(|(topic, index, refused)| {
            let error = match (refused, &submitted) {
                (Some(refused), _) => Some(ApiError::from(refused)),
                (None, Some(Err(e))) => Some(e.clone()),
                (None, _) => match after.partition(&topic, index) {
                    Some(p) if p.replicas.first() == Some(&p.leader) => None,
                    Some(p) => Some(ApiError::new(
                        ResponseError::PreferredLeaderNotAvailable,
                        format!(
                            "preferred replica of {topic}-{index} (replicas {:?}) could not take over; the leader is {}",
                            p.replicas, p.leader
                        ),
                    )),
                    None => Some(ApiError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("partition {topic}-{index} no longer exists"),
                    )),
                },
            };
            if error.is_none() {
                tracing::info!(topic, partition = index, "elected the preferred leader");
            }
            (topic, index, error)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::image::apply;
    use crate::controller::{BrokerRecord, TopicRecord, NO_LEADER};
    use uuid::Uuid;

    /// Brokers 0..3 (broker 3 fenced) and topic `t` with one partition on `replicas`.
    fn image(replicas: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 0..4 {
            image.brokers.insert(
                id,
                BrokerRecord {
                    id,
                    incarnation: Uuid::from_u128(id as u128 + 1),
                    host: "127.0.0.1".into(),
                    port: 9092 + id,
                    rack: None,
                    rpc_addr: format!("127.0.0.1:{}", 9192 + id),
                    fenced: id == 3,
                    shutting_down: false,
                },
            );
        }
        let topic = TopicRecord {
            name: "t".into(),
            topic_id: Uuid::from_u128(7),
            partitions: 1,
            configs: Default::default(),
            assignments: vec![PartitionRecord {
                replicas: replicas.to_vec(),
                isr: Vec::new(),
                leader: NO_LEADER,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            }],
        };
        apply(&mut image, &Command::CreateTopic { topic }).unwrap();
        image
    }

    fn code(result: Result<(), ApiError>) -> i16 {
        result.err().map_or(0, |e| e.code)
    }

    #[test]
    fn reassignment_refusals_use_kafka_codes() {
        let image = image(&[0]);
        let check = |topic: &str, partition: i32, target: Option<&[i32]>, allow: bool| {
            code(check_reassignment(&image, topic, partition, target, allow))
        };
        assert_eq!(check("t", 0, Some(&[0, 1, 2]), true), 0);
        assert_eq!(
            check("nope", 0, Some(&[0]), true),
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            check("t", 1, Some(&[0]), true),
            ResponseError::UnknownTopicOrPartition.code()
        );
        let invalid = ResponseError::InvalidReplicaAssignment.code();
        assert_eq!(check("t", 0, Some(&[0, 9]), true), invalid);
        assert_eq!(check("t", 0, Some(&[1, 1]), true), invalid);
        assert_eq!(check("t", 0, Some(&[]), true), invalid);
        // Registered but fenced: allowed next to a live broker, not alone.
        assert_eq!(check("t", 0, Some(&[0, 3]), true), 0);
        assert_eq!(check("t", 0, Some(&[3]), true), invalid);
        assert_eq!(
            check("t", 0, Some(&[0, 1]), false),
            ResponseError::InvalidReplicationFactor.code()
        );
        assert_eq!(check("t", 0, Some(&[1]), false), 0);
        assert_eq!(
            check("t", 0, None, true),
            ResponseError::NoReassignmentInProgress.code()
        );
    }

    #[test]
    fn cancel_and_replication_factor_count_against_the_original_replicas() {
        let mut image = image(&[0]);
        apply(
            &mut image,
            &Command::Reassign {
                topic: "t".into(),
                partition: 0,
                target: Some(vec![0, 3]),
            },
        )
        .unwrap();
        assert_eq!(code(check_reassignment(&image, "t", 0, None, true)), 0);
        // The partition still has one replica until broker 3 catches up.
        assert_eq!(
            code(check_reassignment(&image, "t", 0, Some(&[1]), false)),
            0
        );
        assert_eq!(
            code(check_reassignment(&image, "t", 0, Some(&[0, 1]), false)),
            ResponseError::InvalidReplicationFactor.code()
        );
    }

    #[test]
    fn ongoing_reassignments_lists_replicas_adding_and_removing() {
        let mut image = image(&[0, 1]);
        assert!(ongoing_reassignments(&image, None).is_empty());
        apply(
            &mut image,
            &Command::Reassign {
                topic: "t".into(),
                partition: 0,
                target: Some(vec![0, 3]),
            },
        )
        .unwrap();
        let listed = ongoing_reassignments(&image, None);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name.0.as_str(), "t");
        let p = &listed[0].partitions[0];
        let ids = |b: &[BrokerId]| b.iter().map(|b| b.0).collect::<Vec<_>>();
        assert_eq!(p.partition_index, 0);
        assert_eq!(ids(&p.replicas), vec![0, 3, 1]);
        assert_eq!(ids(&p.adding_replicas), vec![3]);
        assert_eq!(ids(&p.removing_replicas), vec![1]);
        let only = |wanted: &[(String, Vec<i32>)]| ongoing_reassignments(&image, Some(wanted));
        assert_eq!(only(&[("t".into(), vec![0])]).len(), 1);
        assert!(only(&[("t".into(), vec![1])]).is_empty());
        assert!(only(&[("other".into(), vec![0])]).is_empty());
    }
}
