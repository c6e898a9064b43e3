//! Turning admin requests into [`Command`]s: validation against the current image and the
//! decisions that must not be left to the state machine (placement, reassignment targets).
//!
//! These run on the broker that received the request (or on the active controller) against
//! its latest image; [`super::image::apply`] checks again against the image at the
//! command's place in the log, so a request prepared on a slightly stale image can still
//! be refused there, never applied half-way.
//!
//! ```text
//! CreateTopics ────────> create_topic ──────> CreateTopic{placed TopicRecord}
//! CreatePartitions ────> create_partitions ─> CreatePartitions{new replica lists}
//! ElectLeaders ────────> elect_leaders ─────> per-partition results + ElectLeaders
//! drain / scale-up ────> drain, rebalance ──> Reassign{target} per partition
//! ```
//!
//! Error codes and messages follow Kafka's (`ReplicationControlManager`,
//! `AdminUtils`), since clients show them to users.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::placement::place_replicas_with_leaders;
use super::{
    topic_config, BrokerRecord, Command, CommandError, MetadataImage, PartitionRecord,
    TopicConfigs, TopicRecord, NO_LEADER,
};

/// Most partitions one request may create. Kafka sets no limit, but every partition is
/// a record in every copy of the image and in the metadata log, so a request for a billion
/// would take the controller down instead of being refused.
pub const MAX_NEW_PARTITIONS: usize = 100_000;

/// Broker defaults that a `CreateTopics` request may leave to the broker (`-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicDefaults {
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
}

/// Prepares `CreateTopic`: validates the request and places its replicas evenly over the
/// brokers that can take them, counting what they already hold.
///
/// `partitions` and `replication_factor` are `-1` for the broker defaults; they must both
/// be `-1` when `manual_assignment` (one replica list per partition) is given.
#[allow(clippy::too_many_arguments)]
pub fn create_topic(
    image: &MetadataImage,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    manual_assignment: Option<Vec<Vec<i32>>>,
    configs: TopicConfigs,
    defaults: &TopicDefaults,
    topic_id: Uuid,
) -> Result<Command, CommandError> {
    super::validate_topic_name(name)
        .map_err(|reason| CommandError::new(ResponseError::InvalidTopicException, reason))?;
    if image.topics.contains_key(name) {
        return Err(CommandError::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        ));
    }
    let assignments = match manual_assignment {
        Some(manual) => {
            if partitions != -1 || replication_factor != -1 {
                return Err(CommandError::new(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. \
                     Both cannot be used at the same time.",
                ));
            }
            if manual.is_empty() {
                return Err(CommandError::new(
                    ResponseError::InvalidPartitions,
                    "Number of partitions was set to an invalid non-positive value.",
                ));
            }
            if manual.len() > MAX_NEW_PARTITIONS {
                return Err(too_many_partitions(manual.len()));
            }
            let rf = manual[0].len();
            check_manual(image, &manual, 0, rf)?;
            manual
        }
        None => {
            let partitions = if partitions == -1 {
                defaults.num_partitions
            } else {
                partitions
            };
            let replication_factor = if replication_factor == -1 {
                defaults.default_replication_factor
            } else {
                replication_factor
            };
            if partitions > 0 && partitions as usize > MAX_NEW_PARTITIONS {
                return Err(too_many_partitions(partitions as usize));
            }
            if partitions <= 0 {
                return Err(CommandError::new(
                    ResponseError::InvalidPartitions,
                    "Number of partitions was set to an invalid non-positive value.",
                ));
            }
            if replication_factor <= 0 {
                return Err(CommandError::new(
                    ResponseError::InvalidReplicationFactor,
                    "Replication factor must be larger than 0, or -1 to use the default value.",
                ));
            }
            place(
                image,
                partitions as usize,
                replication_factor as usize,
                image.partitions().count(),
            )?
        }
    };
    topic_config::validate_all(&configs)
        .map_err(|e| CommandError::new(ResponseError::InvalidConfig, e.to_string()))?;
    if let Some(value) = configs.get("min.insync.replicas") {
        if !value.trim().parse::<i64>().is_ok_and(|v| v >= 1) {
            return Err(CommandError::new(
                ResponseError::InvalidConfig,
                format!("invalid value {value:?} for topic config min.insync.replicas: it must be an integer of at least 1"),
            ));
        }
    }
    Ok(Command::CreateTopic {
        topic: TopicRecord {
            name: name.to_string(),
            topic_id,
            partitions: assignments.len() as i32,
            configs,
            assignments: assignments
                .into_iter()
                .map(PartitionRecord::unplaced)
                .collect(),
        },
    })
}

