//! The demo's `rpc` subcommand as users run it: the example service called over shm, a
//! Unix socket and TCP.

mod common;

use common::*;

#[test]
fn rpc_calls_the_example_service_over_each_transport() {
    let out = demo(&["rpc", "--calls", "300", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = last_json(&out);
    for transport in ["shm", "uds", "tcp"] {
        let p50 = r["rpc_rtt_ns"][transport].as_f64().unwrap_or(0.0);
        assert!(p50 > 0.0, "{transport}: {r}");
        let t = &r["transports"][transport];
        assert!(
            t["calls_per_sec_16_in_flight"].as_f64().unwrap_or(0.0) > 0.0,
            "{r}"
        );
        assert!(t["p99_ns"].as_f64() >= t["p50_ns"].as_f64(), "{r}");
    }
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("capnp-shm-demo-rpc-"))
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
}
