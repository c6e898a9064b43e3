//! A raw Kafka `Metadata` v7 request to one chosen broker, for the cluster benchmarks.
//!
//! ```text
//!  bench ──TCP──► broker B: [size][api_key=3 v7 corr client_id][topics, allow_auto=false]
//!        ◄─────── [size][corr][throttle][brokers][cluster_id][controller_id][topics ...]
//!                  └─► ClusterMetadata { controller_id, brokers, partitions (leader,
//!                                        leader_epoch, replicas, isr) }
//! ```
//!
//! librdkafka's `fetch_metadata` answers from whichever broker its client picks and hides
//! the controller id; failover measurements need both: which broker names the new leader
//! first, and whether the killed leader was also the active controller (then the failover
//! includes a Raft election). v7 is the newest version that is not "flexible" (no tagged
//! fields) and already carries the leader epoch, so the codec stays a page long.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, ensure, Context};

const METADATA_API_KEY: i16 = 3;
const METADATA_VERSION: i16 = 7;
const CLIENT_ID: &str = "tributary-bench-wire";
/// Largest response accepted; a one-topic Metadata response is a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// One broker of a Metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// One partition as a Metadata response describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: i32,
    pub error_code: i16,
    /// -1 when there is no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl PartitionState {
    /// Has a leader and every replica is in sync.
    pub fn fully_replicated(&self) -> bool {
        self.error_code == 0
            && self.leader >= 0
            && !self.replicas.is_empty()
            && self.isr.len() == self.replicas.len()
    }
}

/// The parts of a Metadata v7 response the benchmarks use, for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// -1 when the broker knows no active controller.
    pub controller_id: i32,
    pub brokers: Vec<BrokerEndpoint>,
    /// The topic's error code (0, or e.g. UNKNOWN_TOPIC_OR_PARTITION = 3).
    pub topic_error: i16,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionState>,
}

impl ClusterMetadata {
    pub fn partition(&self, partition: i32) -> Option<&PartitionState> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// Sends one Metadata v7 request for `topic` to `addr` (a fresh connection, closed
/// afterwards) and decodes the answer; `timeout` bounds the connect and each read/write.
pub fn metadata(
    addr: SocketAddr,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<ClusterMetadata> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let correlation_id = 1;
    stream
        .write_all(&encode_metadata_request(correlation_id, topic))
        .with_context(|| format!("sending Metadata to {addr}"))?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .with_context(|| format!("reading the Metadata response size from {addr}"))?;
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= MAX_RESPONSE_BYTES)
        .with_context(|| format!("{addr} sent a Metadata response of {size} bytes"))?;
    let mut body = vec![0u8; size];
    stream
        .read_exact(&mut body)
        .with_context(|| format!("reading a {size}-byte Metadata response from {addr}"))?;
    decode_metadata_response(&body, correlation_id, topic)
        .with_context(|| format!("decoding the Metadata response from {addr}"))
}

