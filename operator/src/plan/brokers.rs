//! Broker planning for a managed `Cluster`: how many pods the StatefulSet runs, which
//! partition replicas move when brokers come and go, and which pod restarts next in a roll.
//!
//! ```text
//! spec.brokers + StatefulSet replicas + ObservedCluster
//!    -> ScalePlan { statefulset_replicas, step: Settled | AwaitBrokers | Reassign | AwaitReassignments | Refused }
//! desired pod-template hash + ObservedPods + ObservedCluster
//!    -> RollStep { Settled | Wait(why) | Restart(ordinal) }
//! ```
//!
//! Scale up: the StatefulSet grows at once; when every new broker has registered, replicas
//! move onto them until no broker holds more than one replica over the least loaded.
//! Scale down: the StatefulSet keeps its pods until the brokers beyond the new count hold
//! no replica (their replicas move to the remaining brokers first), then shrinks; refused
//! when the remaining brokers cannot hold a topic's replication factor, or would remove a
//! voter of the metadata quorum.
//! Roll: one pod at a time, only when every pod is ready and no partition is
//! under-replicated (the last restarted broker is back in every ISR); the active controller
//! last, so the quorum changes leader once.
//!
//! Pure: no I/O, so every rule is a unit test below. The cluster controller carries the
//! steps out (reassignments through the admin API, pod deletions for the roll).

use std::collections::{BTreeMap, BTreeSet};

use super::topic::ObservedPartition;

/// What the brokers report of the cluster as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedCluster {
    /// The registered, unfenced brokers.
    pub live_brokers: BTreeSet<i32>,
    /// Every registered broker, fenced ones included.
    pub registered_brokers: BTreeSet<i32>,
    /// Every partition of every topic (internal ones included), by topic name.
    pub topics: BTreeMap<String, Vec<ObservedPartition>>,
    /// Partitions with a reassignment under way.
    pub reassigning: usize,
    /// The active controller, if one is known.
    pub active_controller: Option<i32>,
}

impl ObservedCluster {
    /// Partitions whose ISR is smaller than their replica set.
    pub fn under_replicated(&self) -> usize {
        self.topics
            .values()
            .flatten()
            .filter(|p| p.isr.len() < p.replicas.len())
            .count()
    }

    /// How many replicas each broker of `brokers` holds (0 for none).
    fn load(&self, brokers: &BTreeSet<i32>) -> BTreeMap<i32, usize> {
        let mut load: BTreeMap<i32, usize> = brokers.iter().map(|&b| (b, 0)).collect();
        for p in self.topics.values().flatten() {
            for r in &p.replicas {
                if let Some(n) = load.get_mut(r) {
                    *n += 1;
                }
            }
        }
        load
    }
}

/// One partition's new replica list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

/// What to do next about the broker count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleStep {
    /// The brokers match the spec and the replicas are spread.
    Settled,
    /// Brokers the StatefulSet runs that have not registered (or are fenced) yet.
    AwaitBrokers(Vec<i32>),
    /// Move these replicas (AlterPartitionReassignments).
    Reassign(Vec<Move>),
    /// Reassignments are still copying data.
    AwaitReassignments(usize),
    /// The StatefulSet shrinks (or has shrunk); these brokers beyond it are registered and are
    /// unregistered (UnregisterBroker) once fenced, so Metadata stops listing them.
    Unregister(Vec<i32>),
    /// The spec cannot be carried out; the StatefulSet stays as it is.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// The StatefulSet's replica count and the next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePlan {
    pub statefulset_replicas: i32,
    pub step: ScaleStep,
}

