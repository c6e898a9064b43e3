//! The `Topic` controller: creates the Kafka topic, keeps its partitions, replication factor
//! and configs at the spec, and deletes it (or not, by `deletionPolicy`) through a finalizer.
//!
//! ```text
//! Topic --> Cluster (spec.clusterRef) --> bootstrap servers --> Admin
//!   claim check: the oldest Topic naming a Kafka topic of a cluster owns it
//!   observe: Metadata, DescribeConfigs (topic overrides); DescribeCluster and
//!            ListPartitionReassignments only when placement matters
//!   plan (crate::plan::topic) --> CreateTopics | CreatePartitions | IncrementalAlterConfigs
//!                                 | AlterPartitionReassignments
//!   observe again --> status (conditions, topicId, partitions, ISR) + events
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, Controller, Predicate, WatchStreamExt};
use kube::ResourceExt;
use tributary_admin::{Admin, AlterConfigOp, ConfigSource, NewTopic, TopicPartition};

use super::{namespace, now_rfc3339, referenced_cluster, write_status, Context, Error};
use crate::crd::condition::{find, merge_conditions};
use crate::crd::topic::{DeletionPolicy, PartitionStatus, Topic, TopicStatus};
use crate::crd::{Cluster, Condition};
use crate::plan::topic::{plan, ObservedPartition, ObservedTopic, TopicAction, TopicPlan};
use crate::telemetry::Kind;

/// The finalizer that holds a `Topic` until its Kafka topic is deleted (or retained).
pub const FINALIZER: &str = "tributary.dev/topic";

/// Runs the Topic controller on `api` (one namespace or all) until shutdown.
pub async fn run(
    api: Api<Topic>,
    clusters: Api<Cluster>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (reader, writer) = reflector::store();
    let topics = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    let store = reader.clone();
    let ctx = Arc::new(TopicContext {
        ctx,
        topics: reader.clone(),
        claims: std::sync::Mutex::new(HashMap::new()),
    });
    Controller::for_stream(topics, reader)
        // A Cluster that appears or changes wakes the Topics that refer to it.
        .watches(
            clusters,
            watcher::Config::default(),
            move |cluster: Cluster| {
                let ns = cluster.namespace();
                let name = cluster.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|t| t.namespace() == ns && t.spec.cluster_ref.name == name)
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "topic reconciliation did not run");
            }
        })
        .await;
}

/// The shared context plus what claim checks need.
pub struct TopicContext {
    pub ctx: Arc<Context>,
    /// Every Topic the controller sees, status included.
    pub topics: Store<Topic>,
    /// (namespace, cluster, Kafka topic) -> uid of the Topic that claimed it first in this
    /// process.
    pub claims: std::sync::Mutex<HashMap<(String, String, String), String>>,
}

