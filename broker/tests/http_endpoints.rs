//! The HTTP listener (`http.listener`) of real broker processes, through a plain
//! `std::net::TcpStream` client: `/healthz` and `/readyz` as a broker starts, is cut off
//! from the quorum, loses its voters and gets them back; `/metrics` against what real
//! clients (librdkafka, and raw requests of known size) produced and fetched; ISR and
//! under-replication gauges as a follower dies and returns; and requests no probe would
//! send (garbage, huge heads, a head that never ends, a flood of idle connections), none of
//! which may crash the broker.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::{
    admin_client, admin_options, base_config, block_on, consume_partition, create_topic,
    files_with_suffix, flush_deliveries, producer, record_batch, send, wait_for, RawClient,
    TestBroker, OP_TIMEOUT,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;

/// Waits for failover-related states (fencing, an election, a follower catching up).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(40);
/// The broker answers a request head that never ends after 5 s; this leaves a margin.
const SLOW_HEAD_TIMEOUT: Duration = Duration::from_secs(15);
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client and a Prometheus text parser
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    /// The header lines, lower-cased names.
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as is and reads until the server closes. An error (a reset, a write
/// the server refused to take) means the server closed the connection on us.
fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(SLOW_HEAD_TIMEOUT))?;
    stream.set_write_timeout(Some(SLOW_HEAD_TIMEOUT))?;
    stream.write_all(request)?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

/// Parses a whole response; checks that `Content-Length` matches the body.
fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let body = String::from_utf8(raw[end + 4..].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let response = HttpResponse {
        status,
        headers,
        body,
    };
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str()),
        "{response:?}"
    );
    assert_eq!(response.header("connection"), Some("close"));
    Some(response)
}

fn request(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    let raw = exchange(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: it\r\n\r\n").as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
    parse_response(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {path} on {addr}: not an HTTP response: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    request(addr, "GET", path)
}

/// The status `/readyz` answers now, and its body.
fn readyz(addr: SocketAddr) -> (u16, String) {
    let r = get(addr, "/readyz");
    (r.status, r.body)
}

/// One scrape of `/metrics`: every sample, by name and label set.
#[derive(Debug)]
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("sample without a value: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad sample value: {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    (name.to_string(), parse_labels(rest, line))
                }
            };
            samples.push((name, labels, value));
        }
        Scrape { samples, text }
    }

    /// The sample of `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
    }

    /// Like [`value`](Self::value), panicking with the scrape when there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }
}

