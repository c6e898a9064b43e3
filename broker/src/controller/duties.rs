//! Decisions of the active controller, as pure functions of the image and what the
//! controller observed (heartbeat times), so that they can be tested without a quorum.
//!
//! The controller node calls these on its timers and turns each answer into a command it
//! proposes through Raft; applying the command is what changes anything.
//!
//! ```text
//! heartbeats ──> last_heartbeat_ms ──> brokers_to_fence ───────────> FenceBroker
//! timer ───────────────────────────> preferred_leader_elections ──> ElectLeaders{preferred}
//! want_shutdown ───────────────────> leads_anything_movable ──────> shutdown_ready
//! ```

use std::collections::BTreeMap;

use super::MetadataImage;

/// Unfenced brokers whose last heartbeat is more than `session_timeout_ms` before
/// `now_ms`, in id order.
///
/// A broker missing from `last_heartbeat_ms` has never been heard from by this controller
/// and is fenced too: a controller that takes over seeds the map with the time it became
/// leader for every registered broker, which gives each a full session to find it.
pub fn brokers_to_fence(
    image: &MetadataImage,
    last_heartbeat_ms: &BTreeMap<i32, i64>,
    now_ms: i64,
    session_timeout_ms: i64,
) -> Vec<i32> {
    image
        .live_brokers()
        .filter(|b| {
            last_heartbeat_ms
                .get(&b.id)
                .is_none_or(|last| now_ms.saturating_sub(*last) > session_timeout_ms)
        })
        .map(|b| b.id)
        .collect()
}

/// Partitions whose preferred leader (first replica) is eligible, in the ISR and not the
/// leader: what Kafka's `auto.leader.rebalance.enable` moves back after a failover.
pub fn preferred_leader_elections(image: &MetadataImage) -> Vec<(String, i32)> {
    image
        .partitions()
        .filter(|(_, _, p)| {
            p.replicas.first().is_some_and(|&preferred| {
                preferred != p.leader && p.isr.contains(&preferred) && image.is_eligible(preferred)
            })
        })
        .map(|(topic, index, _)| (topic.to_string(), index))
        .collect()
}

/// Whether `broker_id` still leads a partition that another eligible ISR member could
/// take over. A controlled shutdown is done when this is false: what it still leads has no
/// one else in sync, and moving it would lose acknowledged writes.
pub fn leads_anything_movable(image: &MetadataImage, broker_id: i32) -> bool {
    image.partitions().any(|(_, _, p)| {
        p.leader == broker_id
            && p.isr
                .iter()
                .any(|&r| r != broker_id && image.is_eligible(r))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::image::apply;
    use crate::controller::{BrokerRecord, Command, PartitionRecord, TopicRecord, NO_LEADER};
    use uuid::Uuid;

    fn image(brokers: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 0..brokers {
            let broker = BrokerRecord {
                id,
                incarnation: Uuid::from_u128(id as u128 + 1),
                host: "127.0.0.1".into(),
                port: 9092 + id,
                rack: None,
                rpc_addr: format!("127.0.0.1:{}", 9192 + id),
                fenced: true,
                shutting_down: false,
            };
            apply(&mut image, &Command::RegisterBroker { broker }).unwrap();
            apply(&mut image, &Command::UnfenceBroker { id }).unwrap();
        }
        image
    }

    fn create(image: &mut MetadataImage, name: &str, assignments: &[&[i32]]) {
        let topic = TopicRecord {
            name: name.into(),
            topic_id: Uuid::from_u128(image.topics.len() as u128 + 100),
            partitions: assignments.len() as i32,
            configs: Default::default(),
            assignments: assignments
                .iter()
                .map(|r| PartitionRecord::unplaced(r.to_vec()))
                .collect(),
        };
        apply(image, &Command::CreateTopic { topic }).unwrap();
    }

    #[test]
    fn silent_and_unknown_brokers_are_fenced_after_the_session_timeout() {
        let mut image = image(4);
        apply(&mut image, &Command::FenceBroker { id: 3 }).unwrap();
        let heartbeats: BTreeMap<i32, i64> = [(0, 1_000), (1, 400), (3, 0)].into();
        // 1 is 600 ms silent (> 500), 2 was never heard, 3 is already fenced.
        assert_eq!(
            brokers_to_fence(&image, &heartbeats, 1_000, 500),
            vec![1, 2]
        );
        // Exactly the timeout is not past it.
        assert_eq!(brokers_to_fence(&image, &heartbeats, 900, 500), vec![2]);
        assert!(brokers_to_fence(&MetadataImage::default(), &heartbeats, 1_000, 500).is_empty());
    }

    #[test]
    fn preferred_leaders_that_can_lead_are_elected_back() {
        let mut image = image(3);
        create(&mut image, "t", &[&[0, 1], &[1, 2], &[2, 0]]);
        assert!(preferred_leader_elections(&image).is_empty());
        apply(&mut image, &Command::FenceBroker { id: 0 }).unwrap();
        apply(&mut image, &Command::FenceBroker { id: 2 }).unwrap();
        // t-0 moved to 1, t-1 kept 1, t-2 kept 2 as its last ISR member but has no leader.
        assert_eq!(image.partition("t", 0).unwrap().leader, 1);
        assert_eq!(image.partition("t", 2).unwrap().leader, NO_LEADER);
        // 0 is fenced and out of the ISR: nothing to elect yet.
        assert!(preferred_leader_elections(&image).is_empty());
        apply(&mut image, &Command::UnfenceBroker { id: 0 }).unwrap();
        assert!(
            preferred_leader_elections(&image).is_empty(),
            "0 is not in sync yet"
        );
        let p = image.partition("t", 0).unwrap().clone();
        apply(
            &mut image,
            &Command::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: vec![0, 1],
            },
        )
        .unwrap();
        let elections = preferred_leader_elections(&image);
        assert_eq!(elections, vec![("t".to_string(), 0)]);
        apply(
            &mut image,
            &Command::ElectLeaders {
                partitions: elections,
                preferred: true,
            },
        )
        .unwrap();
        assert_eq!(image.partition("t", 0).unwrap().leader, 0);
        assert!(preferred_leader_elections(&image).is_empty());
    }

    #[test]
    fn controlled_shutdown_is_done_when_nothing_movable_is_led() {
        let mut image = image(3);
        create(&mut image, "t", &[&[0, 1], &[0, 2], &[1, 0]]);
        assert!(leads_anything_movable(&image, 0));
        assert!(!leads_anything_movable(&image, 2));
        // Only 0 in sync for t-1: not movable, but t-0 still is.
        let p = image.partition("t", 1).unwrap().clone();
        apply(
            &mut image,
            &Command::AlterPartition {
                topic: "t".into(),
                partition: 1,
                leader: 0,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: vec![0],
            },
        )
        .unwrap();
        assert!(leads_anything_movable(&image, 0));
        apply(&mut image, &Command::ControlledShutdown { id: 0 }).unwrap();
        assert!(!leads_anything_movable(&image, 0));
        assert_eq!(image.partition("t", 0).unwrap().leader, 1);
        assert_eq!(image.partition("t", 1).unwrap().leader, 0);
        // Another in-sync replica that is itself shutting down is not a way out.
        apply(&mut image, &Command::ControlledShutdown { id: 1 }).unwrap();
        assert_eq!(image.partition("t", 0).unwrap().leader, 1);
        assert!(!leads_anything_movable(&image, 1));
    }
}
