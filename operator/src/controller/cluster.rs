//! The `Cluster` controller.
//!
//! External clusters (`spec.external`): reports whether the brokers answer, which they are,
//! and which one is the active controller.
//!
//! Managed clusters (`spec.brokers`): runs the brokers.
//!
//! ```text
//! Cluster ──ManagedCluster::new (checks, defaults)──> InvalidSpec? -> Ready=False, stop
//!   server-side apply (manager tributary-operator, force), each owned by the Cluster:
//!     ConfigMap <name>-config, Service <name>-brokers (headless), Service <name>-bootstrap,
//!     StatefulSet <name>, PodDisruptionBudget <name>      (crate::resources builds them)
//!   Pods (by label) -> ready broker ids
//!   every broker ready -> DescribeCluster at the bootstrap address -> BrokersReady
//!     spec.brokers != pods (or still Scaling) -> plan_scale -> reassign, shrink (Scaling)
//!     pods with an outdated config hash -> plan_roll -> delete one pod (Rolling)
//!   otherwise BrokersStarting / ClusterUnreachable
//!   -> status (only when it changed)
//! ```
//!
//! The controller watches the Clusters (spec changes, and the bootstrap-override
//! annotation) and the StatefulSets they own, whose status follows the pods' readiness, so
//! the Cluster's status follows it too; `--cluster-refresh-interval` re-checks the brokers.
//! The operator reaches the brokers at the bootstrap Service's DNS name, which resolves only
//! inside the cluster; an operator running elsewhere (tests) is given other addresses by
//! the `tributary.dev/bootstrap-override` annotation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{predicates, reflector, watcher, Controller, Predicate, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tributary_admin::{ClusterDescription, TopicPartition};

use super::{namespace, now_rfc3339, write_status, Context, Error, MANAGER};
use crate::crd::cluster::{BrokerStatus, Cluster, ClusterStatus, BOOTSTRAP_OVERRIDE_ANNOTATION};
use crate::crd::condition::merge_conditions;
use crate::crd::Condition;
use crate::plan::brokers::{
    plan_roll, plan_scale, ObservedCluster, ObservedPod, RollStep, ScaleStep,
};
use crate::plan::topic::ObservedPartition;
use crate::resources::{configmap, pdb, services, statefulset, ManagedCluster, MANAGED_BY};
use crate::telemetry::Kind;

/// Runs the Cluster controller on `api` until shutdown; `stateful_sets` covers the same
/// namespaces.
pub async fn run(
    api: Api<Cluster>,
    stateful_sets: Api<StatefulSet>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (reader, writer) = reflector::store();
    let clusters = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(bootstrap_override),
            Default::default(),
        );
    Controller::for_stream(clusters, reader)
        .owns(
            stateful_sets,
            watcher::Config::default()
                .labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}")),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "cluster reconciliation did not run");
            }
        })
        .await;
}

/// A predicate property: the bootstrap-override annotation, so that setting it wakes the
/// controller although it does not change the generation.
fn bootstrap_override(cluster: &Cluster) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let value = cluster.annotations().get(BOOTSTRAP_OVERRIDE_ANNOTATION)?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    Some(hasher.finish())
}

async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = namespace(&*cluster, "Cluster")?;
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    // The status as stored now, not as the watch cache last saw it: the previous pass may
    // have written conditions (Scaling, Rolling) this one builds on.
    let previous = match api.get_opt(&cluster.name_any()).await? {
        Some(fresh) => fresh.status.unwrap_or_default(),
        None => return Ok(Action::await_change()),
    };
    let (status, requeue) = if cluster.is_managed() {
        reconcile_managed(&cluster, &ctx, &ns, &previous).await?
    } else {
        let bootstrap = cluster.bootstrap_servers();
        let described = describe(&ctx, &bootstrap).await;
        let status = status(
            &previous,
            described,
            &bootstrap,
            cluster.metadata.generation,
        );
        (status, ctx.intervals.cluster_refresh)
    };
    if status != previous {
        if let Some(ready) = crate::crd::condition::find(&status.conditions, "Ready") {
            tracing::info!(
                namespace = %ns,
                cluster = %cluster.name_any(),
                ready = %ready.status,
                reason = %ready.reason,
                message = %ready.message,
                "cluster status"
            );
        }
        write_status(&api, &cluster.name_any(), &status).await?;
    }
    ctx.metrics.reconciled(Kind::Cluster, started.elapsed());
    Ok(Action::requeue(requeue))
}

