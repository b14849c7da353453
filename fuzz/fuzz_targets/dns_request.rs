//! DNS request handling, fast and general path, UDP and TCP (`nacre::fuzz::DnsTarget`).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static TARGET: LazyLock<nacre::fuzz::DnsTarget> = LazyLock::new(|| {
    nacre::fuzz::DnsTarget::new(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../zones"))
});

fuzz_target!(|data: &[u8]| TARGET.query(data));
