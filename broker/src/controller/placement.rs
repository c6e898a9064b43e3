//! Replica placement for new partitions: which brokers hold each replica, and which of
//! them is the preferred leader (the first).
//!
//! The active controller runs this when it prepares `CreateTopic` and `CreatePartitions`
//! (see [`super::prepare`]); the result travels in the command, so voters never rerun it.
//! It is still deterministic, so that the same request against the same image places the
//! same way (and tests can state exact expectations).
//!
//! ```text
//! candidates (unfenced, not shutting down)     per partition, greedily:
//!   + replica load per broker            ──>   leader    = fewest leaderships among the
//!   + leader load per broker                              brokers that may take a replica
//!                                               followers = fewest replicas, other racks
//!                                                           first
//! ```
//!
//! Unlike Kafka's round-robin (`AdminUtils.assignReplicasToBrokers`), which balances
//! exactly only over multiples of the broker count, the greedy choice keeps every broker's
//! replica count within one of every other's after each partition, counting the load the
//! brokers already carry. With racks on every candidate, the replicas of a partition go to
//! as many different racks as there are (Kafka's rack-alternating goal); rack spread wins
//! over balance when racks differ in size, as in Kafka.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::BrokerRecord;

/// Places `partitions` new partitions of `replication_factor` replicas each, counting the
/// replicas the brokers already hold (`existing_load`, by broker id; missing = 0).
///
/// Returns one replica list per partition, preferred leader first. `start_partition` is
/// the index of the first new partition (it rotates the tie-breaking order, as Kafka's
/// start index does). Fails when fewer candidates than `replication_factor` exist.
pub fn place_replicas(
    brokers: &[BrokerRecord],
    existing_load: &BTreeMap<i32, usize>,
    partitions: usize,
    replication_factor: usize,
    start_partition: usize,
) -> Result<Vec<Vec<i32>>, String> {
    place_replicas_with_leaders(
        brokers,
        existing_load,
        &BTreeMap::new(),
        partitions,
        replication_factor,
        start_partition,
    )
}

