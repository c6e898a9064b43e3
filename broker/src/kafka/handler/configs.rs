//! DescribeConfigs, AlterConfigs (whole-set replace) and IncrementalAlterConfigs (SET,
//! DELETE, APPEND, SUBTRACT per key) for topics; DescribeConfigs for the broker too.
//! Dynamic broker configuration is not supported: broker settings come from the config
//! file, environment and flags at start.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::topics::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER};
use super::{blocking, str_bytes};
use crate::controller::{topic_config, Command, TopicConfigs};
use crate::server::config::BrokerConfig;
use crate::server::replica_manager::{unknown_topic, ApiError};
use crate::server::BrokerContext;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

// Config types of DescribeConfigs v3+.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

fn config_type(value: &str, name: &str) -> i8 {
    if name == "cleanup.policy" {
        TYPE_LIST
    } else if value == "true" || value == "false" {
        TYPE_BOOLEAN
    } else if value.parse::<i64>().is_ok() {
        TYPE_LONG
    } else {
        TYPE_STRING
    }
}

fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref()
        .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
}

/// The broker's own settings as DescribeConfigs shows them.
fn broker_entries(config: &BrokerConfig) -> Vec<(&'static str, String)> {
    let listener =
        |l: &crate::server::config::Listener| format!("PLAINTEXT://{}:{}", l.host, l.port);
    vec![
        ("broker.id", config.broker_id.to_string()),
        ("listeners", listener(&config.listener)),
        (
            "advertised.listeners",
            config
                .advertised_listener
                .as_ref()
                .map(listener)
                .unwrap_or_else(|| listener(&config.listener)),
        ),
        ("log.dirs", config.log_dir.display().to_string()),
        ("num.partitions", config.num_partitions.to_string()),
        (
            "default.replication.factor",
            config.default_replication_factor.to_string(),
        ),
        (
            "auto.create.topics.enable",
            config.auto_create_topics_enable.to_string(),
        ),
        ("log.segment.bytes", config.log.segment_bytes.to_string()),
        ("log.roll.ms", config.log.segment_ms.to_string()),
        ("log.retention.ms", config.log.retention_ms.to_string()),
        (
            "log.retention.bytes",
            config.log.retention_bytes.to_string(),
        ),
        (
            "log.retention.check.interval.ms",
            config.log_retention_check_interval_ms.to_string(),
        ),
        (
            "log.index.interval.bytes",
            config.log.index_interval_bytes.to_string(),
        ),
        (
            "log.flush.interval.messages",
            config.log.flush_messages.min(i64::MAX as u64).to_string(),
        ),
        ("log.flush.interval.ms", config.log.flush_ms.to_string()),
        (
            "message.max.bytes",
            config.log.max_message_bytes.to_string(),
        ),
        (
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
        ),
        ("max.connections", config.max_connections.to_string()),
        (
            "connections.max.idle.ms",
            config.connections_max_idle_ms.to_string(),
        ),
    ]
}

pub fn describe_configs(
    ctx: &Arc<BrokerContext>,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entry = |name: &str, value: String, source: i8, read_only: bool| {
                let mut e = DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(name))
                    .with_read_only(read_only)
                    .with_config_source(source);
                if version >= 3 {
                    e = e.with_config_type(config_type(&value, name));
                }
                e.with_value(Some(str_bytes(value)))
            };
            match r.resource_type {
                RESOURCE_TOPIC => match ctx.replicas.topic(r.resource_name.as_str()) {
                    Some(topic) => result.with_configs(
                        topic_config::describe(
                            &ctx.config.log,
                            ctx.config.min_insync_replicas,
                            &topic.record.configs,
                        )
                        .into_iter()
                        .filter(|e| wanted(&r.configuration_keys, e.name))
                        .map(|e| {
                            let source = if e.is_override {
                                SOURCE_DYNAMIC_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            };
                            entry(e.name, e.value, source, false)
                        })
                        .collect(),
                    ),
                    None => {
                        let e = unknown_topic(r.resource_name.as_str());
                        result
                            .with_error_code(e.code)
                            .with_error_message(Some(str_bytes(e.message)))
                    }
                },
                RESOURCE_BROKER => {
                    let name = r.resource_name.as_str();
                    if name.is_empty() || name == ctx.config.broker_id.to_string() {
                        result.with_configs(
                            broker_entries(&ctx.config)
                                .into_iter()
                                .filter(|(k, _)| wanted(&r.configuration_keys, k))
                                .map(|(k, v)| entry(k, v, SOURCE_STATIC_BROKER, true))
                                .collect(),
                        )
                    } else {
                        result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(format!(
                                "this is broker {}, not {name:?}",
                                ctx.config.broker_id
                            ))))
                    }
                }
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Checks the resource is a topic, then computes its new override set, validates it and
/// commits it through the controller. Runs on the blocking pool, so it may wait for the
/// commit there.
fn alter_topic(
    ctx: &BrokerContext,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut TopicConfigs) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    if resource_type != RESOURCE_TOPIC {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("resource type {resource_type} cannot be altered; broker settings are static"),
        ));
    }
    let topic = ctx
        .replicas
        .topic(name)
        .ok_or_else(|| unknown_topic(name))?;
    let mut configs = topic.record.configs.clone();
    change(&mut configs)?;
    if name == crate::group::coordinator::OFFSETS_TOPIC {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("{name} is internal; its configuration is the broker's"),
        ));
    }
    topic_config::validate_all(&configs)
        .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
    if validate_only {
        return Ok(());
    }
    let command = Command::SetTopicConfigs {
        name: name.to_string(),
        configs,
    };
    tokio::runtime::Handle::current()
        .block_on(ctx.submit(command))
        .map(|_| {
            tracing::info!(topic = name, "updated topic configs");
        })
}

