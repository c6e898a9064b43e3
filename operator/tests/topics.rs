//! The Topic controller against a real kube-apiserver (etcd, kube-apiserver and
//! kube-controller-manager built from Go modules) with a real three-broker Tributary cluster
//! behind it, reached through a `Cluster` with `spec.external`. Every check on the Kafka side
//! is made with a Kafka client: the admin client for metadata and configs, librdkafka for
//! writes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{wait_for, Bed, Brokers, Operator, NS};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tributary_admin::{Admin, AlterConfigOp, ConfigSource, NewTopic};
use tributary_operator::crd::condition::find;
use tributary_operator::crd::topic::{ConfigValue, DeletionPolicy, Topic, TopicSpec};
use tributary_operator::crd::ClusterRef;

const WAIT: Duration = Duration::from_secs(60);

fn topic(name: &str, partitions: i32, rf: Option<i32>, config: &[(&str, ConfigValue)]) -> Topic {
    Topic::new(
        name,
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
        },
    )
}

fn n(v: i64) -> ConfigValue {
    ConfigValue(serde_json::json!(v))
}

/// The Ready condition's (status, reason), once the status describes the latest spec.
async fn ready(api: &Api<Topic>, name: &str) -> Option<(String, String, String)> {
    let t = api.get_opt(name).await.ok()??;
    let status = t.status.as_ref()?;
    if status.observed_generation != t.metadata.generation {
        return None;
    }
    let c = find(&status.conditions, "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_ready(api: &Api<Topic>, name: &str) -> anyhow::Result<()> {
    wait_reason(api, name, "TopicReady").await.map(|_| ())
}

async fn wait_reason(api: &Api<Topic>, name: &str, reason: &str) -> anyhow::Result<String> {
    let found = wait_for(&format!("Topic {name} reason {reason}"), WAIT, || async {
        ready(api, name).await.filter(|(_, r, _)| r == reason)
    })
    .await;
    match found {
        Ok((_, _, message)) => Ok(message),
        Err(e) => {
            let last = api.get_opt(name).await?.map(|t| (t.metadata, t.status));
            anyhow::bail!("{e}; last seen: {last:?}")
        }
    }
}

async fn overrides(admin: &Admin, topic: &str) -> BTreeMap<String, String> {
    admin
        .describe_topic_configs(topic)
        .await
        .expect("DescribeConfigs")
        .into_iter()
        .filter(|c| c.source == ConfigSource::DynamicTopic)
        .filter_map(|c| Some((c.name, c.value?)))
        .collect()
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "20000")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("producer")
}

