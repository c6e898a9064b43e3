//! Raft RPCs between voters over tonic: openraft's [`RaftNetworkFactory`] and
//! [`RaftNetwork`], each request and response carried as JSON in a `RaftMessage`.
//!
//! ```text
//! openraft (leader or candidate)
//!   └─ NetworkClient(target) ── lazily connected tonic Channel ── http://{voter addr}
//!        AppendEntries / Vote / InstallSnapshot(chunk)        ──>  service::RaftService
//!        <── JSON of Result<response, RaftError>                    └─ openraft on the target
//! ```
//!
//! A voter that cannot be reached — not started yet, restarting, or (on Kubernetes) a pod
//! whose DNS name does not resolve until it runs — is [`Unreachable`]: openraft backs off
//! and tries again. Nothing here panics or reports a fatal error for a network fault.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tributary_proto::raft_client::RaftClient;
use tributary_proto::RaftMessage;

use super::{TypeConfig, MAX_RPC_MESSAGE_BYTES};

/// How long a connection attempt to a voter may take before the RPC counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between replication attempts to an unreachable voter: short, so that a restarted
/// voter catches up quickly, yet not a busy loop.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// Makes one [`NetworkClient`] per target voter.
#[derive(Debug, Clone, Default)]
pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetworkClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> NetworkClient {
        NetworkClient {
            target,
            addr: node.addr.clone(),
            client: None,
        }
    }
}

/// Raft RPCs to one voter. The channel is made on first use and dropped after a transport
/// failure, so that the next call resolves the name and connects afresh.
pub struct NetworkClient {
    target: u64,
    /// `host:port` of the target's gRPC listener.
    addr: String,
    client: Option<RaftClient<Channel>>,
}

/// Why an RPC did not produce a response, before it is typed for a particular RPC.
enum Failure {
    Unreachable(Unreachable),
    Timeout(Duration),
    Network(NetworkError),
}

/// A transport-level failure with the context an operator needs.
#[derive(Debug, thiserror::Error)]
#[error("Raft {rpc} to voter {target} at {addr}: {reason}")]
struct TransportError {
    rpc: RPCTypes,
    target: u64,
    addr: String,
    reason: String,
}

impl NetworkClient {
    fn client(&mut self) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        // `connect_lazy` neither resolves nor connects here: both happen on the first call,
        // whose failure is then an ordinary, retryable RPC error.
        let channel = Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        let client = RaftClient::new(channel)
            .max_decoding_message_size(MAX_RPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RPC_MESSAGE_BYTES);
        self.client = Some(client.clone());
        Ok(client)
    }

    fn transport_error(&self, rpc: RPCTypes, reason: impl ToString) -> TransportError {
        TransportError {
            rpc,
            target: self.target,
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }

    /// Sends one RPC and decodes the target's `Result<Resp, RaftError<E>>`.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: RPCTypes,
        request: &Req,
        ttl: Duration,
    ) -> Result<Result<Resp, RaftError<u64, E>>, Failure>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned + std::error::Error,
    {
        let payload = serde_json::to_vec(request)
            .map_err(|e| Failure::Network(NetworkError::new(&self.transport_error(rpc, e))))?;
        let mut client = self.client().map_err(|e| {
            // A listener address that is not a valid URI never becomes valid, but it is a
            // configuration fault of that voter, not of this one: keep retrying and say so.
            tracing::warn!(target = self.target, addr = %self.addr, "bad voter address: {e}");
            Failure::Unreachable(Unreachable::new(&self.transport_error(rpc, e)))
        })?;
        let message = tonic::Request::new(RaftMessage { payload });
        let send = async {
            match rpc {
                RPCTypes::AppendEntries => client.append_entries(message).await,
                RPCTypes::Vote => client.vote(message).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(message).await,
            }
        };
        let response = match tokio::time::timeout(ttl, send).await {
            Err(_elapsed) => return Err(Failure::Timeout(ttl)),
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                let unreachable = matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                );
                let error = self.transport_error(rpc, &status);
                if unreachable {
                    self.client = None;
                    return Err(Failure::Unreachable(Unreachable::new(&error)));
                }
                return Err(Failure::Network(NetworkError::new(&error)));
            }
        };
        serde_json::from_slice(&response.payload).map_err(|e| {
            Failure::Network(NetworkError::new(
                &self.transport_error(rpc, format!("response does not decode: {e}")),
            ))
        })
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        rpc: RPCTypes,
        failure: Failure,
    ) -> RPCError<u64, BasicNode, E> {
        match failure {
            Failure::Unreachable(e) => RPCError::Unreachable(e),
            Failure::Network(e) => RPCError::Network(e),
            Failure::Timeout(timeout) => RPCError::Timeout(Timeout {
                action: rpc,
                // openraft's `Timeout` names the sender too; the sender is whoever holds
                // this client, which openraft already knows, so the target stands in.
                id: self.target,
                target: self.target,
                timeout,
            }),
        }
    }

    async fn rpc<Req, Resp, E>(
        &mut self,
        rpc: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned + std::error::Error,
    {
        match self
            .call::<Req, Resp, E>(rpc, request, option.hard_ttl())
            .await
        {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(failure) => Err(self.rpc_error(rpc, failure)),
        }
    }
}

impl RaftNetwork<TypeConfig> for NetworkClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(RPCTypes::Vote, &rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, Vote};

    use super::*;

    fn vote_request() -> VoteRequest<u64> {
        VoteRequest::new(
            Vote::new(1, 1),
            Some(LogId::new(CommittedLeaderId::new(1, 1), 3)),
        )
    }

    #[tokio::test]
    async fn unresolvable_and_refused_voters_are_retryable_not_fatal() {
        // A port nobody listens on, an address that is not a URI, and a name that does not
        // resolve (the reserved `.invalid` TLD), as for a pod not yet in DNS.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap().to_string();
        drop(listener);
        for addr in [
            closed.as_str(),
            "bad addr:x",
            "tributary-2.tributary.invalid:9093",
        ] {
            let mut client = NetworkFactory.new_client(2, &BasicNode::new(addr)).await;
            for _ in 0..2 {
                let err = client
                    .vote(vote_request(), RPCOption::new(Duration::from_secs(3)))
                    .await
                    .unwrap_err();
                // A slow resolver may turn the DNS failure into a timeout; both are
                // retried by openraft.
                let retryable = matches!(err, RPCError::Unreachable(_))
                    || (addr.ends_with(".invalid:9093") && matches!(err, RPCError::Timeout(_)));
                assert!(retryable, "{addr}: expected a retryable error, got {err:?}");
            }
        }
    }
}
