//! The HTTP listener for probes and scrapers (`http.listener`): `/healthz`, `/readyz` and
//! `/metrics`. The metrics themselves are defined in [`crate::metrics`]; this module owns
//! the socket, the bit of HTTP/1.1 it speaks, and what "ready" means.
//!
//! ```text
//! accept ─> one task per connection (at most MAX_CONNECTIONS; beyond that, closed at once)
//!   read the request head: at most MAX_HEAD_BYTES, within HEAD_TIMEOUT
//!   parse_request_line ─> GET /healthz   200 "ok": the process is up and answers
//!                         GET /readyz    200 "ready", or 503 and the reason (`readiness`)
//!                         GET /metrics   200, Prometheus text (encoded on the blocking pool)
//!                         other path 404 · other method 405 · malformed 400 · head too
//!                         large 431 · head too slow 408 · not HTTP/1.x 505
//!   one response with Content-Length and `Connection: close`, then close
//! ```
//!
//! One request per connection, as the operator's listener (`operator/src/telemetry.rs`)
//! does: probes and Prometheus open a connection per request anyway, and a server without
//! keep-alive or chunked bodies has little to get wrong. Nothing a client sends can do more
//! than get its own connection answered with an error or closed: input is bounded in size
//! and time, parsing never panics, and the connection cap keeps a flood of idle sockets
//! from taking more than `MAX_CONNECTIONS` tasks.
//!
//! The listener starts in [`Broker::bind`](super::Broker::bind), before the broker has been
//! admitted to the cluster, so a starting broker is already live (its `/readyz` says what it
//! waits for), and stops with the broker's other background tasks, after the Kafka
//! connections have drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::config::Listener;
use super::BrokerContext;
use crate::controller::BrokerRecord;
use crate::metrics::{self, StateCollector};

/// Largest request head (request line and headers) read; a larger one is answered 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head; a slower one is answered 408.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once. A scraper and the kubelet's probes need a handful; more
/// are closed as soon as they are accepted.
const MAX_CONNECTIONS: usize = 64;
/// How long `/readyz` waits for this broker's partitions to apply the metadata image the
/// controller has committed, before it says they are behind. Applying an image takes
/// milliseconds; the wait keeps a probe that lands mid-apply from failing, and stays well
/// inside a probe's default one-second timeout.
const CATCH_UP_WAIT: Duration = Duration::from_millis(500);
/// After an error answer to a client that may still be sending, the rest of its input is
/// read and dropped for this long (at most `LINGER_BYTES`) before the socket closes:
/// closing with unread input resets the connection, and the reset can destroy the answer
/// before the client reads it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Binds `http.listener`.
pub async fn bind(listener: &Listener) -> anyhow::Result<TcpListener> {
    let addr = listener
        .bind_addr()
        .map_err(|e| anyhow::anyhow!("http.listener: {e}"))?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on http.listener {addr}: {e}"))
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `shutdown`, then waits
/// for the connections in hand (each bounded in time, and told to stop too).
pub async fn serve(listener: TcpListener, ctx: Arc<BrokerContext>, shutdown: CancellationToken) {
    let state = {
        let controller = ctx.controller.clone();
        StateCollector::new(ctx.replicas.clone(), ctx.groups.clone(), move || {
            controller.active_controller()
        })
    };
    let registry = Arc::new(metrics::registry(ctx.replicas.metrics(), state));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted: std::io::Result<(TcpStream, SocketAddr)> = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many HTTP connections; closing this one");
                    continue;
                };
                let ctx = ctx.clone();
                let registry = registry.clone();
                let stop = shutdown.clone();
                connections.spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        result = answer(stream, &ctx, &registry) => {
                            if let Err(e) = result {
                                tracing::debug!(%peer, error = %e, "HTTP connection ended");
                            }
                        }
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// What reading a request head found.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head, through the blank line that ends it.
    Complete(Vec<u8>),
    /// More than [`MAX_HEAD_BYTES`] without the blank line.
    TooLarge,
    /// The client closed the connection first.
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        let searched = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf, searched) {
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(Head::TooLarge);
        }
    }
}

