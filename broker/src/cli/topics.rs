//! `tributary topics ...`: list, describe, create, delete, alter and configure topics.
//!
//! Each subcommand is one or two admin requests through [`AdminClient`]:
//!
//! | subcommand | requests |
//! |---|---|
//! | `list` | Metadata (all topics) |
//! | `describe TOPIC` | Metadata, ListOffsets at -2 (earliest) and -1 (latest) |
//! | `create TOPIC` | CreateTopics |
//! | `delete TOPIC` | DeleteTopics |
//! | `alter TOPIC --partitions N` | CreatePartitions |
//! | `configs TOPIC` | DescribeConfigs, or IncrementalAlterConfigs with `--set` / `--delete` |
//!
//! Output is plain, aligned text on stdout. Failures, including Kafka error codes, are
//! returned as [`Error`] for `main` to print and turn into exit status 1.

use std::io::Write;

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
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::{BrokerId, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::client::AdminClient;
use super::{check, Error, Result};

/// Server-side timeout sent with CreateTopics, DeleteTopics and CreatePartitions; below the
/// client's socket timeout so the broker answers before the client gives up.
const REQUEST_TIMEOUT_MS: i32 = 8_000;
/// `ConfigResource.Type.TOPIC`.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations (`AlterConfigOp.OpType`).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// ListOffsets special timestamps.
pub(crate) const EARLIEST_TIMESTAMP: i64 = -2;
pub(crate) const LATEST_TIMESTAMP: i64 = -1;

/// `tributary topics`: arguments shared by every subcommand, then the subcommand.
#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub bootstrap: super::BootstrapArgs,
    #[command(subcommand)]
    pub command: TopicsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicsCommand {
    /// List topic names.
    List,
    /// Show a topic's id and partitions: leader, replicas, ISR, log start and end offsets.
    Describe { topic: String },
    /// Create a topic.
    Create {
        topic: String,
        /// Number of partitions; the broker's `num.partitions` when omitted.
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor; the broker's default when omitted.
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config override. Repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// Delete a topic.
    Delete { topic: String },
    /// Grow a topic to N partitions (Kafka cannot shrink a topic).
    Alter {
        topic: String,
        #[arg(long)]
        partitions: i32,
    },
    /// Show a topic's configs, or change them with --set / --delete.
    Configs {
        topic: String,
        /// Set a config override. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Remove a config override, reverting to the default. Repeatable.
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Runs one `topics` subcommand, writing its output to `out`.
pub fn run(args: TopicsArgs, out: &mut impl Write) -> Result<()> {
    let mut client = AdminClient::connect(&args.bootstrap.bootstrap_server)?;
    let lines = match args.command {
        TopicsCommand::List => list(&mut client)?,
        TopicsCommand::Describe { topic } => describe(&mut client, &topic)?,
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => create(
            &mut client,
            &topic,
            partitions,
            replication_factor,
            &configs,
        )?,
        TopicsCommand::Delete { topic } => delete(&mut client, &topic)?,
        TopicsCommand::Alter { topic, partitions } => alter(&mut client, &topic, partitions)?,
        TopicsCommand::Configs { topic, set, delete } if set.is_empty() && delete.is_empty() => {
            describe_configs(&mut client, &topic)?
        }
        TopicsCommand::Configs { topic, set, delete } => {
            alter_configs(&mut client, &topic, &set, &delete)?
        }
    };
    super::print_lines(out, lines);
    Ok(())
}

fn list(client: &mut AdminClient) -> Result<Vec<String>> {
    let response = metadata(client, None)?;
    let mut names: Vec<String> = response
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    names.sort();
    Ok(names)
}

fn describe(client: &mut AdminClient, topic: &str) -> Result<Vec<String>> {
    let response = metadata(client, Some(topic))?;
    let t = response
        .topics
        .into_iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| Error::MissingResult {
            resource: topic.to_string(),
        })?;
    check(topic, t.error_code, None)?;
    let mut partitions = t.partitions;
    partitions.sort_by_key(|p| p.partition_index);
    let indexes: Vec<i32> = partitions.iter().map(|p| p.partition_index).collect();
    let log_start_offsets = list_offsets(client, topic, &indexes, EARLIEST_TIMESTAMP)?;
    let log_end_offsets = list_offsets(client, topic, &indexes, LATEST_TIMESTAMP)?;

    let topic_id = if t.topic_id.is_nil() {
        "-".to_string()
    } else {
        t.topic_id.to_string()
    };
    let replication_factor = partitions.first().map_or(0, |p| p.replica_nodes.len());
    let mut lines = vec![
        format!(
            "Topic: {topic}  TopicId: {topic_id}  PartitionCount: {}  ReplicationFactor: {replication_factor}",
            partitions.len()
        ),
        String::new(),
    ];
    let rows = partitions
        .iter()
        .zip(log_start_offsets.iter().zip(&log_end_offsets))
        .map(|(p, (start, end))| {
            vec![
                p.partition_index.to_string(),
                p.leader_id.0.to_string(),
                broker_list(&p.replica_nodes),
                broker_list(&p.isr_nodes),
                start.to_string(),
                end.to_string(),
            ]
        })
        .collect();
    lines.extend(table(
        &[
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "ISR",
            "LOG_START_OFFSET",
            "LOG_END_OFFSET",
        ],
        rows,
    ));
    Ok(lines)
}

fn create(
    client: &mut AdminClient,
    topic: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[(String, String)],
) -> Result<Vec<String>> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(REQUEST_TIMEOUT_MS)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            // -1: the broker's default (KIP-464).
            .with_num_partitions(partitions.unwrap_or(-1))
            .with_replication_factor(replication_factor.unwrap_or(-1))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                    })
                    .collect(),
            )]);
    let (response, _) = client.send(request)?;
    let result = response
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == topic)
        .ok_or_else(|| missing(topic))?;
    check(topic, result.error_code, result.error_message.as_deref())?;
    Ok(vec![format!("Created topic {topic}.")])
}

