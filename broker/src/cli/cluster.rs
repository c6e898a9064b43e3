//! `tributary cluster ...`: brokers and partition health, replica moves and leader
//! elections, in the spirit of Kafka's `kafka-reassign-partitions.sh` and
//! `kafka-leader-election.sh`.
//!
//! | subcommand | requests |
//! |---|---|
//! | `describe` | Metadata (all topics), ListPartitionReassignments |
//! | `reassign --topic T --partition P --replicas 1,2,3` / `--cancel` | AlterPartitionReassignments |
//! | `reassignments` | ListPartitionReassignments |
//! | `drain BROKER`, `rebalance` | Metadata, ListPartitionReassignments, then AlterPartitionReassignments |
//! | `elect-leaders [--topic T]` | ElectLeaders (PREFERRED) |
//!
//! Only Kafka APIs are used, so every subcommand works against any broker. `drain` and
//! `rebalance` plan on the client: the Metadata response (brokers, racks, replicas, ISR)
//! and the reassignments in progress are turned back into a [`MetadataImage`], and the
//! controller's own planners run on it, so the CLI moves replicas exactly as the broker
//! would:
//!
//! ```text
//! Metadata + ListPartitionReassignments ─> image_from_metadata ─> prepare::drain / rebalance
//!    ─> plan (printed; --dry-run stops here) ─> AlterPartitionReassignments
//!    ─> --wait: poll ListPartitionReassignments until none of the plan's partitions is
//!       listed ─> ElectLeaders (PREFERRED) for them
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_partition_reassignments_request::{
    AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::{ElectLeadersRequest, TopicPartitions};
use kafka_protocol::messages::list_partition_reassignments_request::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsTopics,
};
use kafka_protocol::messages::list_partition_reassignments_response::OngoingTopicReassignment;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::client::AdminClient;
use super::topics::{metadata, table, topic_name};
use super::{check, Error, Result};
use crate::controller::{prepare, BrokerRecord, Command, MetadataImage, PartitionRecord};
use crate::controller::{TopicRecord, NO_LEADER};

/// Server-side timeout sent with AlterPartitionReassignments and ElectLeaders; below the
/// client's socket timeout so the broker answers before the client gives up.
const REQUEST_TIMEOUT_MS: i32 = 8_000;
/// How often `--wait` asks whether the reassignments are done.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// `ElectionType.PREFERRED`.
const ELECTION_PREFERRED: i8 = 0;

/// `tributary cluster`: arguments shared by every subcommand, then the subcommand.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub bootstrap: super::BootstrapArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Show the brokers, the active controller, replica and leader counts per broker, and
    /// the partitions that are leaderless, under-replicated, not led by their preferred
    /// replica or being reassigned.
    Describe,
    /// Move one partition to a new replica list, or cancel its reassignment.
    Reassign(ReassignArgs),
    /// List the reassignments in progress.
    Reassignments,
    /// Move every replica off a broker (before removing it), keeping replication factors.
    Drain(DrainArgs),
    /// Spread replicas evenly over the brokers (after adding one), moving as few as
    /// possible.
    Rebalance(RebalanceArgs),
    /// Move leadership back to each partition's preferred replica (the first one).
    ElectLeaders {
        /// Only this topic's partitions; every partition of the cluster when omitted.
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of --topic.
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(false)))]
pub struct ReassignArgs {
    #[arg(long)]
    pub topic: String,
    #[arg(long)]
    pub partition: i32,
    /// The new replica list, preferred leader first, e.g. 1,2,3.
    #[arg(long, group = "change", value_delimiter = ',', value_name = "IDS")]
    pub replicas: Vec<i32>,
    /// Cancel the reassignment in progress: the partition keeps its original replicas.
    #[arg(long, group = "change", conflicts_with = "wait")]
    pub cancel: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// Id of the broker to empty.
    pub broker: i32,
    /// Print the plan and change nothing.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, clap::Args)]
pub struct RebalanceArgs {
    /// Print the plan and change nothing.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Wait until every started reassignment has completed, then elect preferred leaders
    /// for the moved partitions.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits before giving up (the reassignments carry on).
    #[arg(long, default_value_t = 600, value_name = "SECONDS", requires = "wait")]
    pub timeout_secs: u64,
}

/// One partition's move: its replicas now and the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
}

