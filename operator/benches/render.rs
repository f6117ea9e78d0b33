//! Render + in-sync check cost per Distribution (2 regions): what one no-op reconcile spends on
//! CPU besides API round trips (the applied-configuration hash of every object, and the
//! comparison of each live object with its dry-run apply).

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::ByteString;
use kubefront_operator::{fixtures, render, sync};

fn render_and_diff(c: &mut Criterion) {
    let dist = fixtures::example();
    let creds: BTreeMap<String, ByteString> = [("accessKeyId", "AKID"), ("secretAccessKey", "s")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let ctx = render::RenderContext {
        edge_image: "kubefront/edge:0.1.0",
        credentials: Some(&creds),
        origin_secrets: &render::NO_SECRETS,
        shield_token: None,
    };
    let render_all = || {
        let cfg = render::edge_config(&dist.spec, &fixtures::key_secrets()).expect("valid");
        dist.spec
            .regions
            .iter()
            .map(|r| render::render_region(&dist, r, &cfg, &ctx).expect("renders"))
            .collect::<Vec<_>>()
    };
    let stamped = |objs: &[render::RegionObjects]| -> Vec<(serde_json::Value, String)> {
        objs.iter()
            .flat_map(|o| {
                [
                    sync::stamp(&o.secret),
                    sync::stamp(&o.config_map),
                    sync::stamp(&o.service),
                    sync::stamp(&o.pdb),
                    sync::stamp(&o.deployment),
                ]
            })
            .map(|v| v.expect("json"))
            .collect()
    };
    // "Live" objects: the applied ones plus what a server adds.
    let live: Vec<serde_json::Value> = stamped(&render_all())
        .into_iter()
        .map(|(mut v, _)| {
            v["metadata"]["uid"] = "0b0e6d6c-uid".into();
            v["metadata"]["resourceVersion"] = "12345".into();
            v["metadata"]["managedFields"] = serde_json::json!([{"manager": "kubefront-operator"}]);
            v["status"] = serde_json::json!({"observedGeneration": 1});
            v
        })
        .collect();

    c.bench_function("render 2 regions", |b| {
        b.iter(|| std::hint::black_box(render_all()))
    });
    c.bench_function("render + in-sync check 2 regions (no-op)", |b| {
        b.iter(|| {
            let desired = stamped(&render_all());
            let in_sync = desired.iter().zip(&live).all(|((_, hash), l)| {
                l["metadata"]["annotations"][sync::ANNOTATION_APPLIED_HASH] == hash.as_str()
                    && sync::unchanged_by_apply(l, l)
            });
            assert!(in_sync);
            std::hint::black_box(in_sync)
        })
    });
}

criterion_group!(benches, render_and_diff);
criterion_main!(benches);
