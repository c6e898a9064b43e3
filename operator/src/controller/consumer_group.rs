//! The `ConsumerGroup` controller: reports the group's state, members, committed offsets
//! and lag every refresh interval, and applies `spec.reset` once the group has no members.
//!
//! ```text
//! ConsumerGroup --> Cluster --> Admin
//!   DescribeGroups + OffsetFetch (at the group's coordinator)
//!   spec.reset + status.appliedReset + members  --> plan::consumer_group::decide
//!     Apply: ListOffsets (earliest / latest / by time) --> target offsets --> OffsetCommit
//!   ListOffsets latest --> lag --> status
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::{predicates, reflector, watcher, Controller, WatchStreamExt};
use kube::ResourceExt;
use tributary_admin::{parse_rfc3339_ms, Admin, GroupDescription, OffsetSpec, TopicPartition};

use super::{namespace, now_rfc3339, referenced_cluster, write_status, Context, Error};
use crate::crd::condition::merge_conditions;
use crate::crd::consumer_group::{
    ConsumerGroup, ConsumerGroupStatus, MemberStatus, OffsetReset, ResetTarget,
};
use crate::crd::Condition;
use crate::plan::consumer_group::{
    decide, fingerprint, lag, reset_partitions, target_offsets, ResetDecision, TopicPartition as Tp,
};
use crate::telemetry::Kind;

/// Runs the ConsumerGroup controller on `api` until shutdown.
pub async fn run(
    api: Api<ConsumerGroup>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (reader, writer) = reflector::store();
    let groups = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    Controller::for_stream(groups, reader)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "consumer group reconciliation did not run");
            }
        })
        .await;
}

