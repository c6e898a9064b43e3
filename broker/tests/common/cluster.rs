//! Multi-broker harness (STYLE §7.8): N real `tributary broker` processes on loopback, each
//! a voter of one metadata quorum, with a supervisor API to kill, stop, restart and wipe
//! them, metadata queries through real clients, and an optional proxy in front of every
//! broker's controller (gRPC) listener to cut a broker off from the others.
//!
//! ```text
//!                  Kafka clients (rdkafka, RawClient) ── straight to each Kafka port
//!                                                         (never proxied)
//!  broker 0 ─┐                                 ┌──▶ PartitionProxy 0 ──▶ broker 0 controller.listener
//!  broker 1 ─┼── controller.quorum.voters and ─┼──▶ PartitionProxy 1 ──▶ broker 1 controller.listener
//!  broker 2 ─┘   controller.advertised.listener└──▶ PartitionProxy 2 ──▶ broker 2 controller.listener
//!                name the proxies
//!
//! isolate(1): proxy 1 refuses and cuts everything (nobody reaches broker 1), and proxies
//!             0 and 2 refuse and cut the connections that broker 1's process opened
//!             (broker 1 reaches nobody). Clients still reach broker 1's Kafka port.
//! ```
//!
//! A proxy tells whose connection it accepted by looking the client socket up in
//! `/proc/net/tcp` and the brokers' `/proc/<pid>/fd` (Linux only, like the CI machines):
//! on loopback every connection comes from 127.0.0.1, and the brokers pick their own
//! source ports, so nothing else identifies the sender.
//!
//! Ports are picked by binding `127.0.0.1:0` and releasing the port just before the
//! brokers start; if another process takes one in between, the broker that needed it
//! exits and the whole start is retried on new ports. All brokers are spawned before the
//! harness waits for any `listening on` line: a broker may wait for a quorum, which needs
//! the others. Every wait has a deadline.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;

use super::process::BrokerProcess;
use super::{base_config, RawClient, OP_TIMEOUT, STARTUP_TIMEOUT};

/// How many times `start` tries fresh ports before giving up.
const START_ATTEMPTS: usize = 3;
/// How long a broker may take to exit after SIGTERM: a controlled shutdown (bounded by
/// the harness's `controlled.shutdown.timeout.ms`) plus `shutdown.grace.ms`.
const STOP_TIMEOUT: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/// What to start. `TestCluster::start(n, overrides)` covers the common case.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub brokers: usize,
    /// `--override key=value` pairs for every broker, replacing the harness defaults.
    pub overrides: Vec<(String, String)>,
    /// Overrides for one broker only (for example `broker.rack`), applied last.
    pub broker_overrides: BTreeMap<i32, Vec<(String, String)>>,
    /// Put a [`PartitionProxy`] in front of every controller listener, so that
    /// [`TestCluster::isolate`] works.
    pub proxies: bool,
    /// How many of the brokers (the lowest ids) are quorum voters; the others follow the
    /// metadata as brokers only. All of them when `None`.
    pub voters: Option<usize>,
}

impl ClusterOptions {
    pub fn new(brokers: usize) -> ClusterOptions {
        ClusterOptions {
            brokers,
            overrides: Vec::new(),
            broker_overrides: BTreeMap::new(),
            proxies: false,
            voters: None,
        }
    }

    /// One override for every broker.
    pub fn set(mut self, key: &str, value: &str) -> ClusterOptions {
        self.overrides.push((key.to_string(), value.to_string()));
        self
    }

    /// One override for broker `id` only.
    pub fn set_for(mut self, id: i32, key: &str, value: &str) -> ClusterOptions {
        self.broker_overrides
            .entry(id)
            .or_default()
            .push((key.to_string(), value.to_string()));
        self
    }

    pub fn with_proxies(mut self) -> ClusterOptions {
        self.proxies = true;
        self
    }

    /// Brokers `0..voters` form the quorum; the rest are not voters.
    pub fn with_voters(mut self, voters: usize) -> ClusterOptions {
        self.voters = Some(voters);
        self
    }
}

// ---------------------------------------------------------------------------------------
// One broker
// ---------------------------------------------------------------------------------------

