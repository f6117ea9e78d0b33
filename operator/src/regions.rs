//! Region → `kube::Client`: the operator's own client for local regions, or one built from a
//! kubeconfig Secret for remote regions, cached until that Secret's resourceVersion changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::sync::Mutex;

use crate::crd::{Distribution, RegionSpec, SecretKeyRef};

/// Why a region's cluster cannot be reached; each maps to a status reason.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("kubeconfig Secret {secret:?} not found in namespace {namespace:?}")]
    SecretNotFound { namespace: String, secret: String },
    #[error("kubeconfig Secret {secret:?} has no key {key:?}")]
    KeyMissing { secret: String, key: String },
    #[error("kubeconfig in Secret {secret:?} is invalid: {message}")]
    InvalidKubeconfig { secret: String, message: String },
    #[error("reading kubeconfig Secret {secret:?}: {source}")]
    ReadSecret {
        secret: String,
        #[source]
        source: kube::Error,
    },
}

impl RegionError {
    /// The status reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            RegionError::SecretNotFound { .. } => "KubeconfigSecretNotFound",
            RegionError::KeyMissing { .. } => "KubeconfigKeyMissing",
            RegionError::InvalidKubeconfig { .. } => "KubeconfigInvalid",
            RegionError::ReadSecret { .. } => "KubeconfigSecretUnreadable",
        }
    }
}

/// Builds a client from a (vetted) kubeconfig. Swappable so reconciler tests can route remote
/// regions to a mock API server.
pub trait ClientFactory: Send + Sync {
    fn build(&self, kubeconfig: Kubeconfig) -> BoxFuture<'static, Result<Client, String>>;
}

/// Builds real clients with short timeouts, so an unreachable region fails fast instead of
/// holding the reconcile.
pub struct KubeconfigClientFactory;

impl ClientFactory for KubeconfigClientFactory {
    fn build(&self, kubeconfig: Kubeconfig) -> BoxFuture<'static, Result<Client, String>> {
        Box::pin(async move {
            let mut config =
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
            config.connect_timeout = Some(Duration::from_secs(5));
            config.read_timeout = Some(Duration::from_secs(20));
            config.write_timeout = Some(Duration::from_secs(20));
            Client::try_from(config).map_err(|e| e.to_string())
        })
    }
}

/// A built remote client and the Secret version it came from.
#[derive(Clone)]
pub struct RemoteClient {
    pub client: Client,
    /// `namespace/name@resourceVersion` of the kubeconfig Secret, so watchers can be replaced
    /// when the client is.
    pub identity: String,
}

/// (namespace, Secret name, key) of a kubeconfig.
type KubeconfigKey = (String, String, String);

/// Resolves regions to clients.
pub struct Regions {
    local: Client,
    factory: Arc<dyn ClientFactory>,
    /// (namespace, secret, key) → (resourceVersion, client).
    cache: Mutex<HashMap<KubeconfigKey, (String, RemoteClient)>>,
}

