//! The ConfigMap `<name>-config`: `broker.properties`, shared by every broker and mounted
//! read-only at `/etc/tributary`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::broker_config::{render, CONFIG_FILE};
use super::ManagedCluster;

pub fn config_map(m: &ManagedCluster) -> ConfigMap {
    ConfigMap {
        metadata: m.metadata(m.config_map_name()),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), render(m))])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::ClusterSpec;
    use crate::resources::tests::managed;

    #[test]
    fn holds_the_rendered_properties_under_its_name() {
        let m = managed(ClusterSpec::managed(3));
        let cm = config_map(&m);
        assert_eq!(cm.metadata.name.as_deref(), Some("main-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(cm.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            cm.metadata
                .labels
                .as_ref()
                .map(|l| l["app.kubernetes.io/instance"].as_str()),
            Some("main")
        );
        let data = cm.data.expect("data");
        assert_eq!(data.keys().collect::<Vec<_>>(), ["broker.properties"]);
        assert_eq!(data["broker.properties"], render(&m));
    }
}