/// `a="x",b="y\"z"` (the text format escapes `\`, `"` and newlines in values).
fn parse_labels(text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels: {line}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value: {line}"));
        labels.insert(key.to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

fn scrape(addr: SocketAddr) -> Scrape {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    Scrape::parse(r.body)
}

/// The sum of every `.log` segment file of `<dir>`: the partition's bytes on disk.
fn log_bytes_on_disk(dir: &std::path::Path) -> u64 {
    files_with_suffix(dir, ".log")
        .iter()
        .map(|f| std::fs::metadata(f).expect("segment metadata").len())
        .sum()
}

// ---------------------------------------------------------------------------------------
// One broker
// ---------------------------------------------------------------------------------------

#[test]
fn probes_answer_and_bad_requests_get_a_4xx_or_a_closed_connection() {
    let mut broker = TestBroker::start(&[]);
    let http = broker.http_addr();
    assert!(http.ip().is_loopback() && http.port() != 0, "{http}");

    // Admitted (it printed `listening on`), so live and ready.
    let health = get(http, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(readyz(http), (200, "ready\n".to_string()));
    // A query string is ignored.
    assert_eq!(get(http, "/healthz?verbose=1").status, 200);

    assert_eq!(get(http, "/").status, 404);
    assert_eq!(get(http, "/metrics/extra").status, 404);
    let post = request(http, "POST", "/metrics");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));
    assert_eq!(request(http, "HEAD", "/healthz").status, 405);
    let http2 = exchange(http, b"GET /healthz HTTP/2.0\r\n\r\n").unwrap();
    assert_eq!(parse_response(&http2).map(|r| r.status), Some(505));
    // LF-only line ends, as RFC 9112 lets a server accept.
    let lf = exchange(http, b"GET /healthz HTTP/1.0\n\n").unwrap();
    assert_eq!(parse_response(&lf).map(|r| r.status), Some(200));

    // What a port scanner, a confused client or an attacker might send. Each is answered
    // with a 4xx or its connection closed; the broker keeps serving.
    let mut garbage = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        garbage.push((x >> 24) as u8);
    }
    let bad_requests: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes with a blank line", {
            let mut g = garbage.clone();
            g.extend_from_slice(b"\r\n\r\n");
            g
        }),
        (
            "a request line with no version",
            b"GET /healthz\r\n\r\n".to_vec(),
        ),
        (
            "a method that is not a token",
            b"G\x00T /healthz HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "an absolute URI",
            b"GET http://x/healthz HTTP/1.1\r\n\r\n".to_vec(),
        ),
        ("a 100 KiB head of random bytes", garbage.repeat(50)),
        ("a 64 KiB header", {
            let mut r = b"GET /healthz HTTP/1.1\r\nX-Pad: ".to_vec();
            r.extend(std::iter::repeat_n(b'a', 64 * 1024));
            r.extend_from_slice(b"\r\n\r\n");
            r
        }),
        ("a Kafka ApiVersions request", {
            let mut r = vec![0, 0, 0, 10, 0, 18, 0, 3, 0, 0, 0, 1, 0xff, 0xff];
            r.extend_from_slice(b"\r\n\r\n");
            r
        }),
    ];
    for (what, bytes) in &bad_requests {
        match exchange(http, bytes) {
            Ok(raw) if raw.is_empty() => {}
            Ok(raw) => {
                let r = parse_response(&raw).unwrap_or_else(|| {
                    panic!("{what}: not HTTP: {:?}", String::from_utf8_lossy(&raw))
                });
                assert!((400..500).contains(&r.status), "{what}: {r:?}");
            }
            Err(_) => {} // closed on us
        }
        broker.assert_alive();
    }

    // A head that never ends (slowloris): the broker answers 408 (or closes) after its
    // head timeout, and serves others meanwhile.
    let mut slow = TcpStream::connect(http).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert_eq!(
        get(http, "/healthz").status,
        200,
        "served while one is slow"
    );
    slow.set_read_timeout(Some(SLOW_HEAD_TIMEOUT)).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(
        started.elapsed() < SLOW_HEAD_TIMEOUT,
        "the slow connection was neither answered nor closed"
    );
    if !answer.is_empty() {
        assert_eq!(parse_response(&answer).map(|r| r.status), Some(408));
    }

    // More idle connections than the listener serves at once: the extra ones are closed,
    // and once the idle ones go, probes are answered again.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(http).unwrap())
        .collect();
    broker.assert_alive();
    drop(idle);
    wait_for(
        OP_TIMEOUT,
        "/healthz once the idle connections are gone",
        || {
            exchange(http, b"GET /healthz HTTP/1.1\r\n\r\n")
                .ok()
                .and_then(|raw| parse_response(&raw))
                .is_some_and(|r| r.status == 200)
        },
    );
    // A connection closed before sending anything, and one closed halfway.
    drop(TcpStream::connect(http).unwrap());
    let mut half = TcpStream::connect(http).unwrap();
    half.write_all(b"GET /metr").unwrap();
    drop(half);

    common::assert_broker_serves(&mut broker);
    assert_eq!(get(http, "/healthz").status, 200);
}

