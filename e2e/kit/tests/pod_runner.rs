//! The pod runner plays the kubelet for a hand-written StatefulSet of three real brokers
//! (independent of the operator): the pods are scheduled, run and become Ready, a real
//! librdkafka client produces and consumes through the bootstrap Service's name, a deleted
//! pod is stopped with SIGTERM and comes back with its data, a killed broker is restarted
//! and counted, a broker failing its liveness probe is restarted, and dropping the runner
//! kills every broker.
//!
//! Run alone with `cargo build -p tributary --bin tributary && cargo nextest run -p
//! tributary-e2e-kit --test pod_runner` (as root: mount namespaces).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tributary_e2e_kit::pod_runner::ExitCause;
use tributary_e2e_kit::{broker_binary, PodRunner, RunnerOptions, TestEnv};

const NS: &str = "runner";
const STS: &str = "tb";
const HEADLESS: &str = "tb-headless";
const BOOTSTRAP: &str = "tb-bootstrap";
const TOPIC: &str = "events";
const PARTITIONS: i32 = 3;

/// The broker configuration every pod mounts at /etc/tributary.
fn broker_properties() -> String {
    let voters: Vec<String> = (0..3)
        .map(|i| format!("{i}@{STS}-{i}.{HEADLESS}.{NS}.svc:9093"))
        .collect();
    format!(
        "listeners=PLAINTEXT://0.0.0.0:9092\n\
         controller.quorum.voters={}\n\
         log.dirs=/var/lib/tributary/data\n\
         num.partitions={PARTITIONS}\n\
         default.replication.factor=3\n\
         min.insync.replicas=2\n\
         offsets.topic.replication.factor=3\n\
         offsets.topic.num.partitions=3\n\
         auto.create.topics.enable=false\n",
        voters.join(",")
    )
}

/// A namespace, the ConfigMap, a headless and a bootstrap Service, and a StatefulSet of
/// three brokers as `docs/operations.md` describes it, with readiness on `/readyz`.
fn manifests() -> String {
    let properties: String = broker_properties()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: tb-config
  namespace: {NS}
data:
  broker.properties: |
{properties}---
apiVersion: v1
kind: Service
metadata:
  name: {HEADLESS}
  namespace: {NS}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {{app: tb}}
  ports:
    - {{name: kafka, port: 9092}}
    - {{name: controller, port: 9093}}
---
apiVersion: v1
kind: Service
metadata:
  name: {BOOTSTRAP}
  namespace: {NS}
spec:
  selector: {{app: tb}}
  ports:
    - {{name: kafka, port: 9092, targetPort: kafka}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {STS}
  namespace: {NS}
spec:
  serviceName: {HEADLESS}
  replicas: 3
  podManagementPolicy: Parallel
  selector:
    matchLabels: {{app: tb}}
  template:
    metadata:
      labels: {{app: tb, runner-test: "yes"}}
    spec:
      terminationGracePeriodSeconds: 60
      containers:
        - name: broker
          image: ghcr.io/tributary-dev/tributary:test
          args: ["broker", "--config", "/etc/tributary/broker.properties"]
          env:
            - name: POD_NAME
              valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
            - name: TRIBUTARY_NODE_ID
              valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['apps.kubernetes.io/pod-index']"}}}}
            - name: TRIBUTARY_ADVERTISED_LISTENERS
              value: PLAINTEXT://$(POD_NAME).{HEADLESS}.{NS}.svc:9092
          ports:
            - {{name: kafka, containerPort: 9092}}
            - {{name: controller, containerPort: 9093}}
            - {{name: http, containerPort: 9644}}
          readinessProbe:
            httpGet: {{path: /readyz, port: http}}
            periodSeconds: 1
            failureThreshold: 2
          livenessProbe:
            tcpSocket: {{port: kafka}}
            initialDelaySeconds: 5
            periodSeconds: 2
            failureThreshold: 10
          volumeMounts:
            - {{name: config, mountPath: /etc/tributary}}
            - {{name: data, mountPath: /var/lib/tributary}}
      volumes:
        - name: config
          configMap: {{name: tb-config}}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources: {{requests: {{storage: 1Gi}}}}
"#
    )
}

/// Polls CHECK every 200 ms until it returns Some, for at most TIMEOUT.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pods of the StatefulSet by name, once all three are Ready.
async fn all_ready(pods: &Api<Pod>) -> Result<Option<BTreeMap<String, Pod>>> {
    let list = pods.list(&ListParams::default().labels("app=tb")).await?;
    let ready: BTreeMap<String, Pod> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
        .collect();
    Ok((ready.len() == 3).then_some(ready))
}

