//! The fuzzers' entry points (`nacre::fuzz`, also driven by `fuzz/` with cargo fuzz on
//! nightly) fed random and mutated inputs on stable Rust, so CI covers them: DNS
//! request handling, `Listening-Configs`, the beat JSON, HTTP parameters.

use std::path::Path;

use rand::{Rng, SeedableRng};

use crate::dns::raw_query;
use hickory_net::proto::rr::RecordType;

/// `seed` mutated a few times, or random bytes.
fn mutate(rng: &mut impl Rng, seed: &[u8]) -> Vec<u8> {
    if seed.is_empty() || rng.random_bool(0.2) {
        return (0..rng.random_range(0..300))
            .map(|_| rng.random())
            .collect();
    }
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..8) {
        match rng.random_range(0..4) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
            }
            1 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v.truncate(i);
            }
            2 => {
                let i = rng.random_range(0..=v.len());
                v.insert(i, rng.random());
            }
            _ => {
                let i = rng.random_range(0..=v.len());
                let special = [
                    0u8, 1, 2, 0x7f, 0xc0, 0xff, b'%', b'&', b'=', b'{', b'"', b'@',
                ];
                v.insert(i, special[rng.random_range(0..special.len())]);
            }
        }
    }
    v
}

#[test]
fn fuzz_entry_points_take_random_input() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261201);
    let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let dns = nacre::fuzz::DnsTarget::new(&zones);
    let dns_seeds: Vec<Vec<u8>> = [
        ("stock.DEFAULT_GROUP.svc.", RecordType::A, None),
        ("stock.DEFAULT_GROUP.svc.", RecordType::SRV, Some(1232)),
        ("big.G._dev.svc.", RecordType::SRV, Some(4096)),
        ("10-0-0-1.stock.default_group.svc.", RecordType::AAAA, None),
        ("svc.", RecordType::SOA, Some(512)),
        ("www.example.test.", RecordType::A, None),
        ("example.org.", RecordType::TXT, None),
    ]
    .iter()
    .map(|(n, t, e)| raw_query(n, *t, *e))
    .collect();
    for seed in &dns_seeds {
        dns.query(seed);
    }
    for _ in 0..20_000 {
        let seed = &dns_seeds[rng.random_range(0..dns_seeds.len())];
        dns.query(&mutate(&mut rng, seed));
    }

    let listen_seeds: [&[u8]; 3] = [
        b"a\x02G\x02d41d8cd98f00b204e9800998ecf8427e\x01",
        b"a\x02G\x02\x02dev\x01b\x02G\x02x\x01",
        b"",
    ];
    let beat_seeds: [&[u8]; 3] = [
        br#"{"ip":"10.0.0.1","port":8080,"cluster":"DEFAULT","weight":1.0,"metadata":{"a":"b"},"ephemeral":true}"#,
        br#"{"serviceName":"DEFAULT_GROUP@@svc","scheduled":false,"period":5000}"#,
        br#"{"port":-1,"metadata":{"preserved.heart.beat.timeout":"x"}}"#,
    ];
    let param_seeds: [&[u8]; 3] = [
        b"serviceName=G%40%40svc&ip=10.0.0.1&port=80&healthy=true\0metadata=%7B%22a%22%3A1%7D",
        b"healthChecker=%7B%22type%22%3A%22HTTP%22%2C%22headers%22%3A%22a%3Ab%22%7D&ip=a.b",
        b"metadata=a%3D1%2Cb%3D2&serviceName=%40bad",
    ];
    for _ in 0..20_000 {
        let seed = listen_seeds[rng.random_range(0..listen_seeds.len())];
        nacre::fuzz::listening_configs(&mutate(&mut rng, seed));
        let seed = beat_seeds[rng.random_range(0..beat_seeds.len())];
        nacre::fuzz::beat_json(&mutate(&mut rng, seed));
        let seed = param_seeds[rng.random_range(0..param_seeds.len())];
        nacre::fuzz::params(&mutate(&mut rng, seed));
    }
}
