//! Which edge config each pod of a region runs. Config changes reach running pods by file
//! reload (the kubelet refreshes the mounted ConfigMap, the edge polls its file), so the
//! Deployment cannot tell; every edge reports the hash of the file it has loaded on its admin
//! port (`GET /config`), and the operator reads it through the API server's pod proxy
//! (`pods/proxy`, verb `get`): no edge holds API credentials, and the operator needs no
//! network path to pods in remote clusters.

use std::time::Duration;

use futures::future;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

use crate::render::ADMIN_PORT;

/// Longest wait for one pod's answer (a wedged pod must not stall the reconcile).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a region's pods run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodConfigs {
    /// Running pods (not terminating).
    pub pods: i32,
    /// Of those, pods that report the wanted config hash.
    pub updated: i32,
    /// A pod that refused the wanted config: (pod, the edge's error).
    pub rejected: Option<(String, String)>,
}

impl PodConfigs {
    pub fn converged(&self) -> bool {
        self.updated == self.pods && self.rejected.is_none()
    }
}

/// The edge's `/config` answer (the parts the operator reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Loaded {
    hash: Option<String>,
    rejected: Option<Rejected>,
}

#[derive(Debug, Deserialize)]
struct Rejected {
    hash: String,
    error: String,
}

/// Lists the region's running pods (`selector`) and asks each which config it runs.
pub async fn observe(
    client: &Client,
    ns: &str,
    selector: &str,
    want: &str,
) -> Result<PodConfigs, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    let running: Vec<String> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| p.name_any())
        .collect();
    let answers = future::join_all(running.iter().map(|p| loaded(client, ns, p))).await;
    let mut out = PodConfigs {
        pods: running.len() as i32,
        ..Default::default()
    };
    for (pod, answer) in running.iter().zip(answers) {
        match answer {
            Ok(l) => {
                if l.hash.as_deref() == Some(want) {
                    out.updated += 1;
                } else if let Some(r) = l.rejected.filter(|r| r.hash == want) {
                    out.rejected.get_or_insert((pod.clone(), r.error));
                }
            }
            Err(e) => tracing::debug!(pod, namespace = ns, error = %e, "edge /config not read"),
        }
    }
    Ok(out)
}

/// `GET /config` of one pod's admin port through the pod proxy.
async fn loaded(client: &Client, ns: &str, pod: &str) -> Result<Loaded, String> {
    let req = http::Request::get(format!(
        "/api/v1/namespaces/{ns}/pods/{pod}:{ADMIN_PORT}/proxy/config"
    ))
    .body(Vec::new())
    .map_err(|e| e.to_string())?;
    let text = tokio::time::timeout(PROBE_TIMEOUT, client.request_text(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("not an edge /config answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_edges_answer() {
        let l: Loaded = serde_json::from_str(
            r#"{"hash":"aa","loadedAtUnix":1,"rejected":{"hash":"bb","error":"bad","atUnix":2}}"#,
        )
        .expect("parses");
        assert_eq!(l.hash.as_deref(), Some("aa"));
        assert_eq!(
            l.rejected.map(|r| (r.hash, r.error)),
            Some(("bb".into(), "bad".into()))
        );
    }
}
