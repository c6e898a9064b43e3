//! `tributary dev --brokers N`: a supervisor that runs an N-broker cluster on 127.0.0.1 as
//! child processes of the current executable, for development and failover experiments.
//!
//! ```text
//! tributary dev --brokers 3 ──spawn──> tributary broker -o broker.id=0 -o listeners=…:9092 -o controller.listener=…:9192 …
//!                          ├─spawn──> tributary broker -o broker.id=1 …:9093 / …:9193 …
//!                          └─spawn──> tributary broker -o broker.id=2 …:9094 / …:9194 …
//!
//! child stdout ──reader thread──> "tributary broker {id} listening on {addr}" = ready;
//!                                 any other line is forwarded as "[broker {id}] line"
//!                                 (among them "serving HTTP on {addr}", see below)
//! child stderr ──inherited (the brokers' logs)
//! child exit   ──waiter thread──> reported; the other brokers keep running
//!
//! all ready ──> one summary line per broker + `<data-dir>/cluster.json`
//! SIGINT/SIGTERM ──> SIGTERM to every live broker ──> wait for all ──> exit 0
//!                    (a second signal, or STOP_TIMEOUT, sends SIGKILL instead)
//! ```
//!
//! A broker that exits on its own (the user ran `kill -9` on it to watch a failover) is not
//! restarted: the supervisor only reports it. `cluster.json` holds each broker's exact
//! command line so it can be restarted by hand (or by a test) on the same data and ports; a
//! broker restarted that way is no longer the supervisor's child, so stopping the
//! supervisor does not stop it.
//!
//! [`plan`] is pure (ports, command lines, validation of the user's overrides) and unit
//! tested here; [`run`] is tested end to end in `broker/tests/cluster_harness.rs`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// How long every broker together may take to print its `listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long stopping may take before the remaining brokers are killed. A broker's own stop
/// is bounded by `controlled.shutdown.timeout.ms` (30 s) plus `shutdown.grace.ms` (10 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// Keys the supervisor sets differently for each broker; a `--override` of one of them
/// would give every broker the same value (one data directory, one port), so it is refused.
const MANAGED_KEYS: &[(&str, &str)] = &[
    ("broker.id", ""),
    ("node.id", ""),
    ("listeners", "; use --port"),
    ("advertised.listeners", "; use --port"),
    ("controller.listener", "; use --controller-port"),
    ("controller.advertised.listener", "; use --controller-port"),
    ("controller.quorum.voters", ""),
    (
        "http.listener",
        "; each broker binds a free port and prints it as it starts",
    ),
    ("log.dirs", "; use --data-dir"),
    ("log.dir", "; use --data-dir"),
];

/// What `tributary dev` was asked for.
#[derive(Debug, Clone)]
pub struct DevClusterSpec {
    /// Number of brokers, each a Raft voter: 1, 3 or 5.
    pub brokers: usize,
    /// Broker `i` keeps its data in `<data_dir>/broker-<i>`; `cluster.json` goes here.
    pub data_dir: PathBuf,
    /// Kafka port of broker 0; broker `i` listens on `port + i`.
    pub port: u16,
    /// gRPC (controller) port of broker 0; broker `i` listens on `controller_port + i`.
    pub controller_port: u16,
    /// The user's `key=value` overrides, passed to every broker after the supervisor's own.
    pub overrides: Vec<String>,
    /// The `tributary` binary to run (`std::env::current_exe()`).
    pub executable: PathBuf,
}

/// One broker of the cluster as planned: addresses, data directory, command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPlan {
    pub id: i32,
    /// `127.0.0.1:<port + id>`.
    pub kafka: String,
    /// `127.0.0.1:<controller_port + id>`.
    pub controller: String,
    pub log_dir: PathBuf,
    /// The full command line: the executable, `broker`, then `--override key=value` pairs.
    pub command: Vec<String>,
}