/// One broker process of a [`TestCluster`], with its ports, data directory and output.
pub struct ClusterBroker {
    id: i32,
    /// `log.dirs`; kept across restarts, wiped by `restart_empty`.
    log_dir: PathBuf,
    kafka_addr: SocketAddr,
    /// Where the broker's gRPC listener binds (behind the proxy, if any).
    controller_listener: SocketAddr,
    /// `http.listener`: `/healthz`, `/readyz` and `/metrics`, on the same port across
    /// restarts.
    http_addr: SocketAddr,
    /// In front of `controller_listener` when the cluster was started with proxies.
    proxy: Option<PartitionProxy>,
    /// Every `--override` of its command line, replayed on restart.
    settings: Vec<(String, String)>,
    /// The process, and everything it wrote across restarts (printed when a test panics).
    process: BrokerProcess,
    /// Shared with every proxy: who is cut off, and which pid each broker has now.
    isolation: Arc<Isolation>,
}

impl ClusterBroker {
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The Kafka listener (clients connect here; never proxied).
    pub fn addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// The address other brokers dial for gRPC: the proxy's when there is one.
    pub fn controller_addr(&self) -> SocketAddr {
        match &self.proxy {
            Some(proxy) => proxy.addr(),
            None => self.controller_listener,
        }
    }

    /// Where the broker's own gRPC listener binds.
    pub fn controller_listener(&self) -> SocketAddr {
        self.controller_listener
    }

    /// Where it serves `/healthz`, `/readyz` and `/metrics`.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn proxy(&self) -> Option<&PartitionProxy> {
        self.proxy.as_ref()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log_dir(&self) -> PathBuf {
        self.log_dir.clone()
    }

    /// `<log.dirs>/<topic>-<partition>`.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.log_dir.join(format!("{topic}-{partition}"))
    }

    /// The `--override key=value` pairs it runs with.
    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    /// The value of one of its overrides.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn output(&self) -> String {
        self.process.output()
    }

    /// Started (and not killed by the harness) and has not exited.
    pub fn is_alive(&mut self) -> bool {
        self.process.is_alive()
    }

    /// Panics with the broker's output unless it is running.
    pub fn assert_alive(&mut self) {
        self.process.assert_alive();
    }

    /// SIGKILL, then reap the process. A no-op when it is not running.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM and wait (bounded) for the process to exit; returns its status.
    pub fn sigterm_and_wait(&mut self) -> ExitStatus {
        self.process.sigterm_and_wait(STOP_TIMEOUT)
    }

    /// Starts it again on the same data directory and ports (killing it first if it
    /// runs). The ports are fixed in the other brokers' configuration, so a port taken in
    /// the meantime is a test failure, reported with the broker's output.
    pub fn restart(&mut self) {
        self.kill9();
        self.note("restart");
        self.spawn_and_wait().unwrap_or_else(|e| {
            panic!(
                "broker {} failed to restart: {e}\n{}",
                self.id,
                self.output()
            )
        });
    }

    /// Like [`restart`](Self::restart) after wiping its `log.dirs`: a replacement disk.
    pub fn restart_empty(&mut self) {
        self.kill9();
        self.note(&format!("wipe {}", self.log_dir.display()));
        if self.log_dir.exists() {
            std::fs::remove_dir_all(&self.log_dir).expect("wipe log.dirs");
        }
        std::fs::create_dir_all(&self.log_dir).expect("create log.dirs");
        self.restart();
    }

    fn note(&self, what: &str) {
        self.process.note(what);
    }

    fn spawn(&mut self) -> Result<mpsc::Receiver<SocketAddr>, String> {
        let listening = self.process.spawn(&self.settings)?;
        self.isolation.set_pid(self.id, self.process.pid());
        // A connection the new process opened before its pid was known got through an
        // isolation; cut it now that the pid is known.
        if self.isolation.is_isolated(self.id) {
            self.isolation.enforce_all();
        }
        Ok(listening)
    }

    /// Waits for the `listening on` line of a just-spawned broker.
    fn wait_listening(
        &mut self,
        listening: &mpsc::Receiver<SocketAddr>,
        deadline: Instant,
    ) -> Result<(), String> {
        let addr = self.process.wait_listening(listening, deadline)?;
        if addr.port() != self.kafka_addr.port() {
            return Err(format!(
                "listening on {addr}, expected port {}",
                self.kafka_addr.port()
            ));
        }
        Ok(())
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let listening = self.spawn()?;
        self.wait_listening(&listening, Instant::now() + STARTUP_TIMEOUT)
    }
}

