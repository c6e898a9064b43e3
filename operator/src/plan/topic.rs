//! Topic planning: a `Topic`'s spec and what the brokers report of the topic -> the admin
//! requests that bring the topic to the spec, and what stands in the way.
//!
//! ```text
//! spec + ObservedTopic (None: no such topic) + live brokers
//!    -> TopicPlan { actions: [Create | CreatePartitions | AlterConfigs | Reassign], blockers }
//! ```
//!
//! Pure: no I/O, so every rule is a unit test below. The controller carries out the actions
//! in order and turns the blockers into status conditions.

use std::collections::{BTreeMap, BTreeSet};

use crate::crd::topic::TopicSpec;

/// What the brokers report of an existing topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTopic {
    /// The topic id.
    pub topic_id: String,
    /// Each partition, in partition order.
    pub partitions: Vec<ObservedPartition>,
    /// Configs set on the topic itself (DescribeConfigs source `DYNAMIC_TOPIC_CONFIG`), not
    /// the broker defaults it inherits.
    pub config_overrides: BTreeMap<String, String>,
    /// Partitions of the topic with a reassignment in progress.
    pub reassigning: BTreeSet<i32>,
}

/// One partition of an existing topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPartition {
    /// The partition number.
    pub partition: i32,
    /// Its leader, if it has one.
    pub leader: Option<i32>,
    /// Its replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Its in-sync replicas.
    pub isr: Vec<i32>,
}

/// One admin request to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicAction {
    /// CreateTopics. `replication_factor: None` takes the brokers' default.
    Create {
        partitions: i32,
        replication_factor: Option<i32>,
        configs: BTreeMap<String, String>,
    },
    /// CreatePartitions up to `total`.
    CreatePartitions { total: i32 },
    /// IncrementalAlterConfigs: set these, remove those overrides.
    AlterConfigs {
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// AlterPartitionReassignments: these partitions get these replicas.
    Reassign { moves: Vec<(i32, Vec<i32>)> },
}

/// Why (part of) the spec cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// The topic has more partitions than the spec asks for; Kafka cannot remove them.
    PartitionDecreaseRejected { spec: i32, actual: i32 },
    /// More replicas asked for than there are brokers.
    ReplicationFactorTooHigh { spec: i32, brokers: usize },
    /// A config value is not a string, a number or a boolean.
    InvalidConfig { key: String },
}

impl Blocker {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Blocker::PartitionDecreaseRejected { .. } => "PartitionDecreaseRejected",
            Blocker::ReplicationFactorTooHigh { .. } => "ReplicationFactorTooHigh",
            Blocker::InvalidConfig { .. } => "InvalidConfig",
        }
    }

    /// The condition message.
    pub fn message(&self) -> String {
        match self {
            Blocker::PartitionDecreaseRejected { spec, actual } => format!(
                "spec.partitions is {spec} but the topic has {actual} partitions, and Kafka cannot remove partitions: set spec.partitions to {actual} or more"
            ),
            Blocker::ReplicationFactorTooHigh { spec, brokers } => format!(
                "spec.replicationFactor is {spec} but the cluster has {brokers} live brokers"
            ),
            Blocker::InvalidConfig { key } => format!(
                "config {key} is a list or an object: a topic config is a string, a number or a boolean"
            ),
        }
    }
}

/// The requests to make, in order, and what blocks the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicPlan {
    pub actions: Vec<TopicAction>,
    pub blockers: Vec<Blocker>,
    /// A reassignment of this topic is still moving replicas: wait for it.
    pub reassignment_in_progress: bool,
}

impl TopicPlan {
    /// Nothing to do and nothing in the way: the topic matches the spec.
    pub fn is_converged(&self) -> bool {
        self.actions.is_empty() && self.blockers.is_empty() && !self.reassignment_in_progress
    }
}

/// The spec's configs as Kafka strings, or the first key whose value is not a scalar.
pub fn desired_configs(spec: &TopicSpec) -> Result<BTreeMap<String, String>, Blocker> {
    spec.config
        .iter()
        .map(|(k, v)| match v.to_kafka() {
            Some(value) => Ok((k.clone(), value)),
            None => Err(Blocker::InvalidConfig { key: k.clone() }),
        })
        .collect()
}

