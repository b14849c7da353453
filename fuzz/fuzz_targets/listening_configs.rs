//! The `Listening-Configs` parser of long polling (`nacre::fuzz::listening_configs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nacre::fuzz::listening_configs(data));
