//! Volumes, as the kubelet's volume plugins make them, each a directory of the runner's
//! that the pod's sandbox bind-mounts: `configMap` and `secret` (a file per key or item,
//! written when the pod starts, not refreshed), `projected` (ServiceAccount token,
//! ConfigMap, Secret and downward API sources: the API server adds one, `kube-api-access-*`,
//! to every pod), `emptyDir` (a fresh directory per pod), `persistentVolumeClaim` (one
//! directory per claim, outliving its pods: see [`super::PodRunner::claim_dir`]) and
//! `hostPath` (the path itself).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ProjectedVolumeSource, Secret, ServiceAccount,
};
use kube::api::PostParams;
use kube::Api;

use super::spec;
use super::worker::{Worker, HOST_IP};

impl Worker {
    /// Each volume's directory (or file) here, and whether it mounts read-only.
    pub(super) async fn prepare_volumes(
        &self,
        pod: &Pod,
        ip: IpAddr,
    ) -> Result<BTreeMap<String, (PathBuf, bool)>> {
        let client = &self.ctx.client;
        let ns = &self.ctx.options.namespace;
        let mut dirs = BTreeMap::new();
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        for volume in volumes.into_iter().flatten() {
            let dir = self.dir.join("volumes").join(&volume.name);
            let entry = if let Some(source) = &volume.config_map {
                let items = key_items(
                    source
                        .items
                        .as_deref()
                        .map(|i| i.iter().map(|i| (i.key.as_str(), i.path.as_str(), i.mode))),
                );
                let data = self.config_map_data(&source.name, source.optional).await?;
                let files = select_files(&data, &items, source.default_mode, source.optional)
                    .with_context(|| format!("configmap {:?}", source.name))?;
                write_files(&dir, &files)?;
                (dir, true)
            } else if let Some(source) = &volume.secret {
                let name = source.secret_name.clone().unwrap_or_default();
                let items = key_items(
                    source
                        .items
                        .as_deref()
                        .map(|i| i.iter().map(|i| (i.key.as_str(), i.path.as_str(), i.mode))),
                );
                let data = self.secret_data(&name, source.optional).await?;
                let files = select_files(&data, &items, source.default_mode, source.optional)
                    .with_context(|| format!("secret {name:?}"))?;
                write_files(&dir, &files)?;
                (dir, true)
            } else if let Some(projected) = &volume.projected {
                let files = self.projected_files(pod, ip, projected).await?;
                write_files(&dir, &files)?;
                (dir, true)
            } else if volume.empty_dir.is_some() {
                std::fs::create_dir_all(&dir)?;
                (dir, false)
            } else if let Some(source) = &volume.persistent_volume_claim {
                let claim = &source.claim_name;
                if Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                    .get_opt(claim)
                    .await?
                    .is_none()
                {
                    bail!(
                        "persistentvolumeclaim {claim:?} not found (volume {:?})",
                        volume.name
                    );
                }
                let dir = self.ctx.shared.claim_dir(claim);
                std::fs::create_dir_all(&dir)?;
                (dir, source.read_only.unwrap_or(false))
            } else if let Some(source) = &volume.host_path {
                let path = PathBuf::from(&source.path);
                if !path.exists() {
                    bail!(
                        "hostPath {} does not exist (volume {:?})",
                        path.display(),
                        volume.name
                    );
                }
                (path, false)
            } else {
                bail!(
                    "volume {:?}: the pod runner supports configMap, secret, projected, \
                     emptyDir, persistentVolumeClaim and hostPath volumes",
                    volume.name
                );
            };
            dirs.insert(volume.name.clone(), entry);
        }
        Ok(dirs)
    }

    /// A ConfigMap's data and binary data by key; empty for a missing optional one.
    async fn config_map_data(
        &self,
        name: &str,
        optional: Option<bool>,
    ) -> Result<BTreeMap<String, Vec<u8>>> {
        let got =
            Api::<ConfigMap>::namespaced(self.ctx.client.clone(), &self.ctx.options.namespace)
                .get_opt(name)
                .await?;
        let mut data = BTreeMap::new();
        match got {
            Some(cm) => {
                for (k, v) in cm.data.into_iter().flatten() {
                    data.insert(k, v.into_bytes());
                }
                for (k, v) in cm.binary_data.into_iter().flatten() {
                    data.insert(k, v.0);
                }
            }
            None if optional == Some(true) => {}
            None => bail!("configmap {name:?} not found"),
        }
        Ok(data)
    }

    /// A Secret's data by key; empty for a missing optional one.
    async fn secret_data(
        &self,
        name: &str,
        optional: Option<bool>,
    ) -> Result<BTreeMap<String, Vec<u8>>> {
        let got = Api::<Secret>::namespaced(self.ctx.client.clone(), &self.ctx.options.namespace)
            .get_opt(name)
            .await?;
        match got {
            Some(secret) => Ok(secret
                .data
                .into_iter()
                .flatten()
                .map(|(k, v)| (k, v.0))
                .collect()),
            None if optional == Some(true) => Ok(BTreeMap::new()),
            None => bail!("secret {name:?} not found"),
        }
    }

