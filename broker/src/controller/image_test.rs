//! Tests of [`apply`]: each command's effect, each refusal leaving the image untouched, and
//! invariants over a long pseudo-random command sequence.

use super::*;

fn broker(id: i32) -> BrokerRecord {
    BrokerRecord {
        id,
        incarnation: Uuid::from_u128(id as u128 + 1),
        host: "127.0.0.1".into(),
        port: 9092 + id,
        rack: None,
        rpc_addr: format!("127.0.0.1:{}", 9192 + id),
        fenced: false,
        shutting_down: false,
    }
}

fn ok(image: &mut MetadataImage, command: Command) -> Outcome {
    apply(image, &command).unwrap_or_else(|e| panic!("{command:?} refused: {e}"))
}

/// Applies a command that must be refused with `code`, and checks that the image did not
/// change at all.
fn refused(image: &mut MetadataImage, command: Command, code: ResponseError) -> String {
    let before = image.clone();
    let error = apply(image, &command).expect_err("command should be refused");
    assert_eq!(error.code, code.code(), "{command:?}: {error}");
    assert_eq!(*image, before, "refused {command:?} changed the image");
    error.message
}

/// Brokers `0..n` registered and unfenced.
fn cluster(n: i32) -> MetadataImage {
    let mut image = MetadataImage::default();
    ok(
        &mut image,
        Command::InitCluster {
            cluster_id: "c1".into(),
        },
    );
    for id in 0..n {
        ok(&mut image, Command::RegisterBroker { broker: broker(id) });
        ok(&mut image, Command::UnfenceBroker { id });
    }
    image
}

fn unplaced(replicas: &[i32]) -> PartitionRecord {
    PartitionRecord {
        replicas: replicas.to_vec(),
        isr: vec![99],
        leader: 99,
        leader_epoch: 5,
        partition_epoch: 5,
        adding_replicas: vec![98],
        removing_replicas: Vec::new(),
    }
}

fn topic(name: &str, id: u128, assignments: &[&[i32]]) -> TopicRecord {
    TopicRecord {
        name: name.into(),
        topic_id: Uuid::from_u128(id),
        partitions: assignments.len() as i32,
        configs: TopicConfigs::new(),
        assignments: assignments.iter().map(|r| unplaced(r)).collect(),
    }
}

fn create(image: &mut MetadataImage, name: &str, assignments: &[&[i32]]) {
    let id = image.topics.len() as u128 + 100;
    ok(
        image,
        Command::CreateTopic {
            topic: topic(name, id, assignments),
        },
    );
}

fn part<'a>(image: &'a MetadataImage, topic: &str, p: i32) -> &'a PartitionRecord {
    image.partition(topic, p).expect("partition exists")
}

/// (replicas, isr, leader, leader_epoch, partition_epoch)
fn state(image: &MetadataImage, topic: &str, p: i32) -> (Vec<i32>, Vec<i32>, i32, i32, i32) {
    let p = part(image, topic, p);
    (
        p.replicas.clone(),
        p.isr.clone(),
        p.leader,
        p.leader_epoch,
        p.partition_epoch,
    )
}

/// AlterPartition from the current leader with the current epochs.
fn alter(image: &MetadataImage, topic: &str, p: i32, new_isr: &[i32]) -> Command {
    let record = part(image, topic, p);
    Command::AlterPartition {
        topic: topic.into(),
        partition: p,
        leader: record.leader,
        leader_epoch: record.leader_epoch,
        partition_epoch: record.partition_epoch,
        new_isr: new_isr.to_vec(),
    }
}

fn reassign(topic: &str, p: i32, target: Option<&[i32]>) -> Command {
    Command::Reassign {
        topic: topic.into(),
        partition: p,
        target: target.map(<[i32]>::to_vec),
    }
}

#[test]
fn init_cluster_sets_the_id_once() {
    let mut image = MetadataImage::default();
    let init = |id: &str| Command::InitCluster {
        cluster_id: id.into(),
    };
    assert_eq!(ok(&mut image, init("first")), Outcome::Done);
    assert_eq!(ok(&mut image, init("second")), Outcome::Done);
    assert_eq!(image.cluster_id, "first");
}

