//! The pod worker: the kubelet's part for one pod instance (one uid), from the pod's
//! first sight to its removal:
//!
//! ```text
//! sandbox: pod IP, volumes, hosts file, mount plan ──(fails: retried with back-off)
//!    │ status: podIP, PodReadyToStartContainers, Initialized, waiting ContainerCreating
//!    ▼
//! ┌─> start the container (env, argv) ──> running; probes ──> Ready / ContainersReady
//! │      │ exits / liveness or startup probe fails (SIGTERM, SIGKILL after the grace)
//! │      ▼
//! └── lastState.terminated, CrashLoopBackOff, back-off, restartCount + 1
//!
//! deletionTimestamp ──> SIGTERM, SIGKILL after the grace ──> terminal status ──> delete
//!                       (gracePeriodSeconds=0, uid precondition) ──> clean up
//! ```
//!
//! Every status write is a merge patch of `pods/status` that names the pod's uid, as the
//! kubelet's are: a write for a deleted instance never lands on its re-created namesake.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EnvVarSource, Pod, PodCondition, PodIP, PodStatus,
    Secret, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dispatch::Ctx;
use super::probe::{self, ProbeEvent, Probes};
use super::sandbox::{self, Bind, Exit, MountPlan, ProcessSlot, ProcessSpec, Sandbox};
use super::spec::{self, EnvList};
use super::volumes::relative_path;
use super::{lock, log, ContainerExit, ExitCause, PodEntry};

/// The node's address: every pod's `hostIP`.
pub(super) const HOST_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The shortest grace period a container is stopped with (the kubelet's
/// `minimumGracePeriodInSeconds`).
const MIN_GRACE: Duration = Duration::from_secs(2);

/// Why a pod worker stops running containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `deletionTimestamp` is set: stop gracefully, then remove the pod.
    Deleted,
    /// The pod is gone from the API.
    Gone,
    /// The runner stops.
    Cancelled,
}

/// Restart delays: doubling from the initial to the maximum.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// The kubelet of one pod instance (one uid).
pub(super) struct Worker {
    pub(super) ctx: Arc<Ctx>,
    api: Api<Pod>,
    pub(super) name: String,
    pub(super) uid: String,
    /// The latest version of the pod.
    pod: Arc<Pod>,
    updates: watch::Receiver<Option<Arc<Pod>>>,
    cancel: CancellationToken,
    /// The pod is gone from the API (or the dispatcher is).
    gone: bool,
    /// `<runner>/pods/<name>-<uid>`: volumes, the pod's hosts file, the overlays' scratch.
    pub(super) dir: PathBuf,
    log_path: PathBuf,
    ip: Option<IpAddr>,
    sandbox: Option<Sandbox>,
    /// The status the runner reports; `container` goes into `containerStatuses`.
    status: PodStatus,
    container: ContainerStatus,
    /// The exit code of the last container process.
    last_exit_code: Option<i32>,
}

