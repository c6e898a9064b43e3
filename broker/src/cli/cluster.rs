//! `tributary cluster ...`: brokers and partition health, replica moves and leader
//! elections, in the spirit of Kafka's `kafka-reassign-partitions.sh` and
//! `kafka-leader-election.sh`.
//!
//! | subcommand | calls (requests) |
//! |---|---|
//! | `describe` | `describe_cluster` (DescribeCluster, Metadata), `describe_topics` (Metadata), `list_partition_reassignments` |
//! | `reassign --topic T --partition P --replicas 1,2,3` / `--cancel` | `alter_partition_reassignments` |
//! | `reassignments` | `list_partition_reassignments` |
//! | `drain BROKER`, `rebalance` | as `describe`, then `alter_partition_reassignments` |
//! | `elect-leaders [--topic T]` | `elect_leaders` (ElectLeaders, PREFERRED) |
//! | `unregister BROKER` | `unregister_broker` (UnregisterBroker) |
//!
//! Only Kafka APIs are used, so every subcommand works against any broker. `drain` and
//! `rebalance` plan on the client: the admin client's descriptions of the cluster
//! (brokers, racks, fencing), the topics (replicas, ISR) and the reassignments in progress
//! are turned back into a [`MetadataImage`], and the controller's own planners run on it,
//! so the CLI moves replicas exactly as the broker would:
//!
//! ```text
//! describe_cluster + describe_topics + list_partition_reassignments
//!    ─> image_from_descriptions ─> prepare::drain / rebalance
//!    ─> plan (printed; --dry-run stops here) ─> alter_partition_reassignments
//!    ─> --wait: poll list_partition_reassignments_of until none of the plan's partitions
//!       is listed ─> elect_leaders (PREFERRED) for them
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use tributary_admin::{
    Admin, ClusterDescription, Election, ElectionType, OngoingReassignment, TopicDescription,
    TopicPartition,
};
use uuid::Uuid;

use super::topics::table;
use super::{unknown_topic, Error, Result};
use crate::controller::{prepare, BrokerRecord, Command, MetadataImage, PartitionRecord};
use crate::controller::{TopicRecord, NO_LEADER};

