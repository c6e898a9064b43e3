//! The pod sandbox: one thread per pod that owns the pod's mount and UTS namespaces and
//! starts, waits for and reaps the pod's container processes. What a pause container and
//! the container runtime are to a kubelet.
//!
//! ```text
//! worker task ──Start(ProcessSpec)──> sandbox thread: unshare(NEWNS|NEWUTS), mounts (once)
//!      ▲                                   │ spawn setpriv --pdeathsig KILL -- argv...
//!      └────────── Exit(status) ◄──────────┘ waitid(WNOWAIT), mark exited, reap
//! ```
//!
//! Namespaces belong to threads: `unshare(2)` on this thread moves only it, and a process it
//! spawns inherits its namespaces. So the broker sees the pod's mounts and host name while
//! the test process, and every other pod, sees its own. No `pre_exec` hook is needed (the
//! workspace forbids unsafe code, and a `pre_exec` closure is unsafe): the thread itself is
//! the sandbox. The namespaces live as long as the thread or a process in them.
//!
//! `setpriv --pdeathsig KILL` (util-linux) gives each process a parent-death signal bound to
//! this thread, so a test process that is killed (or panics past its destructors) takes its
//! brokers with it.
//!
//! Signals and reaping: a pid is only valid until its process is reaped, after which it
//! may name another process. The thread waits with `WNOWAIT` (the process stays a zombie),
//! then, under [`ProcessSlot`]'s lock, marks it exited and reaps it; [`ProcessSlot::signal`]
//! signals only under that lock and only while not exited. So a signal never reaches a
//! recycled pid.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::jiff::Timestamp;
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot};

/// A bind mount of the pod's filesystem: SOURCE on this machine appears at TARGET in the
/// pod. Directories and files alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything mounted in a pod's namespace, in order.
#[derive(Debug, Clone)]
pub struct MountPlan {
    /// An empty directory of the runner's: a tmpfs goes there (inside the pod's namespace
    /// only) for the overlays' upper and work directories.
    pub scratch: PathBuf,
    /// Directories of this machine that get a writable overlay (`lowerdir` the directory
    /// itself, `upperdir` on the tmpfs): where a mount point has to be created that does
    /// not exist here (`/etc/tributary`), the overlay lets the pod create it without
    /// touching the real directory. From [`overlays_for`].
    pub overlays: Vec<PathBuf>,
    /// The bind mounts, in order: a later one may lie inside an earlier one.
    pub binds: Vec<Bind>,
}

/// The directories to overlay so that every bind target of BINDS can be created without
/// writing to this machine's filesystem; EXISTS says whether a path exists here.
///
/// A target needs nothing when it exists already, or when it lies inside an earlier bind
/// (it is created in the runner's directory that is mounted there). Otherwise its deepest
/// existing ancestor is overlaid, once: an overlay covers everything below it. `/` itself
/// is never overlaid: an overlay hides the mounts below its directory (`/proc`, `/dev`).
pub fn overlays_for(binds: &[Bind], exists: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut overlays: Vec<PathBuf> = Vec::new();
    for (i, bind) in binds.iter().enumerate() {
        let target = &bind.target;
        if !target.is_absolute()
            || target
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            bail!(
                "mount point {} is not a normalized absolute path",
                target.display()
            );
        }
        if exists(target) {
            continue;
        }
        if binds[..i]
            .iter()
            .any(|earlier| target.starts_with(&earlier.target) && *target != earlier.target)
        {
            continue;
        }
        let ancestor = target
            .ancestors()
            .skip(1)
            .find(|a| exists(a))
            .context("a path without an existing ancestor")?;
        if ancestor == Path::new("/") {
            bail!(
                "mount point {}: the pod runner does not overlay / to create it; \
                 mount at a path whose parent directory exists on this machine",
                target.display()
            );
        }
        if overlays.iter().any(|o| ancestor.starts_with(o)) {
            continue;
        }
        overlays.retain(|o| !o.starts_with(ancestor));
        overlays.push(ancestor.to_path_buf());
    }
    Ok(overlays)
}

/// A container process, for signals from any thread.
#[derive(Debug)]
pub struct ProcessSlot {
    pub pid: u32,
    /// Set, under this lock, before the process is reaped: see the module documentation.
    exited: Mutex<bool>,
}

impl ProcessSlot {
    /// Sends SIG to the process unless it has exited; false if it has.
    pub fn signal(&self, sig: Signal) -> bool {
        let exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        if *exited {
            return false;
        }
        let pid = Pid::from_raw(self.pid as i32);
        kill(pid, sig).is_ok()
    }

