//! The `Cluster` controller, for clusters given by `spec.external`: reports whether the
//! brokers answer, which they are, and which one is the active controller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::{predicates, reflector, watcher, Controller, WatchStreamExt};
use kube::ResourceExt;
use tributary_admin::ClusterDescription;

use super::{namespace, now_rfc3339, write_status, Context, Error};
use crate::crd::cluster::{BrokerStatus, Cluster, ClusterStatus};
use crate::crd::condition::merge_conditions;
use crate::crd::Condition;
use crate::telemetry::Kind;

/// Runs the Cluster controller on `api` until shutdown.
pub async fn run(
    api: Api<Cluster>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (reader, writer) = reflector::store();
    let clusters = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    Controller::for_stream(clusters, reader)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "cluster reconciliation did not run");
            }
        })
        .await;
}

async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = namespace(&*cluster, "Cluster")?;
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    let bootstrap = &cluster.spec.external.bootstrap_servers;
    let described = match ctx.admin(bootstrap).await {
        Ok(admin) => admin.describe_cluster().await,
        Err(e) => Err(e),
    };
    if described.is_err() {
        ctx.forget_admin(bootstrap).await;
    }
    let previous = cluster.status.clone().unwrap_or_default();
    let status = status(&previous, described, bootstrap, cluster.metadata.generation);
    if status != previous {
        write_status(&api, &cluster.name_any(), &status).await?;
    }
    ctx.metrics.reconciled(Kind::Cluster, started.elapsed());
    Ok(Action::requeue(ctx.intervals.cluster_refresh))
}

fn error_policy(cluster: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), error = %error, "cluster reconciliation failed");
    ctx.metrics.failed(Kind::Cluster, error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

/// The status for what DescribeCluster answered (or how it failed).
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
            ClusterStatus {
                observed_generation: generation,
                conditions: merge_conditions(
                    &previous.conditions,
                    vec![Condition::new("Ready", true, "ClusterReachable", message)],
                    generation,
                    &now,
                ),
                cluster_id: Some(d.cluster_id.clone()).filter(|id| !id.is_empty()),
                controller_id: d.controller_id,
                broker_count: Some(d.brokers.len() as i32),
                brokers: d
                    .brokers
                    .iter()
                    .map(|b| BrokerStatus {
                        id: b.id,
                        host: b.host.clone(),
                        port: b.port,
                        rack: b.rack.clone(),
                        fenced: b.fenced,
                    })
                    .collect(),
            }
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
            // What was last seen stays, so a blip does not erase the broker list.
            ..previous.clone()
        },
    }
}
