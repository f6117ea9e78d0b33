//! The real binary's command line: `check-config` exit codes and messages, bad flags. These need
//! no S3 server, so they never skip. They live in the edge crate so that `cargo test` builds the
//! `kubefront-edge` binary in the same invocation (and with the same features) as every test:
//! CI's e2e suites and journey run exactly that binary.

use std::process::{Command, Output};

use kubefront_edge::config::EdgeConfig;

fn edge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubefront-edge"));
    // Only what each test passes: KUBEFRONT_* from the caller's environment would be flags.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run kubefront-edge")
}

fn stderr(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    )
}

fn valid_config() -> EdgeConfig {
    let mut c = EdgeConfig::for_bucket("assets");
    c.origin.s3_mut().endpoint = Some("http://127.0.0.1:9000".into());
    c.origin.s3_mut().force_path_style = true;
    c.default_root_object = Some("index.html".into());
    c
}

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, valid_config().to_yaml()).unwrap();
    let out = run(edge().arg("check-config").arg(&path));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_config_rejects_bad_files_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad_bucket = valid_config();
    bad_bucket.origin.s3_mut().bucket = "Not_A_Bucket".into();
    let mut bad_ttl = valid_config();
    bad_ttl.cache.min_ttl = kubefront_edge::config::Dur::secs(100);
    bad_ttl.cache.max_ttl = kubefront_edge::config::Dur::secs(10);
    let cases: Vec<(&str, String, &str)> = vec![
        ("bucket", bad_bucket.to_yaml(), "origin.s3.bucket"),
        ("ttl-order", bad_ttl.to_yaml(), "TTL"),
        (
            "unknown-field",
            format!("{}\nsurprise: 1\n", valid_config().to_yaml()),
            "surprise",
        ),
        ("not-yaml", "origin: [unclosed\n".into(), "edge.yaml"),
        (
            "bad-duration",
            valid_config()
                .to_yaml()
                .replace("defaultTTL: 1d", "defaultTTL: forever")
                .replace("defaultTTL: 24h", "defaultTTL: forever")
                .replace("defaultTTL: 86400s", "defaultTTL: forever"),
            "forever",
        ),
    ];
    for (name, text, needle) in cases {
        let path = dir.path().join(format!("{name}.edge.yaml"));
        std::fs::write(&path, &text).unwrap();
        let out = run(edge().arg("check-config").arg(&path));
        assert!(!out.status.success(), "{name}: accepted\n{text}");
        let msg = stderr(&out);
        assert!(
            msg.to_lowercase().contains(&needle.to_lowercase()),
            "{name}: message does not name {needle:?}: {msg}"
        );
    }
    let out = run(edge()
        .arg("check-config")
        .arg(dir.path().join("missing.yaml")));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.yaml"), "{}", stderr(&out));
}

#[test]
fn bad_flags_exit_non_zero_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["--no-such-flag"], "--no-such-flag"),
        (
            &["--origin-bucket", "b", "--cache-memory", "lots"],
            "cache-memory",
        ),
        (
            &["--origin-bucket", "b", "--default-ttl", "soon"],
            "default-ttl",
        ),
        (
            &["--origin-bucket", "b", "--listen", "not-an-address"],
            "listen",
        ),
        (
            &["--origin-bucket", "b", "--log-format", "xml"],
            "log-format",
        ),
    ];
    for (args, needle) in cases {
        let out = run(edge()
            .args(*args)
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "y"));
        assert!(!out.status.success(), "{args:?} was accepted");
        let msg = stderr(&out);
        assert!(
            msg.contains(needle),
            "{args:?}: message lacks {needle:?}: {msg}"
        );
    }
}

#[test]
fn a_missing_bucket_is_a_startup_error() {
    let out = run(edge().env_remove("KUBEFRONT_ORIGIN_BUCKET").args([
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bucket"), "{}", stderr(&out));
}
