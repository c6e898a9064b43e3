//! Black-box test harness: runs the real `tributary` binary as a child process on loopback
//! and talks to it with real Kafka clients (librdkafka through `rdkafka`) or with raw
//! requests built by `kafka-protocol`.
//!
//! ```text
//! test ──spawn──▶ tributary broker --override log.dirs=<tempdir> --override listeners=...:0
//!   ▲                 │ stdout: "listening on 127.0.0.1:<port>"   (parsed by start())
//!   │                 │ stderr: logs                               (kept, printed on failure)
//!   └── rdkafka / RawClient over TCP
//! ```
//!
//! Every wait has a deadline; nothing here sleeps in place of synchronization. Polling loops
//! sleep a few milliseconds between checks of a condition and fail with a message naming
//! the condition when the deadline passes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use self::process::BrokerProcess;

/// How long a broker may take to print its `listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline for one client operation or one awaited condition.
pub const OP_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Broker process
// ---------------------------------------------------------------------------------------

/// One `tributary broker` child process with its own data directory.
pub struct TestBroker {
    /// Owns the data directory; removed when the broker is dropped.
    dir: tempfile::TempDir,
    /// Extra `--override key=value` pairs, replayed on restart.
    overrides: Vec<(String, String)>,
    /// The process and everything it wrote, across restarts; the output is printed when a
    /// test panics so a failure shows the broker's side of the story.
    process: BrokerProcess,
    addr: SocketAddr,
}

impl TestBroker {
    /// Starts a broker on `127.0.0.1:0` with a fresh data directory. `overrides` may replace
    /// the harness defaults (for example `listeners`).
    pub fn start(overrides: &[(&str, &str)]) -> TestBroker {
        let dir = tempfile::Builder::new()
            .prefix("tributary-it-")
            .tempdir()
            .expect("create temp dir");
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log_dir = dir.path().join("data");
        std::fs::create_dir_all(&log_dir).expect("create log dir");
        let mut process = BrokerProcess::new("broker");
        let addr = process
            .start(&broker_settings(&log_dir, &overrides, None))
            .unwrap_or_else(|e| panic!("broker failed to start: {e}\n{}", process.output()));
        TestBroker {
            dir,
            overrides,
            process,
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Where it serves `/healthz`, `/readyz` and `/metrics` (a new port after a restart).
    pub fn http_addr(&self) -> SocketAddr {
        self.process
            .http_addr()
            .unwrap_or_else(|| panic!("no `serving HTTP on` line\n{}", self.output()))
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The broker's `log.dirs`.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory of one partition: `<log.dirs>/<topic>-<partition>`.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.log_dir().join(format!("{topic}-{partition}"))
    }

    /// Broker output so far (stdout and stderr interleaved by line).
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// True while the child process has not exited.
    pub fn is_alive(&mut self) -> bool {
        self.process.is_alive()
    }

    /// Panics with the broker's output unless the process is still running.
    pub fn assert_alive(&mut self) {
        self.process.assert_alive();
    }

    /// SIGKILL, then reap the process.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM and wait (bounded) for the process to exit; returns its status.
    pub fn sigterm_and_wait(&mut self) -> ExitStatus {
        self.process.sigterm_and_wait(Duration::from_secs(30))
    }

    /// Starts the broker again on the same data directory, on the same port when it is
    /// still free (so clients created before the restart reconnect on their own).
    pub fn restart(&mut self) {
        self.process.kill9();
        let port = self.addr.port();
        self.process.note(&format!("restarting on port {port}"));
        let log_dir = self.log_dir();
        let settings = broker_settings(&log_dir, &self.overrides, Some(port));
        self.addr = match self.process.start(&settings) {
            Ok(addr) => addr,
            Err(first) => {
                // The old port may have been taken by someone else in the meantime.
                self.process.note(&format!(
                    "restart on port {port} failed ({first}); trying port 0"
                ));
                let settings = broker_settings(&log_dir, &self.overrides, Some(0));
                self.process
                    .start(&settings)
                    .unwrap_or_else(|e| panic!("broker failed to restart: {e}\n{}", self.output()))
            }
        };
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!("===== tributary broker output =====\n{}", self.output());
            eprintln!(
                "===== end of broker output (data dir {:?}) =====",
                self.dir.path()
            );
        }
    }
}

/// The command-line overrides of a single broker: the harness defaults, then `overrides`.
/// `port`: `None` binds port 0 unless `overrides` sets `listeners`; `Some(p)` forces
/// `127.0.0.1:p`.
fn broker_settings(
    log_dir: &Path,
    overrides: &[(String, String)],
    port: Option<u16>,
) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = vec![
        ("log.dirs".into(), log_dir.display().to_string()),
        ("listeners".into(), "PLAINTEXT://127.0.0.1:0".into()),
        // Not the default 9644, which every broker of a parallel test run would want.
        ("http.listener".into(), "127.0.0.1:0".into()),
        ("log.retention.check.interval.ms".into(), "100".into()),
    ];
    for (k, v) in overrides {
        if let Some(existing) = settings.iter_mut().find(|(key, _)| key == k) {
            existing.1 = v.clone();
        } else {
            settings.push((k.clone(), v.clone()));
        }
    }
    if let Some(port) = port {
        let listeners = format!("PLAINTEXT://127.0.0.1:{port}");
        settings
            .iter_mut()
            .find(|(k, _)| k == "listeners")
            .unwrap()
            .1 = listeners;
    }
    settings
}