/// Prepares `CreatePartitions`: grows `name` to `count` partitions, placed like new topics
/// with the topic's replication factor, or as `manual` gives them (one replica list per
/// new partition).
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    count: i32,
    manual: Option<Vec<Vec<i32>>>,
) -> Result<Command, CommandError> {
    let topic = image.topics.get(name).ok_or_else(|| {
        CommandError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{name}' does not exist."),
        )
    })?;
    let current = topic.assignments.len();
    let count_usize = usize::try_from(count).unwrap_or(0);
    if count_usize < current {
        return Err(CommandError::new(
            ResponseError::InvalidPartitions,
            format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
        ));
    }
    if count_usize == current {
        return Err(CommandError::new(
            ResponseError::InvalidPartitions,
            format!("Topic already has {current} partitions."),
        ));
    }
    let additional = count_usize - current;
    if additional > MAX_NEW_PARTITIONS {
        return Err(too_many_partitions(additional));
    }
    let rf = topic
        .assignments
        .first()
        .map(|p| p.target_replicas().len())
        .unwrap_or(1);
    let new_assignments = match manual {
        Some(manual) => {
            if manual.len() != additional {
                return Err(CommandError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                        manual.len()
                    ),
                ));
            }
            check_manual(image, &manual, current, rf)?;
            manual
        }
        None => place(image, additional, rf, current)?,
    };
    Ok(Command::CreatePartitions {
        name: name.to_string(),
        new_assignments,
    })
}

/// The outcome of preparing an `ElectLeaders` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionPlan {
    /// The elections that can happen now; `None` when there are none.
    pub command: Option<Command>,
    /// Per requested partition, in request order: `None` when it is in `command`, or why
    /// not (Kafka's `ELECTION_NOT_NEEDED`, `PREFERRED_LEADER_NOT_AVAILABLE`,
    /// `ELIGIBLE_LEADERS_NOT_AVAILABLE`, `UNKNOWN_TOPIC_OR_PARTITION`).
    pub results: Vec<(String, i32, Option<CommandError>)>,
}

/// Prepares `ElectLeaders` (Kafka's API 43): `preferred` moves leadership to the first
/// replica; otherwise (Kafka's `UNCLEAN` type) a partition without a leader gets one, but
/// only from its ISR, since unclean election is not supported.
pub fn elect_leaders(
    image: &MetadataImage,
    partitions: &[(String, i32)],
    preferred: bool,
) -> ElectionPlan {
    let mut elect = Vec::new();
    let results = partitions
        .iter()
        .map(|(topic, index)| {
            let tp = format!("{topic}-{index}");
            let result = match image.partition(topic, *index) {
                None => Err(CommandError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("partition {tp} does not exist"),
                )),
                Some(p) if preferred => match p.replicas.first() {
                    Some(&first) if first == p.leader => Err(CommandError::new(
                        ResponseError::ElectionNotNeeded,
                        format!("preferred replica {first} already leads {tp}"),
                    )),
                    Some(&first) if p.isr.contains(&first) && image.is_eligible(first) => Ok(()),
                    _ => Err(CommandError::new(
                        ResponseError::PreferredLeaderNotAvailable,
                        format!(
                            "preferred replica of {tp} (replicas {:?}) is not in sync or not available",
                            p.replicas
                        ),
                    )),
                },
                Some(p) if p.leader != NO_LEADER => Err(CommandError::new(
                    ResponseError::ElectionNotNeeded,
                    format!("{tp} has leader {}", p.leader),
                )),
                Some(p) if p.isr.iter().any(|&r| image.is_eligible(r)) => Ok(()),
                Some(p) => Err(CommandError::new(
                    ResponseError::EligibleLeadersNotAvailable,
                    format!(
                        "no replica in the ISR {:?} of {tp} is available, and unclean leader election is not supported",
                        p.isr
                    ),
                )),
            };
            if result.is_ok() && !elect.contains(&(topic.clone(), *index)) {
                elect.push((topic.clone(), *index));
            }
            (topic.clone(), *index, result.err())
        })
        .collect();
    ElectionPlan {
        command: (!elect.is_empty()).then_some(Command::ElectLeaders {
            partitions: elect,
            preferred,
        }),
        results,
    }
}

