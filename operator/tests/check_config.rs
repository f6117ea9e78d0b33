//! The edge config the operator renders is accepted by the real `kubefront-edge check-config`,
//! and a config the proxy must refuse is refused (so this test can fail).

use std::path::PathBuf;
use std::process::Command;

use kubefront_operator::crd::Distribution;
use kubefront_operator::{fixtures, render};
use serde::Deserialize;

/// The edge binary: `KUBEFRONT_EDGE_BIN`, else the workspace's debug build.
fn edge_binary() -> Option<PathBuf> {
    let path = std::env::var_os("KUBEFRONT_EDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug/kubefront-edge")
        });
    if path.exists() {
        return Some(path);
    }
    let msg = format!("kubefront-edge binary not found at {path:?}; build it with `cargo build -p kubefront-edge`");
    if std::env::var("CI").is_ok_and(|v| v == "1" || v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn check(bin: &PathBuf, yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new(bin)
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run kubefront-edge");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn rendered_config_passes_the_real_check_config() {
    let Some(bin) = edge_binary() else { return };
    let dist = fixtures::example();
    let cfg = render::edge_config(&dist.spec, &fixtures::key_secrets()).expect("example renders");
    let (ok, text) = check(&bin, &cfg.to_yaml());
    assert!(
        ok,
        "kubefront-edge check-config rejected the rendered config: {text}"
    );

    // Exactly what goes into the ConfigMap.
    let objs = render::render_region(
        &dist,
        &dist.spec.regions[0],
        &cfg,
        &render::RenderContext {
            edge_image: "e",
            credentials: Some(&Default::default()),
            origin_secrets: &render::NO_SECRETS,
            shield_token: None,
        },
    );
    // (credentials map is empty → render error naming the field, not a panic)
    assert!(objs.is_err());
    let minimal = fixtures::distribution(
        "m",
        "ns",
        fixtures::spec("origin: {s3: {bucket: assets}}\nregions: [{name: a}]"),
    );
    let cfg = render::edge_config(&minimal.spec, &Default::default()).expect("minimal renders");
    let objs = render::render_region(
        &minimal,
        &minimal.spec.regions[0],
        &cfg,
        &render::RenderContext {
            edge_image: "e",
            credentials: None,
            origin_secrets: &render::NO_SECRETS,
            shield_token: None,
        },
    )
    .expect("renders");
    let data = objs.config_map.data.expect("data");
    let (ok, text) = check(&bin, &data[render::CONFIG_KEY]);
    assert!(ok, "ConfigMap edge.yaml rejected: {text}");
}

#[test]
fn check_config_refuses_what_the_proxy_cannot_run() {
    let Some(bin) = edge_binary() else { return };
    let dist = fixtures::example();
    let mut cfg =
        render::edge_config(&dist.spec, &fixtures::key_secrets()).expect("example renders");
    cfg.cache.max_object_size = kubefront_edge::config::ByteSize(cfg.cache.memory.0 * 2);
    let (ok, text) = check(&bin, &cfg.to_yaml());
    assert!(!ok, "an oversized maxObjectSize must be refused");
    assert!(text.contains("maxObjectSize"), "{text}");
}

#[test]
fn rendered_key_groups_and_headers_pass_the_real_check_config() {
    let Some(bin) = edge_binary() else { return };
    let dist = fixtures::signed();
    let keys = fixtures::key_secrets();
    let cfg = render::edge_config(&dist.spec, &keys).expect("signed example renders");
    let c = fixtures::secret_data(&[("accessKeyId", "a"), ("secretAccessKey", "s")]);
    for region in &dist.spec.regions {
        let objs = render::render_region(
            &dist,
            region,
            &cfg,
            &render::RenderContext {
                edge_image: "e",
                credentials: Some(&c),
                origin_secrets: &render::NO_SECRETS,
                shield_token: None,
            },
        )
        .expect("renders");
        let data = objs.config_map.data.expect("data");
        let (ok, text) = check(&bin, &data[render::CONFIG_KEY]);
        assert!(
            ok,
            "region {}: ConfigMap edge.yaml with key groups rejected: {text}",
            region.name
        );
    }
}

#[test]
fn keys_the_operator_refuses_are_keys_the_real_edge_refuses() {
    let Some(bin) = edge_binary() else { return };
    let dist = fixtures::signed();
    let good = render::edge_config(&dist.spec, &fixtures::key_secrets()).expect("renders");
    for (id, pem) in [
        ("K1024", fixtures::RSA_1024_PUBLIC_PEM),
        (
            "KJUNK",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ),
    ] {
        // The operator names the Secret and the key, and applies nothing…
        let mut keys = fixtures::key_secrets();
        keys.get_mut("signing-keys")
            .expect("secret")
            .extend(fixtures::secret_data(&[(id, pem)]));
        let err = render::edge_config(&dist.spec, &keys).expect_err(id);
        assert_eq!(err.field, "spec.trustedKeyGroups[0].secretRef");
        assert!(err.message.contains(id), "{err}");
        // …because the edge would refuse the same config.
        let mut cfg = good.clone();
        cfg.security.trusted_key_groups[0].keys.push(
            kubefront_edge::config::security::TrustedKey {
                id: id.into(),
                public_key_pem: Some(pem.into()),
                public_key_file: None,
            },
        );
        let (ok, text) = check(&bin, &cfg.to_yaml());
        assert!(!ok, "the edge must refuse key {id}");
        assert!(text.contains(id), "{text}");
    }
}

#[test]
fn the_signed_example_renders_and_passes_the_real_check_config() {
    let Some(bin) = edge_binary() else { return };
    let text = include_str!("../../examples/signed-distribution.yaml");
    let mut keys = render::KeySecrets::new();
    let mut dist = None;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = serde_yaml::Value::deserialize(doc).expect("yaml");
        match v["kind"].as_str() {
            Some("Secret") => {
                let name = v["metadata"]["name"].as_str().expect("name").to_string();
                let entries: std::collections::BTreeMap<String, String> =
                    serde_yaml::from_value(v["stringData"].clone()).expect("stringData");
                let pairs: Vec<(&str, &str)> = entries
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                keys.insert(name, fixtures::secret_data(&pairs));
            }
            Some("Distribution") => {
                dist = Some(serde_yaml::from_value::<Distribution>(v).expect("Distribution"))
            }
            other => panic!("unexpected kind {other:?}"),
        }
    }
    let dist = dist.expect("a Distribution");
    let cfg = render::edge_config(&dist.spec, &keys).expect("the example renders");
    assert_eq!(cfg.security.trusted_key_groups[0].keys.len(), 2);
    let (ok, text) = check(&bin, &cfg.to_yaml());
    assert!(ok, "the signed example's edge config was rejected: {text}");
}