/// acks=all writes to every partition succeed.
async fn write_each_partition(bootstrap: &str, topic: &str, partitions: i32) {
    let producer = producer(bootstrap);
    for p in 0..partitions {
        let record = FutureRecord::to(topic).partition(p).key("k").payload("v");
        producer
            .send(record, Duration::from_secs(20))
            .await
            .unwrap_or_else(|(e, _)| panic!("acks=all write to {topic}-{p} failed: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_follows_its_spec_from_creation_to_deletion() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let brokers = Brokers::start(3)?;
    bed.cluster("main", &brokers.bootstrap).await?;
    let _operator = Operator::start(&bed.env, "op-0", &[])?;
    let admin = Admin::connect(&brokers.bootstrap).await?;
    let api: Api<Topic> = Api::namespaced(bed.client.clone(), NS);

    tracing_phase("create: partitions, replication factor and configs");
    let started = Instant::now();
    api.create(
        &PostParams::default(),
        &topic(
            "orders",
            3,
            Some(3),
            &[
                ("retention.ms", n(86_400_000)),
                ("cleanup.policy", "delete".into()),
                ("min.insync.replicas", n(2)),
            ],
        ),
    )
    .await?;
    wait_ready(&api, "orders").await?;
    eprintln!("Topic applied -> Ready in {:?}", started.elapsed());
    let described = admin.describe_topic("orders").await?.expect("topic exists");
    assert_eq!(described.partitions.len(), 3);
    assert!(described.partitions.iter().all(|p| p.replicas.len() == 3));
    let configs = overrides(&admin, "orders").await;
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("86400000")
    );
    assert_eq!(
        configs.get("min.insync.replicas").map(String::as_str),
        Some("2")
    );
    let status = api.get("orders").await?.status.expect("status");
    assert_eq!(status.topic_id, Some(described.topic_id.to_string()));
    assert_eq!(status.partitions, Some(3));
    assert_eq!(status.replication_factor, Some(3));
    assert_eq!(status.under_replicated_partitions, Some(0));
    assert_eq!(status.partition_status.len(), 3);
    write_each_partition(&brokers.bootstrap, "orders", 3).await;

    tracing_phase("raise partitions: the new ones take acks=all writes");
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"partitions": 6}})),
    )
    .await?;
    wait_ready(&api, "orders").await?;
    assert_eq!(
        admin
            .describe_topic("orders")
            .await?
            .expect("topic")
            .partitions
            .len(),
        6
    );
    write_each_partition(&brokers.bootstrap, "orders", 6).await;

    tracing_phase("retention change shows in DescribeConfigs");
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"config": {"retention.ms": 3_600_000}}})),
    )
    .await?;
    wait_ready(&api, "orders").await?;
    wait_for("retention.ms=3600000 on the brokers", WAIT, || async {
        (overrides(&admin, "orders")
            .await
            .get("retention.ms")
            .map(String::as_str)
            == Some("3600000"))
        .then_some(())
    })
    .await?;

    tracing_phase("drift: a config changed behind the operator's back is put back");
    admin
        .alter_topic_configs(
            "orders",
            &[
                AlterConfigOp::Set {
                    name: "retention.ms".into(),
                    value: "1000".into(),
                },
                AlterConfigOp::Set {
                    name: "max.message.bytes".into(),
                    value: "12345".into(),
                },
            ],
        )
        .await?;
    assert_eq!(
        overrides(&admin, "orders")
            .await
            .get("retention.ms")
            .map(String::as_str),
        Some("1000")
    );
    wait_for("the drifted configs put back", WAIT, || async {
        let now = overrides(&admin, "orders").await;
        (now.get("retention.ms").map(String::as_str) == Some("3600000")
            && !now.contains_key("max.message.bytes"))
        .then_some(())
    })
    .await?;

    tracing_phase("invalid config: the broker's own message in the status");
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"config": {"retention.ms": "soon"}}})),
    )
    .await?;
    let message = wait_reason(&api, "orders", "InvalidConfig").await?;
    assert!(message.contains("retention.ms"), "{message}");
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"config": {"retention.ms": 3_600_000}}})),
    )
    .await?;
    wait_ready(&api, "orders").await?;

    tracing_phase("delete with deletionPolicy Delete removes the Kafka topic");
    api.delete("orders", &DeleteParams::default()).await?;
    wait_for("Topic orders gone", WAIT, || async {
        api.get_opt("orders").await.ok()?.is_none().then_some(())
    })
    .await?;
    wait_for("Kafka topic orders deleted", WAIT, || async {
        admin
            .describe_topic("orders")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await?;

    tracing_phase("delete with deletionPolicy Retain keeps it");
    let mut kept = topic("kept", 1, Some(1), &[]);
    kept.spec.deletion_policy = DeletionPolicy::Retain;
    api.create(&PostParams::default(), &kept).await?;
    wait_ready(&api, "kept").await?;
    api.delete("kept", &DeleteParams::default()).await?;
    wait_for("Topic kept gone", WAIT, || async {
        api.get_opt("kept").await.ok()?.is_none().then_some(())
    })
    .await?;
    assert!(admin.describe_topic("kept").await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_done_is_said_in_the_status() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let brokers = Brokers::start(3)?;
    bed.cluster("main", &brokers.bootstrap).await?;
    bed.cluster("nowhere", "127.0.0.1:1").await?;
    let _operator = Operator::start(&bed.env, "op-0", &[])?;
    let admin = Admin::connect(&brokers.bootstrap).await?;
    let api: Api<Topic> = Api::namespaced(bed.client.clone(), NS);

    tracing_phase("replication factor above the broker count");
    api.create(&PostParams::default(), &topic("wide", 1, Some(5), &[]))
        .await?;
    let message = wait_reason(&api, "wide", "ReplicationFactorTooHigh").await?;
    assert!(message.contains("3 live brokers"), "{message}");
    assert!(admin.describe_topic("wide").await?.is_none());

    tracing_phase("a Cluster that does not answer");
    let mut lost = topic("lost", 1, None, &[]);
    lost.spec.cluster_ref.name = "nowhere".into();
    api.create(&PostParams::default(), &lost).await?;
    wait_reason(&api, "lost", "ClusterUnreachable").await?;

    tracing_phase("an existing topic is adopted and brought to the spec");
    admin
        .create_topic(&NewTopic::new("legacy", 2, 1).with_config("retention.ms", "5000"))
        .await?;
    api.create(
        &PostParams::default(),
        &topic("legacy", 4, Some(1), &[("segment.bytes", n(1 << 20))]),
    )
    .await?;
    wait_ready(&api, "legacy").await?;
    assert_eq!(
        admin
            .describe_topic("legacy")
            .await?
            .expect("topic")
            .partitions
            .len(),
        4
    );
    let configs = overrides(&admin, "legacy").await;
    assert_eq!(
        configs.get("segment.bytes").map(String::as_str),
        Some("1048576")
    );
    assert!(!configs.contains_key("retention.ms"), "{configs:?}");

    tracing_phase("a topic with more partitions than the spec");
    admin.create_topic(&NewTopic::new("bigger", 5, 1)).await?;
    api.create(&PostParams::default(), &topic("bigger", 2, Some(1), &[]))
        .await?;
    let message = wait_reason(&api, "bigger", "PartitionDecreaseRejected").await?;
    assert!(message.contains("5 partitions"), "{message}");

    tracing_phase("two Topics claiming one Kafka topic: the second changes nothing");
    let mut second = topic("legacy-again", 9, Some(1), &[("retention.ms", n(1))]);
    second.spec.topic_name = Some("legacy".into());
    api.create(&PostParams::default(), &second).await?;
    let message = wait_reason(&api, "legacy-again", "TopicClaimed").await?;
    assert!(message.contains("default/legacy"), "{message}");
    assert_eq!(
        admin
            .describe_topic("legacy")
            .await?
            .expect("topic")
            .partitions
            .len(),
        4
    );
    assert!(!overrides(&admin, "legacy")
        .await
        .contains_key("retention.ms"));
    // Deleting the losing claim must not delete the winner's topic.
    api.delete("legacy-again", &DeleteParams::default()).await?;
    wait_for("Topic legacy-again gone", WAIT, || async {
        api.get_opt("legacy-again")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await?;
    assert!(admin.describe_topic("legacy").await?.is_some());

    tracing_phase("replication factor 1 -> 3 by reassignment");
    api.patch(
        "legacy",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicationFactor": 3}})),
    )
    .await?;
    wait_ready(&api, "legacy").await?;
    let described = admin.describe_topic("legacy").await?.expect("topic");
    assert!(
        described
            .partitions
            .iter()
            .all(|p| p.replicas.len() == 3 && p.isr.len() == 3),
        "{described:?}"
    );
    let status = api.get("legacy").await?.status.expect("status");
    assert_eq!(status.replication_factor, Some(3));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_rejects_invalid_specs_with_clear_messages() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let api: Api<Topic> = Api::namespaced(bed.client.clone(), NS);
    api.create(&PostParams::default(), &topic("orders", 3, Some(1), &[]))
        .await?;

    let refused = |result: Result<Topic, kube::Error>| match result {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            e.message
        }
        other => panic!("expected a 422 from the API server, got {other:?}"),
    };
    let decrease = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"partitions": 2}})),
        )
        .await;
    let message = refused(decrease);
    assert!(
        message.contains("partitions cannot be decreased"),
        "{message}"
    );
    let rename = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"topicName": "other"}})),
        )
        .await;
    assert!(refused(rename).contains("topicName cannot be changed"));

    let mut bad_name = topic("bad", 1, None, &[]);
    bad_name.spec.topic_name = Some("a/b".into());
    assert!(refused(api.create(&PostParams::default(), &bad_name).await)
        .contains("a Kafka topic name is 1 to 249 characters"));
    let zero = topic("zero", 0, None, &[]);
    assert!(refused(api.create(&PostParams::default(), &zero).await)
        .contains("greater than or equal to 1"));
    let rf0 = topic("rf0", 1, Some(0), &[]);
    assert!(refused(api.create(&PostParams::default(), &rf0).await)
        .contains("greater than or equal to 1"));

    let groups: Api<tributary_operator::crd::ConsumerGroup> =
        Api::namespaced(bed.client.clone(), NS);
    let bad_reset: tributary_operator::crd::ConsumerGroup = serde_json::from_value(
        serde_json::json!({
            "apiVersion": "tributary.dev/v1alpha1", "kind": "ConsumerGroup",
            "metadata": {"name": "g"},
            "spec": {"clusterRef": {"name": "main"}, "reset": {"to": "Timestamp", "timestamp": "yesterday"}}
        }),
    )?;
    let message = match groups.create(&PostParams::default(), &bad_reset).await {
        Err(kube::Error::Api(e)) => e.message,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(message.contains("RFC 3339"), "{message}");
    let no_offsets: tributary_operator::crd::ConsumerGroup =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tributary.dev/v1alpha1", "kind": "ConsumerGroup",
            "metadata": {"name": "g"},
            "spec": {"clusterRef": {"name": "main"}, "reset": {"to": "Offsets"}}
        }))?;
    let message = match groups.create(&PostParams::default(), &no_offsets).await {
        Err(kube::Error::Api(e)) => e.message,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(
        message.contains("reset.to Offsets needs reset.offsets"),
        "{message}"
    );

    let clusters: Api<tributary_operator::crd::Cluster> = Api::namespaced(bed.client.clone(), NS);
    let bad_cluster: tributary_operator::crd::Cluster =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tributary.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": "c"},
            "spec": {"external": {"bootstrapServers": "no-port"}}
        }))?;
    let message = match clusters.create(&PostParams::default(), &bad_cluster).await {
        Err(kube::Error::Api(e)) => e.message,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(message.contains("host:port"), "{message}");
    // Nothing invalid was stored.
    assert_eq!(api.list(&Default::default()).await?.items.len(), 1);
    assert_eq!(api.get("orders").await?.spec.partitions, 3);
    let _ = bed.env.dir.display();
    let _ = api.get("orders").await?.name_any();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_mid_reconcile_converges_after_restart() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let brokers = Brokers::start(3)?;
    bed.cluster("main", &brokers.bootstrap).await?;
    let admin = Admin::connect(&brokers.bootstrap).await?;
    let api: Api<Topic> = Api::namespaced(bed.client.clone(), NS);
    const COUNT: usize = 30;
    for i in 0..COUNT {
        api.create(
            &PostParams::default(),
            &topic(
                &format!("t{i:02}"),
                2,
                Some(2),
                &[("retention.ms", n(60_000 + i as i64))],
            ),
        )
        .await?;
    }
    let mut operator = Operator::start(&bed.env, "op-0", &["--lease-duration", "3s"])?;
    // Kill it as soon as it has started acting, with most topics still to do.
    wait_for("the first Kafka topic", WAIT, || async {
        let names = admin.describe_topics(None).await.ok()?;
        names.iter().any(|t| t.name.starts_with('t')).then_some(())
    })
    .await?;
    operator.kill();
    let _restarted = Operator::start(&bed.env, "op-1", &["--lease-duration", "3s"])?;
    for i in 0..COUNT {
        wait_ready(&api, &format!("t{i:02}")).await?;
    }
    for i in 0..COUNT {
        let name = format!("t{i:02}");
        let d = admin.describe_topic(&name).await?.expect("topic");
        assert_eq!(d.partitions.len(), 2, "{name}");
        assert!(d.partitions.iter().all(|p| p.replicas.len() == 2), "{name}");
        let want = (60_000 + i).to_string();
        assert_eq!(
            overrides(&admin, &name).await.get("retention.ms"),
            Some(&want),
            "{name}"
        );
    }
    Ok(())
}