/// The contents of `<data-dir>/cluster.json`, written once every broker is listening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
    pub brokers: Vec<ClusterFileBroker>,
    /// Every broker's Kafka address, comma-separated: a client's `bootstrap.servers`.
    pub bootstrap: String,
}

/// One broker in `cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFileBroker {
    pub id: i32,
    /// Process id at start; a broker restarted by hand gets another.
    pub pid: u32,
    pub kafka: String,
    pub controller: String,
    pub log_dir: String,
    /// Runs this broker again on the same data and ports.
    pub command: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    #[error(
        "--brokers {0}: a cluster has 1, 3 or 5 brokers. Every broker is a Raft voter, and a \
         majority of 2 is 2 and of 4 is 3, so those tolerate no more failures than 1 or 3"
    )]
    BrokerCount(usize),
    #[error("--{flag} {port}: {brokers} brokers need ports {port} to {last}, {reason}")]
    Ports {
        flag: &'static str,
        port: u16,
        brokers: usize,
        last: u32,
        reason: &'static str,
    },
    #[error("--override {key}: `dev --brokers {brokers}` sets {key} for each broker itself{hint}")]
    ManagedKey {
        key: String,
        brokers: usize,
        hint: &'static str,
    },
    #[error("override {0:?} is not of the form key=value")]
    Override(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start broker {id} ({program}): {source}")]
    Spawn {
        id: i32,
        program: String,
        source: std::io::Error,
    },
    #[error("cannot install the {0} handler: {1}")]
    Signals(&'static str, std::io::Error),
    #[error("broker {id} exited while the cluster was starting ({status}); its log is above")]
    EarlyExit { id: i32, status: String },
    #[error("brokers {ids:?} did not print their `listening on` line within {secs} s")]
    StartTimeout { ids: Vec<i32>, secs: u64 },
}

type Result<T, E = DevClusterError> = std::result::Result<T, E>;

/// Plans the cluster: checks the broker count, the port ranges and the user's overrides,
/// and builds each broker's command line. Pure: nothing is started or written.
pub fn plan(spec: &DevClusterSpec) -> Result<Vec<BrokerPlan>> {
    let n = spec.brokers;
    if !matches!(n, 1 | 3 | 5) {
        return Err(DevClusterError::BrokerCount(n));
    }
    check_ports("port", spec.port, n)?;
    check_ports("controller-port", spec.controller_port, n)?;
    let (kafka, controller) = (u32::from(spec.port), u32::from(spec.controller_port));
    if kafka < controller + n as u32 && controller < kafka + n as u32 {
        return Err(DevClusterError::Ports {
            flag: "controller-port",
            port: spec.controller_port,
            brokers: n,
            last: controller + n as u32 - 1,
            reason: "which overlap the Kafka ports (--port)",
        });
    }
    let mut user = Vec::with_capacity(spec.overrides.len());
    for item in &spec.overrides {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| DevClusterError::Override(item.clone()))?;
        let key = key.trim();
        if let Some((_, hint)) = MANAGED_KEYS.iter().find(|(k, _)| *k == key) {
            return Err(DevClusterError::ManagedKey {
                key: key.to_string(),
                brokers: n,
                hint,
            });
        }
        user.push(format!("{key}={}", value.trim()));
    }

    let controller_addr = |i: usize| format!("127.0.0.1:{}", spec.controller_port as usize + i);
    let voters = (0..n)
        .map(|i| format!("{i}@{}", controller_addr(i)))
        .collect::<Vec<_>>()
        .join(",");
    let replication_factor = n.min(3);
    Ok((0..n)
        .map(|i| {
            let kafka = format!("127.0.0.1:{}", spec.port as usize + i);
            let controller = controller_addr(i);
            let log_dir = spec.data_dir.join(format!("broker-{i}"));
            let settings = [
                format!("broker.id={i}"),
                format!("listeners=PLAINTEXT://{kafka}"),
                format!("controller.listener={controller}"),
                format!("controller.quorum.voters={voters}"),
                // /healthz, /readyz and /metrics on a free port each, rather than all on
                // 9644; the broker prints the address (`serving HTTP on`), which the
                // supervisor forwards.
                "http.listener=127.0.0.1:0".to_string(),
                format!("log.dirs={}", log_dir.display()),
                "auto.create.topics.enable=true".to_string(),
                format!("default.replication.factor={replication_factor}"),
            ];
            let mut command = vec![spec.executable.display().to_string(), "broker".to_string()];
            for setting in settings.into_iter().chain(user.iter().cloned()) {
                command.push("--override".to_string());
                command.push(setting);
            }
            BrokerPlan {
                id: i as i32,
                kafka,
                controller,
                log_dir,
                command,
            }
        })
        .collect())
}