/// Plans the next step from `current` StatefulSet replicas to `desired` brokers. Broker ids
/// are the pod ordinals `0..replicas`; the voters are `0..voters`.
pub fn plan_scale(
    desired: i32,
    current: i32,
    voters: i32,
    observed: &ObservedCluster,
) -> ScalePlan {
    let stay = |step| ScalePlan {
        statefulset_replicas: current,
        step,
    };
    if desired < current {
        if desired < voters {
            return stay(ScaleStep::Refused {
                reason: "VotersCannotBeRemoved",
                message: format!(
                    "brokers {desired}..{} would be removed, but brokers 0..{} are the voters \
                     of the metadata quorum",
                    current - 1,
                    voters - 1
                ),
            });
        }
        if let Some((topic, rf)) = observed
            .topics
            .iter()
            .map(|(t, ps)| (t, ps.iter().map(|p| p.replicas.len()).max().unwrap_or(0)))
            .filter(|(_, rf)| *rf > desired as usize)
            .max_by_key(|(_, rf)| *rf)
        {
            return stay(ScaleStep::Refused {
                reason: "ReplicationFactorTooHigh",
                message: format!(
                    "topic {topic} has {rf} replicas per partition, more than the {desired} \
                     brokers that would remain"
                ),
            });
        }
        let remaining: BTreeSet<i32> = (0..desired).collect();
        if let Some(step) = await_brokers(&remaining, observed) {
            return stay(step);
        }
        if observed.reassigning > 0 {
            return stay(ScaleStep::AwaitReassignments(observed.reassigning));
        }
        let moves = drain_moves(observed, &remaining);
        if !moves.is_empty() {
            return stay(ScaleStep::Reassign(moves));
        }
        // Nothing left on the brokers to remove: the StatefulSet may shrink; the scaling is
        // done once they are unregistered too.
        let leaving = registered_beyond(observed, desired);
        return ScalePlan {
            statefulset_replicas: desired,
            step: if leaving.is_empty() {
                ScaleStep::Settled
            } else {
                ScaleStep::Unregister(leaving)
            },
        };
    }
    let grown = ScalePlan {
        statefulset_replicas: desired,
        step: ScaleStep::Settled,
    };
    let all: BTreeSet<i32> = (0..desired).collect();
    if let Some(step) = await_brokers(&all, observed) {
        return ScalePlan { step, ..grown };
    }
    if observed.reassigning > 0 {
        return ScalePlan {
            step: ScaleStep::AwaitReassignments(observed.reassigning),
            ..grown
        };
    }
    let moves = balance_moves(observed, &all);
    if moves.is_empty() {
        // Brokers of a finished scale-down (or of pods removed by hand) left registered.
        let gone = registered_beyond(observed, desired);
        if gone.is_empty() {
            grown
        } else {
            ScalePlan {
                step: ScaleStep::Unregister(gone),
                ..grown
            }
        }
    } else {
        ScalePlan {
            step: ScaleStep::Reassign(moves),
            ..grown
        }
    }
}

/// The registered brokers (fenced or not) whose ids are `brokers` or above: beyond the
/// StatefulSet of `brokers` pods.
fn registered_beyond(observed: &ObservedCluster, brokers: i32) -> Vec<i32> {
    observed
        .registered_brokers
        .range(brokers..)
        .copied()
        .collect()
}

fn await_brokers(brokers: &BTreeSet<i32>, observed: &ObservedCluster) -> Option<ScaleStep> {
    let missing: Vec<i32> = brokers
        .iter()
        .copied()
        .filter(|b| !observed.live_brokers.contains(b))
        .collect();
    (!missing.is_empty()).then_some(ScaleStep::AwaitBrokers(missing))
}

/// Replicas on brokers outside `remaining` move to the least loaded remaining broker that
/// does not hold the partition yet, in place, so a preferred leader being drained hands its
/// place to the replacement and the other replicas keep their order.
fn drain_moves(observed: &ObservedCluster, remaining: &BTreeSet<i32>) -> Vec<Move> {
    let mut load = observed.load(remaining);
    let mut moves = Vec::new();
    for (topic, partitions) in &observed.topics {
        for p in partitions {
            if p.replicas.iter().all(|r| remaining.contains(r)) {
                continue;
            }
            let mut replicas = p.replicas.clone();
            for slot in 0..replicas.len() {
                if remaining.contains(&replicas[slot]) {
                    continue;
                }
                let Some((&to, _)) = load
                    .iter()
                    .filter(|(b, _)| !replicas.contains(b))
                    .min_by_key(|(b, n)| (**n, **b))
                else {
                    break; // Not enough brokers: refused before this point.
                };
                replicas[slot] = to;
                *load.entry(to).or_default() += 1;
            }
            moves.push(Move {
                topic: topic.clone(),
                partition: p.partition,
                replicas,
            });
        }
    }
    moves
}

