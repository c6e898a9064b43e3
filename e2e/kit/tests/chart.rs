//! The Helm chart `charts/tributary` against a real API server: it lints, its renderings are
//! accepted by `kubectl apply --dry-run=server` (cluster and namespace RBAC scope), it
//! installs (CRDs through the `crds -> ../../crds` symlink) and uninstalls, the operator's
//! ServiceAccount gets exactly the access it needs, and the examples are valid resources.
//!
//! No kubelet runs, so the operator's Pods never start: nothing here waits for them.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tributary_e2e_kit::{repo_root, TestEnv};

const RELEASE: &str = "tributary";
const CRDS: [&str; 3] = [
    "clusters.tributary.dev",
    "topics.tributary.dev",
    "consumergroups.tributary.dev",
];

fn chart_dir() -> PathBuf {
    repo_root().join("charts/tributary")
}

fn chart() -> String {
    chart_dir().to_str().expect("UTF-8 repo path").to_owned()
}

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

fn helm(env: &TestEnv, args: &[&str]) -> Result<String> {
    ok(&format!("helm {}", args.join(" ")), env.helm(args)?)
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

/// Writes TEXT to NAME in the test bed's directory and returns the path.
fn write(env: &TestEnv, name: &str, text: &str) -> Result<String> {
    let path = env.dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_str().context("non-UTF-8 path")?.to_owned())
}

/// `kubectl apply --dry-run=server` of MANIFEST (written to NAME first).
fn dry_run_apply(env: &TestEnv, name: &str, manifest: &str, extra: &[&str]) -> Result<String> {
    let path = write(env, name, manifest)?;
    let mut args = vec!["apply", "--dry-run=server", "-f", &path];
    args.extend_from_slice(extra);
    kubectl(env, &args)
}

/// The `kind`s of the documents of a multi-document YAML stream.
fn kinds(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(|k| k.trim().to_owned())
        .collect()
}

