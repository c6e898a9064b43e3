//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, OffsetDelete, ListGroups, DescribeGroups, DeleteGroups. They
//! translate between the wire messages and [`crate::group::coordinator::GroupCoordinator`].
//!
//! ```text
//! FindCoordinator ──> leader of the group's __consumer_offsets partition (created on first use)
//!                     └─ this broker? wait (bounded) until its groups are loaded
//! group API ──> GroupCoordinator: NOT_COORDINATOR (16) / COORDINATOR_LOAD_IN_PROGRESS (14)
//!               when this broker does not (yet) coordinate the group; writes answered once
//!               replicated, or NOT_COORDINATOR / REQUEST_TIMED_OUT
//! ```

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::controller::{prepare, Command, TopicConfigs};
use crate::group::coordinator::{partition_for, CommittedOffset, LOAD_WAIT, OFFSETS_TOPIC};
use crate::group::membership::error_code::COORDINATOR_NOT_AVAILABLE;
use crate::group::membership::{self, GroupState, MemberIdentity, Protocol};
use crate::server::BrokerContext;

/// FindCoordinator key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// INVALID_REQUEST: the answer for transaction coordinators, since this broker has no
/// transactions. Clients treat it as fatal and show the message, instead of retrying
/// forever as they would on COORDINATOR_NOT_AVAILABLE.
const INVALID_REQUEST: i16 = 42;

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// Creates `__consumer_offsets` through the controller if it does not exist yet, with
/// `offsets.topic.replication.factor` replicas per partition (1 on a standalone broker).
/// Until enough brokers are live, clients are told COORDINATOR_NOT_AVAILABLE and retry.
async fn ensure_offsets_topic(ctx: &BrokerContext) -> Result<(), (i16, String)> {
    if ctx.replicas.topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let (_, image) = ctx.replicas.image();
    let replication_factor = if ctx.config.is_standalone() {
        1
    } else {
        ctx.config.offsets_topic_replication_factor
    };
    let live = image.live_brokers().count();
    if live < replication_factor as usize {
        return Err((
            COORDINATOR_NOT_AVAILABLE,
            format!(
                "{OFFSETS_TOPIC} needs offsets.topic.replication.factor={replication_factor} live brokers; {live} are live"
            ),
        ));
    }
    let prepared = prepare::create_topic(
        &image,
        OFFSETS_TOPIC,
        ctx.config.offsets_topic_num_partitions,
        replication_factor,
        None,
        TopicConfigs::new(),
        &super::topics::topic_defaults(ctx),
        uuid::Uuid::new_v4(),
    );
    let command = match prepared {
        // Clients may not set cleanup.policy=compact; the internal topic gets it here.
        Ok(Command::CreateTopic { mut topic }) => {
            topic.configs = ctx.groups.offsets_topic_configs();
            Command::CreateTopic { topic }
        }
        Ok(_) => unreachable!("prepare::create_topic prepares a CreateTopic"),
        Err(e) => return Err((COORDINATOR_NOT_AVAILABLE, e.message)),
    };
    let mut applied = ctx.replicas.subscribe_appends();
    match ctx.submit(command).await {
        Ok(_) => tracing::info!(replication_factor, "created {OFFSETS_TOPIC}"),
        // Created concurrently through another broker.
        Err(_) if ctx.replicas.topic(OFFSETS_TOPIC).is_some() => return Ok(()),
        Err(e) => return Err((COORDINATOR_NOT_AVAILABLE, e.message)),
    }
    // Committed is not yet applied here: the partitions open on the image follower's
    // task (50 logs by default), and until then this broker knows no leader to name.
    let deadline = tokio::time::Instant::now() + ctx.controller_timeout();
    while ctx.replicas.topic(OFFSETS_TOPIC).is_none() {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                return Err((
                    COORDINATOR_NOT_AVAILABLE,
                    format!("{OFFSETS_TOPIC} was created but is not open on this broker yet"),
                ));
            }
            changed = applied.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The broker leading the group's partition of `__consumer_offsets`: its coordinator.
fn coordinator_of(ctx: &BrokerContext, key: &str) -> Result<(i32, String, i32), (i16, String)> {
    let (_, image) = ctx.replicas.image();
    let topic = image.topics.get(OFFSETS_TOPIC).ok_or_else(|| {
        (
            COORDINATOR_NOT_AVAILABLE,
            format!("{OFFSETS_TOPIC} does not exist yet"),
        )
    })?;
    let index = partition_for(key, topic.partitions);
    let leader = topic
        .assignments
        .get(index as usize)
        .map(|a| a.leader)
        .unwrap_or(-1);
    match image.brokers.get(&leader).filter(|b| !b.fenced) {
        Some(b) => Ok((b.id, b.host.clone(), b.port)),
        None => Err((
            COORDINATOR_NOT_AVAILABLE,
            format!("{OFFSETS_TOPIC}-{index} has no leader right now"),
        )),
    }
}

/// JoinGroup and OffsetCommit create `__consumer_offsets` too when it does not exist yet,
/// for clients that skip FindCoordinator on a single broker; if that makes this broker the
/// group's coordinator, the coordinator waits for the load as usual. Errors surface as the
/// request's own NOT_COORDINATOR.
async fn first_write_of_a_group(ctx: &BrokerContext) {
    if ctx.replicas.topic(OFFSETS_TOPIC).is_none() {
        if let Err((_, message)) = ensure_offsets_topic(ctx).await {
            tracing::debug!(%message, "cannot create {OFFSETS_TOPIC} for a group request");
        }
    }
}

pub async fn find_coordinator(
    ctx: &std::sync::Arc<BrokerContext>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let ready = if request.key_type == KEY_TYPE_TRANSACTION {
        Ok(())
    } else {
        ensure_offsets_topic(ctx).await
    };
    let answer = |key: StrBytes, found: Result<(i32, String, i32), (i16, String)>| match found {
        Ok((id, host, port)) => Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(id))
            .with_host(str_bytes(host))
            .with_port(port),
        Err((code, message)) => Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(-1))
            .with_host(str_bytes(""))
            .with_port(-1)
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message))),
    };
    let keys = if version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let found = if request.key_type == KEY_TYPE_TRANSACTION {
            Err((
                INVALID_REQUEST,
                "transactions are not supported by this broker".to_string(),
            ))
        } else {
            ready
                .clone()
                .and_then(|()| coordinator_of(ctx, key.as_str()))
        };
        if let Ok((id, _, _)) = &found {
            if *id == ctx.config.broker_id {
                // Just took the partition over (or created the topic): let the load finish
                // (for at most LOAD_WAIT) so that the client's next request is served.
                ctx.groups.wait_coordinating(key.as_str(), LOAD_WAIT).await;
            }
        }
        coordinators.push(answer(key, found));
    }
    if version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let c = coordinators.remove(0);
        FindCoordinatorResponse::default()
            .with_error_code(c.error_code)
            .with_error_message(c.error_message)
            .with_node_id(c.node_id)
            .with_host(c.host)
            .with_port(c.port)
    }
}

