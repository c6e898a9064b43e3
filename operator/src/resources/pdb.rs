//! The PodDisruptionBudget `<name>`: at most one broker pod evicted at a time (a node drain
//! waits for the evicted broker to be back and ready before taking the next), so with three
//! replicas and `min.insync.replicas=2` acks=all writes go on through a drain.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::ManagedCluster;

pub fn pod_disruption_budget(m: &ManagedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: m.metadata(m.stateful_set_name()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(m.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::ClusterSpec;
    use crate::resources::tests::managed;

    #[test]
    fn allows_one_broker_down_and_selects_the_brokers() {
        let m = managed(ClusterSpec::managed(3));
        let pdb = pod_disruption_budget(&m);
        assert_eq!(pdb.metadata.name.as_deref(), Some("main"));
        assert_eq!(
            pdb.metadata.owner_references.as_ref().map(Vec::len),
            Some(1)
        );
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.and_then(|s| s.match_labels),
            Some(m.selector_labels())
        );
    }
}