/// `kubectl auth can-i VERB RESOURCE [args]` as the ServiceAccount SA: true for `yes`,
/// false for `no`, an error for anything else.
fn can_i(env: &TestEnv, sa: &str, args: &[&str]) -> Result<bool> {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    all.push("--as");
    all.push(sa);
    let out = env.kubectl(&all)?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" if out.status.success() => Ok(true),
        "no" => Ok(false),
        other => bail!(
            "kubectl {}: {other} {}",
            all.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn expect_access(env: &TestEnv, sa: &str, allowed: &[&[&str]], denied: &[&[&str]]) -> Result<()> {
    for args in allowed {
        ensure!(
            can_i(env, sa, args)?,
            "{sa} cannot `{}` but needs to",
            args.join(" ")
        );
    }
    for args in denied {
        ensure!(
            !can_i(env, sa, args)?,
            "{sa} can `{}` but must not",
            args.join(" ")
        );
    }
    Ok(())
}

/// The commented-out `reset:` blocks of examples/consumer-group.yaml, uncommented: each one
/// spliced into the example in turn gives a ConsumerGroup that must be valid as well.
fn consumer_group_reset_variants(example: &str) -> Vec<String> {
    let base: Vec<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let mut blocks: Vec<Vec<String>> = Vec::new();
    let mut in_block = false;
    for line in example.lines() {
        if line.starts_with("  # reset:") {
            blocks.push(Vec::new());
            in_block = true;
        } else if !(in_block && line.starts_with("  #   ")) {
            in_block = false;
            continue;
        }
        // `  # reset:` -> `  reset:`, `  #   to: X` -> `    to: X`.
        let uncommented = format!("  {}", &line["  # ".len()..]);
        blocks.last_mut().unwrap().push(uncommented);
    }
    blocks
        .into_iter()
        .map(|b| format!("{}\n{}\n", base.join("\n"), b.join("\n")))
        .collect()
}

#[test]
fn chart_crds_come_from_the_repository_through_a_symlink() -> Result<()> {
    let link = chart_dir().join("crds");
    let target = std::fs::read_link(&link)
        .with_context(|| format!("{} is not a symlink", link.display()))?;
    ensure!(
        target == Path::new("../../crds"),
        "{} points at {}, not ../../crds",
        link.display(),
        target.display()
    );
    for crd in CRDS {
        ensure!(
            link.join(format!("{crd}.yaml")).is_file(),
            "{crd}.yaml missing under {}",
            link.display()
        );
    }
    Ok(())
}

#[test]
fn chart_lints_and_renders_what_the_api_server_accepts() -> Result<()> {
    let env = TestEnv::start()?;
    let chart = chart();
    let ns_scope = [
        "--set",
        "rbac.scope=namespace",
        "--set",
        "watchNamespaces={team-a,team-b}",
    ];

    helm(&env, &["lint", "--strict", &chart])?;
    let mut args = vec!["lint", "--strict", &chart];
    args.extend_from_slice(&ns_scope);
    helm(&env, &args)?;

    // Namespace-scoped RBAC without namespaces is refused, with a message saying why.
    let out = env.helm(["template", RELEASE, &chart, "--set", "rbac.scope=namespace"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("rbac.scope=namespace needs watchNamespaces"),
        "namespace scope without watchNamespaces was not refused: {err}"
    );
    // values.schema.json is enforced.
    let out = env.helm(["template", RELEASE, &chart, "--set", "logFormat=xml"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("logFormat"),
        "logFormat=xml was not rejected by the schema: {err}"
    );

    for ns in ["tributary-system", "team-a", "team-b"] {
        kubectl(&env, &["create", "namespace", ns])?;
    }

    // Defaults: the CRDs (the repository's own files, through the symlink) and the operator.
    let rendered = helm(
        &env,
        &[
            "template",
            RELEASE,
            &chart,
            "-n",
            "tributary-system",
            "--include-crds",
        ],
    )?;
    for crd in CRDS {
        let file = repo_root().join(format!("crds/{crd}.yaml"));
        let text = std::fs::read_to_string(&file)?;
        ensure!(
            rendered.contains(text.trim()),
            "the rendered chart does not hold {} as is",
            file.display()
        );
    }
    let mut got = kinds(&rendered);
    got.sort();
    ensure!(
        got == [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ],
        "unexpected objects with defaults: {got:?}"
    );
    let applied = dry_run_apply(&env, "defaults.yaml", &rendered, &[])?;
    ensure!(
        applied.lines().count() == got.len()
            && applied.lines().all(|l| l.ends_with("(server dry run)")),
        "dry run of the defaults:\n{applied}"
    );

    // Namespace scope: a Role and RoleBinding per watched namespace, no cluster-wide RBAC.
    let mut args = vec![
        "template",
        RELEASE,
        &chart,
        "-n",
        "tributary-system",
        "--include-crds",
    ];
    args.extend_from_slice(&ns_scope);
    let rendered = helm(&env, &args)?;
    let got = kinds(&rendered);
    ensure!(
        !got.iter().any(|k| k.starts_with("ClusterRole")),
        "namespace scope rendered cluster-wide RBAC: {got:?}"
    );
    ensure!(
        got.iter().filter(|k| *k == "Role").count() == 3
            && got.iter().filter(|k| *k == "RoleBinding").count() == 3,
        "namespace scope: expected a Role and RoleBinding in team-a, team-b and the release \
         namespace: {got:?}"
    );
    let applied = dry_run_apply(&env, "namespace-scope.yaml", &rendered, &[])?;
    for want in [
        "role.rbac.authorization.k8s.io/tributary created (server dry run)",
        "role.rbac.authorization.k8s.io/tributary-leader-election created (server dry run)",
        "deployment.apps/tributary created (server dry run)",
    ] {
        ensure!(
            applied.lines().any(|l| l == want),
            "no `{want}` in:\n{applied}"
        );
    }
    Ok(())
}

#[test]
fn chart_installs_with_least_privilege_rbac_and_uninstalls() -> Result<()> {
    let env = TestEnv::start()?;
    let chart = chart();
    let ns = "tributary-system";

    helm(
        &env,
        &["install", RELEASE, &chart, "-n", ns, "--create-namespace"],
    )?;

    // Every object of the release exists, and the CRDs (from crds/, not in the manifest) are
    // established.
    let manifest = helm(&env, &["get", "manifest", RELEASE, "-n", ns])?;
    let mut got = kinds(&manifest);
    got.sort();
    ensure!(
        got == [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ],
        "unexpected release objects: {got:?}"
    );
    let manifest_file = write(&env, "release.yaml", &manifest)?;
    let names = kubectl(&env, &["get", "-f", &manifest_file, "-o", "name"])?;
    ensure!(
        names.lines().count() == got.len(),
        "kubectl get -f found {} of {} objects:\n{names}",
        names.lines().count(),
        got.len()
    );
    for crd in CRDS {
        kubectl(
            &env,
            &[
                "wait",
                "--for=condition=Established",
                &format!("crd/{crd}"),
                "--timeout=60s",
            ],
        )?;
    }

    // The Deployment as the operator needs it.
    let jsonpath = |what: &str| {
        kubectl(
            &env,
            &[
                "-n",
                ns,
                "get",
                "deployment",
                RELEASE,
                "-o",
                &format!("jsonpath={what}"),
            ],
        )
    };
    let pod = "{.spec.template.spec";
    let checks = [
        (format!("{pod}.serviceAccountName}}"), "tributary"),
        (format!("{pod}.terminationGracePeriodSeconds}}"), "30"),
        (
            format!("{pod}.containers[0].env[?(@.name==\"POD_NAME\")].valueFrom.fieldRef.fieldPath}}"),
            "metadata.name",
        ),
        (
            format!(
                "{pod}.containers[0].env[?(@.name==\"POD_NAMESPACE\")].valueFrom.fieldRef.fieldPath}}"
            ),
            "metadata.namespace",
        ),
        (
            format!("{pod}.containers[0].env[?(@.name==\"LEASE_NAME\")].value}}"),
            "tributary-operator",
        ),
        (
            format!("{pod}.containers[0].env[?(@.name==\"METRICS_ADDR\")].value}}"),
            "0.0.0.0:8080",
        ),
        (
            format!("{pod}.containers[0].livenessProbe.httpGet.path}}"),
            "/healthz",
        ),
        (
            format!("{pod}.containers[0].readinessProbe.httpGet.path}}"),
            "/readyz",
        ),
        (
            format!("{pod}.containers[0].ports[?(@.name==\"metrics\")].containerPort}}"),
            "8080",
        ),
        (
            format!("{pod}.containers[0].image}}"),
            "ghcr.io/tributary-dev/tributary-operator:0.1.0",
        ),
        (
            format!("{pod}.containers[0].securityContext.readOnlyRootFilesystem}}"),
            "true",
        ),
        (format!("{pod}.securityContext.runAsNonRoot}}"), "true"),
    ];
    for (path, want) in &checks {
        let value = jsonpath(path)?;
        ensure!(
            value == *want,
            "deployment {path} is {value:?}, not {want:?}"
        );
    }

    // Least privilege, cluster scope: what the operator does, and nothing more.
    kubectl(&env, &["create", "namespace", "team-a"])?;
    let sa = format!("system:serviceaccount:{ns}:tributary");
    expect_access(
        &env,
        &sa,
        &[
            &["list", "topics.tributary.dev", "-A"],
            &["watch", "consumergroups.tributary.dev", "-n", "team-a"],
            &["get", "clusters.tributary.dev", "-n", "team-a"],
            &[
                "patch",
                "topics.tributary.dev",
                "--subresource=status",
                "-n",
                "team-a",
            ],
            &[
                "patch",
                "clusters.tributary.dev",
                "--subresource=status",
                "-n",
                "team-a",
            ],
            &[
                "patch",
                "consumergroups.tributary.dev",
                "--subresource=status",
                "-n",
                "team-a",
            ],
            &["patch", "topics.tributary.dev", "-n", "team-a"],
            // A managed Cluster's objects, and its rolling restarts (one pod at a time).
            &["patch", "statefulsets.apps", "-n", "team-a"],
            &["list", "pods", "-n", "team-a"],
            &["delete", "pods", "-n", "team-a"],
            &["create", "events.events.k8s.io", "-n", "team-a"],
            &["patch", "events.events.k8s.io", "-n", "team-a"],
            &["create", "leases.coordination.k8s.io", "-n", ns],
            &[
                "get",
                "leases.coordination.k8s.io/tributary-operator",
                "-n",
                ns,
            ],
            &[
                "update",
                "leases.coordination.k8s.io/tributary-operator",
                "-n",
                ns,
            ],
        ],
        &[
            &["delete", "topics.tributary.dev", "-n", "team-a"],
            &["create", "topics.tributary.dev", "-n", "team-a"],
            &["update", "topics.tributary.dev", "-n", "team-a"],
            &["patch", "clusters.tributary.dev", "-n", "team-a"],
            &["patch", "consumergroups.tributary.dev", "-n", "team-a"],
            &["get", "secrets", "-n", ns],
            &["get", "secrets", "-n", "team-a"],
            &["create", "pods", "-n", ns],
            &["create", "pods", "-n", "team-a"],
            &["delete", "events.events.k8s.io", "-n", "team-a"],
            &[
                "update",
                "leases.coordination.k8s.io/kube-controller-manager",
                "-n",
                ns,
            ],
            &["create", "leases.coordination.k8s.io", "-n", "kube-system"],
            &[
                "delete",
                "leases.coordination.k8s.io/tributary-operator",
                "-n",
                ns,
            ],
            &["create", "customresourcedefinitions.apiextensions.k8s.io"],
        ],
    )?;

    // The examples are valid resources for the installed CRDs, including each commented
    // reset of the ConsumerGroup.
    let examples = chart_dir().join("examples");
    for file in ["cluster.yaml", "topic.yaml", "consumer-group.yaml"] {
        let path = examples.join(file);
        let out = kubectl(
            &env,
            &[
                "apply",
                "--dry-run=server",
                "-n",
                "team-a",
                "-f",
                path.to_str().context("non-UTF-8 path")?,
            ],
        )?;
        ensure!(
            out.trim_end().ends_with("created (server dry run)"),
            "{file}: {out}"
        );
    }
    let group = std::fs::read_to_string(examples.join("consumer-group.yaml"))?;
    let variants = consumer_group_reset_variants(&group);
    ensure!(
        variants.len() == 3,
        "expected 3 commented reset examples in consumer-group.yaml, found {}",
        variants.len()
    );
    for (i, variant) in variants.iter().enumerate() {
        ensure!(
            variant.contains("\n  reset:\n    to: "),
            "variant {i}:\n{variant}"
        );
        dry_run_apply(&env, &format!("reset-{i}.yaml"), variant, &["-n", "team-a"])
            .with_context(|| format!("reset example {i}:\n{variant}"))?;
    }

    // Uninstall removes the release's objects (Helm keeps CRDs, by design).
    helm(&env, &["uninstall", RELEASE, "-n", ns])?;
    poll(
        "the release's objects to be gone",
        Duration::from_secs(60),
        || {
            let out = env.kubectl(["get", "-f", &manifest_file, "-o", "name"])?;
            let err = String::from_utf8_lossy(&out.stderr);
            let missing = err.lines().filter(|l| l.contains("NotFound")).count();
            Ok(String::from_utf8_lossy(&out.stdout).trim().is_empty() && missing == got.len())
        },
    )?;
    for crd in CRDS {
        kubectl(&env, &["get", "crd", crd])?;
    }

    // Namespace scope: access in the watched namespaces only.
    let ops = "tributary-ops";
    kubectl(&env, &["create", "namespace", "team-b"])?;
    kubectl(&env, &["create", "namespace", "team-c"])?;
    helm(
        &env,
        &[
            "install",
            RELEASE,
            &chart,
            "-n",
            ops,
            "--create-namespace",
            "--set",
            "rbac.scope=namespace",
            "--set",
            "watchNamespaces={team-a,team-b}",
        ],
    )?;
    let watch = kubectl(
        &env,
        &[
            "-n",
            ops,
            "get",
            "deployment",
            RELEASE,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[?(@.name==\"WATCH_NAMESPACES\")].value}",
        ],
    )?;
    ensure!(watch == "team-a,team-b", "WATCH_NAMESPACES is {watch:?}");
    let sa = format!("system:serviceaccount:{ops}:tributary");
    expect_access(
        &env,
        &sa,
        &[
            &["watch", "topics.tributary.dev", "-n", "team-a"],
            &["list", "clusters.tributary.dev", "-n", "team-b"],
            &[
                "patch",
                "consumergroups.tributary.dev",
                "--subresource=status",
                "-n",
                "team-b",
            ],
            &["create", "events.events.k8s.io", "-n", "team-a"],
            &[
                "update",
                "leases.coordination.k8s.io/tributary-operator",
                "-n",
                ops,
            ],
        ],
        &[
            &["list", "topics.tributary.dev", "-A"],
            &["watch", "topics.tributary.dev", "-n", "team-c"],
            &["create", "events.events.k8s.io", "-n", "team-c"],
            &[
                "get",
                "leases.coordination.k8s.io/tributary-operator",
                "-n",
                "team-a",
            ],
            &["get", "secrets", "-n", "team-a"],
        ],
    )?;
    helm(&env, &["uninstall", RELEASE, "-n", ops])?;
    Ok(())
}
