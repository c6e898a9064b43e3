//! [`Connection`]: one TCP connection to one broker, speaking the Kafka wire protocol
//! through `kafka-protocol`.
//!
//! ```text
//! connect(addr) ─resolve─▶ TCP ─▶ ApiVersions v3 ─▶ broker's (min, max) per API key
//! send(request) ─▶ version = min(broker max, ours) ─▶ [len][header][body] ─▶ broker
//!                ◀─ [len ≤ MAX_FRAME_BYTES][header: correlation id][body] ◀─
//! ```
//!
//! One request is in flight at a time (`send` takes `&mut self`), so a response always
//! answers the request just written; the correlation id is checked anyway. Every request,
//! the write and the read together, is bounded by the request timeout. After an I/O error,
//! a timeout or a malformed frame the stream's position is unknown, so the connection
//! marks itself broken and refuses further requests: callers make a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{check, Error, Result};

/// The request timeout of [`Connection::connect`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response frame accepted. Admin responses are small; a Metadata response of a
/// cluster with tens of thousands of partitions stays well below this.
pub const MAX_FRAME_BYTES: i32 = 64 << 20;
/// ApiVersions v3 is the first flexible version (it carries the client software name), and
/// every broker since Kafka 2.4 answers it.
const API_VERSIONS_VERSION: i16 = 3;

