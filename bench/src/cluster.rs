//! Real `tributary broker` processes on loopback for the cluster benchmarks (`failover`,
//! `replication`): start a standalone broker or an N-voter cluster in a temporary
//! directory, `kill -9` one broker, restart it on the same data and ports, and wait for
//! partitions to be fully replicated again.
//!
//! ```text
//! LocalCluster::start(n) ── pick 2n free ports ──► spawn n × `tributary broker
//!     -o broker.id=i -o listeners=PLAINTEXT://127.0.0.1:Ki -o controller.listener=…:Ci
//!     -o controller.quorum.voters=0@…:C0,1@…:C1,… -o log.dirs=<dir>/broker-i …`
//!   stdout ──reader thread──► "… listening on …" = ready; every line ──► broker-i.log
//!   stderr ───────────────────────────────────────────────────────────► broker-i.log
//! kill9(i) ── SIGKILL + reap ──► restart(i): the same command line, wait for ready
//! wait_fully_replicated ── raw Metadata v7 to every running broker, until all agree
//! Drop ── SIGKILL every broker, remove the directory (unless kept)
//! ```
//!
//! The command lines are the ones `tributary dev --brokers N` builds (see
//! `broker/src/devcluster.rs`), except that ports are free ones picked by binding
//! `127.0.0.1:0`, so a benchmark never collides with a dev cluster on 9092. A port taken
//! between picking and binding makes a broker exit; the whole start is then retried on
//! new ports. Every broker is spawned before the first wait: a broker may wait for a
//! quorum, which needs the others.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::wire::{self, ClusterMetadata};

/// How long a broker may take to print its `listening on` line (a cluster's brokers
/// wait for each other's quorum first).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at starting on fresh ports before giving up.
const START_ATTEMPTS: usize = 3;
/// Timeout of one Metadata request to one broker.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two rounds of Metadata polling while waiting for replication.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Log lines quoted in an error about a broker that did not start.
const LOG_TAIL_LINES: usize = 30;

/// The `tributary` executable: `explicit` when given, else the `tributary` next to this
/// benchmark's own executable (`cargo build --release -p tributary -p tributary-bench`
/// puts both in `target/release/`).
pub fn find_broker_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot find this executable's path")?
            .parent()
            .context("this executable has no parent directory")?
            .join("tributary"),
    };
    if !path.is_file() {
        bail!(
            "broker binary {} not found; build it with `cargo build --release -p tributary \
             -p tributary-bench`, or pass --broker-bin",
            path.display()
        );
    }
    Ok(path)
}

/// The `--override` values of broker `id`, in the order `tributary dev --brokers N` uses,
/// followed by the user's `extra` overrides (later ones win in the broker). `voters` is
/// `None` for a standalone broker (a single-node quorum of its own, no gRPC peers).
pub fn broker_settings(
    id: i32,
    kafka: SocketAddr,
    controller: Option<SocketAddr>,
    voters: Option<&str>,
    log_dir: &Path,
    replication_factor: usize,
    extra: &[String],
) -> Vec<String> {
    let mut settings = vec![
        format!("broker.id={id}"),
        format!("listeners=PLAINTEXT://{kafka}"),
    ];
    if let (Some(controller), Some(voters)) = (controller, voters) {
        settings.push(format!("controller.listener={controller}"));
        settings.push(format!("controller.quorum.voters={voters}"));
    }
    // Not the default 9644: brokers on one machine would all want it.
    settings.push("http.listener=127.0.0.1:0".to_string());
    settings.push(format!("log.dirs={}", log_dir.display()));
    settings.push("auto.create.topics.enable=true".to_string());
    settings.push(format!("default.replication.factor={replication_factor}"));
    settings.extend(extra.iter().cloned());
    settings
}

