//! Cluster DNS as hosts files: the names CoreDNS would serve for the runner's namespace,
//! from its Services and Pods.
//!
//! CoreDNS reads EndpointSlices, but here kube-controller-manager cannot write them: the API
//! server refuses loopback addresses in an EndpointSlice ("may not be in the loopback
//! range"), and pod IPs here are loopback addresses. So [`records`] derives the endpoints
//! itself, with the EndpointSlice controller's rules (`pkg/controller/endpointslice`,
//! `podToEndpoint`): the Service's selector picks pods with an IP that have not finished;
//! an endpoint is ready when the pod is Ready and not terminating, or always with
//! `publishNotReadyAddresses`; it has the pod's `hostname` when the pod's `subdomain` is the
//! Service's name.
//!
//! ```text
//! Service + Pod watch ──records()──> table ──┬─> <runner>/hosts      (test clients)
//! pod worker: add_pod / remove_pod ────────────────────┴─> <pod dir>/etc-hosts (one per pod,
//!                                                          bind-mounted on its /etc/hosts)
//! ```
//!
//! Records, for each Service `S` of namespace `N` (with `D` the cluster domain), under the
//! names `x`, `x.N`, `x.N.svc` and `x.N.svc.D`:
//!
//! - `S` → the IPs of its ready endpoints. A headless Service's name has those IPs in a
//!   cluster too; a ClusterIP Service's has its cluster IP, which routes nowhere here, so
//!   its backends stand in for it (as kube-proxy would pick one): a client must use the
//!   target port as the Service port.
//! - `H.S` → the endpoint's IP, for a ready endpoint with hostname `H` (a pod whose
//!   `hostname` and `subdomain` name it, as a StatefulSet's do) of a headless Service.
//!
//! A pod's own file also names the pod itself, as the kubelet's managed `/etc/hosts` does.
//!
//! Files are rewritten in place, never replaced: a bind mount holds the inode it was made
//! with, so a renamed-in file would never be seen. A shorter content is padded with newlines
//! to the old length instead of truncating the file, so a reader never sees an empty file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use tokio_util::sync::CancellationToken;

/// The kubelet's managed `/etc/hosts` header (`pkg/kubelet/kubelet_pods.go`,
/// `managedHostsHeader`).
const POD_HOSTS_HEADER: &str =
    "# Kubernetes-managed hosts file (written by the tributary pod runner).\n\
127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
fe00::0\tip6-mcastprefix\n\
fe00::1\tip6-allnodes\n\
fe00::2\tip6-allrouters\n";

/// A name → addresses table, names lower case without a trailing dot.
pub type Records = BTreeMap<String, BTreeSet<IpAddr>>;

/// The name forms under which a name of namespace NS is found.
fn forms(name: &str, ns: &str, domain: &str) -> [String; 4] {
    [
        name.to_string(),
        format!("{name}.{ns}"),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.{domain}"),
    ]
}

