//! A test-only kubelet (and scheduler) for one node, with real `tributary` processes: the
//! test bed's kube-controller-manager creates the Pods of a StatefulSet, and this runner
//! binds them to its Node, runs each as a broker process, reports their status, probes
//! them, restarts them, and stops them when they are deleted.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use tributary_e2e_kit::pod_runner::{PodRunner, RunnerOptions};
//! let env = tributary_e2e_kit::TestEnv::start()?;
//! let options = RunnerOptions::new("kafka", tributary_e2e_kit::broker_binary()?).selector("app=tb");
//! let runner = PodRunner::start(&env, options)?;
//! // ... create a StatefulSet; its pods run as brokers ...
//! runner.kill("tb-1")?; // SIGKILL: the runner restarts it as a crashed container
//! # Ok(()) }
//! ```
//!
//! ```text
//! PodRunner (test thread)          runner thread (tokio, current-thread)
//!   kill / pid / pod_ip ──┐          node: Node Ready + Lease renewed every 10 s
//!   resolve / logs        ├─Shared─  dispatcher: watch Pods ─> bind unscheduled ones (scheduler)
//!   with_cluster_dns      │                                  ─> one worker task per pod uid
//!                         │          dns: watch Services + Pods ─> hosts files
//!                         │          claims: watch PVCs ─> delete a deleted claim's directory
//!                         │
//!                         └────────  worker ─Start─> sandbox thread (per pod): namespaces,
//!                                           <─Exit─  mounts, the broker process
//! ```
//!
//! # What is emulated, and how
//!
//! - **Node.** A Node (`tributary-runner` by default) registered Ready with allocatable
//!   resources, its Lease in `kube-node-lease` renewed every 10 s, so the node lifecycle
//!   controller never marks it NotReady (`node.rs`).
//! - **Scheduling.** Every Pod of the namespace (and label selector) without
//!   `spec.nodeName` is bound to the node through `pods/binding`. No filtering: node
//!   selectors, affinities, taints and resources are not looked at.
//! - **Containers.** One container per pod. The container image is an [`ImageSpec`]
//!   (default: `docker/broker.Dockerfile`'s, whatever the pod's `image` says): its
//!   entrypoint, cmd, environment, working directory, and its files (the `tributary`
//!   binary at `/usr/local/bin/tributary`, `/etc/tributary/server.properties`). Command and
//!   args, `env` (`value` with `$(VAR)` expansion, `fieldRef`, `configMapKeyRef`,
//!   `secretKeyRef`), `envFrom` and service-link variables follow the kubelet (`spec.rs`).
//!   Standard output and error go to a log file per pod ([`PodRunner::log_path`]).
//! - **Filesystem.** Each pod's processes run in their own mount namespace (a thread of the
//!   runner that unshares it, see `sandbox.rs`), where `configMap` and `secret` volumes (a
//!   directory with a file per key, written when the pod starts and not refreshed),
//!   `projected` ones (the ServiceAccount token from the TokenRequest API, not renewed),
//!   `emptyDir` (a fresh directory per pod), `persistentVolumeClaim` (a directory per claim
//!   that outlives its pods and goes when the PVC is deleted: [`PodRunner::claim_dir`]) and
//!   `hostPath` volumes are bind-mounted at their `mountPath`, `subPath` included
//!   (`volumes.rs`). Where a mount point does not exist on this machine (`/etc/tributary`,
//!   `/var/lib/tributary`), its deepest existing parent directory gets an overlay in the
//!   pod's namespace whose upper layer is a tmpfs: the pod creates what it needs there, and
//!   the real `/etc` and `/var` are never written to. The pod also gets its own UTS
//!   namespace with its host name (`spec.hostname` or the pod's name: the broker takes its
//!   id from it when `node.id` is unset).
//! - **Network.** All pods share this machine's network namespace; each gets its own
//!   loopback address `127.A.B.N` (`A.B` random per runner) as `status.podIP`. To make a
//!   broker bind that address where it would bind `0.0.0.0` in a pod of its own, the runner
//!   sets the listener variables of [`ListenerEnv::tributary`] (`TRIBUTARY_LISTENERS`,
//!   `TRIBUTARY_CONTROLLER_LISTENER`, `TRIBUTARY_HTTP_LISTENER`) to the pod IP with the
//!   container's port for each (its own value's port, else the named container port
//!   `kafka`/`controller`/`http`, else 9092/9093/9644). The broker reads its settings from
//!   the properties file, then `TRIBUTARY_*` variables, then `--override` flags, later ones
//!   winning (`broker/src/server/config.rs`): the variables beat the ConfigMap's
//!   `listeners=PLAINTEXT://0.0.0.0:9092`, but an `--override listeners=...` in the
//!   container's args would beat the runner, so a pod must not bind through one.
//! - **DNS.** No DNS server: each pod's `/etc/hosts` is a file of the runner's, rewritten
//!   in place as Services and Pods change, with the names CoreDNS would serve for the
//!   namespace's pods and Services (`dns.rs`). The endpoints come from the Pods, by the
//!   EndpointSlice controller's rules: the API server refuses loopback addresses in
//!   EndpointSlices, so kube-controller-manager's stay empty (and it logs
//!   `FailedToUpdateEndpointSlices`). The test's own clients reach the same names through
//!   [`PodRunner::with_cluster_dns`] (rdkafka clients created inside it) or
//!   [`PodRunner::resolve`].
//! - **Probes and restarts.** `httpGet` and `tcpSocket` startup, readiness and liveness
//!   probes (`probe.rs`); `Ready`/`ContainersReady` and the container status through
//!   `pods/status`; a process that exits, or fails its liveness probe, is restarted with
//!   exponential back-off (1 s doubling to 60 s by default: the kubelet's 10 s to 300 s is
//!   long for a test), its exit reported in `lastState.terminated` and `restartCount`.
//! - **Deletion.** A pod with a `deletionTimestamp` gets SIGTERM, then SIGKILL after its
//!   grace period (at least 2 s, as the kubelet), and is then removed with
//!   `gracePeriodSeconds=0`, so its controller re-creates it.
//!
//! Not emulated: container isolation beyond the mount and UTS namespaces (the processes see
//! every other process, run as the test's user, root, and write to the machine's
//! filesystem anywhere outside their volumes and overlays; `securityContext` is ignored),
//! cgroups and resource limits, image pulls, network namespaces and Service cluster IPs (no
//! kube-proxy: a Service name resolves to its ready endpoints), init and sidecar containers,
//! `exec` and `grpc` probes, lifecycle hooks, ConfigMap refreshes, PVC binding and
//! provisioning (claims stay Pending; the runner keys its directories by claim name).
//!
//! Root is needed (mount namespaces); [`PodRunner::start`] fails with a message saying so
//! otherwise. `setpriv` (util-linux) is needed so that brokers die with the test process.

