//! A Cluster run by the operator, with real brokers, measured: each figure against a
//! baseline taken in the same run on the same machine (a real kube-apiserver with
//! kube-controller-manager, the test kit's pod runner playing the kubelet with real
//! `tributary` processes, the release operator at its default intervals):
//!
//! 1. Cluster applied -> `Ready` (3 brokers), against: applied -> all 3 pods Ready (the
//!    brokers' own start, which the operator cannot make faster);
//! 2. `spec.brokers` 3 -> 5 -> the 5 brokers all hold replicas of a 12-partition RF 3 topic
//!    with data in it, every ISR full, `Scaling` False (`BrokersMatchSpec`), against: the
//!    2 new pods Ready; then 5 -> 3 (drain, then shrink), timed;
//! 3. a full roll of the 3 brokers (a changed `spec.config`) under a sequential acks=all
//!    idempotent writer: delivery errors and p50/p99 produce latency during the roll,
//!    against the same writer in a steady window before it;
//! 4. the leader of a partition's pod deleted (default grace period: SIGTERM, controlled
//!    shutdown) -> writes to that partition acknowledged again, against the same with the
//!    broker SIGKILLed (`PodRunner::kill`), alternating the two. "Again" is the end of the
//!    longest gap between acknowledgements after the disruption: the first acknowledgement
//!    after a deletion is nearly always the old leader's, which runs until the pod runner
//!    has seen the deletion and sent SIGTERM.
//!
//! Every acknowledged message of 3 and 4 is read back at the offset its acknowledgement
//! named.
//!
//! ```text
//! cargo build --release -p tributary --bin tributary
//! flock /tmp/tributary-k8s.lock cargo bench -p tributary-operator --bench cluster -- \
//!     [--trials N] [--steady-secs S]
//! ```
//!
//! Run by `cargo test` (no `--bench` argument), it only says it is skipped: it needs root,
//! the test bed and a release broker, and takes minutes.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use common::{client_config, topic, wait_ready, wait_until, Bed, Operator, NS};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tributary_admin::Admin;
use tributary_e2e_kit::{broker_binary, PodRunner, RunnerOptions};
use tributary_operator::controller::cluster::pod_is_ready;
use tributary_operator::crd::cluster::{Cluster, ClusterSpec};
use tributary_operator::crd::condition::find;
use tributary_operator::crd::topic::Topic;

const CLUSTER: &str = "bench";
const TOPIC: &str = "load";
const PARTITIONS: i32 = 12;
/// Messages in the topic before it is scaled, of `PRELOAD_BYTES` each.
const PRELOAD: usize = 5_000;
const PRELOAD_BYTES: usize = 1024;
/// How often the measured waits look.
const POLL: Duration = Duration::from_millis(50);
/// The deadline of every wait.
const WAIT: Duration = Duration::from_secs(180);
/// The operator's identity in its leader Lease.
const IDENTITY: &str = "cluster-bench";

/// The command line: `--trials N` (deletion and kill trials each, default 5),
/// `--steady-secs S` (the steady period before the roll, default 30; the baseline window
/// is its last part, as long as the roll).
struct Args {
    trials: usize,
    steady: Duration,
}