    pub fn exited(&self) -> bool {
        *self.exited.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How to start one container process.
pub struct ProcessSpec {
    /// The container's command line; `argv[0]` is looked up in the pod's filesystem (and
    /// PATH) by `setpriv`, so `/usr/local/bin/tributary` is the image's binary.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory, in the pod's filesystem.
    pub cwd: String,
    /// Standard output and error go here.
    pub log: File,
}

/// A container process's end.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    pub finished_at: Timestamp,
}

impl Exit {
    /// The exit code as the container runtime reports it: 128 + the signal for a process
    /// killed by one.
    pub fn exit_code(&self) -> i32 {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => -1,
        }
    }
}

type StartReply = oneshot::Sender<Result<Arc<ProcessSlot>>>;

/// A running sandbox thread. Dropping it lets the thread end once its current process has
/// exited (the owner kills that first).
pub struct Sandbox {
    starts: std::sync::mpsc::Sender<(ProcessSpec, StartReply)>,
    /// One message per process that ends, in order.
    pub exits: mpsc::UnboundedReceiver<Exit>,
}

impl Sandbox {
    /// Starts the sandbox thread for POD (a name for the thread and the errors): new mount
    /// and UTS namespaces, HOSTNAME, the mounts of PLAN. SETPRIV is util-linux's `setpriv`.
    pub async fn create(
        pod: &str,
        hostname: String,
        plan: MountPlan,
        setpriv: PathBuf,
    ) -> Result<Sandbox> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (start_tx, start_rx) = std::sync::mpsc::channel::<(ProcessSpec, StartReply)>();
        let (exit_tx, exit_rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(format!("pod-{pod}"))
            .spawn(move || {
                if let Err(e) = enter(&hostname, &plan) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                // Ends when the Sandbox is dropped.
                while let Ok((spec, reply)) = start_rx.recv() {
                    let (slot, child) = match spawn(&setpriv, spec) {
                        Ok(started) => started,
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    };
                    let _ = reply.send(Ok(slot.clone()));
                    let exit = wait(&slot, child);
                    let _ = exit_tx.send(exit);
                }
            })
            .context("spawning a sandbox thread")?;
        ready_rx
            .await
            .map_err(|_| anyhow!("the sandbox thread of {pod} ended while setting up"))?
            .with_context(|| format!("setting up the sandbox of pod {pod}"))?;
        Ok(Sandbox {
            starts: start_tx,
            exits: exit_rx,
        })
    }

    /// Starts a process in the sandbox. One at a time: the previous one must have exited
    /// (its [`Exit`] received).
    pub async fn start(&self, spec: ProcessSpec) -> Result<Arc<ProcessSlot>> {
        let (tx, rx) = oneshot::channel();
        self.starts
            .send((spec, tx))
            .map_err(|_| anyhow!("the sandbox thread is gone"))?;
        rx.await
            .map_err(|_| anyhow!("the sandbox thread is gone"))?
    }
}

/// On the sandbox thread: the pod's namespaces and mounts.
fn enter(hostname: &str, plan: &MountPlan) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
        .context("unshare(CLONE_NEWNS | CLONE_NEWUTS) (the pod runner needs root)")?;
    // Nothing mounted here may propagate back to the machine's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private in the pod's mount namespace")?;
    nix::unistd::sethostname(hostname)
        .with_context(|| format!("setting the pod's host name {hostname:?}"))?;

    // Every source is opened before any overlay is mounted, which could cover the path to
    // it (a runner directory under an overlaid /var/lib): the binds go through the open
    // descriptors. After the unshare: a bind's source must be a mount of this namespace.
    let sources = plan
        .binds
        .iter()
        .map(|b| File::open(&b.source).with_context(|| format!("opening {}", b.source.display())))
        .collect::<Result<Vec<File>>>()?;

    if !plan.overlays.is_empty() {
        mount(
            Some("tmpfs"),
            &plan.scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0700"),
        )
        .with_context(|| format!("mounting a tmpfs on {}", plan.scratch.display()))?;
        for (i, lower) in plan.overlays.iter().enumerate() {
            let upper = plan.scratch.join(format!("{i}/upper"));
            let work = plan.scratch.join(format!("{i}/work"));
            std::fs::create_dir_all(&upper)?;
            std::fs::create_dir_all(&work)?;
            let option = |p: &Path| -> Result<String> {
                let s = p.to_str().context("overlay path is not UTF-8")?;
                if s.contains([',', ':', '\\']) {
                    bail!("overlay path {s:?} has a character overlayfs options cannot take");
                }
                Ok(s.to_string())
            };
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                option(lower)?,
                option(&upper)?,
                option(&work)?
            );
            mount(
                Some("overlay"),
                lower,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            )
            .with_context(|| format!("mounting an overlay on {}", lower.display()))?;
        }
    }

    for (bind, source) in plan.binds.iter().zip(&sources) {
        let target = &bind.target;
        let is_dir = source.metadata()?.is_dir();
        // Inside an overlay or an earlier bind (see `overlays_for`), never on the machine.
        if is_dir {
            std::fs::create_dir_all(target)
                .with_context(|| format!("creating mount point {}", target.display()))?;
        } else {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            if !target.exists() {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(target)
                    .with_context(|| format!("creating mount point {}", target.display()))?;
            }
        }
        let fd = format!("/proc/self/fd/{}", source.as_raw_fd());
        mount(
            Some(fd.as_str()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "bind-mounting {} on {}",
                bind.source.display(),
                target.display()
            )
        })?;
        if bind.read_only {
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .with_context(|| format!("making {} read-only", target.display()))?;
        }
    }
    Ok(())
}

