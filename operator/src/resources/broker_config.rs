//! `broker.properties` of a managed cluster's brokers: the user's `spec.config`, defaults
//! that follow the broker count, and the keys the operator owns, rendered in key order so
//! the same spec always gives the same bytes (and the pod template's hash stays put).
//!
//! What differs per broker (its id, its advertised addresses) is not in the file, which all
//! brokers share: the container gets `TRIBUTARY_NODE_ID` from the pod's ordinal label and
//! `-o advertised.listeners=...$(POD_NAME)...` (see `statefulset`).
//!
//! STYLE.md asks for the broker's own config type to be serialized here. The operator does
//! not depend on the broker crate (it would bring the log, Raft and gRPC into the operator's
//! build and rebuild it on every broker change), so the key names are the broker's, kept in
//! this one place, and the format is the one `Properties::from_file` parses: `key=value`
//! lines, `#` comments.

use std::collections::BTreeMap;

use super::ManagedCluster;

/// The directory the ConfigMap is mounted at.
pub const CONFIG_DIR: &str = "/etc/tributary";
/// The ConfigMap key and file name.
pub const CONFIG_FILE: &str = "broker.properties";
/// Where each broker's PersistentVolumeClaim is mounted.
pub const DATA_MOUNT: &str = "/var/lib/tributary";
/// `log.dirs`: a directory inside the volume, not its root, so a file system's
/// `lost+found` is not in the log directory.
pub const LOG_DIR: &str = "/var/lib/tributary/data";

/// The broker's defaults of the keys the grace period depends on
/// (`broker/src/server/config.rs`).
const CONTROLLED_SHUTDOWN_TIMEOUT_MS: u64 = 30_000;
const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Time beyond the broker's own shutdown budget: closing the logs and the process exit.
const SHUTDOWN_MARGIN_S: i64 = 20;

/// `controller.quorum.voters`: `id@host:port` of brokers 0..voters-1 at their pods' stable
/// DNS names and the controller port, as each voter advertises itself.
pub fn quorum_voters(m: &ManagedCluster) -> String {
    (0..m.voters)
        .map(|id| format!("{id}@{}:{}", m.pod_host(id), m.listeners.controller_port))
        .collect::<Vec<_>>()
        .join(",")
}

/// Defaults for keys the user did not set, chosen by the broker count the StatefulSet runs
/// (during a scale-down, until it is carried out, the larger one): three replicas of each
/// partition (and of `__consumer_offsets`, which the broker creates only once that many
/// brokers are live) where there are three brokers, else as many as there are; acks=all
/// writes then need two in-sync replicas of three, so one broker can be down (a rolling
/// restart, a drain) without refusing writes.
pub fn defaults(brokers: i32) -> BTreeMap<&'static str, String> {
    let replicas = brokers.min(3);
    BTreeMap::from([
        ("default.replication.factor", replicas.to_string()),
        ("offsets.topic.replication.factor", replicas.to_string()),
        (
            "min.insync.replicas",
            if brokers >= 3 { "2" } else { "1" }.to_string(),
        ),
    ])
}

/// The keys the operator owns, with their values (see `OPERATOR_OWNED_KEYS` for the full
/// list; `node.id` and the advertised addresses come from the command line).
pub fn owned(m: &ManagedCluster) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (
            "listeners",
            format!("PLAINTEXT://0.0.0.0:{}", m.listeners.kafka_port),
        ),
        (
            "controller.listener",
            format!("0.0.0.0:{}", m.listeners.controller_port),
        ),
        (
            "http.listener",
            format!("0.0.0.0:{}", m.listeners.http_port),
        ),
        ("log.dirs", LOG_DIR.to_string()),
        ("controller.quorum.voters", quorum_voters(m)),
    ])
}

/// Every property of the file: defaults, then `spec.config` over them, then the owned keys
/// over both (`ManagedCluster::new` already refused owned keys in `spec.config`; this order
/// makes sure of it).
pub fn properties(m: &ManagedCluster) -> BTreeMap<String, String> {
    let mut props: BTreeMap<String, String> = defaults(m.brokers)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    props.extend(
        m.config
            .iter()
            .map(|(k, v)| (k.clone(), v.trim().to_string())),
    );
    props.extend(owned(m).into_iter().map(|(k, v)| (k.to_string(), v)));
    props
}

/// The file's text: a header, then `key=value` in key order.
pub fn render(m: &ManagedCluster) -> String {
    let mut text = format!(
        "# broker.properties of Cluster {}/{}, written by tributary-operator.\n\
         # Change spec.config of the Cluster, not this file.\n",
        m.namespace, m.name
    );
    for (key, value) in properties(m) {
        text.push_str(&key);
        text.push('=');
        text.push_str(&value);
        text.push('\n');
    }
    text
}

