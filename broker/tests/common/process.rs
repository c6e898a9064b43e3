//! One `tributary broker` child process, shared by the single-broker harness
//! ([`TestBroker`](super::TestBroker)) and the cluster harness
//! ([`ClusterBroker`](super::cluster::ClusterBroker)): spawning with `--override`s,
//! capturing stdout and stderr, waiting for the `listening on` line, kill -9 and SIGTERM.
//!
//! ```text
//! spawn(settings) ──▶ tributary broker --override k=v ...
//!                        │ stdout ──▶ output ("[stdout] " + line) ──▶ `listening on` channel
//!                        │            (then `serving HTTP on`, read back by http_addr)
//!                        │ stderr ──▶ output
//! wait_listening(rx, deadline) ──▶ the address, or why not (exited, no line in time)
//! ```
//!
//! The output is kept across restarts, with a `==== harness:` line for each thing the
//! harness did, so a failing test prints the broker's whole story.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::STARTUP_TIMEOUT;

/// A broker process (or none, between a kill and a restart) and everything it printed.
pub struct BrokerProcess {
    /// How harness notes and panics name it: "broker" or "broker 2".
    name: String,
    child: Option<Child>,
    output: Arc<Mutex<String>>,
}

impl BrokerProcess {
    pub fn new(name: impl Into<String>) -> BrokerProcess {
        BrokerProcess {
            name: name.into(),
            child: None,
            output: Arc::new(Mutex::new(String::new())),
        }
    }

    /// Spawns `tributary broker` with `settings` as overrides; the address of its
    /// `listening on` line arrives on the returned channel.
    pub fn spawn(
        &mut self,
        settings: &[(String, String)],
    ) -> Result<mpsc::Receiver<SocketAddr>, String> {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
        cmd.arg("broker");
        for (k, v) in settings {
            cmd.arg("--override").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn tributary: {e}"))?;
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let stdout = child.stdout.take().expect("stdout is piped");
        let out = self.output.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Recorded before it is reported, so a test sees the line once start returns.
                append(&out, &format!("[stdout] {line}"));
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
            }
        });
        let stderr = child.stderr.take().expect("stderr is piped");
        let out = self.output.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                append(&out, &line);
            }
        });
        self.child = Some(child);
        Ok(rx)
    }

    /// Waits for the `listening on` address of a just-spawned broker. On failure the
    /// process is gone (it exited, or it is killed here at the deadline).
    pub fn wait_listening(
        &mut self,
        listening: &mpsc::Receiver<SocketAddr>,
        deadline: Instant,
    ) -> Result<SocketAddr, String> {
        loop {
            match listening.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => return Ok(addr),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Its stdout closed: it is exiting; wait for the status below.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(20))
                }
            }
            let child = self.child.as_mut().expect("spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("exited before listening: {status}"));
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(format!("no `listening on` line within {STARTUP_TIMEOUT:?}"));
            }
        }
    }

    /// Spawns and waits up to [`STARTUP_TIMEOUT`] for the `listening on` address.
    pub fn start(&mut self, settings: &[(String, String)]) -> Result<SocketAddr, String> {
        let listening = self.spawn(settings)?;
        self.wait_listening(&listening, Instant::now() + STARTUP_TIMEOUT)
    }

    /// Everything it printed so far (stdout and stderr interleaved by line), across
    /// restarts.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The address of `http.listener` as the latest start printed it: the `serving HTTP on`
    /// line that follows its `listening on` line. That line may not have been read yet when
    /// `start` returns, so this waits for it (up to 5 s); `None` when there is none.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(addr) = latest_http_addr(&self.output()) {
                return Some(addr);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Adds a `==== harness:` line to the output.
    pub fn note(&self, what: &str) {
        append(&self.output, &format!("==== harness: {} {what}", self.name));
    }

    /// Started (and not killed by the harness); it may have exited on its own since.
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
            .id()
    }

    /// Started and has not exited.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Panics with the output unless it is running.
    pub fn assert_alive(&mut self) {
        if !self.is_alive() {
            let status = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "{} is not running (status {status:?})\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// SIGKILL, then reap the process. A no-op when it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.note(&format!("kill -9 {}", child.id()));
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait up to `timeout` for the process to exit; returns its status.
    pub fn sigterm_and_wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        self.note(&format!("kill -TERM {}", child.id()));
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {timeout:?} of SIGTERM\n{}",
                    self.name,
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn append(output: &Arc<Mutex<String>>, line: &str) {
    let mut out = output.lock().unwrap();
    out.push_str(line);
    out.push('\n');
}

/// The HTTP address printed after the last `listening on` line of `output`.
fn latest_http_addr(output: &str) -> Option<SocketAddr> {
    let lines: Vec<&str> = output.lines().collect();
    let started = lines
        .iter()
        .rposition(|l| l.starts_with("[stdout] ") && listening_addr(l).is_some())?;
    lines[started + 1..]
        .iter()
        .find_map(|l| serving_http_addr(l))
}

/// The address of a `[stdout] tributary broker 0 serving HTTP on 127.0.0.1:9644` line.
fn serving_http_addr(line: &str) -> Option<SocketAddr> {
    let rest = line
        .strip_prefix("[stdout] ")?
        .split("serving HTTP on ")
        .nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The address of a `... listening on PLAINTEXT://127.0.0.1:9092` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on ").nth(1)?;
    let addr = rest.split_whitespace().next()?;
    let addr = addr.trim_start_matches("PLAINTEXT://");
    addr.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}