/// On the sandbox thread: starts one process in the pod's namespaces.
fn spawn(setpriv: &Path, spec: ProcessSpec) -> Result<(Arc<ProcessSlot>, std::process::Child)> {
    let stderr = spec.log.try_clone()?;
    let child = Command::new(setpriv)
        .args(["--pdeathsig", "KILL", "--"])
        .args(&spec.argv)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(spec.log)
        .stderr(stderr)
        // Its own process group: a Ctrl-C at the terminal reaches the test, which stops
        // its brokers, and not the brokers directly.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {:?}", spec.argv))?;
    let slot = Arc::new(ProcessSlot {
        pid: child.id(),
        exited: Mutex::new(false),
    });
    Ok((slot, child))
}

/// On the sandbox thread: waits for the process to end, then reaps it (see the module
/// documentation for the order).
fn wait(slot: &ProcessSlot, mut child: std::process::Child) -> Exit {
    let pid = Pid::from_raw(slot.pid as i32);
    // Until the process has exited (or, impossibly, is not our child any more): reaped
    // below either way.
    while let Err(Errno::EINTR) = waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
    {
    }
    let mut exited = slot.exited.lock().unwrap_or_else(|e| e.into_inner());
    let status = child.wait();
    *exited = true;
    drop(exited);
    Exit {
        // A failed wait leaves no status: report it as killed.
        status: status.unwrap_or_else(|_| ExitStatus::from_raw(Signal::SIGKILL as i32)),
        finished_at: Timestamp::now(),
    }
}

/// Moves the calling thread into a new mount namespace in which HOSTS is `/etc/hosts`:
/// what [`super::PodRunner::with_cluster_dns`] runs its closure in.
pub fn enter_dns_namespace(hosts: &Path) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS) (the pod runner needs root)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private in the client's mount namespace")?;
    // Opened in the new namespace: a bind's source must be a mount of the caller's own.
    let source = File::open(hosts).with_context(|| format!("opening {}", hosts.display()))?;
    let fd = format!("/proc/self/fd/{}", source.as_raw_fd());
    mount(
        Some(fd.as_str()),
        "/etc/hosts",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("bind-mounting the runner's hosts file on /etc/hosts")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn bind(target: &str) -> Bind {
        Bind {
            source: PathBuf::from("/runner/x"),
            target: PathBuf::from(target),
            read_only: false,
        }
    }

    fn overlays(targets: &[&str], existing: &[&str]) -> Result<Vec<String>> {
        let existing: BTreeSet<PathBuf> = existing.iter().map(PathBuf::from).collect();
        let binds: Vec<Bind> = targets.iter().map(|t| bind(t)).collect();
        Ok(overlays_for(&binds, |p| existing.contains(p))?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect())
    }

    #[test]
    fn overlays_cover_missing_mount_points_once() {
        let host = [
            "/",
            "/etc",
            "/etc/hosts",
            "/usr",
            "/usr/local",
            "/usr/local/bin",
            "/var",
            "/var/lib",
        ];
        // The broker image and a StatefulSet's mounts.
        assert_eq!(
            overlays(
                &[
                    "/usr/local/bin/tributary",
                    "/etc/tributary/server.properties",
                    "/var/lib/tributary",
                    "/etc/tributary",
                    "/var/lib/tributary/data",
                    "/etc/hosts",
                ],
                &host
            )
            .unwrap(),
            ["/usr/local/bin", "/etc", "/var/lib"]
        );
        // Inside an earlier bind: created in the runner's directory, no overlay.
        assert_eq!(
            overlays(&["/var/lib/x", "/var/lib/x/y/z"], &host).unwrap(),
            ["/var/lib"]
        );
        assert_eq!(
            overlays(&["/etc/hosts", "/var/lib"], &host).unwrap(),
            Vec::<String>::new()
        );
        // A shallower overlay replaces a deeper one.
        assert_eq!(
            overlays(&["/usr/local/bin/a/b", "/usr/share/x"], &host).unwrap(),
            ["/usr"]
        );
    }

    #[test]
    fn overlays_refuse_root_and_relative_paths() {
        let host = ["/", "/etc"];
        assert!(overlays(&["/data"], &host).is_err());
        assert!(overlays(&["etc/x"], &host).is_err());
        assert!(overlays(&["/etc/../data"], &host).is_err());
    }
}