// ---------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------

/// Polls `cond` until it is true; panics naming `what` once `timeout` has passed.
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    if !poll(timeout, cond) {
        panic!("timed out after {timeout:?} waiting until {what}");
    }
}

/// [`wait_until`] for a condition named as a noun: `wait_for(t, "a new leader", ..)`.
pub fn wait_for(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    if !poll(timeout, cond) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Checks `cond` every 25 ms until it holds (true) or `timeout` passes (false).
fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Runs an rdkafka admin future to completion on a private runtime, bounded by OP_TIMEOUT.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        tokio::time::timeout(OP_TIMEOUT * 2, fut)
            .await
            .expect("admin operation timed out")
    })
}

/// Files in `dir` whose name ends with `suffix`, sorted.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------
// rdkafka clients
// ---------------------------------------------------------------------------------------

pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("log_level", "4");
    // `TRIBUTARY_IT_CLIENT_DEBUG=eos,metadata` (with `TRIBUTARY_IT_CLIENT_LOG`) turns on
    // librdkafka's debug contexts for every client of a test.
    if let Ok(debug) = std::env::var("TRIBUTARY_IT_CLIENT_DEBUG") {
        config.set("debug", debug).set("log_level", "7");
    }
    config
}

pub fn admin_client(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    base_config(bootstrap)
        .create()
        .expect("create admin client")
}

pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(15)))
        .operation_timeout(Some(Duration::from_secs(15)))
}

/// Creates a topic through the admin API and panics unless the broker accepts it.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin_client(bootstrap);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = block_on(admin.create_topics([&topic], &admin_options()))
        .expect("CreateTopics request failed");
    assert_eq!(results.len(), 1);
    if let Err((topic, code)) = &results[0] {
        panic!("CreateTopics {topic} failed with {code:?}");
    }
}

/// A consumer that never joins a group: it reads partitions it is `assign()`ed, from
/// explicit offsets, and never commits. librdkafka refuses `assign()` without a `group.id`
/// ("Local: Unknown group"), so one is set, but the consumer never subscribes and never
/// commits.
pub fn consumer(bootstrap: &str) -> BaseConsumer {
    base_config(bootstrap)
        .set("group.id", "tributary-it-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .set("auto.offset.reset", "error")
        .set("check.crcs", "true")
        .create()
        .expect("create consumer")
}

/// What a producer learned about one message it sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Caller-chosen id of the message (the delivery opaque).
    pub id: usize,
    pub partition: i32,
    /// -1 when unknown (acks=0).
    pub offset: i64,
    pub error: Option<KafkaError>,
}

/// Collects every delivery report.
#[derive(Clone, Default)]
pub struct RecordingContext {
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl ClientContext for RecordingContext {
    /// librdkafka's own log lines go to stderr when `TRIBUTARY_IT_CLIENT_LOG` is set (add
    /// `debug` to the producer settings for protocol detail).
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if std::env::var_os("TRIBUTARY_IT_CLIENT_LOG").is_some() {
            eprintln!("librdkafka {level:?} {fac}: {log_message}");
        }
    }
}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let delivery = match result {
            Ok(m) => Delivery {
                id,
                partition: m.partition(),
                offset: m.offset(),
                error: None,
            },
            Err((e, m)) => Delivery {
                id,
                partition: m.partition(),
                offset: m.offset(),
                error: Some(e.clone()),
            },
        };
        self.deliveries.lock().unwrap().push(delivery);
    }
}