fn check_ports(flag: &'static str, port: u16, brokers: usize) -> Result<()> {
    let last = u32::from(port) + brokers as u32 - 1;
    let reason = if port == 0 {
        "and port 0 (any free port) cannot be written into the other brokers' configuration"
    } else if last > u32::from(u16::MAX) {
        "past the last port, 65535"
    } else {
        return Ok(());
    };
    Err(DevClusterError::Ports {
        flag,
        port,
        brokers,
        last,
        reason,
    })
}

/// `cluster.json` for brokers that were started with these pids.
pub fn cluster_file(plans: &[BrokerPlan], pids: &[u32]) -> ClusterFile {
    ClusterFile {
        brokers: plans
            .iter()
            .zip(pids)
            .map(|(p, pid)| ClusterFileBroker {
                id: p.id,
                pid: *pid,
                kafka: p.kafka.clone(),
                controller: p.controller.clone(),
                log_dir: p.log_dir.display().to_string(),
                command: p.command.clone(),
            })
            .collect(),
        bootstrap: plans
            .iter()
            .map(|p| p.kafka.as_str())
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Writes `file` to `<dir>/cluster.json` through a temporary file and a rename, so a reader
/// never sees half of it.
pub fn write_cluster_file(dir: &Path, file: &ClusterFile) -> Result<PathBuf> {
    let path = dir.join("cluster.json");
    let tmp = dir.join("cluster.json.tmp");
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| DevClusterError::Io {
            action,
            path,
            source,
        }
    };
    // Serializing plain strings and numbers cannot fail.
    let mut text = serde_json::to_string_pretty(file).expect("cluster.json serializes");
    text.push('\n');
    std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename into", &path))?;
    Ok(path)
}

/// What the per-child threads report.
#[derive(Debug)]
enum Event {
    /// The broker printed its `listening on` line.
    Ready { id: i32 },
    /// The broker process ended (status text from `ExitStatus`).
    Exited { id: i32, status: String },
}

/// A running child as the supervisor sees it; the `Child` itself is owned by its waiter
/// thread, which reaps it, so the supervisor signals it by pid while `alive`.
struct Supervised {
    id: i32,
    pid: u32,
    /// False once its waiter thread reported the exit (after which the pid may be reused,
    /// so it is never signalled again).
    alive: bool,
}

/// Runs the cluster until SIGINT or SIGTERM, then stops every broker and returns. Errors
/// before every broker is listening stop the brokers already started.
pub async fn run(spec: &DevClusterSpec) -> Result<()> {
    let plans = plan(spec)?;
    for dir in
        std::iter::once(spec.data_dir.as_path()).chain(plans.iter().map(|p| p.log_dir.as_path()))
    {
        std::fs::create_dir_all(dir).map_err(|source| DevClusterError::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    // Handlers first: a Ctrl-C during start-up must stop the brokers, not orphan them.
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| DevClusterError::Signals("SIGTERM", e))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| DevClusterError::Signals("SIGINT", e))?;

    // Bounded: at most a ready and an exit event per broker are ever in flight.
    let (tx, mut events) = mpsc::channel::<Event>(2 * plans.len() + 2);
    let mut children = Vec::with_capacity(plans.len());
    for plan in &plans {
        match spawn(plan, tx.clone()) {
            Ok(pid) => children.push(Supervised {
                id: plan.id,
                pid,
                alive: true,
            }),
            Err(e) => {
                drop(tx);
                stop(&mut children, &mut events, &mut term, &mut int).await;
                return Err(e);
            }
        }
    }
    drop(tx);

    let mut ready = BTreeSet::new();
    let startup = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup);
    while ready.len() < plans.len() {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Ready { id }) => {
                    ready.insert(id);
                }
                Some(Event::Exited { id, status }) => {
                    mark_exited(&mut children, id);
                    stop(&mut children, &mut events, &mut term, &mut int).await;
                    return Err(DevClusterError::EarlyExit { id, status });
                }
                // Every thread is gone, so every child exited; the exit events came first.
                None => unreachable!("a child exited without an exit event"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = &mut startup => {
                stop(&mut children, &mut events, &mut term, &mut int).await;
                let ids = plans.iter().map(|p| p.id).filter(|id| !ready.contains(id)).collect();
                return Err(DevClusterError::StartTimeout { ids, secs: STARTUP_TIMEOUT.as_secs() });
            }
        }
    }

    if ready.len() < plans.len() {
        // Stopped by a signal during start-up.
        stop(&mut children, &mut events, &mut term, &mut int).await;
        return Ok(());
    }
    let pids: Vec<u32> = children.iter().map(|c| c.pid).collect();
    let file = cluster_file(&plans, &pids);
    let path = match write_cluster_file(&spec.data_dir, &file) {
        Ok(path) => path,
        Err(e) => {
            stop(&mut children, &mut events, &mut term, &mut int).await;
            return Err(e);
        }
    };
    print_summary(&file, &path);

    let mut threads_done = false;
    loop {
        tokio::select! {
            event = events.recv(), if !threads_done => match event {
                Some(Event::Exited { id, status }) => {
                    let pid = mark_exited(&mut children, id);
                    let live = children.iter().filter(|c| c.alive).count();
                    println!(
                        "broker {id} (pid {pid}) exited: {status}; {live} still running. \
                         Restart it by hand with its \"command\" from {}",
                        path.display()
                    );
                    let _ = std::io::stdout().flush();
                }
                Some(Event::Ready { .. }) => {}
                None => threads_done = true,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    stop(&mut children, &mut events, &mut term, &mut int).await;
    Ok(())
}

fn mark_exited(children: &mut [Supervised], id: i32) -> u32 {
    match children.iter_mut().find(|c| c.id == id) {
        Some(c) => {
            c.alive = false;
            c.pid
        }
        None => 0,
    }
}

/// Starts one broker with piped stdout and inherited stderr, and the two threads that
/// watch it. Returns its pid.
fn spawn(plan: &BrokerPlan, tx: mpsc::Sender<Event>) -> Result<u32> {
    let (program, args) = plan
        .command
        .split_first()
        .expect("a planned command starts with the executable");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| DevClusterError::Spawn {
            id: plan.id,
            program: program.clone(),
            source,
        })?;
    let pid = child.id();
    let id = plan.id;
    // Piped above, so present.
    let stdout = child.stdout.take().expect("stdout is piped");
    let ready_tx = tx.clone();
    let ready_line = format!("tributary broker {id} listening on ");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(&ready_line) {
                let _ = ready_tx.blocking_send(Event::Ready { id });
            } else {
                println!("[broker {id}] {line}");
            }
        }
    });
    std::thread::spawn(move || {
        let status = match child.wait() {
            Ok(status) => describe_status(status),
            Err(e) => format!("cannot wait for it: {e}"),
        };
        let _ = tx.blocking_send(Event::Exited { id, status });
    });
    Ok(pid)
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