async fn reconcile(topic: Arc<Topic>, tctx: Arc<TopicContext>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = namespace(&*topic, "Topic")?;
    let api: Api<Topic> = Api::namespaced(tctx.ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, topic, |event| async {
        match event {
            FinalizerEvent::Apply(topic) => apply(&topic, &tctx, &api).await,
            FinalizerEvent::Cleanup(topic) => cleanup(&topic, &tctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    tctx.ctx.metrics.reconciled(Kind::Topic, started.elapsed());
    result
}

fn error_policy(topic: Arc<Topic>, error: &Error, tctx: Arc<TopicContext>) -> Action {
    tracing::warn!(topic = %topic.name_any(), error = %error, "topic reconciliation failed");
    tctx.ctx.metrics.failed(Kind::Topic, error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

/// The result of one pass, before it becomes a status.
struct Outcome {
    conditions: Vec<Condition>,
    observed: Option<ObservedTopic>,
    requeue: Duration,
}

async fn apply(topic: &Topic, tctx: &TopicContext, api: &Api<Topic>) -> Result<Action, Error> {
    let ctx = &tctx.ctx;
    let outcome = match converge(topic, tctx).await {
        Ok(outcome) => outcome,
        Err(unready) => Outcome {
            conditions: stopped(unready.reason, unready.message),
            observed: None,
            requeue: ctx.intervals.topic_resync.min(Duration::from_secs(10)),
        },
    };
    let previous = topic.status.clone().unwrap_or_default();
    let mut status = TopicStatus {
        observed_generation: topic.metadata.generation,
        conditions: merge_conditions(
            &previous.conditions,
            outcome.conditions,
            topic.metadata.generation,
            &now_rfc3339(),
        ),
        topic_name: Some(topic.kafka_name()),
        ..previous.clone()
    };
    if let Some(observed) = &outcome.observed {
        fill_observed(&mut status, observed);
    }
    if status != previous {
        if let Some(ready) = find(&status.conditions, "Ready") {
            tracing::info!(
                namespace = %topic.namespace().unwrap_or_default(),
                topic = %topic.name_any(),
                ready = %ready.status,
                reason = %ready.reason,
                message = %ready.message,
                "topic status"
            );
        }
        write_status(api, &topic.name_any(), &status).await?;
    }
    Ok(Action::requeue(outcome.requeue))
}

/// A reason not to go on, which becomes the `Ready=False` condition.
struct Unready {
    reason: &'static str,
    message: String,
}

impl Unready {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Unready {
            reason,
            message: message.into(),
        }
    }
}

/// One pass: find the cluster, check the claim, observe, act, observe again.
async fn converge(topic: &Topic, tctx: &TopicContext) -> Result<Outcome, Unready> {
    let ctx = &tctx.ctx;
    let ns = topic.namespace().unwrap_or_default();
    let name = topic.kafka_name();
    let cluster_name = &topic.spec.cluster_ref.name;
    let cluster = referenced_cluster(&ctx.client, &ns, cluster_name)
        .await
        .map_err(|e| Unready::new("KubernetesError", e.to_string()))?
        .ok_or_else(|| {
            Unready::new(
                "ClusterNotFound",
                format!("Cluster {cluster_name} does not exist in namespace {ns}"),
            )
        })?;
    if let Some(owner) = claimed_by_other(topic, tctx) {
        return Err(Unready::new(
            "TopicClaimed",
            format!(
                "Kafka topic {name} of Cluster {cluster_name} is already managed by Topic {owner}; this resource changes nothing"
            ),
        ));
    }
    let bootstrap = &cluster.bootstrap_servers();
    let admin = ctx.admin(bootstrap).await.map_err(|e| {
        Unready::new(
            "ClusterUnreachable",
            format!("cannot reach {bootstrap}: {e}"),
        )
    })?;
    let unreachable = |e: tributary_admin::Error| {
        if e.kafka_code().is_some() {
            Unready::new("KafkaError", e.to_string())
        } else {
            Unready::new("ClusterUnreachable", format!("{bootstrap}: {e}"))
        }
    };

    let mut brokers = Vec::new();
    let mut observed = observe(&admin, &name).await.map_err(unreachable)?;
    place(&admin, &topic.spec, &name, &mut observed, &mut brokers)
        .await
        .map_err(unreachable)?;
    let mut current = plan(&topic.spec, observed.as_ref(), &brokers);
    let mut acted = Vec::new();
    // Two rounds at most: act, then look again, so a change that completes at once is
    // reported Ready in the same pass.
    for _ in 0..2 {
        if current.actions.is_empty() {
            break;
        }
        for action in &current.actions {
            if let Err(e) = carry_out(&admin, &name, action).await {
                let message = match e.kafka_name() {
                    Some(_) => format!("the brokers refused {}: {e}", describe(action)),
                    None => {
                        ctx.forget_admin(bootstrap).await;
                        return Err(unreachable(e));
                    }
                };
                ctx.event(topic, EventType::Warning, reason_of(&e), message.clone())
                    .await;
                return Ok(Outcome {
                    conditions: stopped(reason_of(&e), message),
                    observed: observe(&admin, &name).await.ok().flatten(),
                    requeue: ctx.intervals.topic_resync,
                });
            }
            ctx.event(
                topic,
                EventType::Normal,
                action_reason(action),
                describe(action),
            )
            .await;
            acted.push(action.clone());
        }
        observed = observe(&admin, &name).await.map_err(unreachable)?;
        place(&admin, &topic.spec, &name, &mut observed, &mut brokers)
            .await
            .map_err(unreachable)?;
        current = plan(&topic.spec, observed.as_ref(), &brokers);
    }
    Ok(Outcome {
        conditions: conditions(&current, observed.is_some(), &acted),
        requeue: if current.is_converged() {
            ctx.intervals.topic_resync
        } else {
            ctx.intervals.in_progress
        },
        observed,
    })
}

/// Not ready, and nothing under way, for `reason`: what a blocker, a refused request or an
/// unreachable cluster leaves.
fn stopped(reason: &str, message: String) -> Vec<Condition> {
    vec![
        Condition::new("Ready", false, reason, message.clone()),
        Condition::new("Reconciling", false, reason, message),
    ]
}

/// The `Ready` and `Reconciling` conditions after a pass.
fn conditions(plan: &TopicPlan, exists: bool, acted: &[TopicAction]) -> Vec<Condition> {
    if let Some(blocker) = plan.blockers.first() {
        let message = plan
            .blockers
            .iter()
            .map(|b| b.message())
            .collect::<Vec<_>>()
            .join("; ");
        return stopped(blocker.reason(), message);
    }
    if plan.reassignment_in_progress {
        let message = "replicas are moving to reach spec.replicationFactor";
        return vec![
            Condition::new("Ready", false, "ReassignmentInProgress", message),
            Condition::new("Reconciling", true, "ReassignmentInProgress", message),
        ];
    }
    if !plan.actions.is_empty() || !exists {
        let message = "the topic is being brought to the spec";
        return vec![
            Condition::new("Ready", false, "Updating", message),
            Condition::new("Reconciling", true, "Updating", message),
        ];
    }
    let message = if acted.is_empty() {
        "the topic matches the spec".to_string()
    } else {
        format!(
            "the topic matches the spec after: {}",
            acted.iter().map(describe).collect::<Vec<_>>().join("; ")
        )
    };
    vec![
        Condition::new("Ready", true, "TopicReady", message.clone()),
        Condition::new("Reconciling", false, "TopicReady", message),
    ]
}

/// The Topic, other than `topic`, that owns the same Kafka topic of the same cluster, if
/// any, so that of several Topics naming one Kafka topic exactly one acts and the others
/// say why in their status.
///
/// A Topic that has already acted as the owner (its status holds the topic id, and it was
/// not itself turned away) keeps the topic; between two such, the older wins. Among new
/// claims, the first one this operator reconciles wins: creation timestamps have a
/// resolution of one second, too coarse to order Topics applied together.
fn claimed_by_other(topic: &Topic, tctx: &TopicContext) -> Option<String> {
    let name = topic.kafka_name();
    let same = |t: &Topic| {
        t.namespace() == topic.namespace()
            && t.spec.cluster_ref == topic.spec.cluster_ref
            && t.kafka_name() == name
            && t.metadata.uid != topic.metadata.uid
            && t.metadata.deletion_timestamp.is_none()
    };
    let established = |t: &Topic| {
        t.status.as_ref().is_some_and(|s| {
            s.topic_id.is_some()
                && s.topic_name.as_deref() == Some(name.as_str())
                && find(&s.conditions, "Ready").is_none_or(|c| c.reason != "TopicClaimed")
        })
    };
    let age = |t: &Topic| {
        (
            t.metadata.creation_timestamp.clone().map(|ts| ts.0),
            t.metadata.uid.clone().unwrap_or_default(),
        )
    };
    let label = |t: &Topic| format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any());
    let others: Vec<Arc<Topic>> = tctx
        .topics
        .state()
        .into_iter()
        .filter(|t| same(t))
        .collect();
    let mine = established(topic);
    if let Some(owner) = others
        .iter()
        .filter(|t| established(t))
        .find(|t| !mine || age(t) < age(topic))
    {
        return Some(label(owner));
    }
    let key = (
        topic.namespace().unwrap_or_default(),
        topic.spec.cluster_ref.name.clone(),
        name,
    );
    let uid = topic.metadata.uid.clone().unwrap_or_default();
    // A poisoned lock only means a panic elsewhere while holding it; the map is still a
    // plain map of claims.
    let mut claims = tctx.claims.lock().unwrap_or_else(|e| e.into_inner());
    let holder = claims.entry(key).or_insert_with(|| uid.clone());
    if !mine && *holder != uid {
        if let Some(owner) = others
            .iter()
            .find(|t| t.metadata.uid.as_deref() == Some(holder.as_str()))
        {
            return Some(label(owner));
        }
    }
    *holder = uid;
    None
}

/// Forgets the in-memory claim of a Topic that is going away.
fn release_claim(topic: &Topic, tctx: &TopicContext) {
    let key = (
        topic.namespace().unwrap_or_default(),
        topic.spec.cluster_ref.name.clone(),
        topic.kafka_name(),
    );
    let mut claims = tctx.claims.lock().unwrap_or_else(|e| e.into_inner());
    if claims.get(&key) == topic.metadata.uid.as_ref() {
        claims.remove(&key);
    }
}

/// The ids of the brokers that are not fenced.
async fn live_brokers(admin: &Admin) -> Result<Vec<i32>, tributary_admin::Error> {
    let cluster = admin.describe_cluster().await?;
    Ok(cluster
        .brokers
        .iter()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect())
}

/// What the brokers report of topic `name`, or `None` when it does not exist.
pub async fn observe(
    admin: &Admin,
    name: &str,
) -> Result<Option<ObservedTopic>, tributary_admin::Error> {
    let Some(description) = admin.describe_topic(name).await? else {
        return Ok(None);
    };
    let configs = admin.describe_topic_configs(name).await?;
    Ok(Some(ObservedTopic {
        topic_id: description.topic_id.to_string(),
        partitions: description
            .partitions
            .iter()
            .map(|p| ObservedPartition {
                partition: p.partition,
                leader: p.leader,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
            })
            .collect(),
        config_overrides: configs
            .into_iter()
            .filter(|c| c.source == ConfigSource::DynamicTopic)
            .filter_map(|c| Some((c.name, c.value?)))
            .collect(),
        reassigning: BTreeSet::new(),
    }))
}

/// Asks for the live brokers and the reassignments in progress, when the plan needs them:
/// to create a topic with a replication factor, when a partition's replica count is not
/// the spec's (a replication-factor change, or replicas on the move), or when a partition
/// is under-replicated (a reassignment that only adds replicas already lists all of them,
/// and is under way until the new ones are in sync). Every resync of a settled topic skips
/// both requests.
async fn place(
    admin: &Admin,
    spec: &crate::crd::topic::TopicSpec,
    name: &str,
    observed: &mut Option<ObservedTopic>,
    brokers: &mut Vec<i32>,
) -> Result<(), tributary_admin::Error> {
    let needed = match (observed.as_ref(), spec.replication_factor) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(o), Some(rf)) => o
            .partitions
            .iter()
            .any(|p| p.replicas.len() != rf as usize || p.isr.len() < p.replicas.len()),
    };
    if !needed {
        return Ok(());
    }
    *brokers = live_brokers(admin).await?;
    if let Some(o) = observed.as_mut() {
        o.reassigning = admin
            .list_partition_reassignments()
            .await?
            .into_iter()
            .filter(|r| r.tp.topic == name)
            .map(|r| r.tp.partition)
            .collect();
    }
    Ok(())
}

async fn carry_out(
    admin: &Admin,
    name: &str,
    action: &TopicAction,
) -> Result<(), tributary_admin::Error> {
    match action {
        TopicAction::Create {
            partitions,
            replication_factor,
            configs,
        } => {
            let new = NewTopic {
                name: name.to_string(),
                partitions: *partitions,
                replication_factor: replication_factor.map(|rf| rf as i16).unwrap_or(-1),
                configs: configs.clone(),
            };
            match admin.create_topic(&new).await {
                // Created by someone else between the look and the create: adopted next.
                Err(e) if e.kafka_name() == Some("TopicAlreadyExists") => Ok(()),
                other => other.map(|_| ()),
            }
        }
        TopicAction::CreatePartitions { total } => admin.create_partitions(name, *total).await,
        TopicAction::AlterConfigs { set, delete } => {
            let ops: Vec<AlterConfigOp> = set
                .iter()
                .map(|(k, v)| AlterConfigOp::Set {
                    name: k.clone(),
                    value: v.clone(),
                })
                .chain(
                    delete
                        .iter()
                        .map(|k| AlterConfigOp::Delete { name: k.clone() }),
                )
                .collect();
            admin.alter_topic_configs(name, &ops).await
        }
        TopicAction::Reassign { moves } => {
            let moves: Vec<(TopicPartition, Option<Vec<i32>>)> = moves
                .iter()
                .map(|(p, replicas)| {
                    (
                        TopicPartition {
                            topic: name.to_string(),
                            partition: *p,
                        },
                        Some(replicas.clone()),
                    )
                })
                .collect();
            for (_, result) in admin.alter_partition_reassignments(&moves).await? {
                result?;
            }
            Ok(())
        }
    }
}

/// Deletes the Kafka topic when the policy says so and this resource owns it.
async fn cleanup(topic: &Topic, tctx: &TopicContext) -> Result<Action, Error> {
    let ctx = &tctx.ctx;
    let name = topic.kafka_name();
    let owned_by_other = claimed_by_other(topic, tctx).is_some();
    release_claim(topic, tctx);
    if topic.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            topic,
            EventType::Normal,
            "TopicRetained",
            format!("deletionPolicy Retain: Kafka topic {name} is left in place"),
        )
        .await;
        return Ok(Action::await_change());
    }
    if owned_by_other {
        return Ok(Action::await_change());
    }
    let ns = namespace(topic, "Topic")?;
    let Some(cluster) = referenced_cluster(&ctx.client, &ns, &topic.spec.cluster_ref.name).await?
    else {
        // Without its Cluster there is nowhere to delete the topic from; holding the
        // resource forever would only block namespace deletion.
        tracing::warn!(topic = %name, "the Cluster is gone; the Kafka topic is left as it is");
        return Ok(Action::await_change());
    };
    let admin = ctx.admin(&cluster.bootstrap_servers()).await?;
    match admin.delete_topic(&name).await {
        Ok(()) => {}
        Err(e) if e.kafka_name() == Some("UnknownTopicOrPartition") => {}
        Err(e) => return Err(e.into()),
    }
    ctx.event(
        topic,
        EventType::Normal,
        "TopicDeleted",
        format!("deleted Kafka topic {name}"),
    )
    .await;
    Ok(Action::await_change())
}