pub async fn join_group(
    ctx: &BrokerContext,
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
) -> JoinGroupResponse {
    first_write_of_a_group(ctx).await;
    // JoinGroup v0 has no rebalance timeout: it is the session timeout.
    let rebalance_timeout_ms = if version == 0 {
        request.session_timeout_ms
    } else {
        request.rebalance_timeout_ms
    };
    let join = membership::JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: opt(&request.group_instance_id),
        client_id,
        client_host: String::new(),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.clone(),
            })
            .collect(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        require_known_member_id: version >= 4,
    };
    let r = ctx.groups.join(&request.group_id, join).await;
    JoinGroupResponse::default()
        .with_error_code(r.error_code)
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(Some(str_bytes(r.protocol_name.unwrap_or_default())))
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(str_bytes))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

pub async fn sync_group(ctx: &BrokerContext, request: SyncGroupRequest) -> SyncGroupResponse {
    let sync = membership::SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: opt(&request.group_instance_id),
        generation_id: request.generation_id,
        protocol_type: opt(&request.protocol_type),
        protocol_name: opt(&request.protocol_name),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let r = ctx.groups.sync(&request.group_id, sync).await;
    SyncGroupResponse::default()
        .with_error_code(r.error_code)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(r.protocol_name.map(str_bytes))
        .with_assignment(r.assignment)
}

pub fn heartbeat(ctx: &BrokerContext, request: HeartbeatRequest) -> HeartbeatResponse {
    let code = ctx.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code)
}

