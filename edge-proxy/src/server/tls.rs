//! HTTPS for viewers: certificates from PEM files (a mounted Kubernetes TLS Secret), one chosen
//! per handshake by SNI, swapped in when the files change so renewals need no restart and
//! open connections keep the certificate they started with.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsCertificate, TlsConfig, TlsVersion};

/// Why a certificate pair cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{cert} and {key} do not belong together: {message}")]
    Mismatch {
        cert: String,
        key: String,
        message: String,
    },
    #[error("TLS settings: {0}")]
    Settings(String),
}

/// One loaded pair: the key rustls signs with and the leaf's DER, matched against SNI.
struct Loaded {
    key: Arc<CertifiedKey>,
}

impl Loaded {
    fn serves(&self, name: &ServerName<'_>) -> bool {
        let Some(leaf) = self.key.cert.first() else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
    }
}

/// The certificates in force, and how to notice that their files changed.
pub struct CertStore {
    sources: Vec<TlsCertificate>,
    provider: Arc<CryptoProvider>,
    loaded: ArcSwap<Vec<Loaded>>,
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("certificates", &self.sources.len())
            .finish()
    }
}

impl CertStore {
    /// Loads every pair; any bad file is an error naming it (a start must not half-work).
    pub fn load(
        sources: &[TlsCertificate],
        provider: Arc<CryptoProvider>,
    ) -> Result<CertStore, TlsError> {
        let loaded = load_all(sources, &provider)?;
        Ok(CertStore {
            stamps: Mutex::new(stamps(sources)),
            sources: sources.to_vec(),
            provider,
            loaded: ArcSwap::from_pointee(loaded),
        })
    }

    /// Reloads when any file's modification time or size changed. A pair that no longer loads
    /// leaves the old certificates in force (an error is returned to be logged).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.sources);
        let mut seen = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == now {
            return Ok(false);
        }
        // Remember the stamps even on failure: a broken file is reported once, not every tick;
        // the next change (the fixed file) is tried again.
        *seen = now;
        let loaded = load_all(&self.sources, &self.provider)?;
        self.loaded.store(Arc::new(loaded));
        Ok(true)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.loaded.load();
        let by_name = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n).ok())
            .and_then(|name| loaded.iter().find(|l| l.serves(&name)));
        by_name.or_else(|| loaded.first()).map(|l| l.key.clone())
    }
}

fn stamps(sources: &[TlsCertificate]) -> Vec<Option<(SystemTime, u64)>> {
    sources
        .iter()
        .flat_map(|s| [&s.cert, &s.key])
        .map(|p| {
            // Follows symlinks: a Secret volume swaps its `..data` link on update.
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

fn load_all(
    sources: &[TlsCertificate],
    provider: &CryptoProvider,
) -> Result<Vec<Loaded>, TlsError> {
    sources.iter().map(|s| load_pair(s, provider)).collect()
}

fn load_pair(src: &TlsCertificate, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let file_err = |path: &str, message: String| TlsError::File {
        path: path.to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(Path::new(&src.cert))
        .map_err(|e| file_err(&src.cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(&src.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(&src.cert, "no CERTIFICATE in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(Path::new(&src.key))
        .map_err(|e| file_err(&src.key, format!("no usable private key: {e}")))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_err(&src.key, e.to_string()))?;
    let key = CertifiedKey::new(certs, signing);
    key.keys_match().map_err(|e| TlsError::Mismatch {
        cert: src.cert.clone(),
        key: src.key.clone(),
        message: e.to_string(),
    })?;
    Ok(Loaded { key: Arc::new(key) })
}

/// The HTTPS listener's TLS side: the acceptor and the store its resolver reads.
pub struct ViewerTls {
    pub acceptor: TlsAcceptor,
    pub certs: Arc<CertStore>,
}

impl ViewerTls {
    pub fn new(cfg: &TlsConfig) -> Result<ViewerTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = Arc::new(CertStore::load(&cfg.certificates, provider.clone())?);
        let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Settings(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        server.alpn_protocols = if cfg.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(ViewerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            certs,
        })
    }

    /// Polls the certificate files every `every` and swaps in changed ones (runs until the
    /// process ends; cheap: two `stat`s per pair).
    pub async fn watch_files(certs: Arc<CertStore>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match certs.reload_if_changed() {
                Ok(true) => tracing::info!("viewer TLS certificates reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "viewer TLS certificates changed but cannot be loaded; keeping the previous ones")
                }
            }
        }
    }
}
