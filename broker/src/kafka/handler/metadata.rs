//! ApiVersions, Metadata (with topic auto-creation) and DescribeCluster, answered from this
//! broker's copy of the committed metadata image; and UnregisterBroker, which the controller
//! decides.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, DescribeClusterRequest,
    DescribeClusterResponse, MetadataRequest, MetadataResponse, TopicName, UnregisterBrokerRequest,
    UnregisterBrokerResponse,
};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, CloseConnection};
use crate::controller::{Command, MetadataImage, TopicRecord, NO_LEADER};
use crate::kafka::api_versions_list;
use crate::server::BrokerContext;

pub fn api_versions(_request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_versions_list())
}

fn topic_response(image: &MetadataImage, topic: &TopicRecord) -> MetadataResponseTopic {
    let live = |id: &i32| image.brokers.get(id).is_some_and(|b| !b.fenced);
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.name == crate::group::coordinator::OFFSETS_TOPIC)
        .with_partitions(
            topic
                .assignments
                .iter()
                .enumerate()
                .map(|(p, a)| {
                    let error = if a.leader == NO_LEADER {
                        ResponseError::LeaderNotAvailable.code()
                    } else {
                        0
                    };
                    MetadataResponsePartition::default()
                        .with_partition_index(p as i32)
                        .with_error_code(error)
                        .with_leader_id(BrokerId(a.leader))
                        .with_leader_epoch(a.leader_epoch)
                        .with_replica_nodes(a.replicas.iter().copied().map(BrokerId).collect())
                        .with_isr_nodes(a.isr.iter().copied().map(BrokerId).collect())
                        .with_offline_replicas(
                            a.replicas
                                .iter()
                                .filter(|r| !live(r))
                                .copied()
                                .map(BrokerId)
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn error_topic(name: Option<&str>, id: Uuid, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(id)
        .with_error_code(error.code())
}

/// Every registered broker, fenced ones included: Metadata keeps listing a broker that
/// was fenced (stopped, crashed, cut off), so that a client moving a partition to its new
/// leader keeps its connection state for the old one instead of tearing it down (which
/// costs librdkafka a second before it produces to the new leader). Partitions never name
/// a fenced broker as leader.
fn registered_brokers(image: &MetadataImage) -> Vec<(i32, String, i32, Option<String>)> {
    image
        .brokers
        .values()
        .map(|b| (b.id, b.host.clone(), b.port, b.rack.clone()))
        .collect()
}

/// The brokers clients may connect to: every registered, unfenced one.
fn live_brokers(image: &MetadataImage) -> Vec<(i32, String, i32, Option<String>)> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| (b.id, b.host.clone(), b.port, b.rack.clone()))
        .collect()
}

pub async fn metadata(
    ctx: &std::sync::Arc<BrokerContext>,
    request: MetadataRequest,
    version: i16,
) -> Result<MetadataResponse, CloseConnection> {
    // v0 has no null topic list: an empty one means every topic. v1+ sends null for that.
    let requested = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    // Before v4 there is no flag and auto-creation is always allowed by the client.
    let allow_auto_create =
        ctx.config.auto_create_topics_enable && (version < 4 || request.allow_auto_topic_creation);
    let (_, mut image) = ctx.replicas.image();
    let topics = match requested {
        None => image
            .topics
            .values()
            .map(|t| topic_response(&image, t))
            .collect(),
        Some(requested) => {
            let mut out = Vec::with_capacity(requested.len());
            for t in requested {
                let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                    out.push(
                        match image.topics.values().find(|r| r.topic_id == t.topic_id) {
                            Some(topic) => topic_response(&image, topic),
                            None => error_topic(None, t.topic_id, ResponseError::UnknownTopicId),
                        },
                    );
                    continue;
                };
                if let Some(topic) = image.topics.get(&name) {
                    out.push(topic_response(&image, topic));
                    continue;
                }
                if !allow_auto_create {
                    out.push(error_topic(
                        Some(&name),
                        Uuid::nil(),
                        ResponseError::UnknownTopicOrPartition,
                    ));
                    continue;
                }
                let created = super::topics::create_topic(
                    ctx,
                    &name,
                    -1,
                    -1,
                    None,
                    Default::default(),
                    false,
                )
                .await;
                // The controller's answer waits until this broker applied the change.
                image = ctx.replicas.image().1;
                out.push(match (created, image.topics.get(&name)) {
                    (_, Some(topic)) => topic_response(&image, topic),
                    (Err(e), None) => MetadataResponseTopic::default()
                        .with_name(Some(TopicName(str_bytes(name))))
                        .with_error_code(e.code),
                    (Ok(_), None) => {
                        error_topic(Some(&name), Uuid::nil(), ResponseError::LeaderNotAvailable)
                    }
                });
            }
            out
        }
    };
    if let Some(why) = cut_off_partition(ctx, &topics) {
        return Err(CloseConnection(why));
    }
    let controller = ctx.controller.active_controller().unwrap_or(-1);
    Ok(MetadataResponse::default()
        .with_brokers(
            registered_brokers(&image)
                .into_iter()
                .map(|(id, host, port, rack)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(str_bytes(host))
                        .with_port(port)
                        .with_rack(rack.map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(image.cluster_id.clone())))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics))
}

/// A partition of the answer this broker would name itself the leader of while it is cut
/// off from the controller and from the partition's followers (`cut_off_leader`): they have
/// a new leader it does not know of. Answering with this stale view, or with "no leader",
/// would keep a client that is connected to this broker alone asking here until the cut
/// heals (librdkafka refreshes metadata from the brokers it is connected to); closing the
/// connection sends it to another broker.
fn cut_off_partition(ctx: &BrokerContext, topics: &[MetadataResponseTopic]) -> Option<String> {
    if !ctx.lease_lapsed() {
        return None;
    }
    let me = ctx.config.broker_id;
    for topic in topics {
        let Some(name) = &topic.name else { continue };
        let Some(state) = ctx.replicas.topic(&name.0) else {
            continue;
        };
        for p in topic.partitions.iter().filter(|p| p.leader_id.0 == me) {
            if let Ok(partition) = state.lookup(p.partition_index, me) {
                if ctx.cut_off_leader(&partition) {
                    return Some(format!(
                        "Metadata: this broker has lost contact with the controller and with \
                         the followers of {}-{}, so it cannot say who leads it",
                        name.0, p.partition_index
                    ));
                }
            }
        }
    }
    None
}

pub fn describe_cluster(
    ctx: &BrokerContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let (_, image) = ctx.replicas.image();
    let controller = ctx.controller.active_controller().unwrap_or(-1);
    // Endpoint type 1 is brokers; 2 (controllers, KIP-919) is answered the same way since
    // the controllers are brokers too.
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(image.cluster_id.clone()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            live_brokers(&image)
                .into_iter()
                .map(|(id, host, port, rack)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id))
                        .with_host(str_bytes(host))
                        .with_port(port)
                        .with_rack(rack.map(str_bytes))
                })
                .collect(),
        )
}

/// UnregisterBroker (KIP-631, `kafka-cluster.sh unregister`): removes a stopped broker that
/// holds no replica from the metadata; the controller's refusal comes back as the error.
pub async fn unregister_broker(
    ctx: &BrokerContext,
    request: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let command = Command::UnregisterBroker {
        id: request.broker_id.0,
    };
    match ctx.submit(command).await {
        Ok(_) => UnregisterBrokerResponse::default(),
        Err(e) => UnregisterBrokerResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(str_bytes(e.message))),
    }
}
