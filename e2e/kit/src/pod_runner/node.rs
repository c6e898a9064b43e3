//! The runner's Node: registered Ready, as a kubelet registers itself, and kept alive by
//! renewing its Lease in `kube-node-lease`.
//!
//! kube-controller-manager's node lifecycle controller counts a node as alive while its
//! Lease's `renewTime` (or its Ready condition's heartbeat) moves within
//! `--node-monitor-grace-period` (50 s in 1.36); past that it sets Ready to Unknown, taints
//! the node `unreachable` and, after the pods' toleration (300 s), evicts them. The kubelet
//! renews every 10 s (a quarter of the 40 s lease duration); so does the runner, so the test
//! bed's controller manager keeps its default flags.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// The field manager of everything the runner applies.
pub const FIELD_MANAGER: &str = "tributary-pod-runner";

/// How often the Lease is renewed, and its duration: the kubelet's.
const RENEW_INTERVAL: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i32 = 40;

fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(8 << 30, |kib| kib * 1024)
}

fn node(name: &str) -> Node {
    let now = Time(Timestamp::now());
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(memory_bytes().to_string())),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                (
                    "kubernetes.io/arch".to_string(),
                    std::env::consts::ARCH
                        .replace("x86_64", "amd64")
                        .replace("aarch64", "arm64"),
                ),
            ])),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "tributary pod runner",
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "tributary pod runner",
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "tributary pod runner",
                ),
                condition(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "tributary pod runner is posting ready status",
                ),
            ]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: "127.0.0.1".into(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.into(),
                },
            ]),
            node_info: Some(NodeSystemInfo {
                architecture: std::env::consts::ARCH.into(),
                boot_id: String::new(),
                container_runtime_version: "tributary-pod-runner://0".into(),
                kernel_version: String::new(),
                kube_proxy_version: String::new(),
                kubelet_version: "v1.36.3".into(),
                machine_id: String::new(),
                operating_system: "linux".into(),
                os_image: "tributary pod runner".into(),
                system_uuid: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Registers (or re-registers) node NAME, Ready, and its Lease; returns the Node's uid.
pub async fn register(client: &Client, name: &str) -> Result<Option<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut desired = node(name);
    let status = desired.status.take();
    let applied = nodes
        .patch(name, &params, &Patch::Apply(&desired))
        .await
        .with_context(|| format!("registering node {name}"))?;
    let status_patch = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: None,
        status,
    };
    nodes
        .patch_status(name, &params, &Patch::Apply(&status_patch))
        .await
        .with_context(|| format!("setting the status of node {name}"))?;
    let uid = applied.metadata.uid;
    renew(client, name, uid.as_deref()).await?;
    Ok(uid)
}

async fn renew(client: &Client, name: &str, node_uid: Option<&str>) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.into(),
                    uid: uid.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    leases
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await
        .with_context(|| format!("renewing the Lease of node {name}"))?;
    Ok(())
}

/// Renews the Lease of node NAME (whose uid is NODE_UID) every 10 s until CANCEL.
pub async fn keep_alive(
    client: Client,
    name: String,
    node_uid: Option<String>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RENEW_INTERVAL) => {}
        }
        if let Err(e) = renew(&client, &name, node_uid.as_deref()).await {
            super::log(&format!("{e:#}"));
        }
    }
}