/// Balances each topic on its own, so that every topic spreads over new brokers (as Kafka
/// places each topic's replicas across the brokers), and the brokers' totals follow.
fn balance_moves(observed: &ObservedCluster, brokers: &BTreeSet<i32>) -> Vec<Move> {
    observed
        .topics
        .iter()
        .flat_map(|(topic, partitions)| {
            let one = ObservedCluster {
                topics: BTreeMap::from([(topic.clone(), partitions.clone())]),
                ..ObservedCluster::default()
            };
            balance_topic(&one, brokers)
        })
        .collect()
}

/// Moves replicas of `observed`'s topic from the most to the least loaded brokers until no
/// broker holds more than one replica above another. Each move replaces one replica of one
/// partition in place; a partition's preferred leader is replaced only when no follower can
/// move.
fn balance_topic(observed: &ObservedCluster, brokers: &BTreeSet<i32>) -> Vec<Move> {
    let mut load = observed.load(brokers);
    let mut target: BTreeMap<(String, i32), Vec<i32>> = BTreeMap::new();
    let current = |t: &BTreeMap<(String, i32), Vec<i32>>, topic: &str, p: &ObservedPartition| {
        t.get(&(topic.to_string(), p.partition))
            .cloned()
            .unwrap_or_else(|| p.replicas.clone())
    };
    while let (Some((&max_b, &max_n)), Some((&min_b, &min_n))) = (
        load.iter()
            .max_by_key(|(b, n)| (**n, std::cmp::Reverse(**b))),
        load.iter().min_by_key(|(b, n)| (**n, **b)),
    ) {
        if max_n <= min_n + 1 {
            break;
        }
        // A partition with a replica on `max_b` and none on `min_b`: a follower first.
        let mut chosen: Option<(String, i32, Vec<i32>)> = None;
        'find: for follower_pass in [true, false] {
            for (topic, partitions) in &observed.topics {
                for p in partitions {
                    let replicas = current(&target, topic, p);
                    let Some(slot) = replicas.iter().position(|r| *r == max_b) else {
                        continue;
                    };
                    if replicas.contains(&min_b) || (follower_pass && slot == 0) {
                        continue;
                    }
                    let mut next = replicas.clone();
                    next[slot] = min_b;
                    chosen = Some((topic.clone(), p.partition, next));
                    break 'find;
                }
            }
        }
        let Some((topic, partition, replicas)) = chosen else {
            break;
        };
        *load.get_mut(&max_b).expect("loaded broker") -= 1;
        *load.get_mut(&min_b).expect("loaded broker") += 1;
        target.insert((topic, partition), replicas);
    }
    target
        .into_iter()
        .filter(|((topic, partition), replicas)| {
            observed.topics[topic]
                .iter()
                .find(|p| p.partition == *partition)
                .is_some_and(|p| &p.replicas != replicas)
        })
        .map(|((topic, partition), replicas)| Move {
            topic,
            partition,
            replicas,
        })
        .collect()
}

/// One broker pod as the StatefulSet runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPod {
    /// The pod's ordinal, which is its broker id.
    pub ordinal: i32,
    /// The configuration hash its template carried when it was created.
    pub config_hash: Option<String>,
    /// Its Ready condition.
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
}

/// What a roll does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollStep {
    /// Every pod runs the desired configuration.
    Settled,
    /// A pod must be restarted, but not yet; the reason, for the status.
    Wait(String),
    /// Delete this pod (SIGTERM: a controlled shutdown moves its leaderships first); the
    /// StatefulSet re-creates it with the new template.
    Restart(i32),
}

