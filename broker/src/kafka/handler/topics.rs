//! CreateTopics, DeleteTopics and CreatePartitions: validated against this broker's copy of
//! the metadata, placed across the live brokers, and committed through the controller
//! (forwarded to the active controller from whichever broker the client asked).

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
use uuid::Uuid;

use super::str_bytes;
use crate::controller::prepare::{self, TopicDefaults};
use crate::controller::{topic_config, Command, Outcome, TopicConfigs};
use crate::server::replica_manager::ApiError;
use crate::server::BrokerContext;

/// Config source codes of DescribeConfigs/CreateTopics (KIP-226).
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// The broker's defaults for new topics.
pub fn topic_defaults(ctx: &BrokerContext) -> TopicDefaults {
    TopicDefaults {
        num_partitions: ctx.config.num_partitions,
        default_replication_factor: ctx.config.default_replication_factor,
    }
}

/// Creates a topic through the controller; shared by CreateTopics and Metadata's
/// auto-creation. `validate_only` checks everything and commits nothing.
pub async fn create_topic(
    ctx: &BrokerContext,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    assignments: Option<Vec<Vec<i32>>>,
    configs: TopicConfigs,
    validate_only: bool,
) -> Result<(Uuid, i32, i16, TopicConfigs), ApiError> {
    let (_, image) = ctx.replicas.image();
    let command = prepare::create_topic(
        &image,
        name,
        partitions,
        replication_factor,
        assignments,
        configs,
        &topic_defaults(ctx),
        Uuid::new_v4(),
    )?;
    let Command::CreateTopic { topic } = &command else {
        unreachable!("prepare::create_topic prepares a CreateTopic");
    };
    let summary = (
        topic.topic_id,
        topic.partitions,
        topic
            .assignments
            .first()
            .map_or(0, |a| a.replicas.len() as i16),
        topic.configs.clone(),
    );
    if !validate_only {
        ctx.submit(command).await?;
        tracing::info!(
            topic = name,
            partitions = summary.1,
            replication_factor = summary.2,
            "created topic"
        );
    }
    Ok(summary)
}

pub async fn create_topics(
    ctx: &Arc<BrokerContext>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let defaults = ctx.config.log.clone();
    let validate_only = request.validate_only;
    let mut seen = std::collections::HashSet::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        if !seen.insert(name.clone()) {
            topics.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "topic {name:?} appears more than once in the request"
                    )))),
            );
            continue;
        }
        let assignments = if t.assignments.is_empty() {
            None
        } else {
            let mut by_index: Vec<(i32, Vec<i32>)> = t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect();
            by_index.sort_by_key(|(i, _)| *i);
            Some(by_index.into_iter().map(|(_, r)| r).collect())
        };
        let mut configs = TopicConfigs::new();
        for c in &t.configs {
            match &c.value {
                Some(v) => configs.insert(c.name.to_string(), v.to_string()),
                None => configs.remove(c.name.as_str()),
            };
        }
        let outcome = create_topic(
            ctx,
            &name,
            t.num_partitions,
            t.replication_factor,
            assignments,
            configs,
            validate_only,
        )
        .await;
        topics.push(match outcome {
            Ok((topic_id, partitions, replication_factor, configs)) => {
                let mut result = result
                    .with_topic_id(topic_id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication_factor);
                if version >= 5 {
                    result = result.with_configs(Some(
                        topic_config::describe(&defaults, ctx.config.min_insync_replicas, &configs)
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
        });
    }
    CreateTopicsResponse::default().with_topics(topics)
}

pub async fn delete_topics(
    ctx: &Arc<BrokerContext>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id); earlier versions in `topic_names`.
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let name = match name {
            Some(name) => Ok(name.0.to_string()),
            None => ctx
                .replicas
                .topic_by_id(id)
                .map(|t| t.record.name.clone())
                .ok_or_else(|| {
                    ApiError::new(
                        ResponseError::UnknownTopicId,
                        format!("no topic has id {id}"),
                    )
                }),
        };
        let outcome = match &name {
            Ok(n) if n == crate::group::coordinator::OFFSETS_TOPIC => Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("{n} is internal and cannot be deleted"),
            )),
            Ok(n) => ctx
                .submit(Command::DeleteTopic { name: n.clone() })
                .await
                .map(|outcome| match outcome {
                    Outcome::Topic { topic_id } => topic_id,
                    _ => id,
                }),
            Err(e) => Err(e.clone()),
        };
        responses.push(match outcome {
            Ok(topic_id) => {
                tracing::info!(topic = ?name, "deleted topic");
                DeletableTopicResult::default()
                    .with_name(name.ok().map(|n| TopicName(str_bytes(n))))
                    .with_topic_id(topic_id)
            }
            Err(ApiError { code, message }) => DeletableTopicResult::default()
                .with_name(name.ok().map(|n| TopicName(str_bytes(n))))
                .with_topic_id(id)
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    ctx: &Arc<BrokerContext>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let validate_only = request.validate_only;
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let manual = t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
            a.iter()
                .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let (_, image) = ctx.replicas.image();
        let outcome = match prepare::create_partitions(&image, &t.name.0, t.count, manual) {
            Ok(command) if !validate_only => ctx.submit(command).await.map(|_| ()),
            Ok(_) => Ok(()),
            Err(e) => Err(ApiError::from(e)),
        };
        results.push(match outcome {
            Ok(()) => result,
            Err(ApiError { code, message }) => result
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