/// SIGTERM to every live broker, then waits for all of them to exit. A second signal to
/// the supervisor, or [`STOP_TIMEOUT`], sends SIGKILL to the ones still running.
async fn stop(
    children: &mut [Supervised],
    events: &mut mpsc::Receiver<Event>,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    let live = children.iter().filter(|c| c.alive).count();
    if live == 0 {
        return;
    }
    println!("stopping {live} brokers (Ctrl-C again to kill them)");
    let _ = std::io::stdout().flush();
    signal_all(children, Signal::SIGTERM);
    let deadline = tokio::time::sleep(STOP_TIMEOUT);
    tokio::pin!(deadline);
    let mut killed = false;
    while children.iter().any(|c| c.alive) {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Exited { id, .. }) => {
                    mark_exited(children, id);
                }
                Some(Event::Ready { .. }) => {}
                None => break,
            },
            _ = term.recv(), if !killed => {
                killed = true;
                signal_all(children, Signal::SIGKILL);
            }
            _ = int.recv(), if !killed => {
                killed = true;
                signal_all(children, Signal::SIGKILL);
            }
            _ = &mut deadline, if !killed => {
                eprintln!("brokers still running after {} s; killing them", STOP_TIMEOUT.as_secs());
                killed = true;
                signal_all(children, Signal::SIGKILL);
            }
        }
    }
}