/// Copies what the brokers report into the status.
fn fill_observed(status: &mut TopicStatus, observed: &ObservedTopic) {
    status.topic_id = Some(observed.topic_id.clone());
    status.partitions = Some(observed.partitions.len() as i32);
    status.replication_factor = observed.partitions.first().map(|p| p.replicas.len() as i32);
    status.under_replicated_partitions = Some(
        observed
            .partitions
            .iter()
            .filter(|p| p.isr.len() < p.replicas.len())
            .count() as i32,
    );
    status.partition_status = observed
        .partitions
        .iter()
        .map(|p| PartitionStatus {
            partition: p.partition,
            leader: p.leader,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
        })
        .collect();
}

/// The condition reason for a refused request: the Kafka error's name, which already reads
/// as a reason (`InvalidConfig`, `PolicyViolation`, `InvalidReplicationFactor`).
fn reason_of(e: &tributary_admin::Error) -> &'static str {
    e.kafka_name().unwrap_or("KafkaError")
}

fn action_reason(action: &TopicAction) -> &'static str {
    match action {
        TopicAction::Create { .. } => "TopicCreated",
        TopicAction::CreatePartitions { .. } => "PartitionsAdded",
        TopicAction::AlterConfigs { .. } => "ConfigsUpdated",
        TopicAction::Reassign { .. } => "ReassignmentStarted",
    }
}

/// One line a person reads in an event or a condition.
fn describe(action: &TopicAction) -> String {
    match action {
        TopicAction::Create {
            partitions,
            replication_factor,
            configs,
        } => format!(
            "created the topic with {partitions} partitions, replication factor {}{}",
            replication_factor
                .map(|rf| rf.to_string())
                .unwrap_or_else(|| "(broker default)".into()),
            if configs.is_empty() {
                String::new()
            } else {
                format!(
                    " and configs {}",
                    configs.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }
        ),
        TopicAction::CreatePartitions { total } => format!("raised the partitions to {total}"),
        TopicAction::AlterConfigs { set, delete } => {
            let mut parts = Vec::new();
            if !set.is_empty() {
                parts.push(format!(
                    "set {}",
                    set.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !delete.is_empty() {
                parts.push(format!("removed {}", delete.join(", ")));
            }
            format!("configs: {}", parts.join("; "))
        }
        TopicAction::Reassign { moves } => format!(
            "started moving replicas: {}",
            moves
                .iter()
                .map(|(p, r)| format!(
                    "partition {p} -> [{}]",
                    r.iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