    /// The files of a projected volume (the API server's `kube-api-access-*` volume in
    /// every pod): a ServiceAccount token from the TokenRequest API, bound to the pod, and
    /// ConfigMap, Secret and downward API sources. Written once: the token is not renewed.
    async fn projected_files(
        &self,
        pod: &Pod,
        ip: IpAddr,
        projected: &ProjectedVolumeSource,
    ) -> Result<Vec<(String, Vec<u8>, i32)>> {
        let default_mode = projected.default_mode.unwrap_or(0o644);
        let mut files = Vec::new();
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let account = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".into());
                let request = TokenRequest {
                    spec: Some(TokenRequestSpec {
                        // None: the API server's own audiences.
                        audiences: token.audience.clone().map(|a| vec![a]),
                        expiration_seconds: token.expiration_seconds,
                        bound_object_ref: Some(BoundObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Pod".into()),
                            name: Some(self.name.clone()),
                            uid: Some(self.uid.clone()),
                        }),
                    }),
                    ..Default::default()
                };
                let issued: TokenRequest = Api::<ServiceAccount>::namespaced(
                    self.ctx.client.clone(),
                    &self.ctx.options.namespace,
                )
                .create_subresource("token", &account, &PostParams::default(), &request)
                .await
                .with_context(|| format!("requesting a token of serviceaccount {account:?}"))?;
                let token_value = issued.status.and_then(|s| s.token).unwrap_or_default();
                files.push((token.path.clone(), token_value.into_bytes(), default_mode));
            } else if let Some(cm) = &source.config_map {
                let items = key_items(
                    cm.items
                        .as_deref()
                        .map(|i| i.iter().map(|i| (i.key.as_str(), i.path.as_str(), i.mode))),
                );
                let data = self.config_map_data(&cm.name, cm.optional).await?;
                files.extend(
                    select_files(&data, &items, Some(default_mode), cm.optional)
                        .with_context(|| format!("configmap {:?}", cm.name))?,
                );
            } else if let Some(secret) = &source.secret {
                let items = key_items(
                    secret
                        .items
                        .as_deref()
                        .map(|i| i.iter().map(|i| (i.key.as_str(), i.path.as_str(), i.mode))),
                );
                let data = self.secret_data(&secret.name, secret.optional).await?;
                files.extend(
                    select_files(&data, &items, Some(default_mode), secret.optional)
                        .with_context(|| format!("secret {:?}", secret.name))?,
                );
            } else if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    let Some(field) = &item.field_ref else {
                        bail!("downward API resourceFieldRef is not supported by the pod runner");
                    };
                    let value = spec::field_ref(pod, &field.field_path, ip, HOST_IP)?;
                    files.push((
                        item.path.clone(),
                        value.into_bytes(),
                        item.mode.unwrap_or(default_mode),
                    ));
                }
            } else {
                bail!("a projected volume source the pod runner does not support");
            }
        }
        Ok(files)
    }
}

/// PATH as a relative path that stays inside its base (no `..`, not absolute).
pub(super) fn relative_path(path: &str) -> Result<&Path> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(p)
    } else {
        Err(anyhow!(
            "path {path:?} must be relative and must not contain '..'"
        ))
    }
}

/// A volume's `items`: (key, path, mode).
type KeyItems = Vec<(String, String, Option<i32>)>;

fn key_items<'a>(items: Option<impl Iterator<Item = (&'a str, &'a str, Option<i32>)>>) -> KeyItems {
    items
        .into_iter()
        .flatten()
        .map(|(k, p, m)| (k.to_string(), p.to_string(), m))
        .collect()
}

/// The files of a ConfigMap or Secret volume (source) with DATA: one per key, or only
/// ITEMS when given, as (path, content, mode).
fn select_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: &[(String, String, Option<i32>)],
    default_mode: Option<i32>,
    optional: Option<bool>,
) -> Result<Vec<(String, Vec<u8>, i32)>> {
    let default_mode = default_mode.unwrap_or(0o644);
    if items.is_empty() {
        return Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), default_mode))
            .collect());
    }
    let mut files = Vec::new();
    for (key, path, mode) in items {
        match data.get(key) {
            Some(bytes) => files.push((path.clone(), bytes.clone(), mode.unwrap_or(default_mode))),
            None if optional == Some(true) => {}
            None => bail!("key {key:?} not found"),
        }
    }
    Ok(files)
}

/// Writes FILES (path, content, mode) into DIR, afresh.
fn write_files(dir: &Path, files: &[(String, Vec<u8>, i32)]) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for (path, bytes, mode) in files {
        let file = dir.join(relative_path(path)?);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes)?;
        std::fs::set_permissions(
            &file,
            std::fs::Permissions::from_mode(*mode as u32 & 0o7777),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_write_keys_or_items() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("config");
        let data = BTreeMap::from([
            ("broker.properties".to_string(), b"log.dirs=/x\n".to_vec()),
            ("other".to_string(), b"y".to_vec()),
        ]);
        let write = |items: &[(String, String, Option<i32>)], optional| {
            write_files(&vol, &select_files(&data, items, None, optional)?)
        };
        write(&[], None).unwrap();
        assert_eq!(
            std::fs::read(vol.join("broker.properties")).unwrap(),
            b"log.dirs=/x\n"
        );
        assert_eq!(std::fs::read(vol.join("other")).unwrap(), b"y");
        let mode = std::fs::metadata(vol.join("other"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        // Items: only those, at their paths, with their modes; the directory starts afresh.
        write(&[("other".into(), "sub/renamed".into(), Some(0o600))], None).unwrap();
        assert!(!vol.join("broker.properties").exists());
        assert_eq!(std::fs::read(vol.join("sub/renamed")).unwrap(), b"y");
        let mode = std::fs::metadata(vol.join("sub/renamed"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let missing = [("nope".to_string(), "nope".to_string(), None)];
        assert!(write(&missing, None).is_err());
        assert!(write(&missing, Some(true)).is_ok());
        assert!(write(&[("other".into(), "../x".into(), None)], None).is_err());
    }
}