/// Where the head in `buf` ends (just past its blank line: CRLF CRLF, or LF LF as RFC
/// 9112 §2.2 lets a server accept), looking from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = &buf[from.min(buf.len())..];
    let crlf = tail
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = tail.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(from + a.min(b)),
        (a, b) => a.or(b).map(|i| from + i),
    }
}

/// A response, before it is written.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        body.push('\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// A request line that parsed: the method and the path, without the query.
#[derive(Debug, PartialEq, Eq)]
struct RequestLine<'a> {
    method: &'a str,
    path: &'a str,
}

/// Parses the request line at the start of `head` (`GET /metrics HTTP/1.1`), or gives the
/// error response for it. Headers are not looked at: no endpoint needs one.
fn parse_request_line(head: &[u8]) -> Result<RequestLine<'_>, Response> {
    let bad = |why: &str| Response::text(400, format!("bad request: {why}"));
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| bad("the request line is not text"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected `METHOD /path HTTP/1.1`"));
    };
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !is_token(method) {
        return Err(bad("the method is not a token"));
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("the target is not a path"));
    }
    match version.strip_prefix("HTTP/") {
        Some("1.0" | "1.1") => {}
        Some(_) => {
            return Err(Response::text(505, "only HTTP/1.0 and HTTP/1.1 are served"));
        }
        None => return Err(bad("expected `METHOD /path HTTP/1.1`")),
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok(RequestLine { method, path })
}

/// Which endpoint a request goes to, or the response when it goes to none.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Healthz,
    Readyz,
    Metrics,
}

fn route(request: &RequestLine<'_>) -> Result<Route, Response> {
    let route = match request.path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        _ => {
            return Err(Response::text(
                404,
                "not found: the broker serves /healthz, /readyz and /metrics",
            ))
        }
    };
    if request.method != "GET" {
        return Err(Response::text(405, "only GET"));
    }
    Ok(route)
}

async fn answer(
    mut stream: TcpStream,
    ctx: &Arc<BrokerContext>,
    registry: &Arc<Registry>,
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Head::Complete(head))) => head,
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::TooLarge)) => {
            let response = Response::text(
                431,
                format!("the request head is larger than {MAX_HEAD_BYTES} bytes"),
            );
            return respond(&mut stream, &response, true).await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            let response = Response::text(
                408,
                format!("no complete request head within {HEAD_TIMEOUT:?}"),
            );
            return respond(&mut stream, &response, true).await;
        }
    };
    let request = match parse_request_line(&head).and_then(|r| route(&r)) {
        Ok(route) => route,
        Err(response) => return respond(&mut stream, &response, false).await,
    };
    let response = match request {
        Route::Healthz => Response::text(200, "ok"),
        Route::Readyz => match ready(ctx).await {
            Ok(()) => Response::text(200, "ready"),
            Err(why) => Response::text(503, format!("not ready: {why}")),
        },
        Route::Metrics => {
            let registry = registry.clone();
            match tokio::task::spawn_blocking(move || metrics::encode(&registry)).await {
                Ok(body) => Response {
                    status: 200,
                    content_type: metrics::CONTENT_TYPE,
                    body,
                },
                Err(e) => {
                    tracing::error!(error = %e, "encoding the metrics failed");
                    Response::text(500, "encoding the metrics failed")
                }
            }
        }
    };
    respond(&mut stream, &response, false).await
}

/// Writes `response` and closes the connection; `linger` drains what the client may still
/// be sending first (see [`LINGER`]).
async fn respond(stream: &mut TcpStream, response: &Response, linger: bool) -> std::io::Result<()> {
    let allow = if response.status == 405 {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(response.body.as_bytes()).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response not taken"))??;
    if linger {
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < LINGER_BYTES {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
    Ok(())
}

/// Why a broker is not ready to serve clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The metadata image has no registration of this process (this incarnation) yet.
    NotRegistered,
    /// In a controlled shutdown: its leaderships are moving away.
    ShuttingDown,
    /// The controller fenced it: not yet unfenced after starting, or fenced since for
    /// missing heartbeats.
    Fenced,
    /// No heartbeat accepted by the active controller for a session timeout: no quorum,
    /// or this broker cannot reach it. The image it holds may be stale.
    ControllerUnreachable { session_timeout_ms: u64 },
    /// Its partitions have not applied the metadata image the controller committed.
    CatchingUp { applied: u64, committed: u64 },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::NotRegistered => write!(f, "not registered with the controller yet"),
            NotReady::ShuttingDown => write!(f, "in a controlled shutdown"),
            NotReady::Fenced => write!(f, "fenced by the controller"),
            NotReady::ControllerUnreachable { session_timeout_ms } => write!(
                f,
                "no heartbeat accepted by the active controller for over {session_timeout_ms} \
                 ms (broker.session.timeout.ms)"
            ),
            NotReady::CatchingUp { applied, committed } => write!(
                f,
                "the partitions have applied the metadata image up to index {applied}, the \
                 controller has committed {committed}"
            ),
        }
    }
}