#[test]
fn an_empty_http_listener_serves_no_http() {
    let mut broker = TestBroker::start(&[("http.listener", "")]);
    // Served Kafka requests after printing `listening on`, so anything printed with that
    // line is in the output by now.
    common::assert_broker_serves(&mut broker);
    assert!(
        !broker.output().contains("serving HTTP on"),
        "{}",
        broker.output()
    );
}

#[test]
fn metrics_count_what_clients_produced_and_fetched() {
    const TOPIC: &str = "metered";
    const MESSAGES: usize = 200;
    const VALUE_BYTES: usize = 100;
    let broker = TestBroker::start(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("offsets.topic.num.partitions", "1"),
    ]);
    let http = broker.http_addr();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 1, &[]);
    let topic = [("topic", TOPIC)];
    let partition = [("topic", TOPIC), ("partition", "0")];

    // The topic's series exist, at zero, once it has a partition here.
    wait_for(OP_TIMEOUT, "the new topic's series", || {
        scrape(http)
            .value("tributary_topic_bytes_in_total", &topic)
            .is_some()
    });
    let before = scrape(http);
    assert_eq!(before.get("tributary_topic_bytes_in_total", &topic), 0.0);
    assert_eq!(before.get("tributary_topic_messages_in_total", &topic), 0.0);
    assert_eq!(before.get("tributary_topic_bytes_out_total", &topic), 0.0);
    assert_eq!(before.get("tributary_log_size_bytes", &partition), 0.0);

    // librdkafka batches as it likes: the counters must match what the log holds.
    let p = producer(&bootstrap, &[("acks", "all"), ("linger.ms", "20")]);
    let value = [b'v'; VALUE_BYTES];
    for i in 0..MESSAGES {
        let key = format!("key-{i}");
        send(
            &p,
            BaseRecord::with_opaque_to(TOPIC, i)
                .partition(0)
                .key(key.as_bytes())
                .payload(&value[..]),
        );
    }
    let deliveries = flush_deliveries(&p, MESSAGES);
    assert!(
        deliveries.iter().all(|d| d.error.is_none()),
        "{deliveries:?}"
    );
    let on_disk = log_bytes_on_disk(&broker.partition_dir(TOPIC, 0));
    assert!(on_disk > (MESSAGES * VALUE_BYTES) as u64, "{on_disk}");
    let produced = scrape(http);
    assert_eq!(
        produced.get("tributary_topic_messages_in_total", &topic),
        MESSAGES as f64
    );
    assert_eq!(
        produced.get("tributary_topic_bytes_in_total", &topic),
        on_disk as f64,
        "bytes in = the batches in the log"
    );
    assert_eq!(
        produced.get("tributary_log_size_bytes", &partition),
        on_disk as f64
    );

    // A batch of known size, from a client that is not librdkafka.
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let batch = record_batch(5, 300).freeze();
    let (code, base) = raw.produce(TOPIC, 0, batch.clone(), -1);
    assert_eq!((code, base), (0, MESSAGES as i64));
    let after_raw = scrape(http);
    assert_eq!(
        after_raw.get("tributary_topic_bytes_in_total", &topic)
            - produced.get("tributary_topic_bytes_in_total", &topic),
        batch.len() as f64,
        "bytes in moved by the batch's size"
    );
    assert_eq!(
        after_raw.get("tributary_topic_messages_in_total", &topic),
        (MESSAGES + 5) as f64
    );
    let log_size = log_bytes_on_disk(&broker.partition_dir(TOPIC, 0));
    assert_eq!(log_size, on_disk + batch.len() as u64);

    // A fetch from the start returns the whole log; bytes out moves by what it carried.
    let data = raw.fetch(TOPIC, 0, 0);
    assert_eq!(data.error_code, 0);
    let fetched = data.records.as_ref().map_or(0, |r| r.len());
    assert_eq!(
        fetched as u64, log_size,
        "one fetch carries the whole small log"
    );
    let after_fetch = scrape(http);
    assert_eq!(
        after_fetch.get("tributary_topic_bytes_out_total", &topic),
        fetched as f64
    );
    // librdkafka reading everything adds at least the log once more.
    let consumed = consume_partition(
        &bootstrap,
        TOPIC,
        0,
        Offset::Beginning,
        (MESSAGES + 5) as i64,
    );
    assert_eq!(consumed.len(), MESSAGES + 5);
    let after_consume = scrape(http);
    assert!(
        after_consume.get("tributary_topic_bytes_out_total", &topic) >= (fetched * 2) as f64,
        "{}",
        after_consume.text
    );
    // Followers' fetches are not client fetches, and there are none here: bytes in is
    // unchanged by reading.
    assert_eq!(
        after_consume.get("tributary_topic_bytes_in_total", &topic),
        after_raw.get("tributary_topic_bytes_in_total", &topic)
    );

    // Requests by API: every request counted once, with one latency observation each.
    let produce = [("api", "Produce")];
    let produce_requests = after_consume.get("tributary_requests_total", &produce);
    assert!(produce_requests >= 2.0, "{}", after_consume.text);
    for api in ["Produce", "Fetch", "Metadata", "ApiVersions", "ListOffsets"] {
        let labels = [("api", api)];
        let requests = after_consume.get("tributary_requests_total", &labels);
        assert!(requests >= 1.0, "{api}: {requests}");
        assert_eq!(
            after_consume.get("tributary_request_duration_seconds_count", &labels),
            requests,
            "{api}"
        );
        assert_eq!(
            after_consume.get(
                "tributary_request_duration_seconds_bucket",
                &[("api", api), ("le", "+Inf")]
            ),
            requests,
            "{api}"
        );
    }
    // APIs nobody called have their series, at zero.
    assert_eq!(
        after_consume.get("tributary_requests_total", &[("api", "DeleteRecords")]),
        0.0
    );
    // A produce to a partition that does not exist is one request and one error.
    let errors_before = after_consume.get("tributary_request_errors_total", &produce);
    let (code, _) = raw.produce(TOPIC, 7, record_batch(1, 10).freeze(), 1);
    assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION);
    let after_error = scrape(http);
    assert_eq!(
        after_error.get("tributary_request_errors_total", &produce),
        errors_before + 1.0
    );
    assert_eq!(
        after_error.get("tributary_requests_total", &produce),
        produce_requests + 1.0
    );
    assert_eq!(
        after_error.get("tributary_topic_bytes_in_total", &topic),
        after_raw.get("tributary_topic_bytes_in_total", &topic),
        "a refused produce adds no bytes"
    );

    // State gauges of a standalone broker: it leads everything it hosts and is the
    // controller.
    assert_eq!(after_error.get("tributary_active_controller_id", &[]), 0.0);
    assert_eq!(after_error.get("tributary_active_controller", &[]), 1.0);
    assert_eq!(after_error.get("tributary_offline_partitions", &[]), 0.0);
    assert_eq!(
        after_error.get("tributary_under_replicated_partitions", &[]),
        0.0
    );
    assert!(after_error.get("tributary_partitions", &[]) >= 1.0);
    assert_eq!(
        after_error.get("tributary_leader_partitions", &[]),
        after_error.get("tributary_partitions", &[])
    );
    assert_eq!(after_error.get("tributary_isr_shrinks_total", &[]), 0.0);

    // A consumer group: counted by state while it has a member.
    let member: BaseConsumer = base_config(&bootstrap)
        .set("group.id", "metered-readers")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .expect("create group consumer");
    member.subscribe(&[TOPIC]).expect("subscribe");
    let deadline = Instant::now() + CLUSTER_TIMEOUT;
    let mut stable = false;
    while !stable {
        assert!(
            Instant::now() < deadline,
            "the group never showed as Stable:\n{}",
            scrape(http).text
        );
        let _ = member.poll(Duration::from_millis(100));
        stable =
            scrape(http).value("tributary_consumer_groups", &[("state", "Stable")]) == Some(1.0);
    }
    // __consumer_offsets is hosted here now: its partition and log count too.
    let with_group = scrape(http);
    assert_eq!(with_group.get("tributary_partitions", &[]), 2.0);
    assert!(with_group
        .value(
            "tributary_log_size_bytes",
            &[("topic", "__consumer_offsets"), ("partition", "0")]
        )
        .is_some());
}

