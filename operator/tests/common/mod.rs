//! What the operator's tests share: a real API server with the CRDs installed
//! ([`Bed::start`]), real brokers (`tributary dev --brokers N`, separate processes), the
//! operator binary as a process, and polling with a deadline.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use tributary_e2e_kit::TestEnv;
use tributary_operator::crd::cluster::ClusterSpec;
use tributary_operator::crd::Cluster;

/// The namespace every test works in.
pub const NS: &str = "default";

/// A test API server with the CRDs applied, and a client for it.
pub struct Bed {
    pub env: TestEnv,
    pub client: Client,
}

impl Bed {
    /// Starts etcd, kube-apiserver and kube-controller-manager, and installs the CRDs from
    /// `crds/` (the same files the chart installs).
    pub async fn start() -> Result<Bed> {
        let env = tokio::task::spawn_blocking(TestEnv::start).await??;
        let crds = tributary_e2e_kit::repo_root().join("crds");
        let out = env.kubectl([
            "apply",
            "--server-side",
            "-f",
            crds.to_str().context("crds path")?,
        ])?;
        if !out.status.success() {
            bail!(
                "applying the CRDs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = env.kubectl([
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ])?;
        if !out.status.success() {
            bail!(
                "the CRDs were not established: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let kubeconfig = Kubeconfig::read_from(&env.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let client = Client::try_from(config)?;
        Ok(Bed { env, client })
    }

    /// Creates a managed `Cluster` named `name` from `spec`, with `annotations`.
    pub async fn managed_cluster(
        &self,
        name: &str,
        spec: ClusterSpec,
        annotations: &[(&str, &str)],
    ) -> Result<Cluster> {
        let mut cluster = Cluster::new(name, spec);
        if !annotations.is_empty() {
            cluster.metadata.annotations = Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        }
        Ok(Api::<Cluster>::namespaced(self.client.clone(), NS)
            .create(&PostParams::default(), &cluster)
            .await?)
    }

    /// `kubectl apply --dry-run=server -f path`: the API server's verdict on a file.
    pub fn dry_run_apply(&self, path: &std::path::Path) -> Result<String> {
        let out = self.env.kubectl([
            "apply",
            "--dry-run=server",
            "-n",
            NS,
            "-f",
            path.to_str().context("non-UTF-8 path")?,
        ])?;
        if !out.status.success() {
            bail!(
                "{} was refused: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a `Cluster` named `name` pointing at `bootstrap`.
    pub async fn cluster(&self, name: &str, bootstrap: &str) -> Result<Cluster> {
        let cluster = Cluster::new(name, ClusterSpec::external(bootstrap));
        Ok(Api::<Cluster>::namespaced(self.client.clone(), NS)
            .create(&PostParams::default(), &cluster)
            .await?)
    }
}

/// `tributary dev --brokers N`: N broker processes on free loopback ports.
pub struct Brokers {
    child: Child,
    pub bootstrap: String,
    data: tempfile::TempDir,
}

impl Brokers {
    pub fn start(count: usize) -> Result<Brokers> {
        let data = tempfile::tempdir()?;
        let kafka = free_port_range(count)?;
        let mut grpc = free_port_range(count)?;
        while grpc.abs_diff(kafka) < count as u16 {
            grpc = free_port_range(count)?;
        }
        let mut child = Command::new(tributary_binary()?)
            .args(["dev", "--brokers", &count.to_string()])
            .args(["--port", &kafka.to_string()])
            .args(["--controller-port", &grpc.to_string()])
            .arg("--data-dir")
            .arg(data.path())
            // Producers asking for a topic before its Topic resource is reconciled must not
            // create it with the broker defaults.
            .args(["--override", "auto.create.topics.enable=false"])
            .env("TRIBUTARY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(b) = line.strip_prefix("bootstrap: ") {
                    let _ = tx.send(b.trim().to_string());
                }
            }
        });
        let bootstrap = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                bail!("tributary dev --brokers {count} did not print its bootstrap in 60 s");
            }
        };
        Ok(Brokers {
            child,
            bootstrap,
            data,
        })
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        // SIGTERM: `dev` stops the brokers it started, then exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // A dev cluster that did not stop: kill its brokers by the pids it recorded.
        if let Ok(text) = std::fs::read_to_string(self.data.path().join("cluster.json")) {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
                for b in json["brokers"].as_array().into_iter().flatten() {
                    if let Some(pid) = b["pid"].as_u64() {
                        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                    }
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator binary, running against a test API server.
pub struct Operator {
    child: Child,
}

impl Operator {
    /// Starts `tributary-operator` with `extra` flags.
    pub fn start(env: &TestEnv, identity: &str, extra: &[&str]) -> Result<Operator> {
        // Short intervals, so drift and lag show up quickly, unless `extra` sets its own.
        let mut args: Vec<&str> = extra.to_vec();
        for (flag, value) in [
            ("--topic-resync-interval", "2s"),
            ("--group-refresh-interval", "1s"),
            ("--cluster-refresh-interval", "2s"),
        ] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        let child = Command::new(env!("CARGO_BIN_EXE_tributary-operator"))
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["--lease-namespace", NS, "--identity", identity])
            .args(&args)
            .env("KUBECONFIG", &env.kubeconfig)
            .env("LOG_LEVEL", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Operator { child })
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9, as a node failure or an OOM kill would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the operator did not stop within 30 s of SIGTERM")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API server's message for a refused request; panics when it was accepted.
pub fn refusal<T: std::fmt::Debug>(result: std::result::Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(e)) => e.message,
        other => panic!("expected the API server to refuse, got {other:?}"),
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout` naming `what` and the
/// last value `last` gives (what was seen instead).
pub async fn wait_until<T, F, Fut, L, LFut>(
    what: &str,
    timeout: Duration,
    check: F,
    last: L,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
    L: FnOnce() -> LFut,
    LFut: std::future::Future<Output = String>,
{
    match wait_for(what, timeout, check).await {
        Ok(value) => Ok(value),
        Err(e) => bail!("{e}; last seen: {}", last().await),
    }
}

/// The `tributary` broker binary of this build (`target/<profile>/tributary`).
fn tributary_binary() -> Result<PathBuf> {
    // The test executable is target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable location")?;
    let binary = profile_dir.join("tributary");
    if !binary.exists() {
        bail!(
            "{} is missing: build it first with `cargo build -p tributary`",
            binary.display()
        );
    }
    Ok(binary)
}

/// A base port such that `count` consecutive ports from it are free on 127.0.0.1.
fn free_port_range(count: usize) -> Result<u16> {
    for _ in 0..100 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        let base = probe.local_addr()?.port();
        drop(probe);
        if base as usize + count >= u16::MAX as usize {
            continue;
        }
        let free =
            (0..count as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return Ok(base);
        }
    }
    bail!("no {count} consecutive free ports found")
}

/// A resource whose status carries conditions and the generation they describe.
pub trait Conditioned: kube::Resource {
    fn conditions(&self) -> Option<&[tributary_operator::crd::Condition]>;
    fn observed_generation(&self) -> Option<i64>;
}

impl Conditioned for Cluster {
    fn conditions(&self) -> Option<&[tributary_operator::crd::Condition]> {
        self.status.as_ref().map(|s| s.conditions.as_slice())
    }
    fn observed_generation(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }
}

impl Conditioned for tributary_operator::crd::topic::Topic {
    fn conditions(&self) -> Option<&[tributary_operator::crd::Condition]> {
        self.status.as_ref().map(|s| s.conditions.as_slice())
    }
    fn observed_generation(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }
}

impl Conditioned for tributary_operator::crd::consumer_group::ConsumerGroup {
    fn conditions(&self) -> Option<&[tributary_operator::crd::Condition]> {
        self.status.as_ref().map(|s| s.conditions.as_slice())
    }
    fn observed_generation(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }
}

/// Waits until `name`'s condition `type_` is `status` (with `reason`, when given) in a
/// status written for the resource's latest generation, and returns the resource.
pub async fn wait_condition<K>(
    api: &Api<K>,
    name: &str,
    (type_, status, reason): (&str, &str, Option<&str>),
    timeout: Duration,
) -> Result<K>
where
    K: Conditioned + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let what = format!(
        "{name}'s {type_} condition to be {status}{}",
        reason.map(|r| format!(" ({r})")).unwrap_or_default()
    );
    wait_until(
        &what,
        timeout,
        || async {
            let object = api.get_opt(name).await.ok()??;
            let condition = tributary_operator::crd::condition::find(object.conditions()?, type_)?;
            (object.observed_generation() == object.meta().generation
                && condition.status == status
                && reason.is_none_or(|r| condition.reason == r))
            .then_some(object.clone())
        },
        || async {
            format!(
                "{:?}",
                api.get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|o| o.conditions().map(<[_]>::to_vec))
            )
        },
    )
    .await
}

/// Waits until `name` is Ready for its latest generation, and returns it.
pub async fn wait_ready<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<K>
where
    K: Conditioned + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_condition(api, name, ("Ready", "True", None), timeout).await
}

/// A client configuration for `bootstrap` with `extra` settings.
pub fn client_config(bootstrap: &str, extra: &[(&str, &str)]) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c
}

/// The payload of message `i`, as every writer in these tests writes it.
pub fn payload(i: usize) -> String {
    format!("message {i}")
}

/// A Topic resource `name` on Cluster `cluster`, deleted with its resource.
pub fn topic(
    name: &str,
    cluster: &str,
    partitions: i32,
    replication_factor: i32,
) -> tributary_operator::crd::topic::Topic {
    use tributary_operator::crd::topic::{DeletionPolicy, Topic, TopicSpec};
    Topic::new(
        name,
        TopicSpec {
            cluster_ref: tributary_operator::crd::ClusterRef {
                name: cluster.into(),
            },
            topic_name: None,
            partitions,
            replication_factor: Some(replication_factor),
            config: Default::default(),
            deletion_policy: DeletionPolicy::Delete,
        },
    )
}

/// Writes messages `range` to `topic` one at a time, each acknowledged before the next.
pub async fn produce(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    range: std::ops::Range<usize>,
) -> Result<()> {
    for i in range {
        let value = payload(i);
        producer
            .send(
                rdkafka::producer::FutureRecord::to(topic)
                    .key(&format!("k{i}"))
                    .payload(&value),
                Duration::from_secs(60),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing message {i}: {e}"))?;
    }
    Ok(())
}

/// Assigns `topic`'s partitions `0..partitions` from their beginning to `consumer` and
/// reads until `count` distinct payloads were seen (or `timeout` passed); returns them.
pub async fn read_back(
    consumer: &rdkafka::consumer::StreamConsumer,
    topic: &str,
    partitions: i32,
    count: usize,
    timeout: Duration,
) -> Result<std::collections::BTreeSet<String>> {
    use rdkafka::consumer::Consumer as _;
    use rdkafka::Message as _;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + timeout;
    while seen.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .with_context(|| format!("read {} of {count} messages of {topic}", seen.len()))??;
        seen.insert(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
    }
    Ok(seen)
}

/// Checks that `seen` is exactly the payloads of messages `0..count`.
pub fn ensure_all(
    seen: &std::collections::BTreeSet<String>,
    count: usize,
    when: &str,
) -> Result<()> {
    let want: std::collections::BTreeSet<String> = (0..count).map(payload).collect();
    if *seen != want {
        let missing: Vec<_> = want.difference(seen).take(10).collect();
        let extra: Vec<_> = seen.difference(&want).take(10).collect();
        bail!("{when}: messages missing {missing:?}, unexpected {extra:?}");
    }
    Ok(())
}

/// Checks that `topic`'s partitions `0..partitions` hold exactly the messages `0..count`,
/// each once, from offset 0: the high watermarks add up to `count`, and `consumer` reads
/// them all back.
pub async fn ensure_exactly(
    consumer: &rdkafka::consumer::StreamConsumer,
    topic: &str,
    partitions: i32,
    count: usize,
    when: &str,
) -> Result<()> {
    use rdkafka::consumer::Consumer as _;
    let mut total = 0i64;
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if low != 0 {
            bail!("{when}: partition {p} starts at {low}");
        }
        total += high;
    }
    if total as usize != count {
        bail!("{when}: the partitions hold {total} messages, {count} were acknowledged");
    }
    let seen = read_back(consumer, topic, partitions, count, Duration::from_secs(120)).await?;
    ensure_all(&seen, count, when)
}

/// Where an operated test runs: here, on a test bed with the pod runner and the operator as
/// a process; or on a cluster that runs already, with its own operator (kind, in the GitHub
/// workflow), when [`tributary_e2e_kit::KUBECONFIG_ENV`] names one.
pub enum Platform {
    Here {
        bed: Bed,
        runner: tributary_e2e_kit::PodRunner,
        _operator: Operator,
    },
    Existing(tributary_e2e_kit::ExistingCluster),
}

impl Platform {
    /// A client of the API server, as the admin (here) or the suite's ServiceAccount.
    pub fn client(&self) -> Client {
        match self {
            Platform::Here { bed, .. } => bed.client.clone(),
            Platform::Existing(cluster) => cluster.client.clone(),
        }
    }

    /// The namespace the test works in.
    pub fn namespace(&self) -> &str {
        match self {
            Platform::Here { .. } => NS,
            Platform::Existing(cluster) => &cluster.namespace,
        }
    }

    /// The API of `K` in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client(), self.namespace())
    }

    /// Creates a managed `Cluster` named `name` from `spec`. On an existing cluster it runs
    /// the broker image [`tributary_e2e_kit::BROKER_IMAGE_ENV`] names, loaded into the
    /// nodes, with requests small enough for a CI runner.
    pub async fn managed_cluster(&self, name: &str, mut spec: ClusterSpec) -> Result<Cluster> {
        if let Platform::Existing(cluster) = self {
            if let Some(image) = &cluster.broker_image {
                spec.image = Some(image.clone());
                spec.image_pull_policy =
                    Some(tributary_operator::crd::cluster::ImagePullPolicy::Never);
            }
            if spec.resources.is_none() {
                spec.resources = Some(serde_json::from_value(serde_json::json!({
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"memory": "1Gi"},
                }))?);
            }
        }
        Ok(self
            .api::<Cluster>()
            .create(&PostParams::default(), &Cluster::new(name, spec))
            .await?)
    }

    /// Runs `f`, which creates Kafka clients, where they resolve the brokers' names as a pod
    /// does: in the runner's DNS view here; as it is on an existing cluster, where the suite
    /// runs in a pod.
    pub fn in_cluster<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        match self {
            Platform::Here { runner, .. } => runner.with_cluster_dns(f),
            Platform::Existing(_) => Ok(f()),
        }
    }

    /// Stops pod `pod`'s broker with no controlled shutdown and returns the pod's uid when
    /// the pod is replaced rather than its container restarted. Here: SIGKILL of the
    /// process, and the runner restarts the container as a kubelet would. On an existing
    /// cluster, where nothing outside the kubelet can signal a container: the pod is
    /// deleted with a grace period of 1 s, so the kubelet kills the broker whether or not
    /// its controlled shutdown is done, and the StatefulSet re-creates the pod.
    pub async fn kill_broker(&self, pod: &str) -> Result<Option<String>> {
        match self {
            Platform::Here { runner, .. } => runner.kill(pod).map(|()| None),
            Platform::Existing(_) => {
                let pods = self.api::<k8s_openapi::api::core::v1::Pod>();
                let uid = pods.get(pod).await?.metadata.uid.context("pod uid")?;
                pods.delete(
                    pod,
                    &kube::api::DeleteParams {
                        grace_period_seconds: Some(1),
                        ..Default::default()
                    },
                )
                .await?;
                Ok(Some(uid))
            }
        }
    }

    /// How pod `pod`'s container processes ended, where the test can see that (here).
    pub fn exits(&self, pod: &str) -> Option<Vec<tributary_e2e_kit::pod_runner::ContainerExit>> {
        match self {
            Platform::Here { runner, .. } => Some(runner.exits(pod)),
            Platform::Existing(_) => None,
        }
    }

    /// After a failure: the brokers' last log lines here. On an existing cluster what the
    /// test made is kept for whoever looks (`scripts/kind-e2e.sh logs` collects it).
    fn report_failure(&self, cluster: &str) {
        match self {
            Platform::Here { runner, .. } => runner.print_logs(80),
            Platform::Existing(existing) => eprintln!(
                "Cluster {cluster} in namespace {} is kept, with its Topics, \
                 ConsumerGroups, pods and volumes",
                existing.namespace
            ),
        }
    }

    /// After a success on an existing cluster: Cluster `cluster` and what the test made for
    /// it deleted, its Topics and ConsumerGroups first (their finalizers need the brokers),
    /// then the Cluster, its pods, and their volumes (which a StatefulSet keeps).
    async fn clean_up(&self, cluster: &str) -> Result<()> {
        use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
        use kube::ResourceExt as _;
        use tributary_operator::crd::consumer_group::ConsumerGroup;
        use tributary_operator::crd::topic::Topic;
        if let Platform::Here { .. } = self {
            return Ok(());
        }
        let topics = self.api::<Topic>();
        let groups = self.api::<ConsumerGroup>();
        let delete = kube::api::DeleteParams::default();
        let all = kube::api::ListParams::default();
        for t in topics.list(&all).await?.items {
            if t.spec.cluster_ref.name == cluster {
                topics.delete(&t.name_any(), &delete).await?;
            }
        }
        for g in groups.list(&all).await?.items {
            if g.spec.cluster_ref.name == cluster {
                groups.delete(&g.name_any(), &delete).await?;
            }
        }
        wait_for(
            &format!("Cluster {cluster}'s Topics and ConsumerGroups to be deleted"),
            Duration::from_secs(180),
            || async {
                let topics = topics.list(&all).await.ok()?.items;
                let groups = groups.list(&all).await.ok()?.items;
                let left = topics
                    .iter()
                    .filter(|t| t.spec.cluster_ref.name == cluster)
                    .count()
                    + groups
                        .iter()
                        .filter(|g| g.spec.cluster_ref.name == cluster)
                        .count();
                (left == 0).then_some(())
            },
        )
        .await?;
        self.api::<Cluster>().delete(cluster, &delete).await?;
        let pods = self.api::<Pod>();
        let claims = self.api::<PersistentVolumeClaim>();
        let mine = kube::api::ListParams::default()
            .labels(&format!("app.kubernetes.io/instance={cluster}"));
        wait_for(
            &format!("Cluster {cluster}'s pods to be gone"),
            Duration::from_secs(180),
            || async { pods.list(&mine).await.ok()?.items.is_empty().then_some(()) },
        )
        .await?;
        claims.delete_collection(&delete, &mine).await?;
        wait_for(
            &format!("Cluster {cluster}'s volume claims to be gone"),
            Duration::from_secs(180),
            || async {
                claims
                    .list(&mine)
                    .await
                    .ok()?
                    .items
                    .is_empty()
                    .then_some(())
            },
        )
        .await
    }
}

/// Creates managed Cluster `cluster` from `spec` and a Topic `topic` on it with
/// `partitions` partitions of 3 replicas; waits for both to be Ready and returns the
/// bootstrap address.
pub async fn cluster_with_topic(
    p: &Platform,
    cluster: &str,
    spec: ClusterSpec,
    (topic_name, partitions): (&str, i32),
    timeout: Duration,
) -> Result<String> {
    p.managed_cluster(cluster, spec).await?;
    let ready = wait_ready(&p.api::<Cluster>(), cluster, timeout).await?;
    let topics = p.api::<tributary_operator::crd::topic::Topic>();
    topics
        .create(
            &PostParams::default(),
            &topic(topic_name, cluster, partitions, 3),
        )
        .await?;
    wait_ready(&topics, topic_name, timeout).await?;
    ready
        .status
        .and_then(|s| s.bootstrap_servers)
        .context("status.bootstrapServers")
}

/// The leader of `topic`'s `partition`, and whether every partition's ISR is full, as the
/// brokers' Metadata says.
pub fn leader_and_in_sync(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    partition: i32,
) -> Result<(i32, bool)> {
    use rdkafka::producer::Producer as _;
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let described = metadata.topics().first().context("no topic in Metadata")?;
    let leader = described
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .context("no such partition")?
        .leader();
    let in_sync = described
        .partitions()
        .iter()
        .all(|p| p.leader() >= 0 && p.isr().len() == p.replicas().len());
    Ok((leader, in_sync))
}

/// Runs `test` on its platform: on the existing cluster [`tributary_e2e_kit::KUBECONFIG_ENV`]
/// names, with that cluster's operator; else on a test bed with a pod runner for the pods of
/// Cluster `cluster` and the operator (as `identity`) started inside the runner's DNS view,
/// as it would run in the cluster. A failure prints the brokers' logs here, and keeps what
/// the test made on an existing cluster; a success there deletes it.
pub async fn operated(
    cluster: &str,
    identity: &str,
    test: impl AsyncFnOnce(&Platform) -> Result<()>,
) -> Result<()> {
    use tributary_e2e_kit::{broker_binary, ExistingCluster, PodRunner, RunnerOptions};
    let platform = match ExistingCluster::from_env().await? {
        Some(existing) => {
            existing.ensure_namespace().await?;
            Platform::Existing(existing)
        }
        None => {
            let bed = Bed::start().await?;
            let runner = PodRunner::start(
                &bed.env,
                RunnerOptions::new(NS, broker_binary()?)
                    .selector(&format!("app.kubernetes.io/instance={cluster}")),
            )?;
            let operator =
                runner.with_cluster_dns(|| Operator::start(&bed.env, identity, &[]))??;
            Platform::Here {
                bed,
                runner,
                _operator: operator,
            }
        }
    };
    match test(&platform).await {
        Ok(()) => platform.clean_up(cluster).await,
        Err(e) => {
            platform.report_failure(cluster);
            Err(e)
        }
    }
}

/// What a [`Writer`] saw: how many messages were acknowledged.
#[derive(Debug, Default)]
pub struct Written {
    pub acked: usize,
}

/// Writes messages `from..` to `topic` (to `partition` if given, else by key) one after
/// another through `producer` until stopped; a delivery error ends it with that error.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<Result<Written>>,
}

impl Writer {
    pub fn start(
        producer: &rdkafka::producer::FutureProducer,
        topic: &str,
        partition: Option<i32>,
        from: usize,
    ) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = {
            let producer = producer.clone();
            let stop = stop.clone();
            let acked = acked.clone();
            let topic = topic.to_string();
            tokio::spawn(async move {
                let mut written = Written::default();
                let mut i = from;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let value = payload(i);
                    let key = format!("k{i}");
                    let mut record = rdkafka::producer::FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&value);
                    record.partition = partition;
                    producer
                        .send(record, Duration::from_secs(60))
                        .await
                        .map_err(|(e, _)| {
                            anyhow::anyhow!(
                                "producing message {i} ({} acknowledged before): {e}",
                                written.acked
                            )
                        })?;
                    written.acked += 1;
                    acked.store(written.acked, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                }
                Ok(written)
            })
        };
        Writer { stop, acked, task }
    }

    /// How many messages were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `more` messages beyond `since` were acknowledged, or fails after
    /// `timeout` (a writer that failed fails this too, with its error).
    pub async fn wait_acked(&mut self, since: usize, more: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.acked() < since + more {
            if self.task.is_finished() {
                let outcome = (&mut self.task).await?;
                bail!("the writer stopped: {:?}", outcome.map(|w| w.acked));
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} messages acknowledged, not {more} more than {since}, within {timeout:?}",
                    self.acked()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the writer and returns what it saw.
    pub async fn stop(self) -> Result<Written> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await?
    }
}