/// The whole request frame, size prefix included: request header v1, then a v7 body
/// naming one topic and refusing auto-creation (a probe must not create topics).
pub fn encode_metadata_request(correlation_id: i32, topic: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + topic.len());
    body.extend_from_slice(&METADATA_API_KEY.to_be_bytes());
    body.extend_from_slice(&METADATA_VERSION.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    put_string(&mut body, CLIENT_ID);
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_string(&mut body, topic);
    body.push(0); // allow_auto_topic_creation = false
    let mut frame = Vec::with_capacity(4 + body.len());
    // Far below i32::MAX: the topic name is a command-line string.
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Decodes a Metadata v7 response body (after the size prefix) and keeps `topic`.
pub fn decode_metadata_response(
    body: &[u8],
    correlation_id: i32,
    topic: &str,
) -> anyhow::Result<ClusterMetadata> {
    let mut r = Reader { buf: body, pos: 0 };
    let got = r.i32()?;
    ensure!(
        got == correlation_id,
        "correlation id {got}, expected {correlation_id}"
    );
    let _throttle_time_ms = r.i32()?;
    let mut brokers = Vec::new();
    for _ in 0..r.array_len()? {
        let node_id = r.i32()?;
        let host = r.string()?.unwrap_or_default();
        let port = r.i32()?;
        let _rack = r.string()?;
        brokers.push(BrokerEndpoint {
            node_id,
            host,
            port,
        });
    }
    let _cluster_id = r.string()?;
    let controller_id = r.i32()?;
    let mut found = None;
    for _ in 0..r.array_len()? {
        let error_code = r.i16()?;
        let name = r.string()?.unwrap_or_default();
        let _is_internal = r.i8()?;
        let mut partitions = Vec::new();
        for _ in 0..r.array_len()? {
            let error_code = r.i16()?;
            let partition = r.i32()?;
            let leader = r.i32()?;
            let leader_epoch = r.i32()?;
            let replicas = r.i32_array()?;
            let isr = r.i32_array()?;
            let _offline = r.i32_array()?;
            partitions.push(PartitionState {
                partition,
                error_code,
                leader,
                leader_epoch,
                replicas,
                isr,
            });
        }
        if name == topic {
            partitions.sort_by_key(|p| p.partition);
            found = Some((error_code, partitions));
        }
    }
    let Some((topic_error, partitions)) = found else {
        bail!("topic {topic} is not in the response");
    };
    Ok(ClusterMetadata {
        controller_id,
        brokers,
        topic_error,
        partitions,
    })
}

/// Big-endian reads over a response body; every read checks the remaining length.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .with_context(|| {
                format!(
                    "truncated: {n} bytes wanted at offset {} of {}",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn i8(&mut self) -> anyhow::Result<i8> {
        Ok(self.take(1)?[0] as i8)
    }

    fn i16(&mut self) -> anyhow::Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> anyhow::Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A nullable string: length -1 is `None`.
    fn string(&mut self) -> anyhow::Result<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// An array length; a null array (-1) counts as empty. Bounded by the bytes left,
    /// since every element takes at least one byte.
    fn array_len(&mut self) -> anyhow::Result<usize> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(0);
        }
        let len = len as usize;
        ensure!(
            len <= self.buf.len() - self.pos,
            "array of {len} elements with {} bytes left",
            self.buf.len() - self.pos
        );
        Ok(len)
    }

    fn i32_array(&mut self) -> anyhow::Result<Vec<i32>> {
        (0..self.array_len()?).map(|_| self.i32()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a v7 response body the way a broker encodes one.
    fn response(
        correlation_id: i32,
        controller_id: i32,
        topics: &[(&str, &[PartitionState])],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&correlation_id.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes()); // throttle
        b.extend_from_slice(&2i32.to_be_bytes());
        for (id, port) in [(0i32, 9092i32), (2, 9094)] {
            b.extend_from_slice(&id.to_be_bytes());
            put_string(&mut b, "127.0.0.1");
            b.extend_from_slice(&port.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes()); // rack null
        }
        put_string(&mut b, "cluster-1");
        b.extend_from_slice(&controller_id.to_be_bytes());
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            b.extend_from_slice(&0i16.to_be_bytes());
            put_string(&mut b, name);
            b.push(0);
            b.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend_from_slice(&p.error_code.to_be_bytes());
                b.extend_from_slice(&p.partition.to_be_bytes());
                b.extend_from_slice(&p.leader.to_be_bytes());
                b.extend_from_slice(&p.leader_epoch.to_be_bytes());
                for list in [&p.replicas, &p.isr, &Vec::new()] {
                    b.extend_from_slice(&(list.len() as i32).to_be_bytes());
                    for id in list {
                        b.extend_from_slice(&id.to_be_bytes());
                    }
                }
            }
        }
        b
    }

    fn partition(partition: i32, leader: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            partition,
            error_code: 0,
            leader,
            leader_epoch: 4,
            replicas: vec![0, 1, 2],
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn request_frame_has_the_v7_header_and_one_topic() {
        let frame = encode_metadata_request(9, "t1");
        let body = &frame[4..];
        assert_eq!(
            i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            body.len()
        );
        assert_eq!(&body[..2], &3i16.to_be_bytes());
        assert_eq!(&body[2..4], &7i16.to_be_bytes());
        assert_eq!(&body[4..8], &9i32.to_be_bytes());
        let client_len = CLIENT_ID.len();
        let rest = &body[10 + client_len..];
        assert_eq!(&rest[..4], &1i32.to_be_bytes());
        assert_eq!(&rest[4..6], &2i16.to_be_bytes());
        assert_eq!(&rest[6..8], b"t1");
        assert_eq!(rest[8..], [0], "auto-creation is refused");
    }

    #[test]
    fn response_keeps_the_requested_topic_controller_and_brokers() {
        let body = response(
            5,
            2,
            &[
                ("other", &[partition(0, 0, &[0])]),
                (
                    "t",
                    &[partition(1, 2, &[2, 0]), partition(0, 1, &[0, 1, 2])],
                ),
            ],
        );
        let md = decode_metadata_response(&body, 5, "t").unwrap();
        assert_eq!(md.controller_id, 2);
        assert_eq!(md.topic_error, 0);
        assert_eq!(md.brokers.len(), 2);
        assert_eq!(
            md.brokers[1],
            BrokerEndpoint {
                node_id: 2,
                host: "127.0.0.1".into(),
                port: 9094
            }
        );
        assert_eq!(
            md.partitions
                .iter()
                .map(|p| p.partition)
                .collect::<Vec<_>>(),
            [0, 1]
        );
        assert!(md.partition(0).unwrap().fully_replicated());
        assert!(!md.partition(1).unwrap().fully_replicated());
        assert_eq!(md.partition(1).unwrap().leader, 2);
        assert_eq!(md.partition(1).unwrap().leader_epoch, 4);
        assert!(md.partition(7).is_none());
    }

    #[test]
    fn leaderless_partition_is_not_fully_replicated() {
        let mut p = partition(0, -1, &[0, 1, 2]);
        assert!(!p.fully_replicated());
        p.leader = 1;
        p.error_code = 5;
        assert!(!p.fully_replicated());
    }

    #[test]
    fn bad_responses_are_errors() {
        let body = response(5, 2, &[("t", &[partition(0, 1, &[1])])]);
        assert!(decode_metadata_response(&body, 6, "t")
            .unwrap_err()
            .to_string()
            .contains("correlation"));
        assert!(decode_metadata_response(&body, 5, "missing").is_err());
        for cut in [3, 20, body.len() - 1] {
            assert!(
                decode_metadata_response(&body[..cut], 5, "t").is_err(),
                "cut at {cut}"
            );
        }
        // An array claiming more elements than there are bytes left.
        let mut huge = 5i32.to_be_bytes().to_vec();
        huge.extend_from_slice(&0i32.to_be_bytes());
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_metadata_response(&huge, 5, "t")
            .unwrap_err()
            .to_string()
            .contains("array"));
    }

    #[test]
    fn talks_to_librdkafkas_mock_broker() {
        let cluster = rdkafka::mocking::MockCluster::new(3).unwrap();
        cluster.create_topic("wire", 2, 3).unwrap();
        cluster.partition_leader("wire", 1, Some(2)).unwrap();
        let addr = cluster
            .bootstrap_servers()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let md = metadata(addr, "wire", Duration::from_secs(5)).unwrap();
        assert_eq!(md.topic_error, 0);
        assert_eq!(md.brokers.len(), 3);
        assert_eq!(md.partitions.len(), 2);
        assert_eq!(md.partition(1).unwrap().leader, 2);
        assert_eq!(md.partition(1).unwrap().replicas.len(), 3);
        let unknown = metadata(addr, "nope", Duration::from_secs(5)).unwrap();
        assert_ne!(unknown.topic_error, 0);
    }
}