/// One connection to one broker, with the API versions it advertised.
pub struct Connection {
    stream: TcpStream,
    addr: SocketAddr,
    client_id: StrBytes,
    /// Bounds each request: the write of the request and the read of its response.
    request_timeout: Duration,
    correlation_id: i32,
    /// api key → the broker's (min, max) version, from ApiVersions.
    broker_versions: HashMap<i16, (i16, i16)>,
    /// Set after a failure that leaves the stream at an unknown position.
    broken: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`), trying each address it resolves to in turn, and
    /// negotiates API versions; requests time out after [`DEFAULT_REQUEST_TIMEOUT`].
    pub async fn connect(addr: &str, client_id: &str) -> Result<Self> {
        Self::connect_with(addr, client_id, DEFAULT_REQUEST_TIMEOUT).await
    }

    /// [`Connection::connect`] with a request timeout of `request_timeout`, which also
    /// bounds resolving and each TCP connect.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Self> {
        let resolve_error = |source| Error::Resolve {
            addr: addr.to_string(),
            source,
        };
        let resolved: Vec<SocketAddr> =
            match tokio::time::timeout(request_timeout, tokio::net::lookup_host(addr)).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(source)) => return Err(resolve_error(source)),
                Err(_) => return Err(resolve_error(std::io::ErrorKind::TimedOut.into())),
            };
        let mut last_error = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolved to no address",
        );
        for socket_addr in resolved {
            let stream = match tokio::time::timeout(
                request_timeout,
                TcpStream::connect(socket_addr),
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    last_error = e;
                    continue;
                }
                Err(_) => {
                    last_error = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {request_timeout:?}"),
                    );
                    continue;
                }
            };
            // Requests are small and written whole; Nagle would only delay them.
            if let Err(e) = stream.set_nodelay(true) {
                last_error = e;
                continue;
            }
            let mut connection = Connection {
                stream,
                addr: socket_addr,
                client_id: StrBytes::from_string(client_id.to_string()),
                request_timeout,
                correlation_id: 0,
                broker_versions: HashMap::new(),
                broken: false,
            };
            connection.api_versions().await?;
            tracing::debug!(addr, %socket_addr, "connected");
            return Ok(connection);
        }
        Err(Error::Connect {
            addr: addr.to_string(),
            source: last_error,
        })
    }

    /// The address of the broker this connection talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether an earlier failure left this connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The version to speak for `api`: min(broker max, our max), provided it is not below
    /// either side's minimum. Produce and Fetch are refused: no record batches travel
    /// through an admin client.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        negotiate(api, self.broker_versions.get(&(api as i16)).copied())
    }

    /// Sends `req` at the negotiated version; returns the response and that version.
    pub async fn send<R: Request>(&mut self, req: R) -> Result<(R::Response, i16)> {
        self.send_ref(&req).await
    }

    /// [`Connection::send`] by reference, so that a caller can send the same request again
    /// on another connection.
    pub(crate) async fn send_ref<R: Request>(&mut self, req: &R) -> Result<(R::Response, i16)> {
        let version = self.version(api_key::<R>())?;
        Ok((self.send_at(req, version).await?, version))
    }

    /// Sends ApiVersions and records the broker's version ranges.
    async fn api_versions(&mut self) -> Result<()> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("tributary-admin"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response: ApiVersionsResponse = self.send_at(&request, API_VERSIONS_VERSION).await?;
        check("ApiVersions", None, response.error_code, None)?;
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// Sends `request` at `version` and reads its response, within the request timeout.
    pub(crate) async fn send_at<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response> {
        let api = api_key::<R>();
        if self.broken {
            // A new connection is the caller's to make; report it as the I/O failure it is.
            return Err(Error::Io {
                api,
                addr: self.addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the connection failed earlier",
                ),
            });
        }
        let frame = self.encode(request, version)?;
        let timeout = self.request_timeout;
        let result = match tokio::time::timeout(timeout, self.round_trip::<R>(frame, version)).await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                api,
                addr: self.addr,
                timeout,
            }),
        };
        if let Err(e) = &result {
            if e.breaks_connection() {
                self.broken = true;
            }
        }
        result
    }

    /// The request as a frame: length prefix, header, body.
    fn encode<R: Request>(&mut self, request: &R, version: i16) -> Result<BytesMut> {
        let api = api_key::<R>();
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let encode_error = |e: &dyn std::fmt::Display| Error::Encode {
            api,
            version,
            message: e.to_string(),
        };
        // Reserve the length prefix, encode, then fill it in.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(|e| encode_error(&e))?;
        request
            .encode(&mut buf, version)
            .map_err(|e| encode_error(&e))?;
        let len = i32::try_from(buf.len() - 4).map_err(|_| Error::Encode {
            api,
            version,
            message: format!("a request of {} bytes", buf.len()),
        })?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf)
    }

    /// Writes `frame` and reads and decodes the response to it.
    async fn round_trip<R: Request>(
        &mut self,
        frame: BytesMut,
        version: i16,
    ) -> Result<R::Response> {
        let api = api_key::<R>();
        let addr = self.addr;
        let io_error = |source| Error::Io { api, addr, source };
        self.stream.write_all(&frame).await.map_err(io_error)?;
        let mut frame = self.read_frame().await.map_err(|e| match e {
            FrameError::Io(source) => io_error(source),
            FrameError::Length(len) => Error::FrameLength { addr, len },
        })?;
        let decode_error = |e: &dyn std::fmt::Display| Error::Decode {
            api,
            version,
            message: e.to_string(),
        };
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|e| decode_error(&e))?;
        if header.correlation_id != self.correlation_id {
            return Err(Error::CorrelationId {
                api,
                sent: self.correlation_id,
                received: header.correlation_id,
            });
        }
        let response = R::Response::decode(&mut frame, version).map_err(|e| decode_error(&e))?;
        if frame.has_remaining() {
            return Err(Error::Decode {
                api,
                version,
                message: format!("{} trailing bytes", frame.remaining()),
            });
        }
        Ok(response)
    }

    async fn read_frame(&mut self) -> Result<Bytes, FrameError> {
        let len = self.stream.read_i32().await.map_err(FrameError::Io)?;
        if !(0..=MAX_FRAME_BYTES).contains(&len) {
            return Err(FrameError::Length(len));
        }
        // The bound above makes the cast lossless and the allocation bounded.
        let mut body = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(FrameError::Io)?;
        Ok(Bytes::from(body))
    }
}

enum FrameError {
    Io(std::io::Error),
    Length(i32),
}

/// The version to speak for `api` given the broker's advertised (min, max): the highest
/// both sides know, or [`Error::UnsupportedApi`].
pub(crate) fn negotiate(api: ApiKey, broker: Option<(i16, i16)>) -> Result<i16> {
    let ours = ours(api);
    let unsupported = || Error::UnsupportedApi {
        api,
        broker,
        ours_min: ours.min,
        ours_max: ours.max,
    };
    if matches!(api, ApiKey::Produce | ApiKey::Fetch) {
        return Err(unsupported());
    }
    let (broker_min, broker_max) = broker.ok_or_else(unsupported)?;
    let version = broker_max.min(ours.max);
    if version < broker_min.max(ours.min) {
        return Err(unsupported());
    }
    Ok(version)
}

/// The versions this client can both encode a request in and decode the response of.
///
/// `ApiKey::valid_versions` is not enough: in kafka-protocol 0.18 it allows OffsetCommit
/// and OffsetFetch v10, while their request types encode up to v9 only. So for the APIs
/// this client sends, the range is that of the message types themselves.
pub(crate) fn ours(api: ApiKey) -> VersionRange {
    use kafka_protocol::messages::*;
    fn both<R: Request>() -> VersionRange {
        let (request, response) = (R::VERSIONS, R::Response::VERSIONS);
        VersionRange {
            min: request.min.max(response.min),
            max: request.max.min(response.max),
        }
    }
    match api {
        ApiKey::ApiVersions => both::<ApiVersionsRequest>(),
        ApiKey::Metadata => both::<MetadataRequest>(),
        ApiKey::DescribeCluster => both::<DescribeClusterRequest>(),
        ApiKey::CreateTopics => both::<CreateTopicsRequest>(),
        ApiKey::DeleteTopics => both::<DeleteTopicsRequest>(),
        ApiKey::CreatePartitions => both::<CreatePartitionsRequest>(),
        ApiKey::DescribeConfigs => both::<DescribeConfigsRequest>(),
        ApiKey::IncrementalAlterConfigs => both::<IncrementalAlterConfigsRequest>(),
        ApiKey::AlterPartitionReassignments => both::<AlterPartitionReassignmentsRequest>(),
        ApiKey::ListPartitionReassignments => both::<ListPartitionReassignmentsRequest>(),
        ApiKey::ElectLeaders => both::<ElectLeadersRequest>(),
        ApiKey::UnregisterBroker => both::<UnregisterBrokerRequest>(),
        ApiKey::ListOffsets => both::<ListOffsetsRequest>(),
        ApiKey::FindCoordinator => both::<FindCoordinatorRequest>(),
        ApiKey::ListGroups => both::<ListGroupsRequest>(),
        ApiKey::DescribeGroups => both::<DescribeGroupsRequest>(),
        ApiKey::OffsetFetch => both::<OffsetFetchRequest>(),
        ApiKey::OffsetCommit => both::<OffsetCommitRequest>(),
        ApiKey::DeleteGroups => both::<DeleteGroupsRequest>(),
        // Sent only through `send_to_any` or `Connection::send`: the key's own range.
        other => other.valid_versions(),
    }
}

/// The [`ApiKey`] of a request type.
pub(crate) fn api_key<R: Request>() -> ApiKey {
    // R::KEY comes from the same generated schema as ApiKey, so every Request type has one.
    ApiKey::try_from(R::KEY).expect("every kafka-protocol Request has an ApiKey")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(api: ApiKey, broker: Option<(i16, i16)>) -> Option<i16> {
        negotiate(api, broker).ok()
    }

    #[test]
    fn negotiation_takes_the_highest_common_version() {
        let ours = ours(ApiKey::Metadata);
        // An older broker: its max.
        assert_eq!(negotiated(ApiKey::Metadata, Some((0, 9))), Some(9));
        // A newer broker: ours.
        assert_eq!(
            negotiated(ApiKey::Metadata, Some((0, ours.max + 5))),
            Some(ours.max)
        );
        // Tributary's ranges.
        assert_eq!(negotiated(ApiKey::DescribeCluster, Some((0, 1))), Some(1));
        assert_eq!(negotiated(ApiKey::OffsetFetch, Some((1, 7))), Some(7));
        // A broker newer than kafka-protocol's OffsetCommit request type: its max, not
        // the key's.
        assert_eq!(negotiated(ApiKey::OffsetCommit, Some((2, 10))), Some(9));
    }

    #[test]
    fn our_ranges_lie_within_the_api_keys_ranges() {
        for api in [
            ApiKey::Metadata,
            ApiKey::OffsetCommit,
            ApiKey::OffsetFetch,
            ApiKey::ListOffsets,
            ApiKey::DescribeCluster,
            ApiKey::DeleteGroups,
        ] {
            let (ours, key) = (ours(api), api.valid_versions());
            assert!(ours.min >= key.min && ours.max <= key.max && ours.min <= ours.max);
        }
    }

    #[test]
    fn negotiation_refuses_disjoint_or_missing_ranges_and_record_apis() {
        let ours = ours(ApiKey::CreateTopics);
        // The broker only speaks versions newer than ours.
        let err = negotiate(ApiKey::CreateTopics, Some((ours.max + 1, ours.max + 3)));
        assert!(matches!(
            err,
            Err(Error::UnsupportedApi {
                api: ApiKey::CreateTopics,
                broker: Some(_),
                ..
            })
        ));
        // The broker only speaks versions older than ours.
        assert_eq!(
            negotiated(ApiKey::CreateTopics, Some((0, ours.min - 1))),
            None
        );
        // Not advertised at all.
        assert!(matches!(
            negotiate(ApiKey::ElectLeaders, None),
            Err(Error::UnsupportedApi { broker: None, .. })
        ));
        assert_eq!(negotiated(ApiKey::Produce, Some((0, 9))), None);
        assert_eq!(negotiated(ApiKey::Fetch, Some((0, 13))), None);
    }

    #[test]
    fn every_request_type_has_an_api_key() {
        use kafka_protocol::messages::{ListOffsetsRequest, MetadataRequest};
        assert_eq!(api_key::<MetadataRequest>(), ApiKey::Metadata);
        assert_eq!(api_key::<ListOffsetsRequest>(), ApiKey::ListOffsets);
    }
}
