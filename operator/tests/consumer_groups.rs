//! The ConsumerGroup controller against a real kube-apiserver and three real brokers, with a
//! real librdkafka consumer group: the status shows the group's real lag, and a reset waits
//! for the group to empty, then is applied once.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_for, Bed, Brokers, Operator, NS};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tributary_admin::{Admin, NewTopic, OffsetSpec, TopicPartition};
use tributary_operator::crd::condition::find;
use tributary_operator::crd::consumer_group::{ConsumerGroup, ConsumerGroupStatus};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "events";
const PER_PARTITION: usize = 100;

/// A consumer of group `payments` on its own thread: consumes up to `limit` messages,
/// commits them synchronously, then keeps polling (staying a member) until stopped.
struct GroupMember {
    stop: Arc<AtomicBool>,
    consumed: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GroupMember {
    fn start(bootstrap: &str, limit: usize) -> GroupMember {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "payments")
            .set("client.id", "lag-test")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let consumed = Arc::new(AtomicUsize::new(0));
        let (s, c) = (stop.clone(), consumed.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) if c.load(Ordering::Relaxed) < limit => {
                        consumer
                            .commit_message(&m, CommitMode::Sync)
                            .expect("commit");
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            // Leaves the group (LeaveGroup) so it empties at once.
            consumer.unsubscribe();
            drop(consumer);
        });
        GroupMember {
            stop,
            consumed,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("consumer thread");
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn committed(admin: &Admin) -> BTreeMap<TopicPartition, i64> {
    admin.group_offsets("payments").await.expect("OffsetFetch")
}

/// The group's real lag, from the brokers: log end minus committed, summed.
async fn real_lag(admin: &Admin) -> i64 {
    let committed = committed(admin).await;
    let tps: Vec<TopicPartition> = committed.keys().cloned().collect();
    let ends = admin
        .list_offsets(&tps, OffsetSpec::Latest)
        .await
        .expect("ListOffsets");
    committed.iter().map(|(tp, c)| (ends[tp] - c).max(0)).sum()
}

/// The status once it describes the latest spec.
async fn status(api: &Api<ConsumerGroup>) -> Option<ConsumerGroupStatus> {
    let g = api.get_opt("payments").await.ok()??;
    let s = g.status?;
    (s.observed_generation == g.metadata.generation).then_some(s)
}

fn condition(s: &ConsumerGroupStatus, type_: &str) -> Option<(String, String)> {
    find(&s.conditions, type_).map(|c| (c.status.clone(), c.reason.clone()))
}

async fn set_reset(api: &Api<ConsumerGroup>, reset: serde_json::Value) -> anyhow::Result<()> {
    api.patch(
        "payments",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "spec": { "reset": reset } })),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_shows_its_real_lag_and_is_reset_once_empty() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let brokers = Brokers::start(3)?;
    bed.cluster("main", &brokers.bootstrap).await?;
    let _operator = Operator::start(&bed.env, "op-0", &[])?;
    let admin = Admin::connect(&brokers.bootstrap).await?;
    admin.create_topic(&NewTopic::new(TOPIC, 3, 3)).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers.bootstrap)
        .set("acks", "all")
        .create()?;
    for p in 0..3 {
        for i in 0..PER_PARTITION {
            producer
                .send(
                    FutureRecord::to(TOPIC)
                        .partition(p)
                        .key("k")
                        .payload(&i.to_string()),
                    Duration::from_secs(20),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
    }
    let total = (3 * PER_PARTITION) as i64;

    eprintln!("--- a live group: members, assignment and the real lag");
    let member = GroupMember::start(&brokers.bootstrap, 120);
    wait_for("120 messages consumed and committed", WAIT, || async {
        (member.consumed.load(Ordering::Relaxed) >= 120).then_some(())
    })
    .await?;
    // Partitions the consumer has not reached have no committed offset, hence no lag, as
    // in kafka-consumer-groups --describe.
    let lag = real_lag(&admin).await;
    let committed_partitions = committed(&admin).await.len();
    let api: Api<ConsumerGroup> = Api::namespaced(bed.client.clone(), NS);
    let group: ConsumerGroup = serde_json::from_value(serde_json::json!({
        "apiVersion": "tributary.dev/v1alpha1", "kind": "ConsumerGroup",
        "metadata": {"name": "payments"},
        "spec": {"clusterRef": {"name": "main"}}
    }))?;
    api.create(&PostParams::default(), &group).await?;
    let s = wait_for("status: Stable, one member, the real lag", WAIT, || async {
        status(&api)
            .await
            .filter(|s| s.state.as_deref() == Some("Stable") && s.total_lag == Some(lag))
    })
    .await?;
    assert_eq!(s.member_count, Some(1));
    assert_eq!(s.members[0].client_id, "lag-test");
    let mut assigned = s.members[0].assignment.clone();
    assigned.sort();
    assert_eq!(assigned, vec!["events-0", "events-1", "events-2"]);
    assert_eq!(s.offsets.len(), committed_partitions);
    assert_eq!(
        s.offsets.iter().map(|o| o.committed_offset).sum::<i64>(),
        120
    );
    assert!(s
        .offsets
        .iter()
        .all(|o| o.log_end_offset == Some(PER_PARTITION as i64)));

    eprintln!("--- a reset waits while the group has members");
    let before = committed(&admin).await;
    set_reset(
        &api,
        serde_json::json!({"to": "Earliest", "topics": [TOPIC]}),
    )
    .await?;
    wait_for("ResetPending GroupHasMembers", WAIT, || async {
        let s = status(&api).await?;
        (condition(&s, "ResetPending")? == ("True".into(), "GroupHasMembers".into())).then_some(())
    })
    .await?;
    assert_eq!(committed(&admin).await, before);

    eprintln!("--- the group empties: the reset applies");
    member.stop();
    let s = wait_for("ResetApplied", WAIT, || async {
        let s = status(&api).await?;
        (condition(&s, "ResetPending")? == ("False".into(), "ResetApplied".into())).then_some(s)
    })
    .await?;
    assert!(s.applied_reset.is_some());
    let offsets = committed(&admin).await;
    assert_eq!(offsets.len(), 3);
    assert!(offsets.values().all(|o| *o == 0), "{offsets:?}");
    wait_for("status lag = everything", WAIT, || async {
        status(&api)
            .await
            .filter(|s| s.total_lag == Some(total) && s.state.as_deref() == Some("Empty"))
    })
    .await?;

    eprintln!("--- applied once: consumers move on and the same reset is not applied again");
    let member = GroupMember::start(&brokers.bootstrap, 30);
    wait_for("30 more consumed and committed", WAIT, || async {
        (member.consumed.load(Ordering::Relaxed) >= 30).then_some(())
    })
    .await?;
    member.stop();
    let after_consumer = committed(&admin).await;
    assert_eq!(after_consumer.values().sum::<i64>(), 30);
    // Several refreshes (1 s each) later, the offsets are still the consumer's.
    wait_for("three more refreshes", WAIT, || async {
        let s = status(&api).await?;
        (s.total_lag == Some(total - 30)).then_some(())
    })
    .await?;
    assert_eq!(committed(&admin).await, after_consumer);

    eprintln!("--- a changed reset applies: explicit offsets, clamped to the log");
    set_reset(
        &api,
        // A merge patch keeps fields it does not name: topics is cleared explicitly.
        serde_json::json!({"to": "Offsets", "topics": null, "offsets": [
            {"topic": TOPIC, "partition": 0, "offset": 50},
            {"topic": TOPIC, "partition": 1, "offset": 5000}
        ]}),
    )
    .await?;
    wait_for("explicit offsets applied", WAIT, || async {
        let s = status(&api).await?;
        (condition(&s, "ResetPending")? == ("False".into(), "ResetApplied".into())).then_some(())
    })
    .await?;
    let offsets = committed(&admin).await;
    assert_eq!(offsets[&TopicPartition::new(TOPIC, 0)], 50);
    assert_eq!(
        offsets[&TopicPartition::new(TOPIC, 1)],
        PER_PARTITION as i64
    );
    assert_eq!(
        offsets[&TopicPartition::new(TOPIC, 2)],
        after_consumer[&TopicPartition::new(TOPIC, 2)]
    );

    eprintln!("--- a timestamp after every record: the log end");
    set_reset(
        &api,
        serde_json::json!({"to": "Timestamp", "timestamp": "2100-01-01T00:00:00Z", "topics": [TOPIC], "offsets": null}),
    )
    .await?;
    wait_for("lag 0 after a reset to the future", WAIT, || async {
        let s = status(&api).await?;
        (condition(&s, "ResetPending")? == ("False".into(), "ResetApplied".into())
            && s.total_lag == Some(0))
        .then_some(())
    })
    .await?;
    assert!(committed(&admin)
        .await
        .values()
        .all(|o| *o == PER_PARTITION as i64));
    Ok(())
}
