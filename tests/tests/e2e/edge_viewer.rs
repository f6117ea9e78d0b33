//! The viewer side of the real edge, driven by real clients (curl, openssl s_client): HTTPS
//! with certificates chosen by SNI, HTTP/2 by ALPN and h2c, the minimum TLS version, certificate
//! files replaced while a connection stays open, and the viewer protocol policy.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubefront_edge::config::{
    Behavior, TlsCertificate, TlsConfig, TlsVersion, ViewerProtocolPolicy,
};
use kubefront_tests::{ObjectMeta, Scenario};

/// A self-signed certificate for `name` (and a key) written by the openssl CLI into `dir`.
fn certificate(dir: &Path, file: &str, name: &str, cn: &str) -> TlsCertificate {
    let cert = dir.join(format!("{file}.crt"));
    let key = dir.join(format!("{file}.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={cn}")])
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed (tests/cluster/install-tools apt)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    TlsCertificate {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
    }
}

fn tls_config(certificates: Vec<TlsCertificate>, min_version: TlsVersion) -> TlsConfig {
    TlsConfig {
        listen: "127.0.0.1:0".into(),
        certificates,
        min_version,
        http2: true,
        public_port: 443,
    }
}

/// `curl` with the given arguments; returns (exit success, stdout, stderr). Async: the relay
/// in front of the origin runs on this test's runtime and must keep running meanwhile.
async fn curl(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .await
        .expect("curl must be installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `https://NAME:PORT/path` resolved to the edge's HTTPS listener.
fn https_args(s: &Scenario, name: &str) -> (String, String) {
    let port = s.edge.https.expect("https listener").port();
    (
        format!("{name}:{port}:127.0.0.1"),
        format!("https://{name}:{port}"),
    )
}

/// The subject of the certificate a fresh TLS connection with SNI `name` is given.
async fn served_subject(s: &Scenario, name: &str, extra: &[&str]) -> (bool, String) {
    let addr = s.edge.https.expect("https listener");
    let run = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            name,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("openssl s_client did not finish")
        .expect("openssl s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let subject = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("subject="))
        .unwrap_or("")
        .to_string();
    (
        !subject.is_empty(),
        if subject.is_empty() { text } else { subject },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_picks_the_certificate_by_sni_and_speaks_http2_and_http11() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = certificate(dir.path(), "a", "a.test", "a.test");
    let b = certificate(dir.path(), "b", "b.test", "b.test");
    let Some(s) = Scenario::start("tls-sni", |c| {
        c.server.tls = Some(tls_config(vec![a.clone(), b.clone()], TlsVersion::V1_2));
    })
    .await
    else {
        return;
    };
    s.bucket
        .put(
            "/page.html",
            "<h1>over TLS</h1>",
            ObjectMeta::content_type("text/html"),
        )
        .await
        .unwrap();

    let (resolve_a, base_a) = https_args(&s, "a.test");
    let fmt = "%{http_version} %{http_code}\n";
    let (ok, out, err) = curl(&[
        "--http2",
        "--cacert",
        &a.cert,
        "--resolve",
        &resolve_a,
        "-D",
        "-",
        "-w",
        fmt,
        &format!("{base_a}/page.html"),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("<h1>over TLS</h1>"), "{out}");
    assert!(out.trim_end().ends_with("2 200"), "HTTP/2 by ALPN: {out}");
    assert!(out.to_ascii_lowercase().contains("x-cache: miss"), "{out}");
    let (ok, out, err) = curl(&[
        "--http1.1",
        "--cacert",
        &a.cert,
        "--resolve",
        &resolve_a,
        "-D",
        "-",
        "-w",
        fmt,
        &format!("{base_a}/page.html"),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.trim_end().ends_with("1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("x-cache: hit"),
        "one cache for both: {out}"
    );

    // The second name gets its own certificate: verified against b, refused against a.
    let (resolve_b, base_b) = https_args(&s, "b.test");
    let (ok, out, err) = curl(&[
        "--cacert",
        &b.cert,
        "--resolve",
        &resolve_b,
        "-w",
        fmt,
        &format!("{base_b}/page.html"),
    ])
    .await;
    assert!(ok && out.trim_end().ends_with(" 200"), "{out} {err}");
    let (ok, _, err) = curl(&[
        "--cacert",
        &a.cert,
        "--resolve",
        &resolve_b,
        &format!("{base_b}/page.html"),
    ])
    .await;
    assert!(!ok, "b.test must not be served a's certificate");
    assert!(err.contains("SSL") || err.contains("certificate"), "{err}");
    // No SNI (or an unknown name): the first certificate.
    let (ok, subject) = served_subject(&s, "unknown.test", &[]).await;
    assert!(ok && subject.contains("a.test"), "{subject}");

    // TLS 1.1 is offered by the client and refused by the edge with an alert (not merely
    // left unoffered by a client that disabled it).
    let (ok, text) =
        served_subject(&s, "a.test", &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]).await;
    assert!(!ok, "TLS 1.1 handshake completed: {text}");
    assert!(
        text.contains("Protocol  : TLSv1.1") && text.contains("SSL alert number"),
        "{text}"
    );
    // Plain HTTP stays served beside HTTPS (allow-all).
    assert_eq!(s.get("/page.html").await.status, 200);
}

#[tokio::test]
async fn a_tls13_policy_refuses_tls12() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = certificate(dir.path(), "a", "a.test", "a.test");
    let Some(s) = Scenario::start("tls13", |c| {
        c.server.tls = Some(tls_config(vec![a.clone()], TlsVersion::V1_3));
    })
    .await
    else {
        return;
    };
    let (ok, text) = served_subject(&s, "a.test", &["-tls1_2"]).await;
    assert!(
        !ok,
        "TLS 1.2 handshake completed under a 1.3 policy: {text}"
    );
    assert!(text.contains("alert protocol version"), "{text}");
    let (ok, subject) = served_subject(&s, "a.test", &["-tls1_3"]).await;
    assert!(ok, "{subject}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_serve_new_connections_while_an_open_one_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = certificate(dir.path(), "site", "site.test", "site.test old");
    let Some(s) = Scenario::start("tls-reload", |c| {
        c.server.tls = Some(tls_config(vec![old.clone()], TlsVersion::V1_2));
    })
    .await
    else {
        return;
    };
    s.bucket
        .put("/r.txt", "reloaded", ObjectMeta::default())
        .await
        .unwrap();
    let trusted_old = dir.path().join("trusted-old.crt");
    std::fs::copy(&old.cert, &trusted_old).expect("copy");
    let (ok, subject) = served_subject(&s, "site.test", &[]).await;
    assert!(ok && subject.contains("site.test old"), "{subject}");

    // One curl, one HTTP/2 connection, three requests 4 s apart; the files are replaced
    // after the first.
    let (resolve, base) = https_args(&s, "site.test");
    let url = format!("{base}/r.txt");
    let keep_alive = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "--rate", "15/m", "--max-time", "60"])
        .arg("--cacert")
        .arg(&trusted_old)
        .args([
            "--resolve",
            &resolve,
            "-w",
            "%{num_connects} %{http_version} %{http_code}\n",
        ])
        .args([&url, &url, &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new_dir = tempfile::tempdir().expect("tempdir");
    let new = certificate(new_dir.path(), "site", "site.test", "site.test new");
    // As a Secret volume update does: the new files appear under the same names.
    std::fs::copy(&new.key, &old.key).expect("replace key");
    std::fs::copy(&new.cert, &old.cert).expect("replace cert");

    // New connections get the new certificate once the edge notices (it polls the files).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, subject) = served_subject(&s, "site.test", &[]).await;
        if ok && subject.contains("site.test new") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate never served: {subject}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = keep_alive.wait_with_output().await.expect("curl output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each line is the body, then connections opened, HTTP version, status: one connection,
    // kept across the certificate swap.
    let stats: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("reloaded"))
        .collect();
    assert_eq!(stats, ["1 2 200", "0 2 200", "0 2 200"], "{text}");
    let (ok, _, err) = curl(&["--cacert", &new.cert, "--resolve", &resolve, &url]).await;
    assert!(ok, "{err}");
    assert!(
        !s.edge.logs().contains("cannot be loaded"),
        "{}",
        s.edge.logs()
    );
}

#[tokio::test]
async fn viewer_protocol_policy_redirects_or_refuses_plain_http_per_behavior() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = certificate(dir.path(), "cdn", "cdn.test", "cdn.test");
    let behavior = |pattern: &str, p: Option<ViewerProtocolPolicy>| Behavior {
        path_pattern: pattern.into(),
        min_ttl: None,
        default_ttl: None,
        max_ttl: None,
        viewer_protocol_policy: p,
    };
    let Some(s) = Scenario::start("protocol-policy", |c| {
        c.server.tls = Some(tls_config(vec![cert.clone()], TlsVersion::V1_2));
        c.viewer_protocol_policy = ViewerProtocolPolicy::RedirectToHttps;
        c.behaviors = vec![
            behavior("/secure/*", Some(ViewerProtocolPolicy::HttpsOnly)),
            behavior("/open/*", Some(ViewerProtocolPolicy::AllowAll)),
        ];
    })
    .await
    else {
        return;
    };
    for p in ["/page.txt", "/secure/s.txt", "/open/o.txt"] {
        s.bucket
            .put(p, "content", ObjectMeta::default())
            .await
            .unwrap();
    }
    // Plain HTTP as `Host: cdn.test`, extra headers first; returns "STATUS REDIRECT-URL".
    let viewer = s.edge.viewer;
    let plain_http = |path: &'static str, extra: &'static [&'static str]| async move {
        let url = format!("http://{viewer}{path}");
        let mut args = vec!["-H", "Host: cdn.test"];
        args.extend_from_slice(extra);
        args.extend([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            url.as_str(),
        ]);
        curl(&args).await.1.trim().to_string()
    };
    assert_eq!(
        plain_http("/page.txt?a=1&b", &[]).await,
        "301 https://cdn.test/page.txt?a=1&b"
    );
    assert_eq!(plain_http("/secure/s.txt", &[]).await, "403");
    assert_eq!(plain_http("/open/o.txt", &[]).await, "200");
    // A trusted proxy is not configured, so a viewer's own X-Forwarded-Proto changes nothing.
    assert_eq!(
        plain_http("/secure/s.txt", &["-H", "X-Forwarded-Proto: https"]).await,
        "403"
    );
    // Over HTTPS every path is served.
    let (resolve, base) = https_args(&s, "cdn.test");
    for p in ["/page.txt", "/secure/s.txt", "/open/o.txt"] {
        let (ok, out, err) = curl(&[
            "--cacert",
            &cert.cert,
            "--resolve",
            &resolve,
            "-w",
            " %{http_code}",
            &format!("{base}{p}"),
        ])
        .await;
        assert!(ok, "{p}: {err}");
        assert_eq!(out, "content 200", "{p}");
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_is_accepted_only_when_enabled() {
    let Some(s) = Scenario::start("h2c", |c| c.server.h2c = true).await else {
        return;
    };
    s.bucket
        .put("/h.txt", "h2c", ObjectMeta::default())
        .await
        .unwrap();
    let url = format!("http://{}/h.txt", s.edge.viewer);
    let (ok, out, err) = curl(&["--http2-prior-knowledge", "-w", " %{http_version}", &url]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "h2c 2");
    let (ok, out, _) = curl(&["--http1.1", "-w", " %{http_version}", &url]).await;
    assert!(ok);
    assert_eq!(out, "h2c 1.1", "HTTP/1.1 still served on the h2c port");
    // The viewer limits hold per HTTP/2 stream: an oversized header block gets 431.
    let big = format!("X-Big: {}", "b".repeat(30 * 1024));
    let (ok, out, err) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        &big,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "2 431");

    let Some(plain) = Scenario::start("no-h2c", |_| {}).await else {
        return;
    };
    let url = format!("http://{}/h.txt", plain.edge.viewer);
    let (ok, out, _) = curl(&["--http2-prior-knowledge", "-w", " %{http_version}", &url]).await;
    assert!(
        !ok || !out.ends_with(" 2"),
        "h2c without h2c enabled: {out}"
    );
}
