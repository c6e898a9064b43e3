//! The runner thread: the node, DNS and claim tasks, and the dispatcher, which watches the
//! Pods, binds the unscheduled ones to the node (the scheduler's part) and feeds each pod
//! bound here to its own [`Worker`] (the kubelet's part).
//!
//! ```text
//! Pod watch ──> no nodeName ──> pods/binding (scheduler)
//!          └──> nodeName = ours ──> watch channel of the pod's uid ──> Worker task
//!                Delete event, or gone from a re-list ──> None on that channel
//! ```

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::worker::Worker;
use super::{log, node, RunnerOptions, Shared};

/// What every worker shares.
pub(super) struct Ctx {
    pub client: Client,
    pub options: RunnerOptions,
    /// util-linux's `setpriv`, which starts every container process.
    pub setpriv: PathBuf,
    pub shared: Arc<Shared>,
}

/// The runner thread's body: registers the node, reports READY, then runs the node, DNS,
/// claims and pod tasks until CANCEL, and kills what runs before returning.
pub(super) async fn run(
    kubeconfig: PathBuf,
    options: RunnerOptions,
    setpriv: PathBuf,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    ready: std::sync::mpsc::Sender<Result<()>>,
) {
    let started = async {
        let client = client_for(&kubeconfig).await?;
        let node_uid = node::register(&client, &options.node_name).await?;
        anyhow::Ok((client, node_uid))
    }
    .await;
    let (client, node_uid) = match started {
        Ok(started) => started,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        options,
        setpriv,
        shared,
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(node::keep_alive(
        client.clone(),
        ctx.options.node_name.clone(),
        node_uid,
        cancel.clone(),
    ));
    tasks.spawn(super::dns::watch(
        client.clone(),
        ctx.options.namespace.clone(),
        ctx.options.cluster_domain.clone(),
        ctx.shared.dns.clone(),
        cancel.clone(),
    ));
    tasks.spawn(watch_claims(ctx.clone(), cancel.clone()));
    tasks.spawn(dispatch(ctx.clone(), cancel.clone()));
    let _ = ready.send(Ok(()));
    while tasks.join_next().await.is_some() {}
}

/// A client for the API server of KUBECONFIG.
pub(crate) async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Watches the pods, binds the unscheduled ones and feeds one worker per pod bound here.
async fn dispatch(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.options.namespace);
    let mut config = watcher::Config::default();
    if let Some(selector) = &ctx.options.selector {
        config = config.labels(selector);
    }
    let mut events = watcher(pods.clone(), config).default_backoff().boxed();
    // By uid: each worker's view of its pod (None once it is gone from the API).
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    // The uids listed since the last (re)list began.
    let mut listed: Option<HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(done) = tasks.join_next() => {
                if let Ok(uid) = done {
                    workers.remove(&uid);
                }
                continue;
            }
            event = events.next() => event,
        };
        let pod = match event {
            None => break,
            Some(Err(e)) => {
                log(&format!("watching pods: {e}"));
                continue;
            }
            Some(Ok(Event::Init)) => {
                listed = Some(HashSet::new());
                continue;
            }
            Some(Ok(Event::InitDone)) => {
                // Pods deleted while the watch was down get no Delete event.
                if let Some(listed) = listed.take() {
                    for (uid, tx) in &workers {
                        if !listed.contains(uid) {
                            tx.send_replace(None);
                        }
                    }
                }
                continue;
            }
            Some(Ok(Event::Delete(pod))) => {
                if let Some(tx) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                    tx.send_replace(None);
                }
                continue;
            }
            Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => pod,
        };
        let (Some(name), Some(uid)) = (pod.metadata.name.clone(), pod.metadata.uid.clone()) else {
            continue;
        };
        if let Some(listed) = &mut listed {
            listed.insert(uid.clone());
        }
        let spec = pod.spec.as_ref();
        match spec.and_then(|s| s.node_name.as_deref()) {
            None => {
                let ours = spec
                    .and_then(|s| s.scheduler_name.as_deref())
                    .is_none_or(|s| s == "default-scheduler");
                if ours && pod.metadata.deletion_timestamp.is_none() {
                    bind(&pods, &name, &ctx.options.node_name).await;
                }
            }
            Some(node) if node == ctx.options.node_name => {
                let pod = Arc::new(pod);
                match workers.get(&uid) {
                    Some(tx) => {
                        tx.send_replace(Some(pod));
                    }
                    None => {
                        let (tx, rx) = watch::channel(Some(pod.clone()));
                        workers.insert(uid.clone(), tx);
                        let worker = Worker::new(ctx.clone(), pod, rx, cancel.child_token());
                        tasks.spawn(async move {
                            worker.run().await;
                            uid
                        });
                    }
                }
            }
            Some(_) => {}
        }
    }
    // Stopping: every worker kills its process (the cancellation reaches them) and ends.
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
}

/// Binds pod NAME to NODE (`pods/binding`), as the scheduler does.
async fn bind(pods: &Api<Pod>, name: &str, node: &str) {
    let binding = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let bound: Result<serde_json::Value, kube::Error> = pods
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await;
    match bound {
        Ok(_) => log(&format!("bound pod {name} to node {node}")),
        // Already bound (a second event before the watch caught up), or gone.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
        Err(e) => log(&format!("binding pod {name}: {e}")),
    }
}

/// Deletes the directory of every PersistentVolumeClaim of the namespace that is deleted.
async fn watch_claims(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &ctx.options.namespace);
    let mut events = watcher(claims, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(Ok(Event::Delete(claim))) => {
                let Some(name) = claim.metadata.name else {
                    continue;
                };
                let dir = ctx.shared.claim_dir(&name);
                if dir.exists() {
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => log(&format!("claim {name} deleted: removed {}", dir.display())),
                        Err(e) => log(&format!("removing {}: {e}", dir.display())),
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => log(&format!("watching PersistentVolumeClaims: {e}")),
        }
    }
}
