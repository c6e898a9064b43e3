//! Consumer-group planning: when a `ConsumerGroup`'s reset applies, which partitions it
//! moves and to which offsets, and the lag figures of its status.
//!
//! ```text
//! spec.reset + status.appliedReset + group state   -> Skip | Wait(reason) | Apply
//! Apply + partitions + earliest/latest/by-time      -> offset per partition
//! committed offsets + log end offsets               -> PartitionLag rows, total lag
//! ```

use std::collections::BTreeMap;

use crate::crd::consumer_group::{OffsetReset, PartitionLag, ResetTarget};

/// A partition: topic and partition number.
pub type TopicPartition = (String, i32);

/// What to do about `spec.reset` on this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetDecision {
    /// No reset asked for, or this one was applied already.
    Nothing,
    /// A reset is asked for, but the group has members: Kafka refuses to move the offsets
    /// of a live group, and so does the operator.
    WaitForEmptyGroup { state: String, members: usize },
    /// Apply it now.
    Apply,
}

/// A stable fingerprint of a reset spec: the status records it once applied, so the same
/// reset is applied once, and any change of the spec (including `id`) applies again.
pub fn fingerprint(reset: &OffsetReset) -> String {
    // serde_json writes struct fields in declaration order and the lists as given, so the
    // same spec always gives the same text. FNV-1a keeps the status short.
    let text = serde_json::to_string(reset).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Decides whether `reset` applies now.
pub fn decide(
    reset: Option<&OffsetReset>,
    applied: Option<&str>,
    state: &str,
    members: usize,
) -> ResetDecision {
    let Some(reset) = reset else {
        return ResetDecision::Nothing;
    };
    if applied == Some(fingerprint(reset).as_str()) {
        return ResetDecision::Nothing;
    }
    if members > 0 {
        return ResetDecision::WaitForEmptyGroup {
            state: state.to_string(),
            members,
        };
    }
    ResetDecision::Apply
}

/// The partitions a reset moves: the listed offsets' partitions for `Offsets`; otherwise
/// every partition of `reset.topics` (from `topic_partitions`), or, with no topics listed,
/// every partition the group has a committed offset for.
pub fn reset_partitions(
    reset: &OffsetReset,
    committed: &BTreeMap<TopicPartition, i64>,
    topic_partitions: &BTreeMap<String, i32>,
) -> Vec<TopicPartition> {
    match reset.to {
        ResetTarget::Offsets => reset
            .offsets
            .iter()
            .map(|o| (o.topic.clone(), o.partition))
            .collect(),
        _ if reset.topics.is_empty() => committed.keys().cloned().collect(),
        _ => reset
            .topics
            .iter()
            .flat_map(|t| {
                let count = topic_partitions.get(t).copied().unwrap_or(0);
                (0..count).map(move |p| (t.clone(), p))
            })
            .collect(),
    }
}

/// The offset each partition moves to. `earliest` and `latest` are the log start and end
/// offsets, `by_timestamp` the ListOffsets answer for the timestamp (already the log end
/// where no record is that late). Explicit offsets are clamped to `[earliest, latest]`, as
/// `kafka-consumer-groups --reset-offsets --to-offset` does. Partitions whose offsets could
/// not be read are left out.
pub fn target_offsets(
    reset: &OffsetReset,
    partitions: &[TopicPartition],
    earliest: &BTreeMap<TopicPartition, i64>,
    latest: &BTreeMap<TopicPartition, i64>,
    by_timestamp: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, i64> {
    let explicit: BTreeMap<TopicPartition, i64> = reset
        .offsets
        .iter()
        .map(|o| ((o.topic.clone(), o.partition), o.offset))
        .collect();
    partitions
        .iter()
        .filter_map(|tp| {
            let offset = match reset.to {
                ResetTarget::Earliest => *earliest.get(tp)?,
                ResetTarget::Latest => *latest.get(tp)?,
                ResetTarget::Timestamp => *by_timestamp.get(tp)?,
                ResetTarget::Offsets => {
                    let (lo, hi) = (*earliest.get(tp)?, *latest.get(tp)?);
                    (*explicit.get(tp)?).clamp(lo, hi.max(lo))
                }
            };
            Some((tp.clone(), offset))
        })
        .collect()
}

/// The status rows of committed offsets and lag, and the total lag.
pub fn lag(
    committed: &BTreeMap<TopicPartition, i64>,
    log_end: &BTreeMap<TopicPartition, i64>,
) -> (Vec<PartitionLag>, i64) {
    let rows: Vec<PartitionLag> = committed
        .iter()
        .map(|((topic, partition), &committed_offset)| {
            let log_end_offset = log_end.get(&(topic.clone(), *partition)).copied();
            PartitionLag {
                topic: topic.clone(),
                partition: *partition,
                committed_offset,
                log_end_offset,
                lag: log_end_offset.map(|end| (end - committed_offset).max(0)),
            }
        })
        .collect();
    let total = rows.iter().filter_map(|r| r.lag).sum();
    (rows, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::consumer_group::PartitionOffset;

    fn reset(to: ResetTarget) -> OffsetReset {
        OffsetReset {
            to,
            timestamp: None,
            topics: vec![],
            offsets: vec![],
            id: None,
        }
    }

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_string(), p)
    }

    #[test]
    fn a_reset_applies_once_per_change_of_its_spec() {
        let r = reset(ResetTarget::Earliest);
        assert_eq!(decide(Some(&r), None, "Empty", 0), ResetDecision::Apply);
        let applied = fingerprint(&r);
        assert_eq!(
            decide(Some(&r), Some(&applied), "Empty", 0),
            ResetDecision::Nothing
        );
        let mut again = r.clone();
        again.id = Some("second".into());
        assert_eq!(
            decide(Some(&again), Some(&applied), "Empty", 0),
            ResetDecision::Apply
        );
        assert_eq!(decide(None, None, "Empty", 0), ResetDecision::Nothing);
    }

    #[test]
    fn a_reset_waits_while_the_group_has_members() {
        let r = reset(ResetTarget::Latest);
        assert_eq!(
            decide(Some(&r), None, "Stable", 2),
            ResetDecision::WaitForEmptyGroup {
                state: "Stable".into(),
                members: 2
            }
        );
    }

    #[test]
    fn partitions_come_from_topics_or_committed_offsets_or_the_explicit_list() {
        let committed: BTreeMap<_, _> = [(tp("a", 0), 5), (tp("b", 1), 7)].into();
        let counts: BTreeMap<String, i32> = [("a".to_string(), 2)].into();
        let all = reset(ResetTarget::Earliest);
        assert_eq!(
            reset_partitions(&all, &committed, &counts),
            vec![tp("a", 0), tp("b", 1)]
        );
        let mut some = reset(ResetTarget::Earliest);
        some.topics = vec!["a".into()];
        assert_eq!(
            reset_partitions(&some, &committed, &counts),
            vec![tp("a", 0), tp("a", 1)]
        );
        let mut explicit = reset(ResetTarget::Offsets);
        explicit.offsets = vec![PartitionOffset {
            topic: "c".into(),
            partition: 3,
            offset: 9,
        }];
        assert_eq!(
            reset_partitions(&explicit, &committed, &counts),
            vec![tp("c", 3)]
        );
    }

    #[test]
    fn explicit_offsets_are_clamped_to_the_log() {
        let mut r = reset(ResetTarget::Offsets);
        r.offsets = vec![
            PartitionOffset {
                topic: "a".into(),
                partition: 0,
                offset: 1_000,
            },
            PartitionOffset {
                topic: "a".into(),
                partition: 1,
                offset: 0,
            },
            PartitionOffset {
                topic: "a".into(),
                partition: 2,
                offset: 15,
            },
        ];
        let parts = vec![tp("a", 0), tp("a", 1), tp("a", 2)];
        let earliest = [(tp("a", 0), 0), (tp("a", 1), 10), (tp("a", 2), 10)].into();
        let latest = [(tp("a", 0), 100), (tp("a", 1), 100), (tp("a", 2), 100)].into();
        let got = target_offsets(&r, &parts, &earliest, &latest, &BTreeMap::new());
        assert_eq!(
            got,
            [(tp("a", 0), 100), (tp("a", 1), 10), (tp("a", 2), 15)].into()
        );
    }

    #[test]
    fn earliest_latest_and_timestamp_take_the_listed_offsets() {
        let parts = vec![tp("a", 0)];
        let earliest = [(tp("a", 0), 3)].into();
        let latest = [(tp("a", 0), 30)].into();
        let by_time = [(tp("a", 0), 12)].into();
        for (to, want) in [
            (ResetTarget::Earliest, 3),
            (ResetTarget::Latest, 30),
            (ResetTarget::Timestamp, 12),
        ] {
            let got = target_offsets(&reset(to), &parts, &earliest, &latest, &by_time);
            assert_eq!(got, [(tp("a", 0), want)].into(), "{to:?}");
        }
    }

    #[test]
    fn lag_is_log_end_minus_committed_and_never_negative() {
        let committed = [(tp("a", 0), 10), (tp("a", 1), 50), (tp("b", 0), 0)].into();
        let log_end = [(tp("a", 0), 25), (tp("a", 1), 40)].into();
        let (rows, total) = lag(&committed, &log_end);
        assert_eq!(rows[0].lag, Some(15));
        assert_eq!(rows[1].lag, Some(0));
        assert_eq!(rows[2].lag, None);
        assert_eq!(total, 15);
    }
}
