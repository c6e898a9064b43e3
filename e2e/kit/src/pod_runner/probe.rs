//! Container probes, as the kubelet's prober runs them (`pkg/kubelet/prober`): `httpGet`
//! (a status from 200 to 399 passes) and `tcpSocket` (a connection passes), against the
//! pod's IP, with the probe's timing and thresholds.
//!
//! ```text
//! container started ──> startup probe until it passes ──> Started
//!                       (fails failureThreshold times ──> StartupFailed)
//!                   ──> readiness ──> Ready(true/false) on each change
//!                   ──> liveness  ──> LivenessFailed after failureThreshold failures
//! ```
//!
//! One task per container run sends these events to the pod worker and is cancelled when
//! the process ends. `exec` and `grpc` probes are refused when the pod is set up.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    Http {
        /// `host`, when the probe names one (an IP address); the pod's IP otherwise.
        host: Option<IpAddr>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<IpAddr>,
        port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub handler: Handler,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// The probe's own `terminationGracePeriodSeconds` (liveness and startup).
    pub termination_grace_seconds: Option<i64>,
}

/// A container's probes.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    pub startup: Option<ProbeSpec>,
    pub readiness: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
}

impl Probes {
    pub fn of(container: &Container) -> Result<Probes> {
        let spec = |p: &Option<Probe>, kind: &str| {
            p.as_ref()
                .map(|p| ProbeSpec::of(p, container))
                .transpose()
                .with_context(|| format!("{kind} probe of container {:?}", container.name))
        };
        Ok(Probes {
            startup: spec(&container.startup_probe, "startup")?,
            readiness: spec(&container.readiness_probe, "readiness")?,
            liveness: spec(&container.liveness_probe, "liveness")?,
        })
    }
}

fn port(port: &IntOrString, container: &Container) -> Result<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).with_context(|| format!("port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            let found = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .with_context(|| format!("no container port named {name:?}"))?;
            u16::try_from(found.container_port)
                .with_context(|| format!("port {}", found.container_port))
        }
    }
}

fn host(host: &Option<String>) -> Result<Option<IpAddr>> {
    match host.as_deref() {
        None | Some("") => Ok(None),
        Some(h) => h
            .parse()
            .map(Some)
            .with_context(|| format!("probe host {h:?} is not an IP address")),
    }
}

fn seconds(value: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(min) as u64)
}

impl ProbeSpec {
    pub fn of(probe: &Probe, container: &Container) -> Result<ProbeSpec> {
        let handler = if let Some(http) = &probe.http_get {
            if http
                .scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
            {
                bail!("httpGet scheme {:?} is not supported", http.scheme);
            }
            Handler::Http {
                host: host(&http.host)?,
                port: port(&http.port, container)?,
                path: http.path.clone().unwrap_or_else(|| "/".into()),
                headers: http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            Handler::Tcp {
                host: host(&tcp.host)?,
                port: port(&tcp.port, container)?,
            }
        } else if probe.exec.is_some() {
            bail!("exec probes are not supported by the pod runner (use httpGet or tcpSocket)")
        } else if probe.grpc.is_some() {
            bail!("grpc probes are not supported by the pod runner (use httpGet or tcpSocket)")
        } else {
            bail!("the probe has no handler")
        };
        Ok(ProbeSpec {
            handler,
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
            termination_grace_seconds: probe.termination_grace_period_seconds,
        })
    }
}

/// One probe against POD_IP: Ok, or why it failed.
pub async fn check(handler: &Handler, pod_ip: IpAddr, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        match handler {
            Handler::Tcp { host, port } => {
                let addr = SocketAddr::new(host.unwrap_or(pod_ip), *port);
                TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| format!("dial tcp {addr}: {e}"))
            }
            Handler::Http {
                host,
                port,
                path,
                headers,
            } => {
                let addr = SocketAddr::new(host.unwrap_or(pod_ip), *port);
                http_get(addr, path, headers).await
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

/// A GET of PATH on ADDR, as the kubelet sends it; the response status decides.
async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.36\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    // The whole response, up to the kubelet's 10 KiB body limit and a bit.
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while response.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if response.is_empty() => return Err(format!("reading from {addr}: {e}")),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response from {addr}: {status_line:?}"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
        Err(format!(
            "HTTP probe failed with statuscode: {status} {body}"
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// The startup probe passed (or there is none): the container counts as started.
    Started,
    /// The container's readiness changed.
    Ready(bool),
    /// The startup probe failed `failureThreshold` times: restart the container.
    StartupFailed(String),
    /// The liveness probe failed `failureThreshold` times: restart the container.
    LivenessFailed(String),
}

/// Consecutive results of one probe against its thresholds.
#[derive(Debug, Default)]
struct Counter {
    successes: u32,
    failures: u32,
}

impl Counter {
    /// Records a result; Some(new state) once a threshold is crossed.
    fn record(&mut self, ok: bool, spec: &ProbeSpec) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            (self.successes >= spec.success_threshold).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures >= spec.failure_threshold).then_some(false)
        }
    }
}

/// Runs PROBES against POD_IP, sending events to TX, until CANCEL or a restart verdict.
pub async fn run(
    probes: Probes,
    pod_ip: IpAddr,
    tx: mpsc::Sender<ProbeEvent>,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = run_probes(probes, pod_ip, &tx) => {}
    }
}

