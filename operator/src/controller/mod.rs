//! The controllers: one kube-runtime `Controller` per resource kind, sharing a [`Context`].
//!
//! ```text
//! watch (generation or finalizer changed) / requeue timer
//!     -> reconcile(resource): read the Cluster, ask the brokers, plan (crate::plan), act
//!     -> status patch (only when it changed) + events
//!     -> Action::requeue(resync interval)      error -> error_policy: requeue with backoff
//! ```
//!
//! Each controller watches its own kind, filtered to spec (generation) and finalizer
//! changes, so the status it writes does not wake it again; drift on the brokers' side is
//! found by the periodic requeue. The Cluster controller also watches the StatefulSets of
//! managed Clusters, whose status follows their pods' readiness.

pub mod cluster;
pub mod consumer_group;
pub mod topic;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use tokio::sync::Mutex;
use tributary_admin::{Admin, AdminOptions};

use crate::crd::Cluster;
use crate::telemetry::Metrics;

/// The field manager of every write the operator makes.
pub const MANAGER: &str = "tributary-operator";

/// What a reconciliation can fail with. Kafka error codes that describe the spec (a topic
/// config the brokers refuse) are not errors: they end in the status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kafka admin request: {0}")]
    Admin(#[from] tributary_admin::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{kind} {name} has no namespace")]
    NoNamespace { kind: &'static str, name: String },
}

impl Error {
    /// A stable label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Admin(e) if e.kafka_code().is_some() => "kafka",
            Error::Admin(_) => "kafka_connection",
            Error::Finalizer(_) => "finalizer",
            Error::NoNamespace { .. } => "no_namespace",
        }
    }
}

/// How often each kind is looked at again when nothing changes.
#[derive(Clone, Debug)]
pub struct Intervals {
    /// Between two checks of a topic against its spec (drift made by other tools).
    pub topic_resync: Duration,
    /// Between two refreshes of a consumer group's status.
    pub group_refresh: Duration,
    /// Between two checks that a cluster is reachable.
    pub cluster_refresh: Duration,
    /// After a change that is still under way (a reassignment, a just-created topic).
    pub in_progress: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            topic_resync: Duration::from_secs(30),
            group_refresh: Duration::from_secs(10),
            cluster_refresh: Duration::from_secs(30),
            in_progress: Duration::from_secs(1),
        }
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub intervals: Intervals,
    recorder: Recorder,
    /// One admin client per bootstrap list, reused across reconciliations; the admin
    /// client reconnects by itself after a broker goes away.
    admins: Mutex<HashMap<String, Admin>>,
    /// Timeout of each Kafka request.
    pub request_timeout: Duration,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, intervals: Intervals) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            intervals,
            admins: Mutex::new(HashMap::new()),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The admin client for `bootstrap`, connecting on first use.
    pub async fn admin(&self, bootstrap: &str) -> Result<Admin, tributary_admin::Error> {
        if let Some(admin) = self.admins.lock().await.get(bootstrap) {
            return Ok(admin.clone());
        }
        let admin = Admin::connect_with(
            bootstrap,
            AdminOptions {
                client_id: MANAGER.to_string(),
                request_timeout: self.request_timeout,
            },
        )
        .await?;
        self.admins
            .lock()
            .await
            .insert(bootstrap.to_string(), admin.clone());
        Ok(admin)
    }

    /// Forgets the admin client of `bootstrap`, so the next use connects anew.
    pub async fn forget_admin(&self, bootstrap: &str) {
        self.admins.lock().await.remove(bootstrap);
    }

    /// Publishes a Kubernetes event about `obj`; a failure is logged, never fatal.
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "publishing an event failed");
        }
    }
}

/// The `Cluster` a resource refers to, if it exists.
pub async fn referenced_cluster(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Cluster>, Error> {
    Ok(Api::<Cluster>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?)
}

/// Writes a status through `api`, a merge patch of the status subresource.
pub async fn write_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The namespace of a namespaced resource.
pub fn namespace<K: Resource>(obj: &K, kind: &'static str) -> Result<String, Error> {
    obj.namespace().ok_or_else(|| Error::NoNamespace {
        kind,
        name: obj.name_any(),
    })
}

/// Now, in RFC 3339 to the second, as Kubernetes writes times.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now.to_string())
}