#[test]
fn registration_starts_fenced_and_restarts_fence_the_old_incarnation() {
    let mut image = cluster(3);
    let new = BrokerRecord {
        fenced: false,
        shutting_down: true,
        ..broker(7)
    };
    ok(&mut image, Command::RegisterBroker { broker: new });
    assert!(image.brokers[&7].fenced && !image.brokers[&7].shutting_down);
    assert_eq!(
        image.live_brokers().map(|b| b.id).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    refused(
        &mut image,
        Command::RegisterBroker {
            broker: BrokerRecord {
                id: -1,
                ..broker(1)
            },
        },
        ResponseError::InvalidRequest,
    );

    create(&mut image, "t", &[&[0, 1, 2], &[1, 2, 0]]);
    // Broker 0 restarted before the controller noticed: the old process is fenced first,
    // so t-0 gets a leader from its ISR, and the new process waits to be unfenced.
    let restarted = BrokerRecord {
        incarnation: Uuid::from_u128(1000),
        port: 19092,
        ..broker(0)
    };
    ok(
        &mut image,
        Command::RegisterBroker {
            broker: restarted.clone(),
        },
    );
    assert!(image.brokers[&0].fenced);
    assert_eq!(image.brokers[&0].port, 19092);
    assert_eq!(state(&image, "t", 0), (vec![0, 1, 2], vec![1, 2], 1, 1, 1));
    assert_eq!(state(&image, "t", 1), (vec![1, 2, 0], vec![1, 2], 1, 0, 1));

    // The same incarnation again (a retried RPC) updates endpoints, keeps the state.
    let snapshot = image.clone();
    ok(
        &mut image,
        Command::RegisterBroker {
            broker: BrokerRecord {
                host: "broker-0.example".into(),
                ..restarted.clone()
            },
        },
    );
    assert!(image.brokers[&0].fenced);
    assert_eq!(image.brokers[&0].host, "broker-0.example");
    assert_eq!(image.topics, snapshot.topics);
    ok(&mut image, Command::UnfenceBroker { id: 0 });
    ok(
        &mut image,
        Command::RegisterBroker {
            broker: restarted.clone(),
        },
    );
    assert!(!image.brokers[&0].fenced, "a retry does not fence");
}

#[test]
fn fencing_the_leader_elects_from_the_isr_in_replica_order() {
    let mut image = cluster(4);
    create(&mut image, "t", &[&[0, 3, 1, 2], &[1, 0, 2, 3]]);
    // Take 3 out of t-0's ISR so that 1 is the first eligible ISR member after 0.
    let command = alter(&image, "t", 0, &[0, 1, 2]);
    ok(&mut image, command);
    assert_eq!(
        state(&image, "t", 0),
        (vec![0, 3, 1, 2], vec![0, 1, 2], 0, 0, 1)
    );
    ok(&mut image, Command::FenceBroker { id: 0 });
    assert!(image.brokers[&0].fenced);
    assert_eq!(
        state(&image, "t", 0),
        (vec![0, 3, 1, 2], vec![1, 2], 1, 1, 2)
    );
    // A follower leaves the ISR; the leader and its epoch stay.
    assert_eq!(
        state(&image, "t", 1),
        (vec![1, 0, 2, 3], vec![1, 2, 3], 1, 0, 1)
    );
    // Fencing again changes nothing.
    let snapshot = image.clone();
    ok(&mut image, Command::FenceBroker { id: 0 });
    assert_eq!(image, snapshot);
    refused(
        &mut image,
        Command::FenceBroker { id: 9 },
        ResponseError::BrokerNotAvailable,
    );
}

#[test]
fn the_last_isr_member_stays_and_leads_again_when_unfenced() {
    let mut image = cluster(3);
    create(&mut image, "t", &[&[0, 1], &[2]]);
    ok(&mut image, Command::FenceBroker { id: 1 });
    assert_eq!(state(&image, "t", 0), (vec![0, 1], vec![0], 0, 0, 1));
    ok(&mut image, Command::FenceBroker { id: 0 });
    // 0 was the only ISR member: it stays in the ISR, and the partition has no leader.
    assert_eq!(
        state(&image, "t", 0),
        (vec![0, 1], vec![0], NO_LEADER, 1, 2)
    );
    // 1 comes back first: it is not in the ISR, so it cannot lead (no unclean election).
    ok(&mut image, Command::UnfenceBroker { id: 1 });
    assert_eq!(part(&image, "t", 0).leader, NO_LEADER);
    ok(&mut image, Command::UnfenceBroker { id: 0 });
    assert_eq!(state(&image, "t", 0), (vec![0, 1], vec![0], 0, 2, 3));
    // Partitions not involving the broker are untouched throughout.
    assert_eq!(state(&image, "t", 1), (vec![2], vec![2], 2, 0, 0));
    refused(
        &mut image,
        Command::UnfenceBroker { id: 9 },
        ResponseError::BrokerNotAvailable,
    );
}

#[test]
fn unfencing_a_broker_in_shutdown_gives_it_no_leadership() {
    let mut image = cluster(2);
    create(&mut image, "t", &[&[0]]);
    ok(&mut image, Command::FenceBroker { id: 0 });
    ok(&mut image, Command::ControlledShutdown { id: 0 });
    ok(&mut image, Command::UnfenceBroker { id: 0 });
    assert_eq!(part(&image, "t", 0).leader, NO_LEADER);
}

#[test]
fn controlled_shutdown_moves_what_can_move() {
    let mut image = cluster(3);
    create(&mut image, "t", &[&[0, 1, 2], &[0, 2], &[1, 0], &[0]]);
    let command = alter(&image, "t", 1, &[0]);
    ok(&mut image, command);
    ok(&mut image, Command::ControlledShutdown { id: 0 });
    assert!(image.brokers[&0].shutting_down && !image.brokers[&0].fenced);
    // Led with others in sync: leadership moves, 0 leaves the ISR.
    assert_eq!(state(&image, "t", 0), (vec![0, 1, 2], vec![1, 2], 1, 1, 1));
    // Led alone: nothing else can take over without losing writes.
    assert_eq!(state(&image, "t", 1), (vec![0, 2], vec![0], 0, 0, 1));
    // A follower leaves the ISR.
    assert_eq!(state(&image, "t", 2), (vec![1, 0], vec![1], 1, 0, 1));
    assert_eq!(state(&image, "t", 3), (vec![0], vec![0], 0, 0, 0));
    // Nor does a shutting-down broker join an ISR ...
    let command = alter(&image, "t", 2, &[1, 0]);
    refused(&mut image, command, ResponseError::IneligibleReplica);
    // ... but when the leader in shutdown lets another replica in, it hands over.
    let command = alter(&image, "t", 1, &[0, 2]);
    ok(&mut image, command);
    assert_eq!(state(&image, "t", 1), (vec![0, 2], vec![0, 2], 2, 1, 2));
    refused(
        &mut image,
        Command::ControlledShutdown { id: 9 },
        ResponseError::BrokerNotAvailable,
    );
    // A restart clears the shutdown.
    ok(
        &mut image,
        Command::RegisterBroker {
            broker: BrokerRecord {
                incarnation: Uuid::from_u128(50),
                ..broker(0)
            },
        },
    );
    assert!(!image.brokers[&0].shutting_down);
}

#[test]
fn create_topic_decides_isr_and_leader_itself() {
    let mut image = cluster(3);
    ok(&mut image, Command::FenceBroker { id: 0 });
    let outcome = ok(
        &mut image,
        Command::CreateTopic {
            topic: topic("t", 1, &[&[0, 1, 2], &[2, 0]]),
        },
    );
    assert_eq!(
        outcome,
        Outcome::Topic {
            topic_id: Uuid::from_u128(1)
        }
    );
    assert_eq!(
        *part(&image, "t", 0),
        PartitionRecord {
            replicas: vec![0, 1, 2],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    );
    assert_eq!(state(&image, "t", 1), (vec![2, 0], vec![2], 2, 0, 0));
    assert_eq!(image.topics["t"].partitions, 2);
}

#[test]
fn create_topic_refusals_change_nothing() {
    let mut image = cluster(3);
    create(&mut image, "t", &[&[0]]);
    ok(&mut image, Command::FenceBroker { id: 2 });
    let cases: Vec<(TopicRecord, ResponseError)> = vec![
        (topic("t", 7, &[&[0]]), ResponseError::TopicAlreadyExists),
        (topic("u", 100, &[&[0]]), ResponseError::TopicAlreadyExists),
        (topic("u", 0, &[&[0]]), ResponseError::InvalidRequest),
        (
            topic("a/b", 7, &[&[0]]),
            ResponseError::InvalidTopicException,
        ),
        (topic("u", 7, &[]), ResponseError::InvalidPartitions),
        (
            TopicRecord {
                partitions: 3,
                ..topic("u", 7, &[&[0]])
            },
            ResponseError::InvalidPartitions,
        ),
        (
            topic("u", 7, &[&[0], &[]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            topic("u", 7, &[&[0], &[1, 1]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            topic("u", 7, &[&[0], &[1, 5]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            topic("u", 7, &[&[0], &[2]]),
            ResponseError::BrokerNotAvailable,
        ),
    ];
    for (topic, code) in cases {
        refused(&mut image, Command::CreateTopic { topic }, code);
    }
}

#[test]
fn topics_are_deleted_grown_and_configured() {
    let mut image = cluster(3);
    create(&mut image, "t", &[&[0, 1]]);
    ok(
        &mut image,
        Command::CreatePartitions {
            name: "t".into(),
            new_assignments: vec![vec![1, 2], vec![2, 0]],
        },
    );
    assert_eq!(image.topics["t"].partitions, 3);
    assert_eq!(state(&image, "t", 2), (vec![2, 0], vec![2, 0], 2, 0, 0));
    let grow = |name: &str, new: Vec<Vec<i32>>| Command::CreatePartitions {
        name: name.into(),
        new_assignments: new,
    };
    refused(
        &mut image,
        grow("nope", vec![vec![0]]),
        ResponseError::UnknownTopicOrPartition,
    );
    refused(
        &mut image,
        grow("t", vec![]),
        ResponseError::InvalidPartitions,
    );
    // The second new partition is invalid, so the first is not added either.
    refused(
        &mut image,
        grow("t", vec![vec![0], vec![7]]),
        ResponseError::InvalidReplicaAssignment,
    );

    let configs: TopicConfigs = [("retention.ms".to_string(), "5".to_string())].into();
    ok(
        &mut image,
        Command::SetTopicConfigs {
            name: "t".into(),
            configs: configs.clone(),
        },
    );
    assert_eq!(image.topics["t"].configs, configs);
    ok(
        &mut image,
        Command::SetTopicConfigs {
            name: "t".into(),
            configs: TopicConfigs::new(),
        },
    );
    assert!(image.topics["t"].configs.is_empty(), "configs are replaced");
    refused(
        &mut image,
        Command::SetTopicConfigs {
            name: "nope".into(),
            configs,
        },
        ResponseError::UnknownTopicOrPartition,
    );

    let delete = |name: &str| Command::DeleteTopic { name: name.into() };
    assert_eq!(
        ok(&mut image, delete("t")),
        Outcome::Topic {
            topic_id: Uuid::from_u128(100)
        }
    );
    assert!(image.topics.is_empty());
    refused(
        &mut image,
        delete("t"),
        ResponseError::UnknownTopicOrPartition,
    );
}

#[test]
fn alter_partition_checks_epochs_and_the_new_isr() {
    let mut image = cluster(4);
    create(&mut image, "t", &[&[0, 1, 2]]);
    let command = alter(&image, "t", 0, &[0, 2]);
    ok(&mut image, command);
    assert_eq!(state(&image, "t", 0), (vec![0, 1, 2], vec![0, 2], 0, 0, 1));
    // Listed out of replica order: stored in replica order.
    let command = alter(&image, "t", 0, &[2, 1, 0]);
    ok(&mut image, command);
    assert_eq!(
        state(&image, "t", 0),
        (vec![0, 1, 2], vec![0, 1, 2], 0, 0, 2)
    );
    // The same ISR again is no change and keeps the partition epoch.
    let command = alter(&image, "t", 0, &[0, 1, 2]);
    ok(&mut image, command);
    assert_eq!(part(&image, "t", 0).partition_epoch, 2);

    let with = |f: &dyn Fn(&mut Command)| {
        let mut command = alter(&image, "t", 0, &[0, 1]);
        f(&mut command);
        command
    };
    let stale_leader = with(&|c| {
        if let Command::AlterPartition { leader, .. } = c {
            *leader = 1;
        }
    });
    let stale_leader_epoch = with(&|c| {
        if let Command::AlterPartition { leader_epoch, .. } = c {
            *leader_epoch -= 1;
        }
    });
    let stale_partition_epoch = with(&|c| {
        if let Command::AlterPartition {
            partition_epoch, ..
        } = c
        {
            *partition_epoch -= 1;
        }
    });
    refused(&mut image, stale_leader, ResponseError::FencedLeaderEpoch);
    refused(
        &mut image,
        stale_leader_epoch,
        ResponseError::FencedLeaderEpoch,
    );
    refused(
        &mut image,
        stale_partition_epoch,
        ResponseError::InvalidUpdateVersion,
    );
    let command = alter(&image, "t", 0, &[1, 2]);
    refused(&mut image, command, ResponseError::InvalidRequest);
    let command = alter(&image, "t", 0, &[0, 3]);
    refused(&mut image, command, ResponseError::InvalidRequest);
    let command = alter(&image, "t", 0, &[0, 1, 1]);
    refused(&mut image, command, ResponseError::InvalidRequest);
    let mut unknown = alter(&image, "t", 0, &[0]);
    if let Command::AlterPartition { partition, .. } = &mut unknown {
        *partition = 1;
    }
    refused(&mut image, unknown, ResponseError::UnknownTopicOrPartition);

    // A fenced broker cannot be added back.
    let command = alter(&image, "t", 0, &[0, 1]);
    ok(&mut image, command);
    ok(&mut image, Command::FenceBroker { id: 2 });
    let command = alter(&image, "t", 0, &[0, 1, 2]);
    refused(&mut image, command, ResponseError::IneligibleReplica);
    // A leaderless partition accepts no AlterPartition at all.
    ok(&mut image, Command::FenceBroker { id: 1 });
    ok(&mut image, Command::FenceBroker { id: 0 });
    assert_eq!(part(&image, "t", 0).leader, NO_LEADER);
    let command = alter(&image, "t", 0, &[0]);
    refused(&mut image, command, ResponseError::FencedLeaderEpoch);
}

#[test]
fn elections_move_leadership_only_where_they_can() {
    let mut image = cluster(3);
    create(&mut image, "t", &[&[0, 1], &[1, 2], &[2]]);
    ok(&mut image, Command::FenceBroker { id: 0 });
    ok(&mut image, Command::FenceBroker { id: 2 });
    assert_eq!(part(&image, "t", 0).leader, 1);
    assert_eq!(part(&image, "t", 2).leader, NO_LEADER);
    let all = vec![
        ("t".to_string(), 0),
        ("t".to_string(), 1),
        ("t".to_string(), 2),
        ("t".to_string(), 7),
        ("nope".to_string(), 0),
    ];
    let elect = |preferred| Command::ElectLeaders {
        partitions: all.clone(),
        preferred,
    };
    // Nothing can change yet: preferred replicas are fenced or out of the ISR.
    let snapshot = image.clone();
    assert_eq!(ok(&mut image, elect(true)), Outcome::Done);
    assert_eq!(ok(&mut image, elect(false)), Outcome::Done);
    assert_eq!(image, snapshot);

    ok(&mut image, Command::UnfenceBroker { id: 0 });
    let command = alter(&image, "t", 0, &[0, 1]);
    ok(&mut image, command);
    // Unfencing elects by itself, so the state machine leaves no leaderless partition
    // with an eligible ISR member behind; build one to test the election directly.
    ok(&mut image, Command::ControlledShutdown { id: 2 });
    ok(&mut image, Command::UnfenceBroker { id: 2 });
    assert_eq!(part(&image, "t", 2).leader, NO_LEADER);
    image.brokers.get_mut(&2).unwrap().shutting_down = false;

    ok(&mut image, elect(false));
    assert_eq!(state(&image, "t", 2), (vec![2], vec![2], 2, 2, 2));
    assert_eq!(
        part(&image, "t", 0).leader,
        1,
        "non-preferred leaves leaders alone"
    );
    ok(&mut image, elect(true));
    assert_eq!(state(&image, "t", 0), (vec![0, 1], vec![0, 1], 0, 2, 3));
    assert_eq!(part(&image, "t", 1).leader, 1);
}

#[test]
fn unregistering_removes_only_a_fenced_broker_that_holds_nothing() {
    let mut image = cluster(4);
    create(&mut image, "t", &[&[0, 1, 3]]);
    // Unknown, alive, or still a replica: refused, nothing changed.
    refused(
        &mut image,
        Command::UnregisterBroker { id: 7 },
        ResponseError::BrokerIdNotRegistered,
    );
    let alive = refused(
        &mut image,
        Command::UnregisterBroker { id: 3 },
        ResponseError::InvalidRequest,
    );
    assert!(alive.contains("alive"), "{alive}");
    ok(&mut image, Command::FenceBroker { id: 3 });
    let holding = refused(
        &mut image,
        Command::UnregisterBroker { id: 3 },
        ResponseError::InvalidRequest,
    );
    assert!(holding.contains("t-0"), "{holding}");
    // Moved off (the reassignment lists it as removing until it completes): still refused.
    ok(&mut image, reassign("t", 0, Some(&[0, 1, 2])));
    refused(
        &mut image,
        Command::UnregisterBroker { id: 3 },
        ResponseError::InvalidRequest,
    );
    let command = alter(&image, "t", 0, &[0, 1, 2]);
    ok(&mut image, command);
    assert_eq!(part(&image, "t", 0).replicas, vec![0, 1, 2]);
    // Drained and fenced: gone from the image; a second time it is unknown.
    ok(&mut image, Command::UnregisterBroker { id: 3 });
    assert_eq!(
        image.brokers.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    refused(
        &mut image,
        Command::UnregisterBroker { id: 3 },
        ResponseError::BrokerIdNotRegistered,
    );
    // The same broker id registering again later starts over, fenced.
    ok(&mut image, Command::RegisterBroker { broker: broker(3) });
    assert!(image.brokers[&3].fenced);
}

#[test]
fn reassignment_from_one_to_three_replicas_waits_for_the_new_ones() {
    let mut image = cluster(3);
    create(&mut image, "t", &[&[0]]);
    ok(&mut image, reassign("t", 0, Some(&[0, 1, 2])));
    let p = part(&image, "t", 0).clone();
    assert_eq!(p.replicas, vec![0, 1, 2]);
    assert_eq!(p.isr, vec![0]);
    assert_eq!(p.adding_replicas, vec![1, 2]);
    assert!(p.removing_replicas.is_empty());
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (0, 0, 1));
    assert_eq!(image.reassignments().len(), 1);
    // One of two new replicas in sync: still in progress.
    let command = alter(&image, "t", 0, &[0, 1]);
    ok(&mut image, command);
    assert_eq!(part(&image, "t", 0).adding_replicas, vec![1, 2]);
    assert!(part(&image, "t", 0).is_reassigning());
    // Both: complete.
    let command = alter(&image, "t", 0, &[0, 1, 2]);
    ok(&mut image, command);
    assert_eq!(
        state(&image, "t", 0),
        (vec![0, 1, 2], vec![0, 1, 2], 0, 0, 3)
    );
    assert!(!part(&image, "t", 0).is_reassigning());
    assert!(image.reassignments().is_empty());
}

#[test]
fn reassignment_that_removes_the_leader_elects_from_the_target() {
    let mut image = cluster(4);
    create(&mut image, "t", &[&[0, 1]]);
    ok(&mut image, reassign("t", 0, Some(&[2, 3])));
    let p = part(&image, "t", 0).clone();
    assert_eq!(p.replicas, vec![2, 3, 0, 1]);
    assert_eq!(p.adding_replicas, vec![2, 3]);
    assert_eq!(p.removing_replicas, vec![0, 1]);
    assert_eq!(p.isr, vec![0, 1]);
    assert_eq!(p.target_replicas(), vec![2, 3]);
    let command = alter(&image, "t", 0, &[0, 1, 2]);
    ok(&mut image, command);
    assert!(part(&image, "t", 0).is_reassigning());
    let command = alter(&image, "t", 0, &[0, 1, 2, 3]);
    ok(&mut image, command);
    // Completed: exactly the requested list, and the leader moved to the first target.
    assert_eq!(state(&image, "t", 0), (vec![2, 3], vec![2, 3], 2, 1, 3));

    // A target that is a reordering of the replicas completes at once (no one to add).
    ok(&mut image, reassign("t", 0, Some(&[3, 2])));
    assert_eq!(state(&image, "t", 0), (vec![3, 2], vec![3, 2], 2, 1, 4));
    // The same target again is no change.
    ok(&mut image, reassign("t", 0, Some(&[3, 2])));
    assert_eq!(part(&image, "t", 0).partition_epoch, 4);
}

#[test]
fn shrinking_waits_while_only_removed_replicas_are_in_sync() {
    let mut image = cluster(2);
    create(&mut image, "t", &[&[0, 1]]);
    let command = alter(&image, "t", 0, &[0]);
    ok(&mut image, command);
    // Target [1]: nothing to add, but 1 is not in sync, so dropping 0 would lose data.
    ok(&mut image, reassign("t", 0, Some(&[1])));
    let p = part(&image, "t", 0).clone();
    assert_eq!(
        (p.replicas.clone(), p.removing_replicas.clone()),
        (vec![1, 0], vec![0])
    );
    assert_eq!((p.isr.clone(), p.leader), (vec![0], 0));
    let command = alter(&image, "t", 0, &[0, 1]);
    ok(&mut image, command);
    assert_eq!(state(&image, "t", 0), (vec![1], vec![1], 1, 1, 3));
}

#[test]
fn reassignments_are_cancelled_or_replaced() {
    let mut image = cluster(4);
    create(&mut image, "t", &[&[0, 1]]);
    refused(
        &mut image,
        reassign("t", 0, None),
        ResponseError::NoReassignmentInProgress,
    );
    for bad in [&[][..], &[1, 1][..], &[1, 9][..]] {
        refused(
            &mut image,
            reassign("t", 0, Some(bad)),
            ResponseError::InvalidReplicaAssignment,
        );
    }
    refused(
        &mut image,
        reassign("t", 3, Some(&[1])),
        ResponseError::UnknownTopicOrPartition,
    );

    ok(&mut image, reassign("t", 0, Some(&[2, 1])));
    let command = alter(&image, "t", 0, &[0, 1, 2]);
    ok(&mut image, command);
    // Completed as soon as 2 caught up; the removed leader 0 handed over to 2.
    assert_eq!(state(&image, "t", 0), (vec![2, 1], vec![2, 1], 2, 1, 2));
    // Start another one and cancel it.
    ok(&mut image, reassign("t", 0, Some(&[3, 1])));
    let before_cancel = part(&image, "t", 0).clone();
    assert_eq!(before_cancel.replicas, vec![3, 1, 2]);
    assert_eq!(before_cancel.adding_replicas, vec![3]);
    assert_eq!(before_cancel.removing_replicas, vec![2]);
    ok(&mut image, reassign("t", 0, None));
    let p = part(&image, "t", 0).clone();
    // The original set; its original order [2, 1] is not kept (as in Kafka, the
    // reassignment stored the target's order).
    assert_eq!(p.replicas, vec![1, 2]);
    assert_eq!((p.isr.clone(), p.leader), (vec![1, 2], 2));
    assert!(!p.is_reassigning());
    assert_eq!(p.partition_epoch, before_cancel.partition_epoch + 1);

    // Replacing a reassignment: an adding replica kept by the new target still has to
    // catch up; one left out is dropped outright.
    ok(&mut image, reassign("t", 0, Some(&[3, 0])));
    let command = alter(&image, "t", 0, &[1, 2, 3]);
    ok(&mut image, command);
    let p = part(&image, "t", 0).clone();
    assert_eq!(p.isr, vec![3, 1, 2]);
    assert_eq!(
        p.adding_replicas,
        vec![3, 0],
        "pending until 0 is in sync too"
    );
    ok(&mut image, reassign("t", 0, Some(&[0, 1, 2])));
    let p = part(&image, "t", 0).clone();
    assert_eq!(p.replicas, vec![0, 1, 2]);
    assert_eq!(p.isr, vec![1, 2]);
    assert_eq!(p.adding_replicas, vec![0]);
    assert!(p.removing_replicas.is_empty());
}

#[test]
fn reassignments_never_drop_the_last_in_sync_replicas() {
    let mut image = cluster(3);
    create(&mut image, "t", &[&[0]]);
    ok(&mut image, reassign("t", 0, Some(&[1, 2])));
    let command = alter(&image, "t", 0, &[0, 1]);
    ok(&mut image, command);
    // 0 fails while 2 has not caught up: 1, still being added, leads.
    ok(&mut image, Command::FenceBroker { id: 0 });
    let p = part(&image, "t", 0).clone();
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![1, 2, 0], vec![1], 1)
    );
    // Cancelling, or going back to [0], would keep only 0, which is out of sync.
    refused(
        &mut image,
        reassign("t", 0, None),
        ResponseError::InvalidReplicaAssignment,
    );
    refused(
        &mut image,
        reassign("t", 0, Some(&[0])),
        ResponseError::InvalidReplicaAssignment,
    );
    // Settling for [1, 0] completes at once: 1 is in sync and leads.
    ok(&mut image, reassign("t", 0, Some(&[1, 0])));
    let p = part(&image, "t", 0).clone();
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![1, 0], vec![1], 1)
    );
    assert!(!p.is_reassigning());
}

#[test]
fn producer_id_blocks_are_consecutive() {
    let mut image = MetadataImage::default();
    let allocate = Command::AllocateProducerIds { broker_id: 3 };
    assert_eq!(
        ok(&mut image, allocate.clone()),
        Outcome::ProducerIds {
            start: 0,
            end: super::super::PRODUCER_ID_BLOCK_SIZE
        }
    );
    assert_eq!(
        ok(&mut image, allocate.clone()),
        Outcome::ProducerIds {
            start: super::super::PRODUCER_ID_BLOCK_SIZE,
            end: 2 * super::super::PRODUCER_ID_BLOCK_SIZE
        }
    );
    image.next_producer_id_block = i64::MAX - 1;
    refused(&mut image, allocate, ResponseError::InvalidRequest);
}

/// A small deterministic generator, so that the random walk below is the same every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % bound as u64) as usize
    }
}

fn random_command(rng: &mut Lcg, image: &MetadataImage) -> Command {
    let broker_id = rng.next(6) as i32 - 1;
    let topic = ["a", "b", "c"][rng.next(3)].to_string();
    let partition = rng.next(4) as i32;
    let replicas = |rng: &mut Lcg| -> Vec<i32> {
        let mut ids: Vec<i32> = (0..5).collect();
        let n = 1 + rng.next(3);
        (0..n).map(|_| ids.remove(rng.next(ids.len()))).collect()
    };
    match rng.next(12) {
        0 => Command::RegisterBroker {
            broker: BrokerRecord {
                incarnation: Uuid::from_u128(rng.next(2) as u128),
                ..broker(broker_id.max(0))
            },
        },
        1 | 2 => Command::FenceBroker { id: broker_id },
        3 | 4 => Command::UnfenceBroker { id: broker_id },
        5 if rng.next(3) == 0 => Command::UnregisterBroker { id: broker_id },
        5 => Command::ControlledShutdown { id: broker_id },
        6 => Command::CreateTopic {
            topic: TopicRecord {
                name: topic.clone(),
                topic_id: Uuid::from_u128(1 + rng.next(4) as u128),
                partitions: 2,
                configs: TopicConfigs::new(),
                assignments: vec![unplaced(&replicas(rng)), unplaced(&replicas(rng))],
            },
        },
        7 => Command::CreatePartitions {
            name: topic,
            new_assignments: vec![replicas(rng)],
        },
        8 => match image.partition(&topic, partition) {
            // Mostly well-formed ISR changes from the current leader.
            Some(p) if rng.next(4) > 0 => {
                let mut isr = vec![p.leader];
                for &r in &p.replicas {
                    if r != p.leader && rng.next(2) == 0 {
                        isr.push(r);
                    }
                }
                Command::AlterPartition {
                    topic,
                    partition,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch - (rng.next(8) == 0) as i32,
                    new_isr: isr,
                }
            }
            _ => Command::AlterPartition {
                topic,
                partition,
                leader: broker_id,
                leader_epoch: rng.next(3) as i32,
                partition_epoch: rng.next(3) as i32,
                new_isr: replicas(rng),
            },
        },
        9 => Command::ElectLeaders {
            partitions: vec![(topic, partition)],
            preferred: rng.next(2) == 0,
        },
        10 => Command::Reassign {
            topic,
            partition,
            target: (rng.next(3) > 0).then(|| replicas(rng)),
        },
        _ => Command::DeleteTopic { name: topic },
    }
}

/// What must hold of every partition after every command.
fn check_invariants(image: &MetadataImage, after: &Command) {
    for (topic, index, p) in image.partitions() {
        let tp = format!("{topic}-{index} after {after:?}: {p:?}");
        assert!(!p.isr.is_empty(), "empty ISR: {tp}");
        assert_eq!(
            p.isr,
            in_replica_order(&p.replicas, &p.isr),
            "ISR order: {tp}"
        );
        assert!(p.isr.iter().all(|r| p.replicas.contains(r)), "{tp}");
        assert!(
            p.leader == NO_LEADER || p.isr.contains(&p.leader),
            "leader: {tp}"
        );
        assert!(
            p.adding_replicas.iter().all(|r| p.replicas.contains(r)),
            "{tp}"
        );
        assert!(
            p.removing_replicas.iter().all(|r| p.replicas.contains(r)),
            "{tp}"
        );
        assert!(
            p.adding_replicas
                .iter()
                .all(|r| !p.removing_replicas.contains(r)),
            "{tp}"
        );
        assert!(!p.target_replicas().is_empty(), "{tp}");
        // No partition names a broker the metadata does not know (UnregisterBroker).
        assert!(
            p.replicas.iter().all(|r| image.brokers.contains_key(r)),
            "unregistered replica: {tp}"
        );
        // A fenced broker stays in an ISR only as its last member.
        for r in &p.isr {
            if image.brokers.get(r).is_none_or(|b| b.fenced) {
                assert_eq!(p.isr, vec![*r], "fenced {r} kept with others: {tp}");
                assert_eq!(p.leader, NO_LEADER, "fenced {r} leads: {tp}");
            }
        }
    }
    for t in image.topics.values() {
        assert_eq!(t.partitions as usize, t.assignments.len());
    }
}

#[test]
fn random_command_sequences_keep_the_invariants_and_are_deterministic() {
    for seed in 0..20 {
        let mut rng = Lcg(seed);
        let mut image = cluster(5);
        let mut replica = image.clone();
        let mut accepted = 0;
        for _ in 0..400 {
            let command = random_command(&mut rng, &image);
            let before = image.clone();
            let outcome = apply(&mut image, &command);
            match &outcome {
                Ok(_) => accepted += 1,
                Err(_) => assert_eq!(image, before, "refused {command:?} changed the image"),
            }
            for (topic, index, p) in image.partitions() {
                if let Some(old) = before.partition(topic, index) {
                    if before.topics[topic].topic_id == image.topics[topic].topic_id {
                        assert!(p.leader_epoch >= old.leader_epoch);
                        assert!(p.partition_epoch >= old.partition_epoch);
                        assert_eq!(p.leader != old.leader, p.leader_epoch > old.leader_epoch);
                        assert_eq!(p != old, p.partition_epoch > old.partition_epoch);
                    }
                }
            }
            check_invariants(&image, &command);
            // Another voter applying the same log, through a JSON round trip as the Raft
            // log stores it.
            let logged: Command =
                serde_json::from_str(&serde_json::to_string(&command).unwrap()).unwrap();
            assert_eq!(apply(&mut replica, &logged), outcome);
        }
        assert_eq!(image, replica);
        assert!(
            accepted > 100,
            "seed {seed}: only {accepted} commands accepted"
        );
    }
}

#[test]
fn image_helpers_find_partitions_and_brokers() {
    let mut image = cluster(3);
    create(&mut image, "t", &[&[0, 1], &[1, 2]]);
    assert_eq!(part(&image, "t", 1).replicas, vec![1, 2]);
    assert!(image.partition("t", 2).is_none());
    assert!(image.partition("t", -1).is_none());
    assert!(image.partition("u", 0).is_none());
    ok(&mut image, Command::FenceBroker { id: 1 });
    ok(&mut image, Command::ControlledShutdown { id: 2 });
    assert_eq!(
        image.live_brokers().map(|b| b.id).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert!(image.is_eligible(0) && !image.is_eligible(1) && !image.is_eligible(2));
    assert!(!image.is_eligible(7));
    ok(&mut image, reassign("t", 1, Some(&[0, 1])));
    let reassignments = image.reassignments();
    assert_eq!(reassignments.len(), 1);
    assert_eq!((reassignments[0].0.as_str(), reassignments[0].1), ("t", 1));
}