impl Args {
    /// The arguments, or `None` when the binary was not started by `cargo bench` (which
    /// passes `--bench`; `cargo test --benches` does not).
    fn parse() -> Result<Option<Args>> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if !args.iter().any(|a| a == "--bench") {
            return Ok(None);
        }
        let value = |flag: &str, default: u64| -> Result<u64> {
            match args.iter().position(|a| a == flag) {
                Some(i) => args
                    .get(i + 1)
                    .with_context(|| format!("{flag} needs a value"))?
                    .parse()
                    .with_context(|| format!("{flag} takes a whole number")),
                None => Ok(default),
            }
        };
        let trials = value("--trials", 5)? as usize;
        ensure!(trials > 0, "--trials must be at least 1");
        Ok(Some(Args {
            trials,
            steady: Duration::from_secs(value("--steady-secs", 30)?),
        }))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let Some(args) = Args::parse()? else {
        println!(
            "cluster bench: skipped (not run by `cargo bench`; it starts a Kubernetes test bed \
             and real brokers)"
        );
        return Ok(());
    };
    let started = Instant::now();
    let load_before = load_average();
    let bed = Bed::start().await?;
    let runner = PodRunner::start(
        &bed.env,
        RunnerOptions::new(NS, broker_binary()?)
            .selector(&format!("app.kubernetes.io/instance={CLUSTER}")),
    )?;
    let report = run(&bed, &runner, &args).await;
    if report.is_err() {
        runner.print_logs(60);
    }
    // The runner's and the operator's shutdown messages come before the table.
    drop(runner);
    let report = report?;
    report.print();
    println!(
        "\nwhole run (test bed start included): {:.0} s; load average (1, 5, 15 min) at the \
         start {load_before}, at the end {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(())
}

/// Everything the run measured.
#[derive(Default)]
struct Report {
    ready: Duration,
    pods_ready: Duration,
    scale_out: Duration,
    new_pods_ready: Duration,
    scale_in: Duration,
    scale_in_shrunk: Duration,
    roll: Duration,
    /// The sum over the pods of old instance going -> new instance Ready.
    roll_pods: Duration,
    roll_acked: usize,
    roll_errors: Vec<String>,
    roll_restarts: usize,
    /// Acknowledged messages (steady window and roll) not found at their offset afterwards.
    roll_lost: Vec<String>,
    roll_latency: Vec<Duration>,
    steady: Duration,
    steady_errors: usize,
    steady_latency: Vec<Duration>,
    deleted: Vec<Trial>,
    killed: Vec<Trial>,
}

async fn run(bed: &Bed, runner: &PodRunner, args: &Args) -> Result<Report> {
    let mut report = Report::default();
    // The operator at its default intervals, inside the runner's DNS view, as it runs in a
    // cluster.
    let operator = runner.with_cluster_dns(|| {
        Operator::start(
            &bed.env,
            IDENTITY,
            &[
                "--topic-resync-interval",
                "30s",
                "--group-refresh-interval",
                "10s",
                "--cluster-refresh-interval",
                "30s",
            ],
        )
    })??;
    // The operator leads before the clock starts, so the election is not measured.
    let leases: Api<Lease> = Api::namespaced(bed.client.clone(), NS);
    wait_until(
        "the operator to hold its leader Lease",
        WAIT,
        || async {
            let lease = leases.get_opt("tributary-operator").await.ok()??;
            (lease.spec?.holder_identity.as_deref() == Some(IDENTITY)).then_some(())
        },
        || async { format!("{:?}", leases.get_opt("tributary-operator").await.ok()) },
    )
    .await?;

    let bootstrap = cluster_ready(bed, &mut report).await?;
    eprintln!(
        "[bench] cluster Ready after {} ms (pods Ready after {} ms)",
        ms(report.ready),
        ms(report.pods_ready)
    );

    // A topic with data for the scaling to move.
    let topics: Api<Topic> = Api::namespaced(bed.client.clone(), NS);
    topics
        .create(
            &PostParams::default(),
            &topic(TOPIC, CLUSTER, PARTITIONS, 3),
        )
        .await?;
    wait_ready(&topics, TOPIC, WAIT).await?;
    // Metadata and watermarks only: never the writers' producers, whose latency this
    // would disturb.
    let meta: FutureProducer =
        runner.with_cluster_dns(|| client_config(&bootstrap, &[]).create())??;
    preload(runner, &bootstrap).await?;
    eprintln!("[bench] {PRELOAD} messages of {PRELOAD_BYTES} B in {TOPIC}");

    scale(bed, &meta, &mut report).await?;
    let listed: Vec<i32> = meta
        .client()
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))?
        .brokers()
        .iter()
        .map(|b| b.id())
        .collect();
    eprintln!("[bench] after 5 -> 3, Metadata lists brokers {listed:?}");
    let total = high_watermarks(&meta)?;
    ensure!(
        total == PRELOAD as i64,
        "after scaling, {TOPIC} holds {total} messages, not {PRELOAD}"
    );
    eprintln!(
        "[bench] 3 -> 5 settled after {} ms (new pods Ready after {} ms); 5 -> 3 after {} ms",
        ms(report.scale_out),
        ms(report.new_pods_ready),
        ms(report.scale_in)
    );

    roll(bed, runner, &bootstrap, args.steady, &mut report).await?;
    eprintln!(
        "[bench] roll of 3 brokers: {} ms, {} acknowledged, {} delivery errors",
        ms(report.roll),
        report.roll_acked,
        report.roll_errors.len()
    );

    let mut last = BTreeMap::new();
    for i in 0..args.trials {
        for (j, kind) in [Disruption::Delete, Disruption::Kill]
            .into_iter()
            .enumerate()
        {
            let round = (&mut last, 2 * i + j);
            let trial = disrupt(bed, runner, &bootstrap, &meta, kind, round).await?;
            eprintln!("[bench] trial {i} {kind:?}: {trial:?}");
            match kind {
                Disruption::Delete => report.deleted.push(trial),
                Disruption::Kill => report.killed.push(trial),
            }
        }
    }
    drop(operator);
    Ok(report)
}

/// Creates the Cluster and times it to `Ready`, and its 3 pods to Ready; returns the
/// bootstrap address from its status.
async fn cluster_ready(bed: &Bed, report: &mut Report) -> Result<String> {
    let clusters: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), NS);
    let started = Instant::now();
    bed.managed_cluster(CLUSTER, ClusterSpec::managed(3), &[])
        .await?;
    let (mut pods_ready, mut ready) = (None, None);
    let cluster = loop {
        if pods_ready.is_none() && ready_pods(&pods).await?.len() == 3 {
            pods_ready = Some(started.elapsed());
        }
        let cluster = clusters.get(CLUSTER).await?;
        if ready.is_none() && condition_is(&cluster, "Ready", "True", None) {
            ready = Some(started.elapsed());
        }
        if let (Some(_), Some(_)) = (pods_ready, ready) {
            break cluster;
        }
        ensure!(
            started.elapsed() < WAIT,
            "the Cluster was not Ready within {WAIT:?}: status {:?}",
            cluster.status
        );
        tokio::time::sleep(POLL).await;
    };
    report.ready = ready.unwrap_or_default();
    report.pods_ready = pods_ready.unwrap_or_default();
    cluster
        .status
        .and_then(|s| s.bootstrap_servers)
        .context("a Ready Cluster without status.bootstrapServers")
}