fn error_policy(cluster: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), error = %error, "cluster reconciliation failed");
    ctx.metrics.failed(Kind::Cluster, error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

/// DescribeCluster at `bootstrap`; a failure drops the admin client, so the next attempt
/// connects anew.
async fn describe(
    ctx: &Context,
    bootstrap: &str,
) -> Result<ClusterDescription, tributary_admin::Error> {
    let described = match ctx.admin(bootstrap).await {
        Ok(admin) => admin.describe_cluster().await,
        Err(e) => Err(e),
    };
    if described.is_err() {
        ctx.forget_admin(bootstrap).await;
    }
    described
}

/// One pass over a managed cluster: apply the owned objects, read the pods, ask the brokers
/// once every pod is ready.
async fn reconcile_managed(
    cluster: &Cluster,
    ctx: &Context,
    ns: &str,
    previous: &ClusterStatus,
) -> Result<(ClusterStatus, Duration), Error> {
    let generation = cluster.metadata.generation;
    let refresh = ctx.intervals.cluster_refresh;
    let m = match ManagedCluster::new(cluster) {
        Ok(Some(m)) => m,
        Ok(None) => unreachable!("reconcile_managed is only called for managed clusters"),
        Err(invalid) => {
            let status = invalid_status(previous, cluster, &invalid.0, generation);
            return Ok((status, refresh));
        }
    };
    // A scale-up takes effect at once; a scale-down keeps the pods to remove until their
    // brokers hold no replica (plan_scale below shrinks the StatefulSet then).
    let stateful_sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let current = stateful_sets
        .get_opt(&m.stateful_set_name())
        .await?
        .and_then(|s| s.spec?.replicas)
        .unwrap_or(m.brokers);
    let replicas = current.max(m.brokers);
    // The brokers the StatefulSet runs: the defaults of their configuration, the pods
    // counted and rolled. Until a scale-down is carried out (or if it is refused), that is
    // more than spec.brokers, and their configuration does not change.
    let running = m.running(replicas);
    if let Err(e) = apply_owned(&ctx.client, &running, replicas).await {
        // The API server refused an object built from the spec (an affinity it finds
        // invalid, say): the spec is at fault, and retrying will not help until it changes.
        if let Error::Kube(kube::Error::Api(response)) = &e {
            if response.code == 422 || response.code == 400 {
                let message = format!(
                    "the API server refused the brokers' objects: {}",
                    response.message
                );
                let status = invalid_status(previous, cluster, &message, generation);
                return Ok((status, refresh));
            }
        }
        return Err(e);
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pods = pods
        .list(&ListParams::default().labels(&m.selector()))
        .await?;
    let ready_ids = ready_broker_ids(&running, &pods.items);
    let bootstrap = cluster.bootstrap_servers();
    let described = if ready_ids.len() as i32 == running.brokers {
        Some(describe(ctx, &bootstrap).await)
    } else {
        None
    };
    // Scaling and rolls move only while every broker is ready and answers; a roll waits
    // for the scaling to settle.
    // A scale under way, or one refused (which a spec put back must clear).
    let was_scaling = crate::crd::condition::find(&previous.conditions, "Scaling")
        .is_some_and(|c| c.status == "True" || c.reason != "BrokersMatchSpec");
    // The StatefulSet had another size (a scale just asked for), or a scale is under way.
    let scaling_needed = current != m.brokers || was_scaling;
    let (scaling, rolling) = match &described {
        Some(Ok(d)) => {
            // The brokers are asked at most once per pass: a scale step hands what it
            // observed to the roll step.
            let (scaling, observed) = if scaling_needed {
                let (step, observed) = scale(ctx, &m, replicas, d, &bootstrap).await?;
                (Some(scaling_condition(&step)), Some(observed))
            } else {
                (None, None)
            };
            let rolling = if scaling.as_ref().is_none_or(|c| c.status != "True") {
                Some(rolling_condition(
                    &roll(
                        ctx,
                        &running,
                        &pods.items,
                        &ready_ids,
                        d,
                        &bootstrap,
                        observed,
                    )
                    .await?,
                ))
            } else {
                None
            };
            (scaling, rolling)
        }
        _ if scaling_needed => {
            let message = format!("{} of {} brokers ready", ready_ids.len(), running.brokers);
            (
                Some(Condition::new("Scaling", true, "AwaitingBrokers", message)),
                None,
            )
        }
        _ => (None, None),
    };
    let mut status = managed_status(
        previous, &running, &ready_ids, described, &bootstrap, generation,
    );
    let mut extra = Vec::new();
    for (kind, next) in [("Scaling", scaling), ("Rolling", rolling)] {
        // Brokers starting or unreachable: the last word stands.
        if let Some(c) =
            next.or_else(|| crate::crd::condition::find(&previous.conditions, kind).cloned())
        {
            extra.push(c);
        }
    }
    let settled = extra.iter().all(|c| c.status != "True");
    status.conditions.extend(merge_conditions(
        &previous.conditions,
        extra,
        generation,
        &now_rfc3339(),
    ));
    let requeue = if ready_ids.len() as i32 == running.brokers && settled {
        refresh
    } else {
        // A roll or a start under way: look again soon.
        refresh.min(Duration::from_secs(2))
    };
    Ok((status, requeue))
}

/// What the brokers report, for the scale and roll planners.
async fn observe(
    ctx: &Context,
    described: &ClusterDescription,
    bootstrap: &str,
) -> Result<ObservedCluster, Error> {
    let admin = ctx.admin(bootstrap).await?;
    let topics = admin.describe_topics(None).await?;
    let reassigning = admin.list_partition_reassignments().await?.len();
    Ok(ObservedCluster {
        live_brokers: described
            .brokers
            .iter()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect(),
        registered_brokers: described.brokers.iter().map(|b| b.id).collect(),
        topics: topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| ObservedPartition {
                        partition: p.partition,
                        leader: p.leader,
                        replicas: p.replicas,
                        isr: p.isr,
                    })
                    .collect();
                (t.name, partitions)
            })
            .collect(),
        reassigning,
        active_controller: described.controller_id,
    })
}

