//! Lookup costs on a production-sized ring: part power 18, 3 replicas, 1,200 devices in
//! 2 regions × 5 zones × 12 servers × 10 disks. The ring is assigned synthetically (each
//! partition's replicas on distinct devices in distinct zones) so the bench does not depend
//! on the builder.
//!
//! Run: `cargo bench -p cairn-ring --bench lookup`.

use std::hint::black_box;

use cairn_ring::{Device, HashPathSecret, Ring, RingData};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const REGIONS: u32 = 2;
const ZONES: u32 = 5;
const SERVERS: u32 = 12;
const DISKS: u32 = 10;
const PART_POWER: u8 = 18;
const REPLICAS: usize = 3;

fn synthetic_ring() -> Ring {
    let mut devs = Vec::new();
    for r in 0..REGIONS {
        for z in 0..ZONES {
            for s in 0..SERVERS {
                for d in 0..DISKS {
                    let id = ((r * ZONES + z) * SERVERS + s) * DISKS + d;
                    let ip = format!("10.{}.{}.{}", r + 1, z + 1, s + 1);
                    devs.push(Some(Device {
                        id,
                        region: r + 1,
                        zone: z + 1,
                        ip: ip.clone(),
                        port: 6200,
                        replication_ip: ip,
                        replication_port: 6300,
                        device: format!("d{d}"),
                        weight: 100.0,
                        meta: String::new(),
                    }));
                }
            }
        }
    }
    let parts = 1usize << PART_POWER;
    let zone_count = (REGIONS * ZONES) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut rows: Vec<Vec<u16>> = (0..REPLICAS).map(|_| Vec::with_capacity(parts)).collect();
    let mut zones: Vec<usize> = (0..zone_count).collect();
    for _ in 0..parts {
        zones.shuffle(&mut rng);
        for (row, &zone) in rows.iter_mut().zip(&zones) {
            let within = rng.gen_range(0..(SERVERS * DISKS) as usize);
            row.push((zone * (SERVERS * DISKS) as usize + within) as u16);
        }
    }
    Ring::from_data(RingData {
        part_power: PART_POWER,
        replica2part2dev: rows,
        devs,
        version: 1,
    })
    .expect("synthetic ring is valid")
}

fn lookups(c: &mut Criterion) {
    let ring = synthetic_ring();
    let secret = HashPathSecret::new("", "changeme");
    let names: Vec<String> = (0..1024).map(|i| format!("object-{i}")).collect();
    let parts: Vec<u32> = (0..1024u32)
        .map(|i| i.wrapping_mul(2_654_435_761) >> 14)
        .collect();

    let mut i = 0;
    c.bench_function("get_part (md5 + shift)", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            ring.get_part(
                &secret,
                black_box("AUTH_test"),
                Some(black_box("photos")),
                Some(black_box(names[i].as_str())),
            )
        })
    });
    let mut i = 0;
    c.bench_function("get_part_nodes (iterate 3 primaries)", |b| {
        b.iter(|| {
            i = (i + 1) % parts.len();
            ring.get_part_nodes(black_box(parts[i]))
                .map(|n| n.dev.id)
                .sum::<u32>()
        })
    });
    let mut i = 0;
    c.bench_function("get_part_nodes_vec", |b| {
        b.iter(|| {
            i = (i + 1) % parts.len();
            ring.get_part_nodes_vec(black_box(parts[i]))
        })
    });
    let mut i = 0;
    c.bench_function("get_more_nodes first 3 handoffs", |b| {
        b.iter(|| {
            i = (i + 1) % parts.len();
            ring.get_more_nodes(black_box(parts[i]))
                .take(3)
                .map(|h| h.dev.id)
                .sum::<u32>()
        })
    });
    let mut i = 0;
    c.bench_function("get_more_nodes all handoffs", |b| {
        b.iter(|| {
            i = (i + 1) % parts.len();
            ring.get_more_nodes(black_box(parts[i])).count()
        })
    });
}

criterion_group!(benches, lookups);
criterion_main!(benches);
