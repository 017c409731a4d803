#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_core::harness::content_length(data));
