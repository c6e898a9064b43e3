//! The test bed is a real control plane: versions as pinned, kube-controller-manager at work
//! (garbage collector, Deployment -> ReplicaSet -> Pods, root CA ConfigMap, namespace
//! deletion), RBAC enforced on a ServiceAccount's token, helm's kubeVersion check passing,
//! and nothing left running once the test process is gone.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tributary_e2e_kit::{script_path, TestEnv};

const K8S_VERSION: &str = "v1.36.3";
const HELM_VERSION: &str = "v4.3.2";

fn ok(what: &str, out: Output) -> Result<String> {
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn kubectl(env: &TestEnv, args: &[&str]) -> Result<String> {
    ok(&format!("kubectl {}", args.join(" ")), env.kubectl(args)?)
}

/// Polls CHECK until it returns true, for at most TIMEOUT.
fn poll(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// PID runs (a zombie that its new parent has not reaped yet does not).
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn control_plane_versions_gc_rbac_and_helm() -> Result<()> {
    let env = TestEnv::start()?;

    // The version stamp: client and server report the pinned release (helm needs it).
    let version = kubectl(&env, &["version"])?;
    for side in ["Client", "Server"] {
        let want = format!("{side} Version: {K8S_VERSION}");
        ensure!(
            version.lines().any(|l| l == want),
            "no `{want}` in:\n{version}"
        );
    }

    let ns = "kit-check";
    kubectl(&env, &["create", "namespace", ns])?;

    // kube-controller-manager runs: the garbage collector deletes a ConfigMap whose owner
    // was deleted.
    kubectl(&env, &["-n", ns, "create", "configmap", "owner"])?;
    let uid = kubectl(
        &env,
        &[
            "-n",
            ns,
            "get",
            "configmap",
            "owner",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
    )?;
    ensure!(!uid.is_empty(), "the owner has no uid");
    let dependent = env.dir.join("dependent.yaml");
    std::fs::write(
        &dependent,
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  namespace: {ns}\n  \
             ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: owner\n    \
             uid: {uid}\ndata:\n  k: v\n"
        ),
    )?;
    kubectl(&env, &["apply", "-f", dependent.to_str().unwrap()])?;
    kubectl(&env, &["-n", ns, "delete", "configmap", "owner"])?;
    poll(
        "the garbage collector to delete the dependent ConfigMap",
        Duration::from_secs(60),
        || {
            let out = env.kubectl(["-n", ns, "get", "configmap", "dependent"])?;
            if out.status.success() {
                return Ok(false);
            }
            let err = String::from_utf8_lossy(&out.stderr);
            ensure!(err.contains("NotFound"), "kubectl get failed: {err}");
            Ok(true)
        },
    )?;

    // The workload controllers: a Deployment gets a ReplicaSet and that its Pods (Pending
    // forever: no kubelet). The namespace got its root CA ConfigMap.
    kubectl(
        &env,
        &[
            "-n",
            ns,
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
        ],
    )?;
    poll("the Deployment's two Pods", Duration::from_secs(60), || {
        let pods = kubectl(
            &env,
            &["-n", ns, "get", "pods", "-l", "app=web", "-o", "name"],
        )?;
        Ok(pods.lines().count() == 2)
    })?;
    kubectl(&env, &["-n", ns, "get", "configmap", "kube-root-ca.crt"])?;

    // RBAC is enforced: a ServiceAccount's token may read ConfigMaps (a Role grants it) but
    // not Secrets.
    kubectl(&env, &["-n", ns, "create", "serviceaccount", "reader"])?;
    kubectl(
        &env,
        &[
            "-n",
            ns,
            "create",
            "role",
            "cm-reader",
            "--verb=get,list",
            "--resource=configmaps",
        ],
    )?;
    kubectl(
        &env,
        &[
            "-n",
            ns,
            "create",
            "rolebinding",
            "cm-reader",
            "--role=cm-reader",
            &format!("--serviceaccount={ns}:reader"),
        ],
    )?;
    let token = kubectl(&env, &["-n", ns, "create", "token", "reader"])?;
    let as_reader = |args: &[&str]| -> Result<Output> {
        env.command("kubectl")
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig=/dev/null")
            .arg(format!("--server={}", env.api_url))
            .arg(format!("--certificate-authority={}", env.ca_cert.display()))
            .arg(format!("--token={}", token.trim()))
            .args(args)
            .output()
            .context("running kubectl")
    };
    ok(
        "list configmaps as the reader",
        as_reader(&["-n", ns, "get", "configmaps"])?,
    )?;
    let denied = as_reader(&["-n", ns, "get", "secrets"])?;
    let err = String::from_utf8_lossy(&denied.stderr);
    ensure!(
        !denied.status.success() && err.contains("Forbidden"),
        "listing secrets as the reader was not forbidden: {err}"
    );

    // helm, whose kubeVersion check reads the server's stamped version.
    let helm_version = ok("helm version", env.helm(["version", "--short"])?)?;
    ensure!(
        helm_version.starts_with(HELM_VERSION),
        "helm version: {helm_version}"
    );
    let chart = env.dir.join("chart");
    std::fs::create_dir_all(chart.join("templates"))?;
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: smoke\nversion: 0.1.0\nkubeVersion: \">= 1.36.0-0\"\n",
    )?;
    std::fs::write(
        chart.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  \
         kube: {{ .Capabilities.KubeVersion.Version | quote }}\n",
    )?;
    ok(
        "helm install",
        env.helm(["install", "smoke", chart.to_str().unwrap(), "-n", ns])?,
    )?;
    let kube = kubectl(
        &env,
        &[
            "-n",
            ns,
            "get",
            "configmap",
            "smoke",
            "-o",
            "jsonpath={.data.kube}",
        ],
    )?;
    ensure!(kube == K8S_VERSION, "helm saw Kubernetes {kube}");

    // Namespace deletion (the namespace controller empties it, then removes it).
    kubectl(&env, &["delete", "namespace", ns, "--wait=false"])?;
    poll(
        "the namespace to be deleted",
        Duration::from_secs(90),
        || {
            let out = env.kubectl(["get", "namespace", ns])?;
            Ok(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"))
        },
    )?;

    // Stopping ends every process and removes the directory.
    let pids: Vec<String> = ["etcd", "kube-apiserver", "kube-controller-manager"]
        .iter()
        .map(|n| std::fs::read_to_string(env.dir.join(format!("pids/{n}.pid"))))
        .collect::<std::io::Result<_>>()?;
    let dir = env.dir.clone();
    env.stop()?;
    for pid in &pids {
        ensure!(!alive(pid.trim()), "pid {pid} still runs after down");
    }
    ensure!(!dir.exists(), "{} still exists after down", dir.display());
    Ok(())
}

/// A test bed whose watched process dies is stopped by the watcher, without `down`.
#[test]
fn watcher_stops_the_test_bed_when_the_test_process_dies() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("tributary-testenv-watch-")
        .tempdir()?;
    let mut sleeper = Command::new("sleep").arg("600").spawn()?;
    let out = Command::new("bash")
        .arg(script_path())
        .args(["up", "--dir", dir.path().to_str().unwrap(), "--watch-pid"])
        .arg(sleeper.id().to_string())
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        let _ = sleeper.kill();
        bail!("up failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let pids: Vec<String> = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "watcher",
    ]
    .iter()
    .map(|n| std::fs::read_to_string(dir.path().join(format!("pids/{n}.pid"))))
    .collect::<std::io::Result<_>>()?;
    for pid in &pids {
        ensure!(alive(pid.trim()), "pid {pid} is not running after up");
    }

    sleeper.kill()?;
    sleeper.wait()?;
    poll(
        "the watcher to stop the test bed",
        Duration::from_secs(60),
        || Ok(!dir.path().exists() && pids.iter().all(|p| !alive(p.trim()))),
    )?;
    Ok(())
}