/// Plans the requests that bring the topic to `spec`.
///
/// `brokers` are the ids of the live (unfenced) brokers; they matter only to create a topic
/// with a replication factor or to change one, and the controller leaves them out
/// otherwise. An existing topic of the same name is adopted: it is brought to the spec like
/// one the operator created.
pub fn plan(spec: &TopicSpec, observed: Option<&ObservedTopic>, brokers: &[i32]) -> TopicPlan {
    let mut plan = TopicPlan::default();
    let configs = match desired_configs(spec) {
        Ok(configs) => configs,
        Err(blocker) => {
            plan.blockers.push(blocker);
            return plan;
        }
    };
    let rf_too_high = spec
        .replication_factor
        .filter(|&rf| rf as usize > brokers.len())
        .map(|rf| Blocker::ReplicationFactorTooHigh {
            spec: rf,
            brokers: brokers.len(),
        });

    let Some(observed) = observed else {
        match rf_too_high {
            Some(blocker) => plan.blockers.push(blocker),
            None => plan.actions.push(TopicAction::Create {
                partitions: spec.partitions,
                replication_factor: spec.replication_factor,
                configs,
            }),
        }
        return plan;
    };

    let actual = observed.partitions.len() as i32;
    if spec.partitions < actual {
        plan.blockers.push(Blocker::PartitionDecreaseRejected {
            spec: spec.partitions,
            actual,
        });
    } else if spec.partitions > actual {
        plan.actions.push(TopicAction::CreatePartitions {
            total: spec.partitions,
        });
    }

    let set: BTreeMap<String, String> = configs
        .iter()
        .filter(|(k, v)| observed.config_overrides.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = observed
        .config_overrides
        .keys()
        .filter(|k| !configs.contains_key(*k))
        .cloned()
        .collect();
    if !set.is_empty() || !delete.is_empty() {
        plan.actions.push(TopicAction::AlterConfigs { set, delete });
    }

    if !observed.reassigning.is_empty() {
        plan.reassignment_in_progress = true;
    } else if let Some(rf) = spec.replication_factor {
        let wrong = observed
            .partitions
            .iter()
            .any(|p| p.replicas.len() != rf as usize);
        if wrong {
            match rf_too_high {
                Some(blocker) => plan.blockers.push(blocker),
                None => {
                    let moves = replica_moves(observed, rf as usize, brokers);
                    if !moves.is_empty() {
                        plan.actions.push(TopicAction::Reassign { moves });
                    }
                }
            }
        }
    }
    plan
}

/// New replica lists for the partitions whose replica count is not `rf`.
///
/// Fewer replicas: keep the in-sync ones first (the leader stays), in their current order.
/// More replicas: keep the current ones (so the preferred leader does not move) and add the
/// live brokers that hold the fewest of this topic's replicas, on a tie the next one after
/// the preferred leader in broker id order.
pub fn replica_moves(observed: &ObservedTopic, rf: usize, brokers: &[i32]) -> Vec<(i32, Vec<i32>)> {
    let mut load: BTreeMap<i32, usize> = brokers.iter().map(|&b| (b, 0)).collect();
    for p in &observed.partitions {
        for r in &p.replicas {
            *load.entry(*r).or_default() += 1;
        }
    }
    let mut moves = Vec::new();
    for p in &observed.partitions {
        if p.replicas.len() == rf {
            continue;
        }
        let target = if p.replicas.len() > rf {
            let mut keep: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| Some(*r) == p.leader)
                .chain(
                    p.replicas
                        .iter()
                        .copied()
                        .filter(|r| Some(*r) != p.leader && p.isr.contains(r)),
                )
                .chain(
                    p.replicas
                        .iter()
                        .copied()
                        .filter(|r| Some(*r) != p.leader && !p.isr.contains(r)),
                )
                .take(rf)
                .collect();
            keep.sort_by_key(|r| p.replicas.iter().position(|x| x == r));
            for r in p.replicas.iter().filter(|r| !keep.contains(r)) {
                if let Some(n) = load.get_mut(r) {
                    *n = n.saturating_sub(1);
                }
            }
            keep
        } else {
            let mut replicas = p.replicas.clone();
            let mut ring: Vec<i32> = brokers.to_vec();
            ring.sort_unstable();
            let start = p
                .replicas
                .first()
                .and_then(|first| ring.iter().position(|b| b == first))
                .unwrap_or(0);
            // Distance after the preferred leader on the ring of broker ids: the tie-break
            // that spreads followers the way Kafka's placement does.
            let distance = |b: i32| {
                let i = ring.iter().position(|x| *x == b).unwrap_or(0);
                (i + ring.len() - start) % ring.len().max(1)
            };
            while replicas.len() < rf {
                let Some((&next, _)) = load
                    .iter()
                    .filter(|(b, _)| brokers.contains(b) && !replicas.contains(b))
                    .min_by_key(|(b, n)| (**n, distance(**b)))
                else {
                    break;
                };
                replicas.push(next);
                *load.entry(next).or_default() += 1;
            }
            replicas
        };
        if target != p.replicas {
            moves.push((p.partition, target));
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::topic::{ConfigValue, DeletionPolicy};
    use crate::crd::ClusterRef;

    fn spec(partitions: i32, rf: Option<i32>, config: &[(&str, ConfigValue)]) -> TopicSpec {
        TopicSpec {
            cluster_ref: ClusterRef {
                name: "main".into(),
            },
            topic_name: None,
            partitions,
            replication_factor: rf,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            deletion_policy: DeletionPolicy::Delete,
        }
    }

    fn observed(replicas: &[&[i32]], overrides: &[(&str, &str)]) -> ObservedTopic {
        ObservedTopic {
            topic_id: "id".into(),
            partitions: replicas
                .iter()
                .enumerate()
                .map(|(i, r)| ObservedPartition {
                    partition: i as i32,
                    leader: r.first().copied(),
                    replicas: r.to_vec(),
                    isr: r.to_vec(),
                })
                .collect(),
            config_overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            reassigning: BTreeSet::new(),
        }
    }

    fn number(n: i64) -> ConfigValue {
        ConfigValue(serde_json::json!(n))
    }

    #[test]
    fn missing_topic_is_created_with_its_configs_as_strings() {
        let s = spec(
            3,
            Some(2),
            &[
                ("retention.ms", number(86_400_000)),
                ("cleanup.policy", "delete".into()),
                (
                    "unclean.leader.election.enable",
                    ConfigValue(serde_json::json!(false)),
                ),
            ],
        );
        let plan = plan(&s, None, &[0, 1, 2]);
        assert_eq!(
            plan.actions,
            vec![TopicAction::Create {
                partitions: 3,
                replication_factor: Some(2),
                configs: [
                    ("cleanup.policy", "delete"),
                    ("retention.ms", "86400000"),
                    ("unclean.leader.election.enable", "false")
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            }]
        );
        assert!(plan.blockers.is_empty());
    }

    #[test]
    fn replication_factor_above_the_broker_count_blocks_creation() {
        let plan = plan(&spec(1, Some(5), &[]), None, &[0, 1, 2]);
        assert!(plan.actions.is_empty());
        assert_eq!(
            plan.blockers,
            vec![Blocker::ReplicationFactorTooHigh {
                spec: 5,
                brokers: 3
            }]
        );
        assert!(plan.blockers[0].message().contains("3 live brokers"));
    }

    #[test]
    fn matching_topic_needs_nothing() {
        let s = spec(2, Some(3), &[("retention.ms", number(1000))]);
        let o = observed(&[&[0, 1, 2], &[1, 2, 0]], &[("retention.ms", "1000")]);
        let plan = plan(&s, Some(&o), &[0, 1, 2]);
        assert!(plan.is_converged(), "{plan:?}");
    }

    #[test]
    fn more_partitions_in_the_spec_adds_partitions() {
        let o = observed(&[&[0], &[1]], &[]);
        let plan = plan(&spec(5, None, &[]), Some(&o), &[0, 1]);
        assert_eq!(
            plan.actions,
            vec![TopicAction::CreatePartitions { total: 5 }]
        );
    }

    #[test]
    fn fewer_partitions_in_the_spec_is_rejected_but_configs_still_apply() {
        let o = observed(&[&[0], &[1], &[0]], &[]);
        let plan = plan(
            &spec(2, None, &[("retention.ms", number(5))]),
            Some(&o),
            &[0, 1],
        );
        assert_eq!(
            plan.blockers,
            vec![Blocker::PartitionDecreaseRejected { spec: 2, actual: 3 }]
        );
        assert_eq!(
            plan.actions,
            vec![TopicAction::AlterConfigs {
                set: [("retention.ms".to_string(), "5".to_string())].into(),
                delete: vec![]
            }]
        );
    }

    #[test]
    fn drifted_and_foreign_configs_are_put_back() {
        let s = spec(
            1,
            None,
            &[
                ("retention.ms", number(1000)),
                ("segment.bytes", number(1 << 20)),
            ],
        );
        let o = observed(
            &[&[0]],
            &[
                ("retention.ms", "999"),
                ("segment.bytes", "1048576"),
                ("max.message.bytes", "10"),
            ],
        );
        let plan = plan(&s, Some(&o), &[0]);
        assert_eq!(
            plan.actions,
            vec![TopicAction::AlterConfigs {
                set: [("retention.ms".to_string(), "1000".to_string())].into(),
                delete: vec!["max.message.bytes".to_string()]
            }]
        );
    }

    #[test]
    fn a_list_as_a_config_value_is_invalid_and_nothing_is_done() {
        let s = spec(
            1,
            None,
            &[("retention.ms", ConfigValue(serde_json::json!([1])))],
        );
        let plan = plan(&s, None, &[0]);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.blockers[0].reason(), "InvalidConfig");
        assert!(plan.blockers[0].message().contains("retention.ms"));
    }

    #[test]
    fn raising_the_replication_factor_adds_the_least_loaded_brokers() {
        let o = observed(&[&[0], &[1], &[2]], &[]);
        let plan = plan(&spec(3, Some(2), &[]), Some(&o), &[0, 1, 2]);
        assert_eq!(
            plan.actions,
            vec![TopicAction::Reassign {
                moves: vec![(0, vec![0, 1]), (1, vec![1, 2]), (2, vec![2, 0])]
            }]
        );
    }

    #[test]
    fn lowering_the_replication_factor_keeps_the_leader_and_in_sync_replicas() {
        let mut o = observed(&[&[2, 0, 1]], &[]);
        o.partitions[0].leader = Some(0);
        o.partitions[0].isr = vec![0, 1];
        let plan = plan(&spec(1, Some(2), &[]), Some(&o), &[0, 1, 2]);
        assert_eq!(
            plan.actions,
            vec![TopicAction::Reassign {
                moves: vec![(0, vec![0, 1])]
            }]
        );
    }

    #[test]
    fn a_reassignment_in_progress_is_waited_for() {
        let mut o = observed(&[&[0, 1]], &[]);
        o.reassigning.insert(0);
        let plan = plan(&spec(1, Some(3), &[]), Some(&o), &[0, 1, 2]);
        assert!(plan.actions.is_empty());
        assert!(plan.reassignment_in_progress);
        assert!(!plan.is_converged());
    }

    #[test]
    fn replication_factor_too_high_for_an_existing_topic_blocks_only_the_reassignment() {
        let o = observed(&[&[0]], &[]);
        let plan = plan(&spec(2, Some(4), &[]), Some(&o), &[0, 1]);
        assert_eq!(
            plan.actions,
            vec![TopicAction::CreatePartitions { total: 2 }]
        );
        assert_eq!(plan.blockers[0].reason(), "ReplicationFactorTooHigh");
    }
}
