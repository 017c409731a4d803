#![no_main]

// The harness runs in virtual time from this origin; the clock is read here, never in the core.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_core::harness::gateway_ops(
    data,
    std::time::Instant::now()
));
