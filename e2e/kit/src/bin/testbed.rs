//! `tributary-testbed`: a cluster that runs on its own, for a command that needs one.
//!
//! ```text
//! tributary-testbed [--namespace NS] [--] COMMAND [ARGS...]
//! ```
//!
//! Starts the test bed (etcd, kube-apiserver, kube-controller-manager), installs the CRDs
//! from `crds/`, runs the pods of namespace NS (default `tributary-e2e`) with the pod runner
//! and the operator (`tributary-operator`, next to this binary) as a process in the
//! runner's DNS view, as it runs in a cluster. Then it runs COMMAND in that DNS view too,
//! as a pod would, with `TRIBUTARY_E2E_KUBECONFIG` (the admin kubeconfig),
//! `TRIBUTARY_E2E_NAMESPACE` and `TRIBUTARY_E2E_BROKER_IMAGE` set, stops everything, and
//! exits with COMMAND's status. This is how the operator's e2e suite is run here the way it
//! runs on kind, against a cluster and an operator it did not start itself:
//!
//! ```text
//! cargo build -p tributary --bin tributary -p tributary-operator --bin tributary-operator \
//!     -p tributary-e2e-kit --bin tributary-testbed
//! target/debug/tributary-testbed -- cargo nextest run -p tributary-operator -j 1 \
//!     --test operated_cluster --test operated_failover --test operated_refusal
//! ```
//!
//! It needs root, as the pod runner does.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tributary_e2e_kit::{
    repo_root, PodRunner, RunnerOptions, TestEnv, BROKER_IMAGE_ENV, KUBECONFIG_ENV, NAMESPACE_ENV,
};

const USAGE: &str = "usage: tributary-testbed [--namespace NS] [--] COMMAND [ARGS...]";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tributary-testbed: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let mut namespace = "tributary-e2e".to_string();
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--namespace" => namespace = args.next().context(USAGE)?,
            "--" => {
                command = args.by_ref().collect();
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            // The command may also follow the options without `--`.
            command_start if !command_start.starts_with('-') => {
                command.push(arg);
                command.extend(args.by_ref());
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if command.is_empty() {
        bail!("no command given\n{USAGE}");
    }
    // The binaries of the build this one belongs to: target/<profile>/.
    let profile_dir = std::env::current_exe()?
        .parent()
        .context("this binary has no directory")?
        .to_path_buf();
    let broker = profile_dir.join("tributary");
    let operator = profile_dir.join("tributary-operator");
    for binary in [&broker, &operator] {
        if !binary.is_file() {
            bail!(
                "{} is missing: cargo build -p tributary --bin tributary -p tributary-operator \
                 --bin tributary-operator",
                binary.display()
            );
        }
    }

    let runtime = tokio::runtime::Runtime::new()?;
    let _entered = runtime.enter();
    let env = TestEnv::start()?;
    install_crds(&env)?;
    let runner = PodRunner::start(&env, RunnerOptions::new(&namespace, broker))?;
    eprintln!(
        "tributary-testbed: API server {}, kubeconfig {}, pods of namespace {namespace} run \
         here",
        env.api_url,
        env.kubeconfig.display()
    );
    let mut operator = runner.with_cluster_dns(|| {
        Command::new(&operator)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["--lease-namespace", "default", "--identity", "testbed"])
            // The intervals the suite's own operator process uses (operator/tests/common).
            .args(["--topic-resync-interval", "2s"])
            .args(["--group-refresh-interval", "1s"])
            .args(["--cluster-refresh-interval", "2s"])
            .env("KUBECONFIG", &env.kubeconfig)
            .env("LOG_LEVEL", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
    })??;

    let mut child = runner.with_cluster_dns(|| {
        Command::new(&command[0])
            .args(&command[1..])
            .env(KUBECONFIG_ENV, &env.kubeconfig)
            .env(NAMESPACE_ENV, &namespace)
            // Any name: the runner runs this build's broker for every image.
            .env(BROKER_IMAGE_ENV, "tributary:e2e")
            .spawn()
    })??;
    // Ctrl-C reaches the command too (same process group): wait for it to end, then stop.
    let status = runtime.block_on(async {
        let waiting = tokio::task::spawn_blocking(move || child.wait());
        tokio::select! {
            status = waiting => Ok::<_, anyhow::Error>(Some(status??)),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    })?;

    let _ = Command::new("kill")
        .args(["-TERM", &operator.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while operator.try_wait()?.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = operator.kill();
    let _ = operator.wait();
    drop(runner);
    env.stop()?;
    match status {
        Some(status) if status.success() => Ok(ExitCode::SUCCESS),
        Some(status) => {
            eprintln!("tributary-testbed: {} {status}", command[0]);
            Ok(ExitCode::from(1))
        }
        None => Ok(ExitCode::from(130)),
    }
}

/// `kubectl apply` of the CRDs in `crds/`, then waits for them to be established.
fn install_crds(env: &TestEnv) -> Result<()> {
    let crds: PathBuf = repo_root().join("crds");
    for args in [
        vec![
            "apply",
            "--server-side",
            "-f",
            crds.to_str().context("crds path")?,
        ],
        vec![
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
    ] {
        let out = env.kubectl(&args)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}
