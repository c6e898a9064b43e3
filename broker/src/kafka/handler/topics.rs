//! CreateTopics, DeleteTopics and CreatePartitions.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::{blocking, str_bytes};
use crate::controller::{topic_config, TopicConfigs};
use crate::server::replica_manager::{unknown_topic, ApiError};
use crate::server::BrokerContext;

/// Config source codes of DescribeConfigs/CreateTopics (KIP-226).
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

pub async fn create_topics(
    ctx: &Arc<BrokerContext>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let replicas = ctx.replicas.clone();
    let defaults = ctx.config.log.clone();
    let validate_only = request.validate_only;
    let topics = blocking(move || {
        let mut seen = std::collections::HashSet::new();
        request
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let result = CreatableTopicResult::default().with_name(t.name.clone());
                if !seen.insert(name.clone()) {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(format!(
                            "topic {name:?} appears more than once in the request"
                        ))));
                }
                if !t.assignments.is_empty() {
                    return result
                        .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                        .with_error_message(Some(str_bytes(
                            "manual replica assignment is not supported; leave it to the broker",
                        )));
                }
                let mut configs = TopicConfigs::new();
                for c in &t.configs {
                    match &c.value {
                        Some(v) => configs.insert(c.name.to_string(), v.to_string()),
                        None => configs.remove(c.name.as_str()),
                    };
                }
                match replicas.create_topic(
                    &name,
                    t.num_partitions,
                    t.replication_factor,
                    configs,
                    validate_only,
                ) {
                    Ok(topic) => {
                        let mut result = result
                            .with_topic_id(topic.record.topic_id)
                            .with_num_partitions(topic.record.partitions)
                            .with_replication_factor(1);
                        if version >= 5 {
                            result = result.with_configs(Some(
                                topic_config::describe(&defaults, &topic.record.configs)
                                    .into_iter()
                                    .map(|e| {
                                        CreatableTopicConfigs::default()
                                            .with_name(str_bytes(e.name))
                                            .with_value(Some(str_bytes(e.value)))
                                            .with_config_source(if e.is_override {
                                                SOURCE_DYNAMIC_TOPIC
                                            } else {
                                                SOURCE_DEFAULT
                                            })
                                    })
                                    .collect(),
                            ));
                        }
                        result
                    }
                    Err(ApiError { code, message }) => result
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                }
            })
            .collect()
    })
    .await;
    CreateTopicsResponse::default().with_topics(topics)
}

pub async fn delete_topics(
    ctx: &Arc<BrokerContext>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id); earlier versions in `topic_names`.
    let targets: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let replicas = ctx.replicas.clone();
    let responses = blocking(move || {
        targets
            .into_iter()
            .map(|(name, id)| {
                let name = match name {
                    Some(name) => Ok(name.0.to_string()),
                    None => replicas
                        .topic_by_id(id)
                        .map(|t| t.record.name.clone())
                        .ok_or_else(|| {
                            ApiError::new(
                                ResponseError::UnknownTopicId,
                                format!("no topic has id {id}"),
                            )
                        }),
                };
                let outcome = name
                    .clone()
                    .and_then(|n| replicas.delete_topic(&n).map(|id| (n, id)));
                match outcome {
                    Ok((n, id)) => DeletableTopicResult::default()
                        .with_name(Some(TopicName(str_bytes(n))))
                        .with_topic_id(id),
                    Err(ApiError { code, message }) => DeletableTopicResult::default()
                        .with_name(name.ok().map(|n| TopicName(str_bytes(n))))
                        .with_topic_id(id)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message))),
                }
            })
            .collect()
    })
    .await;
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    ctx: &Arc<BrokerContext>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let replicas = ctx.replicas.clone();
    let validate_only = request.validate_only;
    let results = blocking(move || {
        request
            .topics
            .into_iter()
            .map(|t| {
                let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
                let outcome = if replicas.topic(&t.name.0).is_none() {
                    Err(unknown_topic(&t.name.0))
                } else if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
                    Err(ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        "manual replica assignment is not supported; leave it to the broker",
                    ))
                } else {
                    replicas.create_partitions(&t.name.0, t.count, validate_only)
                };
                match outcome {
                    Ok(()) => result,
                    Err(ApiError { code, message }) => result
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message))),
                }
            })
            .collect()
    })
    .await;
    CreatePartitionsResponse::default().with_results(results)
}