pub type TestProducer = ThreadedProducer<RecordingContext>;

/// A producer whose delivery reports land in `producer.context().deliveries`. `settings`
/// are librdkafka properties (`acks`, `compression.type`, ...).
pub fn producer(bootstrap: &str, settings: &[(&str, &str)]) -> TestProducer {
    let mut config = base_config(bootstrap);
    config
        .set("message.timeout.ms", "15000")
        .set("request.timeout.ms", "10000")
        .set("linger.ms", "5")
        .set("enable.idempotence", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    config
        .create_with_context(RecordingContext::default())
        .expect("create producer")
}

/// Sends one record, retrying while librdkafka's local queue is full.
pub fn send(producer: &TestProducer, record: BaseRecord<'_, [u8], [u8], usize>) {
    let deadline = Instant::now() + OP_TIMEOUT;
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                r,
            )) => {
                assert!(Instant::now() < deadline, "producer queue stayed full");
                record = r;
                thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("enqueue failed: {e}"),
        }
    }
}

/// Flushes and returns all delivery reports, sorted by id.
pub fn flush_deliveries(producer: &TestProducer, expected: usize) -> Vec<Delivery> {
    let _ = producer.flush(OP_TIMEOUT);
    let deliveries = producer.context().deliveries.clone();
    wait_until(OP_TIMEOUT, "every message has a delivery report", || {
        deliveries.lock().unwrap().len() >= expected
    });
    let mut all = deliveries.lock().unwrap().clone();
    all.sort_by_key(|d| d.id);
    all
}

/// Produces one message with acks=all and returns its (partition, offset); panics on error.
pub fn produce_one(bootstrap: &str, topic: &str, partition: i32, key: &[u8], value: &[u8]) -> i64 {
    let p = producer(bootstrap, &[("acks", "all")]);
    send(
        &p,
        BaseRecord::with_opaque_to(topic, 0)
            .partition(partition)
            .key(key)
            .payload(value),
    );
    let d = flush_deliveries(&p, 1);
    if let Some(e) = &d[0].error {
        panic!("produce to {topic}-{partition} failed: {e}");
    }
    d[0].offset
}

/// An owned copy of one consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

/// Reads `topic`-`partition` from `start` until the message just below `end_offset` has
/// been seen. Panics (listing what was consumed and any errors) at the deadline.
pub fn consume_partition(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    start: Offset,
    end_offset: i64,
) -> Vec<Consumed> {
    poll_messages(bootstrap, topic, partition, start, |got| {
        got.last()
            .map(|m| m.offset + 1 >= end_offset)
            .unwrap_or(end_offset <= 0)
    })
}

/// Polls a consumer from `start` and returns the first message that arrives.
pub fn first_message(bootstrap: &str, topic: &str, partition: i32, start: Offset) -> Consumed {
    poll_messages(bootstrap, topic, partition, start, |got| !got.is_empty()).remove(0)
}

/// Polls one assigned partition until `done(messages so far)`; panics at the deadline.
pub fn poll_messages(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    start: Offset,
    done: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let consumer = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, start).unwrap();
    consumer.assign(&tpl).expect("assign");
    let mut out: Vec<Consumed> = Vec::new();
    let mut errors = Vec::new();
    let deadline = Instant::now() + OP_TIMEOUT;
    while !done(&out) {
        if Instant::now() > deadline {
            panic!(
                "consuming {topic}-{partition} from {start:?}: condition not met after {} \
                 messages (last offset {:?}); errors: {errors:?}",
                out.len(),
                out.last().map(|m| m.offset)
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Consumed {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| k.to_vec()),
                value: m.payload().map(|v| v.to_vec()),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            }),
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
    }
    out
}

/// (low watermark / log start offset, high watermark) through a ListOffsets round trip.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    consumer(bootstrap)
        .fetch_watermarks(topic, partition, OP_TIMEOUT)
        .unwrap_or_else(|e| panic!("fetch_watermarks {topic}-{partition}: {e}"))
}

