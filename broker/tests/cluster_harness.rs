//! The multi-broker harness itself (`common::cluster`) and `tributary dev --brokers N`:
//! processes start, print their listening line, survive a sibling's kill -9 and restart;
//! the partition proxy cuts exactly the isolated process; the dev supervisor starts, writes
//! `cluster.json`, keeps running when a broker dies and stops everything on SIGTERM.
//!
//! Replication is built elsewhere: nothing here depends on the brokers agreeing on
//! metadata, only on what each process does by itself.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{process_has_socket, socket_inode, Isolation, PartitionProxy, TestCluster};
use common::{create_topic, wait_until, RawClient, OP_TIMEOUT, STARTUP_TIMEOUT};

fn listening_lines(output: &str, id: i32, addr: SocketAddr) -> usize {
    let line = format!("[stdout] tributary broker {id} listening on {addr}");
    output.lines().filter(|l| *l == line).count()
}

/// ApiVersions answers on the broker's Kafka port.
fn assert_serves_kafka(addr: SocketAddr) {
    let client = RawClient::connect_negotiated(addr);
    assert!(
        !client.broker_versions.is_empty(),
        "{addr}: no API versions"
    );
}

#[test]
fn three_brokers_start_and_one_survives_kill9_and_restart() {
    let mut cluster = TestCluster::start(3, &[("num.partitions", "2")]);
    assert_eq!(cluster.len(), 3);

    let mut addrs = Vec::new();
    let mut dirs = BTreeSet::new();
    for id in 0..3 {
        let b = cluster.broker(id);
        b.assert_alive();
        assert_eq!(
            listening_lines(&b.output(), id, b.addr()),
            1,
            "{}",
            b.output()
        );
        assert_eq!(b.setting("broker.id"), Some(id.to_string().as_str()));
        assert_eq!(
            b.setting("num.partitions"),
            Some("2"),
            "overrides reach every broker"
        );
        let voters = b.setting("controller.quorum.voters").unwrap().to_string();
        assert_eq!(voters.split(',').count(), 3, "{voters}");
        assert!(
            voters.contains(&format!("{id}@{}", b.controller_addr())),
            "{voters}"
        );
        dirs.insert(b.log_dir());
        addrs.push(b.addr());
        assert_serves_kafka(b.addr());
    }
    assert_eq!(dirs.len(), 3, "each broker has its own log.dirs");
    let bootstrap = cluster.bootstrap();
    assert_eq!(
        bootstrap,
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );

    // kill -9 broker 1: it is gone, the others keep serving.
    let pid = cluster.pid(1);
    cluster.kill9(1);
    assert!(!cluster.broker(1).is_alive());
    assert!(
        TcpStream::connect_timeout(&addrs[1], Duration::from_secs(1)).is_err(),
        "a killed broker's port is closed"
    );
    assert_eq!(
        cluster.running_bootstrap(),
        format!("{},{}", addrs[0], addrs[2])
    );
    cluster.broker(0).assert_alive();
    cluster.broker(2).assert_alive();
    assert_serves_kafka(addrs[0]);

    // Restart on the same data and port.
    cluster.restart(1);
    let b = cluster.broker(1);
    b.assert_alive();
    assert_ne!(b.pid(), pid);
    assert_eq!(b.addr(), addrs[1]);
    assert_eq!(
        listening_lines(&b.output(), 1, addrs[1]),
        2,
        "{}",
        b.output()
    );
    assert_serves_kafka(addrs[1]);

    // SIGTERM stops cleanly; restart_empty comes back on a wiped data directory.
    let marker = cluster.broker(2).log_dir().join("marker");
    std::fs::write(&marker, b"x").unwrap();
    let status = cluster.sigterm_and_wait(2);
    assert!(status.success(), "SIGTERM exit status {status}");
    cluster.restart_empty(2);
    assert!(!marker.exists(), "restart_empty wipes log.dirs");
    cluster.broker(2).assert_alive();
    assert_serves_kafka(addrs[2]);
    cluster.assert_all_alive();
}

