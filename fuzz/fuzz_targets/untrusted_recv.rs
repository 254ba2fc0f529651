//! Fuzz target: see `capnp_shm_transport::fuzzing::untrusted_recv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    capnp_shm_transport::fuzzing::untrusted_recv(data);
});
