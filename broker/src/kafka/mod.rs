//! The Kafka wire protocol: framing, request decoding, dispatch to one handler module per
//! API family, and response encoding. Message types come from the `kafka-protocol` crate.
//!
//! ```text
//! TcpStream ─> read_frame (4-byte size, capped by socket.request.max.bytes)
//!          ─> decode_request (header + body, version checked against SUPPORTED_APIS)
//!          ─> handler::* (ReplicaManager) ─> encode_response ─> TcpStream
//! ```
//!
//! Requests on one connection are handled one at a time, in order, as Kafka does: a
//! client that pipelines gets its responses in the order it sent the requests. What cannot
//! be parsed — an oversize or negative frame size, an unknown API key, an unsupported
//! version, a body that does not decode — closes that connection and nothing else.

pub mod handler;

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::server::BrokerContext;

/// The APIs this broker serves and the versions of each, as ApiVersions reports them.
/// Produce starts at 3 and Fetch at 4, the first versions that carry magic-2 record batches
/// (Kafka 4.0 dropped the older ones too). InitProducerId serves idempotent producers only
/// (no transactions), up to v5, the last version kafka-protocol decodes. The group APIs stop
/// before KIP-848 (OffsetCommit v9) and the batched OffsetFetch (v8).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The version range served for `key`, if any.
pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes is outside 0..={max} (socket.request.max.bytes)")]
    FrameSize { size: i32, max: u32 },
    #[error("frame of {0} bytes is too short for a request header")]
    Truncated(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{key:?} version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        key: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("{key:?} v{version} does not decode: {reason}")]
    Malformed {
        key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A request read off the wire.
#[derive(Debug)]
pub struct DecodedRequest {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
}

/// What to do with one frame.
#[derive(Debug)]
pub enum Decoded {
    Request(Box<DecodedRequest>),
    /// A complete response to send without dispatching (ApiVersions at an unsupported
    /// version: Kafka answers it in v0 with UNSUPPORTED_VERSION so the client can downgrade).
    Immediate(Bytes),
}

/// Decodes one frame (without its size prefix). Never panics on any input.
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Truncated(frame.len()));
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(api_key).map_err(|_| FrameError::UnknownApiKey(api_key))?;
    let Some((min, max)) = supported_versions(key) else {
        return Err(FrameError::UnknownApiKey(api_key));
    };
    if version < min || version > max {
        if key == ApiKey::ApiVersions {
            return Ok(Decoded::Immediate(unsupported_api_versions(correlation_id)));
        }
        return Err(FrameError::UnsupportedVersion {
            key,
            version,
            min,
            max,
        });
    }
    let malformed = |e: anyhow::Error| FrameError::Malformed {
        key,
        version,
        reason: e.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(malformed)?;
    let body = RequestKind::decode(key, &mut frame, version).map_err(malformed)?;
    Ok(Decoded::Request(Box::new(DecodedRequest {
        header,
        api_key: key,
        body,
    })))
}

/// The ApiVersions list this broker sends.
pub fn api_versions_list() -> Vec<kafka_protocol::messages::api_versions_response::ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            kafka_protocol::messages::api_versions_response::ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

fn unsupported_api_versions(correlation_id: i32) -> Bytes {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_versions_list());
    // Encoding a response we built ourselves into a growable buffer cannot fail.
    encode_response(
        correlation_id,
        ApiKey::ApiVersions,
        0,
        &ResponseKind::ApiVersions(body),
    )
    .expect("ApiVersions v0 encodes")
}

/// Encodes a response with its header and 4-byte size prefix.
pub fn encode_response(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, key.response_header_version(version))?;
    response.encode(&mut buf, version)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Reads one size-prefixed frame. `Ok(None)` at a clean end of stream.
async fn read_frame<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    max: u32,
) -> std::io::Result<Result<Option<Bytes>, FrameError>> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Ok(None)),
        Err(e) => return Err(e),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 || size as u32 > max {
        return Ok(Err(FrameError::FrameSize { size, max }));
    }
    let mut frame = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut frame).await?;
    Ok(Ok(Some(frame.freeze())))
}

/// Serves one client connection until it closes, misbehaves, or `shutdown` fires. A
/// request already being handled when `shutdown` fires is finished and answered.
/// How long a connection may stay quiet after the broker began to stop before it is
/// closed (see [`serve_connection`]).
const QUIET_CLOSE_MS: u64 = 250;

