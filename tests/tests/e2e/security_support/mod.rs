//! Shared pieces of the security e2e tests: key pairs made by `openssl`, an independent signer
//! (botocore + cryptography, openssl for ECDSA: `tests/security/sign.py`), and raw-socket HTTP
//! for requests no HTTP client library would send.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kubefront_edge::config::security::{KeyGroup, TrustedKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A private key file and its public PEM, made by `openssl genpkey`.
pub struct KeyPair {
    pub id: String,
    pub private_file: PathBuf,
    pub public_pem: String,
    /// `rsa` or `ecdsa`.
    pub kind: &'static str,
}

impl KeyPair {
    pub fn generate(dir: &Path, id: &str, kind: &'static str) -> KeyPair {
        let private_file = dir.join(format!("{id}.pem"));
        let mut gen = Command::new("openssl");
        gen.arg("genpkey");
        match kind {
            "rsa" => gen.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
            "ecdsa" => gen.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            other => panic!("unknown key kind {other}"),
        };
        let out = gen
            .arg("-out")
            .arg(&private_file)
            .output()
            .expect("run openssl genpkey");
        assert!(
            out.status.success(),
            "openssl genpkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private_file)
            .output()
            .expect("run openssl pkey");
        assert!(
            out.status.success(),
            "openssl pkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        KeyPair {
            id: id.into(),
            private_file,
            public_pem: String::from_utf8(out.stdout).expect("PEM is ASCII"),
            kind,
        }
    }

    pub fn trusted(&self) -> TrustedKey {
        TrustedKey {
            id: self.id.clone(),
            public_key_pem: Some(self.public_pem.clone()),
            public_key_file: None,
        }
    }
}

pub fn group(name: &str, keys: &[&KeyPair]) -> KeyGroup {
    KeyGroup {
        name: name.into(),
        keys: keys.iter().map(|k| k.trusted()).collect(),
    }
}

/// The venv python with botocore + cryptography (`tests/security/setup-python`, guarded).
pub fn signer_python() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBEFRONT_SIGNER_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let out = Command::new("bash")
        .arg(repo_root().join("tests/security/setup-python"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/security/setup-python");
    assert!(out.status.success(), "tests/security/setup-python failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

/// What the independent signer produced.
#[derive(Debug, Clone)]
pub struct Signed {
    pub url: String,
    /// `Cookie` header value with every CloudFront-* cookie.
    pub cookie: String,
}

/// A signing request for `sign.py` (see its docstring for fields).
pub fn sign(
    python: &Path,
    key: &KeyPair,
    key_id: &str,
    hash: &str,
    fields: serde_json::Value,
) -> Signed {
    let mut req = fields;
    req["key_file"] = key.private_file.to_string_lossy().into_owned().into();
    req["key_id"] = key_id.into();
    req["alg"] = format!("{}-{hash}", key.kind).into();
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/security/sign.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sign.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all_sync(req.to_string().as_bytes());
    let out = child.wait_with_output().expect("sign.py output");
    assert!(
        out.status.success(),
        "sign.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sign.py JSON");
    let cookie = v["cookies"]
        .as_object()
        .expect("cookies")
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().expect("cookie value")))
        .collect::<Vec<_>>()
        .join("; ");
    Signed {
        url: v["url"].as_str().expect("url").to_string(),
        cookie,
    }
}

trait WriteAllSync {
    fn write_all_sync(self, data: &[u8]);
}

impl WriteAllSync for std::process::ChildStdin {
    fn write_all_sync(mut self, data: &[u8]) {
        use std::io::Write;
        self.write_all(data).expect("write sign.py stdin");
    }
}

/// What came back on a raw connection.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// Status code of the first response, if one arrived.
    pub status: Option<u16>,
    pub raw: Vec<u8>,
    /// The server closed the connection (EOF) before the read deadline.
    pub closed: bool,
}

impl RawReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    pub fn body(&self) -> String {
        let t = self.text();
        t.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let t = self.text();
        let head = t.split("\r\n\r\n").next().unwrap_or("");
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Writes `data` on a fresh connection and reads until EOF or `wait` passes.
pub async fn raw_exchange(addr: SocketAddr, data: &[u8], wait: Duration) -> RawReply {
    let mut s = TcpStream::connect(addr).await.expect("connect to the edge");
    // The server may answer and close before everything is written (e.g. 431): ignore.
    let _ = s.write_all(data).await;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    let mut closed = false;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let status = std::str::from_utf8(raw.get(..12).unwrap_or(&[]))
        .ok()
        .and_then(|l| {
            l.strip_prefix("HTTP/1.1 ")
                .or_else(|| l.strip_prefix("HTTP/1.0 "))
        })
        .and_then(|c| c.get(..3))
        .and_then(|c| c.parse().ok());
    RawReply {
        status,
        raw,
        closed,
    }
}

/// `GET target` with `Connection: close` on a raw socket.
pub async fn raw_get(addr: SocketAddr, target: &str, extra_headers: &str) -> RawReply {
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    raw_exchange(addr, req.as_bytes(), Duration::from_secs(10)).await
}
