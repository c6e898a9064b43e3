//! End-to-end test support: a real Kubernetes control plane, and a pod runner that plays
//! the kubelet for it with real broker processes.
//!
//! - [`TestEnv`] (this file): etcd, kube-apiserver (RBAC on) and kube-controller-manager on
//!   127.0.0.1, started by `scripts/k8s-testenv.sh` from binaries built from Go modules (see
//!   `e2e/testenv/README.md`). No kubelet runs: Pods are accepted and scheduled by nothing,
//!   but every API object, the garbage collector, namespace deletion, the workload
//!   controllers and ServiceAccount tokens behave as in a cluster.
//! - [`pod_runner`]: [`PodRunner`] registers a Node, binds the pods of a namespace to it and
//!   runs each as a `tributary` process in its own mount namespace, with a loopback pod IP,
//!   hosts-file DNS, probes, restarts and graceful deletion.
//!
//! ```no_run
//! let env = tributary_e2e_kit::TestEnv::start()?;
//! let out = env.kubectl(["get", "namespaces"])?;
//! assert!(out.status.success());
//! # anyhow::Ok(())
//! ```
//!
//! `TestEnv` stops the control plane and removes its directory when dropped. A test process
//! that is killed before that leaves nothing behind either: the script's watcher, started
//! with `--watch-pid` of this process, runs `down` when the process is gone.
//!
//! - [`ExistingCluster`]: instead of all that, a cluster that runs already (kind in the
//!   GitHub workflow, with the operator installed by the chart), named by
//!   [`KUBECONFIG_ENV`]. The operator's e2e suite runs against it unchanged.

pub mod pod_runner;

pub use pod_runner::{PodRunner, RunnerOptions};

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// Setting this environment variable (to anything) keeps the test bed's directory, with its
/// logs, after the test: `down --keep`.
pub const KEEP_ENV: &str = "TRIBUTARY_TESTENV_KEEP";

/// The kubeconfig of an existing cluster to run the e2e suite against instead of starting a
/// control plane: a path, or `in-cluster` for the ServiceAccount of the pod the suite runs
/// in. Kafka clients reach the brokers by their pod DNS names, so on a real cluster the suite
/// runs inside it (`e2e/kind/e2e-job.yaml`).
pub const KUBECONFIG_ENV: &str = "TRIBUTARY_E2E_KUBECONFIG";
/// With [`KUBECONFIG_ENV`]: the namespace the tests work in, created if missing; default
/// `tributary-e2e`. Each test names its resources apart from the others'.
pub const NAMESPACE_ENV: &str = "TRIBUTARY_E2E_NAMESPACE";
/// With [`KUBECONFIG_ENV`]: the broker image the tests' Clusters run (pulled `Never`: an
/// image loaded into the nodes, as `kind load` does); default: the operator's default.
pub const BROKER_IMAGE_ENV: &str = "TRIBUTARY_E2E_BROKER_IMAGE";

/// A cluster that runs already, with the operator installed, as [`KUBECONFIG_ENV`] names it.
#[derive(Clone)]
pub struct ExistingCluster {
    pub client: kube::Client,
    /// The tests' namespace ([`NAMESPACE_ENV`]).
    pub namespace: String,
    /// The broker image for the tests' Clusters ([`BROKER_IMAGE_ENV`]).
    pub broker_image: Option<String>,
}

impl ExistingCluster {
    /// The cluster [`KUBECONFIG_ENV`] names, or `None` when it is not set.
    pub async fn from_env() -> Result<Option<ExistingCluster>> {
        let Some(source) = std::env::var_os(KUBECONFIG_ENV).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let config = if source == "in-cluster" {
            kube::Config::incluster().context("the pod's in-cluster configuration")?
        } else {
            let path = PathBuf::from(&source);
            let kubeconfig = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading {} ({KUBECONFIG_ENV})", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        };
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Some(ExistingCluster {
            client: kube::Client::try_from(config)?,
            namespace: non_empty(NAMESPACE_ENV).unwrap_or_else(|| "tributary-e2e".into()),
            broker_image: non_empty(BROKER_IMAGE_ENV),
        }))
    }

    /// Creates the tests' namespace unless it exists.
    pub async fn ensure_namespace(&self) -> Result<()> {
        use k8s_openapi::api::core::v1::Namespace;
        let namespaces: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(self.namespace.clone());
        match namespaces.create(&Default::default(), &namespace).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("creating namespace {}", self.namespace)),
        }
    }
}

/// A running control plane, stopped when dropped.
pub struct TestEnv {
    /// The admin kubeconfig (client certificate in `system:masters`, context
    /// `tributary-testenv`).
    pub kubeconfig: PathBuf,
    /// The test bed's directory: `kubeconfig`, `env`, `pki/`, `logs/`, etcd's data.
    pub dir: PathBuf,
    /// Where `etcd`, `kube-apiserver`, `kube-controller-manager`, `kubectl` and `helm` are.
    pub bin_dir: PathBuf,
    /// The API server's URL, `https://127.0.0.1:PORT`.
    pub api_url: String,
    /// The CA certificate that the API server's serving certificate chains to.
    pub ca_cert: PathBuf,
    stopped: bool,
    // Removes the directory if `down` could not; kept alive as long as the control plane.
    _tempdir: Option<tempfile::TempDir>,
}

