//! What a container runs, worked out from its pod: the image the runner emulates, the
//! environment (`env`, `envFrom`, `valueFrom`, service links, `$(VAR)` expansion), the
//! command line, and the listener variables that bind the broker to the pod's IP. Pure
//! functions over API objects the caller has read; no I/O.
//!
//! The rules are the kubelet's: `pkg/kubelet/kubelet_pods.go` (`makeEnvironmentVariables`,
//! `podFieldSelectorRuntimeValue`), `pkg/kubelet/envvars/envvars.go` (service links),
//! `third_party/forked/golang/expansion/expand.go` (`$(VAR)`) and
//! `pkg/kubelet/kuberuntime/kuberuntime_container.go` (command and args against the image's
//! entrypoint and cmd).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Container, Pod, Service};

/// The container image every pod runs, as far as the runner emulates one: its entrypoint
/// and cmd, its environment and working directory, and the files and directories of its
/// filesystem that the broker needs. The image name in the pod spec is not looked at.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// `ENTRYPOINT`: used when the container has no `command`.
    pub entrypoint: Vec<String>,
    /// `CMD`: the arguments when the container has neither `command` nor `args`.
    pub cmd: Vec<String>,
    /// `ENV`, below the container's own environment.
    pub env: Vec<(String, String)>,
    /// `WORKDIR`, unless the container sets `workingDir`.
    pub working_dir: String,
    /// Files of the image: (path in the container, file on this machine), bind-mounted
    /// read-only into every pod. The broker binary is one of them.
    pub files: Vec<(String, PathBuf)>,
    /// Directories of the image: a fresh, empty, writable directory per pod (the container's
    /// writable layer at that path).
    pub dirs: Vec<String>,
}

impl ImageSpec {
    /// `docker/broker.Dockerfile`: `ENTRYPOINT ["/usr/local/bin/tributary"]`, `CMD ["broker",
    /// "--config", "/etc/tributary/server.properties"]`, the image's
    /// `/etc/tributary/server.properties` (`docker/broker.properties`, when it exists) and
    /// `/var/lib/tributary`, with BROKER_BINARY as `/usr/local/bin/tributary`. The image's
    /// `USER 65532` is not emulated: the broker runs as the test's user (root).
    pub fn tributary(broker_binary: PathBuf) -> ImageSpec {
        ImageSpec {
            entrypoint: vec!["/usr/local/bin/tributary".into()],
            cmd: vec![
                "broker".into(),
                "--config".into(),
                "/etc/tributary/server.properties".into(),
            ],
            // distroless's PATH.
            env: vec![(
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            )],
            working_dir: "/".into(),
            files: std::iter::once(("/usr/local/bin/tributary".into(), broker_binary))
                .chain(
                    Some(crate::repo_root().join("docker/broker.properties"))
                        // Pods that mount their own configuration (the operator's, the
                        // tests') do not need the image's; a checkout without it still runs
                        // them.
                        .filter(|p| p.exists())
                        .map(|p| ("/etc/tributary/server.properties".into(), p)),
                )
                .collect(),
            dirs: vec!["/var/lib/tributary".into()],
        }
    }
}

/// An environment variable the runner sets so that a listener binds the pod's IP: in a pod
/// of its own network namespace the broker binds `0.0.0.0`, which here would be every
/// other pod's address too (see the module documentation of [`crate::pod_runner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerEnv {
    /// The variable, e.g. `TRIBUTARY_LISTENERS`.
    pub var: String,
    /// What comes before `host:port` in the value, e.g. `PLAINTEXT://`; empty for none.
    pub scheme: String,
    /// The container port (by name) whose number the listener takes, when the container
    /// does not set the variable itself.
    pub port_name: String,
    /// The port when neither the container's own value nor a named port gives one.
    pub default_port: u16,
}

impl ListenerEnv {
    pub fn new(var: &str, scheme: &str, port_name: &str, default_port: u16) -> ListenerEnv {
        ListenerEnv {
            var: var.into(),
            scheme: scheme.into(),
            port_name: port_name.into(),
            default_port,
        }
    }