/// Reassignments that move every replica off `broker_id` (before removing it from the
/// cluster), keeping each partition's replication factor.
///
/// A replacement is the least loaded eligible broker not already a replica, preferring
/// racks the partition does not use yet; it takes the drained broker's place in the list,
/// so preferred leaderships stay as evenly spread as placement made them. Fails when some
/// partition has no broker left to move to; nothing is returned then, so a drain is never
/// started half-way.
pub fn drain(image: &MetadataImage, broker_id: i32) -> Result<Vec<Command>, CommandError> {
    let mut load = replica_load(image);
    let racks = racks(image);
    let mut commands = Vec::new();
    for (topic, index, p) in image.partitions() {
        let mut target = p.target_replicas();
        let Some(position) = target.iter().position(|&r| r == broker_id) else {
            continue;
        };
        let others: Vec<i32> = target.iter().copied().filter(|&r| r != broker_id).collect();
        let replacement = image
            .brokers
            .values()
            .filter(|b| b.id != broker_id && !target.contains(&b.id) && image.is_eligible(b.id))
            .min_by_key(|b| {
                (
                    same_rack(&racks, &others, b.id),
                    load.get(&b.id).copied().unwrap_or(0),
                    b.id,
                )
            })
            .ok_or_else(|| {
                CommandError::new(
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "cannot move {topic}-{index} off broker {broker_id}: its replicas {target:?} \
                         need another eligible broker and there is none"
                    ),
                )
            })?
            .id;
        target[position] = replacement;
        if let Some(n) = load.get_mut(&broker_id) {
            *n -= 1;
        }
        *load.entry(replacement).or_default() += 1;
        commands.push(Command::Reassign {
            topic: topic.to_string(),
            partition: index,
            target: Some(target),
        });
    }
    Ok(commands)
}

/// Reassignments that even out the replica counts of the eligible brokers (after a
/// scale-up, or a drain that was undone), moving as few replicas as possible: each step
/// moves one replica from a most loaded broker to a least loaded one, until no two
/// brokers differ by more than one. Nothing when already even.
///
/// Partitions with a reassignment in progress are left alone (their targets still count),
/// and replicas on fenced brokers are not moved (that is [`drain`]'s job). With racks on
/// every eligible broker, a move never puts two replicas of a partition on one rack unless
/// they already were, so balance may stop short of one when racks differ in size.
pub fn rebalance(image: &MetadataImage) -> Vec<Command> {
    let live: Vec<i32> = image
        .brokers
        .keys()
        .copied()
        .filter(|&id| image.is_eligible(id))
        .collect();
    let racks = racks(image);
    let all_load = replica_load(image);
    let mut load: BTreeMap<i32, usize> = live
        .iter()
        .map(|id| (*id, all_load.get(id).copied().unwrap_or(0)))
        .collect();
    let mut targets: BTreeMap<(String, i32), Vec<i32>> = image
        .partitions()
        .filter(|(_, _, p)| !p.is_reassigning())
        .map(|(topic, index, p)| ((topic.to_string(), index), p.replicas.clone()))
        .collect();
    let mut moved: BTreeSet<(String, i32)> = BTreeSet::new();
    loop {
        let mut by_load: Vec<i32> = live.clone();
        by_load.sort_by_key(|id| (load[id], *id));
        // The first pair (most loaded source, least loaded destination) two apart with a
        // partition that can move; every move lowers the sum of squared loads, so this
        // ends.
        let step = by_load.iter().rev().find_map(|&from| {
            by_load
                .iter()
                .take_while(|&&to| load[&to] + 2 <= load[&from])
                .find_map(|&to| {
                    targets
                        .iter()
                        .find(|(_, replicas)| {
                            let others: Vec<i32> =
                                replicas.iter().copied().filter(|&r| r != from).collect();
                            replicas.contains(&from)
                                && !replicas.contains(&to)
                                && (same_rack(&racks, &others, to) == 0
                                    || racks.get(&to) == racks.get(&from))
                        })
                        .map(|(key, _)| (key.clone(), from, to))
                })
        });
        let Some((key, from, to)) = step else {
            break;
        };
        if let Some(replicas) = targets.get_mut(&key) {
            for r in replicas.iter_mut().filter(|r| **r == from) {
                *r = to;
            }
        }
        *load.entry(from).or_default() -= 1;
        *load.entry(to).or_default() += 1;
        moved.insert(key);
    }
    moved
        .into_iter()
        .filter_map(|key| {
            let target = targets.remove(&key)?;
            let current = &image.partition(&key.0, key.1)?.replicas;
            (*current != target).then_some(Command::Reassign {
                topic: key.0,
                partition: key.1,
                target: Some(target),
            })
        })
        .collect()
}