mod dispatch;
mod dns;
mod node;
mod probe;
mod sandbox;
mod spec;
mod volumes;
mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

pub use spec::{ImageSpec, ListenerEnv};

pub(crate) use dispatch::client_for;

use crate::TestEnv;
use sandbox::ProcessSlot;

/// What a [`PodRunner`] runs, and how.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The namespace whose pods the runner schedules and runs.
    pub namespace: String,
    /// A label selector (`app=tb,tier=kafka`) narrowing the pods; all of the namespace's
    /// when `None`.
    pub selector: Option<String>,
    /// The Node's name.
    pub node_name: String,
    /// The image every container runs (see [`ImageSpec::tributary`]).
    pub image: ImageSpec,
    /// The variables that bind listeners to the pod's IP.
    pub listener_env: Vec<ListenerEnv>,
    /// Variables every container gets below its own `env` (`TRIBUTARY_LOG=debug`).
    pub extra_env: Vec<(String, String)>,
    /// The DNS domain of the cluster's names: `cluster.local`.
    pub cluster_domain: String,
    /// The first restart delay after a container exits; it doubles with each crash up to
    /// `restart_backoff_max` and starts over once a container has run that long twice.
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    /// The runner's directory (logs, volumes, claims, hosts files); by default
    /// `pod-runner/` in the test bed's directory, so `TRIBUTARY_TESTENV_KEEP` keeps it.
    pub dir: Option<PathBuf>,
}