/// One step of scaling from `replicas` pods to `spec.brokers` (`plan::brokers::plan_scale`):
/// reassign replicas onto new brokers or off the ones to remove, and shrink the
/// StatefulSet once those hold nothing. Returns the step and what the brokers reported,
/// which the roll step of the same pass reuses.
async fn scale(
    ctx: &Context,
    m: &ManagedCluster,
    replicas: i32,
    described: &ClusterDescription,
    bootstrap: &str,
) -> Result<(ScaleStep, ObservedCluster), Error> {
    let observed = observe(ctx, described, bootstrap).await?;
    let plan = plan_scale(m.brokers, replicas, m.voters, &observed);
    if let ScaleStep::Reassign(moves) = &plan.step {
        tracing::info!(
            namespace = %m.namespace,
            cluster = %m.name,
            partitions = moves.len(),
            brokers = m.brokers,
            "moving replicas for a change of the broker count"
        );
        let moves: Vec<(TopicPartition, Option<Vec<i32>>)> = moves
            .iter()
            .map(|mv| {
                (
                    TopicPartition::new(mv.topic.clone(), mv.partition),
                    Some(mv.replicas.clone()),
                )
            })
            .collect();
        let admin = ctx.admin(bootstrap).await?;
        for (tp, result) in admin.alter_partition_reassignments(&moves).await? {
            if let Err(e) = result {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "reassignment refused");
            }
        }
    }
    if let ScaleStep::Unregister(ids) = &plan.step {
        // A broker still heartbeating (its pod still stopping) is refused; the next pass
        // tries again.
        let admin = ctx.admin(bootstrap).await?;
        for id in ids {
            match admin.unregister_broker(*id).await {
                Ok(()) => tracing::info!(
                    namespace = %m.namespace,
                    cluster = %m.name,
                    broker = id,
                    "unregistered a removed broker"
                ),
                Err(e) => tracing::debug!(broker = id, error = %e, "not unregistered yet"),
            }
        }
    }
    if plan.statefulset_replicas != replicas {
        tracing::info!(
            namespace = %m.namespace,
            cluster = %m.name,
            from = replicas,
            to = plan.statefulset_replicas,
            "the brokers to remove hold no replica: shrinking the StatefulSet"
        );
        apply(
            &Api::<StatefulSet>::namespaced(ctx.client.clone(), &m.namespace),
            &statefulset::stateful_set_with_replicas(m, plan.statefulset_replicas),
        )
        .await?;
    }
    Ok((plan.step, observed))
}