/// Writes `PRELOAD` messages to the topic, many in flight at once.
async fn preload(runner: &PodRunner, bootstrap: &str) -> Result<()> {
    let producer: FutureProducer = runner.with_cluster_dns(|| {
        client_config(
            bootstrap,
            &[("acks", "all"), ("enable.idempotence", "true")],
        )
        .create()
    })??;
    let producer = &producer;
    let value = "x".repeat(PRELOAD_BYTES);
    let value = &value;
    futures::future::try_join_all((0..PRELOAD).map(|i| async move {
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to(TOPIC).key(&key).payload(value),
                Duration::from_secs(60),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("preloading message {i}: {e}"))
    }))
    .await?;
    Ok(())
}

/// 3 -> 5 brokers until the new ones hold replicas (against the new pods' start), then
/// 5 -> 3 until the leaving ones are drained and gone.
async fn scale(bed: &Bed, meta: &FutureProducer, report: &mut Report) -> Result<()> {
    let clusters: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), NS);
    let stateful_sets: Api<StatefulSet> = Api::namespaced(bed.client.clone(), NS);
    for brokers in [5, 3] {
        let want: BTreeSet<i32> = (0..brokers).collect();
        let started = Instant::now();
        clusters
            .patch(
                CLUSTER,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"brokers": brokers}})),
            )
            .await?;
        // Scale-out's baseline: pods 3 and 4 Ready. Scale-in's milestone: the StatefulSet
        // shrunk, which the operator does once the leaving brokers hold nothing.
        let mut milestone = None;
        loop {
            let ready = ready_pods(&pods).await?;
            let replicas = stateful_sets
                .get(CLUSTER)
                .await?
                .spec
                .and_then(|s| s.replicas);
            if milestone.is_none() {
                let reached = if brokers == 5 {
                    ready.contains(&pod_name(3)) && ready.contains(&pod_name(4))
                } else {
                    replicas == Some(3)
                };
                if reached {
                    milestone = Some(started.elapsed());
                }
            }
            let cluster = clusters.get(CLUSTER).await?;
            let settled = condition_is(&cluster, "Scaling", "False", Some("BrokersMatchSpec"))
                && cluster.status.as_ref().and_then(|s| s.ready_brokers) == Some(brokers)
                && replicas == Some(brokers)
                && ready.len() == brokers as usize
                && placement(meta).is_ok_and(|(holders, in_sync)| holders == want && in_sync);
            if settled && milestone.is_some() {
                break;
            }
            ensure!(
                started.elapsed() < WAIT,
                "scaling to {brokers} did not settle within {WAIT:?}: placement {:?}, \
                 pods ready {ready:?}, status {:?}",
                placement(meta).ok(),
                cluster.status
            );
            tokio::time::sleep(POLL).await;
        }
        let milestone = milestone.unwrap_or_default();
        if brokers == 5 {
            (report.scale_out, report.new_pods_ready) = (started.elapsed(), milestone);
        } else {
            (report.scale_in, report.scale_in_shrunk) = (started.elapsed(), milestone);
        }
    }
    Ok(())
}

/// A config change rolls the 3 brokers while an acks=all writer runs; the writer's steady
/// window before the change is the baseline.
async fn roll(
    bed: &Bed,
    runner: &PodRunner,
    bootstrap: &str,
    steady: Duration,
    report: &mut Report,
) -> Result<()> {
    let clusters: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), NS);
    let before = pod_uids(&pods).await?;
    ensure!(before.len() == 3, "pods before the roll: {before:?}");

    let epoch = Instant::now();
    let mut load = Load::start(runner, bootstrap, None, PRELOAD, epoch)?;
    let steady_deadline = Instant::now() + steady;
    while Instant::now() < steady_deadline {
        load.tend(runner, bootstrap).await?;
        tokio::time::sleep(POLL).await;
    }
    let patched_at = epoch.elapsed();
    let started = Instant::now();
    clusters
        .patch(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"config": {"log.retention.ms": "3600000"}}})),
        )
        .await?;
    // Per pod, when its old instance was seen going (deleting, gone or replaced) and its
    // new one Ready: the sum of these is the brokers' own restart time.
    let mut going: BTreeMap<String, Duration> = BTreeMap::new();
    let mut back: BTreeMap<String, Duration> = BTreeMap::new();
    loop {
        load.tend(runner, bootstrap).await?;
        let list = pods.list(&selector()).await?.items;
        let at = started.elapsed();
        for name in (0..3).map(pod_name) {
            let pod = list.iter().find(|p| p.name_any() == name);
            let new = pod.is_some_and(|p| p.uid().is_some_and(|u| !before.contains(&u)));
            let leaving = pod.is_none_or(|p| new || p.metadata.deletion_timestamp.is_some());
            if leaving {
                going.entry(name.clone()).or_insert(at);
            }
            if new && pod.is_some_and(pod_is_ready) {
                back.entry(name).or_insert(at);
            }
        }
        let cluster = clusters.get(CLUSTER).await?;
        if back.len() == 3 && condition_is(&cluster, "Rolling", "False", Some("UpToDate")) {
            break;
        }
        ensure!(
            started.elapsed() < WAIT,
            "the roll did not finish within {WAIT:?}: pods {:?} (before {before:?}), status {:?}",
            list.iter()
                .map(|p| (p.name_any(), p.uid(), pod_is_ready(p)))
                .collect::<Vec<_>>(),
            cluster.status
        );
        tokio::time::sleep(POLL).await;
    }
    report.roll_pods = back.iter().map(|(name, at)| *at - going[name]).sum();
    report.roll = started.elapsed();
    let done_at = epoch.elapsed();
    report.roll_restarts = load.restarts;
    let written = load.stop().await?;
    report.roll_lost = lost(runner, bootstrap, &written.acks).await?;

    // The windows are by send time: a message sent in the roll whose acknowledgement came
    // after it still counts to the roll. The steady window is as long as the roll, within
    // the steady period after the writer's first second (its connections and producer id).
    let window_start = patched_at
        .saturating_sub(report.roll)
        .max(Duration::from_secs(1).min(patched_at));
    report.steady = patched_at - window_start;
    for ack in &written.acks {
        if ack.sent >= window_start && ack.sent < patched_at {
            report.steady_latency.push(ack.acked - ack.sent);
        } else if ack.sent >= patched_at && ack.sent < done_at {
            report.roll_latency.push(ack.acked - ack.sent);
        }
    }
    report.roll_acked = report.roll_latency.len();
    report.steady_errors = written
        .errors
        .iter()
        .filter(|(at, _)| *at < patched_at)
        .count();
    report.roll_errors = written
        .errors
        .iter()
        .filter(|(at, _)| *at >= patched_at)
        .map(|(at, e)| format!("{} ms into the roll: {e}", ms(*at - patched_at)))
        .collect();
    for e in &report.roll_errors {
        eprintln!("[bench] delivery error: {e}");
    }
    for l in &report.roll_lost {
        eprintln!("[bench] acknowledged write lost around the roll: {l}");
    }
    Ok(())
}