#[test]
fn one_broker_cluster_reports_leader_and_isr_through_metadata() {
    let cluster = TestCluster::start(1, &[]);
    let topic = "harness-metadata";
    create_topic(&cluster.bootstrap(), topic, 2, &[]);
    assert_eq!(cluster.wait_for_leader(topic, 1, OP_TIMEOUT), 0);
    assert_eq!(cluster.leader_of(topic, 0), Some(0));
    assert_eq!(cluster.isr_of(topic, 0), vec![0]);
    assert_eq!(cluster.leader_of(topic, 7), None, "no such partition");
    assert_eq!(cluster.leader_of("harness-no-such-topic", 0), None);
    let view = cluster
        .partition_seen_by(0, topic, 1)
        .expect("broker 0 knows it");
    assert_eq!(view.leader, Some(0));
    assert_eq!(view.replicas, vec![0]);
    assert_eq!(view.isr, vec![0]);
    assert_eq!(
        cluster.partition_seen_by(0, "harness-no-such-topic", 0),
        None
    );
}

// ---------------------------------------------------------------------------------------
// The partition proxy
// ---------------------------------------------------------------------------------------

/// An echo server standing in for a broker's gRPC listener. Its threads end when their
/// connections close (the proxy closes them on drop).
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Whether a round trip through `stream` works (false once the proxy closed it).
fn echoes(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if stream.write_all(b"ping").is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to proxy")
}