fn signal_all(children: &[Supervised], signal: Signal) {
    for c in children.iter().filter(|c| c.alive) {
        let Ok(raw) = i32::try_from(c.pid) else {
            continue;
        };
        // ESRCH: it exited and its exit event is on the way. Anything else is worth a line.
        match kill(Pid::from_raw(raw), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => eprintln!(
                "cannot send {signal} to broker {} (pid {}): {e}",
                c.id, c.pid
            ),
        }
    }
}

fn print_summary(file: &ClusterFile, path: &Path) {
    let mut out = std::io::stdout().lock();
    let mut lines = Vec::new();
    for b in &file.brokers {
        lines.push(format!(
            "broker {} pid {} kafka {} controller {} data {}",
            b.id, b.pid, b.kafka, b.controller, b.log_dir
        ));
    }
    lines.push(format!("bootstrap: {}", file.bootstrap));
    lines.push(format!(
        "cluster: {}. Ctrl-C stops every broker. To watch a failover, `kill -9` a broker's \
         pid; restart it by hand with its \"command\" from that file, e.g. \
         jq -r '.brokers[0].command | @sh' {} (a broker restarted by hand is not stopped by Ctrl-C here)",
        path.display(),
        path.display()
    ));
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(brokers: usize) -> DevClusterSpec {
        DevClusterSpec {
            brokers,
            data_dir: PathBuf::from("/tmp/dev"),
            port: 9092,
            controller_port: 9192,
            overrides: Vec::new(),
            executable: PathBuf::from("/bin/tributary"),
        }
    }

    fn overrides(plan: &BrokerPlan) -> Vec<&str> {
        assert_eq!(&plan.command[..2], ["/bin/tributary", "broker"]);
        plan.command[2..]
            .chunks(2)
            .map(|pair| {
                assert_eq!(pair[0], "--override");
                pair[1].as_str()
            })
            .collect()
    }

    #[test]
    fn three_brokers_get_consecutive_ports_and_one_voter_list() {
        let mut s = spec(3);
        s.overrides = vec!["log.retention.ms = 1000".into(), "num.partitions=3".into()];
        let plans = plan(&s).unwrap();
        assert_eq!(plans.len(), 3);
        let voters = "controller.quorum.voters=0@127.0.0.1:9192,1@127.0.0.1:9193,2@127.0.0.1:9194";
        for (i, p) in plans.iter().enumerate() {
            assert_eq!(p.id, i as i32);
            assert_eq!(p.kafka, format!("127.0.0.1:{}", 9092 + i));
            assert_eq!(p.controller, format!("127.0.0.1:{}", 9192 + i));
            assert_eq!(p.log_dir, PathBuf::from(format!("/tmp/dev/broker-{i}")));
            let expected = [
                format!("broker.id={i}"),
                format!("listeners=PLAINTEXT://127.0.0.1:{}", 9092 + i),
                format!("controller.listener=127.0.0.1:{}", 9192 + i),
                voters.to_string(),
                "http.listener=127.0.0.1:0".to_string(),
                format!("log.dirs=/tmp/dev/broker-{i}"),
                "auto.create.topics.enable=true".to_string(),
                "default.replication.factor=3".to_string(),
                // The user's overrides come last, so they win over the defaults above.
                "log.retention.ms=1000".to_string(),
                "num.partitions=3".to_string(),
            ];
            assert_eq!(overrides(p), expected);
        }
        let file = cluster_file(&plans, &[10, 11, 12]);
        assert_eq!(
            file.bootstrap,
            "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
        );
        assert_eq!(file.brokers[2].pid, 12);
        assert_eq!(file.brokers[2].command, plans[2].command);
    }

    #[test]
    fn one_broker_has_replication_factor_one() {
        let plans = plan(&spec(1)).unwrap();
        assert_eq!(plans.len(), 1);
        assert!(overrides(&plans[0]).contains(&"default.replication.factor=1"));
        assert!(overrides(&plans[0]).contains(&"controller.quorum.voters=0@127.0.0.1:9192"));
        let five = plan(&spec(5)).unwrap();
        assert!(overrides(&five[4]).contains(&"default.replication.factor=3"));
    }

    #[test]
    fn refuses_quorums_that_buy_nothing() {
        for n in [0, 2, 4, 6] {
            let err = plan(&spec(n)).unwrap_err().to_string();
            assert!(err.contains("1, 3 or 5"), "{n}: {err}");
        }
    }

    #[test]
    fn refuses_bad_port_ranges() {
        let mut s = spec(3);
        s.port = 65534;
        let err = plan(&s).unwrap_err().to_string();
        assert!(
            err.contains("--port 65534") && err.contains("65535"),
            "{err}"
        );
        let mut s = spec(3);
        s.controller_port = 9094;
        let err = plan(&s).unwrap_err().to_string();
        assert!(err.contains("overlap"), "{err}");
        let mut s = spec(3);
        s.controller_port = 9090;
        assert!(plan(&s).unwrap_err().to_string().contains("overlap"));
        let mut s = spec(3);
        s.controller_port = 9095;
        assert!(plan(&s).is_ok(), "adjacent ranges do not overlap");
        let mut s = spec(3);
        s.port = 0;
        assert!(plan(&s).unwrap_err().to_string().contains("port 0"));
    }

    #[test]
    fn refuses_overrides_of_per_broker_keys() {
        let mut s = spec(3);
        s.overrides = vec!["log.dirs=/x".into()];
        let err = plan(&s).unwrap_err().to_string();
        assert!(
            err.contains("log.dirs") && err.contains("--data-dir"),
            "{err}"
        );
        s.overrides = vec![" broker.id =1".into()];
        assert!(plan(&s).unwrap_err().to_string().contains("broker.id"));
        s.overrides = vec!["novalue".into()];
        assert!(plan(&s).unwrap_err().to_string().contains("key=value"));
    }

    #[test]
    fn cluster_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let plans = plan(&spec(3)).unwrap();
        let file = cluster_file(&plans, &[1, 2, 3]);
        let path = write_cluster_file(dir.path(), &file).unwrap();
        assert_eq!(path, dir.path().join("cluster.json"));
        assert!(!dir.path().join("cluster.json.tmp").exists());
        let text = std::fs::read_to_string(&path).unwrap();
        let back: ClusterFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, file);
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(raw["brokers"][1]["kafka"], "127.0.0.1:9093");
        assert_eq!(raw["brokers"][1]["controller"], "127.0.0.1:9193");
        assert_eq!(raw["brokers"][1]["command"][1], "broker");
        assert!(write_cluster_file(&dir.path().join("missing"), &file).is_err());
    }
}