fn error_policy(group: Arc<ConsumerGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(group = %group.name_any(), error = %error, "consumer group reconciliation failed");
    ctx.metrics
        .failed(Kind::ConsumerGroup, error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(group: Arc<ConsumerGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = namespace(&*group, "ConsumerGroup")?;
    let api: Api<ConsumerGroup> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = group.status.clone().unwrap_or_default();
    let refresh = group
        .spec
        .refresh_interval_seconds
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(ctx.intervals.group_refresh);
    let mut status = ConsumerGroupStatus {
        observed_generation: group.metadata.generation,
        group_id: Some(group.group_id()),
        ..previous.clone()
    };
    let conditions = match observe_and_reset(&group, &ctx, &ns, &mut status).await {
        Ok(conditions) => conditions,
        Err((reason, message)) => vec![Condition::new("Ready", false, reason, message)],
    };
    status.conditions = merge_conditions(
        &previous.conditions,
        conditions,
        group.metadata.generation,
        &now_rfc3339(),
    );
    if status != previous {
        write_status(&api, &group.name_any(), &status).await?;
    }
    ctx.metrics
        .reconciled(Kind::ConsumerGroup, started.elapsed());
    Ok(Action::requeue(refresh))
}

/// Fills `status` from the brokers and applies a due reset; returns the conditions, or the
/// reason the brokers could not be asked.
async fn observe_and_reset(
    group: &ConsumerGroup,
    ctx: &Context,
    ns: &str,
    status: &mut ConsumerGroupStatus,
) -> Result<Vec<Condition>, (&'static str, String)> {
    let cluster_name = &group.spec.cluster_ref.name;
    let cluster = referenced_cluster(&ctx.client, ns, cluster_name)
        .await
        .map_err(|e| ("KubernetesError", e.to_string()))?
        .ok_or_else(|| {
            (
                "ClusterNotFound",
                format!("Cluster {cluster_name} does not exist in namespace {ns}"),
            )
        })?;
    let bootstrap = cluster.bootstrap_servers();
    let unreachable =
        |e: tributary_admin::Error| ("ClusterUnreachable", format!("{bootstrap}: {e}"));
    let admin = ctx.admin(&bootstrap).await.map_err(unreachable)?;
    let group_id = group.group_id();

    let observed = read_group(&admin, &group_id).await;
    if observed.is_err() {
        ctx.forget_admin(&bootstrap).await;
    }
    let (mut description, mut committed) = observed.map_err(unreachable)?;
    let mut conditions = Vec::new();
    let reset = group.spec.reset.as_ref();
    let members = description.as_ref().map_or(0, |d| d.members.len());
    let state = description
        .as_ref()
        .map_or_else(|| "Dead".to_string(), |d| d.state.clone());
    match (
        decide(reset, status.applied_reset.as_deref(), &state, members),
        reset,
    ) {
        (ResetDecision::Nothing, None) => {}
        (ResetDecision::Nothing, Some(_)) => {
            conditions.push(Condition::new(
                "ResetPending",
                false,
                "ResetApplied",
                format!(
                    "the reset was applied at {}",
                    status
                        .applied_reset_time
                        .as_deref()
                        .unwrap_or("an earlier pass")
                ),
            ));
        }
        (ResetDecision::WaitForEmptyGroup { state, members }, _) => {
            conditions.push(Condition::new(
                "ResetPending",
                true,
                "GroupHasMembers",
                format!(
                    "the group has {members} members (state {state}); Kafka moves the offsets of an empty group only: stop its consumers and the reset applies"
                ),
            ));
        }
        // decide() answers Apply only when there is a reset.
        (ResetDecision::Apply, None) => {}
        (ResetDecision::Apply, Some(reset)) => {
            match apply_reset(&admin, &group_id, reset, &committed).await {
                Ok(moved) => {
                    let now = now_rfc3339();
                    status.applied_reset = Some(fingerprint(reset));
                    status.applied_reset_time = Some(now.clone());
                    let summary = summarize(&moved);
                    ctx.event(group, EventType::Normal, "OffsetsReset", summary.clone())
                        .await;
                    conditions.push(Condition::new(
                        "ResetPending",
                        false,
                        "ResetApplied",
                        format!("the reset was applied at {now}: {summary}"),
                    ));
                    let (d, c) = read_group(&admin, &group_id).await.map_err(unreachable)?;
                    description = d;
                    committed = c;
                }
                Err(e) => {
                    let message = format!("the reset could not be applied: {e}");
                    ctx.event(group, EventType::Warning, "ResetFailed", message.clone())
                        .await;
                    conditions.push(Condition::new("ResetPending", true, "ResetFailed", message));
                }
            }
        }
    }

    let partitions: Vec<TopicPartition> = committed.keys().cloned().collect();
    let log_end = admin
        .list_offsets(&partitions, OffsetSpec::Latest)
        .await
        .unwrap_or_default();
    let (rows, total) = lag(&to_tuples(&committed), &to_tuples(&log_end));
    status.state = Some(
        description
            .as_ref()
            .map_or_else(|| "Dead".to_string(), |d| d.state.clone()),
    );
    status.members = description
        .as_ref()
        .map(|d| {
            d.members
                .iter()
                .map(|m| MemberStatus {
                    member_id: m.member_id.clone(),
                    client_id: m.client_id.clone(),
                    host: m.client_host.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    assignment: m
                        .assignment
                        .iter()
                        .map(|tp| format!("{}-{}", tp.topic, tp.partition))
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    status.member_count = Some(status.members.len() as i32);
    status.offsets = rows;
    status.total_lag = Some(total);
    status.last_refresh_time = Some(now_rfc3339());
    conditions.insert(
        0,
        Condition::new(
            "Ready",
            true,
            "GroupObserved",
            format!(
                "state {}, {} members, total lag {total}",
                status.state.as_deref().unwrap_or("Dead"),
                status.members.len()
            ),
        ),
    );
    Ok(conditions)
}

/// The group's description (None: no such group) and committed offsets.
async fn read_group(
    admin: &Admin,
    group_id: &str,
) -> Result<(Option<GroupDescription>, BTreeMap<TopicPartition, i64>), tributary_admin::Error> {
    let description = admin.describe_group(group_id).await?;
    let committed = admin.group_offsets(group_id).await?;
    Ok((description, committed))
}

/// Moves the committed offsets as `reset` says; returns the new offsets.
async fn apply_reset(
    admin: &Admin,
    group_id: &str,
    reset: &OffsetReset,
    committed: &BTreeMap<TopicPartition, i64>,
) -> Result<BTreeMap<TopicPartition, i64>, String> {
    let counts: BTreeMap<String, i32> = if reset.topics.is_empty() {
        BTreeMap::new()
    } else {
        admin
            .describe_topics(Some(&reset.topics))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect()
    };
    if let Some(missing) = reset.topics.iter().find(|t| !counts.contains_key(*t)) {
        return Err(format!("topic {missing} does not exist"));
    }
    let partitions = reset_partitions(reset, &to_tuples(committed), &counts);
    if partitions.is_empty() {
        return Err(
            "no partition to reset: the group has no committed offsets and reset.topics is empty"
                .into(),
        );
    }
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|(t, p)| TopicPartition::new(t.clone(), *p))
        .collect();
    let tps = &tps;
    let offsets = |spec| async move {
        admin
            .list_offsets(tps, spec)
            .await
            .map(|m| to_tuples(&m))
            .map_err(|e| e.to_string())
    };
    let earliest = offsets(OffsetSpec::Earliest).await?;
    let latest = offsets(OffsetSpec::Latest).await?;
    let by_timestamp = match (reset.to, &reset.timestamp) {
        (ResetTarget::Timestamp, Some(ts)) => {
            offsets(OffsetSpec::Timestamp(parse_rfc3339_ms(ts)?)).await?
        }
        _ => BTreeMap::new(),
    };
    let targets = target_offsets(reset, &partitions, &earliest, &latest, &by_timestamp);
    let targets: BTreeMap<TopicPartition, i64> = targets
        .into_iter()
        .map(|((t, p), o)| (TopicPartition::new(t, p), o))
        .collect();
    admin
        .alter_group_offsets(group_id, &targets)
        .await
        .map_err(|e| e.to_string())?;
    Ok(targets)
}

fn to_tuples(m: &BTreeMap<TopicPartition, i64>) -> BTreeMap<Tp, i64> {
    m.iter()
        .map(|(tp, o)| ((tp.topic.clone(), tp.partition), *o))
        .collect()
}

fn summarize(moved: &BTreeMap<TopicPartition, i64>) -> String {
    let shown: Vec<String> = moved
        .iter()
        .take(10)
        .map(|(tp, o)| format!("{}-{}={o}", tp.topic, tp.partition))
        .collect();
    let more = moved.len().saturating_sub(shown.len());
    format!(
        "moved {} partitions: {}{}",
        moved.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}