impl RunnerOptions {
    /// Options for the pods of NAMESPACE, running BROKER_BINARY as the broker image's
    /// `tributary` (see [`crate::broker_binary`]).
    pub fn new(namespace: &str, broker_binary: impl Into<PathBuf>) -> RunnerOptions {
        RunnerOptions {
            namespace: namespace.into(),
            selector: None,
            node_name: "tributary-runner".into(),
            image: ImageSpec::tributary(broker_binary.into()),
            listener_env: ListenerEnv::tributary(),
            extra_env: Vec::new(),
            cluster_domain: "cluster.local".into(),
            restart_backoff_initial: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            dir: None,
        }
    }

    /// Runs only the pods that match SELECTOR.
    pub fn selector(mut self, selector: &str) -> RunnerOptions {
        self.selector = Some(selector.into());
        self
    }
}

/// How a container process ended, as [`PodRunner::exits`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    pub pod: String,
    pub uid: String,
    pub pid: u32,
    /// The container's `restartCount` while this process ran.
    pub restart_count: i32,
    /// The exit code, 128 + the signal for a process killed by one.
    pub exit_code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
    pub cause: ExitCause,
}

/// Why a container process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// On its own, or killed from outside (by [`PodRunner::kill`]): a crash to restart.
    Exited,
    /// Stopped after failing its liveness probe.
    LivenessProbe,
    /// Stopped after failing its startup probe.
    StartupProbe,
    /// Stopped because its pod was deleted (SIGTERM, SIGKILL after the grace period).
    PodDeleted,
    /// Killed because its pod vanished from the API without a graceful deletion.
    PodGone,
    /// Killed because the runner stopped.
    RunnerStopped,
}

/// A pod the runner runs now.
struct PodEntry {
    uid: String,
    ip: IpAddr,
    /// The current container process, if one has been started.
    process: Option<Arc<ProcessSlot>>,
    log: PathBuf,
}

/// Pod IPs: `127.A.B.N`, N from 1 to 254, one /24 per runner.
struct IpPool {
    prefix: [u8; 2],
    next: u8,
    used: BTreeSet<u8>,
}

impl IpPool {
    fn new() -> IpPool {
        // Random, so that runners of concurrent tests on one machine do not collide; never
        // 127.0.x (127.0.0.1 is the control plane's and many a local service's).
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        IpPool {
            prefix: [16 + (random % 224) as u8, (random >> 8) as u8],
            next: 1,
            used: BTreeSet::new(),
        }
    }

    /// The next free address on which every one of PORTS can be bound now.
    fn allocate(&mut self, ports: &[u16]) -> Result<IpAddr> {
        let [a, b] = self.prefix;
        for _ in 0..254 {
            let host = self.next;
            self.next = if host >= 254 { 1 } else { host + 1 };
            if self.used.contains(&host) {
                continue;
            }
            let ip = IpAddr::V4(Ipv4Addr::new(127, a, b, host));
            if ports.iter().all(|&p| TcpListener::bind((ip, p)).is_ok()) {
                self.used.insert(host);
                return Ok(ip);
            }
        }
        bail!(
            "no address in 127.{a}.{b}.0/24 where ports {ports:?} are free: does a process \
             listen on one of them on 0.0.0.0?"
        )
    }

    fn release(&mut self, ip: IpAddr) {
        if let IpAddr::V4(v4) = ip {
            let [_, a, b, host] = v4.octets();
            if [a, b] == self.prefix {
                self.used.remove(&host);
            }
        }
    }
}

/// What the runner thread and the test's calls share.
struct Shared {
    dir: PathBuf,
    namespace: String,
    /// By pod name: the pods running now.
    pods: Mutex<BTreeMap<String, PodEntry>>,
    /// Every container process not yet reaped, for [`PodRunner`]'s drop.
    processes: Mutex<Vec<Arc<ProcessSlot>>>,
    exits: Mutex<Vec<ContainerExit>>,
    ips: Mutex<IpPool>,
    dns: Arc<dns::Dns>,
}

/// Locks M, also after a panic elsewhere (the data are simple maps, valid at every step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn claim_dir(&self, claim: &str) -> PathBuf {
        self.dir.join("claims").join(&self.namespace).join(claim)
    }
}

/// The runner's own messages go to the test's standard error, where the test harness
/// captures them.
fn log(message: &str) {
    eprintln!("[pod-runner] {message}");
}

