#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_core::harness::lines(data));