/// [`place_replicas`] that also counts the preferred leaderships the brokers already have
/// (`existing_leaders`), so that many single-partition topics do not all prefer the same
/// broker.
pub fn place_replicas_with_leaders(
    brokers: &[BrokerRecord],
    existing_load: &BTreeMap<i32, usize>,
    existing_leaders: &BTreeMap<i32, usize>,
    partitions: usize,
    replication_factor: usize,
    start_partition: usize,
) -> Result<Vec<Vec<i32>>, String> {
    let candidates: Vec<&BrokerRecord> = brokers
        .iter()
        .filter(|b| !b.fenced && !b.shutting_down)
        .map(|b| (b.id, b))
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .collect();
    let n = candidates.len();
    if replication_factor == 0 {
        return Err("Replication factor must be larger than 0.".into());
    }
    if replication_factor > n {
        return Err(format!(
            "Replication factor: {replication_factor} larger than available brokers: {n}."
        ));
    }
    let racks: Option<Vec<&str>> = candidates.iter().map(|b| b.rack.as_deref()).collect();
    let racks = racks.filter(|racks| racks.iter().collect::<BTreeSet<_>>().len() > 1);
    let mut load: Vec<usize> = candidates
        .iter()
        .map(|b| existing_load.get(&b.id).copied().unwrap_or(0))
        .collect();
    let mut leaders: Vec<usize> = candidates
        .iter()
        .map(|b| existing_leaders.get(&b.id).copied().unwrap_or(0))
        .collect();

    let mut placed = Vec::with_capacity(partitions);
    for i in 0..partitions {
        let rotation = (start_partition + i) % n;
        let order = |c: usize| (c + n - rotation) % n;
        // Taking any of the `replication_factor` least loaded brokers keeps the replica
        // counts within one of each other; the leader is chosen among everyone with a load
        // up to that bound, so a broker with few leaderships gets the next one.
        let mut sorted = load.clone();
        sorted.sort_unstable();
        let bound = sorted[replication_factor - 1];
        // Per mille of the average load on a broker's rack: between equally loaded
        // brokers, the emptier rack goes first, so racks fill evenly too.
        let rack_load = |c: usize| match &racks {
            Some(racks) => {
                let members: Vec<usize> = (0..n).filter(|&o| racks[o] == racks[c]).collect();
                members.iter().map(|&o| load[o]).sum::<usize>() * 1000 / members.len()
            }
            None => 0,
        };
        let leader = (0..n)
            .filter(|&c| load[c] <= bound)
            .min_by_key(|&c| (leaders[c], load[c], rack_load(c), order(c)))
            .expect("the least loaded broker is within the bound");
        let mut chosen = vec![leader];
        while chosen.len() < replication_factor {
            let same_rack = |c: usize| match &racks {
                Some(racks) => chosen.iter().filter(|&&o| racks[o] == racks[c]).count(),
                None => 0,
            };
            // Among equally loaded followers prefer those that already lead more, which
            // keeps the ones that lead less at a lower load, eligible to lead next.
            let follower = (0..n)
                .filter(|c| !chosen.contains(c))
                .min_by_key(|&c| {
                    (
                        same_rack(c),
                        load[c],
                        rack_load(c),
                        Reverse(leaders[c]),
                        order(c),
                    )
                })
                .expect("replication factor is at most the number of candidates");
            chosen.push(follower);
        }
        leaders[leader] += 1;
        for &c in &chosen {
            load[c] += 1;
        }
        placed.push(chosen.into_iter().map(|c| candidates[c].id).collect());
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn broker(id: i32, rack: Option<&str>) -> BrokerRecord {
        BrokerRecord {
            id,
            incarnation: Uuid::from_u128(id as u128 + 1),
            host: "127.0.0.1".into(),
            port: 9092 + id,
            rack: rack.map(str::to_string),
            rpc_addr: format!("127.0.0.1:{}", 9192 + id),
            fenced: false,
            shutting_down: false,
        }
    }

    fn counts(placed: &[Vec<i32>], ids: &[i32]) -> (Vec<usize>, Vec<usize>) {
        let replicas = ids
            .iter()
            .map(|id| placed.iter().filter(|p| p.contains(id)).count())
            .collect();
        let leaders = ids
            .iter()
            .map(|id| placed.iter().filter(|p| p[0] == *id).count())
            .collect();
        (replicas, leaders)
    }

    fn spread(counts: &[usize]) -> usize {
        counts.iter().max().unwrap() - counts.iter().min().unwrap()
    }

    #[test]
    fn replicas_and_leaders_are_spread_evenly() {
        for n in 3..=5 {
            let brokers: Vec<_> = (0..n).map(|id| broker(id, None)).collect();
            let ids: Vec<i32> = (0..n).collect();
            for rf in 1..=3 {
                for partitions in 1..=12 {
                    for start in [0, 1, 7] {
                        let placed =
                            place_replicas(&brokers, &BTreeMap::new(), partitions, rf, start)
                                .unwrap();
                        assert_eq!(placed.len(), partitions);
                        for p in &placed {
                            assert_eq!(p.len(), rf);
                            assert_eq!(p.iter().collect::<BTreeSet<_>>().len(), rf, "{p:?}");
                        }
                        let (replicas, leaders) = counts(&placed, &ids);
                        let case = format!("n={n} rf={rf} partitions={partitions}: {placed:?}");
                        assert!(spread(&replicas) <= 1, "replicas {replicas:?} {case}");
                        assert!(spread(&leaders) <= 1, "leaders {leaders:?} {case}");
                    }
                }
            }
        }
    }

    #[test]
    fn existing_load_is_evened_out() {
        let brokers: Vec<_> = (0..4).map(|id| broker(id, None)).collect();
        // Broker 3 joined empty; the others hold 6 replicas each.
        let load: BTreeMap<i32, usize> = [(0, 6), (1, 6), (2, 6)].into();
        let placed = place_replicas(&brokers, &load, 3, 2, 0).unwrap();
        assert!(placed.iter().all(|p| p.contains(&3)), "{placed:?}");
        let mut total = load.clone();
        for p in &placed {
            for r in p {
                *total.entry(*r).or_default() += 1;
            }
        }
        // Six new replicas: three on the empty broker (one per partition, it cannot take
        // more), three on the others.
        assert_eq!(
            total.values().copied().collect::<Vec<_>>(),
            vec![7, 7, 7, 3]
        );
    }

    #[test]
    fn existing_leaderships_move_new_leaders_elsewhere() {
        let brokers: Vec<_> = (0..3).map(|id| broker(id, None)).collect();
        let load: BTreeMap<i32, usize> = [(0, 2), (1, 2), (2, 2)].into();
        let leaders: BTreeMap<i32, usize> = [(0, 1), (1, 1)].into();
        let placed = place_replicas_with_leaders(&brokers, &load, &leaders, 1, 3, 0).unwrap();
        assert_eq!(placed[0][0], 2, "{placed:?}");
    }

    #[test]
    fn replicas_go_to_distinct_racks() {
        let racks = ["a", "a", "b", "b", "c", "c"];
        let brokers: Vec<_> = (0..6)
            .map(|id| broker(id, Some(racks[id as usize])))
            .collect();
        let ids: Vec<i32> = (0..6).collect();
        for rf in 1..=3 {
            for partitions in 1..=12 {
                let placed = place_replicas(&brokers, &BTreeMap::new(), partitions, rf, 0).unwrap();
                for p in &placed {
                    let used: BTreeSet<_> = p.iter().map(|r| racks[*r as usize]).collect();
                    assert_eq!(used.len(), rf, "rf={rf}: {placed:?}");
                }
                let (replicas, leaders) = counts(&placed, &ids);
                assert!(spread(&replicas) <= 1, "{replicas:?} {placed:?}");
                assert!(spread(&leaders) <= 1, "{leaders:?} {placed:?}");
            }
        }
        // More replicas than racks: every rack is used before any is used twice.
        let two_racks: Vec<_> = (0..4)
            .map(|id| broker(id, Some(["x", "y"][id as usize % 2])))
            .collect();
        for p in place_replicas(&two_racks, &BTreeMap::new(), 8, 3, 0).unwrap() {
            let x = p.iter().filter(|r| *r % 2 == 0).count();
            assert!(x == 1 || x == 2, "{p:?}");
        }
    }

    #[test]
    fn only_unfenced_brokers_not_shutting_down_are_candidates() {
        let mut brokers: Vec<_> = (0..4).map(|id| broker(id, None)).collect();
        brokers[1].fenced = true;
        brokers[2].shutting_down = true;
        let placed = place_replicas(&brokers, &BTreeMap::new(), 6, 2, 0).unwrap();
        assert!(
            placed.iter().all(|p| p == &[0, 3] || p == &[3, 0]),
            "{placed:?}"
        );
        assert_eq!(
            place_replicas(&brokers, &BTreeMap::new(), 1, 3, 0),
            Err("Replication factor: 3 larger than available brokers: 2.".into())
        );
        assert!(place_replicas(&brokers, &BTreeMap::new(), 1, 0, 0).is_err());
    }

    #[test]
    fn placement_is_deterministic() {
        let brokers: Vec<_> = (0..5).map(|id| broker(id, None)).collect();
        let mut reversed = brokers.clone();
        reversed.reverse();
        let load: BTreeMap<i32, usize> = [(1, 3), (4, 1)].into();
        let a = place_replicas(&brokers, &load, 9, 3, 2).unwrap();
        assert_eq!(a, place_replicas(&brokers, &load, 9, 3, 2).unwrap());
        assert_eq!(a, place_replicas(&reversed, &load, 9, 3, 2).unwrap());
    }
}