// ---------------------------------------------------------------------------------------
// A three-broker cluster
// ---------------------------------------------------------------------------------------

/// Each broker's id for the active controller, as its `/metrics` says, once all running
/// ones agree on one.
fn agreed_controller(cluster: &mut TestCluster, running: &[i32]) -> i32 {
    let addrs: Vec<SocketAddr> = running
        .iter()
        .map(|id| cluster.broker(*id).http_addr())
        .collect();
    let mut agreed = -1;
    wait_for(
        CLUSTER_TIMEOUT,
        "the brokers to agree on a controller",
        || {
            let ids: Vec<f64> = addrs
                .iter()
                .map(|a| scrape(*a).get("tributary_active_controller_id", &[]))
                .collect();
            agreed = ids[0] as i32;
            agreed >= 0 && ids.iter().all(|id| *id == ids[0])
        },
    );
    agreed
}

#[test]
fn readyz_follows_the_quorum_and_fails_where_the_controller_is_unreachable() {
    let mut cluster = TestCluster::start_with_proxies(3, &[]);
    let http: Vec<SocketAddr> = (0..3).map(|id| cluster.broker(id).http_addr()).collect();
    for (id, addr) in http.iter().enumerate() {
        assert_eq!(readyz(*addr), (200, "ready\n".to_string()), "broker {id}");
    }
    let controller = agreed_controller(&mut cluster, &[0, 1, 2]);
    let active: Vec<f64> = http
        .iter()
        .map(|a| scrape(*a).get("tributary_active_controller", &[]))
        .collect();
    assert_eq!(
        active.iter().sum::<f64>(),
        1.0,
        "exactly one active controller: {active:?}"
    );
    assert_eq!(active[controller as usize], 1.0);

    // Cut a broker that is not the controller off from the others: no heartbeat of its
    // reaches the controller, so it is not ready; the others stay ready. It stays live.
    let cut = (0..3).find(|id| *id != controller).unwrap();
    cluster.isolate(cut);
    wait_for(
        CLUSTER_TIMEOUT,
        "the isolated broker to be not ready",
        || {
            let (status, body) = readyz(http[cut as usize]);
            status == 503 && body.contains("active controller")
        },
    );
    assert_eq!(get(http[cut as usize], "/healthz").status, 200);
    for id in (0..3).filter(|id| *id != cut) {
        assert_eq!(readyz(http[id as usize]).0, 200, "broker {id}");
    }
    cluster.heal(cut);
    wait_for(
        CLUSTER_TIMEOUT,
        "the healed broker to be ready again",
        || readyz(http[cut as usize]).0 == 200,
    );

    // Kill the two other voters: the survivor has no quorum to heartbeat to.
    let survivor = cut;
    let others: Vec<i32> = (0..3).filter(|id| *id != survivor).collect();
    for id in &others {
        cluster.kill9(*id);
    }
    wait_for(CLUSTER_TIMEOUT, "the survivor to be not ready", || {
        let (status, body) = readyz(http[survivor as usize]);
        status == 503 && body.starts_with("not ready: no heartbeat accepted")
    });
    assert_eq!(get(http[survivor as usize], "/healthz").status, 200);
    for id in &others {
        cluster.restart(*id);
    }
    for (id, addr) in http.iter().enumerate() {
        wait_for(CLUSTER_TIMEOUT, &format!("broker {id} to be ready"), || {
            readyz(*addr).0 == 200
        });
    }
    agreed_controller(&mut cluster, &[0, 1, 2]);
    cluster.assert_all_alive();
}