/// How often `--wait` asks whether the reassignments are done.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

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
    /// Remove a broker that is gone for good from the cluster's metadata, as Kafka's
    /// `kafka-cluster.sh unregister` does: it must be stopped (fenced) and hold no replica
    /// (`drain` it first).
    Unregister {
        /// The broker's id.
        broker: i32,
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
    super::block_on(async {
        let admin = super::connect(&args.bootstrap.bootstrap_server).await?;
        match args.command {
            ClusterCommand::Describe => {
                let lines = describe(&admin).await?;
                super::print_lines(out, lines);
                Ok(())
            }
            ClusterCommand::Reassign(args) => reassign(&admin, &args, out).await,
            ClusterCommand::Reassignments => {
                let lines = reassignments(&admin).await?;
                super::print_lines(out, lines);
                Ok(())
            }
            ClusterCommand::Drain(args) => {
                let image = current_image(&admin).await?;
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
                carry_out(&admin, &moves, args.dry_run, &args.wait, out).await
            }
            ClusterCommand::Rebalance(args) => {
                let image = current_image(&admin).await?;
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
                carry_out(&admin, &moves, args.dry_run, &args.wait, out).await
            }
            ClusterCommand::Unregister { broker } => {
                admin.unregister_broker(broker).await?;
                super::print_lines(out, vec![format!("Unregistered broker {broker}.")]);
                Ok(())
            }
            ClusterCommand::ElectLeaders { topic, partition } => {
                let partitions = match topic {
                    None => None,
                    Some(topic) => Some(match partition {
                        Some(p) => vec![TopicPartition::new(topic, p)],
                        None => topic_partitions(&admin, &topic).await?,
                    }),
                };
                let (lines, failures) = elect_leaders(&admin, partitions.as_deref()).await?;
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
    })
}

// ---------------------------------------------------------------------------------------
// The image, as the admin client describes it
// ---------------------------------------------------------------------------------------

/// The cluster as the admin client describes it: brokers (fenced ones included), every
/// topic and the reassignments in progress.
async fn current_image(admin: &Admin) -> Result<MetadataImage> {
    let cluster = admin.describe_cluster().await?;
    let topics = admin.describe_topics(None).await?;
    let ongoing = admin.list_partition_reassignments().await?;
    Ok(image_from_descriptions(&cluster, &topics, &ongoing))
}

/// Rebuilds a [`MetadataImage`] from the admin client's descriptions of the cluster, its
/// topics and the reassignments in progress, for the controller's planners.
///
/// A broker that partitions name as a replica but that the cluster description leaves out
/// is added as fenced (it may neither lead nor take new replicas). What the descriptions
/// do not carry is left out: controlled shutdowns (such a broker looks live), partition
/// epochs and topic configs, none of which the planners read.
pub fn image_from_descriptions(
    cluster: &ClusterDescription,
    topics: &[TopicDescription],
    ongoing: &[OngoingReassignment],
) -> MetadataImage {
    let mut image = MetadataImage {
        cluster_id: cluster.cluster_id.clone(),
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
    for b in &cluster.brokers {
        image.brokers.insert(
            b.id,
            broker(b.id, b.host.clone(), b.port, b.rack.clone(), b.fenced),
        );
    }
    let moving: BTreeMap<&TopicPartition, &OngoingReassignment> =
        ongoing.iter().map(|o| (&o.tp, o)).collect();
    for t in topics {
        if t.partitions.is_empty() {
            continue;
        }
        let count = t
            .partitions
            .iter()
            .map(|p| p.partition + 1)
            .max()
            .unwrap_or(0)
            .max(0) as usize;
        let mut assignments = vec![PartitionRecord::unplaced(Vec::new()); count];
        for p in &t.partitions {
            let Some(slot) = usize::try_from(p.partition)
                .ok()
                .and_then(|i| assignments.get_mut(i))
            else {
                continue;
            };
            let (adding, removing) = moving
                .get(&TopicPartition::new(t.name.as_str(), p.partition))
                .map(|o| (o.adding.clone(), o.removing.clone()))
                .unwrap_or_default();
            *slot = PartitionRecord {
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                leader: p.leader.unwrap_or(NO_LEADER),
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
            t.name.clone(),
            TopicRecord {
                name: t.name.clone(),
                topic_id: t.topic_id,
                partitions: count as i32,
                configs: Default::default(),
                assignments,
            },
        );
    }
    image
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

async fn describe(admin: &Admin) -> Result<Vec<String>> {
    let cluster = admin.describe_cluster().await?;
    let topics = admin.describe_topics(None).await?;
    // A broker without the API (older than Kafka 2.4) has no reassignments to show.
    let ongoing = match admin.list_partition_reassignments().await {
        Ok(ongoing) => ongoing,
        Err(tributary_admin::Error::UnsupportedApi { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let image = image_from_descriptions(&cluster, &topics, &ongoing);
    let controller = match cluster.controller_id {
        Some(id) => id.to_string(),
        None => "none".to_string(),
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

async fn reassignments(admin: &Admin) -> Result<Vec<String>> {
    let ongoing = admin.list_partition_reassignments().await?;
    let rows: Vec<Vec<String>> = ongoing
        .iter()
        .map(|o| {
            vec![
                o.tp.topic.clone(),
                o.tp.partition.to_string(),
                join(&o.replicas),
                join(&o.adding),
                join(&o.removing),
            ]
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

async fn reassign(admin: &Admin, args: &ReassignArgs, out: &mut impl Write) -> Result<()> {
    let tp = TopicPartition::new(args.topic.as_str(), args.partition);
    if args.cancel {
        alter_reassignments(admin, &[(tp.clone(), None)]).await?;
        super::print_lines(out, vec![format!("Cancelled the reassignment of {tp}.")]);
        return Ok(());
    }
    let target = Move {
        topic: args.topic.clone(),
        partition: args.partition,
        from: Vec::new(),
        to: args.replicas.clone(),
    };
    alter_reassignments(admin, &[(tp.clone(), Some(target.to.clone()))]).await?;
    super::print_lines(
        out,
        vec![format!(
            "Started the reassignment of {tp} to replicas {}.",
            join(&target.to)
        )],
    );
    if args.wait.wait {
        wait_and_elect(admin, &[target], &args.wait, out).await?;
    }
    Ok(())
}

/// Starts (or, for `None`, cancels) the reassignments of `changes` in one request; fails
/// naming every partition the broker refused.
async fn alter_reassignments(
    admin: &Admin,
    changes: &[(TopicPartition, Option<Vec<i32>>)],
) -> Result<()> {
    let results = admin.alter_partition_reassignments(changes).await?;
    let mut failures: Vec<tributary_admin::Error> =
        results.into_iter().filter_map(|(_, r)| r.err()).collect();
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0).into()),
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
async fn carry_out(
    admin: &Admin,
    moves: &[Move],
    dry_run: bool,
    wait: &WaitArgs,
    out: &mut impl Write,
) -> Result<()> {
    if dry_run {
        super::print_lines(out, vec!["Dry run: nothing was changed.".to_string()]);
        return Ok(());
    }
    let changes: Vec<(TopicPartition, Option<Vec<i32>>)> = moves
        .iter()
        .map(|m| {
            (
                TopicPartition::new(m.topic.as_str(), m.partition),
                Some(m.to.clone()),
            )
        })
        .collect();
    alter_reassignments(admin, &changes).await?;
    let mut lines = vec![format!("Started {} reassignment(s).", moves.len())];
    if !wait.wait {
        lines.push(
            "Follow them with `tributary cluster reassignments`; elect preferred leaders with `tributary cluster elect-leaders` once they are done."
                .to_string(),
        );
    }
    super::print_lines(out, lines);
    if wait.wait {
        wait_and_elect(admin, moves, wait, out).await?;
    }
    Ok(())
}

/// Polls until none of `moves` is being reassigned any more, then elects the preferred
/// leaders of the moved partitions. A preferred leader that cannot be elected is reported
/// but is no failure: the replicas are where they were asked to be.
async fn wait_and_elect(
    admin: &Admin,
    moves: &[Move],
    wait: &WaitArgs,
    out: &mut impl Write,
) -> Result<()> {
    let wanted: Vec<TopicPartition> = moves
        .iter()
        .map(|m| TopicPartition::new(m.topic.as_str(), m.partition))
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
        let pending: Vec<String> = admin
            .list_partition_reassignments_of(&wanted)
            .await?
            .iter()
            .map(|o| format!("{} (adding {})", o.tp, join(&o.adding)))
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
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let mut lines = vec![format!(
        "All {} reassignment(s) completed in {:.1}s.",
        wanted.len(),
        started.elapsed().as_secs_f64()
    )];
    let (elected, failures) = elect_leaders(admin, Some(&wanted)).await?;
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

/// Every partition of `topic`, sorted; fails for a topic that does not exist.
async fn topic_partitions(admin: &Admin, topic: &str) -> Result<Vec<TopicPartition>> {
    let t = admin
        .describe_topic(topic)
        .await?
        .ok_or_else(|| unknown_topic(topic))?;
    Ok(t.partitions
        .iter()
        .map(|p| TopicPartition::new(topic, p.partition))
        .collect())
}

/// Preferred leader elections for `partitions`, or for every partition (`None`). Returns
/// the output lines and the failures (ELECTION_NOT_NEEDED is none).
async fn elect_leaders(
    admin: &Admin,
    partitions: Option<&[TopicPartition]>,
) -> Result<(Vec<String>, Vec<String>)> {
    // Sorted by partition.
    let results = admin
        .elect_leaders(ElectionType::Preferred, partitions)
        .await?;
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let mut not_needed = 0;
    for (tp, result) in &results {
        match result {
            Ok(Election::Elected) => lines.push(format!("Elected the preferred leader of {tp}.")),
            Ok(Election::NotNeeded) => not_needed += 1,
            Err(e) => failures.push(e.to_string()),
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
    use tributary_admin::{BrokerDescription, PartitionDescription};

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

    /// What the admin client describes for `image` against Tributary before DescribeCluster
    /// v2: unfenced brokers only, every partition's replicas, ISR and leader, and the
    /// reassignments in progress.
    fn as_descriptions(
        image: &MetadataImage,
    ) -> (
        ClusterDescription,
        Vec<TopicDescription>,
        Vec<OngoingReassignment>,
    ) {
        let cluster = ClusterDescription {
            cluster_id: image.cluster_id.clone(),
            controller_id: Some(0),
            brokers: image
                .live_brokers()
                .map(|b| BrokerDescription {
                    id: b.id,
                    host: b.host.clone(),
                    port: b.port,
                    rack: b.rack.clone(),
                    fenced: false,
                })
                .collect(),
        };
        let topics = image
            .topics
            .values()
            .map(|t| TopicDescription {
                name: t.name.clone(),
                topic_id: t.topic_id,
                internal: false,
                partitions: t
                    .assignments
                    .iter()
                    .enumerate()
                    .map(|(i, p)| PartitionDescription {
                        partition: i as i32,
                        leader: (p.leader != NO_LEADER).then_some(p.leader),
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        offline_replicas: Vec::new(),
                    })
                    .collect(),
            })
            .collect();
        let ongoing = image
            .reassignments()
            .into_iter()
            .map(|(topic, index, p)| OngoingReassignment {
                tp: TopicPartition::new(topic, index),
                replicas: p.replicas.clone(),
                adding: p.adding_replicas.clone(),
                removing: p.removing_replicas.clone(),
            })
            .collect();
        (cluster, topics, ongoing)
    }

    fn rebuilt(image: &MetadataImage) -> MetadataImage {
        let (cluster, topics, ongoing) = as_descriptions(image);
        image_from_descriptions(&cluster, &topics, &ongoing)
    }

    #[test]
    fn plans_from_descriptions_match_plans_from_the_controller_image() {
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