    /// The broker's three listeners (`listeners`, `controller.listener`, `http.listener`),
    /// with the port names and default ports of `docs/operations.md` and the broker image.
    pub fn tributary() -> Vec<ListenerEnv> {
        vec![
            ListenerEnv::new("TRIBUTARY_LISTENERS", "PLAINTEXT://", "kafka", 9092),
            ListenerEnv::new("TRIBUTARY_CONTROLLER_LISTENER", "", "controller", 9093),
            ListenerEnv::new("TRIBUTARY_HTTP_LISTENER", "", "http", 9644),
        ]
    }

    /// The port this listener binds in CONTAINER whose environment so far is ENV: the port
    /// of the container's own value of the variable, else the named container port, else
    /// the default. `None` when the container sets the variable to the empty string (the
    /// listener turned off).
    pub fn port(&self, container: &Container, env: &EnvList) -> Option<u16> {
        if let Some(own) = env.get(&self.var) {
            if own.trim().is_empty() {
                return None;
            }
            let host_port = own.split_once("://").map_or(own, |(_, rest)| rest);
            if let Some(port) = host_port
                .rsplit_once(':')
                .and_then(|(_, p)| p.trim().parse::<u16>().ok())
            {
                return Some(port);
            }
        }
        let named = container.ports.iter().flatten().find(|p| {
            p.name.as_deref() == Some(self.port_name.as_str())
                && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        });
        Some(
            named
                .and_then(|p| u16::try_from(p.container_port).ok())
                .unwrap_or(self.default_port),
        )
    }

    /// The variable's value for a listener on IP:PORT.
    pub fn value(&self, ip: IpAddr, port: u16) -> String {
        format!("{}{}:{port}", self.scheme, ip)
    }
}

/// An ordered environment: the first definition of a name keeps its place, a later one
/// its value, as in the kubelet's list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList(Vec<(String, String)>);

impl EnvList {
    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.0
    }
}

/// Kubernetes's `$(VAR)` expansion: a defined `$(VAR)` is replaced by LOOKUP's value, an
/// undefined one stays as written, `$$` is a literal `$`, and any other `$` stays as is.
/// Byte for byte the algorithm of `third_party/forked/golang/expansion/expand.go`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        // Between ASCII parentheses, so on character boundaries.
                        let name = &input[cursor + 2..cursor + 1 + close];
                        match lookup(name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => out.extend_from_slice(format!("$({name})").as_bytes()),
                        }
                        close + 1
                    }
                    // An unterminated reference: `$(` stays, and scanning goes on after it.
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    // Only whole byte ranges of a valid string were copied, in order.
    String::from_utf8(out).expect("expansion of valid UTF-8 is valid UTF-8")
}

/// The value of a `fieldRef` (`valueFrom.fieldRef.fieldPath`): the paths the API server
/// admits for environment variables.
pub fn field_ref(pod: &Pod, path: &str, pod_ip: IpAddr, host_ip: IpAddr) -> Result<String> {
    let meta = &pod.metadata;
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        Some(rest.strip_suffix("']")?.to_string())
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&key).cloned())
                    .unwrap_or_default()
            } else {
                bail!("fieldRef {path:?} is not supported by the pod runner")
            }
        }
    })
}

/// `k8s.io/kubernetes/pkg/fieldpath.FormatMap`: `key="value"` lines, sorted by key.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect::<String>()
        .trim_end_matches('\n')
        .to_string()
}

/// The service environment variables of SERVICES (`enableServiceLinks`): for each Service
/// with a cluster IP, `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT NAME>]` and the
/// Docker-link style `<NAME>_PORT...` variables.
pub fn service_links<'a>(services: impl IntoIterator<Item = &'a Service>) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref() else {
            continue;
        };
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        vars.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        vars.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for port in ports {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                vars.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                    port.port.to_string(),
                ));
            }
        }
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        for (i, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let url = format!("{}://{host}:{}", protocol.to_lowercase(), port.port);
            if i == 0 {
                vars.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            vars.push((port_prefix.clone(), url));
            vars.push((format!("{port_prefix}_PROTO"), protocol.to_lowercase()));
            vars.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            vars.push((format!("{port_prefix}_ADDR"), ip.to_string()));
        }
    }
    vars
}