impl Worker {
    pub(super) fn new(
        ctx: Arc<Ctx>,
        pod: Arc<Pod>,
        updates: watch::Receiver<Option<Arc<Pod>>>,
        cancel: CancellationToken,
    ) -> Worker {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let short_uid: String = uid.chars().take(8).collect();
        let dir = ctx
            .shared
            .dir
            .join("pods")
            .join(format!("{name}-{short_uid}"));
        let log_path = ctx
            .shared
            .dir
            .join("logs")
            .join(format!("{name}-{short_uid}.log"));
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .cloned()
            .unwrap_or_default();
        // A pod this node ran before the runner (re)started: its restarts go on counting.
        let previous = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first());
        let restart_count = previous.map_or(0, |c| {
            let ran = c
                .state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some());
            c.restart_count + i32::from(ran)
        });
        Worker {
            api: Api::namespaced(ctx.client.clone(), &ctx.options.namespace),
            ctx,
            name,
            uid,
            updates,
            cancel,
            gone: false,
            dir,
            log_path,
            ip: None,
            sandbox: None,
            status: PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            },
            container: ContainerStatus {
                name: container.name.clone(),
                image: container.image.clone().unwrap_or_default(),
                image_id: "tributary-pod-runner://image".into(),
                ready: false,
                started: Some(false),
                restart_count,
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ContainerCreating".into()),
                        message: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            pod,
            last_exit_code: None,
        }
    }

    pub(super) async fn run(mut self) {
        let stop = self.lifecycle().await;
        self.finish(stop).await;
    }

    fn stop(&self) -> Option<Stop> {
        if self.cancel.is_cancelled() {
            Some(Stop::Cancelled)
        } else if self.gone {
            Some(Stop::Gone)
        } else if self.pod.metadata.deletion_timestamp.is_some() {
            Some(Stop::Deleted)
        } else {
            None
        }
    }

    fn take_update(&mut self, changed: Result<(), watch::error::RecvError>) {
        match changed {
            Ok(()) => match self.updates.borrow_and_update().clone() {
                Some(pod) => self.pod = pod,
                None => self.gone = true,
            },
            Err(_) => self.gone = true,
        }
    }

    /// Waits DELAY, or less if the pod is to stop.
    async fn wait_or_stop(&mut self, delay: Duration) -> Option<Stop> {
        let deadline = Instant::now() + delay;
        loop {
            if let Some(stop) = self.stop() {
                return Some(stop);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = self.cancel.cancelled() => {}
                changed = self.updates.changed(), if !self.gone => self.take_update(changed),
            }
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            self.ctx.options.restart_backoff_initial,
            self.ctx.options.restart_backoff_max,
        )
    }

    async fn lifecycle(&mut self) -> Stop {
        let mut backoff = self.backoff();
        loop {
            if let Some(stop) = self.stop() {
                return stop;
            }
            match self.create_sandbox().await {
                Ok(()) => break,
                Err(e) => {
                    log(&format!("pod {}: {e:#}", self.name));
                    self.set_waiting("ContainerCreating", Some(format!("{e:#}")));
                    self.patch().await;
                    if let Some(stop) = self.wait_or_stop(backoff.next()).await {
                        return stop;
                    }
                }
            }
        }
        let mut backoff = self.backoff();
        loop {
            if let Some(stop) = self.stop() {
                return stop;
            }
            let (process, probes) = match self.start_container().await {
                Ok(started) => started,
                Err(e) => {
                    log(&format!("pod {}: {e:#}", self.name));
                    self.set_waiting("CreateContainerConfigError", Some(format!("{e:#}")));
                    self.patch().await;
                    if let Some(stop) = self.wait_or_stop(backoff.next()).await {
                        return stop;
                    }
                    continue;
                }
            };
            let started_at = Instant::now();
            let (cause, exit) = self.supervise(&process, probes).await;
            self.record_exit(&process, cause, &exit);
            match cause {
                ExitCause::PodDeleted => return Stop::Deleted,
                ExitCause::PodGone => return Stop::Gone,
                ExitCause::RunnerStopped => return Stop::Cancelled,
                ExitCause::Exited | ExitCause::LivenessProbe | ExitCause::StartupProbe => {}
            }
            let policy = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.clone())
                .unwrap_or_else(|| "Always".into());
            let restart = match policy.as_str() {
                "Never" => false,
                "OnFailure" => exit.exit_code() != 0 || cause != ExitCause::Exited,
                _ => true,
            };
            if !restart {
                self.status.phase = Some(terminal_phase(exit.exit_code()).into());
                self.patch().await;
                loop {
                    if let Some(stop) = self.wait_or_stop(Duration::from_secs(3600)).await {
                        return stop;
                    }
                }
            }
            if started_at.elapsed() >= self.ctx.options.restart_backoff_max * 2 {
                backoff.reset();
            }
            let delay = backoff.next();
            self.set_waiting(
                "CrashLoopBackOff",
                Some(format!(
                    "back-off {delay:?} restarting failed container={} pod={}",
                    self.container.name, self.name
                )),
            );
            self.patch().await;
            if let Some(stop) = self.wait_or_stop(delay).await {
                return stop;
            }
            self.container.restart_count += 1;
        }
    }

    /// The pod's IP, volumes, hosts file and sandbox thread.
    async fn create_sandbox(&mut self) -> Result<()> {
        let pod = self.pod.clone();
        let container = spec::single_container(&pod)?;
        // Refused here rather than at every start.
        Probes::of(container)?;
        let pod_spec = pod.spec.as_ref().context("pod has no spec")?;
        let ns = &self.ctx.options.namespace;

        // The IP first: the downward API of a projected volume may name it.
        let ip = match self.ip {
            Some(ip) => ip,
            None => {
                let mut ports: Vec<u16> = container
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| u16::try_from(p.container_port).ok())
                    .collect();
                for listener in &self.ctx.options.listener_env {
                    if let Some(port) = listener.port(container, &EnvList::default()) {
                        ports.push(port);
                    }
                }
                ports.sort_unstable();
                ports.dedup();
                let ip = lock(&self.ctx.shared.ips).allocate(&ports)?;
                self.ip = Some(ip);
                ip
            }
        };

        let volumes = self.prepare_volumes(&pod, ip).await?;
        let image = &self.ctx.options.image;
        let mut binds = Vec::new();
        for (path, file) in &image.files {
            binds.push(Bind {
                source: file.clone(),
                target: PathBuf::from(path),
                read_only: true,
            });
        }
        for path in &image.dirs {
            // The container's writable layer at PATH: empty and the pod's own.
            let layer = self.dir.join("layer").join(path.trim_start_matches('/'));
            std::fs::create_dir_all(&layer)?;
            binds.push(Bind {
                source: layer,
                target: PathBuf::from(path),
                read_only: false,
            });
        }
        let mut mounts: Vec<Bind> = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let (source, read_only) = volumes.get(&mount.name).with_context(|| {
                format!("volumeMount {:?} names no volume of the pod", mount.name)
            })?;
            if mount
                .sub_path_expr
                .as_deref()
                .is_some_and(|s| !s.is_empty())
            {
                bail!("subPathExpr is not supported by the pod runner");
            }
            let source = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub_path) => {
                    let relative = relative_path(sub_path)?;
                    let path = source.join(relative);
                    if !path.exists() {
                        std::fs::create_dir_all(&path)?;
                    }
                    path
                }
                None => source.clone(),
            };
            mounts.push(Bind {
                source,
                target: PathBuf::from(&mount.mount_path),
                read_only: *read_only || mount.read_only.unwrap_or(false),
            });
        }
        // Outer mount points before the ones inside them.
        mounts.sort_by_key(|b| b.target.components().count());
        binds.extend(mounts);

        // The pod's own names, as the kubelet writes them into its /etc/hosts.
        let hostname = pod_spec
            .hostname
            .clone()
            .unwrap_or_else(|| self.name.chars().take(63).collect());
        let mut own_names = Vec::new();
        if let Some(subdomain) = pod_spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            own_names.push(format!(
                "{hostname}.{subdomain}.{ns}.svc.{}",
                self.ctx.options.cluster_domain
            ));
        }
        own_names.push(hostname.clone());
        std::fs::create_dir_all(&self.dir)?;
        let hosts = self.dir.join("etc-hosts");
        self.ctx
            .shared
            .dns
            .add_pod(&self.uid, hosts.clone(), ip, own_names)?;
        let hostname_file = self.dir.join("etc-hostname");
        std::fs::write(&hostname_file, format!("{hostname}\n"))?;
        binds.push(Bind {
            source: hosts,
            target: PathBuf::from("/etc/hosts"),
            read_only: false,
        });
        binds.push(Bind {
            source: hostname_file,
            target: PathBuf::from("/etc/hostname"),
            read_only: false,
        });

        let scratch = self.dir.join("scratch");
        std::fs::create_dir_all(&scratch)?;
        let plan = MountPlan {
            scratch,
            overlays: sandbox::overlays_for(&binds, |p| p.exists())?,
            binds,
        };
        if self.sandbox.is_none() {
            let sandbox =
                Sandbox::create(&self.name, hostname, plan, self.ctx.setpriv.clone()).await?;
            self.sandbox = Some(sandbox);
        }
        lock(&self.ctx.shared.pods).insert(
            self.name.clone(),
            PodEntry {
                uid: self.uid.clone(),
                ip,
                process: None,
                log: self.log_path.clone(),
            },
        );
        log(&format!(
            "pod {} ({}): sandbox ready, IP {ip}",
            self.name, self.uid
        ));

        self.status.start_time = Some(now());
        self.status.host_ip = Some(HOST_IP.to_string());
        self.status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: HOST_IP.to_string(),
        }]);
        self.status.pod_ip = Some(ip.to_string());
        self.status.pod_ips = Some(vec![PodIP { ip: ip.to_string() }]);
        self.set_condition("PodReadyToStartContainers", true);
        self.set_condition("Initialized", true);
        self.set_condition("ContainersReady", false);
        self.set_condition("Ready", false);
        self.set_waiting("ContainerCreating", None);
        self.patch().await;
        Ok(())
    }

    /// Starts the container: its environment and command line, the process, the status.
    async fn start_container(&mut self) -> Result<(Arc<ProcessSlot>, Probes)> {
        let pod = self.pod.clone();
        let container = spec::single_container(&pod)?;
        let probes = Probes::of(container)?;
        let env = self.container_env(&pod, container).await?;
        let image = &self.ctx.options.image;
        let argv = spec::argv(container, image, &env)?;
        let cwd = container
            .working_dir
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| image.working_dir.clone());
        let mut log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(
            log_file,
            "===== pod-runner: pod {} ({}) container {:?}, restartCount {}: {:?}",
            self.name, self.uid, container.name, self.container.restart_count, argv
        )?;
        let sandbox = self.sandbox.as_ref().context("no sandbox")?;
        let process = sandbox
            .start(ProcessSpec {
                argv: argv.clone(),
                env: env.vars().to_vec(),
                cwd,
                log: log_file,
            })
            .await?;
        lock(&self.ctx.shared.processes).push(process.clone());
        if let Some(entry) = lock(&self.ctx.shared.pods).get_mut(&self.name) {
            if entry.uid == self.uid {
                entry.process = Some(process.clone());
            }
        }
        log(&format!(
            "pod {}: started pid {} (restartCount {})",
            self.name, process.pid, self.container.restart_count
        ));
        self.container.container_id = Some(format!(
            "tributary-pod-runner://{}/{}",
            self.uid, self.container.restart_count
        ));
        self.container.state = Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now()),
            }),
            ..Default::default()
        });
        self.container.ready = false;
        self.container.started = Some(false);
        self.status.phase = Some("Running".into());
        self.set_condition("ContainersReady", false);
        self.set_condition("Ready", false);
        self.patch().await;
        Ok((process, probes))
    }

    /// The container's environment, in the kubelet's order: host name, image, the runner's
    /// extra variables, service links, `envFrom` and `env`, then the listener variables.
    async fn container_env(&self, pod: &Pod, container: &Container) -> Result<EnvList> {
        let client = &self.ctx.client;
        let ns = &self.ctx.options.namespace;
        let ip = self.ip.context("no pod IP")?;
        let pod_spec = pod.spec.as_ref().context("pod has no spec")?;
        let hostname = pod_spec
            .hostname
            .clone()
            .unwrap_or_else(|| self.name.chars().take(63).collect());

        let mut env = EnvList::default();
        env.set("HOSTNAME", hostname);
        for (k, v) in &self.ctx.options.image.env {
            env.set(k, v.clone());
        }
        for (k, v) in &self.ctx.options.extra_env {
            env.set(k, v.clone());
        }

        // Service links: the `kubernetes` Service always, the namespace's unless disabled.
        let mut services: Vec<Service> = Vec::new();
        if let Some(master) = Api::<Service>::namespaced(client.clone(), "default")
            .get_opt("kubernetes")
            .await?
        {
            services.push(master);
        }
        if pod_spec.enable_service_links != Some(false) {
            let list = Api::<Service>::namespaced(client.clone(), ns)
                .list(&Default::default())
                .await?;
            services.retain(|s| {
                !list
                    .items
                    .iter()
                    .any(|l| l.metadata.name == s.metadata.name)
            });
            services.extend(list.items);
        }
        let service_env = spec::service_links(&services);
        let service_lookup = |name: &str| {
            service_env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };

        let mut own = EnvList::default();
        for from in container.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(source) = &from.config_map_ref {
                match Api::<ConfigMap>::namespaced(client.clone(), ns)
                    .get_opt(&source.name)
                    .await?
                {
                    Some(cm) => {
                        for (k, v) in cm.data.into_iter().flatten() {
                            own.set(&format!("{prefix}{k}"), v);
                        }
                    }
                    None if source.optional == Some(true) => {}
                    None => bail!("configmap {:?} not found (envFrom)", source.name),
                }
            }
            if let Some(source) = &from.secret_ref {
                match Api::<Secret>::namespaced(client.clone(), ns)
                    .get_opt(&source.name)
                    .await?
                {
                    Some(secret) => {
                        for (k, v) in secret.data.into_iter().flatten() {
                            own.set(
                                &format!("{prefix}{k}"),
                                String::from_utf8_lossy(&v.0).into_owned(),
                            );
                        }
                    }
                    None if source.optional == Some(true) => {}
                    None => bail!("secret {:?} not found (envFrom)", source.name),
                }
            }
        }
        for var in container.env.iter().flatten() {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) if !value.is_empty() => Some(spec::expand(value, |name| {
                    own.get(name)
                        .map(str::to_string)
                        .or_else(|| service_lookup(name))
                })),
                (_, Some(from)) => self
                    .value_from(pod, from, ip)
                    .await
                    .with_context(|| format!("env {:?}", var.name))?,
                _ => Some(String::new()),
            };
            if let Some(value) = value {
                own.set(&var.name, value);
            }
        }
        for (k, v) in service_env.iter() {
            if own.get(k).is_none() {
                env.set(k, v.clone());
            }
        }
        for (k, v) in own.vars() {
            env.set(k, v.clone());
        }
        for listener in &self.ctx.options.listener_env {
            if let Some(port) = listener.port(container, &env) {
                env.set(&listener.var, listener.value(ip, port));
            }
        }
        Ok(env)
    }

    /// A `valueFrom`; None for an optional reference to something missing.
    async fn value_from(
        &self,
        pod: &Pod,
        from: &EnvVarSource,
        ip: IpAddr,
    ) -> Result<Option<String>> {
        let client = &self.ctx.client;
        let ns = &self.ctx.options.namespace;
        if let Some(field) = &from.field_ref {
            return spec::field_ref(pod, &field.field_path, ip, HOST_IP).map(Some);
        }
        if let Some(key) = &from.config_map_key_ref {
            let optional = key.optional == Some(true);
            let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_opt(&key.name)
                .await?;
            let value = cm.and_then(|cm| cm.data.and_then(|mut d| d.remove(&key.key)));
            return match value {
                Some(v) => Ok(Some(v)),
                None if optional => Ok(None),
                None => bail!("key {:?} of configmap {:?} not found", key.key, key.name),
            };
        }
        if let Some(key) = &from.secret_key_ref {
            let optional = key.optional == Some(true);
            let secret = Api::<Secret>::namespaced(client.clone(), ns)
                .get_opt(&key.name)
                .await?;
            let value = secret.and_then(|s| s.data.and_then(|mut d| d.remove(&key.key)));
            return match value {
                Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
                None if optional => Ok(None),
                None => bail!("key {:?} of secret {:?} not found", key.key, key.name),
            };
        }
        bail!("resourceFieldRef is not supported by the pod runner")
    }

    /// Runs until the container process exits: probes, deletion, liveness restarts, the
    /// runner's stop. Returns why it ended and how.
    async fn supervise(&mut self, process: &Arc<ProcessSlot>, probes: Probes) -> (ExitCause, Exit) {
        let probe_cancel = self.cancel.child_token();
        let (probe_tx, mut probe_rx) = mpsc::channel(16);
        let ip = self.ip.unwrap_or(HOST_IP);
        let liveness_grace = probes
            .liveness
            .as_ref()
            .and_then(|p| p.termination_grace_seconds);
        let startup_grace = probes
            .startup
            .as_ref()
            .and_then(|p| p.termination_grace_seconds);
        let probe_task = tokio::spawn(probe::run(probes, ip, probe_tx, probe_cancel.clone()));
        // Why the process is being stopped, once it is.
        let mut stopping: Option<ExitCause> = None;
        // When a SIGTERM turns into a SIGKILL.
        let mut kill_at: Option<Instant> = None;
        let mut killed = false;
        let mut probes_open = true;
        let exit = loop {
            match self.stop() {
                Some(Stop::Cancelled | Stop::Gone) if !killed => {
                    process.signal(Signal::SIGKILL);
                    killed = true;
                    stopping = Some(if self.cancel.is_cancelled() {
                        ExitCause::RunnerStopped
                    } else {
                        ExitCause::PodGone
                    });
                }
                Some(Stop::Deleted) if stopping != Some(ExitCause::PodDeleted) && !killed => {
                    let grace = self.deletion_grace();
                    log(&format!(
                        "pod {} deleted: SIGTERM to pid {}, SIGKILL after {grace:?}",
                        self.name, process.pid
                    ));
                    process.signal(Signal::SIGTERM);
                    let at = Instant::now() + grace;
                    kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                    stopping = Some(ExitCause::PodDeleted);
                }
                _ => {}
            }
            let sigkill_due = kill_at.filter(|_| !killed);
            tokio::select! {
                // A started process had a sandbox to start in, which stays until `finish`.
                exit = self.sandbox.as_mut().expect("a started container has a sandbox").exits.recv() => {
                    break exit.unwrap_or_else(|| Exit {
                        status: std::process::ExitStatus::from_raw(Signal::SIGKILL as i32),
                        finished_at: Timestamp::now(),
                    });
                }
                event = probe_rx.recv(), if probes_open => match event {
                    None => probes_open = false,
                    Some(ProbeEvent::Started) => {
                        self.container.started = Some(true);
                        self.patch().await;
                    }
                    Some(ProbeEvent::Ready(ready)) => {
                        log(&format!("pod {}: ready {ready}", self.name));
                        self.container.ready = ready;
                        self.set_condition("ContainersReady", ready);
                        self.set_condition("Ready", ready);
                        self.patch().await;
                    }
                    Some(ProbeEvent::LivenessFailed(why)) if stopping.is_none() => {
                        let grace = self.probe_grace(liveness_grace);
                        log(&format!(
                            "pod {}: liveness probe failed ({why}): SIGTERM to pid {}, SIGKILL after {grace:?}",
                            self.name, process.pid
                        ));
                        process.signal(Signal::SIGTERM);
                        kill_at = Some(Instant::now() + grace);
                        stopping = Some(ExitCause::LivenessProbe);
                    }
                    Some(ProbeEvent::StartupFailed(why)) if stopping.is_none() => {
                        let grace = self.probe_grace(startup_grace);
                        log(&format!(
                            "pod {}: startup probe failed ({why}): SIGTERM to pid {}, SIGKILL after {grace:?}",
                            self.name, process.pid
                        ));
                        process.signal(Signal::SIGTERM);
                        kill_at = Some(Instant::now() + grace);
                        stopping = Some(ExitCause::StartupProbe);
                    }
                    Some(_) => {}
                },
                _ = tokio::time::sleep_until(sigkill_due.unwrap_or_else(Instant::now)), if sigkill_due.is_some() => {
                    log(&format!("pod {}: grace period over, SIGKILL to pid {}", self.name, process.pid));
                    process.signal(Signal::SIGKILL);
                    killed = true;
                }
                changed = self.updates.changed(), if !self.gone => self.take_update(changed),
                _ = self.cancel.cancelled(), if !killed => {}
            }
        };
        probe_cancel.cancel();
        let _ = probe_task.await;
        // A process the runner's stop killed (it cancels, then kills) before this loop saw
        // the cancellation did not crash.
        if stopping.is_none() && self.cancel.is_cancelled() {
            stopping = Some(ExitCause::RunnerStopped);
        }
        (stopping.unwrap_or(ExitCause::Exited), exit)
    }

    /// The grace period of a probe's restart: the probe's own, else the pod's.
    fn probe_grace(&self, probe_seconds: Option<i64>) -> Duration {
        probe_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or_else(|| self.termination_grace())
            .max(MIN_GRACE)
    }

    /// `spec.terminationGracePeriodSeconds`, 30 s by default.
    fn termination_grace(&self) -> Duration {
        let seconds = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(seconds.max(0) as u64)
    }

    /// The grace period of the pod's deletion: `metadata.deletionGracePeriodSeconds`.
    fn deletion_grace(&self) -> Duration {
        self.pod
            .metadata
            .deletion_grace_period_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or_else(|| self.termination_grace())
            .max(MIN_GRACE)
    }

    /// Records a process's end in the history and the container status.
    fn record_exit(&mut self, process: &ProcessSlot, cause: ExitCause, exit: &Exit) {
        let code = exit.exit_code();
        self.last_exit_code = Some(code);
        log(&format!(
            "pod {}: pid {} exited with code {code} ({cause:?})",
            self.name, process.pid
        ));
        lock(&self.ctx.shared.exits).push(ContainerExit {
            pod: self.name.clone(),
            uid: self.uid.clone(),
            pid: process.pid,
            restart_count: self.container.restart_count,
            exit_code: code,
            signal: exit.status.signal(),
            cause,
        });
        lock(&self.ctx.shared.processes).retain(|p| p.pid != process.pid);
        let started_at = self
            .container
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone());
        let terminated = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                signal: exit.status.signal(),
                reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                started_at,
                finished_at: Some(Time(exit.finished_at)),
                container_id: self.container.container_id.clone(),
                message: None,
            }),
            ..Default::default()
        };
        self.container.last_state = Some(terminated.clone());
        self.container.state = Some(terminated);
        self.container.ready = false;
        self.container.started = Some(false);
        self.set_condition("ContainersReady", false);
        self.set_condition("Ready", false);
    }

    /// After the last container: the terminal status and removal of a deleted pod, and the
    /// runner's resources in every case.
    async fn finish(&mut self, stop: Stop) {
        if stop == Stop::Deleted {
            if let Some(code) = self.last_exit_code {
                self.status.phase = Some(terminal_phase(code).into());
            } else {
                self.status.phase = Some("Failed".into());
            }
            self.set_condition("ContainersReady", false);
            self.set_condition("Ready", false);
            self.patch().await;
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.api.delete(&self.name, &params).await {
                Ok(_) => log(&format!("pod {} ({}) removed", self.name, self.uid)),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => log(&format!("removing pod {}: {e}", self.name)),
            }
        }
        // The sandbox thread ends once its channel closes (its process has exited).
        self.sandbox = None;
        self.ctx.shared.dns.remove_pod(&self.uid);
        if let Some(ip) = self.ip.take() {
            lock(&self.ctx.shared.ips).release(ip);
        }
        {
            let mut pods = lock(&self.ctx.shared.pods);
            if pods.get(&self.name).is_some_and(|p| p.uid == self.uid) {
                pods.remove(&self.name);
            }
        }
        // Volumes, layers and hosts file; claims live elsewhere and the log stays.
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log(&format!("removing {}: {e}", self.dir.display()));
            }
        }
    }

    fn set_waiting(&mut self, reason: &str, message: Option<String>) {
        self.container.state = Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message,
            }),
            ..Default::default()
        });
    }

    /// Sets condition TYPE_, moving its transition time only when its status changes.
    fn set_condition(&mut self, type_: &str, status: bool) {
        let value = if status { "True" } else { "False" };
        let conditions = self.status.conditions.get_or_insert_with(Vec::new);
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == value => {}
            Some(c) => {
                c.status = value.into();
                c.last_transition_time = Some(now());
            }
            None => conditions.push(PodCondition {
                type_: type_.into(),
                status: value.into(),
                last_transition_time: Some(now()),
                ..Default::default()
            }),
        }
    }

    /// Writes the status (a merge patch naming the uid), unless the runner is stopping or
    /// the pod is gone. Conditions the runner does not own (`PodScheduled`,
    /// `DisruptionTarget`) are carried over from the latest pod.
    async fn patch(&mut self) {
        if self.cancel.is_cancelled() || self.gone {
            return;
        }
        let mut status = self.status.clone();
        let ours: Vec<String> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.clone())
            .collect();
        let mut conditions: Vec<PodCondition> = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !ours.contains(&c.type_))
            .collect();
        conditions.extend(status.conditions.take().unwrap_or_default());
        status.conditions = Some(conditions);
        status.container_statuses = Some(vec![self.container.clone()]);
        let patch = serde_json::json!({
            "metadata": {"uid": self.uid},
            "status": status,
        });
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // The watch brings the new version, in order with the others.
            Ok(_) => {}
            // Gone, or a re-created pod of the same name (its uid differs).
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {}
            Err(e) => log(&format!("writing the status of pod {}: {e}", self.name)),
        }
    }
}

fn terminal_phase(exit_code: i32) -> &'static str {
    if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| b.next().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next(), Duration::from_secs(1));
    }
}