/// Topic names in a full Metadata response (which never auto-creates).
pub fn topic_names(bootstrap: &str) -> Vec<String> {
    let md = consumer(bootstrap)
        .fetch_metadata(None, OP_TIMEOUT)
        .expect("metadata");
    md.topics().iter().map(|t| t.name().to_string()).collect()
}

/// After a bad input: the process is alive and a fresh topic takes a produce and gives the
/// message back.
pub fn assert_broker_serves(broker: &mut TestBroker) {
    broker.assert_alive();
    let topic = format!("health-{}", uuid::Uuid::new_v4().simple());
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let offset = produce_one(&broker.bootstrap(), &topic, 0, b"k", b"still-serving");
    assert_eq!(offset, 0);
    let got = consume_partition(&broker.bootstrap(), &topic, 0, Offset::Beginning, 1);
    assert_eq!(got[0].value.as_deref(), Some(&b"still-serving"[..]));
    broker.assert_alive();
}

// ---------------------------------------------------------------------------------------
// Raw protocol
// ---------------------------------------------------------------------------------------

/// One TCP connection speaking hand-built Kafka requests.
pub struct RawClient {
    pub stream: TcpStream,
    correlation_id: i32,
    /// api key → broker's max version, filled by `negotiate`.
    pub broker_versions: HashMap<i16, (i16, i16)>,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            correlation_id: 0,
            broker_versions: HashMap::new(),
        }
    }

    /// Connects and learns the broker's version ranges with ApiVersions v3.
    pub fn connect_negotiated(addr: SocketAddr) -> RawClient {
        let mut c = RawClient::connect(addr);
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("tributary-it"))
            .with_client_software_version(StrBytes::from_static_str("0.1"));
        let resp: ApiVersionsResponse = c.send(req, 3);
        assert_eq!(resp.error_code, 0, "ApiVersions v3 error");
        c.broker_versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        c
    }

    /// Highest version both the broker and kafka-protocol support, capped at `cap`.
    pub fn version(&self, key: ApiKey, cap: i16) -> i16 {
        let (bmin, bmax) = *self
            .broker_versions
            .get(&(key as i16))
            .unwrap_or_else(|| panic!("broker does not advertise {key:?}"));
        let ours = key.valid_versions();
        let v = bmax.min(ours.max).min(cap);
        assert!(v >= bmin.max(ours.min), "no common version for {key:?}");
        v
    }

    pub fn next_correlation_id(&mut self) -> i32 {
        self.correlation_id += 1;
        self.correlation_id
    }

    /// Encodes header + body for `req` at `version` (without the length prefix).
    pub fn encode_request<R: Request>(&mut self, req: &R, version: i16) -> BytesMut {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.next_correlation_id())
            .with_client_id(Some(StrBytes::from_static_str("tributary-it")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, R::header_version(version))
            .expect("encode header");
        req.encode(&mut buf, version).expect("encode body");
        buf
    }

    /// Writes `payload` with a correct 4-byte length prefix.
    pub fn write_frame(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame)
    }

    /// Reads one length-prefixed response frame.
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        assert!((0..=64 << 20).contains(&len), "response frame length {len}");
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Sends `req` at `version` and decodes the response, checking the correlation id.
    pub fn send<R: Request>(&mut self, req: R, version: i16) -> R::Response {
        self.try_send(req, version).unwrap_or_else(|e| {
            panic!(
                "no response to {:?} v{version}: {e}",
                ApiKey::try_from(R::KEY)
            )
        })
    }

    /// `send`, with a connection the broker closed instead of answering as an error.
    pub fn try_send<R: Request>(&mut self, req: R, version: i16) -> std::io::Result<R::Response> {
        let payload = self.encode_request(&req, version);
        let correlation_id = self.correlation_id;
        self.write_frame(&payload)?;
        let mut frame = self.read_frame()?;
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .expect("decode response header");
        assert_eq!(header.correlation_id, correlation_id, "correlation id");
        let resp = R::Response::decode(&mut frame, version).expect("decode response body");
        assert_eq!(frame.remaining(), 0, "trailing bytes after response");
        Ok(resp)
    }
}

/// Waits (bounded) for the peer to close `stream`: true on EOF or reset, false if it stays
/// open past `timeout`. Bytes the peer sends first are read and ignored.
pub fn connection_closed(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted) => {}
            Err(_) => return true, // reset / aborted
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