/// Runs one `cluster` subcommand, writing its output to `out` as it goes (a `--wait` can
/// take a while, and the plan should be on screen before it starts).
pub fn run(args: ClusterArgs, out: &mut impl Write) -> Result<()> {
    let mut client = AdminClient::connect(&args.bootstrap.bootstrap_server)?;
    match args.command {
        ClusterCommand::Describe => {
            let lines = describe(&mut client)?;
            super::print_lines(out, lines);
            Ok(())
        }
        ClusterCommand::Reassign(args) => reassign(&mut client, &args, out),
        ClusterCommand::Reassignments => {
            let lines = reassignments(&mut client)?;
            super::print_lines(out, lines);
            Ok(())
        }
        ClusterCommand::Drain(args) => {
            let image = current_image(&mut client)?;
            if !image.brokers.contains_key(&args.broker) {
                return Err(Error::Command(format!(
                    "broker {} is not in the cluster: Metadata lists brokers {:?} and no partition has a replica on it",
                    args.broker,
                    image.live_brokers().map(|b| b.id).collect::<Vec<_>>()
                )));
            }
            let commands = prepare::drain(&image, args.broker).map_err(|e| {
                Error::Command(format!(
                    "cannot drain broker {}: {}",
                    args.broker, e.message
                ))
            })?;
            let moves = moves(&image, commands);
            if moves.is_empty() {
                super::print_lines(
                    out,
                    vec![format!(
                        "Broker {} holds no replicas; nothing to move.",
                        args.broker
                    )],
                );
                return Ok(());
            }
            let title = format!(
                "Plan: move {} replica(s) off broker {}",
                moves.len(),
                args.broker
            );
            super::print_lines(out, plan_lines(&image, &title, &moves));
            carry_out(&mut client, &moves, args.dry_run, &args.wait, out)
        }
        ClusterCommand::Rebalance(args) => {
            let image = current_image(&mut client)?;
            let moves = moves(&image, prepare::rebalance(&image));
            if moves.is_empty() {
                super::print_lines(
                    out,
                    vec!["Replicas are spread evenly already; nothing to move.".to_string()],
                );
                return Ok(());
            }
            let title = format!("Plan: reassign {} partition(s)", moves.len());
            super::print_lines(out, plan_lines(&image, &title, &moves));
            carry_out(&mut client, &moves, args.dry_run, &args.wait, out)
        }
        ClusterCommand::ElectLeaders { topic, partition } => {
            let partitions = match topic {
                None => None,
                Some(topic) => Some(match partition {
                    Some(p) => vec![(topic, p)],
                    None => topic_partitions(&mut client, &topic)?,
                }),
            };
            let (lines, failures) = elect_leaders(&mut client, partitions.as_deref())?;
            super::print_lines(out, lines);
            match failures.is_empty() {
                true => Ok(()),
                false => Err(Error::Command(format!(
                    "{} partition(s) could not be elected: {}",
                    failures.len(),
                    failures.join("; ")
                ))),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The image, as Metadata shows it
// ---------------------------------------------------------------------------------------

/// The cluster as the bootstrap broker sees it: Metadata for every topic plus the
/// reassignments in progress.
fn current_image(client: &mut AdminClient) -> Result<MetadataImage> {
    let response = metadata(client, None)?;
    let ongoing = list_reassignments(client, None)?;
    let mut image = image_from_metadata(&response, &ongoing);
    mark_fenced(client, &mut image)?;
    Ok(image)
}

/// Metadata lists fenced brokers too (so clients keep their state for them); DescribeCluster
/// lists the unfenced ones only. A broker in the image that DescribeCluster leaves out is
/// fenced.
fn mark_fenced(client: &mut AdminClient, image: &mut MetadataImage) -> Result<()> {
    let (response, _) = client.send(DescribeClusterRequest::default())?;
    check(
        "DescribeCluster",
        response.error_code,
        response.error_message.as_deref(),
    )?;
    let live: BTreeSet<i32> = response.brokers.iter().map(|b| b.broker_id.0).collect();
    for broker in image.brokers.values_mut() {
        broker.fenced = !live.contains(&broker.id);
    }
    Ok(())
}

/// Rebuilds a [`MetadataImage`] from a Metadata response and the reassignments in
/// progress, for the controller's planners.
///
/// Metadata lists only unfenced brokers; a broker that partitions name as a replica but
/// that is not listed is added as fenced (it may neither lead nor take new replicas).
/// What Metadata does not carry is left out: controlled shutdowns (such a broker looks
/// live), partition epochs and topic configs, none of which the planners read.
pub fn image_from_metadata(
    metadata: &MetadataResponse,
    ongoing: &[OngoingTopicReassignment],
) -> MetadataImage {
    let mut image = MetadataImage {
        cluster_id: metadata
            .cluster_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        ..MetadataImage::default()
    };
    let broker =
        |id: i32, host: String, port: i32, rack: Option<String>, fenced: bool| BrokerRecord {
            id,
            incarnation: Uuid::nil(),
            host,
            port,
            rack,
            rpc_addr: String::new(),
            fenced,
            shutting_down: false,
        };
    for b in &metadata.brokers {
        image.brokers.insert(
            b.node_id.0,
            broker(
                b.node_id.0,
                b.host.to_string(),
                b.port,
                b.rack.as_ref().map(|r| r.to_string()),
                false,
            ),
        );
    }
    // (topic, partition) -> (adding, removing)
    let moving: BTreeMap<(&str, i32), AddingRemoving> = ongoing
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    (t.name.0.as_str(), p.partition_index),
                    (ids(&p.adding_replicas), ids(&p.removing_replicas)),
                )
            })
        })
        .collect();
    for t in &metadata.topics {
        let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        if t.partitions.is_empty() {
            continue;
        }
        let count = t
            .partitions
            .iter()
            .map(|p| p.partition_index + 1)
            .max()
            .unwrap_or(0)
            .max(0) as usize;
        let mut assignments = vec![
            PartitionRecord {
                replicas: Vec::new(),
                isr: Vec::new(),
                leader: NO_LEADER,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            };
            count
        ];
        for p in &t.partitions {
            let Some(slot) = usize::try_from(p.partition_index)
                .ok()
                .and_then(|i| assignments.get_mut(i))
            else {
                continue;
            };
            let (adding, removing) = moving
                .get(&(name.as_str(), p.partition_index))
                .cloned()
                .unwrap_or_default();
            *slot = PartitionRecord {
                replicas: ids(&p.replica_nodes),
                isr: ids(&p.isr_nodes),
                leader: if p.leader_id.0 >= 0 {
                    p.leader_id.0
                } else {
                    NO_LEADER
                },
                leader_epoch: p.leader_epoch,
                partition_epoch: 0,
                adding_replicas: adding,
                removing_replicas: removing,
            };
        }
        for r in assignments.iter().flat_map(|a| &a.replicas) {
            image
                .brokers
                .entry(*r)
                .or_insert_with(|| broker(*r, String::new(), -1, None, true));
        }
        image.topics.insert(
            name.clone(),
            TopicRecord {
                name,
                topic_id: t.topic_id,
                partitions: count as i32,
                configs: Default::default(),
                assignments,
            },
        );
    }
    image
}