impl Regions {
    pub fn new(local: Client, factory: Arc<dyn ClientFactory>) -> Self {
        Self {
            local,
            factory,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn local(&self) -> &Client {
        &self.local
    }

    /// The last client built from this kubeconfig Secret, whatever its version: lets cleanup
    /// reach a region whose Secret was deleted first (e.g. with its whole namespace).
    pub async fn last_known(&self, dist: &Distribution, sref: &SecretKeyRef) -> Option<Client> {
        let ns = dist
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = (ns, sref.name.clone(), sref.key.clone());
        self.cache
            .lock()
            .await
            .get(&key)
            .map(|(_, r)| r.client.clone())
    }

    /// The client for `region`: local, or remote from its kubeconfig Secret (one GET of the
    /// Secret; the client is rebuilt only when the Secret's resourceVersion changed).
    pub async fn client_for(
        &self,
        dist: &Distribution,
        region: &RegionSpec,
    ) -> Result<(Client, Option<RemoteClient>), RegionError> {
        self.client_for_cluster(
            dist,
            region.cluster.as_ref().map(|c| &c.kubeconfig_secret_ref),
        )
        .await
    }

    /// The client of the cluster a kubeconfig Secret reaches (`None` = the local cluster).
    pub async fn client_for_cluster(
        &self,
        dist: &Distribution,
        kubeconfig: Option<&SecretKeyRef>,
    ) -> Result<(Client, Option<RemoteClient>), RegionError> {
        let Some(sref) = kubeconfig else {
            return Ok((self.local.clone(), None));
        };
        let ns = dist
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let secrets: Api<Secret> = Api::namespaced(self.local.clone(), &ns);
        let secret = secrets
            .get_opt(&sref.name)
            .await
            .map_err(|source| RegionError::ReadSecret {
                secret: sref.name.clone(),
                source,
            })?
            .ok_or_else(|| RegionError::SecretNotFound {
                namespace: ns.clone(),
                secret: sref.name.clone(),
            })?;
        let rv = secret.metadata.resource_version.clone().unwrap_or_default();
        let key = (ns.clone(), sref.name.clone(), sref.key.clone());
        if let Some((cached_rv, remote)) = self.cache.lock().await.get(&key) {
            if *cached_rv == rv {
                return Ok((remote.client.clone(), Some(remote.clone())));
            }
        }
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&sref.key))
            .ok_or_else(|| RegionError::KeyMissing {
                secret: sref.name.clone(),
                key: sref.key.clone(),
            })?;
        let invalid = |message: String| RegionError::InvalidKubeconfig {
            secret: sref.name.clone(),
            message,
        };
        let text = std::str::from_utf8(&bytes.0).map_err(|e| invalid(e.to_string()))?;
        let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| invalid(e.to_string()))?;
        vet_kubeconfig(&kubeconfig).map_err(invalid)?;
        let client = self.factory.build(kubeconfig).await.map_err(invalid)?;
        let remote = RemoteClient {
            client: client.clone(),
            identity: format!("{ns}/{}@{rv}", sref.name),
        };
        self.cache.lock().await.insert(key, (rv, remote.clone()));
        Ok((client, Some(remote)))
    }
}

/// Refuses kubeconfig features that would let whoever writes the Secret run commands in, or
/// read files from, the operator's pod: exec and auth-provider plugins, and file paths.
/// Only inline credentials (token, client cert/key data, CA data) are accepted.
pub fn vet_kubeconfig(kc: &Kubeconfig) -> Result<(), String> {
    if kc.clusters.is_empty() {
        return Err("no clusters".into());
    }
    for c in &kc.clusters {
        if let Some(cluster) = &c.cluster {
            if cluster.certificate_authority.is_some() {
                return Err(format!(
                    "cluster {:?}: certificate-authority file paths are not allowed, use certificate-authority-data",
                    c.name
                ));
            }
        }
    }
    for a in &kc.auth_infos {
        let Some(auth) = &a.auth_info else { continue };
        let forbidden = [
            (auth.exec.is_some(), "exec plugins"),
            (auth.auth_provider.is_some(), "auth-provider plugins"),
            (auth.token_file.is_some(), "tokenFile"),
            (
                auth.client_certificate.is_some(),
                "client-certificate file paths",
            ),
            (auth.client_key.is_some(), "client-key file paths"),
        ];
        if let Some((_, what)) = forbidden.iter().find(|(present, _)| *present) {
            return Err(format!(
                "user {:?}: {what} are not allowed in a region kubeconfig",
                a.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_with_exec_plugin_is_refused() {
        let kc = Kubeconfig::from_yaml(
            r#"
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, id]}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"#,
        )
        .expect("parse");
        let err = vet_kubeconfig(&kc).expect_err("exec must be refused");
        assert!(err.contains("exec"), "{err}");
    }

    #[test]
    fn inline_token_kubeconfig_is_accepted() {
        let kc = Kubeconfig::from_yaml(
            r#"
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"#,
        )
        .expect("parse");
        vet_kubeconfig(&kc).expect("accepted");
    }
}