pub fn leave_group(
    ctx: &BrokerContext,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let leaving: Vec<MemberIdentity> = if version <= 2 {
        vec![MemberIdentity {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    } else {
        request
            .members
            .iter()
            .map(|m| MemberIdentity {
                member_id: m.member_id.to_string(),
                group_instance_id: opt(&m.group_instance_id),
            })
            .collect()
    };
    match ctx.groups.leave(&request.group_id, &leaving) {
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
        Ok(r) if version <= 2 => LeaveGroupResponse::default()
            .with_error_code(r.members.first().map_or(r.error_code, |m| m.error_code)),
        Ok(r) => LeaveGroupResponse::default()
            .with_error_code(r.error_code)
            .with_members(
                r.members
                    .into_iter()
                    .map(|m| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_group_instance_id(m.group_instance_id.map(str_bytes))
                            .with_error_code(m.error_code)
                    })
                    .collect(),
            ),
    }
}

pub async fn offset_commit(
    ctx: &std::sync::Arc<BrokerContext>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let mut offsets = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            offsets.push((
                topic.name.to_string(),
                p.partition_index,
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: opt(&p.committed_metadata),
                },
            ));
        }
    }
    first_write_of_a_group(ctx).await;
    let codes = ctx
        .groups
        .commit(
            request.group_id.to_string(),
            request.member_id.to_string(),
            opt(&request.group_instance_id),
            request.generation_id_or_member_epoch,
            offsets,
        )
        .await;
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch. An error (this broker does not coordinate the group) goes in the top-level
/// error code (v2+) and in every requested partition's (v1 has only those).
pub fn offset_fetch(ctx: &BrokerContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let wanted = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect()
    });
    let fetched = match ctx.groups.fetch_offsets(&request.group_id, wanted) {
        Ok(fetched) => fetched,
        Err(code) => {
            let topics = request
                .topics
                .iter()
                .flatten()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_metadata(Some(str_bytes("")))
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            return OffsetFetchResponse::default()
                .with_error_code(code)
                .with_topics(topics);
        }
    };
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for (topic, partition, committed) in fetched {
        let p = match committed {
            Some(c) => OffsetFetchResponsePartition::default()
                .with_partition_index(partition)
                .with_committed_offset(c.offset)
                .with_committed_leader_epoch(c.leader_epoch)
                .with_metadata(Some(str_bytes(c.metadata.unwrap_or_default()))),
            None => OffsetFetchResponsePartition::default()
                .with_partition_index(partition)
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_metadata(Some(str_bytes(""))),
        };
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetFetchResponse::default().with_topics(topics)
}

pub async fn offset_delete(
    ctx: &std::sync::Arc<BrokerContext>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let result = ctx
        .groups
        .delete_offsets(request.group_id.to_string(), partitions)
        .await;
    let codes = match result {
        Ok(codes) => codes,
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
    };
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

pub fn list_groups(ctx: &BrokerContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let listed = match ctx.groups.list() {
        Ok(listed) => listed,
        Err(code) => return ListGroupsResponse::default().with_error_code(code),
    };
    let groups = listed
        .into_iter()
        .filter(|(_, _, state)| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(state.name()))
        })
        .filter(|_| {
            request.types_filter.is_empty()
                || request
                    .types_filter
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case("classic"))
        })
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(str_bytes(state.name()))
                .with_group_type(str_bytes("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn describe_groups(
    ctx: &BrokerContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .iter()
        .map(|id| {
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            let group = match ctx.groups.describe(id) {
                Ok(Some(group)) => group,
                Ok(None) => return described.with_group_state(str_bytes(GroupState::Dead.name())),
                // Kafka's DescribeGroupsResponse.groupError: an empty state.
                Err(code) => {
                    return described
                        .with_error_code(code)
                        .with_group_state(str_bytes(""))
                }
            };
            let protocol = group.protocol_name().unwrap_or_default().to_string();
            let stable = group.state() == GroupState::Stable;
            let members = group
                .members()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(m.member_id.clone()))
                        .with_group_instance_id(m.group_instance_id.clone().map(str_bytes))
                        .with_client_id(str_bytes(m.client_id.clone()))
                        .with_client_host(str_bytes(m.client_host.clone()))
                        .with_member_metadata(m.metadata(&protocol))
                        .with_member_assignment(if stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        })
                })
                .collect();
            described
                .with_group_state(str_bytes(group.state().name()))
                .with_protocol_type(str_bytes(group.protocol_type().unwrap_or_default()))
                .with_protocol_data(str_bytes(if stable { protocol.as_str() } else { "" }))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn delete_groups(
    ctx: &std::sync::Arc<BrokerContext>,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in request.groups_names {
        let code = ctx.groups.delete_group(id.to_string()).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