impl TestEnv {
    /// Starts a control plane in a new temporary directory, building the binaries first if
    /// they are not in the cache (a cold build takes long; `scripts/setup.sh` does it ahead).
    pub fn start() -> Result<TestEnv> {
        let script = script_path();
        let bin_dir = match run_script(&script, &["bin-dir"], Stdio::null()) {
            Ok(out) => last_line(&out.stdout)?,
            Err(_) => {
                // Not built yet: build, with the progress shown on this process's stderr.
                let out = run_script(&script, &["build"], Stdio::inherit()).context(
                    "building the Kubernetes test bed failed; run scripts/k8s-testenv.sh build",
                )?;
                last_line(&out.stdout)?
            }
        };

        let tempdir = tempfile::Builder::new()
            .prefix("tributary-testenv-")
            .tempdir()
            .context("creating the test bed's directory")?;
        let dir = tempdir.path().to_path_buf();
        let pid = std::process::id().to_string();
        let dir_arg = dir
            .to_str()
            .context("temporary directory path is not UTF-8")?;
        run_script(
            &script,
            &["up", "--dir", dir_arg, "--watch-pid", &pid],
            Stdio::piped(),
        )
        .context("starting the Kubernetes test bed (scripts/k8s-testenv.sh up)")?;

        let env_file = std::fs::read_to_string(dir.join("env"))
            .with_context(|| format!("reading {}", dir.join("env").display()))?;
        let var = |name: &str| -> Result<String> {
            env_file
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
                .with_context(|| format!("{name} missing from {}", dir.join("env").display()))
        };
        let keep = std::env::var_os(KEEP_ENV).is_some();
        Ok(TestEnv {
            kubeconfig: dir.join("kubeconfig"),
            ca_cert: dir.join("pki/ca.crt"),
            api_url: var("TESTENV_API_URL")?,
            bin_dir: PathBuf::from(bin_dir),
            dir,
            stopped: false,
            // With KEEP_ENV set, nothing removes the directory.
            _tempdir: if keep {
                let _ = tempdir.keep();
                None
            } else {
                Some(tempdir)
            },
        })
    }

    /// The path of one of the test bed's binaries.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A command for one of the test bed's binaries (`kubectl`, `helm`, ...) with KUBECONFIG
    /// set to the admin kubeconfig and kubectl's and helm's caches inside the test bed.
    pub fn command(&self, binary: &str) -> Command {
        let mut cmd = Command::new(self.bin(binary));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.join("cache/kube"))
            .env("HELM_CACHE_HOME", self.dir.join("cache/helm"))
            .env("HELM_CONFIG_HOME", self.dir.join("config/helm"))
            .env("HELM_DATA_HOME", self.dir.join("data/helm"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the test bed's kubectl with ARGS, as the admin.
    pub fn kubectl<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command("kubectl")
            .args(args)
            .output()
            .context("running kubectl")
    }

    /// Runs the test bed's helm with ARGS, as the admin.
    pub fn helm<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command("helm")
            .args(args)
            .output()
            .context("running helm")
    }

    /// A kube client for the API server, as the admin.
    pub async fn client(&self) -> Result<kube::Client> {
        pod_runner::client_for(&self.kubeconfig).await
    }

    /// Stops the control plane now, reporting a failure that `Drop` would only print.
    pub fn stop(mut self) -> Result<()> {
        self.stopped = true;
        self.down()
    }

    fn down(&self) -> Result<()> {
        let dir = self.dir.to_str().context("test bed path is not UTF-8")?;
        let mut args = vec!["down", "--dir", dir];
        if self._tempdir.is_none() {
            args.push("--keep");
        }
        run_script(&script_path(), &args, Stdio::piped()).map(|_| ())
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !self.stopped {
            if let Err(e) = self.down() {
                eprintln!(
                    "stopping the Kubernetes test bed in {}: {e:#}",
                    self.dir.display()
                );
            }
        }
    }
}

/// The repository's root (this crate is `e2e/kit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `tributary` binary of the build that runs this test: `target/<profile>/tributary`,
/// next to the test executable's `deps/` directory. `cargo nextest run --workspace` builds
/// it; a run of this crate's tests alone needs `cargo build -p tributary --bin tributary`
/// first.
pub fn broker_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test executable has no profile directory")?;
    let binary = profile_dir.join("tributary");
    if !binary.is_file() {
        bail!(
            "{} is missing: build it first with `cargo build -p tributary --bin tributary`",
            binary.display()
        );
    }
    Ok(binary)
}

/// `scripts/k8s-testenv.sh`.
pub fn script_path() -> PathBuf {
    repo_root().join("scripts/k8s-testenv.sh")
}

/// Runs the script with ARGS; its stderr goes to STDERR (or into the error when piped).
fn run_script(script: &Path, args: &[&str], stderr: Stdio) -> Result<Output> {
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}):\n{}",
            script.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(out)
}

fn last_line(stdout: &[u8]) -> Result<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .last()
        .map(str::to_owned)
        .context("the script printed nothing")
}