pub async fn alter_configs(
    ctx: &Arc<BrokerContext>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let ctx = ctx.clone();
    let validate_only = request.validate_only;
    let responses = blocking(move || {
        request
            .resources
            .into_iter()
            .map(|r| {
                let outcome = alter_topic(
                    &ctx,
                    r.resource_type,
                    r.resource_name.as_str(),
                    validate_only,
                    |configs| {
                        // AlterConfigs replaces the whole set of overrides.
                        configs.clear();
                        for c in &r.configs {
                            if let Some(v) = &c.value {
                                configs.insert(c.name.to_string(), v.to_string());
                            }
                        }
                        Ok(())
                    },
                );
                let response = alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name);
                match outcome {
                    Ok(()) => response,
                    Err(ApiError { code, message }) => response
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message))),
                }
            })
            .collect()
    })
    .await;
    AlterConfigsResponse::default().with_responses(responses)
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn incremental_alter_configs(
    ctx: &Arc<BrokerContext>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let ctx = ctx.clone();
    let defaults = ctx.config.log.clone();
    let validate_only = request.validate_only;
    let responses = blocking(move || {
        request
            .resources
            .into_iter()
            .map(|r| {
                let outcome = alter_topic(
                    &ctx,
                    r.resource_type,
                    r.resource_name.as_str(),
                    validate_only,
                    |configs| {
                        for c in &r.configs {
                            let name = c.name.to_string();
                            let value = c.value.as_ref().map(|v| v.to_string());
                            let invalid = |m: String| ApiError::new(ResponseError::InvalidConfig, m);
                            match (c.config_operation, value) {
                                (OP_SET, Some(v)) => {
                                    configs.insert(name, v);
                                }
                                (OP_SET, None) => {
                                    return Err(invalid(format!("SET of {name} needs a value")))
                                }
                                (OP_DELETE, _) => {
                                    configs.remove(&name);
                                }
                                (op @ (OP_APPEND | OP_SUBTRACT), Some(v)) => {
                                    if name != "cleanup.policy" {
                                        return Err(invalid(format!(
                                            "{name} is not a list; APPEND and SUBTRACT apply to lists"
                                        )));
                                    }
                                    let current = configs.get(&name).cloned().unwrap_or_else(|| {
                                        topic_config::describe(&defaults, 1, &TopicConfigs::new())
                                            .into_iter()
                                            .find(|e| e.name == name)
                                            .map(|e| e.value)
                                            .unwrap_or_default()
                                    });
                                    let mut items: Vec<String> = current
                                        .split(',')
                                        .map(str::trim)
                                        .filter(|s| !s.is_empty())
                                        .map(String::from)
                                        .collect();
                                    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                                        if op == OP_APPEND {
                                            if !items.iter().any(|i| i == item) {
                                                items.push(item.to_string());
                                            }
                                        } else {
                                            items.retain(|i| i != item);
                                        }
                                    }
                                    configs.insert(name, items.join(","));
                                }
                                (op, _) => {
                                    return Err(invalid(format!(
                                        "operation {op} on {name} is not valid"
                                    )))
                                }
                            }
                        }
                        Ok(())
                    },
                );
                let response =
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name);
                match outcome {
                    Ok(()) => response,
                    Err(ApiError { code, message }) => response
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message))),
                }
            })
            .collect()
    })
    .await;
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
