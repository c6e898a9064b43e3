//! ApiVersions, Metadata (with topic auto-creation) and DescribeCluster.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, DescribeClusterRequest,
    DescribeClusterResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{blocking, str_bytes};
use crate::kafka::api_versions_list;
use crate::server::replica_manager::TopicState;
use crate::server::BrokerContext;

pub fn api_versions(_request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_versions_list())
}

fn topic_response(ctx: &BrokerContext, topic: &TopicState) -> MetadataResponseTopic {
    let me = BrokerId(ctx.config.broker_id);
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.record.name.clone()))))
        .with_topic_id(topic.record.topic_id)
        .with_is_internal(topic.record.name == crate::group::coordinator::OFFSETS_TOPIC)
        .with_partitions(
            (0..topic.record.partitions)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(me)
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![me])
                        .with_isr_nodes(vec![me])
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

pub async fn metadata(
    ctx: &std::sync::Arc<BrokerContext>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0 has no null topic list: an empty one means every topic. v1+ sends null for that.
    let requested = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    // Before v4 there is no flag and auto-creation is always allowed by the client.
    let allow_auto_create =
        ctx.config.auto_create_topics_enable && (version < 4 || request.allow_auto_topic_creation);
    let topics = match requested {
        None => ctx
            .replicas
            .topics()
            .iter()
            .map(|t| topic_response(ctx, t))
            .collect(),
        Some(requested) => {
            let mut out = Vec::with_capacity(requested.len());
            for t in requested {
                let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                    out.push(match ctx.replicas.topic_by_id(t.topic_id) {
                        Some(topic) => topic_response(ctx, &topic),
                        None => error_topic(None, t.topic_id, ResponseError::UnknownTopicId),
                    });
                    continue;
                };
                if let Some(topic) = ctx.replicas.topic(&name) {
                    out.push(topic_response(ctx, &topic));
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
                let replicas = ctx.replicas.clone();
                let create_name = name.clone();
                let created = blocking(move || {
                    replicas.create_topic(&create_name, -1, -1, Default::default(), false)
                })
                .await;
                out.push(match created {
                    Ok(topic) => topic_response(ctx, &topic),
                    // Another request created it first.
                    Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {
                        match ctx.replicas.topic(&name) {
                            Some(topic) => topic_response(ctx, &topic),
                            None => error_topic(
                                Some(&name),
                                Uuid::nil(),
                                ResponseError::LeaderNotAvailable,
                            ),
                        }
                    }
                    Err(e) => MetadataResponseTopic::default()
                        .with_name(Some(TopicName(str_bytes(name))))
                        .with_error_code(e.code),
                });
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(ctx.config.broker_id))
            .with_host(str_bytes(ctx.advertised_host.clone()))
            .with_port(ctx.advertised_port)])
        .with_cluster_id(Some(str_bytes(ctx.replicas.cluster_id())))
        .with_controller_id(BrokerId(ctx.config.broker_id))
        .with_topics(topics)
}

pub fn describe_cluster(
    ctx: &BrokerContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    // Endpoint type 1 is brokers; 2 (controllers, KIP-919) is answered the same way since
    // this broker is its own controller.
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(ctx.replicas.cluster_id()))
        .with_controller_id(BrokerId(ctx.config.broker_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(ctx.config.broker_id))
            .with_host(str_bytes(ctx.advertised_host.clone()))
            .with_port(ctx.advertised_port)])
}
