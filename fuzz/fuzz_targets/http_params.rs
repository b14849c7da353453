//! HTTP query and form parameters and the decoders behind them (`nacre::fuzz::params`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nacre::fuzz::params(data));