fn delete(client: &mut AdminClient, topic: &str) -> Result<Vec<String>> {
    let version = client.version(kafka_protocol::messages::ApiKey::DeleteTopics)?;
    // v6 names topics in `topics` (by name or id); older versions use `topic_names`.
    let request = if version >= 6 {
        DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name(topic)))
        ])
    } else {
        DeleteTopicsRequest::default().with_topic_names(vec![topic_name(topic)])
    }
    .with_timeout_ms(REQUEST_TIMEOUT_MS);
    let (response, _) = client.send(request)?;
    let result = response
        .responses
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| missing(topic))?;
    check(topic, result.error_code, result.error_message.as_deref())?;
    Ok(vec![format!("Deleted topic {topic}.")])
}

fn alter(client: &mut AdminClient, topic: &str, partitions: i32) -> Result<Vec<String>> {
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(REQUEST_TIMEOUT_MS)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(topic))
            .with_count(partitions)
            // None, not an empty list: the broker places the new partitions.
            .with_assignments(None)]);
    let (response, _) = client.send(request)?;
    let result = response
        .results
        .iter()
        .find(|t| t.name.0.as_str() == topic)
        .ok_or_else(|| missing(topic))?;
    check(topic, result.error_code, result.error_message.as_deref())?;
    Ok(vec![format!(
        "Topic {topic} now has {partitions} partitions."
    )])
}

fn describe_configs(client: &mut AdminClient, topic: &str) -> Result<Vec<String>> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(str_bytes(topic))
            .with_configuration_keys(None)]);
    let (response, _) = client.send(request)?;
    let result = response
        .results
        .into_iter()
        .find(|r| r.resource_name.as_str() == topic)
        .ok_or_else(|| missing(topic))?;
    check(topic, result.error_code, result.error_message.as_deref())?;
    let mut configs = result.configs;
    configs.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    let rows = configs
        .iter()
        .map(|c| {
            let value = if c.is_sensitive {
                "(sensitive)".to_string()
            } else {
                c.value.as_deref().unwrap_or("(null)").to_string()
            };
            vec![
                c.name.to_string(),
                value,
                config_source(c.config_source).to_string(),
            ]
        })
        .collect();
    Ok(table(&["NAME", "VALUE", "SOURCE"], rows))
}

