//! Consumer groups: list, describe, committed offsets, offset resets and deletion.
//!
//! | method | request | route |
//! |---|---|---|
//! | `list_groups` | Metadata, then ListGroups | every broker |
//! | `describe_group` | DescribeGroups (and OffsetFetch for a `Dead` group) | the group's coordinator |
//! | `group_offsets` | OffsetFetch | the group's coordinator |
//! | `alter_group_offsets` | OffsetCommit | the group's coordinator |
//! | `delete_group` | DeleteGroups | the group's coordinator |
//!
//! Each broker coordinates some of the groups (in Tributary, the leader of the group's
//! `__consumer_offsets` partition), so group requests go through FindCoordinator and
//! ListGroups must ask every broker.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequest, OffsetFetchRequestGroup};
use kafka_protocol::messages::GroupId;

use crate::admin::{is_route_error, Req};
use crate::assignment::decode_assignment;
use crate::error::{Error, Result};
use crate::protocol::{code, str_bytes, topic_name};
use crate::{Admin, GroupDescription, GroupListing, MemberDescription, TopicPartition};

/// The protocol type of consumer groups, whose assignments this client can decode.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

impl Admin {
    /// Every group of the cluster, sorted by id: ListGroups asked of each broker Metadata
    /// lists, since each lists only the groups it coordinates.
    ///
    /// A broker that cannot be reached fails the call, unless DescribeCluster says it is
    /// fenced: a fenced broker coordinates no group, and a list without the groups of a
    /// live broker would be wrong without saying so.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let brokers = self.refreshed_brokers().await?;
        let mut groups: BTreeMap<String, GroupListing> = BTreeMap::new();
        let mut unreachable: Vec<(i32, Error)> = Vec::new();
        for id in brokers.keys().copied() {
            let listed = self
                .retrying(|| async {
                    let request = ListGroupsRequest::default();
                    let (response, _) = self.call_broker(id, Req::Ready(&request)).await?;
                    crate::error::check("ListGroups", None, response.error_code, None)?;
                    Ok(response.groups)
                })
                .await;
            match listed {
                Ok(listed) => {
                    for g in listed {
                        let state = g.group_state.to_string();
                        groups.insert(
                            g.group_id.0.to_string(),
                            GroupListing {
                                group_id: g.group_id.0.to_string(),
                                protocol_type: g.protocol_type.to_string(),
                                // Before v4 the field is absent and decodes empty.
                                state: (!state.is_empty()).then_some(state),
                            },
                        );
                    }
                }
                Err(e) if e.is_connection_loss() => unreachable.push((id, e)),
                Err(e) => return Err(e),
            }
        }
        if !unreachable.is_empty() {
            let cluster = self.describe_cluster().await?;
            let fenced = |id: i32| cluster.brokers.iter().any(|b| b.id == id && b.fenced);
            if let Some((_, e)) = unreachable.into_iter().find(|(id, _)| !fenced(*id)) {
                return Err(e);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes `group_id`: state, protocol and members with their assignments.
    ///
    /// `None` when the group does not exist. Kafka reports an unknown group either with
    /// `GROUP_ID_NOT_FOUND` (DescribeGroups v6, KIP-1043) or, before, as a group in state
    /// `Dead` with no members. A `Dead` group can also be one whose last member left while
    /// its committed offsets remain; so a `Dead` group without members is `None` only when
    /// it has no committed offsets either (one OffsetFetch more), and is described as
    /// `Dead` otherwise.
    pub async fn describe_group(&self, group_id: &str) -> Result<Option<GroupDescription>> {
        let described = self.retrying(|| self.describe_group_once(group_id)).await?;
        match described {
            Some(group) if group.state == "Dead" && group.members.is_empty() => {
                let offsets = self.group_offsets(group_id).await?;
                Ok((!offsets.is_empty()).then_some(group))
            }
            other => Ok(other),
        }
    }

    async fn describe_group_once(&self, group_id: &str) -> Result<Option<GroupDescription>> {
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(str_bytes(group_id))])
            .with_include_authorized_operations(false);
        let (response, _) = self
            .call_coordinator(group_id, Req::Ready(&request))
            .await?;
        let g = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group_id)
            .ok_or_else(|| Error::MissingResult {
                operation: "DescribeGroups",
                resource: group_id.to_string(),
            })?;
        match g.error_code {
            0 => {}
            code::GROUP_ID_NOT_FOUND => return Ok(None),
            error_code => {
                return Err(self.group_error(
                    "DescribeGroups",
                    group_id,
                    group_id.to_string(),
                    error_code,
                    g.error_message.as_deref(),
                ))
            }
        }
        let protocol_type = g.protocol_type.to_string();
        let members = g
            .members
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: if protocol_type == CONSUMER_PROTOCOL_TYPE {
                    decode_assignment(&m.member_assignment).unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        Ok(Some(GroupDescription {
            group_id: group_id.to_string(),
            state: g.group_state.to_string(),
            protocol_type,
            protocol: g.protocol_data.to_string(),
            members,
        }))
    }