#[test]
fn under_replicated_and_offline_partitions_follow_a_dead_follower() {
    const TOPIC: &str = "watched";
    const LONELY: &str = "lonely";
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let admin = admin_client(&bootstrap);
    let watched = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3));
    let results = block_on(admin.create_topics([&watched], &admin_options())).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    let leader = cluster.wait_for_leader(TOPIC, 0, CLUSTER_TIMEOUT);
    let follower = (0..3).find(|id| *id != leader).unwrap();
    // A topic whose only replica is the follower: offline while it is down.
    let assignment: &[&[i32]] = &[&[follower]];
    let lonely = NewTopic::new(LONELY, 1, TopicReplication::Variable(assignment));
    let results = block_on(admin.create_topics([&lonely], &admin_options())).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    let http: Vec<SocketAddr> = (0..3).map(|id| cluster.broker(id).http_addr()).collect();
    let leader_http = http[leader as usize];

    let p = producer(&bootstrap, &[("acks", "all")]);
    for i in 0..50usize {
        send(
            &p,
            BaseRecord::with_opaque_to(TOPIC, i)
                .partition(0)
                .payload(format!("value-{i}").as_bytes()),
        );
    }
    assert!(flush_deliveries(&p, 50).iter().all(|d| d.error.is_none()));

    wait_for(CLUSTER_TIMEOUT, "a fully replicated cluster", || {
        http.iter().all(|a| {
            let s = scrape(*a);
            s.get("tributary_under_replicated_partitions", &[]) == 0.0
                && s.get("tributary_offline_partitions", &[]) == 0.0
        })
    });
    let before = scrape(leader_http);
    assert!(before.get("tributary_leader_partitions", &[]) >= 1.0);
    let expands_before = before.get("tributary_isr_expands_total", &[]);
    // Every replica holds the same bytes.
    let partition = [("topic", TOPIC), ("partition", "0")];
    wait_for(
        CLUSTER_TIMEOUT,
        "equal log sizes on the three replicas",
        || {
            let sizes: Vec<f64> = http
                .iter()
                .map(|a| scrape(*a).get("tributary_log_size_bytes", &partition))
                .collect();
            sizes[0] > 0.0 && sizes.iter().all(|s| *s == sizes[0])
        },
    );

    cluster.kill9(follower);
    wait_for(
        CLUSTER_TIMEOUT,
        "the leader to report its partition under-replicated, and the follower's lonely \
         partition offline",
        || {
            let s = scrape(leader_http);
            s.get("tributary_under_replicated_partitions", &[]) >= 1.0
                && s.get("tributary_offline_partitions", &[]) == 1.0
        },
    );

    cluster.restart(follower);
    wait_for(
        CLUSTER_TIMEOUT,
        "the follower back in the ISR and its partition back online",
        || {
            let s = scrape(leader_http);
            s.get("tributary_under_replicated_partitions", &[]) == 0.0
                && s.get("tributary_offline_partitions", &[]) == 0.0
        },
    );
    let after = scrape(leader_http);
    assert!(
        after.get("tributary_isr_expands_total", &[]) > expands_before,
        "the leader proposed the follower's return to the ISR:\n{}",
        after.text
    );
    // The restarted follower hosts both its partitions again, and has caught up.
    wait_for(CLUSTER_TIMEOUT, "the follower to catch up", || {
        let s = scrape(http[follower as usize]);
        s.value("tributary_log_size_bytes", &partition)
            == Some(after.get("tributary_log_size_bytes", &partition))
            && s.value(
                "tributary_log_size_bytes",
                &[("topic", LONELY), ("partition", "0")],
            )
            .is_some()
    });
    drop(consume_partition(
        &bootstrap,
        TOPIC,
        0,
        Offset::Beginning,
        50,
    ));
    cluster.assert_all_alive();
}