fn tracing_phase(phase: &str) {
    eprintln!("--- {phase}");
}

/// The Lease's holder, once someone holds it.
async fn lease_holder(client: &kube::Client) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), NS);
    leases
        .get_opt("tributary-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operator_replicas_take_turns_through_the_lease() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let brokers = Brokers::start(3)?;
    bed.cluster("main", &brokers.bootstrap).await?;
    let admin = Admin::connect(&brokers.bootstrap).await?;
    let api: Api<Topic> = Api::namespaced(bed.client.clone(), NS);
    let lease = ["--lease-duration", "4s", "--lease-renew-every", "500ms"];
    let mut a = Operator::start(&bed.env, "op-a", &lease)?;
    let first = wait_for("a Lease holder", WAIT, || lease_holder(&bed.client)).await?;
    let mut b = Operator::start(&bed.env, "op-b", &lease)?;
    api.create(&PostParams::default(), &topic("one", 1, Some(1), &[]))
        .await?;
    wait_ready(&api, "one").await?;
    // The second replica waits: the Lease stays with the first.
    assert_eq!(
        lease_holder(&bed.client).await.as_deref(),
        Some(first.as_str())
    );

    tracing_phase("kill -9 of the leader: the other takes over after the lease duration");
    let (killed, survivor) = if first == "op-a" {
        (&mut a, "op-b")
    } else {
        (&mut b, "op-a")
    };
    killed.kill();
    wait_for("the other replica holding the Lease", WAIT, || async {
        lease_holder(&bed.client).await.filter(|h| h == survivor)
    })
    .await?;
    api.create(&PostParams::default(), &topic("two", 1, Some(1), &[]))
        .await?;
    wait_ready(&api, "two").await?;
    assert!(admin.describe_topic("two").await?.is_some());

    tracing_phase("SIGTERM of the leader: it gives the Lease up and exits 0");
    let survivor_process = if survivor == "op-a" { &mut a } else { &mut b };
    let status = survivor_process.terminate()?;
    assert!(status.success(), "{status:?}");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(bed.client.clone(), NS);
    let spec = leases.get("tributary-operator").await?.spec.expect("spec");
    assert_eq!(spec.holder_identity, None, "{spec:?}");
    let started = Instant::now();
    let _c = Operator::start(&bed.env, "op-c", &lease)?;
    wait_for("op-c holding the Lease", WAIT, || async {
        lease_holder(&bed.client).await.filter(|h| h == "op-c")
    })
    .await?;
    // A released Lease is taken at once, not after the lease duration.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}