/// What readiness is decided on, read from the broker in one go.
#[derive(Debug, Clone)]
pub struct ReadinessInputs<'a> {
    pub incarnation: Uuid,
    pub session_timeout_ms: u64,
    /// This broker's record in the image its partitions follow.
    pub record: Option<&'a BrokerRecord>,
    /// No heartbeat accepted by the active controller for a session timeout.
    pub lease_lapsed: bool,
    /// Raft index of the image the partitions have applied, and of the one committed.
    pub applied_index: u64,
    pub committed_index: u64,
}

/// Ready means: registered with the controller under this incarnation, not shutting down,
/// unfenced, heard by the active controller within a session timeout, and with partitions
/// that have applied the committed metadata image. The checks run in that order, so the
/// reason given is the first that fails.
pub fn readiness(inputs: &ReadinessInputs<'_>) -> Result<(), NotReady> {
    let record = inputs
        .record
        .filter(|r| r.incarnation == inputs.incarnation)
        .ok_or(NotReady::NotRegistered)?;
    if record.shutting_down {
        return Err(NotReady::ShuttingDown);
    }
    if record.fenced {
        return Err(NotReady::Fenced);
    }
    if inputs.lease_lapsed {
        return Err(NotReady::ControllerUnreachable {
            session_timeout_ms: inputs.session_timeout_ms,
        });
    }
    if inputs.applied_index < inputs.committed_index {
        return Err(NotReady::CatchingUp {
            applied: inputs.applied_index,
            committed: inputs.committed_index,
        });
    }
    Ok(())
}

