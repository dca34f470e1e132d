//! Rebalance cost at production scale: part power 18, 3 replicas, 1,200 devices over
//! 2 regions × 5 zones × 10 servers × 12 devices (issue #3's performance target).
//!
//! `cargo bench -p cairn-ring --bench rebalance`

use std::time::{Duration, Instant};

use cairn_ring::builder::{RebalanceOptions, RingBuilder};
use cairn_ring::types::Device;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const PART_POWER: i64 = 18;

/// The 1,200-device builder, not yet rebalanced.
fn cluster() -> RingBuilder {
    let mut b = match RingBuilder::new(PART_POWER, 3.0, 1) {
        Ok(b) => b,
        Err(e) => panic!("create: {e}"),
    };
    for region in 1..=2u32 {
        for zone in 1..=5u32 {
            for server in 1..=10u32 {
                let ip = format!("10.{region}.{zone}.{server}");
                for disk in 0..12u32 {
                    let dev = Device {
                        id: 0,
                        region,
                        zone,
                        ip: ip.clone(),
                        port: 6200,
                        replication_ip: ip.clone(),
                        replication_port: 6200,
                        device: format!("sd{}", (b'b' + disk as u8) as char),
                        // Mixed disk sizes so that balancing has work to do.
                        weight: if disk < 8 { 4000.0 } else { 8000.0 },
                        meta: String::new(),
                    };
                    if let Err(e) = b.add_device(dev) {
                        panic!("add: {e}");
                    }
                }
            }
        }
    }
    b
}

fn opts(seed: u64) -> RebalanceOptions {
    RebalanceOptions {
        seed: Some(seed),
        now: Some(1_700_000_000),
    }
}

fn bench(c: &mut Criterion) {
    // One timed run with its figures, for the record.
    let start = Instant::now();
    let mut b = cluster();
    let report = b
        .rebalance(&opts(1))
        .unwrap_or_else(|e| panic!("rebalance: {e}"));
    eprintln!(
        "initial rebalance: {:.2?}, moved {}, balance {:.3}, dispersion {:.3}",
        start.elapsed(),
        report.changed_part_replicas,
        report.balance,
        report.dispersion
    );
    // Adding a server (12 devices) to a balanced ring.
    let mut grown = b.clone();
    for disk in 0..12u32 {
        let dev = Device {
            id: 0,
            region: 1,
            zone: 1,
            ip: "10.1.1.99".into(),
            port: 6200,
            replication_ip: "10.1.1.99".into(),
            replication_port: 6200,
            device: format!("sd{disk}"),
            weight: 4000.0,
            meta: String::new(),
        };
        if let Err(e) = grown.add_device(dev) {
            panic!("add: {e}");
        }
    }
    grown.pretend_min_part_hours_passed();
    let start = Instant::now();
    let report = grown
        .rebalance(&opts(2))
        .unwrap_or_else(|e| panic!("rebalance: {e}"));
    eprintln!(
        "add-a-server rebalance: {:.2?}, moved {}, balance {:.3}, dispersion {:.3}",
        start.elapsed(),
        report.changed_part_replicas,
        report.balance,
        report.dispersion
    );

    let mut group = c.benchmark_group("rebalance");
    group.sample_size(10);
    // Each initial rebalance takes about half a second.
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("initial_pp18_1200_devices", |bench| {
        bench.iter_batched(
            cluster,
            |mut b| b.rebalance(&opts(1)).map(|r| r.balance),
            BatchSize::LargeInput,
        )
    });
    let added = {
        let mut g = grown.clone();
        if let Err(e) = g.set_weight(1, 8000.0) {
            panic!("set_weight: {e}");
        }
        g
    };
    group.bench_function("reweight_one_device_pp18", |bench| {
        bench.iter_batched(
            || added.clone(),
            |mut b| b.rebalance(&opts(3)).map(|r| r.balance),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