// ---------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------

/// N brokers on loopback, voters of one quorum (or the first few of them, see
/// [`ClusterOptions::with_voters`]). Dropping it kills them (and prints
/// their output when the test is panicking).
pub struct TestCluster {
    brokers: Vec<ClusterBroker>,
    /// Holds `broker-<id>/` data directories; removed on drop.
    dir: tempfile::TempDir,
    isolation: Arc<Isolation>,
}

/// A partition as one Metadata response describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// `None` when the response names no leader (-1).
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl TestCluster {
    /// Starts `n` brokers (1, 3 or 5) with `overrides` for all of them and waits until
    /// every one prints its `listening on` line.
    pub fn start(n: usize, overrides: &[(&str, &str)]) -> TestCluster {
        let mut options = ClusterOptions::new(n);
        for (k, v) in overrides {
            options = options.set(k, v);
        }
        TestCluster::start_with(options)
    }

    /// Like [`start`](Self::start), with a [`PartitionProxy`] in front of every controller
    /// listener so [`isolate`](Self::isolate) works.
    pub fn start_with_proxies(n: usize, overrides: &[(&str, &str)]) -> TestCluster {
        let mut options = ClusterOptions::new(n).with_proxies();
        for (k, v) in overrides {
            options = options.set(k, v);
        }
        TestCluster::start_with(options)
    }

    pub fn start_with(options: ClusterOptions) -> TestCluster {
        let voters = options.voters.unwrap_or(options.brokers);
        assert!(
            matches!(voters, 1 | 3 | 5) && voters <= options.brokers,
            "a quorum has 1, 3 or 5 voters among the brokers, not {voters} of {}",
            options.brokers
        );
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = TestCluster::prepare(&options);
            match cluster.start_all() {
                Ok(()) => return cluster,
                Err(e) => {
                    // Most likely a picked port was taken before the broker bound it.
                    let outputs: String = cluster
                        .brokers
                        .iter()
                        .map(|b| format!("--- broker {} ---\n{}", b.id, b.output()))
                        .collect();
                    failures.push(format!("attempt {attempt}: {e}\n{outputs}"));
                    cluster.kill_all();
                }
            }
        }
        panic!(
            "cluster of {} failed to start {START_ATTEMPTS} times:\n{}",
            options.brokers,
            failures.join("\n")
        );
    }

    /// Picks ports, starts the proxies and builds every broker's settings; starts nothing.
    fn prepare(options: &ClusterOptions) -> TestCluster {
        let n = options.brokers;
        let dir = tempfile::Builder::new()
            .prefix("tributary-cluster-")
            .tempdir()
            .expect("create temp dir");
        let isolation = Arc::new(Isolation::default());
        let ports = free_ports(3 * n);
        let (kafka_ports, rest) = ports.split_at(n);
        let (controller_ports, http_ports) = rest.split_at(n);
        // Proxy listeners stay bound from here on, so their ports cannot be lost.
        let proxy_listeners: Vec<Option<TcpListener>> = (0..n)
            .map(|_| options.proxies.then(PartitionProxy::bind))
            .collect();
        let dial_addr = |i: usize| -> SocketAddr {
            match &proxy_listeners[i] {
                Some(l) => l.local_addr().expect("proxy address"),
                None => SocketAddr::from(([127, 0, 0, 1], controller_ports[i])),
            }
        };
        let voters = (0..options.voters.unwrap_or(n))
            .map(|i| format!("{i}@{}", dial_addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut brokers = Vec::with_capacity(n);
        for (i, proxy_listener) in proxy_listeners.iter().enumerate() {
            let id = i as i32;
            let log_dir = dir.path().join(format!("broker-{i}"));
            std::fs::create_dir_all(&log_dir).expect("create log dir");
            let kafka_addr = SocketAddr::from(([127, 0, 0, 1], kafka_ports[i]));
            let controller_listener = SocketAddr::from(([127, 0, 0, 1], controller_ports[i]));
            let http_addr = SocketAddr::from(([127, 0, 0, 1], http_ports[i]));
            let mut settings: Vec<(String, String)> = vec![
                ("broker.id".into(), id.to_string()),
                ("log.dirs".into(), log_dir.display().to_string()),
                ("listeners".into(), format!("PLAINTEXT://{kafka_addr}")),
                (
                    "controller.listener".into(),
                    controller_listener.to_string(),
                ),
                (
                    "controller.advertised.listener".into(),
                    dial_addr(i).to_string(),
                ),
                ("controller.quorum.voters".into(), voters.clone()),
                ("http.listener".into(), http_addr.to_string()),
                ("default.replication.factor".into(), n.min(3).to_string()),
                ("auto.create.topics.enable".into(), "true".into()),
                ("log.retention.check.interval.ms".into(), "100".into()),
                // SIGTERM in a test should not wait Kafka's full 30 s for leaderships to move.
                ("controlled.shutdown.timeout.ms".into(), "10000".into()),
                ("shutdown.grace.ms".into(), "5000".into()),
            ];
            let per_broker = options.broker_overrides.get(&id).into_iter().flatten();
            for (k, v) in options.overrides.iter().chain(per_broker) {
                match settings.iter_mut().find(|(key, _)| key == k) {
                    Some(existing) => existing.1 = v.clone(),
                    None => settings.push((k.clone(), v.clone())),
                }
            }
            let proxy = proxy_listener.as_ref().map(|l| {
                let listener = l.try_clone().expect("clone proxy listener");
                PartitionProxy::start(listener, controller_listener, id, isolation.clone())
            });
            brokers.push(ClusterBroker {
                id,
                log_dir,
                kafka_addr,
                controller_listener,
                http_addr,
                proxy,
                settings,
                process: BrokerProcess::new(format!("broker {id}")),
                isolation: isolation.clone(),
            });
        }
        isolation.set_proxies(brokers.iter().filter_map(|b| b.proxy.as_ref()));
        TestCluster {
            brokers,
            dir,
            isolation,
        }
    }

    /// Spawns every broker, then waits for all of them.
    fn start_all(&mut self) -> Result<(), String> {
        let mut waiting = Vec::with_capacity(self.brokers.len());
        for b in &mut self.brokers {
            let listening = b.spawn().map_err(|e| format!("broker {}: {e}", b.id))?;
            waiting.push(listening);
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for (b, listening) in self.brokers.iter_mut().zip(&waiting) {
            b.wait_listening(listening, deadline)
                .map_err(|e| format!("broker {}: {e}", b.id))?;
        }
        Ok(())
    }

    fn kill_all(&mut self) {
        for b in &mut self.brokers {
            b.kill9();
        }
    }

    pub fn len(&self) -> usize {
        self.brokers.len()
    }

    /// The directory holding every broker's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every broker's Kafka address, comma-separated (`bootstrap.servers`).
    pub fn bootstrap(&self) -> String {
        join_addrs(self.brokers.iter())
    }

    /// The Kafka addresses of the brokers the harness has not stopped.
    pub fn running_bootstrap(&self) -> String {
        join_addrs(self.brokers.iter().filter(|b| b.process.is_started()))
    }

    pub fn broker(&mut self, id: i32) -> &mut ClusterBroker {
        let n = self.brokers.len();
        self.brokers
            .get_mut(id as usize)
            .unwrap_or_else(|| panic!("no broker {id} in a cluster of {n}"))
    }

    pub fn brokers(&mut self) -> impl Iterator<Item = &mut ClusterBroker> {
        self.brokers.iter_mut()
    }

    pub fn kill9(&mut self, id: i32) {
        self.broker(id).kill9();
    }

    pub fn sigterm_and_wait(&mut self, id: i32) -> ExitStatus {
        self.broker(id).sigterm_and_wait()
    }

    pub fn restart(&mut self, id: i32) {
        self.broker(id).restart();
    }

    pub fn restart_empty(&mut self, id: i32) {
        self.broker(id).restart_empty();
    }

    pub fn pid(&mut self, id: i32) -> u32 {
        self.broker(id).pid()
    }

    pub fn addr(&mut self, id: i32) -> SocketAddr {
        self.broker(id).addr()
    }

    /// Panics unless every broker the harness started is still running.
    pub fn assert_all_alive(&mut self) {
        for b in &mut self.brokers {
            if b.process.is_started() {
                b.assert_alive();
            }
        }
    }

    // ---- Metadata, as clients see it ----

    /// A full Metadata response through librdkafka, from any running broker.
    pub fn metadata(&self) -> Result<Metadata, String> {
        let client: BaseConsumer = base_config(&self.running_bootstrap())
            .create()
            .map_err(|e| format!("create client: {e}"))?;
        client
            .fetch_metadata(None, OP_TIMEOUT)
            .map_err(|e| format!("metadata: {e}"))
    }

    /// The partition as librdkafka's Metadata shows it: `None` when the topic or partition
    /// is unknown or the request failed.
    fn rdkafka_partition(&self, topic: &str, partition: i32) -> Option<(i32, Vec<i32>)> {
        let md = self.metadata().ok()?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())?;
        let p = t
            .partitions()
            .iter()
            .find(|p| p.id() == partition && p.error().is_none())?;
        Some((p.leader(), p.isr().to_vec()))
    }

    /// The partition's leader according to Metadata from a running broker (`None`: no
    /// leader, unknown partition, or no answer).
    pub fn leader_of(&self, topic: &str, partition: i32) -> Option<i32> {
        self.rdkafka_partition(topic, partition)
            .map(|(leader, _)| leader)
            .filter(|leader| *leader >= 0)
    }

    /// Polls [`leader_of`](Self::leader_of) until there is a leader; panics after `timeout`.
    pub fn wait_for_leader(&self, topic: &str, partition: i32, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader_of(topic, partition) {
                return leader;
            }
            if Instant::now() > deadline {
                panic!("no leader for {topic}-{partition} within {timeout:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The partition's ISR according to Metadata, sorted; polls (bounded by OP_TIMEOUT)
    /// while no running broker answers for it, then panics.
    pub fn isr_of(&self, topic: &str, partition: i32) -> Vec<i32> {
        let deadline = Instant::now() + OP_TIMEOUT;
        loop {
            if let Some((_, mut isr)) = self.rdkafka_partition(topic, partition) {
                isr.sort_unstable();
                return isr;
            }
            if Instant::now() > deadline {
                panic!("no metadata for {topic}-{partition} within {OP_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The partition as broker `id` itself describes it (a Metadata request sent to that
    /// broker alone, which librdkafka cannot promise): for checking that brokers agree.
    /// `None` when that broker does not know the partition, or closes the connection
    /// instead of answering (cut off from the controller and the partition's followers).
    pub fn partition_seen_by(&self, id: i32, topic: &str, partition: i32) -> Option<PartitionView> {
        let addr = self.brokers.get(id as usize)?.kafka_addr;
        let mut client = RawClient::connect_negotiated(addr);
        let md = client.try_metadata(Some(&[topic]), false).ok()?;
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
        if t.error_code != 0 {
            return None;
        }
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition_index == partition && p.error_code == 0)?;
        Some(PartitionView {
            leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
            leader_epoch: p.leader_epoch,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
        })
    }

    // ---- Network partitions ----

    /// Cuts broker `id` off from the other brokers (both directions), leaving its Kafka
    /// port reachable by clients. Needs a cluster started with proxies.
    pub fn isolate(&mut self, id: i32) {
        assert!(
            self.brokers.iter().all(|b| b.proxy.is_some()),
            "isolate needs a cluster started with proxies (start_with_proxies)"
        );
        self.broker(id).note("isolated");
        self.isolation.isolate(id);
        self.isolation.enforce_all();
    }

    /// Lets broker `id` reach and be reached by the others again.
    pub fn heal(&mut self, id: i32) {
        self.broker(id).note("healed");
        self.isolation.heal(id);
    }

    pub fn is_isolated(&self, id: i32) -> bool {
        self.isolation.is_isolated(id)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.kill_all();
        if thread::panicking() {
            for b in &self.brokers {
                eprintln!("===== broker {} output =====\n{}", b.id, b.output());
            }
            eprintln!(
                "===== end of broker output (dir {:?}) =====",
                self.dir.path()
            );
        }
    }
}

fn join_addrs<'a>(brokers: impl Iterator<Item = &'a ClusterBroker>) -> String {
    brokers
        .map(|b| b.kafka_addr.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `count` distinct free loopback ports: all bound at once (so they differ), then released.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Isolation and the proxy
// ---------------------------------------------------------------------------------------

/// Who is cut off, shared by the harness and every proxy.
#[derive(Default)]
pub struct Isolation {
    state: Mutex<IsolationState>,
}

#[derive(Default)]
struct IsolationState {
    isolated: BTreeSet<i32>,
    /// Current pid of each broker, to recognise the connections it opens.
    pids: BTreeMap<i32, u32>,
    /// Every proxy's shared state, for `enforce_all`; weak, since each proxy holds this.
    proxies: Vec<Weak<ProxyShared>>,
}

impl Isolation {
    pub fn set_pid(&self, id: i32, pid: u32) {
        self.state.lock().unwrap().pids.insert(id, pid);
    }

    pub fn isolate(&self, id: i32) {
        self.state.lock().unwrap().isolated.insert(id);
    }

    pub fn heal(&self, id: i32) {
        self.state.lock().unwrap().isolated.remove(&id);
    }

    pub fn is_isolated(&self, id: i32) -> bool {
        self.state.lock().unwrap().isolated.contains(&id)
    }

    fn set_proxies<'a>(&self, proxies: impl Iterator<Item = &'a PartitionProxy>) {
        self.state.lock().unwrap().proxies = proxies.map(|p| Arc::downgrade(&p.shared)).collect();
    }

    /// Cuts, on every proxy, the live connections the current isolation forbids.
    pub fn enforce_all(&self) {
        let proxies = self.state.lock().unwrap().proxies.clone();
        for shared in proxies.iter().filter_map(Weak::upgrade) {
            enforce(&shared);
        }
    }

    /// Whether a connection from `peer` accepted by the proxy of broker `owner` (listening
    /// on `proxy_port`) is forbidden: `owner` is isolated, or `peer` is a socket of an
    /// isolated broker's process.
    fn forbids(&self, owner: i32, peer: SocketAddr, proxy_port: u16) -> bool {
        let isolated_pids: Vec<u32> = {
            let state = self.state.lock().unwrap();
            if state.isolated.contains(&owner) {
                return true;
            }
            state
                .isolated
                .iter()
                .filter_map(|id| state.pids.get(id).copied())
                .collect()
        };
        if isolated_pids.is_empty() {
            return false;
        }
        match socket_inode(peer.port(), proxy_port) {
            Some(inode) => isolated_pids
                .iter()
                .any(|pid| process_has_socket(*pid, inode)),
            None => false,
        }
    }
}

/// The inode of the TCP socket whose local port is `local_port` and remote port is
/// `remote_port`, from `/proc/net/tcp` and `/proc/net/tcp6` (columns: `sl local_address
/// rem_address st ... inode`, addresses as `HEXIP:HEXPORT`). Ports alone identify a
/// loopback connection.
pub fn socket_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    let port_of = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            if port_of(fields[1]) == Some(local_port) && port_of(fields[2]) == Some(remote_port) {
                return fields[9].parse().ok().filter(|inode| *inode != 0);
            }
        }
    }
    None
}

/// Whether process `pid` holds socket `inode` (a `socket:[inode]` link in
/// `/proc/<pid>/fd`).
pub fn process_has_socket(pid: u32, inode: u64) -> bool {
    let target = format!("socket:[{inode}]");
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries
        .filter_map(|e| e.ok())
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|link| link.as_os_str() == target.as_str()))
}

/// Live connections a proxy keeps at most; a broker needs a handful per peer.
pub const MAX_PROXY_CONNECTIONS: usize = 256;

/// One proxied connection.
struct ProxyConn {
    client: TcpStream,
    upstream: TcpStream,
    peer: SocketAddr,
}

struct ProxyShared {
    /// The broker whose controller listener this proxy fronts.
    owner: i32,
    port: u16,
    isolation: Arc<Isolation>,
    conns: Mutex<HashMap<u64, ProxyConn>>,
    /// Pump threads, joined on drop.
    pumps: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
    stop: AtomicBool,
    /// Connections refused because of an isolation, for tests of the proxy itself.
    refused: AtomicU64,
}

/// Cuts the connections of `shared`'s proxy that the isolation now forbids.
fn enforce(shared: &ProxyShared) {
    let peers: Vec<(u64, SocketAddr)> = shared
        .conns
        .lock()
        .unwrap()
        .iter()
        .map(|(id, c)| (*id, c.peer))
        .collect();
    let doomed: Vec<u64> = peers
        .into_iter()
        .filter(|(_, peer)| shared.isolation.forbids(shared.owner, *peer, shared.port))
        .map(|(id, _)| id)
        .collect();
    let mut conns = shared.conns.lock().unwrap();
    for id in doomed {
        if let Some(c) = conns.remove(&id) {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.upstream.shutdown(Shutdown::Both);
        }
    }
}

/// A loopback TCP proxy in front of one broker's controller listener that enforces the
/// cluster's [`Isolation`]: it refuses (accepts and closes at once) and cuts connections
/// that cross a partition. Structured like `proxy::Proxy` (an accept thread, two pump
/// threads per connection), which has no notion of who is connecting.
pub struct PartitionProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl PartitionProxy {
    /// Binds `127.0.0.1:0` without serving yet, so the port can go into the brokers'
    /// configuration before they start.
    pub fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").expect("bind proxy")
    }

    /// Serves `listener` for broker `owner`, forwarding allowed connections to `upstream`.
    pub fn start(
        listener: TcpListener,
        upstream: SocketAddr,
        owner: i32,
        isolation: Arc<Isolation>,
    ) -> PartitionProxy {
        let addr = listener.local_addr().expect("proxy address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking proxy listener");
        let shared = Arc::new(ProxyShared {
            owner,
            port: addr.port(),
            isolation,
            conns: Mutex::new(HashMap::new()),
            pumps: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        });
        let accept_shared = shared.clone();
        let accept_thread = thread::spawn(move || accept_loop(listener, upstream, accept_shared));
        PartitionProxy {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections refused because of an isolation so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Live proxied connections.
    pub fn live(&self) -> usize {
        self.shared.conns.lock().unwrap().len()
    }

    /// Cuts the live connections the isolation now forbids (what `TestCluster::isolate`
    /// does on every proxy).
    pub fn enforce(&self) {
        enforce(&self.shared);
    }
}

impl Drop for PartitionProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        let conns: Vec<_> = self.shared.conns.lock().unwrap().drain().collect();
        for (_, c) in conns {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.upstream.shutdown(Shutdown::Both);
        }
        let pumps: Vec<_> = self.shared.pumps.lock().unwrap().drain(..).collect();
        for p in pumps {
            let _ = p.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let (client, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Polling interval of a non-blocking accept, not synchronization.
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        if shared.isolation.forbids(shared.owner, peer, shared.port) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        if shared.conns.lock().unwrap().len() >= MAX_PROXY_CONNECTIONS {
            continue;
        }
        let _ = client.set_nonblocking(false);
        let _ = client.set_nodelay(true);
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
            // The broker is down (or not serving gRPC yet): the client sees a closed
            // connection and retries, as it would against the broker itself.
            continue;
        };
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        shared.conns.lock().unwrap().insert(
            id,
            ProxyConn {
                client: c3,
                upstream: s3,
                peer,
            },
        );
        let up = {
            let shared = shared.clone();
            thread::spawn(move || pump(client, s2, id, &shared))
        };
        let down = {
            let shared = shared.clone();
            thread::spawn(move || pump(server, c2, id, &shared))
        };
        let mut pumps = shared.pumps.lock().unwrap();
        pumps.retain(|p| !p.is_finished());
        pumps.push(up);
        pumps.push(down);
    }
}

/// Copies `from` → `to` until either side ends, then closes both and forgets the connection.
fn pump(mut from: TcpStream, mut to: TcpStream, id: u64, shared: &ProxyShared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.conns.lock().unwrap().remove(&id);
}