pub async fn serve_connection(
    stream: TcpStream,
    ctx: Arc<BrokerContext>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let peer = stream.peer_addr().ok();
    stream.set_nodelay(true)?;
    let (read_half, write_half) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    let max = ctx.config.socket_request_max_bytes;
    let idle = std::time::Duration::from_millis(ctx.config.connections_max_idle_ms);
    // Once the broker stops, a connection is closed when it has been quiet this long, not
    // at once: clients told NOT_LEADER_OR_FOLLOWER during the controlled shutdown move to
    // the new leaders and stop sending here, and closing an idle connection costs them no
    // failed request (closing one with a fetch in flight would surface as an error).
    let quiet = std::time::Duration::from_millis(QUIET_CLOSE_MS);
    let mut draining = false;
    loop {
        // Wait for the next request's first bytes without consuming anything (`fill_buf`
        // is cancel-safe), so a stop signal never cuts a frame in half.
        let wait = if draining { quiet } else { idle };
        let ready = tokio::select! {
            biased;
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                continue;
            }
            ready = tokio::time::timeout(wait, reader.fill_buf()) => {
                ready.map(|r| r.map(|buf| buf.is_empty()))
            }
        };
        match ready {
            Err(_) if draining => {
                tracing::debug!(?peer, "closing a quiet connection at shutdown");
                break;
            }
            Err(_) => {
                tracing::debug!(?peer, ?idle, "closing idle connection");
                break;
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(true)) => break, // the client closed the connection
            Ok(Ok(false)) => {}
        }
        let frame = match tokio::time::timeout(idle, read_frame(&mut reader, max)).await {
            Ok(frame) => frame?,
            Err(_) => {
                tracing::debug!(?peer, ?idle, "closing a connection stalled mid-request");
                break;
            }
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "closing connection");
                break;
            }
        };
        let request = match decode_request(frame) {
            Ok(Decoded::Request(request)) => request,
            Ok(Decoded::Immediate(bytes)) => {
                writer.write_all(&bytes).await?;
                writer.flush().await?;
                continue;
            }
            Err(e) => {
                tracing::warn!(?peer, error = %e, "closing connection");
                break;
            }
        };
        let correlation_id = request.header.correlation_id;
        let version = request.header.request_api_version;
        let key = request.api_key;
        let started = std::time::Instant::now();
        let metrics = ctx.replicas.metrics();
        let response = match handler::handle(&ctx, *request).await {
            Ok(Some(response)) => response,
            Ok(None) => {
                // acks=0 produce: no response
                metrics.record_request(key, started.elapsed(), false);
                continue;
            }
            Err(handler::CloseConnection(why)) => {
                metrics.record_request(key, started.elapsed(), true);
                tracing::info!(?peer, ?key, "closing connection: {why}");
                break;
            }
        };
        let elapsed = started.elapsed();
        metrics.record_request(key, elapsed, crate::metrics::carries_error(&response));
        tracing::trace!(
            ?peer,
            ?key,
            version,
            correlation_id,
            elapsed_ms = elapsed.as_millis() as u64,
            "answered"
        );
        match encode_response(correlation_id, key, version, &response) {
            Ok(bytes) => writer.write_all(&bytes).await?,
            Err(e) => {
                tracing::error!(?peer, ?key, version, error = %e, "cannot encode response; closing connection");
                break;
            }
        }
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn frame_of<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_supported_requests() {
        let frame = frame_of(ApiKey::Metadata, 12, &MetadataRequest::default());
        match decode_request(frame).unwrap() {
            Decoded::Request(r) => {
                assert_eq!(r.api_key, ApiKey::Metadata);
                assert_eq!(r.header.correlation_id, 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn api_versions_at_unknown_version_answers_v0_with_error() {
        let frame = frame_of(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let mut raw = frame.to_vec();
        raw[2..4].copy_from_slice(&99i16.to_be_bytes());
        let Decoded::Immediate(bytes) = decode_request(Bytes::from(raw)).unwrap() else {
            panic!("expected an immediate answer");
        };
        let mut body = bytes.slice(4..);
        assert_eq!(body.get_i32(), 7);
        let response = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(response.error_code, 35);
        assert!(response
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert_eq!(
            decode_request(Bytes::from_static(&[0, 3])).unwrap_err(),
            FrameError::Truncated(2)
        );
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1])),
            Err(FrameError::UnknownApiKey(_))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0, 99, 0, 0, 0, 1])),
            Err(FrameError::UnsupportedVersion { .. })
        ));
        // A Metadata v12 request that claims a two-billion-element topic array.
        let mut raw = frame_of(ApiKey::Metadata, 1, &MetadataRequest::default()).to_vec();
        raw.truncate(raw.len() - 4);
        raw.extend_from_slice(&0x7fff_fff0i32.to_be_bytes());
        assert!(matches!(
            decode_request(Bytes::from(raw)),
            Err(FrameError::Malformed { .. })
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Any bytes after a supported key and version decode or fail; nothing panics.
        #[test]
        fn arbitrary_bodies_never_panic(
            api in 0usize..SUPPORTED_APIS.len(),
            version_pick in 0i16..20,
            correlation_id: i32,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let (key, min, max) = SUPPORTED_APIS[api];
            let version = min + version_pick % (max - min + 1);
            let mut raw = Vec::with_capacity(8 + body.len());
            raw.extend_from_slice(&(key as i16).to_be_bytes());
            raw.extend_from_slice(&version.to_be_bytes());
            raw.extend_from_slice(&correlation_id.to_be_bytes());
            // A valid rest of the header (null client id, no tagged fields), so the random
            // bytes reach the body decoder.
            let header_version = key.request_header_version(version);
            if header_version >= 1 {
                raw.extend_from_slice(&(-1i16).to_be_bytes());
            }
            if header_version >= 2 {
                raw.push(0);
            }
            raw.extend_from_slice(&body);
            let _ = decode_request(Bytes::from(raw));
        }
    }
}