/// The `Scaling` condition for a scale step.
fn scaling_condition(step: &ScaleStep) -> Condition {
    match step {
        ScaleStep::Settled => Condition::new(
            "Scaling",
            false,
            "BrokersMatchSpec",
            "the brokers match spec.brokers and hold the replicas",
        ),
        ScaleStep::AwaitBrokers(ids) => Condition::new(
            "Scaling",
            true,
            "AwaitingBrokers",
            format!("waiting for brokers {ids:?} to register"),
        ),
        ScaleStep::Reassign(moves) => Condition::new(
            "Scaling",
            true,
            "MovingReplicas",
            format!("moving {} partitions' replicas", moves.len()),
        ),
        ScaleStep::AwaitReassignments(n) => Condition::new(
            "Scaling",
            true,
            "MovingReplicas",
            format!("{n} partition reassignments are copying data"),
        ),
        ScaleStep::Unregister(ids) => Condition::new(
            "Scaling",
            true,
            "UnregisteringBrokers",
            format!("removing brokers {ids:?} from the cluster's metadata"),
        ),
        ScaleStep::Refused { reason, message } => {
            Condition::new("Scaling", false, reason, message.clone())
        }
    }
}

/// One step of a rolling restart towards the StatefulSet template's configuration hash
/// (`plan::brokers::plan_roll`): with every broker ready and in every ISR, the next pod
/// whose hash is outdated is deleted; the StatefulSet (`OnDelete`) re-creates it with the
/// current template, and its SIGTERM makes the broker hand its leaderships over first.
/// `observed` is what the scale step of the same pass saw, if it ran; otherwise the brokers
/// are asked here, and only when some pod's hash is outdated.
async fn roll(
    ctx: &Context,
    m: &ManagedCluster,
    pods: &[Pod],
    ready_ids: &[i32],
    described: &ClusterDescription,
    bootstrap: &str,
    observed: Option<ObservedCluster>,
) -> Result<RollStep, Error> {
    let desired = statefulset::config_hash(m);
    let prefix = format!("{}-", m.stateful_set_name());
    let observed_pods: Vec<ObservedPod> = pods
        .iter()
        .filter_map(|pod| {
            let ordinal: i32 = pod.name_any().strip_prefix(&prefix)?.parse().ok()?;
            (0..m.brokers).contains(&ordinal).then(|| ObservedPod {
                ordinal,
                config_hash: pod
                    .annotations()
                    .get(statefulset::CONFIG_HASH_ANNOTATION)
                    .cloned(),
                ready: ready_ids.contains(&ordinal),
                terminating: pod.metadata.deletion_timestamp.is_some(),
            })
        })
        .collect();
    if observed_pods
        .iter()
        .all(|p| p.config_hash.as_deref() == Some(desired.as_str()))
    {
        return Ok(RollStep::Settled);
    }
    let observed = match observed {
        Some(observed) => observed,
        None => observe(ctx, described, bootstrap).await?,
    };
    let step = plan_roll(&desired, &observed_pods, &observed);
    if let RollStep::Restart(ordinal) = &step {
        let name = format!("{prefix}{ordinal}");
        tracing::info!(
            namespace = %m.namespace,
            pod = %name,
            "restarting a broker for the new configuration"
        );
        match Api::<Pod>::namespaced(ctx.client.clone(), &m.namespace)
            .delete(&name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            // Already gone: the StatefulSet re-creates it.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(step)
}

/// The `Rolling` condition for a roll step.
fn rolling_condition(step: &RollStep) -> Condition {
    match step {
        RollStep::Settled => Condition::new(
            "Rolling",
            false,
            "UpToDate",
            "every broker runs the current configuration",
        ),
        RollStep::Wait(why) => Condition::new("Rolling", true, "RollWaiting", why.clone()),
        RollStep::Restart(ordinal) => Condition::new(
            "Rolling",
            true,
            "RestartingBroker",
            format!("broker {ordinal} restarts with the new configuration"),
        ),
    }
}

/// Server-side applies every owned object, the StatefulSet last: it mounts the ConfigMap
/// and names the headless Service.
async fn apply_owned(
    client: &kube::Client,
    m: &ManagedCluster,
    replicas: i32,
) -> Result<(), Error> {
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), &m.namespace),
        &configmap::config_map(m),
    )
    .await?;
    let services = Api::<Service>::namespaced(client.clone(), &m.namespace);
    apply(&services, &services::headless_service(m)).await?;
    apply(&services, &services::bootstrap_service(m)).await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &m.namespace),
        &pdb::pod_disruption_budget(m),
    )
    .await?;
    apply(
        &Api::<StatefulSet>::namespaced(client.clone(), &m.namespace),
        &statefulset::stateful_set_with_replicas(m, replicas),
    )
    .await?;
    Ok(())
}

