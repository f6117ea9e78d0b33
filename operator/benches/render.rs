//! Render + diff cost per Distribution (2 regions): what one no-op reconcile spends on CPU
//! besides API round trips.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::ByteString;
use kubefront_operator::{fixtures, render};

fn render_and_diff(c: &mut Criterion) {
    let dist = fixtures::example();
    let creds: BTreeMap<String, ByteString> = [("accessKeyId", "AKID"), ("secretAccessKey", "s")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let ctx = render::RenderContext {
        edge_image: "kubefront/edge:0.1.0",
        credentials: Some(&creds),
    };
    let render_all = || {
        let cfg = render::edge_config(&dist.spec, &fixtures::key_secrets()).expect("valid");
        dist.spec
            .regions
            .iter()
            .map(|r| render::render_region(&dist, r, &cfg, &ctx).expect("renders"))
            .collect::<Vec<_>>()
    };
    let as_values = |objs: &[render::RegionObjects]| -> Vec<serde_json::Value> {
        objs.iter()
            .flat_map(|o| {
                [
                    serde_json::to_value(&o.secret),
                    serde_json::to_value(&o.config_map),
                    serde_json::to_value(&o.service),
                    serde_json::to_value(&o.pdb),
                    serde_json::to_value(&o.deployment),
                ]
            })
            .map(|v| v.expect("json"))
            .collect()
    };
    // "Live" objects: the rendered ones plus what a server adds.
    let live: Vec<serde_json::Value> = as_values(&render_all())
        .into_iter()
        .map(|mut v| {
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
    c.bench_function("render + diff 2 regions (no-op)", |b| {
        b.iter(|| {
            let desired = as_values(&render_all());
            let in_sync = desired
                .iter()
                .zip(&live)
                .all(|(d, l)| render::is_subset(d, l));
            assert!(in_sync);
            std::hint::black_box(in_sync)
        })
    });
}

criterion_group!(benches, render_and_diff);
criterion_main!(benches);
