//! The beat JSON of `PUT /nacos/v1/ns/instance/beat` (`nacre::fuzz::beat_json`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nacre::fuzz::beat_json(data));
