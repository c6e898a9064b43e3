//! Request handlers, one module per API family. Each takes the broker context and the
//! decoded request and returns the response body; Kafka error codes travel inside it.
//!
//! | module | APIs |
//! |---|---|
//! | `metadata` | ApiVersions, Metadata, DescribeCluster, UnregisterBroker |
//! | `produce` | Produce |
//! | `fetch` | Fetch |
//! | `list_offsets` | ListOffsets |
//! | `topics` | CreateTopics, DeleteTopics, CreatePartitions |
//! | `configs` | DescribeConfigs, AlterConfigs, IncrementalAlterConfigs |
//! | `delete_records` | DeleteRecords |
//! | `init_producer_id` | InitProducerId |
//! | `reassign` | AlterPartitionReassignments, ListPartitionReassignments, ElectLeaders |
//! | `group` | FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, ListGroups, DescribeGroups, DeleteGroups |

mod configs;
mod delete_records;
mod fetch;
mod group;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;
mod reassign;
mod topics;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::DecodedRequest;
use crate::server::BrokerContext;

/// A request this broker cannot serve and must not keep the client waiting on, nor answer
/// with an error that brings the client straight back here: the connection is closed, and
/// the client goes to another broker (see `init_producer_id`).
#[derive(Debug)]
pub struct CloseConnection(pub String);

/// Handles one request. `Ok(None)` means the request gets no response (Produce with acks=0).
pub async fn handle(
    ctx: &std::sync::Arc<BrokerContext>,
    request: DecodedRequest,
) -> Result<Option<ResponseKind>, CloseConnection> {
    let version = request.header.request_api_version;
    let response = match request.body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(metadata::api_versions(r)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::metadata(ctx, r, version).await?)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(metadata::describe_cluster(ctx, r))
        }
        RequestKind::UnregisterBroker(r) => {
            ResponseKind::UnregisterBroker(metadata::unregister_broker(ctx, r).await)
        }
        RequestKind::Produce(r) => match produce::produce(ctx, r, version).await {
            Some(response) => ResponseKind::Produce(response),
            None => return Ok(None),
        },
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::fetch(ctx, r, version).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::list_offsets(ctx, r, version).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(topics::create_topics(ctx, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(topics::delete_topics(ctx, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(topics::create_partitions(ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe_configs(ctx, r, version))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(configs::alter_configs(ctx, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter_configs(ctx, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::delete_records(ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::init_producer_id(ctx, r).await?)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            reassign::alter_partition_reassignments(ctx, r, version).await,
        ),
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassign::list_partition_reassignments(ctx, r))
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(reassign::elect_leaders(ctx, r, version).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(group::find_coordinator(ctx, r, version).await)
        }
        RequestKind::JoinGroup(r) => {
            let client_id = request
                .header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default();
            ResponseKind::JoinGroup(group::join_group(ctx, r, version, client_id).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(group::sync_group(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(group::heartbeat(ctx, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(group::leave_group(ctx, r, version)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(group::offset_commit(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(group::offset_fetch(ctx, r)),
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(group::offset_delete(ctx, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(group::list_groups(ctx, r)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(group::describe_groups(ctx, r))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(group::delete_groups(ctx, r).await)
        }
        // `decode_request` only lets through the keys in SUPPORTED_APIS, each handled above.
        other => unreachable!("request {other:?} passed the version check but has no handler"),
    };
    Ok(Some(response))
}

/// A `StrBytes` from an owned string.
fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Runs blocking log work (file I/O, fsync) on the blocking pool. A panic inside is a
/// broken invariant of the log and is propagated.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