fn env_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// The command line of CONTAINER in IMAGE with its final environment ENV: `command` (or
/// the entrypoint) followed by `args` (or, without `command`, the image's cmd), with
/// `$(VAR)` expanded in both.
pub fn argv(container: &Container, image: &ImageSpec, env: &EnvList) -> Result<Vec<String>> {
    let lookup = |name: &str| env.get(name).map(str::to_string);
    let command: Vec<String> = match &container.command {
        Some(command) if !command.is_empty() => command.iter().map(|c| expand(c, lookup)).collect(),
        _ => image.entrypoint.clone(),
    };
    let args: Vec<String> = match (&container.command, &container.args) {
        (_, Some(args)) if !args.is_empty() => args.iter().map(|a| expand(a, lookup)).collect(),
        // A command of its own replaces the image's cmd as well as its entrypoint.
        (Some(command), _) if !command.is_empty() => Vec::new(),
        _ => image.cmd.clone(),
    };
    let argv: Vec<String> = command.into_iter().chain(args).collect();
    if argv.is_empty() {
        bail!("container {:?} has no command", container.name);
    }
    Ok(argv)
}

/// The single container of POD's spec: the runner runs one container per pod, no init or
/// ephemeral containers.
pub fn single_container(pod: &Pod) -> Result<&Container> {
    let spec = pod.spec.as_ref().context("pod has no spec")?;
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        bail!("init containers are not supported by the pod runner");
    }
    match spec.containers.as_slice() {
        [container] => Ok(container),
        other => bail!(
            "the pod runner runs pods of exactly one container, this one has {}",
            other.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let lookup = vars(&[("POD_NAME", "tb-1"), ("EMPTY", ""), ("A", "$(B)")]);
        let cases = [
            ("PLAINTEXT://$(POD_NAME).h:9092", "PLAINTEXT://tb-1.h:9092"),
            ("$(POD_NAME)$(POD_NAME)", "tb-1tb-1"),
            ("x$(EMPTY)y", "xy"),
            // Undefined references stay as written.
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            // `$$` escapes.
            ("$$(POD_NAME)", "$(POD_NAME)"),
            ("$$$(POD_NAME)", "$tb-1"),
            ("$$", "$"),
            // A `$` before anything else, a trailing `$`, an unterminated reference.
            ("a$b", "a$b"),
            ("cost: 5$", "cost: 5$"),
            ("$(POD_NAME", "$(POD_NAME"),
            ("$(", "$("),
            ("$()", "$()"),
            // Values are not expanded again.
            ("$(A)", "$(B)"),
            ("ünï$(POD_NAME)cödé", "ünïtb-1cödé"),
            ("$é", "$é"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &lookup), want, "expanding {input:?}");
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("tb-2".into()),
                namespace: Some("ns".into()),
                uid: Some("u-1".into()),
                labels: Some(BTreeMap::from([
                    ("apps.kubernetes.io/pod-index".into(), "2".into()),
                    ("app".into(), "tb".into()),
                ])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn field_refs() {
        let pod = pod();
        let ip: IpAddr = "127.9.9.2".parse().unwrap();
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let get = |path: &str| field_ref(&pod, path, ip, host).unwrap();
        assert_eq!(get("metadata.name"), "tb-2");
        assert_eq!(get("metadata.namespace"), "ns");
        assert_eq!(get("metadata.uid"), "u-1");
        assert_eq!(get("metadata.labels['apps.kubernetes.io/pod-index']"), "2");
        assert_eq!(get("metadata.labels['missing']"), "");
        assert_eq!(
            get("metadata.labels"),
            "app=\"tb\"\napps.kubernetes.io/pod-index=\"2\""
        );
        assert_eq!(get("spec.nodeName"), "node");
        assert_eq!(get("status.podIP"), "127.9.9.2");
        assert_eq!(get("status.hostIP"), "127.0.0.1");
        assert!(field_ref(&pod, "spec.containers", ip, host).is_err());
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Container {
            name: "broker".into(),
            command: command.map(strings),
            args: args.map(strings),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_against_the_image() {
        let image = ImageSpec::tributary(PathBuf::from("/bin/true"));
        let mut env = EnvList::default();
        env.set("CONF", "/etc/tributary/broker.properties".into());
        let run = |c: &Container| argv(c, &image, &env).unwrap();
        // Neither: entrypoint and cmd.
        assert_eq!(
            run(&container(None, None)),
            [
                "/usr/local/bin/tributary",
                "broker",
                "--config",
                "/etc/tributary/server.properties"
            ]
        );
        // Args only: entrypoint and the args, expanded.
        assert_eq!(
            run(&container(None, Some(&["broker", "-c", "$(CONF)"]))),
            [
                "/usr/local/bin/tributary",
                "broker",
                "-c",
                "/etc/tributary/broker.properties"
            ]
        );
        // A command replaces both entrypoint and cmd.
        assert_eq!(
            run(&container(Some(&["tributary", "dev"]), None)),
            ["tributary", "dev"]
        );
        assert_eq!(
            run(&container(Some(&["tributary"]), Some(&["topics", "$$(X)"]))),
            ["tributary", "topics", "$(X)"]
        );
    }

    #[test]
    fn listener_ports_come_from_the_container() {
        let kafka = ListenerEnv::new("TRIBUTARY_LISTENERS", "PLAINTEXT://", "kafka", 9092);
        let http = ListenerEnv::new("TRIBUTARY_HTTP_LISTENER", "", "http", 9644);
        let mut c = container(None, None);
        let mut env = EnvList::default();
        assert_eq!(kafka.port(&c, &env), Some(9092));
        c.ports = Some(vec![ContainerPort {
            name: Some("kafka".into()),
            container_port: 19092,
            ..Default::default()
        }]);
        assert_eq!(kafka.port(&c, &env), Some(19092));
        env.set("TRIBUTARY_LISTENERS", "PLAINTEXT://0.0.0.0:29092".into());
        assert_eq!(kafka.port(&c, &env), Some(29092));
        env.set("TRIBUTARY_HTTP_LISTENER", String::new());
        assert_eq!(http.port(&c, &env), None);
        let ip: IpAddr = "127.1.2.3".parse().unwrap();
        assert_eq!(kafka.value(ip, 9092), "PLAINTEXT://127.1.2.3:9092");
        assert_eq!(http.value(ip, 9644), "127.1.2.3:9644");
    }

    #[test]
    fn service_link_variables() {
        let svc = |name: &str, ip: &str, ports: Vec<ServicePort>| Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        };
        let port = |name: Option<&str>, port: i32| ServicePort {
            name: name.map(str::to_string),
            port,
            ..Default::default()
        };
        let services = [
            svc(
                "tb-bootstrap",
                "10.96.0.7",
                vec![port(Some("kafka"), 9092), port(Some("http"), 9644)],
            ),
            svc("tb-headless", "None", vec![port(None, 9092)]),
        ];
        let vars: BTreeMap<String, String> = service_links(&services).into_iter().collect();
        let want = [
            ("TB_BOOTSTRAP_SERVICE_HOST", "10.96.0.7"),
            ("TB_BOOTSTRAP_SERVICE_PORT", "9092"),
            ("TB_BOOTSTRAP_SERVICE_PORT_KAFKA", "9092"),
            ("TB_BOOTSTRAP_SERVICE_PORT_HTTP", "9644"),
            ("TB_BOOTSTRAP_PORT", "tcp://10.96.0.7:9092"),
            ("TB_BOOTSTRAP_PORT_9092_TCP", "tcp://10.96.0.7:9092"),
            ("TB_BOOTSTRAP_PORT_9092_TCP_PROTO", "tcp"),
            ("TB_BOOTSTRAP_PORT_9092_TCP_PORT", "9092"),
            ("TB_BOOTSTRAP_PORT_9092_TCP_ADDR", "10.96.0.7"),
            ("TB_BOOTSTRAP_PORT_9644_TCP", "tcp://10.96.0.7:9644"),
            ("TB_BOOTSTRAP_PORT_9644_TCP_PROTO", "tcp"),
            ("TB_BOOTSTRAP_PORT_9644_TCP_PORT", "9644"),
            ("TB_BOOTSTRAP_PORT_9644_TCP_ADDR", "10.96.0.7"),
        ];
        let want: BTreeMap<String, String> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // The headless Service has no cluster IP and so no variables.
        assert_eq!(vars, want);
    }

    #[test]
    fn env_list_keeps_first_place_and_last_value() {
        let mut env = EnvList::default();
        env.set("A", "1".into());
        env.set("B", "2".into());
        env.set("A", "3".into());
        assert_eq!(
            env.vars(),
            [("A".to_string(), "3".to_string()), ("B".into(), "2".into())]
        );
    }
}
