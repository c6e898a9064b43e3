//! The gRPC faces of a [`ControllerNode`]: the `Raft` service between voters and the
//! `Controller` service every broker calls (see `proto/tributary.proto`). Both are thin:
//! they decode, call the node or openraft, and encode; the broker mounts them on its gRPC
//! listener (`controller.listener`) next to the `Replica` service.
//!
//! ```text
//! voter ──AppendEntries/Vote/InstallSnapshot(JSON)──> RaftService ──> openraft::Raft
//! broker ──Submit / BrokerHeartbeat──> ControllerService ──> ControllerNode::handle_*
//! non-voter ──WatchMetadata──> ControllerService ──> stream of (log index, image JSON)
//! ```

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tributary_proto::controller_server::Controller;
use tributary_proto::raft_server::Raft;
use tributary_proto::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, MetadataImageMessage, RaftMessage,
    SubmitRequest, SubmitResponse, WatchMetadataRequest,
};

use super::node::ControllerNode;
use super::raft::{MetadataRaft, TypeConfig};

/// The `Raft` service: openraft's RPCs, JSON in and out.
#[derive(Debug, Clone)]
pub struct RaftService {
    node: Arc<ControllerNode>,
}

impl RaftService {
    pub(crate) fn new(node: Arc<ControllerNode>) -> RaftService {
        RaftService { node }
    }

    fn raft(&self) -> Result<&MetadataRaft, Status> {
        self.node.raft().ok_or_else(|| {
            Status::failed_precondition(format!(
                "broker {} is not a controller voter",
                self.node.node_id()
            ))
        })
    }
}

fn decode<T: DeserializeOwned>(rpc: &str, message: &RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&message.payload)
        .map_err(|e| Status::invalid_argument(format!("{rpc} payload does not decode: {e}")))
}

fn encode<T: Serialize>(rpc: &str, value: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = serde_json::to_vec(value)
        .map_err(|e| Status::internal(format!("{rpc} response does not encode: {e}")))?;
    Ok(Response::new(RaftMessage { payload }))
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let raft = self.raft()?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode("AppendEntries", request.get_ref())?;
        encode("AppendEntries", &raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let raft = self.raft()?;
        let rpc: VoteRequest<u64> = decode("Vote", request.get_ref())?;
        encode("Vote", &raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let raft = self.raft()?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode("InstallSnapshot", request.get_ref())?;
        encode("InstallSnapshot", &raft.install_snapshot(rpc).await)
    }
}

/// The `Controller` service.
#[derive(Debug, Clone)]
pub struct ControllerService {
    node: Arc<ControllerNode>,
}

impl ControllerService {
    pub(crate) fn new(node: Arc<ControllerNode>) -> ControllerService {
        ControllerService { node }
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        Ok(Response::new(
            self.node.handle_submit(request.into_inner()).await,
        ))
    }

    async fn broker_heartbeat(
        &self,
        request: Request<BrokerHeartbeatRequest>,
    ) -> Result<Response<BrokerHeartbeatResponse>, Status> {
        Ok(Response::new(
            self.node.handle_heartbeat(request.into_inner()).await,
        ))
    }

    type WatchMetadataStream = ReceiverStream<Result<MetadataImageMessage, Status>>;

    async fn watch_metadata(
        &self,
        request: Request<WatchMetadataRequest>,
    ) -> Result<Response<Self::WatchMetadataStream>, Status> {
        let after_index = request.into_inner().after_index;
        Ok(Response::new(ReceiverStream::new(
            self.node.watch_stream(after_index),
        )))
    }
}