/// Replicas a reassignment adds and removes.
type AddingRemoving = (Vec<i32>, Vec<i32>);

fn ids(brokers: &[BrokerId]) -> Vec<i32> {
    brokers.iter().map(|b| b.0).collect()
}

/// The planners' `Reassign` commands as moves from the current replicas.
fn moves(image: &MetadataImage, commands: Vec<Command>) -> Vec<Move> {
    commands
        .into_iter()
        .filter_map(|command| match command {
            Command::Reassign {
                topic,
                partition,
                target: Some(to),
            } => {
                let from = image
                    .partition(&topic, partition)
                    .map(PartitionRecord::target_replicas)
                    .unwrap_or_default();
                Some(Move {
                    topic,
                    partition,
                    from,
                    to,
                })
            }
            // `drain` and `rebalance` plan only reassignments to a target.
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// describe
// ---------------------------------------------------------------------------------------

/// What is wrong with one partition, as `describe` names it; empty when nothing is.
pub fn partition_issues(p: &PartitionRecord) -> Vec<&'static str> {
    let mut issues = Vec::new();
    if p.leader == NO_LEADER {
        issues.push("no leader");
    }
    // Kafka's rule (`TopicCommand`): the ISR is smaller than the replicas, not counting
    // replicas a reassignment is still adding.
    let assigned = p
        .replicas
        .iter()
        .filter(|r| !p.adding_replicas.contains(r))
        .count();
    if p.isr.len() < assigned {
        issues.push("under-replicated");
    }
    if p.leader != NO_LEADER && p.replicas.first() != Some(&p.leader) {
        issues.push("not led by its preferred replica");
    }
    if p.is_reassigning() {
        issues.push("reassigning");
    }
    issues
}

fn describe(client: &mut AdminClient) -> Result<Vec<String>> {
    let response = metadata(client, None)?;
    // A broker without the API (older than Kafka 2.4) has no reassignments to show.
    let ongoing = match list_reassignments(client, None) {
        Ok(ongoing) => ongoing,
        Err(Error::UnsupportedApi { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut image = image_from_metadata(&response, &ongoing);
    mark_fenced(client, &mut image)?;
    let controller = match response.controller_id.0 {
        id if id >= 0 => id.to_string(),
        _ => "none".to_string(),
    };
    let cluster_id = if image.cluster_id.is_empty() {
        "-"
    } else {
        &image.cluster_id
    };
    let mut lines = vec![
        format!(
            "ClusterId: {cluster_id}  Controller: {controller}  Brokers: {}",
            image.live_brokers().count()
        ),
        String::new(),
    ];

    let mut replicas: BTreeMap<i32, usize> = BTreeMap::new();
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    let mut preferred: BTreeMap<i32, usize> = BTreeMap::new();
    for (_, _, p) in image.partitions() {
        for r in &p.replicas {
            *replicas.entry(*r).or_default() += 1;
        }
        if p.leader != NO_LEADER {
            *leaders.entry(p.leader).or_default() += 1;
        }
        if let Some(first) = p.replicas.first() {
            *preferred.entry(*first).or_default() += 1;
        }
    }
    let count = |map: &BTreeMap<i32, usize>, id: i32| map.get(&id).copied().unwrap_or(0);
    let broker_rows = image
        .brokers
        .values()
        .map(|b| {
            vec![
                b.id.to_string(),
                if b.fenced {
                    "-".to_string()
                } else {
                    format!("{}:{}", b.host, b.port)
                },
                b.rack.clone().unwrap_or_else(|| "-".to_string()),
                if b.fenced { "yes" } else { "no" }.to_string(),
                count(&replicas, b.id).to_string(),
                count(&leaders, b.id).to_string(),
                count(&preferred, b.id).to_string(),
            ]
        })
        .collect();
    lines.extend(table(
        &[
            "BROKER",
            "HOST:PORT",
            "RACK",
            "FENCED",
            "REPLICAS",
            "LEADERS",
            "PREFERRED_LEADERS",
        ],
        broker_rows,
    ));
    if image.brokers.values().any(|b| b.fenced) {
        lines.push(
            "(fenced: registered but not admitted by the controller: stopped, dead or cut off.)"
                .to_string(),
        );
    }

    let all: Vec<(&str, i32, &PartitionRecord, Vec<&str>)> = image
        .partitions()
        .map(|(t, i, p)| (t, i, p, partition_issues(p)))
        .collect();
    let with = |issue: &str| all.iter().filter(|(.., i)| i.contains(&issue)).count();
    lines.push(String::new());
    lines.push(format!(
        "Partitions: {}  Leaderless: {}  Under-replicated: {}  Not led by preferred replica: {}  Reassigning: {}",
        all.len(),
        with("no leader"),
        with("under-replicated"),
        with("not led by its preferred replica"),
        with("reassigning"),
    ));
    let problem_rows: Vec<Vec<String>> = all
        .iter()
        .filter(|(.., issues)| !issues.is_empty())
        .map(|(topic, index, p, issues)| {
            vec![
                topic.to_string(),
                index.to_string(),
                if p.leader == NO_LEADER {
                    "none".to_string()
                } else {
                    p.leader.to_string()
                },
                join(&p.replicas),
                join(&p.isr),
                issues.join(", "),
            ]
        })
        .collect();
    if !problem_rows.is_empty() {
        lines.push(String::new());
        lines.extend(table(
            &["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR", "ISSUES"],
            problem_rows,
        ));
    }
    Ok(lines)
}

fn join(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

// ---------------------------------------------------------------------------------------
// Reassignments
// ---------------------------------------------------------------------------------------

/// The reassignments in progress, of `wanted` partitions only when given.
fn list_reassignments(
    client: &mut AdminClient,
    wanted: Option<&[(String, i32)]>,
) -> Result<Vec<OngoingTopicReassignment>> {
    let topics = wanted.map(|wanted| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in wanted {
            by_topic.entry(topic).or_default().push(*partition);
        }
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                ListPartitionReassignmentsTopics::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(partitions)
            })
            .collect()
    });
    let request = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(REQUEST_TIMEOUT_MS)
        .with_topics(topics);
    let (response, _) = client.send(request)?;
    check(
        "ListPartitionReassignments",
        response.error_code,
        response.error_message.as_deref(),
    )?;
    Ok(response.topics)
}

fn reassignments(client: &mut AdminClient) -> Result<Vec<String>> {
    let ongoing = list_reassignments(client, None)?;
    let rows: Vec<Vec<String>> = ongoing
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                vec![
                    t.name.0.to_string(),
                    p.partition_index.to_string(),
                    join(&ids(&p.replicas)),
                    join(&ids(&p.adding_replicas)),
                    join(&ids(&p.removing_replicas)),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(vec!["No partition reassignments in progress.".to_string()]);
    }
    Ok(table(
        &["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"],
        rows,
    ))
}

fn reassign(client: &mut AdminClient, args: &ReassignArgs, out: &mut impl Write) -> Result<()> {
    let tp = format!("{}-{}", args.topic, args.partition);
    if args.cancel {
        alter_reassignments(client, &[(args.topic.clone(), args.partition, None)])?;
        super::print_lines(out, vec![format!("Cancelled the reassignment of {tp}.")]);
        return Ok(());
    }
    let target = Move {
        topic: args.topic.clone(),
        partition: args.partition,
        from: Vec::new(),
        to: args.replicas.clone(),
    };
    alter_reassignments(
        client,
        &[(
            target.topic.clone(),
            target.partition,
            Some(target.to.clone()),
        )],
    )?;
    super::print_lines(
        out,
        vec![format!(
            "Started the reassignment of {tp} to replicas {}.",
            join(&target.to)
        )],
    );
    if args.wait.wait {
        wait_and_elect(client, &[target], &args.wait, out)?;
    }
    Ok(())
}

/// Sends one AlterPartitionReassignments for `changes` (a target, or `None` to cancel);
/// fails naming every partition the broker refused.
fn alter_reassignments(
    client: &mut AdminClient,
    changes: &[(String, i32, Option<Vec<i32>>)],
) -> Result<()> {
    let mut topics: Vec<ReassignableTopic> = Vec::new();
    for (topic, partition, target) in changes {
        let partition = ReassignablePartition::default()
            .with_partition_index(*partition)
            .with_replicas(
                target
                    .as_ref()
                    .map(|t| t.iter().copied().map(BrokerId).collect()),
            );
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                ReassignableTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(REQUEST_TIMEOUT_MS)
        .with_allow_replication_factor_change(true)
        .with_topics(topics);
    let (response, _) = client.send(request)?;
    check(
        "AlterPartitionReassignments",
        response.error_code,
        response.error_message.as_deref(),
    )?;
    let mut failures = Vec::new();
    for (topic, partition, _) in changes {
        let resource = format!("{topic}-{partition}");
        let result = response
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == *partition)
            .ok_or_else(|| Error::MissingResult {
                resource: resource.clone(),
            })?;
        if let Err(e) = check(
            &resource,
            result.error_code,
            result.error_message.as_deref(),
        ) {
            failures.push(e);
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => Err(Error::Command(format!(
            "{n} of {} reassignments were refused: {}",
            changes.len(),
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// The plan as a table, with replica counts per broker before and after.
fn plan_lines(image: &MetadataImage, title: &str, moves: &[Move]) -> Vec<String> {
    let mut lines = vec![format!("{title}:"), String::new()];
    lines.extend(table(
        &["TOPIC", "PARTITION", "REPLICAS", "TARGET"],
        moves
            .iter()
            .map(|m| {
                vec![
                    m.topic.clone(),
                    m.partition.to_string(),
                    join(&m.from),
                    join(&m.to),
                ]
            })
            .collect(),
    ));
    let mut before: BTreeMap<i32, usize> = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| (b.id, 0))
        .collect();
    for (_, _, p) in image.partitions() {
        for r in p.target_replicas() {
            *before.entry(r).or_default() += 1;
        }
    }
    let mut after = before.clone();
    for m in moves {
        for r in &m.from {
            if let Some(n) = after.get_mut(r) {
                *n = n.saturating_sub(1);
            }
        }
        for r in &m.to {
            *after.entry(*r).or_default() += 1;
        }
    }
    let counts = after
        .iter()
        .map(|(id, n)| format!("{id}: {} -> {n}", before.get(id).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(String::new());
    lines.push(format!("Replicas per broker: {counts}"));
    lines
}

/// Submits `moves` (unless `dry_run`) and, with `--wait`, follows them to the end.
fn carry_out(
    client: &mut AdminClient,
    moves: &[Move],
    dry_run: bool,
    wait: &WaitArgs,
    out: &mut impl Write,
) -> Result<()> {
    if dry_run {
        super::print_lines(out, vec!["Dry run: nothing was changed.".to_string()]);
        return Ok(());
    }
    let changes: Vec<(String, i32, Option<Vec<i32>>)> = moves
        .iter()
        .map(|m| (m.topic.clone(), m.partition, Some(m.to.clone())))
        .collect();
    alter_reassignments(client, &changes)?;
    let mut lines = vec![format!("Started {} reassignment(s).", moves.len())];
    if !wait.wait {
        lines.push(
            "Follow them with `tributary cluster reassignments`; elect preferred leaders with `tributary cluster elect-leaders` once they are done."
                .to_string(),
        );
    }
    super::print_lines(out, lines);
    if wait.wait {
        wait_and_elect(client, moves, wait, out)?;
    }
    Ok(())
}

/// Polls until none of `moves` is being reassigned any more, then elects the preferred
/// leaders of the moved partitions. A preferred leader that cannot be elected is reported
/// but is no failure: the replicas are where they were asked to be.
fn wait_and_elect(
    client: &mut AdminClient,
    moves: &[Move],
    wait: &WaitArgs,
    out: &mut impl Write,
) -> Result<()> {
    let wanted: Vec<(String, i32)> = moves
        .iter()
        .map(|m| (m.topic.clone(), m.partition))
        .collect();
    super::print_lines(
        out,
        vec![format!(
            "Waiting for {} reassignment(s) to complete...",
            wanted.len()
        )],
    );
    let started = Instant::now();
    let timeout = Duration::from_secs(wait.timeout_secs);
    loop {
        let pending = list_reassignments(client, Some(&wanted))?;
        let pending: Vec<String> = pending
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    format!(
                        "{}-{} (adding {})",
                        t.name.0,
                        p.partition_index,
                        join(&ids(&p.adding_replicas))
                    )
                })
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        if started.elapsed() >= timeout {
            return Err(Error::Command(format!(
                "timed out after {}s waiting for {} reassignment(s), which carry on: {}",
                wait.timeout_secs,
                pending.len(),
                pending.join(", ")
            )));
        }
        // A polling interval: the broker offers no way to be told.
        std::thread::sleep(POLL_INTERVAL);
    }
    let mut lines = vec![format!(
        "All {} reassignment(s) completed in {:.1}s.",
        wanted.len(),
        started.elapsed().as_secs_f64()
    )];
    let (elected, failures) = elect_leaders(client, Some(&wanted))?;
    lines.extend(elected);
    lines.extend(
        failures
            .iter()
            .map(|f| format!("warning: preferred leader not elected: {f}")),
    );
    super::print_lines(out, lines);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Leader elections
// ---------------------------------------------------------------------------------------

fn topic_partitions(client: &mut AdminClient, topic: &str) -> Result<Vec<(String, i32)>> {
    let response = metadata(client, Some(topic))?;
    let t = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| Error::MissingResult {
            resource: topic.to_string(),
        })?;
    check(topic, t.error_code, None)?;
    let mut partitions: Vec<(String, i32)> = t
        .partitions
        .iter()
        .map(|p| (topic.to_string(), p.partition_index))
        .collect();
    partitions.sort();
    Ok(partitions)
}

/// Preferred leader elections for `partitions`, or for every partition (`None`). Returns
/// the output lines and the failures (ELECTION_NOT_NEEDED is none).
fn elect_leaders(
    client: &mut AdminClient,
    partitions: Option<&[(String, i32)]>,
) -> Result<(Vec<String>, Vec<String>)> {
    let topic_partitions = partitions.map(|partitions| {
        let mut by_topic: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic).or_default().insert(*partition);
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
    let request = ElectLeadersRequest::default()
        .with_election_type(ELECTION_PREFERRED)
        .with_timeout_ms(REQUEST_TIMEOUT_MS)
        .with_topic_partitions(topic_partitions);
    let (response, _) = client.send(request)?;
    check("ElectLeaders", response.error_code, None)?;
    let mut results: Vec<(String, i32, i16, Option<String>)> = response
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result.iter().map(|p| {
                (
                    t.topic.0.to_string(),
                    p.partition_id,
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect();
    results.sort();
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let mut not_needed = 0;
    for (topic, partition, code, message) in &results {
        let resource = format!("{topic}-{partition}");
        match *code {
            0 => lines.push(format!("Elected the preferred leader of {resource}.")),
            c if c == ResponseError::ElectionNotNeeded.code() => not_needed += 1,
            _ => {
                if let Err(e) = check(&resource, *code, message.as_deref()) {
                    failures.push(e.to_string());
                }
            }
        }
    }
    if lines.is_empty() && failures.is_empty() {
        lines.push("Every partition is led by its preferred replica already.".to_string());
    } else if not_needed > 0 {
        lines.push(format!(
            "{not_needed} partition(s) led by their preferred replica already."
        ));
    }
    Ok((lines, failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::image::apply;
    use clap::Parser;
    use kafka_protocol::messages::list_partition_reassignments_response::OngoingPartitionReassignment;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_string())
    }

    /// Brokers 0..4 on racks a, b, a, b; broker 4 (rack c) registered but fenced.
    fn cluster() -> MetadataImage {
        let mut image = MetadataImage {
            cluster_id: "cid".into(),
            ..MetadataImage::default()
        };
        for id in 0..5 {
            let broker = BrokerRecord {
                id,
                incarnation: Uuid::from_u128(id as u128 + 1),
                host: "127.0.0.1".into(),
                port: 9092 + id,
                rack: Some(["a", "b", "a", "b", "c"][id as usize].to_string()),
                rpc_addr: format!("127.0.0.1:{}", 9192 + id),
                fenced: true,
                shutting_down: false,
            };
            apply(&mut image, &Command::RegisterBroker { broker }).unwrap();
            if id < 4 {
                apply(&mut image, &Command::UnfenceBroker { id }).unwrap();
            }
        }
        image
    }

    fn create(image: &mut MetadataImage, name: &str, replicas: &[&[i32]]) {
        let topic = TopicRecord {
            name: name.into(),
            topic_id: Uuid::new_v4(),
            partitions: replicas.len() as i32,
            configs: Default::default(),
            assignments: replicas
                .iter()
                .map(|r| PartitionRecord::unplaced(r.to_vec()))
                .collect(),
        };
        apply(image, &Command::CreateTopic { topic }).unwrap();
    }

    /// What the broker's Metadata and ListPartitionReassignments handlers answer for
    /// `image`: unfenced brokers only, every partition's replicas, ISR and leader.
    fn as_responses(image: &MetadataImage) -> (MetadataResponse, Vec<OngoingTopicReassignment>) {
        let brokers = image
            .live_brokers()
            .map(|b| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(s(&b.host))
                    .with_port(b.port)
                    .with_rack(b.rack.as_deref().map(s))
            })
            .collect();
        let brokers_of = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
        let topics = image
            .topics
            .values()
            .map(|t| {
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(s(&t.name))))
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.assignments
                            .iter()
                            .enumerate()
                            .map(|(i, p)| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(i as i32)
                                    .with_leader_id(BrokerId(p.leader))
                                    .with_leader_epoch(p.leader_epoch)
                                    .with_replica_nodes(brokers_of(&p.replicas))
                                    .with_isr_nodes(brokers_of(&p.isr))
                            })
                            .collect(),
                    )
            })
            .collect();
        let metadata = MetadataResponse::default()
            .with_cluster_id(Some(s(&image.cluster_id)))
            .with_brokers(brokers)
            .with_topics(topics);
        let mut ongoing: Vec<OngoingTopicReassignment> = Vec::new();
        for (topic, index, p) in image.reassignments() {
            let partition = OngoingPartitionReassignment::default()
                .with_partition_index(index)
                .with_replicas(brokers_of(&p.replicas))
                .with_adding_replicas(brokers_of(&p.adding_replicas))
                .with_removing_replicas(brokers_of(&p.removing_replicas));
            match ongoing.last_mut() {
                Some(t) if t.name.0.as_str() == topic => t.partitions.push(partition),
                _ => ongoing.push(
                    OngoingTopicReassignment::default()
                        .with_name(TopicName(s(&topic)))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        (metadata, ongoing)
    }

    fn rebuilt(image: &MetadataImage) -> MetadataImage {
        let (metadata, ongoing) = as_responses(image);
        image_from_metadata(&metadata, &ongoing)
    }

    #[test]
    fn plans_from_metadata_match_plans_from_the_controller_image() {
        let mut image = cluster();
        create(
            &mut image,
            "orders",
            &[&[0, 1], &[1, 2], &[2, 3], &[3, 0], &[0, 4], &[1, 0]],
        );
        create(&mut image, "audit", &[&[2, 1, 0], &[0, 1, 2]]);
        // One reassignment in progress, towards the fenced broker: it counts for the
        // planners as its target does.
        apply(
            &mut image,
            &Command::Reassign {
                topic: "audit".into(),
                partition: 1,
                target: Some(vec![0, 1, 3]),
            },
        )
        .unwrap();
        let copy = rebuilt(&image);
        // The fenced broker is known from the replica lists alone.
        assert!(copy.brokers[&4].fenced);
        assert!(!copy.brokers[&3].fenced);
        assert_eq!(copy.brokers[&1].rack.as_deref(), Some("b"));
        assert_eq!(copy.partition("audit", 1).unwrap().adding_replicas, vec![3]);
        for broker in 0..5 {
            assert_eq!(
                prepare::drain(&copy, broker),
                prepare::drain(&image, broker),
                "drain of broker {broker}"
            );
        }
        assert_eq!(prepare::rebalance(&copy), prepare::rebalance(&image));
        assert!(!prepare::rebalance(&copy).is_empty());
    }

    #[test]
    fn moves_start_from_the_target_replicas() {
        let mut image = cluster();
        create(&mut image, "t", &[&[0, 1], &[2, 3]]);
        let copy = rebuilt(&image);
        let planned = moves(&copy, prepare::drain(&copy, 1).unwrap());
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].topic, "t");
        assert_eq!(planned[0].partition, 0);
        assert_eq!(planned[0].from, vec![0, 1]);
        assert!(!planned[0].to.contains(&1) && planned[0].to.len() == 2);
        let lines = plan_lines(&copy, "Plan", &planned);
        assert!(lines
            .iter()
            .any(|l| l.starts_with("Replicas per broker:") && l.contains("1: 1 -> 0")));
    }

    #[test]
    fn describe_names_each_partition_problem() {
        let record = |replicas: &[i32], isr: &[i32], leader: i32| PartitionRecord {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        };
        assert!(partition_issues(&record(&[0, 1], &[0, 1], 0)).is_empty());
        assert_eq!(
            partition_issues(&record(&[0, 1], &[1], 1)),
            vec!["under-replicated", "not led by its preferred replica"]
        );
        assert_eq!(
            partition_issues(&record(&[0], &[0], NO_LEADER)),
            vec!["no leader"]
        );
        // Replicas still being added do not make a partition under-replicated.
        let mut moving = record(&[0, 1, 2], &[0], 0);
        moving.adding_replicas = vec![1, 2];
        assert_eq!(partition_issues(&moving), vec!["reassigning"]);
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ClusterArgs,
    }

    #[test]
    fn reassign_takes_replicas_or_cancel() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["cluster"].iter().chain(args)).map(|c| c.args.command)
        };
        match parse(&[
            "reassign",
            "--topic",
            "t",
            "--partition",
            "2",
            "--replicas",
            "3,1,2",
        ]) {
            Ok(ClusterCommand::Reassign(r)) => {
                assert_eq!(r.replicas, vec![3, 1, 2]);
                assert!(!r.cancel && !r.wait.wait);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["reassign", "--topic", "t", "--partition", "0"]).is_err());
        assert!(parse(&[
            "reassign",
            "--topic",
            "t",
            "--partition",
            "0",
            "--cancel",
            "--replicas",
            "1"
        ])
        .is_err());
        assert!(parse(&["reassign", "--topic", "t", "--partition", "0", "--cancel"]).is_ok());
        assert!(parse(&["drain", "2", "--dry-run", "--wait"]).is_err());
        assert!(parse(&["drain", "2", "--timeout-secs", "5"]).is_err());
        assert!(parse(&["drain", "2", "--wait", "--timeout-secs", "5"]).is_ok());
        assert!(parse(&["elect-leaders", "--partition", "1"]).is_err());
    }
}