/// Whether POD is Ready (its `Ready` condition is True).
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The records of SERVICES in namespace NS, with endpoints from its PODS (see the module
/// documentation).
pub fn records(ns: &str, domain: &str, services: &[Service], pods: &[Pod]) -> Records {
    let mut records = Records::new();
    for svc in services {
        let Some(name) = svc.metadata.name.as_deref() else {
            continue;
        };
        let Some(spec) = &svc.spec else { continue };
        // Without a selector, endpoints are someone else's to write: none here.
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
        let mut service_ips = BTreeSet::new();
        for pod in pods {
            let labels = pod.metadata.labels.as_ref();
            if !selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            {
                continue;
            }
            let status = pod.status.as_ref();
            if status
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed")
            {
                continue;
            }
            let Some(ip) = status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let terminating = pod.metadata.deletion_timestamp.is_some();
            if !(publish_not_ready || (pod_ready(pod) && !terminating)) {
                continue;
            }
            service_ips.insert(ip);
            let pod_spec = pod.spec.as_ref();
            let hostname = pod_spec
                .and_then(|s| s.hostname.as_deref())
                .filter(|h| !h.is_empty());
            let subdomain = pod_spec.and_then(|s| s.subdomain.as_deref());
            if let (true, Some(host), Some(sub)) = (headless, hostname, subdomain) {
                if sub == name {
                    for form in forms(&format!("{host}.{name}"), ns, domain) {
                        records.entry(form).or_default().insert(ip);
                    }
                }
            }
        }
        if !service_ips.is_empty() {
            for form in forms(name, ns, domain) {
                records.entry(form).or_default().extend(&service_ips);
            }
        }
    }
    records
}

/// A hosts file: HEADER, then one line per address of RECORDS with every name it has.
fn render(header: &str, own: &[(IpAddr, Vec<String>)], records: &Records) -> String {
    let mut by_ip: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
    for (name, ips) in records {
        for ip in ips {
            by_ip.entry(*ip).or_default().push(name);
        }
    }
    let mut out = header.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for (ip, names) in own {
        out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    out.push_str("# Cluster names of the pod runner's namespace.\n");
    for (ip, names) in by_ip {
        out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    out
}

/// Writes CONTENT over PATH in place (see the module documentation).
pub fn write_in_place(path: &Path, content: &str) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let old_len = file.metadata()?.len() as usize;
    let mut bytes = content.as_bytes().to_vec();
    if bytes.len() < old_len {
        bytes.resize(old_len, b'\n');
    }
    file.write_all_at(&bytes, 0)
}

struct PodHosts {
    path: PathBuf,
    ip: IpAddr,
    /// The pod's own names: `hostname.subdomain.ns.svc.<domain>` and `hostname`.
    names: Vec<String>,
}

struct State {
    records: Records,
    /// By pod uid.
    pods: BTreeMap<String, PodHosts>,
}

/// The runner's DNS: the records and every hosts file written from them.
pub struct Dns {
    /// The test clients' hosts file: this machine's `/etc/hosts` and the records.
    client_hosts: PathBuf,
    /// This machine's `/etc/hosts`, read at start.
    machine_hosts: String,
    state: Mutex<State>,
}

impl Dns {
    pub fn new(dir: &Path) -> Result<Dns> {
        let machine_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let dns = Dns {
            client_hosts: dir.join("hosts"),
            machine_hosts,
            state: Mutex::new(State {
                records: Records::new(),
                pods: BTreeMap::new(),
            }),
        };
        let state = dns.lock();
        dns.write_client(&state)?;
        drop(state);
        Ok(dns)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn client_hosts(&self) -> &Path {
        &self.client_hosts
    }

    fn write_client(&self, state: &State) -> Result<()> {
        let content = render(&self.machine_hosts, &[], &state.records);
        write_in_place(&self.client_hosts, &content)
            .with_context(|| format!("writing {}", self.client_hosts.display()))
    }

    fn write_pod(&self, state: &State, pod: &PodHosts) -> Result<()> {
        let content = render(
            POD_HOSTS_HEADER,
            &[(pod.ip, pod.names.clone())],
            &state.records,
        );
        write_in_place(&pod.path, &content)
            .with_context(|| format!("writing {}", pod.path.display()))
    }

    /// Replaces the records and rewrites every file whose content changes.
    pub fn set_records(&self, records: Records) -> Result<()> {
        let mut state = self.lock();
        if state.records == records {
            return Ok(());
        }
        state.records = records;
        self.write_client(&state)?;
        for pod in state.pods.values() {
            self.write_pod(&state, pod)?;
        }
        Ok(())
    }

    /// Writes PATH, the hosts file of the pod UID at IP with its own NAMES, and keeps it up
    /// to date until [`Dns::remove_pod`].
    pub fn add_pod(&self, uid: &str, path: PathBuf, ip: IpAddr, names: Vec<String>) -> Result<()> {
        let mut state = self.lock();
        let pod = PodHosts { path, ip, names };
        self.write_pod(&state, &pod)?;
        state.pods.insert(uid.to_string(), pod);
        Ok(())
    }

    pub fn remove_pod(&self, uid: &str) {
        self.lock().pods.remove(uid);
    }

    /// The first address of HOST in the records (an IP literal is itself).
    pub fn resolve(&self, host: &str) -> Option<IpAddr> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(ip);
        }
        self.lock()
            .records
            .get(&host)
            .and_then(|ips| ips.iter().next().copied())
    }
}

/// Keeps DNS's records in step with the Services and Pods of NS until CANCEL.
pub async fn watch(
    client: kube::Client,
    ns: String,
    domain: String,
    dns: Arc<Dns>,
    cancel: CancellationToken,
) {
    let (services, svc_writer) = reflector::store::<Service>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let svc_events = reflector(
        svc_writer,
        watcher(
            Api::<Service>::namespaced(client.clone(), &ns),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|e| e.map(|_| ()).map_err(|e| format!("Services: {e}")));
    let pod_events = reflector(
        pod_writer,
        watcher(
            Api::<Pod>::namespaced(client, &ns),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|e| e.map(|_| ()).map_err(|e| format!("Pods: {e}")));
    let mut events = futures::stream::select(svc_events, pod_events).boxed();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(Err(e)) => super::log(&format!("watching {e}")),
            Some(Ok(())) => {
                let services: Vec<Service> =
                    services.state().iter().map(|s| (**s).clone()).collect();
                let pods: Vec<Pod> = pods.state().iter().map(|p| (**p).clone()).collect();
                if let Err(e) = dns.set_records(records(&ns, &domain, &services, &pods)) {
                    super::log(&format!("updating the hosts files: {e:#}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(name: &str, cluster_ip: &str, publish_not_ready: bool) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.into()),
                selector: Some(BTreeMap::from([("app".into(), "tb".into())])),
                publish_not_ready_addresses: Some(publish_not_ready),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, app: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("app".into(), app.into())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                hostname: Some(name.into()),
                subdomain: Some("tb-headless".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_string),
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn headless_and_cluster_ip_services() {
        let services = [
            service("tb-headless", "None", true),
            service("tb-bootstrap", "10.96.0.9", false),
        ];
        let mut terminating = pod("tb-3", Some("127.5.5.4"), true, "tb");
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let pods = [
            pod("tb-0", Some("127.5.5.1"), true, "tb"),
            pod("tb-1", Some("127.5.5.2"), false, "tb"),
            pod("tb-2", None, false, "tb"),
            terminating,
            pod("other", Some("127.5.5.9"), true, "other"),
        ];
        let r = records("ns", "cluster.local", &services, &pods);
        assert_eq!(r["tb-0.tb-headless.ns.svc"], ips(&["127.5.5.1"]));
        // publishNotReadyAddresses: not ready, and terminating, still published.
        assert_eq!(
            r["tb-1.tb-headless.ns.svc.cluster.local"],
            ips(&["127.5.5.2"])
        );
        assert_eq!(r["tb-1.tb-headless"], ips(&["127.5.5.2"]));
        assert_eq!(r["tb-3.tb-headless.ns"], ips(&["127.5.5.4"]));
        // No IP yet: nothing.
        assert!(!r.contains_key("tb-2.tb-headless.ns.svc"));
        assert_eq!(
            r["tb-headless.ns.svc"],
            ips(&["127.5.5.1", "127.5.5.2", "127.5.5.4"])
        );
        // Only the ready, not terminating, pods back the ClusterIP Service.
        assert_eq!(r["tb-bootstrap.ns.svc"], ips(&["127.5.5.1"]));
        assert_eq!(r["tb-bootstrap.ns"], ips(&["127.5.5.1"]));
        // Hostnames only under the headless Service the pods name as subdomain.
        assert!(!r.keys().any(|k| k.starts_with("tb-0.tb-bootstrap")));
        assert!(!r.keys().any(|k| k.starts_with("other")));
    }

    #[test]
    fn rendering_groups_names_by_address() {
        let mut r = Records::new();
        r.entry("a.ns.svc".into())
            .or_default()
            .extend(ips(&["127.1.1.1"]));
        r.entry("b.ns.svc".into())
            .or_default()
            .extend(ips(&["127.1.1.1", "127.1.1.2"]));
        let own = [(
            "127.1.1.9".parse().unwrap(),
            vec!["p.h.ns.svc.cluster.local".to_string(), "p".into()],
        )];
        let text = render("127.0.0.1 localhost", &own, &r);
        assert_eq!(
            text,
            "127.0.0.1 localhost\n127.1.1.9\tp.h.ns.svc.cluster.local p\n\
             # Cluster names of the pod runner's namespace.\n\
             127.1.1.1\ta.ns.svc b.ns.svc\n127.1.1.2\tb.ns.svc\n"
        );
    }

    #[test]
    fn in_place_writes_keep_the_inode_and_never_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        write_in_place(&path, "127.0.0.1 a-long-name\n").unwrap();
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        write_in_place(&path, "127.0.0.2 b\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&meta), inode);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim_end(), "127.0.0.2 b");
        assert_eq!(text.len(), "127.0.0.1 a-long-name\n".len());
    }
}