/// Replicas per broker, counting each partition's target replicas (a replica being
/// removed no longer counts, one being added does).
fn replica_load(image: &MetadataImage) -> BTreeMap<i32, usize> {
    let mut load = BTreeMap::new();
    for (_, _, p) in image.partitions() {
        for r in p.target_replicas() {
            *load.entry(r).or_default() += 1;
        }
    }
    load
}

/// Preferred leaderships (first target replica) per broker.
fn leader_load(image: &MetadataImage) -> BTreeMap<i32, usize> {
    let mut load = BTreeMap::new();
    for (_, _, p) in image.partitions() {
        if let Some(first) = p.target_replicas().first() {
            *load.entry(*first).or_default() += 1;
        }
    }
    load
}

/// Racks of the eligible brokers, when every one of them has a rack; otherwise empty
/// (no rack awareness, as Kafka does without `broker.rack` everywhere).
fn racks(image: &MetadataImage) -> BTreeMap<i32, String> {
    let eligible: Vec<&BrokerRecord> = image
        .brokers
        .values()
        .filter(|b| image.is_eligible(b.id))
        .collect();
    if eligible.iter().all(|b| b.rack.is_some()) {
        eligible
            .iter()
            .filter_map(|b| Some((b.id, b.rack.clone()?)))
            .collect()
    } else {
        BTreeMap::new()
    }
}

/// How many of `replicas` share `broker`'s rack (0 without rack awareness).
fn same_rack(racks: &BTreeMap<i32, String>, replicas: &[i32], broker: i32) -> usize {
    match racks.get(&broker) {
        Some(rack) => replicas
            .iter()
            .filter(|r| racks.get(r) == Some(rack))
            .count(),
        None => 0,
    }
}

fn place(
    image: &MetadataImage,
    partitions: usize,
    replication_factor: usize,
    start_partition: usize,
) -> Result<Vec<Vec<i32>>, CommandError> {
    let brokers: Vec<BrokerRecord> = image.brokers.values().cloned().collect();
    place_replicas_with_leaders(
        &brokers,
        &replica_load(image),
        &leader_load(image),
        partitions,
        replication_factor,
        start_partition,
    )
    .map_err(|message| CommandError::new(ResponseError::InvalidReplicationFactor, message))
}

/// Kafka's checks of a manual assignment: every partition has `replication_factor`
/// distinct registered brokers, at least one of which can lead now.
fn check_manual(
    image: &MetadataImage,
    manual: &[Vec<i32>],
    first_index: usize,
    replication_factor: usize,
) -> Result<(), CommandError> {
    let invalid =
        |message: String| CommandError::new(ResponseError::InvalidReplicaAssignment, message);
    for (i, replicas) in manual.iter().enumerate() {
        let index = first_index + i;
        if replicas.is_empty() {
            return Err(invalid(format!(
                "The manual partition assignment includes an empty replica list for partition {index}."
            )));
        }
        if replicas.len() != replication_factor {
            return Err(invalid(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {replication_factor} replica(s).",
                replicas.len()
            )));
        }
        for (j, r) in replicas.iter().enumerate() {
            if replicas[..j].contains(r) {
                return Err(invalid(format!(
                    "The manual partition assignment includes the broker {r} more than once for partition {index}."
                )));
            }
            if !image.brokers.contains_key(r) {
                return Err(invalid(format!(
                    "The manual partition assignment includes broker {r}, but no such broker is registered."
                )));
            }
        }
        if !replicas.iter().any(|&r| image.is_eligible(r)) {
            return Err(invalid(format!(
                "All brokers specified in the manual partition assignment for partition {index} are fenced or in controlled shutdown."
            )));
        }
    }
    Ok(())
}

