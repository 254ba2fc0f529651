//! The demo's `rpc` subcommand as users run it: the example service called over shm
//! (sleeping with io_uring, with the waiter thread, and with a polling window), a Unix
//! socket, TCP and the in-process loopback.

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
    for (transport, key) in [
        ("shm", "shm"),
        ("shm-thread", "shm_thread"),
        ("shm-spin", "shm_spin"),
        ("uds", "uds"),
        ("tcp", "tcp"),
        ("loopback", "loopback"),
    ] {
        let p50 = r["rpc_rtt_ns"][key].as_f64().unwrap_or(0.0);
        assert!(p50 > 0.0, "{transport}: {r}");
        let t = &r["transports"][transport];
        assert!(
            t["calls_per_sec_16_in_flight"].as_f64().unwrap_or(0.0) > 0.0,
            "{r}"
        );
        assert!(t["p99_ns"].as_f64() >= t["p50_ns"].as_f64(), "{r}");
        assert!(t["cpu_ns_per_call"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
        assert!(t["switches_per_call"].as_f64().is_some(), "{r}");
        // The caller's idle CPU share, and the server's when it is another process.
        let idle = t["idle_cpu_percent"].as_array().expect("idle shares");
        assert_eq!(
            idle.len(),
            if transport == "loopback" { 1 } else { 2 },
            "{r}"
        );
    }
    assert!(r["ratios"]["uds_over_loopback"].as_f64().is_some(), "{r}");
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("capnp-shm-demo-rpc-"))
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
}