/// Server-side apply of `obj` under [`MANAGER`], forcing conflicts: the operator owns these
/// objects, and a field another manager changed is put back.
async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// Whether `pod` is ready and staying: its `Ready` condition is true and it is not being
/// deleted.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The ids (ordinals) of the broker pods that are ready ([`pod_is_ready`]), in order. Pods
/// beyond `brokers` (being removed by a scale-down) do not count.
pub fn ready_broker_ids(m: &ManagedCluster, pods: &[Pod]) -> Vec<i32> {
    let prefix = format!("{}-", m.stateful_set_name());
    let mut ids: Vec<i32> = pods
        .iter()
        .filter(|pod| pod_is_ready(pod))
        .filter_map(|pod| {
            pod.metadata
                .name
                .as_deref()?
                .strip_prefix(&prefix)?
                .parse()
                .ok()
        })
        .filter(|id| (0..m.brokers).contains(id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The status of a managed cluster whose spec the operator cannot run.
fn invalid_status(
    previous: &ClusterStatus,
    cluster: &Cluster,
    message: &str,
    generation: Option<i64>,
) -> ClusterStatus {
    ClusterStatus {
        observed_generation: generation,
        conditions: merge_conditions(
            &previous.conditions,
            vec![
                Condition::new("Ready", false, "InvalidSpec", message),
                Condition::new(
                    "Reconciling",
                    false,
                    "InvalidSpec",
                    "nothing is applied until the spec is fixed",
                ),
            ],
            generation,
            &now_rfc3339(),
        ),
        bootstrap_servers: Some(cluster.service_bootstrap_servers()),
        ..previous.clone()
    }
}

/// The status of a managed cluster: `ready_ids` are the ready broker pods; `described` is
/// what DescribeCluster at `bootstrap` answered, asked only once every broker is ready.
pub fn managed_status(
    previous: &ClusterStatus,
    m: &ManagedCluster,
    ready_ids: &[i32],
    described: Option<Result<ClusterDescription, tributary_admin::Error>>,
    bootstrap: &str,
    generation: Option<i64>,
) -> ClusterStatus {
    let ready = ready_ids.len() as i32;
    let mut status = ClusterStatus {
        observed_generation: generation,
        bootstrap_servers: Some(m.bootstrap_servers()),
        ready_brokers: Some(ready),
        broker_ids: ready_ids.to_vec(),
        ..previous.clone()
    };
    let conditions = match described {
        None => {
            let message = format!("{ready} of {} brokers ready", m.brokers);
            vec![
                Condition::new("Ready", false, "BrokersStarting", message.clone()),
                Condition::new("Reconciling", true, "BrokersStarting", message),
            ]
        }
        Some(Ok(d)) => {
            let message = format!(
                "{} brokers ready, {} answer at {bootstrap}",
                m.brokers,
                d.brokers.len()
            );
            fill_described(&mut status, &d);
            vec![
                Condition::new("Ready", true, "BrokersReady", message.clone()),
                Condition::new("Reconciling", false, "BrokersReady", message),
            ]
        }
        Some(Err(e)) => vec![
            Condition::new(
                "Ready",
                false,
                "ClusterUnreachable",
                format!(
                    "{} brokers ready, but {bootstrap} does not answer: {e}",
                    m.brokers
                ),
            ),
            Condition::new(
                "Reconciling",
                false,
                "BrokersReady",
                format!("{} brokers ready", m.brokers),
            ),
        ],
    };
    status.conditions =
        merge_conditions(&previous.conditions, conditions, generation, &now_rfc3339());
    status
}

/// Copies what DescribeCluster answered into `status`.
fn fill_described(status: &mut ClusterStatus, d: &ClusterDescription) {
    status.cluster_id = Some(d.cluster_id.clone()).filter(|id| !id.is_empty());
    status.controller_id = d.controller_id;
    status.broker_count = Some(d.brokers.len() as i32);
    status.brokers = d
        .brokers
        .iter()
        .map(|b| BrokerStatus {
            id: b.id,
            host: b.host.clone(),
            port: b.port,
            rack: b.rack.clone(),
            fenced: b.fenced,
        })
        .collect();
}

/// The status of an external cluster for what DescribeCluster answered (or how it failed).
pub fn status(
    previous: &ClusterStatus,
    described: Result<ClusterDescription, tributary_admin::Error>,
    bootstrap: &str,
    generation: Option<i64>,
) -> ClusterStatus {
    let now = now_rfc3339();
    match described {
        Ok(d) => {
            let fenced = d.brokers.iter().filter(|b| b.fenced).count();
            let message = format!(
                "{} brokers answer at {bootstrap}{}",
                d.brokers.len(),
                if fenced > 0 {
                    format!(", {fenced} of them fenced")
                } else {
                    String::new()
                }
            );
            let mut status = ClusterStatus {
                observed_generation: generation,
                conditions: merge_conditions(
                    &previous.conditions,
                    vec![Condition::new("Ready", true, "ClusterReachable", message)],
                    generation,
                    &now,
                ),
                bootstrap_servers: Some(bootstrap.to_string()),
                ..ClusterStatus::default()
            };
            fill_described(&mut status, &d);
            status
        }
        Err(e) => ClusterStatus {
            observed_generation: generation,
            conditions: merge_conditions(
                &previous.conditions,
                vec![Condition::new(
                    "Ready",
                    false,
                    "ClusterUnreachable",
                    format!("{bootstrap}: {e}"),
                )],
                generation,
                &now,
            ),
            bootstrap_servers: Some(bootstrap.to_string()),
            // What was last seen stays, so a blip does not erase the broker list.
            ..previous.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::ClusterSpec;
    use crate::crd::condition::find;
    use crate::resources::tests::managed;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use tributary_admin::BrokerDescription;

    fn pod(name: &str, ready: bool) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    fn reason(status: &ClusterStatus, type_: &str) -> (String, String) {
        let c = find(&status.conditions, type_).expect("condition");
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn ready_ids_are_the_ordinals_of_ready_pods_within_the_broker_count() {
        let m = managed(ClusterSpec::managed(3));
        let pods = [
            pod("main-2", true),
            pod("main-0", true),
            pod("main-1", false),
            pod("main-3", true),  // beyond the broker count (scale-down)
            pod("other-0", true), // not ours
            pod("main-x", true),
        ];
        assert_eq!(ready_broker_ids(&m, &pods), [0, 2]);
        let mut gone = pod("main-1", true);
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(ready_broker_ids(&m, &[gone]), Vec::<i32>::new());
    }

    #[test]
    fn starting_brokers_are_not_ready_and_reconciling() {
        let m = managed(ClusterSpec::managed(3));
        let s = managed_status(&ClusterStatus::default(), &m, &[1], None, "b:9092", Some(4));
        assert_eq!(
            reason(&s, "Ready"),
            ("False".into(), "BrokersStarting".into())
        );
        assert_eq!(
            reason(&s, "Reconciling"),
            ("True".into(), "BrokersStarting".into())
        );
        assert_eq!(
            find(&s.conditions, "Ready").unwrap().message,
            "1 of 3 brokers ready"
        );
        assert_eq!(s.ready_brokers, Some(1));
        assert_eq!(s.broker_ids, [1]);
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(
            s.bootstrap_servers.as_deref(),
            Some("main-bootstrap.team-a.svc:9092")
        );
    }

    #[test]
    fn ready_brokers_that_answer_make_the_cluster_ready() {
        let m = managed(ClusterSpec::managed(3));
        let d = ClusterDescription {
            cluster_id: "abc".into(),
            controller_id: Some(1),
            brokers: (0..3)
                .map(|id| BrokerDescription {
                    id,
                    host: m.pod_host(id),
                    port: 9092,
                    rack: None,
                    fenced: false,
                })
                .collect(),
        };
        let s = managed_status(
            &ClusterStatus::default(),
            &m,
            &[0, 1, 2],
            Some(Ok(d)),
            "127.0.0.1:1",
            Some(1),
        );
        assert_eq!(reason(&s, "Ready"), ("True".into(), "BrokersReady".into()));
        assert_eq!(
            reason(&s, "Reconciling"),
            ("False".into(), "BrokersReady".into())
        );
        assert_eq!(s.controller_id, Some(1));
        assert_eq!(s.broker_count, Some(3));
        assert_eq!(s.brokers[2].host, "main-2.main-brokers.team-a.svc");
        // The status names the Service even when the operator used an override.
        assert_eq!(
            s.bootstrap_servers.as_deref(),
            Some("main-bootstrap.team-a.svc:9092")
        );
    }

    #[test]
    fn ready_brokers_that_do_not_answer_are_unreachable() {
        let m = managed(ClusterSpec::managed(1));
        let err = tributary_admin::Error::Connect {
            addr: "b:9092".into(),
            source: std::io::Error::other("refused"),
        };
        let s = managed_status(
            &ClusterStatus::default(),
            &m,
            &[0],
            Some(Err(err)),
            "b:9092",
            Some(1),
        );
        assert_eq!(
            reason(&s, "Ready"),
            ("False".into(), "ClusterUnreachable".into())
        );
    }
}
