//! `tributary groups ...`: list, describe and reset the offsets of consumer groups, in the
//! spirit of Kafka's `kafka-consumer-groups.sh`.
//!
//! | subcommand | calls (requests) |
//! |---|---|
//! | `list` | `list_groups` (Metadata, ListGroups to every broker) |
//! | `describe GROUP` | `describe_group` (DescribeGroups), `group_offsets` (OffsetFetch), `list_offsets` latest |
//! | `reset-offsets GROUP --topic T ...` | `describe_group`, `describe_topic`, `list_offsets`, then `alter_group_offsets` (OffsetCommit) with `--execute` |
//!
//! Group requests go to the group's coordinator, which the admin client finds. A reset
//! commits as a non-member (generation -1, empty member id), which the broker accepts only
//! while the group is `Empty`; the CLI checks the state first so that the error names it.
//! Without `--execute` a reset only prints its plan, as Kafka's tool does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use tributary_admin::{Admin, OffsetSpec, TopicPartition};

use super::topics::table;
use super::{unknown_topic, Error, Result};

/// `tributary groups`: arguments shared by every subcommand, then the subcommand.
#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub bootstrap: super::BootstrapArgs,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupsCommand {
    /// List group ids.
    List,
    /// Show a group's state, members with their assignments, and per partition the committed
    /// offset, log end offset and lag.
    Describe { group: String },
    /// Move a group's committed offsets; the group must have no members.
    ResetOffsets(ResetArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
pub struct ResetArgs {
    pub group: String,
    /// Topic whose partitions are reset (all of its partitions). Repeatable.
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    /// Reset to the log start offset.
    #[arg(long, group = "target")]
    pub to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(long, group = "target")]
    pub to_latest: bool,
    /// Reset to the first offset whose timestamp is at or after this RFC 3339 time
    /// (e.g. 2024-05-01T12:00:00Z); the log end offset when there is none.
    #[arg(long, group = "target", value_name = "RFC3339", value_parser = tributary_admin::parse_rfc3339_ms)]
    pub to_datetime: Option<i64>,
    /// Reset to this offset, clamped to the log's start and end offsets.
    #[arg(long, group = "target", value_name = "N")]
    pub to_offset: Option<i64>,
    /// Print the plan without committing it (the default when --execute is absent).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    pub execute: bool,
}

/// Runs one `groups` subcommand, writing its output to `out` (and warnings to stderr).
pub fn run(args: GroupsArgs, out: &mut impl Write) -> Result<()> {
    let lines = super::block_on(async {
        let admin = super::connect(&args.bootstrap.bootstrap_server).await?;
        match args.command {
            GroupsCommand::List => list(&admin).await,
            GroupsCommand::Describe { group } => describe(&admin, &group).await,
            GroupsCommand::ResetOffsets(reset) => reset_offsets(&admin, &reset).await,
        }
    })?;
    super::print_lines(out, lines);
    Ok(())
}

/// Every group id of the cluster, sorted.
async fn list(admin: &Admin) -> Result<Vec<String>> {
    let groups = admin.list_groups().await?;
    Ok(groups.into_iter().map(|g| g.group_id).collect())
}

async fn describe(admin: &Admin, group: &str) -> Result<Vec<String>> {
    let Some(described) = admin.describe_group(group).await? else {
        // Kafka's tool prints the same sentence.
        return Err(Error::Command(format!(
            "Consumer group '{group}' does not exist."
        )));
    };
    let committed = admin.group_offsets(group).await?;
    let protocol = if described.protocol.is_empty() {
        "-".to_string()
    } else {
        described.protocol.clone()
    };
    let mut lines = vec![
        format!(
            "Consumer group '{group}'  State: {}  Protocol: {protocol}  Members: {}",
            described.state,
            described.members.len()
        ),
        String::new(),
    ];

    // partition → (member id, client id) of the member it is assigned to.
    let mut owners: BTreeMap<TopicPartition, (String, String)> = BTreeMap::new();
    let mut member_rows = Vec::new();
    for m in &described.members {
        for tp in &m.assignment {
            owners.insert(tp.clone(), (m.member_id.clone(), m.client_id.clone()));
        }
        member_rows.push(vec![
            m.member_id.clone(),
            m.group_instance_id
                .clone()
                .unwrap_or_else(|| "-".to_string()),
            m.client_id.clone(),
            m.client_host.clone(),
            assignment_text(&m.assignment),
        ]);
    }
    if !member_rows.is_empty() {
        lines.extend(table(
            &[
                "MEMBER-ID",
                "INSTANCE-ID",
                "CLIENT-ID",
                "HOST",
                "ASSIGNMENT",
            ],
            member_rows,
        ));
        lines.push(String::new());
    }

    let partitions: Vec<TopicPartition> = committed
        .keys()
        .chain(owners.keys())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ends = admin.list_offsets(&partitions, OffsetSpec::Latest).await?;
    let mut rows = Vec::new();
    for tp in &partitions {
        let current = committed.get(tp).copied();
        let end = ends.get(tp).copied();
        let (member, client_id) = owners
            .get(tp)
            .cloned()
            .unwrap_or_else(|| ("-".to_string(), "-".to_string()));
        let lag = match (current, end) {
            (Some(current), Some(end)) => (end - current).max(0).to_string(),
            _ => "-".to_string(),
        };
        rows.push(vec![
            tp.topic.clone(),
            tp.partition.to_string(),
            current.map_or("-".to_string(), |c| c.to_string()),
            end.map_or("-".to_string(), |e| e.to_string()),
            lag,
            member,
            client_id,
        ]);
    }
    lines.extend(table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "CLIENT-ID",
        ],
        rows,
    ));
    Ok(lines)
}

