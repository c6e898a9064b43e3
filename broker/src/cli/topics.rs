//! `tributary topics ...`: list, describe, create, delete, alter and configure topics.
//!
//! Each subcommand is one or two calls of the [`Admin`] client:
//!
//! | subcommand | calls (requests) |
//! |---|---|
//! | `list` | `describe_topics(None)` (Metadata) |
//! | `describe TOPIC` | `describe_topic` (Metadata), `list_offsets` earliest and latest (ListOffsets to each leader) |
//! | `create TOPIC` | `create_topic` (CreateTopics) |
//! | `delete TOPIC` | `delete_topic` (DeleteTopics) |
//! | `alter TOPIC --partitions N` | `create_partitions` (CreatePartitions) |
//! | `configs TOPIC` | `describe_topic_configs` (DescribeConfigs), or `alter_topic_configs` (IncrementalAlterConfigs) with `--set` / `--delete` |
//!
//! Output is plain, aligned text on stdout. Failures, including Kafka error codes, are
//! returned as [`Error`](super::Error) for `main` to print and turn into exit status 1.

use std::collections::BTreeMap;
use std::io::Write;

use tributary_admin::{Admin, AlterConfigOp, NewTopic, OffsetSpec, TopicPartition};

use super::{unknown_topic, Result};

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
    let lines = super::block_on(async {
        let admin = super::connect(&args.bootstrap.bootstrap_server).await?;
        match args.command {
            TopicsCommand::List => list(&admin).await,
            TopicsCommand::Describe { topic } => describe(&admin, &topic).await,
            TopicsCommand::Create {
                topic,
                partitions,
                replication_factor,
                configs,
            } => {
                let new_topic = NewTopic {
                    name: topic.clone(),
                    // -1: the broker's default (KIP-464).
                    partitions: partitions.unwrap_or(-1),
                    replication_factor: replication_factor.unwrap_or(-1),
                    configs: configs.into_iter().collect(),
                };
                admin.create_topic(&new_topic).await?;
                Ok(vec![format!("Created topic {topic}.")])
            }
            TopicsCommand::Delete { topic } => {
                admin.delete_topic(&topic).await?;
                Ok(vec![format!("Deleted topic {topic}.")])
            }
            TopicsCommand::Alter { topic, partitions } => {
                admin.create_partitions(&topic, partitions).await?;
                Ok(vec![format!(
                    "Topic {topic} now has {partitions} partitions."
                )])
            }
            TopicsCommand::Configs { topic, set, delete }
                if set.is_empty() && delete.is_empty() =>
            {
                describe_configs(&admin, &topic).await
            }
            TopicsCommand::Configs { topic, set, delete } => {
                let ops: Vec<AlterConfigOp> = set
                    .into_iter()
                    .map(|(name, value)| AlterConfigOp::Set { name, value })
                    .chain(
                        delete
                            .into_iter()
                            .map(|name| AlterConfigOp::Delete { name }),
                    )
                    .collect();
                admin.alter_topic_configs(&topic, &ops).await?;
                Ok(vec![format!("Updated configs of topic {topic}.")])
            }
        }
    })?;
    super::print_lines(out, lines);
    Ok(())
}

async fn list(admin: &Admin) -> Result<Vec<String>> {
    // Sorted by name already.
    let topics = admin.describe_topics(None).await?;
    Ok(topics.into_iter().map(|t| t.name).collect())
}

async fn describe(admin: &Admin, topic: &str) -> Result<Vec<String>> {
    let t = admin
        .describe_topic(topic)
        .await?
        .ok_or_else(|| unknown_topic(topic))?;
    let tps: Vec<TopicPartition> = t
        .partitions
        .iter()
        .map(|p| TopicPartition::new(topic, p.partition))
        .collect();
    let log_start_offsets = admin.list_offsets(&tps, OffsetSpec::Earliest).await?;
    let log_end_offsets = admin.list_offsets(&tps, OffsetSpec::Latest).await?;

    let topic_id = if t.topic_id.is_nil() {
        "-".to_string()
    } else {
        t.topic_id.to_string()
    };
    let mut lines = vec![
        format!(
            "Topic: {topic}  TopicId: {topic_id}  PartitionCount: {}  ReplicationFactor: {}",
            t.partitions.len(),
            t.replication_factor()
        ),
        String::new(),
    ];
    let offset = |offsets: &BTreeMap<TopicPartition, i64>, tp: &TopicPartition| {
        offsets.get(tp).map_or("-".to_string(), i64::to_string)
    };
    let rows = t
        .partitions
        .iter()
        .zip(&tps)
        .map(|(p, tp)| {
            vec![
                p.partition.to_string(),
                // -1 while there is none, as Metadata reports it.
                p.leader.unwrap_or(-1).to_string(),
                broker_list(&p.replicas),
                broker_list(&p.isr),
                offset(&log_start_offsets, tp),
                offset(&log_end_offsets, tp),
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

async fn describe_configs(admin: &Admin, topic: &str) -> Result<Vec<String>> {
    // Sorted by name already.
    let configs = admin.describe_topic_configs(topic).await?;
    let rows = configs
        .iter()
        .map(|c| {
            let value = if c.sensitive {
                "(sensitive)".to_string()
            } else {
                c.value.as_deref().unwrap_or("(null)").to_string()
            };
            vec![c.name.clone(), value, c.source.as_str().to_string()]
        })
        .collect();
    Ok(table(&["NAME", "VALUE", "SOURCE"], rows))
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

fn broker_list(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
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