/// [`readiness`] of this broker now, after giving its partitions up to [`CATCH_UP_WAIT`]
/// to apply the image the controller has committed.
async fn ready(ctx: &BrokerContext) -> Result<(), NotReady> {
    let committed_index = ctx.controller.image().borrow().0;
    ctx.replicas
        .wait_image(committed_index, CATCH_UP_WAIT)
        .await;
    let (applied_index, image) = ctx.replicas.image();
    readiness(&ReadinessInputs {
        incarnation: ctx.replicas.incarnation(),
        session_timeout_ms: ctx.config.broker_session_timeout_ms,
        record: image.brokers.get(&ctx.config.broker_id),
        lease_lapsed: ctx.lease_lapsed(),
        applied_index,
        committed_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(head: &str) -> Result<RequestLine<'_>, u16> {
        parse_request_line(head.as_bytes()).map_err(|r| r.status)
    }

    #[test]
    fn request_lines_parse_or_get_a_4xx() {
        assert_eq!(
            line("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(RequestLine {
                method: "GET",
                path: "/metrics"
            })
        );
        assert_eq!(
            line("GET /readyz?verbose=1 HTTP/1.0\n\n").map(|r| r.path),
            Ok("/readyz")
        );
        assert_eq!(
            line("POST /metrics HTTP/1.1\r\n\r\n").map(|r| r.method),
            Ok("POST")
        );
        for bad in [
            "",
            "\r\n\r\n",
            "GET\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1 extra\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET /met\x01rics HTTP/1.1\r\n\r\n",
            "GET /metrics FTP/1.1\r\n\r\n",
        ] {
            assert_eq!(line(bad), Err(400), "{bad:?}");
        }
        assert_eq!(line("GET /metrics HTTP/2.0\r\n\r\n"), Err(505));
        assert_eq!(
            parse_request_line(&[0xff, 0xfe, b' ', b'/', b'\r', b'\n']).map_err(|r| r.status),
            Err(400)
        );
    }

    #[test]
    fn routes() {
        let route_of = |head: &str| {
            parse_request_line(head.as_bytes())
                .and_then(|r| route(&r))
                .map_err(|r| r.status)
        };
        assert_eq!(
            route_of("GET /healthz HTTP/1.1\r\n\r\n"),
            Ok(Route::Healthz)
        );
        assert_eq!(route_of("GET /readyz HTTP/1.1\r\n\r\n"), Ok(Route::Readyz));
        assert_eq!(
            route_of("GET /metrics?x HTTP/1.1\r\n\r\n"),
            Ok(Route::Metrics)
        );
        assert_eq!(route_of("GET / HTTP/1.1\r\n\r\n"), Err(404));
        assert_eq!(route_of("GET /metrics/ HTTP/1.1\r\n\r\n"), Err(404));
        assert_eq!(route_of("HEAD /healthz HTTP/1.1\r\n\r\n"), Err(405));
        assert_eq!(route_of("DELETE /metrics HTTP/1.1\r\n\r\n"), Err(405));
        // An unknown path is 404 whatever the method.
        assert_eq!(route_of("PUT /nothing HTTP/1.1\r\n\r\n"), Err(404));
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        assert_eq!(head_end(b"", 0), None);
        assert_eq!(head_end(b"\r\n\r\n", 10), None);
        // A search resumed three bytes before the end of what was seen finds a blank line
        // split across two reads.
        let buf = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(head_end(buf, buf.len() - 5), Some(buf.len()));
    }

    fn record(incarnation: Uuid, fenced: bool, shutting_down: bool) -> BrokerRecord {
        BrokerRecord {
            id: 1,
            incarnation,
            host: "localhost".into(),
            port: 9092,
            rack: None,
            rpc_addr: "localhost:9093".into(),
            fenced,
            shutting_down,
        }
    }

    #[test]
    fn readiness_names_the_first_check_that_fails() {
        let me = Uuid::new_v4();
        let up = record(me, false, false);
        let ready = ReadinessInputs {
            incarnation: me,
            session_timeout_ms: 1000,
            record: Some(&up),
            lease_lapsed: false,
            applied_index: 7,
            committed_index: 7,
        };
        assert_eq!(readiness(&ready), Ok(()));
        assert_eq!(
            readiness(&ReadinessInputs {
                applied_index: 8,
                ..ready.clone()
            }),
            Ok(()),
            "ahead of the controller's watch is caught up"
        );

        let old = record(Uuid::new_v4(), false, false);
        for (inputs, expected) in [
            (
                ReadinessInputs {
                    record: None,
                    ..ready.clone()
                },
                NotReady::NotRegistered,
            ),
            (
                // The record of the previous process: this one has not registered yet.
                ReadinessInputs {
                    record: Some(&old),
                    ..ready.clone()
                },
                NotReady::NotRegistered,
            ),
            (
                ReadinessInputs {
                    record: Some(&record(me, true, false)),
                    lease_lapsed: true,
                    ..ready.clone()
                },
                NotReady::Fenced,
            ),
            (
                ReadinessInputs {
                    record: Some(&record(me, true, true)),
                    ..ready.clone()
                },
                NotReady::ShuttingDown,
            ),
            (
                ReadinessInputs {
                    lease_lapsed: true,
                    applied_index: 3,
                    ..ready.clone()
                },
                NotReady::ControllerUnreachable {
                    session_timeout_ms: 1000,
                },
            ),
            (
                ReadinessInputs {
                    applied_index: 3,
                    ..ready.clone()
                },
                NotReady::CatchingUp {
                    applied: 3,
                    committed: 7,
                },
            ),
        ] {
            assert_eq!(readiness(&inputs), Err(expected.clone()), "{inputs:?}");
            assert!(!expected.to_string().is_empty());
        }
    }

    #[test]
    fn responses_carry_length_and_close() {
        let r = Response::text(503, "not ready: fenced by the controller");
        assert_eq!(r.body, "not ready: fenced by the controller\n");
        assert_eq!(reason_phrase(503), "Service Unavailable");
        for status in [200, 400, 404, 405, 408, 431, 500, 503, 505] {
            assert!(!reason_phrase(status).is_empty(), "{status}");
        }
    }
}
