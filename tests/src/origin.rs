//! Real S3 servers for the edge to front. One server per test binary (started on first use),
//! one bucket (or key prefix, for an external endpoint) per test.
//!
//! Selection, in order:
//! 1. `KUBEFRONT_S3_ENDPOINT` (+ `KUBEFRONT_S3_ACCESS_KEY`, `KUBEFRONT_S3_SECRET_KEY`,
//!    `KUBEFRONT_S3_BUCKET`): an existing server (AWS, MinIO, Garage…); tests use unique key
//!    prefixes inside that bucket. Region us-east-1, path-style.
//! 2. `KUBEFRONT_TEST_ORIGIN=garage`: a single-node Garage (`garage` from `KUBEFRONT_GARAGE_BIN`,
//!    `$KUBEFRONT_CACHE/bin` or `PATH`).
//! 3. Default: MinIO (`KUBEFRONT_MINIO_BIN`, `$KUBEFRONT_CACHE/bin/minio` or `PATH`), with a
//!    read-only user for the edge created by `mc` (`KUBEFRONT_MC_BIN`, same lookup).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials as SdkCredentials, Region};
use aws_sdk_s3::primitives::{ByteStream, DateTime};

use crate::error::HarnessError;
use crate::process::{self, find_binary, free_port, ChildGuard};
use crate::Result;

/// An S3 access key pair.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginKind {
    Minio,
    Garage,
    External,
}

/// A running (or external) S3 server.
#[derive(Debug)]
pub struct S3Server {
    pub kind: OriginKind,
    /// Loopback (or external) host:port of the S3 API, for the relay to connect to.
    pub addr: SocketAddr,
    pub endpoint: String,
    /// Full-rights key used to create buckets and seed objects.
    pub admin: Credentials,
    /// Key the edge signs with: read-only where the server supports users.
    pub edge: Credentials,
    fixed_bucket: Option<String>,
    garage_config: Option<PathBuf>,
    garage_bin: Option<PathBuf>,
    /// `mc` and its config dir, for MinIO user management (`create_user`, `remove_user`).
    mc: Option<(PathBuf, PathBuf)>,
    _process: Option<Mutex<ChildGuard>>,
    _dir: Option<tempfile::TempDir>,
}

/// Content metadata stored with a seeded object, returned by S3 on GET.
#[derive(Debug, Clone, Default)]
pub struct ObjectMeta {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<std::time::SystemTime>,
}

impl ObjectMeta {
    pub fn content_type(ct: &str) -> Self {
        ObjectMeta {
            content_type: Some(ct.into()),
            ..Default::default()
        }
    }
    pub fn cache_control(cc: &str) -> Self {
        ObjectMeta {
            cache_control: Some(cc.into()),
            ..Default::default()
        }
    }
}

/// Where a test's objects live: its own bucket, or its own prefix in a shared bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    /// Key prefix the edge must be configured with (`origin.s3.prefix`), empty for own buckets.
    pub prefix: String,
    client: aws_sdk_s3::Client,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique within this machine and run: lowercase, bucket-name safe.
pub fn unique_name(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let clean: String = label
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(30)
        .collect();
    format!(
        "kf-{}-{n}-{:x}-{}",
        std::process::id(),
        nanos & 0xffff,
        clean.trim_matches('-')
    )
}

static SHARED: OnceLock<std::result::Result<Option<Arc<S3Server>>, String>> = OnceLock::new();