/// A member's partitions as `topic(0,1) other(2)`, or `-` for none.
fn assignment_text(assignment: &[TopicPartition]) -> String {
    if assignment.is_empty() {
        return "-".to_string();
    }
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for tp in assignment {
        by_topic
            .entry(&tp.topic)
            .or_default()
            .push(tp.partition.to_string());
    }
    by_topic
        .iter()
        .map(|(topic, partitions)| format!("{topic}({})", partitions.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn reset_offsets(admin: &Admin, args: &ResetArgs) -> Result<Vec<String>> {
    let group = args.group.as_str();
    // A group that does not exist is as inactive as an empty one.
    let (state, members) = match admin.describe_group(group).await? {
        Some(described) => (described.state, described.members.len()),
        None => ("Dead".to_string(), 0),
    };
    if state != "Empty" && state != "Dead" {
        return Err(Error::Command(format!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current \
             state is {state} ({members} members)."
        )));
    }

    let mut plan: Vec<(TopicPartition, i64)> = Vec::new();
    for topic in &args.topics {
        let t = admin
            .describe_topic(topic)
            .await?
            .ok_or_else(|| unknown_topic(topic))?;
        // Sorted by partition already.
        let tps: Vec<TopicPartition> = t
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic.as_str(), p.partition))
            .collect();
        let starts = admin.list_offsets(&tps, OffsetSpec::Earliest).await?;
        let ends = admin.list_offsets(&tps, OffsetSpec::Latest).await?;
        let at_time = match args.to_datetime {
            // The log end offset where no record is at or after the time.
            Some(ms) => Some(admin.list_offsets(&tps, OffsetSpec::Timestamp(ms)).await?),
            None => None,
        };
        for tp in tps {
            // list_offsets answers for every partition it was asked about or fails.
            let start = starts.get(&tp).copied().unwrap_or(0);
            let end = ends.get(&tp).copied().unwrap_or(start);
            let offset = if args.to_earliest {
                start
            } else if args.to_latest {
                end
            } else if let Some(at) = &at_time {
                at.get(&tp).copied().unwrap_or(end)
            } else {
                // clap requires exactly one target, so this is --to-offset.
                args.to_offset.unwrap_or(start).clamp(start, end.max(start))
            };
            plan.push((tp, offset));
        }
    }

    if args.execute {
        let offsets: BTreeMap<TopicPartition, i64> = plan.iter().cloned().collect();
        admin.alter_group_offsets(group, &offsets).await?;
    } else if !args.dry_run {
        eprintln!(
            "WARN: No action will be performed as the --execute option is missing. \
             Add --execute to reset the offsets, or --dry-run to silence this warning."
        );
    }
    let rows = plan
        .iter()
        .map(|(tp, offset)| {
            vec![
                group.to_string(),
                tp.topic.clone(),
                tp.partition.to_string(),
                offset.to_string(),
            ]
        })
        .collect();
    let mut lines = table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], rows);
    if args.execute {
        lines.push(String::new());
        lines.push(format!(
            "Committed {} offsets of group '{group}'.",
            plan.len()
        ));
    } else {
        lines.push(String::new());
        lines.push("Dry run: nothing was committed.".to_string());
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_print_grouped_by_topic() {
        let tps = [
            TopicPartition::new("audit", 3),
            TopicPartition::new("ord", 0),
            TopicPartition::new("ord", 1),
        ];
        assert_eq!(assignment_text(&tps), "audit(3) ord(0,1)");
        assert_eq!(assignment_text(&[]), "-");
    }
}