fn too_many_partitions(requested: usize) -> CommandError {
    CommandError::new(
        ResponseError::InvalidPartitions,
        format!("{requested} new partitions requested; at most {MAX_NEW_PARTITIONS} can be created at once"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::image::apply;

    const DEFAULTS: TopicDefaults = TopicDefaults {
        num_partitions: 1,
        default_replication_factor: 1,
    };

    fn broker(id: i32, rack: Option<&str>) -> BrokerRecord {
        BrokerRecord {
            id,
            incarnation: Uuid::from_u128(id as u128 + 1),
            host: "127.0.0.1".into(),
            port: 9092 + id,
            rack: rack.map(str::to_string),
            rpc_addr: format!("127.0.0.1:{}", 9192 + id),
            fenced: true,
            shutting_down: false,
        }
    }

    fn add_broker(image: &mut MetadataImage, id: i32, rack: Option<&str>) {
        apply(
            image,
            &Command::RegisterBroker {
                broker: broker(id, rack),
            },
        )
        .unwrap();
        apply(image, &Command::UnfenceBroker { id }).unwrap();
    }

    fn cluster(brokers: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 0..brokers {
            add_broker(&mut image, id, None);
        }
        image
    }

    fn create(image: &mut MetadataImage, name: &str, partitions: i32, rf: i16) {
        let command = create_topic(
            image,
            name,
            partitions,
            rf,
            None,
            TopicConfigs::new(),
            &DEFAULTS,
            Uuid::from_u128(image.topics.len() as u128 + 1000),
        )
        .unwrap();
        apply(image, &command).unwrap();
    }

    fn code(result: Result<impl std::fmt::Debug, CommandError>) -> i16 {
        result.expect_err("refused").code
    }

    /// Applies reassignments and lets every adding replica catch up (as its leader would
    /// report with AlterPartition), so that each completes.
    fn apply_and_complete(image: &mut MetadataImage, commands: &[Command]) {
        for command in commands {
            apply(image, command).unwrap();
            let Command::Reassign {
                topic, partition, ..
            } = command
            else {
                panic!("not a reassignment: {command:?}");
            };
            let p = image.partition(topic, *partition).unwrap().clone();
            if p.is_reassigning() {
                let mut isr = p.isr.clone();
                isr.extend(&p.adding_replicas);
                apply(
                    image,
                    &Command::AlterPartition {
                        topic: topic.clone(),
                        partition: *partition,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        new_isr: isr,
                    },
                )
                .unwrap();
            }
            assert!(!image.partition(topic, *partition).unwrap().is_reassigning());
        }
    }

    fn load(image: &MetadataImage) -> BTreeMap<i32, usize> {
        let mut load: BTreeMap<i32, usize> = image.brokers.keys().map(|id| (*id, 0)).collect();
        for (_, _, p) in image.partitions() {
            for r in &p.replicas {
                *load.entry(*r).or_default() += 1;
            }
        }
        load
    }

    #[test]
    fn create_topic_places_evenly_and_uses_defaults() {
        let mut image = cluster(3);
        let defaults = TopicDefaults {
            num_partitions: 6,
            default_replication_factor: 2,
        };
        let command = create_topic(
            &image,
            "orders",
            -1,
            -1,
            None,
            [("retention.ms".to_string(), "1000".to_string())].into(),
            &defaults,
            Uuid::from_u128(7),
        )
        .unwrap();
        apply(&mut image, &command).unwrap();
        let topic = &image.topics["orders"];
        assert_eq!(topic.partitions, 6);
        assert_eq!(topic.configs["retention.ms"], "1000");
        assert!(topic.assignments.iter().all(|p| p.replicas.len() == 2));
        assert_eq!(
            load(&image).into_values().collect::<Vec<_>>(),
            vec![4, 4, 4]
        );
        // Single-partition topics take turns as preferred leaders.
        for name in ["a", "b", "c"] {
            create(&mut image, name, 1, 3);
        }
        let leaders: BTreeSet<i32> = ["a", "b", "c"]
            .iter()
            .map(|t| image.topics[*t].assignments[0].replicas[0])
            .collect();
        assert_eq!(leaders.len(), 3);
    }

    #[test]
    fn create_topic_refusals_use_kafka_codes() {
        let mut image = cluster(1);
        create(&mut image, "taken", 1, 1);
        let prepare = |name: &str, partitions, rf, manual, configs: &[(&str, &str)]| {
            create_topic(
                &image,
                name,
                partitions,
                rf,
                manual,
                configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                &DEFAULTS,
                Uuid::from_u128(99),
            )
        };
        assert_eq!(code(prepare("a/b", 1, 1, None, &[])), 17);
        assert_eq!(code(prepare("taken", 1, 1, None, &[])), 36);
        assert_eq!(code(prepare("t", 0, 1, None, &[])), 37);
        assert_eq!(code(prepare("t", i32::MAX, 1, None, &[])), 37);
        assert_eq!(code(prepare("t", 1, 0, None, &[])), 38);
        let too_many = prepare("t", 1, 3, None, &[]).unwrap_err();
        assert_eq!(too_many.code, 38);
        assert_eq!(
            too_many.message,
            "Replication factor: 3 larger than available brokers: 1."
        );
        assert_eq!(code(prepare("t", 1, 1, None, &[("no.such", "1")])), 40);
        assert_eq!(
            code(prepare("t", 1, 1, None, &[("min.insync.replicas", "0")])),
            40
        );
        assert!(prepare("t", 1, 1, None, &[("min.insync.replicas", "1")]).is_ok());
        assert_eq!(code(prepare("t", 2, -1, Some(vec![vec![0]]), &[])), 42);
        assert_eq!(code(prepare("t", -1, -1, Some(vec![vec![0, 0]]), &[])), 39);
        assert_eq!(code(prepare("t", -1, -1, Some(vec![vec![5]]), &[])), 39);
        assert_eq!(code(prepare("t", -1, -1, Some(vec![vec![]]), &[])), 39);
        let manual = prepare("t", -1, -1, Some(vec![vec![0], vec![0]]), &[]).unwrap();
        let Command::CreateTopic { topic } = &manual else {
            panic!("{manual:?}");
        };
        assert_eq!(topic.partitions, 2);
    }

    #[test]
    fn manual_assignments_must_agree_and_have_a_live_replica() {
        let mut image = cluster(3);
        let manual = |m: Vec<Vec<i32>>| {
            create_topic(
                &image,
                "t",
                -1,
                -1,
                Some(m),
                TopicConfigs::new(),
                &DEFAULTS,
                Uuid::from_u128(5),
            )
        };
        assert_eq!(code(manual(vec![vec![0, 1], vec![2]])), 39);
        assert!(manual(vec![vec![0, 1], vec![2, 0]]).is_ok());
        apply(&mut image, &Command::FenceBroker { id: 2 }).unwrap();
        let manual = |m: Vec<Vec<i32>>| {
            create_topic(
                &image,
                "t",
                -1,
                -1,
                Some(m),
                TopicConfigs::new(),
                &DEFAULTS,
                Uuid::from_u128(5),
            )
        };
        assert_eq!(code(manual(vec![vec![2]])), 39);
    }

    #[test]
    fn create_partitions_grows_with_the_topics_replication_factor() {
        let mut image = cluster(3);
        create(&mut image, "t", 2, 2);
        assert_eq!(code(create_partitions(&image, "nope", 3, None)), 3);
        assert_eq!(code(create_partitions(&image, "t", i32::MAX, None)), 37);
        let shrink = create_partitions(&image, "t", 1, None).unwrap_err();
        assert_eq!(shrink.code, 37);
        assert_eq!(
            shrink.message,
            "Topic currently has 2 partitions, which is higher than the requested 1."
        );
        assert_eq!(
            create_partitions(&image, "t", 2, None).unwrap_err().message,
            "Topic already has 2 partitions."
        );
        assert_eq!(
            code(create_partitions(&image, "t", 4, Some(vec![vec![0, 1]]))),
            39
        );
        assert_eq!(
            code(create_partitions(&image, "t", 3, Some(vec![vec![0]]))),
            39
        );
        let command = create_partitions(&image, "t", 5, None).unwrap();
        apply(&mut image, &command).unwrap();
        assert_eq!(image.topics["t"].partitions, 5);
        assert!(image.topics["t"]
            .assignments
            .iter()
            .all(|p| p.replicas.len() == 2));
        let counts: Vec<usize> = load(&image).into_values().collect();
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{counts:?}"
        );
        let command = create_partitions(&image, "t", 6, Some(vec![vec![2, 1]])).unwrap();
        apply(&mut image, &command).unwrap();
        assert_eq!(image.topics["t"].assignments[5].replicas, vec![2, 1]);
    }

    #[test]
    fn elect_leaders_reports_each_partition() {
        let mut image = cluster(3);
        create(&mut image, "t", 3, 2);
        let replicas: Vec<Vec<i32>> = image.topics["t"]
            .assignments
            .iter()
            .map(|p| p.replicas.clone())
            .collect();
        // Move t-0's leadership away from its preferred replica.
        let preferred = replicas[0][0];
        apply(&mut image, &Command::ControlledShutdown { id: preferred }).unwrap();
        apply(
            &mut image,
            &Command::RegisterBroker {
                broker: BrokerRecord {
                    incarnation: Uuid::from_u128(77),
                    ..broker(preferred, None)
                },
            },
        )
        .unwrap();
        apply(&mut image, &Command::UnfenceBroker { id: preferred }).unwrap();
        let requested = vec![
            ("t".to_string(), 0),
            ("t".to_string(), 1),
            ("nope".to_string(), 0),
        ];
        // The preferred replica is back but not in sync yet.
        let plan = elect_leaders(&image, &requested, true);
        assert_eq!(plan.results[0].2.as_ref().unwrap().code, 80);
        let p = image.partition("t", 0).unwrap().clone();
        apply(
            &mut image,
            &Command::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: p.replicas.clone(),
            },
        )
        .unwrap();
        let plan = elect_leaders(&image, &requested, true);
        let codes: Vec<Option<i16>> = plan
            .results
            .iter()
            .map(|(_, _, e)| e.as_ref().map(|e| e.code))
            .collect();
        let t1_preferred_leads = image.partition("t", 1).unwrap().leader == replicas[1][0];
        assert_eq!(codes[0], None);
        assert_eq!(codes[2], Some(3));
        if t1_preferred_leads {
            assert_eq!(codes[1], Some(84));
        }
        apply(&mut image, plan.command.as_ref().unwrap()).unwrap();
        assert_eq!(image.partition("t", 0).unwrap().leader, preferred);

        // The other type: only leaderless partitions, and only from the ISR.
        let plan = elect_leaders(&image, &requested[..1], false);
        assert_eq!(plan.results[0].2.as_ref().unwrap().code, 84);
        assert_eq!(plan.command, None);
    }

    #[test]
    fn drain_moves_every_replica_off_a_broker() {
        let mut image = cluster(4);
        create(&mut image, "a", 6, 3);
        create(&mut image, "b", 2, 2);
        let drained = 1;
        let commands = drain(&image, drained).unwrap();
        assert!(!commands.is_empty());
        apply_and_complete(&mut image, &commands);
        for (topic, index, p) in image.partitions() {
            assert!(!p.replicas.contains(&drained), "{topic}-{index}: {p:?}");
            assert!(!p.isr.contains(&drained));
            assert_ne!(p.leader, drained);
            let rf = if topic == "a" { 3 } else { 2 };
            assert_eq!(p.replicas.len(), rf);
        }
        let load = load(&image);
        assert_eq!(load[&drained], 0);
        let rest: Vec<usize> = [0, 2, 3].iter().map(|id| load[id]).collect();
        assert!(
            rest.iter().max().unwrap() - rest.iter().min().unwrap() <= 1,
            "{rest:?}"
        );
        assert!(drain(&image, drained).unwrap().is_empty());
    }

    #[test]
    fn drain_refuses_when_the_replication_factor_cannot_be_kept() {
        let mut image = cluster(3);
        create(&mut image, "a", 2, 1);
        create(&mut image, "b", 1, 3);
        assert_eq!(code(drain(&image, 0)), 38);
        apply(&mut image, &Command::FenceBroker { id: 2 }).unwrap();
        assert_eq!(code(drain(&image, 0)), 38);
    }

    #[test]
    fn drain_prefers_racks_the_partition_lacks() {
        let mut image = MetadataImage::default();
        for (id, rack) in [(0, "a"), (1, "b"), (2, "a"), (3, "b"), (4, "a")] {
            add_broker(&mut image, id, Some(rack));
        }
        let manual = create_topic(
            &image,
            "t",
            -1,
            -1,
            Some(vec![vec![1, 0]]),
            TopicConfigs::new(),
            &DEFAULTS,
            Uuid::from_u128(3),
        )
        .unwrap();
        apply(&mut image, &manual).unwrap();
        // 2 and 4 are on rack a, with 0; 3 is on rack b and takes 1's place.
        assert_eq!(
            drain(&image, 1).unwrap(),
            vec![Command::Reassign {
                topic: "t".into(),
                partition: 0,
                target: Some(vec![3, 0]),
            }]
        );
    }

    #[test]
    fn rebalance_evens_out_a_scale_up_with_few_moves() {
        for (before, added, partitions, rf) in [(3, 1, 8, 2), (3, 2, 12, 3), (2, 1, 5, 1)] {
            let mut image = cluster(before);
            create(&mut image, "t", partitions, rf);
            create(&mut image, "u", 3, rf);
            assert!(rebalance(&image).is_empty(), "already even");
            for id in before..before + added {
                add_broker(&mut image, id, None);
            }
            let start = load(&image);
            let commands = rebalance(&image);
            // The fewest moves that can even out the counts: every replica above the
            // ceiling of the average must leave, every one missing below the floor must
            // arrive, and one move does at most one of each.
            let total: usize = start.values().sum();
            let (floor, ceil) = (total / start.len(), total.div_ceil(start.len()));
            let excess: usize = start.values().map(|&n| n.saturating_sub(ceil)).sum();
            let deficit: usize = start.values().map(|&n| floor.saturating_sub(n)).sum();
            let old = image.clone();
            apply_and_complete(&mut image, &commands);
            let moved: usize = image
                .partitions()
                .map(|(topic, index, p)| {
                    let was = &old.partition(topic, index).unwrap().replicas;
                    p.replicas.iter().filter(|r| !was.contains(r)).count()
                })
                .sum();
            assert_eq!(moved, excess.max(deficit), "{commands:?}");
            let counts: Vec<usize> = load(&image).into_values().collect();
            assert!(
                counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
                "{counts:?}"
            );
            assert!(rebalance(&image).is_empty());
        }
    }

    #[test]
    fn rebalance_keeps_racks_apart() {
        let mut image = MetadataImage::default();
        for (id, rack) in [(0, "a"), (1, "b")] {
            add_broker(&mut image, id, Some(rack));
        }
        create(&mut image, "t", 4, 2);
        for (id, rack) in [(2, "a"), (3, "b")] {
            add_broker(&mut image, id, Some(rack));
        }
        let commands = rebalance(&image);
        apply_and_complete(&mut image, &commands);
        let racks = ["a", "b", "a", "b"];
        for (_, _, p) in image.partitions() {
            assert_ne!(
                racks[p.replicas[0] as usize], racks[p.replicas[1] as usize],
                "{p:?}"
            );
        }
        assert_eq!(
            load(&image).into_values().collect::<Vec<_>>(),
            vec![2, 2, 2, 2]
        );
    }
}