/// A running pod runner; dropping it kills every process it started.
pub struct PodRunner {
    shared: Arc<Shared>,
    node_name: String,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PodRunner {
    /// Registers the node and starts running the pods that OPTIONS select, against ENV's
    /// API server. Returns once the node is registered.
    pub fn start(env: &TestEnv, options: RunnerOptions) -> Result<PodRunner> {
        if !nix::unistd::geteuid().is_root() {
            bail!(
                "the pod runner needs root: it runs each pod in its own mount namespace \
                 (unshare(CLONE_NEWNS)) with bind mounts; run the test as root (the \
                 project's machines and CI do)"
            );
        }
        let setpriv = find_on_path("setpriv").context(
            "the pod runner needs setpriv (util-linux) so that brokers die with the test \
             process: apt-get install util-linux",
        )?;
        for (path, host) in &options.image.files {
            if !host.exists() {
                bail!(
                    "the image file {path} comes from {}, which does not exist{}",
                    host.display(),
                    if path.ends_with("/tributary") {
                        ": build it with `cargo build -p tributary --bin tributary`"
                    } else {
                        ""
                    }
                );
            }
        }
        let dir = match &options.dir {
            Some(dir) => dir.clone(),
            None => env.dir.join("pod-runner"),
        };
        std::fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let shared = Arc::new(Shared {
            namespace: options.namespace.clone(),
            pods: Mutex::new(BTreeMap::new()),
            processes: Mutex::new(Vec::new()),
            exits: Mutex::new(Vec::new()),
            ips: Mutex::new(IpPool::new()),
            dns: Arc::new(dns::Dns::new(&dir)?),
            dir,
        });
        let cancel = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let kubeconfig = env.kubeconfig.clone();
        let node_name = options.node_name.clone();
        let thread = {
            let shared = shared.clone();
            let cancel = cancel.clone();
            std::thread::Builder::new()
                .name("pod-runner".into())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow!(e).context("building a runtime")));
                            return;
                        }
                    };
                    runtime.block_on(dispatch::run(
                        kubeconfig, options, setpriv, shared, cancel, ready_tx,
                    ));
                })
                .context("spawning the pod runner's thread")?
        };
        let mut runner = PodRunner {
            shared,
            node_name,
            cancel,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Ok(runner),
            Ok(Err(e)) => {
                runner.shutdown();
                Err(e.context("starting the pod runner"))
            }
            Err(_) => {
                runner.shutdown();
                bail!("the pod runner did not register its node within 60 s")
            }
        }
    }

    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The runner's directory: `logs/`, `pods/`, `claims/`, `hosts`.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Sends SIGKILL to the process of POD's container, as a crash would; the runner then
    /// restarts it (`restartCount` goes up).
    pub fn kill(&self, pod: &str) -> Result<()> {
        let process = lock(&self.shared.pods)
            .get(pod)
            .and_then(|p| p.process.clone())
            .with_context(|| format!("pod {pod} has no container process"))?;
        if !process.signal(Signal::SIGKILL) {
            bail!("the container process of pod {pod} has already exited");
        }
        Ok(())
    }

    /// The pid of POD's container process while it runs.
    pub fn pid(&self, pod: &str) -> Option<u32> {
        lock(&self.shared.pods)
            .get(pod)
            .and_then(|p| p.process.as_ref())
            .filter(|p| !p.exited())
            .map(|p| p.pid)
    }

    /// POD's IP while the runner runs it.
    pub fn pod_ip(&self, pod: &str) -> Option<IpAddr> {
        lock(&self.shared.pods).get(pod).map(|p| p.ip)
    }

    /// The uid of the instance of POD the runner runs now.
    pub fn pod_uid(&self, pod: &str) -> Option<String> {
        lock(&self.shared.pods).get(pod).map(|p| p.uid.clone())
    }

    /// The address HOST has in the cluster's DNS as the pods see it (`tb-0.tb-headless.ns.svc`,
    /// `tb-bootstrap.ns.svc`), or HOST itself if it is an IP address.
    pub fn resolve(&self, host: &str) -> Option<IpAddr> {
        self.shared.dns.resolve(host)
    }

    /// Runs F on a thread of its own whose `/etc/hosts` is the runner's (this machine's
    /// `/etc/hosts` plus the cluster's names), and returns its result. Threads started by F
    /// stay in that mount namespace: create rdkafka clients here, and librdkafka's threads,
    /// which resolve broker names such as `tb-0.tb-headless.ns.svc` from a Metadata
    /// response, resolve them as a pod would, for the client's whole life. F runs inside the
    /// caller's tokio runtime, if there is one.
    ///
    /// (rdkafka 0.39 has no hook for name resolution in `ClientContext`, and librdkafka's
    /// `resolve_cb` is not in rdkafka-sys's bindings; this needs neither.)
    pub fn with_cluster_dns<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let hosts = self.shared.dns.client_hosts().to_path_buf();
        // The caller's tokio runtime, if any, is F's too (rdkafka's clients need one).
        let runtime = tokio::runtime::Handle::try_current().ok();
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name("cluster-dns".into())
                .spawn_scoped(scope, move || -> Result<T> {
                    sandbox::enter_dns_namespace(&hosts)?;
                    let _runtime = runtime.as_ref().map(|r| r.enter());
                    Ok(f())
                })
                .context("spawning a thread")?;
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// The directory of PersistentVolumeClaim CLAIM (`data-tb-1`): it outlives the claim's
    /// pods and is removed when the claim is deleted.
    pub fn claim_dir(&self, claim: &str) -> PathBuf {
        self.shared.claim_dir(claim)
    }

    /// The log file (standard output and error of every run of its container) of the
    /// instance of POD the runner runs now.
    pub fn log_path(&self, pod: &str) -> Option<PathBuf> {
        lock(&self.shared.pods).get(pod).map(|p| p.log.clone())
    }

    /// Every container exit of POD (all its instances), oldest first.
    pub fn exits(&self, pod: &str) -> Vec<ContainerExit> {
        lock(&self.shared.exits)
            .iter()
            .filter(|e| e.pod == pod)
            .cloned()
            .collect()
    }

    /// Prints the last LINES lines of every pod log the runner has written (deleted pods'
    /// too) to standard error: call it when a test fails. Dropping the runner during a
    /// panic does it with 200 lines.
    pub fn print_logs(&self, lines: usize) {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.shared.dir.join("logs"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        logs.sort();
        for path in logs {
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            let all: Vec<String> = BufReader::new(file).lines().map_while(|l| l.ok()).collect();
            let skip = all.len().saturating_sub(lines);
            eprintln!(
                "===== {} (last {} of {} lines) =====",
                path.display(),
                all.len() - skip,
                all.len()
            );
            for line in &all[skip..] {
                eprintln!("{line}");
            }
        }
    }

    /// Kills every process, stops the runner thread, and waits (bounded) for both.
    fn shutdown(&mut self) {
        // Cancel first, so that the workers take the exits for the stop they are; then kill,
        // synchronously, whatever state the runner thread is in.
        self.cancel.cancel();
        for process in lock(&self.shared.processes).iter() {
            process.signal(Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                log("the runner thread did not stop within 15 s; leaving it");
            }
        }
        // The sandbox threads reap their processes; wait for that, so that none is left
        // once the runner is dropped.
        loop {
            let left: Vec<u32> = lock(&self.shared.processes)
                .iter()
                .filter(|p| !p.exited())
                .map(|p| p.pid)
                .collect();
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                log(&format!(
                    "processes {left:?} had not exited 15 s after SIGKILL"
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs(200);
        }
        self.shutdown();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ips_are_loopback_unique_and_reused_after_release() {
        let mut pool = IpPool::new();
        let a = pool.allocate(&[]).unwrap();
        let b = pool.allocate(&[]).unwrap();
        assert_ne!(a, b);
        assert!(a.is_loopback() && b.is_loopback());
        let IpAddr::V4(v4) = a else { panic!() };
        assert_ne!(v4.octets()[1], 0);
        pool.release(a);
        for _ in 0..253 {
            pool.allocate(&[]).unwrap();
        }
        assert!(pool.allocate(&[]).is_err(), "254 addresses at most");
    }

    #[test]
    fn a_port_in_use_skips_the_address() {
        let mut pool = IpPool::new();
        let [a, b] = pool.prefix;
        let taken = TcpListener::bind((Ipv4Addr::new(127, a, b, 1), 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let ip = pool.allocate(&[port]).unwrap();
        assert_eq!(ip, IpAddr::V4(Ipv4Addr::new(127, a, b, 2)));
    }
}
