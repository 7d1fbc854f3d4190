//! State benchmarks: dependency ordering and impact on 100k resources / 300k edges, drift on
//! 10k resources x 50 fields, and snapshot write / restore of 1M resources.
//!
//! Run with `cargo bench -p omnicloud-benches --bench state`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use omnicloud_benches::{Xorshift, t0};
use omnicloud_core::ids::TenantId;
use omnicloud_core::state::{
    DependencyResolver, DriftStrategy, ExactMatch, Resource, SemanticEquality, SnapshotManager,
    StateExport,
};
use serde_json::{Value, json};

fn graph(n: usize, edges: usize) -> DependencyResolver {
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut deps: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut placed = 0;
    while placed < edges {
        let i = 1 + rng.below(n as u64 - 1) as usize;
        let j = rng.below(i as u64) as usize;
        let d = format!("res-{j:07}");
        if !deps[i].contains(&d) {
            deps[i].push(d);
            placed += 1;
        }
    }
    let mut g = DependencyResolver::new();
    for (i, d) in deps.iter().enumerate() {
        g.add(&format!("res-{i:07}"), d).expect("add");
    }
    g
}

fn dependency_graph(c: &mut Criterion) {
    let g = graph(100_000, 300_000);
    let probes: Vec<String> = (0..100).map(|i| format!("res-{:07}", i * 1000)).collect();
    let mut group = c.benchmark_group("state/deps 100k nodes 300k edges");
    group.sample_size(10);
    group.bench_function("topological_order", |b| {
        b.iter(|| g.topological_order().expect("order"))
    });
    group.bench_function("levels", |b| b.iter(|| g.levels().expect("levels")));
    group.bench_function("100 impact queries", |b| {
        b.iter(|| {
            for p in &probes {
                let mut n = 0usize;
                g.for_each_impacted(p, |_, _| n += 1).expect("impact");
                black_box(n);
            }
        })
    });
    group.finish();
}

fn drift_pairs(resources: usize) -> Vec<(Value, Value)> {
    (0..resources)
        .map(|r| {
            let mut desired = serde_json::Map::new();
            desired.insert("name".into(), json!(format!("res-{r}")));
            desired.insert(
                "disks".into(),
                json!([{"size": 100, "iops": 3000}, {"size": 200, "iops": 3000}]),
            );
            for f in 0..44 {
                desired.insert(format!("f{f:02}"), json!(f));
            }
            let desired = Value::Object(desired);
            let mut actual = desired.clone();
            actual["f07"] = json!("drifted");
            (desired, actual)
        })
        .collect()
}

fn drift(c: &mut Criterion) {
    let pairs = drift_pairs(10_000);
    let semantic = SemanticEquality::new(&["/name"], &["/disks"]).expect("rules");
    let mut group = c.benchmark_group("state/drift 10k resources x 50 fields");
    group.sample_size(10);
    group.bench_function("exact match", |b| {
        b.iter(|| {
            pairs
                .iter()
                .map(|(d, a)| ExactMatch.compare(d, a).expect("diff").len())
                .sum::<usize>()
        })
    });
    group.bench_function("semantic equality", |b| {
        b.iter(|| {
            pairs
                .iter()
                .map(|(d, a)| semantic.compare(d, a).expect("diff").len())
                .sum::<usize>()
        })
    });
    group.finish();
}

fn snapshots(c: &mut Criterion) {
    let tenant = TenantId::new("acme").expect("tenant");
    let export = StateExport {
        lineage: "bench".into(),
        serial: 1,
        resources: (0..1_000_000)
            .map(|i| {
                Arc::new(
                    Resource::new(
                        format!("r{i:07}"),
                        tenant.clone(),
                        "database",
                        "eu-west-1",
                        json!({"size": i % 500, "engine": "pg"}),
                    )
                    .expect("resource"),
                )
            })
            .collect(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let snaps = SnapshotManager::open(dir.path()).expect("snapshots");
    let id = snaps.create(&export, t0()).expect("create").id;
    let mut group = c.benchmark_group("state/snapshot 1M resources");
    group.sample_size(10);
    group.bench_function("write", |b| {
        b.iter(|| {
            let info = snaps.create(&export, t0()).expect("create");
            snaps.delete(&info.id).expect("delete");
        })
    });
    group.bench_function("restore", |b| {
        b.iter(|| snaps.restore(&id).expect("restore").1.resources.len())
    });
    group.finish();
}

criterion_group!(state, dependency_graph, drift, snapshots);
criterion_main!(state);
