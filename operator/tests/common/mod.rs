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