impl S3Server {
    /// The server shared by all tests of this binary. `Ok(None)`: nothing available (skip).
    pub fn shared() -> Result<Option<Arc<S3Server>>> {
        SHARED
            .get_or_init(|| {
                S3Server::start_from_env()
                    .map(|o| o.map(Arc::new))
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(HarnessError::Setup)
    }

    /// Starts (or connects to) the server the environment selects; `Ok(None)` when none exists.
    pub fn start_from_env() -> Result<Option<S3Server>> {
        if let Ok(endpoint) = std::env::var("KUBEFRONT_S3_ENDPOINT") {
            if !endpoint.is_empty() {
                return S3Server::external(&endpoint).map(Some);
            }
        }
        let wanted = std::env::var("KUBEFRONT_TEST_ORIGIN").unwrap_or_default();
        match wanted.as_str() {
            "garage" => match find_binary("KUBEFRONT_GARAGE_BIN", "garage") {
                Some(bin) => S3Server::start_garage(bin).map(Some),
                None => Err(HarnessError::Setup(
                    "KUBEFRONT_TEST_ORIGIN=garage but no garage binary found".into(),
                )),
            },
            "" | "minio" => match find_binary("KUBEFRONT_MINIO_BIN", "minio") {
                Some(bin) => S3Server::start_minio(bin).map(Some),
                None => Ok(None),
            },
            other => Err(HarnessError::Setup(format!(
                "KUBEFRONT_TEST_ORIGIN={other}: expected minio or garage"
            ))),
        }
    }

    fn external(endpoint: &str) -> Result<S3Server> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                HarnessError::Setup(format!("KUBEFRONT_S3_ENDPOINT is set but {name} is not"))
            })
        };
        let admin = Credentials {
            access_key: var("KUBEFRONT_S3_ACCESS_KEY")?,
            secret_key: var("KUBEFRONT_S3_SECRET_KEY")?,
        };
        let bucket = var("KUBEFRONT_S3_BUCKET")?;
        let hostport = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        if endpoint.starts_with("https://") {
            return Err(HarnessError::Setup(
                "KUBEFRONT_S3_ENDPOINT must be plain http (the counting relay reads the traffic)"
                    .into(),
            ));
        }
        use std::net::ToSocketAddrs;
        let addr = hostport
            .to_socket_addrs()
            .map_err(HarnessError::io(format!("resolving {hostport}")))?
            .next()
            .ok_or_else(|| HarnessError::Setup(format!("{hostport} resolves to nothing")))?;
        Ok(S3Server {
            kind: OriginKind::External,
            addr,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            edge: admin.clone(),
            admin,
            fixed_bucket: Some(bucket),
            garage_config: None,
            garage_bin: None,
            mc: None,
            _process: None,
            _dir: None,
        })
    }

    fn start_minio(bin: PathBuf) -> Result<S3Server> {
        let dir = tempfile::Builder::new()
            .prefix("kubefront-minio-")
            .tempdir()
            .map_err(HarnessError::io("creating a MinIO temp dir"))?;
        let admin = Credentials {
            access_key: "kubefront-admin".into(),
            secret_key: format!("admin-{}", unique_name("secret")),
        };
        let log = dir.path().join("minio.log");
        let mut last_err = None;
        // A probed port can be taken before MinIO binds it: retry with another.
        for _ in 0..3 {
            let port = free_port()?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let mut cmd = Command::new(&bin);
            cmd.arg("server")
                .arg("--address")
                .arg(addr.to_string())
                .arg("--quiet")
                .arg(dir.path().join("data"))
                .env("MINIO_ROOT_USER", &admin.access_key)
                .env("MINIO_ROOT_PASSWORD", &admin.secret_key)
                .env("MINIO_BROWSER", "off")
                .env("MINIO_UPDATE", "off")
                .env("MINIO_CI_CD", "1");
            let mut child = process::spawn_long_lived("minio", cmd, &log)?;
            match process::wait_until("minio", &mut child, Duration::from_secs(60), || {
                process::http_status(addr, "/minio/health/ready") == Some(200)
            }) {
                Ok(()) => {
                    let edge = create_minio_edge_user(dir.path(), addr, &admin)?;
                    return Ok(S3Server {
                        kind: OriginKind::Minio,
                        addr,
                        endpoint: format!("http://{addr}"),
                        admin,
                        edge,
                        fixed_bucket: None,
                        garage_config: None,
                        garage_bin: None,
                        mc: find_binary("KUBEFRONT_MC_BIN", "mc")
                            .map(|bin| (bin, dir.path().join("mc"))),
                        _process: Some(Mutex::new(child)),
                        _dir: Some(dir),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| HarnessError::Setup("minio did not start".into())))
    }

    fn start_garage(bin: PathBuf) -> Result<S3Server> {
        let dir = tempfile::Builder::new()
            .prefix("kubefront-garage-")
            .tempdir()
            .map_err(HarnessError::io("creating a Garage temp dir"))?;
        let hex = |seed: u64, len: usize| {
            hex::encode(crate::pseudo_random_bytes(len / 2, seed ^ nanos_now()))
        };
        let admin = Credentials {
            access_key: format!("GK{}", hex(1, 24)),
            secret_key: hex(2, 64),
        };
        let edge = Credentials {
            access_key: format!("GK{}", hex(3, 24)),
            secret_key: hex(4, 64),
        };
        let (rpc, s3, adm) = (free_port()?, free_port()?, free_port()?);
        let d = dir.path().display();
        let config = dir.path().join("garage.toml");
        let text = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{}\"\n\
             [s3_api]\ns3_region = \"us-east-1\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
             [admin]\napi_bind_addr = \"127.0.0.1:{adm}\"\nadmin_token = \"{}\"\n",
            hex(5, 64),
            hex(6, 32)
        );
        std::fs::write(&config, text).map_err(HarnessError::io("writing garage.toml"))?;
        let bootstrap = unique_name("bootstrap");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&config)
            .args([
                "server",
                "--single-node",
                "--default-access-key",
                "--default-bucket",
            ])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &admin.access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &admin.secret_key)
            .env("GARAGE_DEFAULT_BUCKET", &bootstrap);
        let log = dir.path().join("garage.log");
        let mut child = process::spawn_long_lived("garage", cmd, &log)?;
        let addr: SocketAddr = ([127, 0, 0, 1], s3).into();
        process::wait_until("garage", &mut child, Duration::from_secs(30), || {
            process::port_open(addr)
        })?;
        // The default key must exist before we can import a second one; retry briefly.
        let mut imported = Err(HarnessError::Setup(
            "garage key import not attempted".into(),
        ));
        for _ in 0..50 {
            imported = process::run(Command::new(&bin).arg("-c").arg(&config).args([
                "key",
                "import",
                "--yes",
                "-n",
                "kubefront-edge",
                &edge.access_key,
                &edge.secret_key,
            ]));
            if imported.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        imported?;
        Ok(S3Server {
            kind: OriginKind::Garage,
            addr,
            endpoint: format!("http://{addr}"),
            admin,
            edge,
            fixed_bucket: None,
            garage_config: Some(config),
            garage_bin: Some(bin),
            mc: None,
            _process: Some(Mutex::new(child)),
            _dir: Some(dir),
        })
    }

    /// Runs `mc ARGS` against this MinIO as its root user; `Ok(None)` when this origin is not
    /// a MinIO with `mc` available (tests that need user management skip then).
    fn mc(&self, args: &[&str]) -> Result<Option<String>> {
        let Some((bin, config)) = &self.mc else {
            return Ok(None);
        };
        let host = format!(
            "http://{}:{}@{}",
            self.admin.access_key, self.admin.secret_key, self.addr
        );
        let mut c = Command::new(bin);
        c.arg("--config-dir")
            .arg(config)
            .args(["--quiet", "--no-color"])
            .args(args)
            .env("MC_HOST_kf", host);
        process::run(&mut c).map(Some)
    }

    /// A new MinIO user with the edge's read-only policy, for a test that revokes it.
    /// `Ok(None)` when users cannot be managed on this origin.
    pub fn create_user(&self, label: &str) -> Result<Option<Credentials>> {
        let creds = Credentials {
            access_key: unique_name(label).chars().take(20).collect(),
            secret_key: format!("secret-{}", unique_name(label)),
        };
        if self
            .mc(&[
                "admin",
                "user",
                "add",
                "kf",
                &creds.access_key,
                &creds.secret_key,
            ])?
            .is_none()
        {
            return Ok(None);
        }
        self.mc(&[
            "admin",
            "policy",
            "attach",
            "kf",
            "kubefront-edge-read",
            "--user",
            &creds.access_key,
        ])?;
        Ok(Some(creds))
    }

    /// Deletes a MinIO user: its key is then unknown to the server (`InvalidAccessKeyId`).
    pub fn remove_user(&self, access_key: &str) -> Result<()> {
        self.mc(&["admin", "user", "remove", "kf", access_key])
            .map(|_| ())
    }

    /// A client with full rights, for seeding.
    pub fn admin_client(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint, &self.admin)
    }

    /// A fresh bucket (or prefix) for one test, empty and readable by the edge key.
    pub async fn bucket(&self, label: &str) -> Result<Bucket> {
        let client = self.admin_client();
        let name = unique_name(label);
        if let Some(fixed) = &self.fixed_bucket {
            return Ok(Bucket {
                name: fixed.clone(),
                prefix: format!("{name}/"),
                client,
            });
        }
        if let (Some(bin), Some(cfg)) = (&self.garage_bin, &self.garage_config) {
            // Buckets made through Garage's S3 API are visible only to their creator's key:
            // create a global one with the CLI and grant the admin and edge keys.
            let garage = |args: &[&str]| {
                let mut c = Command::new(bin);
                c.arg("-c").arg(cfg).args(args);
                process::run(&mut c)
            };
            garage(&["bucket", "create", &name])?;
            garage(&[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                &name,
                "--key",
                &self.admin.access_key,
            ])?;
            garage(&[
                "bucket",
                "allow",
                "--read",
                &name,
                "--key",
                "kubefront-edge",
            ])?;
        } else {
            client
                .create_bucket()
                .bucket(&name)
                .send()
                .await
                .map_err(|e| s3_err("CreateBucket", e))?;
        }
        Ok(Bucket {
            name,
            prefix: String::new(),
            client,
        })
    }
}