#[test]
fn socket_lookup_finds_this_process() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = connect(listener.local_addr().unwrap());
    let local = stream.local_addr().unwrap();
    let inode = socket_inode(local.port(), listener.local_addr().unwrap().port())
        .expect("our socket is in /proc/net/tcp");
    assert!(process_has_socket(std::process::id(), inode));
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    assert!(!process_has_socket(sleeper.id(), inode));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn proxy_cuts_only_connections_of_the_isolated_process() {
    let upstream = echo_server();
    let isolation = Arc::new(Isolation::default());
    let proxy = PartitionProxy::start(PartitionProxy::bind(), upstream, 0, isolation.clone());
    // This test process plays broker 1; a `sleep` process plays broker 2.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    isolation.set_pid(1, std::process::id());
    isolation.set_pid(2, sleeper.id());

    let mut before = connect(proxy.addr());
    assert!(echoes(&mut before), "no isolation: traffic flows");

    // Isolating another process leaves ours alone.
    isolation.isolate(2);
    proxy.enforce();
    assert!(echoes(&mut before));
    assert!(echoes(&mut connect(proxy.addr())));
    isolation.heal(2);

    // Isolating our process cuts our live connection and refuses new ones.
    isolation.isolate(1);
    proxy.enforce();
    assert!(
        !echoes(&mut before),
        "live connection of the isolated process is cut"
    );
    assert!(
        !echoes(&mut connect(proxy.addr())),
        "new connection is refused"
    );
    assert!(proxy.refused() >= 1);
    wait_until(OP_TIMEOUT, "no live proxied connection", || {
        proxy.live() == 0
    });

    // Healed: new connections flow again.
    isolation.heal(1);
    assert!(echoes(&mut connect(proxy.addr())));

    // Isolating the proxy's own broker refuses everyone.
    let mut live = connect(proxy.addr());
    assert!(echoes(&mut live));
    isolation.isolate(0);
    proxy.enforce();
    assert!(!echoes(&mut live));
    assert!(!echoes(&mut connect(proxy.addr())));
    isolation.heal(0);
    assert!(echoes(&mut connect(proxy.addr())));

    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn brokers_behind_proxies_advertise_the_proxy_and_keep_kafka_reachable_when_isolated() {
    let mut cluster = TestCluster::start_with_proxies(3, &[]);
    let mut proxies = Vec::new();
    for id in 0..3 {
        let b = cluster.broker(id);
        let proxy = b.proxy().expect("started with proxies").addr();
        assert_eq!(b.controller_addr(), proxy);
        assert_ne!(b.controller_listener(), proxy);
        assert_eq!(
            b.setting("controller.advertised.listener"),
            Some(proxy.to_string().as_str())
        );
        assert_eq!(
            b.setting("controller.listener"),
            Some(b.controller_listener().to_string().as_str())
        );
        assert!(b
            .setting("controller.quorum.voters")
            .unwrap()
            .contains(&format!("{id}@{proxy}")));
        proxies.push(proxy);
    }

    cluster.isolate(1);
    assert!(cluster.is_isolated(1));
    // Nobody reaches broker 1's controller listener through its proxy...
    let refused = cluster.broker(1).proxy().unwrap().refused();
    assert!(!echoes(&mut connect(proxies[1])));
    wait_until(
        OP_TIMEOUT,
        "broker 1's proxy refuses the connection",
        || cluster.broker(1).proxy().unwrap().refused() > refused,
    );
    // ...while clients still reach its Kafka port, and every broker keeps running.
    assert_serves_kafka(cluster.addr(1));
    cluster.assert_all_alive();
    // A restarted broker is cut off again as soon as it is isolated. (It is healed first:
    // a broker restarted while cut off from the quorum waits to be admitted by the
    // controller and never prints its listening line.)
    cluster.heal(1);
    cluster.restart(1);
    cluster.isolate(1);
    assert!(cluster.is_isolated(1));
    let refused = cluster.broker(1).proxy().unwrap().refused();
    assert!(!echoes(&mut connect(proxies[1])));
    wait_until(OP_TIMEOUT, "broker 1's proxy still refuses", || {
        cluster.broker(1).proxy().unwrap().refused() > refused
    });
    cluster.heal(1);
    assert!(!cluster.is_isolated(1));
    cluster.assert_all_alive();
}

// ---------------------------------------------------------------------------------------
// tributary dev --brokers 3
// ---------------------------------------------------------------------------------------

/// `n` consecutive free ports starting at a base that is also free `gap` ports later.
fn consecutive_ports(n: u16) -> (u16, u16) {
    // Below the Linux ephemeral range (32768+), so outgoing connections do not take them.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let seed = u64::from(std::process::id()) ^ u64::from(now.subsec_nanos());
    let mut x = seed | 1;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = 20_000 + (x % 12_000) as u16;
        let (kafka, controller) = (base, base + 100);
        let free = (0..n).all(|i| {
            TcpListener::bind(("127.0.0.1", kafka + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", controller + i)).is_ok()
        });
        if free {
            return (kafka, controller);
        }
    }
    panic!("no free consecutive ports found");
}

fn pid_alive(pid: u32) -> bool {
    // A reaped child has no /proc entry; a zombie would still have one, but the
    // supervisor reaps its children.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

fn sigkill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// A started `tributary dev --brokers 3` with its stdout lines arriving on a channel.
struct Supervisor {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Supervisor {
    fn start(data_dir: &std::path::Path, port: u16, controller_port: u16) -> Supervisor {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["dev", "--brokers", "3", "--port"])
            .arg(port.to_string())
            .arg("--controller-port")
            .arg(controller_port.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--override", "num.partitions=2"])
            // Bounded stops: when two of three voters stop together, the quorum is gone
            // and a controlled shutdown can only time out.
            .args(["--override", "controlled.shutdown.timeout.ms=5000"])
            .args(["--override", "shutdown.grace.ms=5000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tributary dev");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Supervisor {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line starting with `prefix`; `None` if the supervisor exits
    /// first (or `timeout` passes).
    fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return Some(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        None
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("supervisor stdout:\n{}", self.seen.join("\n"));
        }
    }
}

#[test]
fn dev_supervisor_runs_three_brokers_survives_a_kill_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // A port picked as free can be taken before the brokers bind it: try again then.
    let mut started = None;
    for _ in 0..3 {
        let (port, controller_port) = consecutive_ports(3);
        let mut sup = Supervisor::start(&data_dir, port, controller_port);
        if sup.wait_line("bootstrap: ", STARTUP_TIMEOUT).is_some() {
            started = Some((sup, port, controller_port));
            break;
        }
    }
    let (mut sup, port, controller_port) = started.expect("dev cluster did not start 3 times");
    let bootstrap = sup.seen.last().unwrap().clone();
    assert_eq!(
        bootstrap,
        format!(
            "bootstrap: 127.0.0.1:{port},127.0.0.1:{},127.0.0.1:{}",
            port + 1,
            port + 2
        )
    );
    for id in 0..3u16 {
        let line = sup
            .seen
            .iter()
            .find(|l| l.starts_with(&format!("broker {id} pid ")))
            .unwrap_or_else(|| panic!("no summary line for broker {id}"));
        assert!(
            line.contains(&format!(
                " kafka 127.0.0.1:{} controller 127.0.0.1:{} data {}",
                port + id,
                controller_port + id,
                data_dir.join(format!("broker-{id}")).display()
            )),
            "{line}"
        );
    }

    let text = std::fs::read_to_string(data_dir.join("cluster.json")).expect("cluster.json");
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        file["bootstrap"].as_str().unwrap(),
        bootstrap.trim_start_matches("bootstrap: ")
    );
    let brokers = file["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 3);
    let pids: Vec<u32> = brokers
        .iter()
        .map(|b| b["pid"].as_u64().unwrap() as u32)
        .collect();
    for (i, b) in brokers.iter().enumerate() {
        assert!(pid_alive(pids[i]), "broker {i} pid {} is running", pids[i]);
        let addr: SocketAddr = b["kafka"].as_str().unwrap().parse().unwrap();
        assert_serves_kafka(addr);
        let command: Vec<&str> = b["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(command[1], "broker");
        assert!(command.contains(&"num.partitions=2"), "{command:?}");
    }

    // kill -9 broker 1: the supervisor reports it and keeps the others running.
    sigkill(pids[1]);
    let report = sup
        .wait_line("broker 1 (pid ", OP_TIMEOUT)
        .expect("the supervisor reports the exit");
    assert!(
        report.contains("SIGKILL") && report.contains("2 still running"),
        "{report}"
    );
    assert!(
        sup.child.try_wait().unwrap().is_none(),
        "supervisor still runs"
    );
    assert!(pid_alive(pids[0]) && pid_alive(pids[2]));

    // Restart it by hand from its recorded command line, as a user would.
    let command: Vec<String> = brokers[1]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let mut by_hand = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart broker 1 by hand");
    let (tx, first_line) = mpsc::channel();
    let out = BufReader::new(by_hand.stdout.take().unwrap());
    thread::spawn(move || {
        if let Some(Ok(line)) = out.lines().next() {
            let _ = tx.send(line);
        }
    });
    let line = first_line
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("broker restarted by hand prints its listening line");
    assert_eq!(
        line,
        format!("tributary broker 1 listening on 127.0.0.1:{}", port + 1)
    );
    assert_serves_kafka(SocketAddr::from(([127, 0, 0, 1], port + 1)));

    // SIGTERM: the supervisor stops its brokers and exits 0.
    sigterm(sup.child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = sup.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "supervisor did not exit after SIGTERM"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "supervisor exit status {status}");
    assert!(
        !pid_alive(pids[0]) && !pid_alive(pids[2]),
        "supervised brokers stopped"
    );
    assert!(
        by_hand.try_wait().unwrap().is_none(),
        "a broker restarted by hand is not the supervisor's"
    );
    let _ = by_hand.kill();
    let _ = by_hand.wait();
}

#[test]
fn dev_refuses_a_two_broker_quorum() {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args([
            "dev",
            "--brokers",
            "2",
            "--data-dir",
            "/nonexistent/never-created",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1, 3 or 5"), "{err}");
}