/// The next step of a roll to `desired_hash`.
pub fn plan_roll(desired_hash: &str, pods: &[ObservedPod], observed: &ObservedCluster) -> RollStep {
    let stale: Vec<&ObservedPod> = pods
        .iter()
        .filter(|p| p.config_hash.as_deref() != Some(desired_hash))
        .collect();
    if stale.is_empty() {
        return RollStep::Settled;
    }
    if let Some(p) = pods.iter().find(|p| p.terminating || !p.ready) {
        return RollStep::Wait(format!("broker {} is not ready", p.ordinal));
    }
    if let Some(b) = pods
        .iter()
        .map(|p| p.ordinal)
        .find(|b| !observed.live_brokers.contains(b))
    {
        return RollStep::Wait(format!("broker {b} is not registered with the controller"));
    }
    let under = observed.under_replicated();
    if under > 0 {
        return RollStep::Wait(format!(
            "{under} partitions are under-replicated; waiting for every replica to be back in sync"
        ));
    }
    if observed.reassigning > 0 {
        return RollStep::Wait(format!(
            "{} partition reassignments are under way",
            observed.reassigning
        ));
    }
    let next = stale
        .iter()
        .filter(|p| Some(p.ordinal) != observed.active_controller)
        .map(|p| p.ordinal)
        .min()
        .unwrap_or_else(|| stale[0].ordinal);
    RollStep::Restart(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(partition: i32, replicas: &[i32], isr: &[i32]) -> ObservedPartition {
        ObservedPartition {
            partition,
            leader: replicas.first().copied(),
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
        }
    }

    fn cluster(live: &[i32], topics: &[(&str, Vec<ObservedPartition>)]) -> ObservedCluster {
        ObservedCluster {
            live_brokers: live.iter().copied().collect(),
            registered_brokers: live.iter().copied().collect(),
            topics: topics
                .iter()
                .map(|(t, ps)| (t.to_string(), ps.clone()))
                .collect(),
            reassigning: 0,
            active_controller: Some(0),
        }
    }

    /// Six partitions of RF 3 spread over brokers 0..3, as the broker places them.
    fn three_broker_topic() -> Vec<ObservedPartition> {
        (0..6)
            .map(|p| {
                let r: Vec<i32> = (0..3).map(|i| (p + i) % 3).collect();
                partition(p, &r, &r)
            })
            .collect()
    }

    fn apply(observed: &mut ObservedCluster, moves: &[Move]) {
        for m in moves {
            let p = observed
                .topics
                .get_mut(&m.topic)
                .unwrap()
                .iter_mut()
                .find(|p| p.partition == m.partition)
                .unwrap();
            p.replicas = m.replicas.clone();
            p.isr = m.replicas.clone();
            p.leader = m.replicas.first().copied();
        }
    }

    fn loads(observed: &ObservedCluster, brokers: i32) -> Vec<usize> {
        let all: BTreeSet<i32> = (0..brokers).collect();
        observed.load(&all).values().copied().collect()
    }

    #[test]
    fn a_settled_cluster_needs_nothing() {
        let observed = cluster(&[0, 1, 2], &[("t", three_broker_topic())]);
        assert_eq!(
            plan_scale(3, 3, 3, &observed),
            ScalePlan {
                statefulset_replicas: 3,
                step: ScaleStep::Settled
            }
        );
    }

    #[test]
    fn scale_up_grows_the_statefulset_then_waits_for_the_new_brokers() {
        let observed = cluster(&[0, 1, 2], &[("t", three_broker_topic())]);
        assert_eq!(
            plan_scale(5, 3, 3, &observed),
            ScalePlan {
                statefulset_replicas: 5,
                step: ScaleStep::AwaitBrokers(vec![3, 4])
            }
        );
    }

    #[test]
    fn scale_up_spreads_replicas_onto_the_new_brokers_without_moving_leaders_first() {
        let mut observed = cluster(&[0, 1, 2, 3, 4], &[("t", three_broker_topic())]);
        let plan = plan_scale(5, 3, 3, &observed);
        assert_eq!(plan.statefulset_replicas, 5);
        let ScaleStep::Reassign(moves) = plan.step else {
            panic!("expected moves, got {plan:?}");
        };
        for m in &moves {
            let before = &observed.topics["t"][m.partition as usize];
            assert_eq!(
                m.replicas[0], before.replicas[0],
                "a preferred leader moved"
            );
            let distinct: BTreeSet<i32> = m.replicas.iter().copied().collect();
            assert_eq!(distinct.len(), 3, "duplicate replica in {m:?}");
        }
        apply(&mut observed, &moves);
        // 18 replicas over 5 brokers: 3 or 4 each.
        let l = loads(&observed, 5);
        assert!(l.iter().all(|n| (3..=4).contains(n)), "loads {l:?}");
        // Once balanced, the plan is settled.
        assert_eq!(plan_scale(5, 5, 3, &observed).step, ScaleStep::Settled);
    }

    #[test]
    fn scale_up_spreads_every_topic_not_just_the_first() {
        let mut observed = cluster(
            &[0, 1, 2, 3, 4],
            &[("a", three_broker_topic()), ("b", three_broker_topic())],
        );
        let ScaleStep::Reassign(moves) = plan_scale(5, 3, 3, &observed).step else {
            panic!("expected moves");
        };
        apply(&mut observed, &moves);
        for topic in ["a", "b"] {
            let holders: BTreeSet<i32> = observed.topics[topic]
                .iter()
                .flat_map(|p| p.replicas.iter().copied())
                .collect();
            assert_eq!(holders, (0..5).collect(), "topic {topic}");
        }
    }

    #[test]
    fn reassignments_under_way_are_waited_for() {
        let mut observed = cluster(&[0, 1, 2, 3, 4], &[("t", three_broker_topic())]);
        observed.reassigning = 2;
        assert_eq!(
            plan_scale(5, 5, 3, &observed).step,
            ScaleStep::AwaitReassignments(2)
        );
        assert_eq!(
            plan_scale(3, 5, 3, &observed),
            ScalePlan {
                statefulset_replicas: 5,
                step: ScaleStep::AwaitReassignments(2)
            }
        );
    }

    #[test]
    fn scale_down_drains_the_brokers_to_remove_before_shrinking() {
        let mut observed = cluster(&[0, 1, 2, 3, 4], &[("t", three_broker_topic())]);
        let moves = match plan_scale(5, 3, 3, &observed).step {
            ScaleStep::Reassign(moves) => moves,
            other => panic!("expected a spread first, got {other:?}"),
        };
        apply(&mut observed, &moves);
        let plan = plan_scale(3, 5, 3, &observed);
        assert_eq!(plan.statefulset_replicas, 5, "shrunk before draining");
        let ScaleStep::Reassign(moves) = plan.step else {
            panic!("expected drain moves, got {plan:?}");
        };
        for m in &moves {
            assert!(
                m.replicas.iter().all(|r| *r < 3),
                "moved onto a leaving broker: {m:?}"
            );
            let distinct: BTreeSet<i32> = m.replicas.iter().copied().collect();
            assert_eq!(distinct.len(), 3, "duplicate replica in {m:?}");
        }
        apply(&mut observed, &moves);
        // Drained: the StatefulSet shrinks, and brokers 3 and 4 are to be unregistered.
        assert_eq!(
            plan_scale(3, 5, 3, &observed),
            ScalePlan {
                statefulset_replicas: 3,
                step: ScaleStep::Unregister(vec![3, 4])
            }
        );
        // Shrunk: brokers 3 and 4 stay registered (fenced once their pods are gone) until
        // unregistered; then the scaling is settled.
        observed.live_brokers = (0..3).collect();
        assert_eq!(
            plan_scale(3, 3, 3, &observed),
            ScalePlan {
                statefulset_replicas: 3,
                step: ScaleStep::Unregister(vec![3, 4])
            }
        );
        observed.registered_brokers = (0..3).collect();
        assert_eq!(plan_scale(3, 3, 3, &observed).step, ScaleStep::Settled);
    }

    #[test]
    fn scale_down_below_a_replication_factor_is_refused() {
        let observed = cluster(&[0, 1, 2], &[("t", three_broker_topic())]);
        let plan = plan_scale(1, 3, 1, &observed);
        assert_eq!(plan.statefulset_replicas, 3);
        match plan.step {
            ScaleStep::Refused { reason, message } => {
                assert_eq!(reason, "ReplicationFactorTooHigh");
                assert!(message.contains("topic t has 3 replicas"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn scale_down_that_would_remove_a_voter_is_refused() {
        let observed = cluster(&[0, 1, 2, 3, 4], &[]);
        match plan_scale(2, 5, 3, &observed).step {
            ScaleStep::Refused { reason, .. } => assert_eq!(reason, "VotersCannotBeRemoved"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn scale_down_waits_for_the_remaining_brokers_to_be_live() {
        let observed = cluster(&[0, 2, 3], &[]);
        assert_eq!(
            plan_scale(3, 4, 3, &observed).step,
            ScaleStep::AwaitBrokers(vec![1])
        );
    }

    fn pod(ordinal: i32, hash: &str, ready: bool) -> ObservedPod {
        ObservedPod {
            ordinal,
            config_hash: Some(hash.to_string()),
            ready,
            terminating: false,
        }
    }

    #[test]
    fn a_roll_restarts_one_stale_pod_at_a_time_and_the_controller_last() {
        let observed = cluster(&[0, 1, 2], &[("t", three_broker_topic())]);
        let pods = vec![
            pod(0, "old", true),
            pod(1, "old", true),
            pod(2, "old", true),
        ];
        // Broker 0 is the active controller: it goes last.
        assert_eq!(plan_roll("new", &pods, &observed), RollStep::Restart(1));
        let pods = vec![
            pod(0, "old", true),
            pod(1, "new", true),
            pod(2, "old", true),
        ];
        assert_eq!(plan_roll("new", &pods, &observed), RollStep::Restart(2));
        let pods = vec![
            pod(0, "old", true),
            pod(1, "new", true),
            pod(2, "new", true),
        ];
        assert_eq!(plan_roll("new", &pods, &observed), RollStep::Restart(0));
        let pods = vec![
            pod(0, "new", true),
            pod(1, "new", true),
            pod(2, "new", true),
        ];
        assert_eq!(plan_roll("new", &pods, &observed), RollStep::Settled);
    }

    #[test]
    fn a_roll_waits_for_readiness_and_for_every_isr() {
        let mut observed = cluster(&[0, 1, 2], &[("t", three_broker_topic())]);
        let pods = vec![
            pod(0, "old", true),
            pod(1, "new", false),
            pod(2, "old", true),
        ];
        assert_eq!(
            plan_roll("new", &pods, &observed),
            RollStep::Wait("broker 1 is not ready".into())
        );
        let pods = vec![
            pod(0, "old", true),
            pod(1, "new", true),
            pod(2, "old", true),
        ];
        observed.topics.get_mut("t").unwrap()[0].isr = vec![0, 2];
        match plan_roll("new", &pods, &observed) {
            RollStep::Wait(why) => assert!(why.contains("1 partitions are under-replicated")),
            other => panic!("expected a wait, got {other:?}"),
        }
        observed.topics.get_mut("t").unwrap()[0].isr = vec![0, 1, 2];
        observed.live_brokers.remove(&1);
        match plan_roll("new", &pods, &observed) {
            RollStep::Wait(why) => assert!(why.contains("broker 1 is not registered")),
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn a_terminating_pod_holds_the_roll() {
        let observed = cluster(&[0, 1, 2], &[]);
        let mut pods = vec![
            pod(0, "old", true),
            pod(1, "old", true),
            pod(2, "old", true),
        ];
        pods[2].terminating = true;
        assert_eq!(
            plan_roll("new", &pods, &observed),
            RollStep::Wait("broker 2 is not ready".into())
        );
    }

    #[test]
    fn a_pod_without_a_hash_is_stale() {
        let observed = cluster(&[0, 1], &[]);
        let pods = vec![
            ObservedPod {
                ordinal: 0,
                config_hash: None,
                ready: true,
                terminating: false,
            },
            pod(1, "new", true),
        ];
        assert_eq!(plan_roll("new", &pods, &observed), RollStep::Restart(0));
    }
}