fn nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A path-style, us-east-1 S3 client for `endpoint`.
pub fn s3_client(endpoint: &str, creds: &Credentials) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(SdkCredentials::new(
            &creds.access_key,
            &creds.secret_key,
            None,
            None,
            "kubefront-tests",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn s3_err<E: std::fmt::Debug>(op: &str, e: E) -> HarnessError {
    HarnessError::S3 {
        op: op.into(),
        message: format!("{e:?}"),
    }
}

/// Creates `kubefront-edge` with a policy allowing only GetObject and ListBucket (so a missing key
/// is a 404, not a 403) on every bucket. Without `mc`, the edge signs with the root key.
fn create_minio_edge_user(
    dir: &std::path::Path,
    addr: SocketAddr,
    admin: &Credentials,
) -> Result<Credentials> {
    let Some(mc) = find_binary("KUBEFRONT_MC_BIN", "mc") else {
        // Without mc the edge would sign with the root key and every "read-only key" claim
        // would go untested: CI must fail instead.
        if crate::e2e_required() {
            return Err(HarnessError::Setup(
                "mc not found (KUBEFRONT_MC_BIN, $KUBEFRONT_CACHE/bin/mc or PATH): the edge's \
                 read-only MinIO user cannot be created; run tests/cluster/build mc"
                    .into(),
            ));
        }
        eprintln!("kubefront-tests: mc not found; the edge signs with the MinIO root key");
        return Ok(admin.clone());
    };
    let edge = Credentials {
        access_key: "kubefront-edge".into(),
        secret_key: format!("edge-{}", unique_name("secret")),
    };
    let policy = dir.join("edge-read.json");
    std::fs::write(
        &policy,
        r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket","s3:GetBucketLocation"],
   "Resource":["arn:aws:s3:::*"]}]}"#,
    )
    .map_err(HarnessError::io("writing the edge policy"))?;
    let mc_host = format!("http://{}:{}@{addr}", admin.access_key, admin.secret_key);
    let mc_cmd = |args: &[&str]| {
        let mut c = Command::new(&mc);
        c.arg("--config-dir")
            .arg(dir.join("mc"))
            .args(["--quiet", "--no-color"])
            .args(args)
            .env("MC_HOST_kf", &mc_host);
        c
    };
    process::run(&mut mc_cmd(&[
        "admin",
        "user",
        "add",
        "kf",
        &edge.access_key,
        &edge.secret_key,
    ]))?;
    let policy_path = policy.display().to_string();
    process::run(&mut mc_cmd(&[
        "admin",
        "policy",
        "create",
        "kf",
        "kubefront-edge-read",
        &policy_path,
    ]))?;
    process::run(&mut mc_cmd(&[
        "admin",
        "policy",
        "attach",
        "kf",
        "kubefront-edge-read",
        "--user",
        &edge.access_key,
    ]))?;
    Ok(edge)
}

impl Bucket {
    /// The S3 key for a viewer path such as `/img/a.png`.
    pub fn key(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path.trim_start_matches('/'))
    }

    /// Uploads `body` at viewer path `path` with the given metadata.
    pub async fn put(&self, path: &str, body: impl Into<Vec<u8>>, meta: ObjectMeta) -> Result<()> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(self.key(path))
            .body(ByteStream::from(body.into()));
        if let Some(ct) = meta.content_type {
            req = req.content_type(ct);
        }
        if let Some(cc) = meta.cache_control {
            req = req.cache_control(cc);
        }
        if let Some(exp) = meta.expires {
            #[allow(deprecated)] // `expires` as a DateTime is the form every S3 server understands
            {
                req = req.expires(DateTime::from(exp));
            }
        }
        req.send().await.map_err(|e| s3_err("PutObject", e))?;
        Ok(())
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.name)
            .key(self.key(path))
            .send()
            .await
            .map_err(|e| s3_err("DeleteObject", e))?;
        Ok(())
    }
}
