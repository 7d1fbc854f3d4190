//! Scheduling benchmarks: placements per second on one thread, and the scaling curve at
//! 1k / 10k / 100k nodes, for plain requests and with anti-affinity and spread groups in play.
//!
//! Run with `cargo bench -p omnicloud-benches --bench scheduling`.

use std::collections::BTreeMap;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use omnicloud_core::scheduling::{
    AffinityRule, GroupStrategy, Node, PlacementGroup, Resources, Scheduler, Strategy, Topology,
    WorkloadRequest,
};

const BATCH: usize = 1000;

fn cluster(nodes: usize) -> Scheduler {
    let s = Scheduler::new(Strategy::Binpack);
    let zones = ["eu1a", "eu1b", "eu1c"];
    for i in 0..nodes {
        let labels = BTreeMap::from([("rack".to_owned(), format!("r{}", i % 40))]);
        let capacity = Resources {
            cpu_millis: 16_000,
            memory_mib: 65_536,
            gpus: 0,
        };
        s.add_node(
            Node::new(format!("n{i:06}"), "eu1", zones[i % 3], capacity, labels).expect("node"),
        )
        .expect("add");
    }
    s
}

fn request(i: usize, constrained: bool) -> WorkloadRequest {
    let mut r = WorkloadRequest::new(
        format!("w{i}"),
        "acme",
        Resources {
            cpu_millis: 250,
            memory_mib: 512,
            gpus: 0,
        },
    );
    if constrained {
        let app = ["web", "api", "cache", "batch", "db"][i % 5];
        r.labels = BTreeMap::from([("app".to_owned(), app.to_owned())]);
        if app == "db" {
            let selector = BTreeMap::from([("app".to_owned(), "db".to_owned())]);
            r.anti_affinity =
                vec![AffinityRule::new(selector, Topology::Node, true, 1).expect("rule")];
        }
        if i.is_multiple_of(10) {
            r.placement_group = Some(
                PlacementGroup::new(format!("pg{}", i % 97), GroupStrategy::Spread, None)
                    .expect("group"),
            );
        }
    }
    r
}

fn placements(c: &mut Criterion) {
    for (label, constrained) in [("plain", false), ("anti-affinity + spread groups", true)] {
        let mut group = c.benchmark_group(format!("scheduling/{label}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.sample_size(10);
        for nodes in [1_000usize, 10_000, 100_000] {
            let base = cluster(nodes);
            // Warm the cluster with some placed workloads so indexes are not trivially empty.
            for i in 0..BATCH {
                let _ = base.schedule(request(1_000_000 + i, constrained));
            }
            let mut round = 0usize;
            group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
                b.iter_batched(
                    || {
                        round += 1;
                        (0..BATCH)
                            .map(|i| request(round * BATCH + i, constrained))
                            .collect::<Vec<_>>()
                    },
                    |batch| {
                        let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
                        for r in batch {
                            let _ = base.schedule(r);
                        }
                        // Release so every round sees the same load.
                        for id in ids {
                            let _ = base.release(&id);
                        }
                    },
                    BatchSize::SmallInput,
                );
            });
        }
        group.finish();
    }
}

criterion_group!(scheduling, placements);
criterion_main!(scheduling);