fn alter_configs(
    client: &mut AdminClient,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<Vec<String>> {
    let configs = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(str_bytes(k))
                .with_config_operation(OP_SET)
                .with_value(Some(str_bytes(v)))
        })
        .chain(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(str_bytes(k))
                .with_config_operation(OP_DELETE)
                .with_value(None)
        }))
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(str_bytes(topic))
            .with_configs(configs),
    ]);
    let (response, _) = client.send(request)?;
    let result = response
        .responses
        .iter()
        .find(|r| r.resource_name.as_str() == topic)
        .ok_or_else(|| missing(topic))?;
    check(topic, result.error_code, result.error_message.as_deref())?;
    Ok(vec![format!("Updated configs of topic {topic}.")])
}

/// Metadata for one topic, or for all topics when `topic` is `None`; never auto-creates.
pub(crate) fn metadata(client: &mut AdminClient, topic: Option<&str>) -> Result<MetadataResponse> {
    let request = MetadataRequest::default()
        .with_topics(
            topic.map(|t| vec![MetadataRequestTopic::default().with_name(Some(topic_name(t)))]),
        )
        .with_allow_auto_topic_creation(false);
    let (response, _) = client.send(request)?;
    Ok(response)
}

/// The offset at `timestamp` (-2 earliest, -1 latest) of each of `partitions`, in order.
/// ListOffsets for `partitions` of `topic`, each asked of its leader (only a partition's
/// leader answers ListOffsets in a cluster), in the order of `partitions`.
pub(crate) fn list_offsets(
    client: &mut AdminClient,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<i64>> {
    let response = metadata(client, Some(topic))?;
    let brokers: std::collections::HashMap<i32, String> = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let leaders: std::collections::HashMap<i32, i32> = response
        .topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    let mut by_leader: std::collections::BTreeMap<i32, Vec<i32>> = Default::default();
    for &p in partitions {
        let leader = leaders.get(&p).copied().unwrap_or(-1);
        by_leader.entry(leader).or_default().push(p);
    }
    let mut offsets = std::collections::HashMap::new();
    for (leader, ps) in by_leader {
        let found = match brokers.get(&leader) {
            Some(addr) => {
                let mut leader_client = AdminClient::connect(addr)?;
                list_offsets_from(&mut leader_client, topic, &ps, timestamp)?
            }
            // No leader known (or the topic is unknown): ask the bootstrap broker, which
            // answers with the error code the user should see.
            None => list_offsets_from(client, topic, &ps, timestamp)?,
        };
        offsets.extend(ps.into_iter().zip(found));
    }
    Ok(partitions.iter().map(|p| offsets[p]).collect())
}

/// ListOffsets of `partitions` from the broker `client` is connected to.
fn list_offsets_from(
    client: &mut AdminClient,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<i64>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let (response, _) = client.send(request)?;
    let results: Vec<_> = response
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| &t.partitions)
        .collect();
    partitions
        .iter()
        .map(|&p| {
            let resource = format!("{topic}-{p}");
            let r = results
                .iter()
                .find(|r| r.partition_index == p)
                .ok_or_else(|| missing(&resource))?;
            check(&resource, r.error_code, None)?;
            Ok(r.offset)
        })
        .collect()
}

/// Left-aligned columns separated by two spaces, with a header row.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let format_row = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        line
    };
    let mut lines = vec![format_row(headers.to_vec())];
    lines.extend(
        rows.iter()
            .map(|row| format_row(row.iter().map(String::as_str).collect())),
    );
    lines
}

fn broker_list(ids: &[BrokerId]) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    ids.iter()
        .map(|id| id.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Kafka's `ConfigEntry.ConfigSource` names, as `kafka-configs.sh` prints them.
fn config_source(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

fn missing(resource: &str) -> Error {
    Error::MissingResult {
        resource: resource.to_string(),
    }
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let lines = table(
            &["A", "LONG_HEADER", "C"],
            vec![vec!["xyz".into(), "1".into(), "end".into()]],
        );
        assert_eq!(lines, vec!["A    LONG_HEADER  C", "xyz  1            end"]);
    }

    #[test]
    fn key_value_needs_a_key_and_an_equals_sign() {
        assert_eq!(
            parse_key_value("retention.ms=1=2"),
            Ok(("retention.ms".into(), "1=2".into()))
        );
        assert!(parse_key_value("retention.ms").is_err());
        assert!(parse_key_value("=1").is_err());
    }
}
