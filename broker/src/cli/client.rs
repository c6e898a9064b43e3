//! [`AdminClient`]: a blocking Kafka client for admin requests, built on `kafka-protocol`.
//!
//! One `std::net::TcpStream` to the bootstrap server, one request in flight at a time, every
//! read and write bounded by [`SOCKET_TIMEOUT`]. On connect the client sends ApiVersions and
//! keeps the broker's ranges; [`AdminClient::send`] then uses, per API, the highest version
//! both sides know: min(broker max, kafka-protocol max). Produce and Fetch are not admin
//! requests and are refused, so no record batches ever travel through here.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::{check, Error, Result};

/// Connect, read and write timeout of every socket operation.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response frame accepted; admin responses are small.
const MAX_FRAME_BYTES: i32 = 64 << 20;
/// ApiVersions v3 is the first flexible version (it carries the client software name), and
/// every broker since Kafka 2.4 answers it.
const API_VERSIONS_VERSION: i16 = 3;
const CLIENT_ID: &str = "tributary-cli";

/// A connection to one broker, with the API versions it advertised.
pub struct AdminClient {
    stream: TcpStream,
    addr: SocketAddr,
    correlation_id: i32,
    /// api key → the broker's (min, max) version, from ApiVersions.
    broker_versions: HashMap<i16, (i16, i16)>,
}

impl AdminClient {
    /// Connects to `bootstrap` (`HOST:PORT`), trying each resolved address in turn, and
    /// negotiates API versions.
    pub fn connect(bootstrap: &str) -> Result<AdminClient> {
        let addrs: Vec<SocketAddr> = bootstrap
            .to_socket_addrs()
            .map_err(|source| Error::Resolve {
                bootstrap: bootstrap.to_string(),
                source,
            })?
            .collect();
        let mut last_error = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolved to no address",
        );
        for addr in addrs {
            match connect_one(addr) {
                Ok(stream) => {
                    let mut client = AdminClient {
                        stream,
                        addr,
                        correlation_id: 0,
                        broker_versions: HashMap::new(),
                    };
                    client.api_versions()?;
                    return Ok(client);
                }
                Err(e) => last_error = e,
            }
        }
        Err(Error::Connect {
            bootstrap: bootstrap.to_string(),
            source: last_error,
        })
    }

    /// The address of the broker this client talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends ApiVersions and records the broker's version ranges.
    pub fn api_versions(&mut self) -> Result<()> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response: ApiVersionsResponse = self.send_at(request, API_VERSIONS_VERSION)?;
        check("ApiVersions", response.error_code, None)?;
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// The version to speak for `api`: min(broker max, our max), provided it is not below
    /// either side's minimum. Produce and Fetch are refused.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        let ours = api.valid_versions();
        let broker = self.broker_versions.get(&(api as i16)).copied();
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

    /// Sends `request` at the negotiated version; returns the response and that version.
    pub fn send<R: Request>(&mut self, request: R) -> Result<(R::Response, i16)> {
        let api = api_key::<R>();
        let version = self.version(api)?;
        Ok((self.send_at(request, version)?, version))
    }

    /// Sends `request` at `version` and reads its response, checking the correlation id.
    fn send_at<R: Request>(&mut self, request: R, version: i16) -> Result<R::Response> {
        let api = api_key::<R>();
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));

        // Reserve the length prefix, encode, then fill it in.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        let encode_error = |e: anyhow::Error| Error::Encode {
            api,
            version,
            message: e.to_string(),
        };
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(encode_error)?;
        request.encode(&mut buf, version).map_err(encode_error)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let addr = self.addr;
        let io_error = |source| Error::Io { api, addr, source };
        self.stream.write_all(&buf).map_err(io_error)?;

        let mut frame = self.read_frame().map_err(|e| match e {
            FrameError::Io(source) => io_error(source),
            FrameError::Length(len) => Error::FrameLength { addr, len },
        })?;
        let decode_error = |e: anyhow::Error| Error::Decode {
            api,
            version,
            message: e.to_string(),
        };
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(decode_error)?;
        if header.correlation_id != correlation_id {
            return Err(Error::CorrelationId {
                api,
                sent: correlation_id,
                received: header.correlation_id,
            });
        }
        let response = R::Response::decode(&mut frame, version).map_err(decode_error)?;
        if frame.has_remaining() {
            return Err(Error::Decode {
                api,
                version,
                message: format!("{} trailing bytes", frame.remaining()),
            });
        }
        Ok(response)
    }

    fn read_frame(&mut self) -> Result<Bytes, FrameError> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(FrameError::Io)?;
        let len = i32::from_be_bytes(len);
        if !(0..=MAX_FRAME_BYTES).contains(&len) {
            return Err(FrameError::Length(len));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).map_err(FrameError::Io)?;
        Ok(Bytes::from(body))
    }
}

enum FrameError {
    Io(std::io::Error),
    Length(i32),
}

fn connect_one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT)?;
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn api_key<R: Request>() -> ApiKey {
    // R::KEY comes from the same generated schema as ApiKey, so every Request type has one.
    ApiKey::try_from(R::KEY).expect("every kafka-protocol Request has an ApiKey")
}