/// `0@127.0.0.1:C0,1@127.0.0.1:C1,...`.
pub fn voters(controllers: &[SocketAddr]) -> String {
    controllers
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{i}@{addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `count` distinct free loopback ports: all bound at once (so they differ), then released.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to pick a port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// One broker process.
pub struct LocalBroker {
    pub id: i32,
    /// The Kafka listener.
    pub kafka: SocketAddr,
    /// The executable followed by its arguments; replayed on restart.
    command: Vec<String>,
    /// stdout and stderr of every incarnation, appended.
    log_path: PathBuf,
    child: Option<Child>,
}

impl LocalBroker {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Spawns the process; the receiver gets one message when it prints `listening on`.
    fn spawn(&mut self) -> anyhow::Result<mpsc::Receiver<()>> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(log, "==== tributary-bench: starting broker {}", self.id)
            .with_context(|| format!("writing {}", self.log_path.display()))?;
        let stderr = log
            .try_clone()
            .with_context(|| format!("duplicating {}", self.log_path.display()))?;
        // A command line is built with the executable first.
        let (program, args) = self.command.split_first().context("empty command line")?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("starting broker {} ({program})", self.id))?;
        let stdout = child
            .stdout
            .take()
            .context("the broker's stdout is not piped")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("broker-{}-stdout", self.id))
            .spawn(move || forward_stdout(stdout, log, &ready_tx))
            .context("spawning the stdout reader thread")?;
        self.child = Some(child);
        Ok(ready_rx)
    }

    /// Waits for the `listening on` line of the process just spawned.
    fn wait_ready(&mut self, ready: &mpsc::Receiver<()>, deadline: Instant) -> anyhow::Result<()> {
        loop {
            match ready.recv_timeout(POLL_INTERVAL) {
                Ok(()) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Its stdout closed: it is exiting. Poll for the status below.
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(POLL_INTERVAL),
            }
            let child = self.child.as_mut().context("the broker is not running")?;
            if let Some(status) = child.try_wait().context("waiting for the broker")? {
                self.child = None;
                bail!(
                    "broker {} exited before listening ({status}); the end of {}:\n{}",
                    self.id,
                    self.log_path.display(),
                    log_tail(&self.log_path)
                );
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!(
                    "broker {} printed no `listening on` line within {STARTUP_TIMEOUT:?}; the \
                     end of {}:\n{}",
                    self.id,
                    self.log_path.display(),
                    log_tail(&self.log_path)
                );
            }
        }
    }

    /// SIGKILL and reap; returns the instant just before the signal, `None` when it was
    /// not running.
    fn kill9(&mut self) -> Option<Instant> {
        let mut child = self.child.take()?;
        let at = Instant::now();
        // Fails only when the process is already gone, which is what was wanted.
        let _ = child.kill();
        let _ = child.wait();
        Some(at)
    }
}

/// Copies the broker's stdout into its log file and signals its `listening on` line.
fn forward_stdout(stdout: impl std::io::Read, mut log: File, ready: &mpsc::Sender<()>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // The log is for people; losing a line of it is not worth stopping for.
        let _ = writeln!(log, "[stdout] {line}");
        if line.contains(" listening on ") {
            let _ = ready.send(());
        }
    }
}

/// The last lines of a broker's log, for error messages.
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