async fn ready_replicas(client: &Client) -> Result<Option<()>> {
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS)
        .get(STS)
        .await?;
    let ready = sts.status.and_then(|s| s.ready_replicas).unwrap_or(0);
    Ok((ready == 3).then_some(()))
}

/// PID is running (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The environment of process PID.
fn environ(pid: u32) -> Result<BTreeMap<String, String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(raw
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect())
}

fn kubectl_apply(env: &TestEnv, yaml: &str) -> Result<()> {
    let mut child = env
        .command("kubectl")
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("kubectl's stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The output of ARGS run in the mount and UTS namespaces of process PID.
fn in_pod(pid: u32, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("nsenter")
        .args(["--mount", "--uts", "--target", &pid.to_string(), "--"])
        .args(args)
        .output()
        .context("running nsenter")?;
    ensure!(
        out.status.success(),
        "{args:?} in pid {pid}'s namespaces: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// librdkafka settings for the cluster, through the bootstrap Service's name.
fn kafka_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", format!("{BOOTSTRAP}.{NS}.svc:9092"))
        .set("socket.timeout.ms", "10000")
        .set("topic.metadata.refresh.interval.ms", "1000");
    config
}

/// Produces COUNT messages `FIRST..FIRST+COUNT` with acks=all.
async fn produce(producer: &FutureProducer, first: usize, count: usize) -> Result<()> {
    for i in first..first + count {
        let key = format!("k{i}");
        let value = format!("message {i}");
        producer
            .send(
                FutureRecord::to(TOPIC).key(&key).payload(&value),
                Duration::from_secs(60),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing message {i}: {e}"))?;
    }
    Ok(())
}

/// Reads every partition from the beginning until COUNT messages have come, and checks
/// they are exactly messages 0..COUNT.
async fn consume_all(runner: &PodRunner, count: usize) -> Result<()> {
    let consumer: StreamConsumer = runner.with_cluster_dns(|| {
        kafka_config()
            .set("group.id", "pod-runner-test")
            .set("enable.auto.commit", "false")
            .create()
    })??;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .with_context(|| format!("consumed {} of {count} messages in 60 s", seen.len()))??;
        let payload = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        seen.insert(payload);
    }
    let want: BTreeSet<String> = (0..count).map(|i| format!("message {i}")).collect();
    ensure!(seen == want, "consumed {seen:?}, want messages 0..{count}");
    Ok(())
}

/// The container status of pod NAME.
async fn container_status(
    pods: &Api<Pod>,
    name: &str,
) -> Result<Option<k8s_openapi::api::core::v1::ContainerStatus>> {
    Ok(pods
        .get_opt(name)
        .await?
        .and_then(|p| p.status)
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_of_brokers_runs_restarts_and_keeps_its_data() -> Result<()> {
    let env = tokio::task::spawn_blocking(TestEnv::start).await??;
    let client = env.client().await?;
    let runner = PodRunner::start(
        &env,
        RunnerOptions::new(NS, broker_binary()?).selector("runner-test=yes"),
    )?;
    let result = phases(&env, &client, &runner).await;
    if result.is_err() {
        runner.print_logs(150);
        return result;
    }

    // Dropping the runner kills every broker it started.
    let pids: Vec<u32> = ["tb-0", "tb-1", "tb-2", "liveness"]
        .iter()
        .filter_map(|pod| runner.pid(pod))
        .collect();
    ensure!(pids.len() == 4, "four brokers run: {pids:?}");
    drop(runner);
    let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    ensure!(left.is_empty(), "brokers {left:?} outlived the runner");
    Ok(())
}

async fn phases(env: &TestEnv, client: &Client, runner: &PodRunner) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    kubectl_apply(env, &manifests())?;

    // The node is registered Ready with a Lease.
    let node = Api::<Node>::all(client.clone())
        .get(runner.node_name())
        .await?;
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    ensure!(ready, "node {} is not Ready", runner.node_name());
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .get(runner.node_name())
        .await
        .context("the node's Lease")?;

    eprintln!("phase: the StatefulSet's three pods become Ready");
    let ready = poll("three Ready pods", Duration::from_secs(120), || {
        all_ready(&pods)
    })
    .await?;
    poll("readyReplicas 3", Duration::from_secs(30), || {
        ready_replicas(client)
    })
    .await?;
    let mut ips = BTreeSet::new();
    for (name, pod) in &ready {
        let status = pod.status.as_ref().context("status")?;
        let ip = runner.pod_ip(name).context("runner knows the pod")?;
        ensure!(status.pod_ip.as_deref() == Some(ip.to_string().as_str()));
        ensure!(
            ip.is_loopback() && ips.insert(ip),
            "pod IPs: {ips:?} and {ip}"
        );
        ensure!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(runner.node_name()));
    }
    // The DNS names resolve to the pods (the runner's watch may trail the list above).
    poll(
        "the pods' and Services' names",
        Duration::from_secs(10),
        || async {
            let pods_resolve = ready.keys().all(|name| {
                let ip = runner.pod_ip(name);
                let fqdn = format!("{name}.{HEADLESS}.{NS}.svc");
                runner.resolve(&fqdn) == ip
                    && runner.resolve(&format!("{fqdn}.cluster.local")) == ip
            });
            let bootstrap = runner
                .resolve(&format!("{BOOTSTRAP}.{NS}.svc"))
                .is_some_and(|ip| ips.contains(&ip));
            Ok((pods_resolve && bootstrap).then_some(()))
        },
    )
    .await?;

    // What broker tb-1 sees: its ConfigMap, its claim, its environment, its host name.
    let pid = runner.pid("tb-1").context("tb-1 runs")?;
    let root = Path::new("/proc").join(pid.to_string()).join("root");
    let properties = std::fs::read_to_string(root.join("etc/tributary/broker.properties"))
        .context("the ConfigMap's file in the pod")?;
    ensure!(properties == broker_properties(), "mounted: {properties}");
    ensure!(
        !Path::new("/etc/tributary").exists(),
        "the machine's /etc is untouched"
    );
    ensure!(
        root.join("usr/local/bin/tributary").is_file(),
        "the image's binary"
    );
    let hosts = std::fs::read_to_string(root.join("etc/hosts")).context("the pod's /etc/hosts")?;
    ensure!(
        hosts.contains(&format!("tb-0.{HEADLESS}.{NS}.svc ")),
        "{hosts}"
    );
    ensure!(
        runner.claim_dir("data-tb-1").join("data").is_dir(),
        "the broker's log.dirs is in its claim's directory"
    );
    let vars = environ(pid)?;
    let ip = runner.pod_ip("tb-1").context("tb-1's IP")?;
    let want = [
        ("TRIBUTARY_NODE_ID", "1".to_string()),
        (
            "TRIBUTARY_ADVERTISED_LISTENERS",
            format!("PLAINTEXT://tb-1.{HEADLESS}.{NS}.svc:9092"),
        ),
        ("TRIBUTARY_LISTENERS", format!("PLAINTEXT://{ip}:9092")),
        ("TRIBUTARY_CONTROLLER_LISTENER", format!("{ip}:9093")),
        ("TRIBUTARY_HTTP_LISTENER", format!("{ip}:9644")),
        ("HOSTNAME", "tb-1".to_string()),
    ];
    for (key, value) in want {
        ensure!(
            vars.get(key) == Some(&value),
            "{key}={:?}, want {value}",
            vars.get(key)
        );
    }
    ensure!(
        vars.contains_key("TB_BOOTSTRAP_SERVICE_HOST"),
        "service links"
    );
    ensure!(in_pod(pid, &["hostname"])? == "tb-1");
    // The API server's `kube-api-access-*` projected volume: a token bound to the pod. (Read
    // through nsenter: /var/run is a symlink to /run here, and /proc/PID/root resolves
    // absolute symlinks against the reader's root.)
    let account = "/var/run/secrets/kubernetes.io/serviceaccount";
    ensure!(in_pod(pid, &["cat", &format!("{account}/namespace")])? == NS);
    ensure!(!in_pod(pid, &["cat", &format!("{account}/token")])?.is_empty());
    ensure!(
        !Path::new("/var/run/secrets/kubernetes.io").exists(),
        "the machine's /var/run is untouched"
    );

    eprintln!("phase: produce and consume through {BOOTSTRAP}.{NS}.svc");
    let (admin, producer) = runner.with_cluster_dns(|| -> Result<_> {
        let admin: AdminClient<DefaultClientContext> = kafka_config().create()?;
        let producer: FutureProducer = kafka_config()
            .set("acks", "all")
            .set("message.timeout.ms", "60000")
            .create()?;
        Ok((admin, producer))
    })??;
    let created = admin
        .create_topics(
            &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for result in created {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    produce(&producer, 0, 100).await?;
    // The brokers advertise their pod DNS names, which the client resolved.
    let metadata = {
        let producer = producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        })
        .await??
    };
    let hosts: BTreeMap<i32, String> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string()))
        .collect();
    let want: BTreeMap<i32, String> = (0..3)
        .map(|i| (i, format!("tb-{i}.{HEADLESS}.{NS}.svc")))
        .collect();
    ensure!(hosts == want, "brokers {hosts:?}");
    consume_all(runner, 100).await?;

    eprintln!("phase: a deleted pod stops on SIGTERM and comes back with its data");
    let old_uid = runner.pod_uid("tb-1").context("tb-1's uid")?;
    let old_ip = runner.pod_ip("tb-1").context("tb-1's IP")?;
    std::fs::write(runner.claim_dir("data-tb-1").join("marker"), "before")?;
    pods.delete("tb-1", &DeleteParams::default()).await?;
    let exit = poll("tb-1's broker to stop", Duration::from_secs(70), || async {
        Ok(runner
            .exits("tb-1")
            .into_iter()
            .find(|e| e.uid == old_uid && e.cause == ExitCause::PodDeleted))
    })
    .await?;
    ensure!(
        exit.exit_code == 0 && exit.signal.is_none(),
        "a clean shutdown on SIGTERM: {exit:?}"
    );
    let ready = poll(
        "tb-1 re-created and Ready",
        Duration::from_secs(120),
        || async {
            Ok(all_ready(&pods)
                .await?
                .filter(|r| r["tb-1"].metadata.uid.as_deref() != Some(old_uid.as_str())))
        },
    )
    .await?;
    let new_pid = runner.pid("tb-1").context("tb-1 runs again")?;
    let new_ip = runner.pod_ip("tb-1").context("tb-1's new IP")?;
    ensure!(
        new_pid != pid && new_ip != old_ip,
        "a new process at a new IP"
    );
    let new_uid = ready["tb-1"].metadata.uid.clone().unwrap_or_default();
    ensure!(runner.pod_uid("tb-1") == Some(new_uid));
    let marker = Path::new("/proc")
        .join(new_pid.to_string())
        .join("root/var/lib/tributary/marker");
    ensure!(
        std::fs::read_to_string(&marker).ok().as_deref() == Some("before"),
        "the re-created pod has its claim's data"
    );
    ensure!(
        runner
            .claim_dir("data-tb-1")
            .join(format!("data/{TOPIC}-0"))
            .is_dir(),
        "the partition's log is still there"
    );
    poll(
        "tb-1's new address in DNS",
        Duration::from_secs(10),
        || async {
            Ok(
                (runner.resolve(&format!("tb-1.{HEADLESS}.{NS}.svc")) == Some(new_ip))
                    .then_some(()),
            )
        },
    )
    .await?;
    poll("readyReplicas 3 again", Duration::from_secs(30), || {
        ready_replicas(client)
    })
    .await?;
    consume_all(runner, 100).await?;

    eprintln!("phase: a killed broker is restarted and counted");
    let killed_pid = runner.pid("tb-2").context("tb-2 runs")?;
    runner.kill("tb-2")?;
    let status = poll(
        "tb-2 restarted and Ready",
        Duration::from_secs(90),
        || async {
            let status = container_status(&pods, "tb-2").await?;
            Ok(status.filter(|s| s.restart_count == 1 && s.ready))
        },
    )
    .await?;
    let terminated = status
        .last_state
        .and_then(|s| s.terminated)
        .context("lastState.terminated")?;
    ensure!(terminated.exit_code == 137, "{terminated:?}");
    ensure!(terminated.signal == Some(9), "{terminated:?}");
    let exits = runner.exits("tb-2");
    ensure!(
        matches!(exits.as_slice(), [e] if e.pid == killed_pid && e.cause == ExitCause::Exited && e.signal == Some(9)),
        "{exits:?}"
    );
    ensure!(runner.pid("tb-2").is_some_and(|p| p != killed_pid));
    produce(&producer, 100, 10).await?;
    consume_all(runner, 110).await?;

    eprintln!("phase: a pod that fails its liveness probe is restarted");
    kubectl_apply(env, &liveness_pod())?;
    let status = poll("the liveness restart", Duration::from_secs(60), || async {
        let status = container_status(&pods, "liveness").await?;
        Ok(status.filter(|s| s.restart_count >= 1))
    })
    .await?;
    let exits = runner.exits("liveness");
    ensure!(
        exits
            .first()
            .is_some_and(|e| e.cause == ExitCause::LivenessProbe),
        "{exits:?} {status:?}"
    );
    Ok(())
}

/// A lone pod (no controller) running a standalone `tributary dev` broker whose liveness
/// probe can never pass.
fn liveness_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: liveness
  namespace: {NS}
  labels: {{app: liveness, runner-test: "yes"}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
    - name: broker
      image: ghcr.io/tributary-dev/tributary:test
      args: ["dev", "--data-dir", "/var/lib/tributary/data"]
      livenessProbe:
        tcpSocket: {{port: 1}}
        periodSeconds: 1
        failureThreshold: 2
      volumeMounts:
        - {{name: data, mountPath: /var/lib/tributary}}
  volumes:
    - name: data
      emptyDir: {{}}
"#
    )
}