    /// The committed offsets of `group_id` (OffsetFetch of every partition), without the
    /// partitions that have none (-1). Empty for a group that does not exist.
    pub async fn group_offsets(&self, group_id: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        self.retrying(|| self.group_offsets_once(group_id)).await
    }

    async fn group_offsets_once(&self, group_id: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        // v8 batches groups in `groups`; earlier versions name one group. `topics: None` is
        // every partition the group has an offset for.
        let build = |version: i16| {
            Ok(if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(str_bytes(group_id)))
                    .with_topics(None)])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(str_bytes(group_id)))
                    .with_topics(None)
            })
        };
        let (response, version) = self
            .call_coordinator(group_id, Req::Versioned(&build))
            .await?;
        // (topic, partition, offset, error code) of every partition in the response.
        let (group_error, partitions): (i16, Vec<(String, i32, i64, i16)>) = if version >= 8 {
            let group = response
                .groups
                .into_iter()
                .find(|g| g.group_id.0.as_str() == group_id)
                .ok_or_else(|| Error::MissingResult {
                    operation: "OffsetFetch",
                    resource: group_id.to_string(),
                })?;
            let partitions = group
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        let topic = t.name.0.to_string();
                        (topic, p.partition_index, p.committed_offset, p.error_code)
                    })
                })
                .collect();
            (group.error_code, partitions)
        } else {
            let partitions = response
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        let topic = t.name.0.to_string();
                        (topic, p.partition_index, p.committed_offset, p.error_code)
                    })
                })
                .collect();
            (response.error_code, partitions)
        };
        if group_error != 0 {
            return Err(self.group_error(
                "OffsetFetch",
                group_id,
                group_id.to_string(),
                group_error,
                None,
            ));
        }
        let mut offsets = BTreeMap::new();
        for (topic, partition, offset, error_code) in partitions {
            let tp = TopicPartition::new(topic, partition);
            if error_code != 0 {
                return Err(self.group_error(
                    "OffsetFetch",
                    group_id,
                    tp.to_string(),
                    error_code,
                    None,
                ));
            }
            if offset >= 0 {
                offsets.insert(tp, offset);
            }
        }
        Ok(offsets)
    }

    /// Commits `offsets` for `group_id` as an administrator: generation -1 and an empty
    /// member id. The coordinator accepts that only while the group has no members; with
    /// members it answers `UnknownMemberId` or `RebalanceInProgress`, returned as
    /// [`Error::Kafka`] naming the group and partition. Commits an empty map as nothing.
    pub async fn alter_group_offsets(
        &self,
        group_id: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, offset) in offsets {
            topics.entry(&tp.topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(str_bytes(""))),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group_id)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(str_bytes(""))
            .with_group_instance_id(None)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        self.retrying(|| async {
            let (response, _) = self
                .call_coordinator(group_id, Req::Ready(&request))
                .await?;
            for t in &response.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        let resource = format!("{group_id} {}-{}", t.name.0, p.partition_index);
                        return Err(self.group_error(
                            "OffsetCommit",
                            group_id,
                            resource,
                            p.error_code,
                            None,
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Deletes `group_id` and its committed offsets. Fails with `NonEmptyGroup` while it
    /// has members and `GroupIdNotFound` when it does not exist.
    pub async fn delete_group(&self, group_id: &str) -> Result<()> {
        self.retrying(|| async {
            let request = DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(str_bytes(group_id))]);
            let (response, _) = self
                .call_coordinator(group_id, Req::Ready(&request))
                .await?;
            let result = response
                .results
                .iter()
                .find(|r| r.group_id.0.as_str() == group_id)
                .ok_or_else(|| Error::MissingResult {
                    operation: "DeleteGroups",
                    resource: group_id.to_string(),
                })?;
            if result.error_code != 0 {
                return Err(self.group_error(
                    "DeleteGroups",
                    group_id,
                    group_id.to_string(),
                    result.error_code,
                    None,
                ));
            }
            Ok(())
        })
        .await
    }

    /// An [`Error::Kafka`] from a group request. A coordinator error also forgets the
    /// cached coordinator, so that the retry asks FindCoordinator again.
    fn group_error(
        &self,
        operation: &'static str,
        group_id: &str,
        resource: String,
        error_code: i16,
        message: Option<&str>,
    ) -> Error {
        let error = Error::kafka(operation, Some(resource), error_code, message);
        if is_route_error(&error) {
            self.forget_coordinator(group_id);
        }
        error
    }
}