/// A standalone broker or an N-voter cluster in one temporary directory.
pub struct LocalCluster {
    brokers: Vec<LocalBroker>,
    dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts `n` brokers (1 = standalone, 3 or 5 = a quorum of that many voters) in a
    /// new directory under `parent`, each with `overrides` after the defaults, and waits
    /// until every one is listening. `label` names the directory.
    pub fn start(
        binary: &Path,
        n: usize,
        parent: &Path,
        label: &str,
        overrides: &[String],
    ) -> anyhow::Result<LocalCluster> {
        if !matches!(n, 1 | 3 | 5) {
            bail!("a cluster has 1, 3 or 5 brokers, not {n}");
        }
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = LocalCluster::prepare(binary, n, parent, label, overrides)?;
            match cluster.start_all() {
                Ok(()) => return Ok(cluster),
                // Most likely a picked port was taken before the broker bound it.
                Err(e) => failures.push(format!("attempt {attempt}: {e:#}")),
            }
        }
        bail!(
            "{label}: {n} brokers failed to start {START_ATTEMPTS} times:\n{}",
            failures.join("\n")
        )
    }

    fn prepare(
        binary: &Path,
        n: usize,
        parent: &Path,
        label: &str,
        overrides: &[String],
    ) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("tributary-bench-{label}-"))
            .tempdir_in(parent)
            .with_context(|| format!("creating a directory in {}", parent.display()))?;
        let ports = free_ports(2 * n)?;
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let controllers: Vec<SocketAddr> = ports[n..].iter().map(|&p| addr(p)).collect();
        let voter_list = (n > 1).then(|| voters(&controllers));
        let mut brokers = Vec::with_capacity(n);
        for i in 0..n {
            let id = i as i32;
            let log_dir = dir.path().join(format!("broker-{i}"));
            std::fs::create_dir_all(&log_dir)
                .with_context(|| format!("creating {}", log_dir.display()))?;
            let kafka = addr(ports[i]);
            let settings = broker_settings(
                id,
                kafka,
                voter_list.as_ref().map(|_| controllers[i]),
                voter_list.as_deref(),
                &log_dir,
                n.min(3),
                overrides,
            );
            let mut command = vec![binary.display().to_string(), "broker".to_string()];
            for setting in settings {
                command.push("--override".to_string());
                command.push(setting);
            }
            brokers.push(LocalBroker {
                id,
                kafka,
                command,
                log_path: dir.path().join(format!("broker-{i}.log")),
                child: None,
            });
        }
        Ok(LocalCluster { brokers, dir })
    }

    fn start_all(&mut self) -> anyhow::Result<()> {
        let mut waiting = Vec::with_capacity(self.brokers.len());
        for broker in &mut self.brokers {
            waiting.push(broker.spawn()?);
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for (broker, ready) in self.brokers.iter_mut().zip(&waiting) {
            broker.wait_ready(ready, deadline)?;
        }
        Ok(())
    }

    /// Keeps the directory (data and broker logs) after the run instead of removing it.
    pub fn keep_directory(&mut self) {
        self.dir.disable_cleanup(true);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn len(&self) -> usize {
        self.brokers.len()
    }

    pub fn broker(&self, id: i32) -> anyhow::Result<&LocalBroker> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.brokers.get(i))
            .with_context(|| format!("no broker {id} in a cluster of {}", self.brokers.len()))
    }

    fn broker_mut(&mut self, id: i32) -> anyhow::Result<&mut LocalBroker> {
        let n = self.brokers.len();
        usize::try_from(id)
            .ok()
            .and_then(|i| self.brokers.get_mut(i))
            .with_context(|| format!("no broker {id} in a cluster of {n}"))
    }

    /// Every broker's Kafka address, comma-separated (`bootstrap.servers`).
    pub fn bootstrap(&self) -> String {
        self.brokers
            .iter()
            .map(|b| b.kafka.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The pids of the running brokers.
    pub fn pids(&self) -> Vec<u32> {
        self.brokers.iter().filter_map(LocalBroker::pid).collect()
    }

    /// `kill -9` broker `id`; returns the instant just before the signal.
    pub fn kill9(&mut self, id: i32) -> anyhow::Result<Instant> {
        self.broker_mut(id)?
            .kill9()
            .with_context(|| format!("broker {id} is not running"))
    }

    /// Starts broker `id` again on the same data directory and ports and waits until it
    /// is listening.
    pub fn restart(&mut self, id: i32) -> anyhow::Result<()> {
        let broker = self.broker_mut(id)?;
        broker.kill9();
        let ready = broker.spawn()?;
        broker.wait_ready(&ready, Instant::now() + STARTUP_TIMEOUT)
    }

    /// Metadata for `topic` from the first running broker that answers.
    pub fn metadata(&self, topic: &str) -> anyhow::Result<ClusterMetadata> {
        let mut last_error = None;
        for broker in self.brokers.iter().filter(|b| b.is_running()) {
            match wire::metadata(broker.kafka, topic, METADATA_TIMEOUT) {
                Ok(md) => return Ok(md),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no broker is running")))
    }

    /// Polls until every running broker describes each of `topic`'s `partitions`
    /// partitions as led and fully in sync, with the same leader and ISR everywhere;
    /// returns that view. Fails after `timeout` with the last view or error.
    pub fn wait_fully_replicated(
        &self,
        topic: &str,
        partitions: i32,
        timeout: Duration,
    ) -> anyhow::Result<ClusterMetadata> {
        let deadline = Instant::now() + timeout;
        loop {
            let views: anyhow::Result<Vec<ClusterMetadata>> = self
                .brokers
                .iter()
                .filter(|b| b.is_running())
                .map(|b| wire::metadata(b.kafka, topic, METADATA_TIMEOUT))
                .collect();
            let last = match views {
                Ok(views) if agree_fully_replicated(&views, partitions) => {
                    // Non-empty: agree_fully_replicated needs at least one view.
                    return views.into_iter().next().context("no broker answered");
                }
                Ok(views) => format!("{:?}", views.first().map(|v| &v.partitions)),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{topic}: not fully replicated on every running broker within {timeout:?}; \
                     last: {last}"
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Every view has partitions `0..partitions`, each led and fully in sync, and all views
/// name the same leaders and ISRs (ISRs compared as sets).
pub fn agree_fully_replicated(views: &[ClusterMetadata], partitions: i32) -> bool {
    let summary = |view: &ClusterMetadata| -> Option<Vec<(i32, Vec<i32>)>> {
        if view.topic_error != 0 || view.partitions.len() != partitions as usize {
            return None;
        }
        view.partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (p.partition == i as i32 && p.fully_replicated()).then(|| {
                    let mut isr = p.isr.clone();
                    isr.sort_unstable();
                    (p.leader, isr)
                })
            })
            .collect()
    };
    let Some(first) = views.first().and_then(summary) else {
        return false;
    };
    views[1..]
        .iter()
        .all(|v| summary(v).as_ref() == Some(&first))
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for broker in &mut self.brokers {
            broker.kill9();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PartitionState;
    use std::os::unix::fs::PermissionsExt;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn cluster_settings_match_the_dev_cluster_command_lines() {
        let controllers = [addr(9192), addr(9193), addr(9194)];
        let voter_list = voters(&controllers);
        assert_eq!(
            voter_list,
            "0@127.0.0.1:9192,1@127.0.0.1:9193,2@127.0.0.1:9194"
        );
        let settings = broker_settings(
            1,
            addr(9093),
            Some(controllers[1]),
            Some(&voter_list),
            Path::new("/d/broker-1"),
            3,
            &["broker.session.timeout.ms=1000".to_string()],
        );
        assert_eq!(
            settings,
            [
                "broker.id=1",
                "listeners=PLAINTEXT://127.0.0.1:9093",
                "controller.listener=127.0.0.1:9193",
                "controller.quorum.voters=0@127.0.0.1:9192,1@127.0.0.1:9193,2@127.0.0.1:9194",
                "http.listener=127.0.0.1:0",
                "log.dirs=/d/broker-1",
                "auto.create.topics.enable=true",
                "default.replication.factor=3",
                "broker.session.timeout.ms=1000",
            ]
        );
    }

    #[test]
    fn a_standalone_broker_has_no_quorum_settings() {
        let settings = broker_settings(0, addr(9092), None, None, Path::new("/d"), 1, &[]);
        assert!(settings.iter().all(|s| !s.starts_with("controller.")));
        assert!(settings.contains(&"default.replication.factor=1".to_string()));
    }

    fn view(partitions: &[(i32, &[i32])]) -> ClusterMetadata {
        ClusterMetadata {
            controller_id: 0,
            brokers: Vec::new(),
            topic_error: 0,
            partitions: partitions
                .iter()
                .enumerate()
                .map(|(i, (leader, isr))| PartitionState {
                    partition: i as i32,
                    error_code: 0,
                    leader: *leader,
                    leader_epoch: 0,
                    replicas: vec![0, 1, 2],
                    isr: isr.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn replication_needs_every_partition_in_sync_and_every_broker_agreeing() {
        let full = view(&[(0, &[0, 1, 2]), (1, &[2, 1, 0])]);
        let reordered = view(&[(0, &[2, 1, 0]), (1, &[0, 1, 2])]);
        assert!(agree_fully_replicated(&[full.clone(), reordered], 2));
        assert!(
            !agree_fully_replicated(std::slice::from_ref(&full), 3),
            "a partition is missing"
        );
        assert!(!agree_fully_replicated(&[], 2));
        let shrunk = view(&[(0, &[0, 1]), (1, &[0, 1, 2])]);
        assert!(!agree_fully_replicated(&[shrunk], 2));
        let other_leader = view(&[(1, &[0, 1, 2]), (1, &[0, 1, 2])]);
        assert!(!agree_fully_replicated(&[full.clone(), other_leader], 2));
        let mut unknown = full.clone();
        unknown.topic_error = 3;
        assert!(!agree_fully_replicated(&[unknown], 2));
    }

    /// A stand-in for `tributary`: prints the ready line (or not) and then waits.
    fn fake_broker(dir: &Path, name: &str, script: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn processes_start_die_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_broker(
            dir.path(),
            "ok",
            "echo \"$@\" >&2\necho \"tributary broker 0 listening on 127.0.0.1:1\"\nexec sleep 600",
        );
        let mut cluster = LocalCluster::start(&binary, 3, dir.path(), "t", &[]).unwrap();
        assert_eq!(cluster.len(), 3);
        assert_eq!(cluster.pids().len(), 3);
        assert_eq!(cluster.bootstrap().split(',').count(), 3);
        let log = std::fs::read_to_string(&cluster.broker(2).unwrap().log_path).unwrap();
        assert!(log.contains("broker.id=2"), "{log}");
        assert!(log.contains("controller.quorum.voters=0@"), "{log}");
        assert!(
            log.contains("[stdout] tributary broker 0 listening on"),
            "{log}"
        );

        let pid = cluster.broker(1).unwrap().pid().unwrap();
        let before = Instant::now();
        let killed_at = cluster.kill9(1).unwrap();
        assert!(killed_at >= before);
        assert!(!cluster.broker(1).unwrap().is_running());
        assert!(cluster.kill9(1).is_err(), "it is no longer running");
        assert_eq!(cluster.pids().len(), 2);
        cluster.restart(1).unwrap();
        assert_ne!(cluster.broker(1).unwrap().pid(), Some(pid));
        assert_eq!(cluster.pids().len(), 3);
        assert!(cluster.broker(3).is_err());
        let data = cluster.dir().to_path_buf();
        drop(cluster);
        assert!(!data.exists(), "the directory is removed");
    }

    #[test]
    fn a_broker_that_exits_early_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_broker(
            dir.path(),
            "bad",
            "echo 'cannot bind: address in use' >&2\nexit 3",
        );
        let error = match LocalCluster::start(&binary, 1, dir.path(), "t", &[]) {
            Ok(_) => panic!("a broker that exits cannot start"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains("exited before listening"), "{error}");
        assert!(error.contains("cannot bind: address in use"), "{error}");
        assert!(error.contains("3 times"), "{error}");
        assert!(LocalCluster::start(&binary, 2, dir.path(), "t", &[]).is_err());
    }

    #[test]
    fn the_broker_binary_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("tributary");
        let error = find_broker_binary(Some(&missing)).unwrap_err().to_string();
        assert!(error.contains("--broker-bin"), "{error}");
        std::fs::write(&missing, "").unwrap();
        assert_eq!(find_broker_binary(Some(&missing)).unwrap(), missing);
    }
}