/// Builds an uncompressed magic-2 record batch of `count` records.
pub fn record_batch(count: usize, value_len: usize) -> BytesMut {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<(Vec<u8>, Vec<u8>, i64)> = (0..count)
        .map(|i| {
            (
                format!("key-{i}").into_bytes(),
                vec![b'a' + (i % 26) as u8; value_len],
                now,
            )
        })
        .collect();
    encode_records(&records, kafka_protocol::records::Compression::None)
}

/// One magic-2 batch of `(key, value, timestamp)` records, compressed with `compression`,
/// encoded by kafka-protocol (an encoder independent of librdkafka).
pub fn encode_records(
    records: &[(Vec<u8>, Vec<u8>, i64)],
    compression: kafka_protocol::records::Compression,
) -> BytesMut {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value, timestamp))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: *timestamp,
            key: Some(Bytes::from(key.clone())),
            value: Some(Bytes::from(value.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf
}

/// A stop flag for background producer threads.
pub fn stop_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

pub fn is_set(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}

/// Appends `len` pseudo-random bytes (xorshift from `seed`, so failures reproduce).
pub fn put_garbage(buf: &mut BytesMut, len: usize, seed: u64) {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.put_u8((x >> 24) as u8);
    }
}

// ---------------------------------------------------------------------------------------
// Raw requests used by several suites
// ---------------------------------------------------------------------------------------

pub fn topic_name(name: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_string(name.to_string()))
}

impl RawClient {
    /// Produce v≤12 (v13 addresses topics by id) of raw batch bytes; returns the partition's
    /// (error_code, base_offset).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> (i16, i64) {
        use kafka_protocol::messages::produce_request::{
            PartitionProduceData, ProduceRequest, TopicProduceData,
        };
        let version = self.version(ApiKey::Produce, 12);
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let resp = self.send(req, version);
        assert_eq!(resp.responses.len(), 1, "produce response topics");
        let p = &resp.responses[0].partition_responses;
        assert_eq!(p.len(), 1, "produce response partitions");
        (p[0].error_code, p[0].base_offset)
    }

    /// Fetch v≤12 (names, not topic ids) of one partition; returns the partition data.
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> kafka_protocol::messages::fetch_response::PartitionData {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
        let version = self.version(ApiKey::Fetch, 12);
        let req = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_current_leader_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(1 << 20)])]);
        let mut resp = self.send(req, version);
        assert_eq!(resp.error_code, 0, "fetch top-level error");
        assert_eq!(resp.responses.len(), 1, "fetch response topics");
        let mut parts = std::mem::take(&mut resp.responses[0].partitions);
        assert_eq!(parts.len(), 1, "fetch response partitions");
        parts.remove(0)
    }

    /// ListOffsets of one partition at `timestamp` (-1 latest, -2 earliest, -3 max
    /// timestamp); returns (error_code, timestamp, offset).
    pub fn list_offsets(&mut self, topic: &str, partition: i32, timestamp: i64) -> (i16, i64, i64) {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
        };
        let cap = if timestamp == -3 { 10 } else { 6 };
        let version = self.version(ApiKey::ListOffsets, cap);
        if timestamp == -3 {
            assert!(
                version >= 7,
                "max-timestamp lookups need ListOffsets v7+, broker offers v{version}"
            );
        }
        let req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        let resp = self.send(req, version);
        assert_eq!(resp.topics.len(), 1);
        assert_eq!(resp.topics[0].partitions.len(), 1);
        let p = &resp.topics[0].partitions[0];
        (p.error_code, p.timestamp, p.offset)
    }

    /// Metadata v≤12 for the given topics (None = all).
    pub fn metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_create: bool,
    ) -> kafka_protocol::messages::MetadataResponse {
        self.try_metadata(topics, allow_auto_create)
            .unwrap_or_else(|e| panic!("no response to Metadata: {e}"))
    }

    /// Metadata, with a closed connection as an error: a broker cut off from the cluster
    /// closes the connection rather than name itself the leader of a partition it may no
    /// longer lead.
    pub fn try_metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_create: bool,
    ) -> std::io::Result<kafka_protocol::messages::MetadataResponse> {
        use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
        let version = self.version(ApiKey::Metadata, 12);
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_create);
        self.try_send(req, version)
    }
}
pub mod cluster;
pub mod process;
pub mod proxy;
