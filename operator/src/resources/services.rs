//! The two Services of a managed cluster:
//!
//! - `<name>-brokers`, headless: gives pod `<name>-<i>` the DNS name
//!   `<name>-<i>.<name>-brokers.<namespace>.svc`, which the brokers advertise and the quorum
//!   voters are listed at. It publishes pods that are not ready yet, because the brokers
//!   must reach each other to form the quorum before any of them is ready.
//! - `<name>-bootstrap`, ClusterIP: the one address clients (and the operator) start from;
//!   the brokers' Metadata answers then name each broker at its pod's DNS name.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::ManagedCluster;

/// Port names, shared by the Services and the container.
pub const KAFKA_PORT_NAME: &str = "kafka";
pub const CONTROLLER_PORT_NAME: &str = "controller";
pub const HTTP_PORT_NAME: &str = "http";

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

pub fn headless_service(m: &ManagedCluster) -> Service {
    Service {
        metadata: m.metadata(m.headless_service_name()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(m.selector_labels()),
            ports: Some(vec![
                port(KAFKA_PORT_NAME, m.listeners.kafka_port),
                port(CONTROLLER_PORT_NAME, m.listeners.controller_port),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn bootstrap_service(m: &ManagedCluster) -> Service {
    Service {
        metadata: m.metadata(m.bootstrap_service_name()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(m.selector_labels()),
            ports: Some(vec![port(KAFKA_PORT_NAME, m.listeners.kafka_port)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::{ClusterSpec, Listeners};
    use crate::resources::tests::managed;

    fn ports(s: &Service) -> Vec<(String, i32, String)> {
        s.spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let target = match p.target_port {
                    Some(IntOrString::String(s)) => s,
                    other => format!("{other:?}"),
                };
                (p.name.unwrap_or_default(), p.port, target)
            })
            .collect()
    }

    #[test]
    fn headless_service_publishes_unready_brokers_on_kafka_and_controller_ports() {
        let m = managed(ClusterSpec::managed(3));
        let s = headless_service(&m);
        assert_eq!(s.metadata.name.as_deref(), Some("main-brokers"));
        assert_eq!(s.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        let spec = s.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector.as_ref(), Some(&m.selector_labels()));
        assert_eq!(
            ports(&s),
            [
                ("kafka".into(), 9092, "kafka".into()),
                ("controller".into(), 9093, "controller".into())
            ]
        );
    }

    #[test]
    fn bootstrap_service_is_cluster_ip_on_the_kafka_port() {
        let mut spec = ClusterSpec::managed(3);
        spec.listeners = Some(Listeners {
            kafka_port: 19092,
            ..Listeners::default()
        });
        let m = managed(spec);
        let s = bootstrap_service(&m);
        assert_eq!(s.metadata.name.as_deref(), Some("main-bootstrap"));
        let spec = s.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(spec.publish_not_ready_addresses, None);
        assert_eq!(spec.selector.as_ref(), Some(&m.selector_labels()));
        assert_eq!(ports(&s), [("kafka".into(), 19092, "kafka".into())]);
    }
}