/// `terminationGracePeriodSeconds`: the broker's controlled shutdown (moving leaderships
/// away, `controlled.shutdown.timeout.ms`) plus its grace for requests in flight
/// (`shutdown.grace.ms`), as configured or by the broker's defaults, plus a margin; 60 s
/// with the defaults.
pub fn termination_grace_period_seconds(m: &ManagedCluster) -> i64 {
    let ms = |key: &str, default: u64| {
        m.config
            .get(key)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default)
    };
    let shutdown_ms = ms(
        "controlled.shutdown.timeout.ms",
        CONTROLLED_SHUTDOWN_TIMEOUT_MS,
    )
    .saturating_add(ms("shutdown.grace.ms", SHUTDOWN_GRACE_MS));
    (shutdown_ms.div_ceil(1000) as i64).saturating_add(SHUTDOWN_MARGIN_S)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::{ClusterSpec, Listeners};
    use crate::resources::tests::managed;

    fn spec_with(config: &[(&str, &str)]) -> ClusterSpec {
        let mut spec = ClusterSpec::managed(3);
        spec.config = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        spec
    }

    #[test]
    fn voters_are_the_first_ordinals_at_their_stable_dns_names() {
        let m = managed(ClusterSpec::managed(5));
        assert_eq!(
            quorum_voters(&m),
            "0@main-0.main-brokers.team-a.svc:9093,\
             1@main-1.main-brokers.team-a.svc:9093,\
             2@main-2.main-brokers.team-a.svc:9093"
        );
        let mut spec = ClusterSpec::managed(5);
        spec.voters = Some(5);
        spec.listeners = Some(Listeners {
            controller_port: 19093,
            ..Listeners::default()
        });
        let m = managed(spec);
        assert_eq!(quorum_voters(&m).split(',').count(), 5);
        assert!(quorum_voters(&m).ends_with(",4@main-4.main-brokers.team-a.svc:19093"));
        assert_eq!(
            quorum_voters(&managed(ClusterSpec::managed(1))),
            "0@main-0.main-brokers.team-a.svc:9093"
        );
    }

    #[test]
    fn the_file_has_the_owned_keys_defaults_and_user_keys_in_key_order() {
        let m = managed(spec_with(&[
            ("log.retention.ms", " 3600000 "),
            ("num.partitions", "6"),
        ]));
        let text = render(&m);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "controller.listener=0.0.0.0:9093",
                "controller.quorum.voters=0@main-0.main-brokers.team-a.svc:9093,1@main-1.main-brokers.team-a.svc:9093,2@main-2.main-brokers.team-a.svc:9093",
                "default.replication.factor=3",
                "http.listener=0.0.0.0:9644",
                "listeners=PLAINTEXT://0.0.0.0:9092",
                "log.dirs=/var/lib/tributary/data",
                "log.retention.ms=3600000",
                "min.insync.replicas=2",
                "num.partitions=6",
                "offsets.topic.replication.factor=3",
            ]
        );
        assert!(text.starts_with("# broker.properties of Cluster team-a/main"));
        // The same spec renders the same bytes, whatever order the map was filled in.
        let again = managed(spec_with(&[
            ("num.partitions", "6"),
            ("log.retention.ms", "3600000"),
        ]));
        assert_eq!(render(&again), text);
    }

    #[test]
    fn user_values_replace_defaults_but_never_owned_keys() {
        let m = managed(spec_with(&[
            ("min.insync.replicas", "3"),
            ("default.replication.factor", "2"),
        ]));
        let props = properties(&m);
        assert_eq!(props["min.insync.replicas"], "3");
        assert_eq!(props["default.replication.factor"], "2");
        // Owned keys win even if one got past the checks.
        let mut m = managed(ClusterSpec::managed(3));
        m.config.insert("log.dirs".into(), "/elsewhere".into());
        m.config
            .insert("controller.quorum.voters".into(), "9@x:1".into());
        let props = properties(&m);
        assert_eq!(props["log.dirs"], LOG_DIR);
        assert!(props["controller.quorum.voters"].starts_with("0@main-0."));
    }

    #[test]
    fn defaults_follow_the_broker_count() {
        let d = |n| {
            let d = defaults(n);
            (
                d["default.replication.factor"].clone(),
                d["min.insync.replicas"].clone(),
                d["offsets.topic.replication.factor"].clone(),
            )
        };
        assert_eq!(d(1), ("1".into(), "1".into(), "1".into()));
        assert_eq!(d(2), ("2".into(), "1".into(), "2".into()));
        assert_eq!(d(3), ("3".into(), "2".into(), "3".into()));
        assert_eq!(d(9), ("3".into(), "2".into(), "3".into()));
    }

    #[test]
    fn listener_keys_follow_the_ports() {
        let mut spec = ClusterSpec::managed(1);
        spec.listeners = Some(Listeners {
            kafka_port: 19092,
            controller_port: 19093,
            http_port: 18080,
        });
        let props = properties(&managed(spec));
        assert_eq!(props["listeners"], "PLAINTEXT://0.0.0.0:19092");
        assert_eq!(props["controller.listener"], "0.0.0.0:19093");
        assert_eq!(props["http.listener"], "0.0.0.0:18080");
        assert_eq!(
            props["controller.quorum.voters"],
            "0@main-0.main-brokers.team-a.svc:19093"
        );
    }

    #[test]
    fn grace_period_covers_the_brokers_shutdown() {
        assert_eq!(
            termination_grace_period_seconds(&managed(ClusterSpec::managed(3))),
            60
        );
        let m = managed(spec_with(&[
            ("controlled.shutdown.timeout.ms", "120000"),
            ("shutdown.grace.ms", "500"),
        ]));
        assert_eq!(termination_grace_period_seconds(&m), 121 + 20);
    }
}