/// How a trial takes a partition leader's pod away.
#[derive(Debug, Clone, Copy)]
enum Disruption {
    /// Pod deleted through the API with its default grace period: SIGTERM, the broker's
    /// controlled shutdown, a new pod.
    Delete,
    /// `PodRunner::kill`: SIGKILL, the container restarted in place.
    Kill,
}

/// What one trial saw, in ms after the pod was deleted or killed.
#[derive(Debug, Clone, Copy)]
struct Trial {
    broker: i32,
    partition: i32,
    /// Picks it took (the leadership moved before the disruption in all but the last).
    attempts: usize,
    /// The first acknowledgement that came after the disruption (for a deletion, usually
    /// still the old leader's: it runs until the runner delivers SIGTERM).
    first_ack_ms: u64,
    /// The end of the longest gap between acknowledgements from the disruption to the
    /// first one after the pod was Ready again: when writes were flowing again after the
    /// leader went.
    resumed_ms: u64,
    /// That gap's length.
    stall_ms: u64,
    /// The pod Ready again.
    back_ms: u64,
    /// Acknowledged messages not found at their offset afterwards.
    lost: usize,
    errors: usize,
}

/// One trial: a writer pinned to a partition (see [`pick`]), its leader's pod deleted or
/// killed; the trial ends once the pod is Ready again and every ISR is full.
async fn disrupt(
    bed: &Bed,
    runner: &PodRunner,
    bootstrap: &str,
    meta: &FutureProducer,
    kind: Disruption,
    (last, round): (&mut BTreeMap<i32, usize>, usize),
) -> Result<Trial> {
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), NS);
    // The leader is checked again just before the disruption, and the trial picks anew if
    // it moved, so a trial never takes away a broker that no longer leads its partition.
    let mut attempt = 0;
    let (partition, broker, name, uid, restarts, epoch, mut load, views_before) = loop {
        attempt += 1;
        let (partition, broker, agreed) = pick(runner, meta, last).await?;
        if agreed > Duration::from_millis(500) {
            eprintln!(
                "[bench] the brokers took {} ms to agree on the leaders",
                ms(agreed)
            );
        }
        let name = pod_name(broker);
        let pod = pods.get(&name).await?;
        let (uid, restarts) = (pod.uid(), restart_count(&pod));
        let epoch = Instant::now();
        // Numbers of their own, so the read-back can tell this trial's messages apart.
        let from = (round + 1) * 1_000_000 + attempt * 100_000;
        let mut load = Load::start(runner, bootstrap, Some(partition), from, epoch)?;
        let warm = Instant::now();
        while load.acked() < 20 {
            load.tend(runner, bootstrap).await?;
            ensure!(
                warm.elapsed() < WAIT,
                "the writer had {} messages acknowledged in {WAIT:?}",
                load.acked()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let views = broker_views(runner).await?;
        let leaders: BTreeSet<Option<i32>> = views
            .values()
            .map(|v| {
                v.iter()
                    .find(|(p, ..)| *p == partition)
                    .and_then(|(_, leader, ..)| *leader)
            })
            .collect();
        if leaders == BTreeSet::from([Some(broker)]) {
            break (partition, broker, name, uid, restarts, epoch, load, views);
        }
        eprintln!(
            "[bench] partition {partition}'s leader moved from {broker} before the {kind:?}: \
             the brokers say {leaders:?}; picking again"
        );
        load.stop().await?;
        ensure!(attempt < 5, "the leadership kept moving: {views:?}");
    };
    last.insert(broker, round);

    let at = epoch.elapsed();
    match kind {
        Disruption::Delete => {
            pods.delete(&name, &DeleteParams::default()).await?;
        }
        Disruption::Kill => runner.kill(&name)?,
    }
    let started = Instant::now();
    loop {
        load.tend(runner, bootstrap).await?;
        let back = pods.get_opt(&name).await?.is_some_and(|p| {
            pod_is_ready(&p)
                && match kind {
                    Disruption::Delete => p.uid() != uid,
                    Disruption::Kill => restart_count(&p) > restarts,
                }
        });
        if back {
            break;
        }
        ensure!(
            started.elapsed() < WAIT,
            "{name} was not Ready again within {WAIT:?} of {kind:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let back_at = epoch.elapsed();
    // Writes may not have resumed yet when the pod is back (a slow failover); wait for one.
    let acked = load.acked();
    while load.acked() == acked && started.elapsed() < WAIT {
        load.tend(runner, bootstrap).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = load.stop().await?;
    wait_until(
        "every ISR full again",
        WAIT,
        || async {
            placement(meta)
                .ok()
                .and_then(|(_, in_sync)| in_sync.then_some(()))
        },
        || async { format!("{:?}", placement(meta).ok()) },
    )
    .await?;

    let lost = lost(runner, bootstrap, &written.acks).await?;
    for l in &lost {
        eprintln!("[bench] acknowledged write lost in the {kind:?} of {name}: {l}");
    }
    let acks: Vec<Duration> = written
        .acks
        .iter()
        .map(|a| a.acked)
        .filter(|a| *a >= at)
        .collect();
    let first = *acks
        .first()
        .with_context(|| format!("no write acknowledged after {kind:?} of {name}"))?;
    // The longest gap from the disruption (counting as its start) to the first
    // acknowledgement after the pod was back: a crashed broker can be Ready again before
    // the controller has fenced it and writes resume elsewhere.
    let end = acks
        .iter()
        .copied()
        .find(|a| *a >= back_at)
        .or(acks.last().copied())
        .unwrap_or(first);
    let (mut previous, mut stall, mut resumed) = (at, Duration::ZERO, first);
    for &a in acks.iter().take_while(|a| **a <= end) {
        if a - previous > stall {
            (stall, resumed) = (a - previous, a);
        }
        previous = a;
    }
    if matches!(kind, Disruption::Kill) && stall < Duration::from_millis(100) {
        let of_partition = |views: &BTreeMap<i32, View>| -> Vec<(i32, Option<i32>, i32)> {
            views
                .iter()
                .filter_map(|(b, v)| {
                    let (_, leader, epoch, _) = v.iter().find(|(p, ..)| *p == partition)?;
                    Some((*b, *leader, *epoch))
                })
                .collect()
        };
        let around: Vec<(i64, u64)> = written
            .acks
            .iter()
            .filter(|a| a.acked + Duration::from_millis(20) >= at)
            .take(30)
            .map(|a| (a.offset, ms(a.acked.saturating_sub(at))))
            .collect();
        eprintln!(
            "[bench] warning: writes to partition {partition} did not stall when broker \
             {broker} was killed. (broker, leader, leader epoch) before: {:?}; after: {:?}; \
             acknowledged (offset, ms after the kill): {around:?}",
            of_partition(&views_before),
            broker_views(runner).await.ok().map(|v| of_partition(&v)),
        );
    }
    Ok(Trial {
        broker,
        partition,
        attempts: attempt,
        first_ack_ms: ms(first - at),
        resumed_ms: ms(resumed - at),
        stall_ms: ms(stall),
        back_ms: ms(back_at - at),
        lost: lost.len(),
        errors: written.errors.iter().filter(|(t, _)| *t >= at).count(),
    })
}

/// One acknowledged message: when it was sent and when it was acknowledged, since the
/// writer's epoch.
struct Ack {
    sent: Duration,
    acked: Duration,
    /// Where the leader said it wrote the message, and the message's number.
    partition: i32,
    offset: i64,
    index: usize,
}

/// What writers saw: acknowledgements, and failed deliveries with when they failed.
#[derive(Default)]
struct Written {
    acks: Vec<Ack>,
    errors: Vec<(Duration, String)>,
}

/// A sequential acks=all idempotent writer (one message in flight, `linger.ms` 0), like
/// `common::Writer`, but one that survives failed deliveries: each is recorded and the
/// next message goes out; a producer with a fatal error (idempotence broken) ends its task,
/// and [`Load::tend`] starts a new producer from the next message. `common::Writer` ends
/// at the first failed delivery, which would end the measurement with it.
struct Load {
    stop: CancellationToken,
    /// Messages acknowledged, over every producer.
    acked: Arc<AtomicUsize>,
    /// The next message's number, shared by successive producers.
    next: Arc<AtomicUsize>,
    partition: Option<i32>,
    epoch: Instant,
    task: JoinHandle<Written>,
    /// What the producers that ended saw.
    done: Written,
    /// Producers started after a fatal error.
    restarts: usize,
}

impl Load {
    fn start(
        runner: &PodRunner,
        bootstrap: &str,
        partition: Option<i32>,
        from: usize,
        epoch: Instant,
    ) -> Result<Load> {
        let stop = CancellationToken::new();
        let acked = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(from));
        let task = spawn_writer(
            writer_producer(runner, bootstrap)?,
            partition,
            epoch,
            stop.clone(),
            acked.clone(),
            next.clone(),
        );
        Ok(Load {
            stop,
            acked,
            next,
            partition,
            epoch,
            task,
            done: Written::default(),
            restarts: 0,
        })
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Replaces a producer that ended on a fatal error.
    async fn tend(&mut self, runner: &PodRunner, bootstrap: &str) -> Result<()> {
        if !self.task.is_finished() {
            return Ok(());
        }
        let ended = std::mem::replace(
            &mut self.task,
            spawn_writer(
                writer_producer(runner, bootstrap)?,
                self.partition,
                self.epoch,
                self.stop.clone(),
                self.acked.clone(),
                self.next.clone(),
            ),
        );
        // The task has finished, so this does not wait.
        let ended = ended.await.context("the writer task panicked")?;
        eprintln!(
            "[bench] writer restarted after a fatal error: {:?}",
            ended.errors.last().map(|(_, e)| e)
        );
        self.done.acks.extend(ended.acks);
        self.done.errors.extend(ended.errors);
        self.restarts += 1;
        Ok(())
    }

    async fn stop(mut self) -> Result<Written> {
        self.stop.cancel();
        let last = tokio::time::timeout(WAIT, self.task)
            .await
            .context("the writer did not stop")??;
        self.done.acks.extend(last.acks);
        self.done.errors.extend(last.errors);
        self.done.acks.sort_by_key(|a| a.acked);
        Ok(self.done)
    }
}

fn writer_producer(runner: &PodRunner, bootstrap: &str) -> Result<FutureProducer> {
    Ok(runner.with_cluster_dns(|| {
        client_config(
            bootstrap,
            &[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                // One message at a time: its latency is the broker's, not a batch's wait.
                ("linger.ms", "0"),
                // A delivery fails (and is counted) within a minute, inside every deadline.
                ("message.timeout.ms", "60000"),
            ],
        )
        .create()
    })??)
}

fn spawn_writer(
    producer: FutureProducer,
    partition: Option<i32>,
    epoch: Instant,
    stop: CancellationToken,
    acked: Arc<AtomicUsize>,
    next: Arc<AtomicUsize>,
) -> JoinHandle<Written> {
    tokio::spawn(async move {
        let mut written = Written::default();
        while !stop.is_cancelled() {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let (key, value) = (format!("k{i}"), common::payload(i));
            let mut record = FutureRecord::to(TOPIC).key(&key).payload(&value);
            record.partition = partition;
            let sent = epoch.elapsed();
            let delivery = tokio::select! {
                _ = stop.cancelled() => break,
                d = producer.send(record, Duration::from_secs(60)) => d,
            };
            match delivery {
                Ok(rdkafka::producer::future_producer::Delivery {
                    partition, offset, ..
                }) => {
                    written.acks.push(Ack {
                        sent,
                        acked: epoch.elapsed(),
                        partition,
                        offset,
                        index: i,
                    });
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Err((e, _)) => {
                    written
                        .errors
                        .push((epoch.elapsed(), format!("message {i}: {e}")));
                    if producer.client().fatal_error().is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        written
    })
}

/// Reads every acknowledged message of `acks` back at the offset its acknowledgement
/// named; returns the ones missing or different there (an acks=all write lost).
async fn lost(runner: &PodRunner, bootstrap: &str, acks: &[Ack]) -> Result<Vec<String>> {
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    use rdkafka::Message as _;
    // partition -> offset -> message number.
    let mut want: BTreeMap<i32, BTreeMap<i64, usize>> = BTreeMap::new();
    for a in acks {
        want.entry(a.partition)
            .or_default()
            .insert(a.offset, a.index);
    }
    if want.is_empty() {
        return Ok(Vec::new());
    }
    let consumer: StreamConsumer = runner.with_cluster_dns(|| {
        client_config(
            bootstrap,
            &[
                ("group.id", "bench-read-back"),
                ("enable.auto.commit", "false"),
            ],
        )
        .create()
    })??;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for (partition, offsets) in &want {
        let first = *offsets.keys().next().context("empty offsets")?;
        assignment.add_partition_offset(TOPIC, *partition, rdkafka::Offset::Offset(first))?;
    }
    consumer.assign(&assignment)?;
    // partition -> the last offset to read.
    let mut left: BTreeMap<i32, i64> = want
        .iter()
        .filter_map(|(p, offsets)| Some((*p, *offsets.keys().next_back()?)))
        .collect();
    let mut seen: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while !left.is_empty() {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Ok(message) = tokio::time::timeout(wait, consumer.recv()).await else {
            break;
        };
        let message = match message {
            Ok(m) => m,
            // Client notices, not the end of the read: a broker name that no longer
            // resolves (the Metadata of a scaled-in cluster still lists its removed
            // brokers), a connection a broker closed.
            Err(e) => {
                eprintln!("[bench] reading back: {e}");
                continue;
            }
        };
        let (p, offset) = (message.partition(), message.offset());
        seen.insert(
            (p, offset),
            String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
        );
        if left.get(&p).is_some_and(|last| offset >= *last) {
            left.remove(&p);
        }
    }
    let mut lost = Vec::new();
    for (p, offsets) in &want {
        for (offset, index) in offsets {
            let expected = common::payload(*index);
            match seen.get(&(*p, *offset)) {
                Some(v) if *v == expected => {}
                other => lost.push(format!(
                    "{TOPIC}-{p}@{offset}: acknowledged {expected:?}, read {other:?}"
                )),
            }
        }
    }
    Ok(lost)
}

/// Whether `cluster`'s condition `type_` has `status` (and `reason`) in a status written
/// for its latest generation.
fn condition_is(cluster: &Cluster, type_: &str, status: &str, reason: Option<&str>) -> bool {
    let Some(s) = cluster.status.as_ref() else {
        return false;
    };
    s.observed_generation == cluster.metadata.generation
        && find(&s.conditions, type_)
            .is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
}

fn pod_name(broker: i32) -> String {
    format!("{CLUSTER}-{broker}")
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}

fn selector() -> ListParams {
    ListParams::default().labels(&format!("app.kubernetes.io/instance={CLUSTER}"))
}

/// The names of the Cluster's Ready pods.
async fn ready_pods(pods: &Api<Pod>) -> Result<BTreeSet<String>> {
    Ok(pods
        .list(&selector())
        .await?
        .items
        .iter()
        .filter(|p| pod_is_ready(p))
        .map(|p| p.name_any())
        .collect())
}

/// The uids of the Cluster's pods.
async fn pod_uids(pods: &Api<Pod>) -> Result<BTreeSet<String>> {
    Ok(pods
        .list(&selector())
        .await?
        .items
        .iter()
        .filter_map(|p| p.uid())
        .collect())
}

/// Which brokers hold replicas of the topic, and whether every partition's ISR is full, as
/// the brokers' Metadata says.
fn placement(meta: &FutureProducer) -> Result<(BTreeSet<i32>, bool)> {
    let metadata = meta
        .client()
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))?;
    let topic = metadata.topics().first().context("no topic in Metadata")?;
    ensure!(
        topic.partitions().len() == PARTITIONS as usize,
        "Metadata lists {} partitions",
        topic.partitions().len()
    );
    let mut holders = BTreeSet::new();
    let mut in_sync = true;
    for p in topic.partitions() {
        holders.extend(p.replicas().iter().copied());
        in_sync &= p.leader() >= 0 && p.isr().len() == p.replicas().len();
    }
    Ok((holders, in_sync))
}

/// One broker's answer to Metadata for the topic: per partition (sorted), its leader, leader
/// epoch and whether its ISR is full.
type View = Vec<(i32, Option<i32>, i32, bool)>;

/// Every broker's own view of the topic, each asked directly at its pod IP (the bench's
/// threads do not see the cluster's DNS names; the admin client asks the address it
/// connected to first).
async fn broker_views(runner: &PodRunner) -> Result<BTreeMap<i32, View>> {
    let mut views = BTreeMap::new();
    for broker in 0..3 {
        let ip = runner
            .pod_ip(&pod_name(broker))
            .with_context(|| format!("no IP for {}", pod_name(broker)))?;
        let admin = Admin::connect(&format!("{ip}:9092")).await?;
        let topic = admin
            .describe_topic(TOPIC)
            .await?
            .with_context(|| format!("broker {broker} does not know {TOPIC}"))?;
        let view = topic
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    p.isr.len() == p.replicas.len(),
                )
            })
            .collect();
        views.insert(broker, view);
    }
    Ok(views)
}

/// A partition to disrupt and its leader, once every broker reports the same leaders and
/// full ISRs: of the brokers that lead a partition, the one disrupted longest ago (`last`:
/// broker -> trial number), so the trials spread over the brokers and no pod is SIGKILLed
/// again while the runner's crash back-off for it is still raised; and the lowest
/// partition it leads. Also returns how long the brokers took to agree.
async fn pick(
    runner: &PodRunner,
    meta: &FutureProducer,
    last: &BTreeMap<i32, usize>,
) -> Result<(i32, i32, Duration)> {
    let started = Instant::now();
    let view = wait_until(
        "every broker to report the same leaders and full ISRs",
        WAIT,
        || async {
            let views = broker_views(runner).await.ok()?;
            let first = views.values().next()?.clone();
            (views.values().all(|v| *v == first)
                && first
                    .iter()
                    .all(|(_, leader, _, full)| leader.is_some() && *full))
            .then_some(first)
        },
        || async { format!("{:?}", broker_views(runner).await) },
    )
    .await?;
    let agreed = started.elapsed();
    let (partition, broker) = view
        .iter()
        .filter_map(|(partition, leader, _, _)| Some((*partition, (*leader)?)))
        .min_by_key(|(partition, broker)| (last.get(broker), *broker, *partition))
        .context("no partition has a leader")?;
    // What a client's Metadata says (librdkafka asks one broker of its choice).
    let metadata = meta
        .client()
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))?;
    let said = metadata
        .topics()
        .first()
        .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
        .map(|p| p.leader());
    if said != Some(broker) {
        eprintln!(
            "[bench] the brokers agree that {broker} leads partition {partition};              librdkafka's Metadata said {said:?}"
        );
    }
    Ok((partition, broker, agreed))
}

/// The sum of the topic's high watermarks.
fn high_watermarks(meta: &FutureProducer) -> Result<i64> {
    let mut total = 0;
    for p in 0..PARTITIONS {
        let (low, high) = meta
            .client()
            .fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        ensure!(low == 0, "partition {p} starts at {low}");
        total += high;
    }
    Ok(total)
}

/// The machine's load averages, `/proc/loadavg`'s first three fields: on a shared machine,
/// whether something else ran during the bench.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The `q` quantile (nearest rank) of `values`.
fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median_ms(values: impl Iterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = values.collect();
    v.sort();
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

impl Report {
    fn print(&self) {
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "-".into()
            }
        };
        let row = |what: &str, measured: f64, baseline: Option<f64>, decimals: usize| {
            println!(
                "| {what} | {measured:.decimals$} | {} | {} |",
                baseline.map_or("".into(), |b| format!("{b:.decimals$}")),
                baseline.map_or("".into(), |b| ratio(measured, b)),
            );
        };
        let s = |d: Duration| d.as_secs_f64();
        let msf = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("\n| what | measured | baseline | ratio |");
        println!("|---|--:|--:|--:|");
        row(
            "Cluster applied -> Ready (3 brokers), s; baseline: -> 3 pods Ready",
            s(self.ready),
            Some(s(self.pods_ready)),
            2,
        );
        row(
            "brokers 3 -> 5 -> replicas on all 5, every ISR full, Scaling settled, s; \
             baseline: -> 2 new pods Ready",
            s(self.scale_out),
            Some(s(self.new_pods_ready)),
            2,
        );
        row(
            "brokers 5 -> 3 -> drained, StatefulSet shrunk, pods gone, Scaling settled, s",
            s(self.scale_in),
            None,
            2,
        );
        row(
            "of which draining (until the operator shrinks the StatefulSet), s",
            s(self.scale_in_shrunk),
            None,
            2,
        );
        row(
            "roll of 3 brokers under load -> every pod new, Ready, Rolling UpToDate, s; \
             baseline: sum over the pods of old one going -> new one Ready",
            s(self.roll),
            Some(s(self.roll_pods)),
            2,
        );
        row(
            "produce p50 (acks=all, sequential), ms: during the roll; baseline: steady",
            msf(quantile(&self.roll_latency, 0.5)),
            Some(msf(quantile(&self.steady_latency, 0.5))),
            1,
        );
        row(
            "produce p99, ms: during the roll; baseline: steady",
            msf(quantile(&self.roll_latency, 0.99)),
            Some(msf(quantile(&self.steady_latency, 0.99))),
            1,
        );
        row(
            "produce max, ms: during the roll; baseline: steady",
            msf(quantile(&self.roll_latency, 1.0)),
            Some(msf(quantile(&self.steady_latency, 1.0))),
            1,
        );
        println!(
            "| messages acknowledged: during the roll; baseline: steady | {} | {} | |",
            self.roll_latency.len(),
            self.steady_latency.len()
        );
        println!(
            "| delivery errors (goal 0): during the roll; baseline: steady | {} | {} | |",
            self.roll_errors.len(),
            self.steady_errors
        );
        let trials = |t: &[Trial], f: fn(&Trial) -> u64| {
            (
                median_ms(t.iter().map(f)) as f64 / 1000.0,
                t.iter().map(f).max().unwrap_or(0) as f64 / 1000.0,
            )
        };
        for (what, f) in [
            (
                "leader's pod -> writes resumed (end of the longest ack gap)",
                (|t: &Trial| t.resumed_ms) as fn(&Trial) -> u64,
            ),
            ("leader's pod -> first ack after it", |t: &Trial| {
                t.first_ack_ms
            }),
            ("longest ack gap", |t: &Trial| t.stall_ms),
            ("leader's pod -> pod Ready again", |t: &Trial| t.back_ms),
        ] {
            let (deleted_median, deleted_max) = trials(&self.deleted, f);
            let (killed_median, killed_max) = trials(&self.killed, f);
            row(
                &format!("{what}, median s: deleted (goal <= 2 s); baseline: SIGKILL"),
                deleted_median,
                Some(killed_median),
                2,
            );
            row(
                &format!("{what}, max s: deleted; baseline: SIGKILL"),
                deleted_max,
                Some(killed_max),
                2,
            );
        }
        println!(
            "| acknowledged writes not read back: roll (steady window and roll) | {} | | |",
            self.roll_lost.len()
        );
        println!(
            "| acknowledged writes not read back in the trials: deleted; baseline: SIGKILL \
             | {} | {} | |",
            self.deleted.iter().map(|t| t.lost).sum::<usize>(),
            self.killed.iter().map(|t| t.lost).sum::<usize>()
        );
        println!(
            "| delivery errors in the trials: deleted; baseline: SIGKILL | {} | {} | |",
            self.deleted.iter().map(|t| t.errors).sum::<usize>(),
            self.killed.iter().map(|t| t.errors).sum::<usize>()
        );
        for (kind, trials) in [("deleted", &self.deleted), ("SIGKILL", &self.killed)] {
            let each: Vec<String> = trials
                .iter()
                .map(|t| {
                    format!(
                        "broker {} (partition {}) {}/{}/{}/{}",
                        t.broker, t.partition, t.resumed_ms, t.first_ack_ms, t.stall_ms, t.back_ms
                    )
                })
                .collect();
            println!(
                "\n{kind}, per trial (resumed/first ack/longest gap/pod back, ms): {}",
                each.join(", ")
            );
        }
        println!(
            "\n{} deletion and {} SIGKILL trials, alternating; steady window {:.1} s, roll \
             {:.1} s; writers restarted after a fatal error during the roll: {}; trials that \
             picked again because the leader moved before the disruption: {}.",
            self.deleted.len(),
            self.killed.len(),
            s(self.steady),
            s(self.roll),
            self.roll_restarts,
            self.deleted
                .iter()
                .chain(&self.killed)
                .filter(|t| t.attempts > 1)
                .count()
        );
    }
}