async fn run_probes(probes: Probes, pod_ip: IpAddr, tx: &mpsc::Sender<ProbeEvent>) {
    if let Some(startup) = &probes.startup {
        let mut ticks = interval_at(Instant::now() + startup.initial_delay, startup.period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut counter = Counter::default();
        loop {
            ticks.tick().await;
            let result = check(&startup.handler, pod_ip, startup.timeout).await;
            let ok = result.is_ok();
            match counter.record(ok, startup) {
                Some(true) => break,
                Some(false) => {
                    let why = result.err().unwrap_or_default();
                    let _ = tx.send(ProbeEvent::StartupFailed(why)).await;
                    return;
                }
                None => {}
            }
        }
    }
    if tx.send(ProbeEvent::Started).await.is_err() {
        return;
    }
    let far = Duration::from_secs(86_400 * 365);
    let start = |p: &Option<ProbeSpec>| {
        let (delay, period) = p
            .as_ref()
            .map_or((far, far), |p| (p.initial_delay, p.period));
        let mut ticks = interval_at(Instant::now() + delay, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    };
    let mut readiness_ticks = start(&probes.readiness);
    let mut liveness_ticks = start(&probes.liveness);
    let mut readiness = Counter::default();
    let mut liveness = Counter::default();
    let mut ready = false;
    if probes.readiness.is_none() {
        // No readiness probe: ready once started.
        ready = true;
        if tx.send(ProbeEvent::Ready(true)).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            _ = readiness_ticks.tick(), if probes.readiness.is_some() => {
                let Some(spec) = &probes.readiness else { continue };
                let ok = check(&spec.handler, pod_ip, spec.timeout).await.is_ok();
                if let Some(now) = readiness.record(ok, spec) {
                    if now != ready {
                        ready = now;
                        if tx.send(ProbeEvent::Ready(now)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            _ = liveness_ticks.tick(), if probes.liveness.is_some() => {
                let Some(spec) = &probes.liveness else { continue };
                let result = check(&spec.handler, pod_ip, spec.timeout).await;
                let ok = result.is_ok();
                if liveness.record(ok, spec) == Some(false) {
                    let why = result.err().unwrap_or_default();
                    let _ = tx.send(ProbeEvent::LivenessFailed(why)).await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, TCPSocketAction};
    use tokio::net::TcpListener;

    /// An HTTP server answering every request with STATUS.
    async fn server(status: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    assert!(head.starts_with(b"GET /readyz HTTP/1.1\r\n"));
                    let body = "because";
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn http(port: u16) -> Handler {
        Handler::Http {
            host: None,
            port,
            path: "/readyz".into(),
            headers: vec![("X-Probe".into(), "1".into())],
        }
    }

    #[tokio::test]
    async fn http_status_decides() {
        let ok = server("200 OK").await;
        let redirect = server("302 Found").await;
        let unavailable = server("503 Service Unavailable").await;
        let second = Duration::from_secs(1);
        assert_eq!(check(&http(ok.port()), ok.ip(), second).await, Ok(()));
        assert_eq!(check(&http(redirect.port()), ok.ip(), second).await, Ok(()));
        let err = check(&http(unavailable.port()), ok.ip(), second)
            .await
            .unwrap_err();
        assert!(err.contains("503") && err.contains("because"), "{err}");
    }

    #[tokio::test]
    async fn tcp_connect_decides() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = Handler::Tcp {
            host: None,
            port: addr.port(),
        };
        let second = Duration::from_secs(1);
        assert_eq!(check(&tcp, addr.ip(), second).await, Ok(()));
        drop(listener);
        assert!(check(&tcp, addr.ip(), second).await.is_err());
    }

    #[test]
    fn named_ports_and_defaults() {
        let container = Container {
            name: "broker".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 9644,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::String("http".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = ProbeSpec::of(&probe, &container).unwrap();
        assert_eq!(
            spec.handler,
            Handler::Http {
                host: None,
                port: 9644,
                path: "/readyz".into(),
                headers: vec![]
            }
        );
        assert_eq!(spec.period, Duration::from_secs(10));
        assert_eq!(spec.timeout, Duration::from_secs(1));
        assert_eq!((spec.success_threshold, spec.failure_threshold), (1, 3));
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(9092),
                ..Default::default()
            }),
            period_seconds: Some(2),
            ..Default::default()
        };
        let spec = ProbeSpec::of(&tcp, &container).unwrap();
        assert_eq!(
            spec.handler,
            Handler::Tcp {
                host: None,
                port: 9092
            }
        );
        assert_eq!(spec.period, Duration::from_secs(2));
        let unnamed = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("kafka".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(ProbeSpec::of(&unnamed, &container).is_err());
    }

    #[tokio::test]
    async fn readiness_follows_the_thresholds() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let probe = ProbeSpec {
            handler: Handler::Tcp {
                host: None,
                port: addr.port(),
            },
            initial_delay: Duration::ZERO,
            period: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 2,
            termination_grace_seconds: None,
        };
        let probes = Probes {
            readiness: Some(probe),
            ..Default::default()
        };
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(probes, addr.ip(), tx, cancel.clone()));
        assert_eq!(rx.recv().await, Some(ProbeEvent::Started));
        assert_eq!(rx.recv().await, Some(ProbeEvent::Ready(true)));
        drop(listener);
        // Two failures in a row, a period apart.
        assert_eq!(rx.recv().await, Some(ProbeEvent::Ready(false)));
        cancel.cancel();
        task.await.unwrap();
    }
}
