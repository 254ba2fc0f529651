//! The comparison's results: the JSON object (its keys are read by other tools: keep them)
//! and the table printed from it.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::RTT;

/// Everything one run measured: per-batch means, per-round rates.
pub(crate) struct Samples {
    /// Per-batch ns per round trip, one vector per entry of [`RTT`].
    pub rtt: Vec<Vec<f64>>,
    /// iceoryx2's per-batch ns per round trip (empty when not measured).
    pub iceoryx2: Vec<f64>,
    /// Messages per second per round, one vector per entry of `STREAMS`.
    pub stream: Vec<Vec<f64>>,
    /// The idle peers: awaiting (`recv_async`) and blocking (`recv`), both in block mode.
    pub idle: Option<(crate::idle::Idle, crate::idle::Idle)>,
    /// GB/s of 1 MiB messages per round (1 MiB slots).
    pub large: Vec<f64>,
    /// GB/s of 1 MiB messages per round through 64 KiB slots (17 slots per message).
    pub large_in_64k: Vec<f64>,
    /// GB/s of 1 MiB messages through the minimal ring: plain and streaming stores.
    pub large_floor: Vec<f64>,
    pub large_floor_streaming: Vec<f64>,
    /// Single-thread memcpy GB/s per round.
    pub memcpy: Vec<f64>,
    /// The latest-value board's rows.
    pub board: crate::board::BoardSamples,
    /// Rounds run (each per-batch vector holds this many equal runs).
    pub rounds: usize,
    /// Per message size of `sizes::SIZES`: per-batch ns per busy-spin round trip.
    pub by_size: Vec<Vec<f64>>,
    /// The same through the protocol floor (`proto`), measured beside each.
    pub by_size_proto: Vec<Vec<f64>>,
    /// The ring size sweep.
    pub sweep: crate::sweep::SweepSamples,
    /// One cold start per round.
    pub startup: Vec<crate::startup::Startup>,
    /// The two idle sides in block mode (A, B).
    pub idle_sides: Option<(crate::idle_sides::Side, crate::idle_sides::Side)>,
}

pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    quantile(v, 0.5)
}

fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[((v.len() - 1) as f64 * q).round() as usize])
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let vm = cpuinfo.contains(" hypervisor");
    // SAFETY: sysconf only reads a system constant.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    json!({"cpus": cpus, "model": model, "kernel": kernel, "vm": vm})
}

pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> Value {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 1000.0).round() / 1000.0),
        _ => Value::Null,
    }
}

pub(crate) fn num(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |v| json!((v * 100.0).round() / 100.0))
}

/// The round-trip object: one key per [`RTT`] kind, then `iceoryx2`.
fn rtt_object(v: &[Option<f64>], iceoryx2: Option<f64>) -> Value {
    let mut o = Map::new();
    for ((kind, _), x) in RTT.iter().zip(v) {
        o.insert((*kind).into(), num(*x));
    }
    o.insert("iceoryx2".into(), num(iceoryx2));
    Value::Object(o)
}

/// The report object of one run.
pub(crate) fn to_json(mut s: Samples) -> Value {
    let rtt_p50: Vec<Option<f64>> = s.rtt.iter().map(|v| median(&mut v.clone())).collect();
    let rtt_p99: Vec<Option<f64>> = s
        .rtt
        .iter()
        .map(|v| quantile(&mut v.clone(), 0.99))
        .collect();
    let st: Vec<Option<f64>> = s.stream.iter_mut().map(|v| median(v)).collect();
    let memcpy = median(&mut s.memcpy);
    let ours_1m = median(&mut s.large);
    let ours_1m_in_64k = median(&mut s.large_in_64k);
    let floor_1m = median(&mut s.large_floor);
    let floor_1m_streaming = median(&mut s.large_floor_streaming);
    let by = |k: &str| rtt_p50[RTT.iter().position(|(x, _)| *x == k).expect("kind")];
    let ice_p50 = median(&mut s.iceoryx2.clone());
    let ice_p99 = quantile(&mut s.iceoryx2, 0.99);
    let b = &mut s.board;
    let (b_read, b_write) = (median(&mut b.read_64), median(&mut b.write_64));
    let (b_closest, b_cycle) = (median(&mut b.closest_64), median(&mut b.cycle_1m));
    let b_rtt = median(&mut b.rtt_64);
    let b_new = median(&mut b.read_64_new);
    // The floor's one-way cost: half its round trip.
    let floor_one_way = by("floor").map(|f| f / 2.0);
    let mut report = json!({
        "machine": machine(),
        "rtt_ns": rtt_object(&rtt_p50, ice_p50),
        "rtt_p99_ns": rtt_object(&rtt_p99, ice_p99),
        "stream_msgs_per_sec": {
            "floor_64": num(st[0]), "ours_64": num(st[1]), "uds_64": num(st[2]),
            "floor_1k": num(st[3]), "ours_1k": num(st[4]), "floor_64k": num(st[5]), "ours_64k": num(st[6]),
            "untrusted_64": num(st[7]), "untrusted_1k": num(st[8]), "untrusted_64k": num(st[9]),
            "ours_64_batched": num(st[10]), "ours_48": num(st[11]), "ours_48_batched": num(st[12]),
            "proto_64": num(st[13]), "proto_48": num(st[14]),
        },
        "idle_cpu_pct": { "async_await": num(s.idle.as_ref().map(|i| i.0.cpu_pct)) },
        "wake_ns": {
            "async_await": num(s.idle.as_ref().map(|i| i.0.wake_p50_ns)),
            "block": num(s.idle.as_ref().map(|i| i.1.wake_p50_ns)),
        },
        "large_gb_per_sec": {
            "memcpy_1m": num(memcpy), "ours_1m": num(ours_1m),
            "ours_1m_in_64k_slots": num(ours_1m_in_64k),
            "floor_1m": num(floor_1m), "floor_1m_streaming": num(floor_1m_streaming),
        },
        "board_ns": {"read_64": num(b_read), "write_64": num(b_write), "closest_64": num(b_closest), "rtt_64": num(b_rtt)},
        "board_gb_per_sec": {"cycle_1m": num(b_cycle)},
        "ratios": {
            "spin_over_floor": ratio(by("spin"), by("floor")),
            "capnp_over_floor": ratio(by("spin_capnp"), by("floor")),
            "block_over_futex": ratio(by("block"), by("futex_floor")),
            "async_block_over_block": ratio(by("async_block"), by("block")),
            "async_wake_over_block_wake": ratio(
                s.idle.as_ref().map(|i| i.0.wake_p50_ns),
                s.idle.as_ref().map(|i| i.1.wake_p50_ns),
            ),
            "uds_over_spin": ratio(by("uds"), by("spin")),
            "iceoryx2_over_spin": ratio(ice_p50, by("spin")),
            "stream_64_of_floor": ratio(st[1], st[0]),
            "stream_64_batched_of_floor": ratio(st[10], st[0]),
            "stream_48_of_floor_64": ratio(st[11], st[0]),
            "stream_48_batched_of_floor_64": ratio(st[12], st[0]),
            "large_of_memcpy": ratio(ours_1m, memcpy),
            "large_in_64k_slots_of_memcpy": ratio(ours_1m_in_64k, memcpy),
            "large_of_floor_1m": ratio(ours_1m, floor_1m),
            "floor_1m_of_memcpy": ratio(floor_1m, memcpy),
            "floor_1m_streaming_over_plain": ratio(floor_1m_streaming, floor_1m),
            "spin_untrusted_over_spin": ratio(by("spin_untrusted"), by("spin")),
            "capnp_untrusted_over_capnp": ratio(by("capnp_untrusted"), by("spin_capnp")),
            "capnp_built_over_capnp": ratio(by("capnp_built"), by("spin_capnp")),
            "untrusted_64_of_ours": ratio(st[7], st[1]),
            "untrusted_1k_of_ours": ratio(st[8], st[4]),
            "untrusted_64k_of_ours": ratio(st[9], st[6]),
            "board_read_64_over_floor_one_way": ratio(b_read, floor_one_way),
            "board_write_64_over_floor_one_way": ratio(b_write, floor_one_way),
            "board_rtt_64_over_floor": ratio(b_rtt, by("floor")),
            "board_read_64_new_share": ratio(b_new, Some(1.0)),
            "board_cycle_1m_of_memcpy": ratio(b_cycle, memcpy),
        },
    });
    // The protocol floor's streams: what the protocol costs (proto / floor) and what the
    // code path adds (ours / proto).
    if let Some(Value::Object(ratios)) = report.get_mut("ratios") {
        for (k, v) in [
            ("proto_stream_64_of_floor", ratio(st[13], st[0])),
            ("proto_stream_48_of_floor_64", ratio(st[14], st[0])),
            ("stream_64_of_proto", ratio(st[1], st[13])),
            ("stream_64_batched_of_proto", ratio(st[10], st[13])),
            ("stream_48_of_proto_48", ratio(st[11], st[14])),
            ("stream_48_batched_of_proto_48", ratio(st[12], st[14])),
        ] {
            ratios.insert(k.into(), v);
        }
    }
    let rows = crate::report_rows::Rows {
        rounds: s.rounds,
        floor: &s.rtt[RTT.iter().position(|(x, _)| *x == "floor").expect("kind")],
        by_size: &s.by_size,
        by_size_proto: &s.by_size_proto,
        sweep: &s.sweep,
        startup: &s.startup,
        idle_sides: s.idle_sides.as_ref(),
    };
    crate::report_rows::add(&mut report, rows);
    report
}

/// Prints the report as tables.
pub(crate) fn print(r: &Value, took: Duration) {
    let m = &r["machine"];
    println!(
        "machine: {} cpus, {}, kernel {}{}",
        m["cpus"],
        m["model"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        if m["vm"] == true { ", VM" } else { "" }
    );
    println!("\nround trip, 64 B        p50 ns     p99 ns   vs floor");
    let floor = r["rtt_ns"]["floor"].as_f64();
    for k in RTT.iter().map(|(k, _)| *k).chain(["iceoryx2"]) {
        let p50 = r["rtt_ns"][k].as_f64();
        let p99 = r["rtt_p99_ns"][k].as_f64();
        let vs = match (p50, floor) {
            (Some(a), Some(f)) if f > 0.0 => format!("{:.2}x", a / f),
            _ => "-".into(),
        };
        let show = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        println!("  {k:<18} {:>10} {:>10} {vs:>10}", show(p50), show(p99));
    }
    println!("\none-way streaming        msgs/s");
    for (k, v) in r["stream_msgs_per_sec"].as_object().into_iter().flatten() {
        println!("  {k:<18} {:>14.0}", v.as_f64().unwrap_or(0.0));
    }
    println!("\n1 MiB messages           GB/s");
    for (k, v) in r["large_gb_per_sec"].as_object().into_iter().flatten() {
        println!("  {k:<18} {:>14.2}", v.as_f64().unwrap_or(0.0));
    }
    println!("\nlatest-value board       ns (GB/s for cycle_1m)");
    for (k, v) in r["board_ns"]
        .as_object()
        .into_iter()
        .flatten()
        .chain(r["board_gb_per_sec"].as_object().into_iter().flatten())
    {
        println!("  {k:<18} {:>14.2}", v.as_f64().unwrap_or(0.0));
    }
    println!("\nidle CPU, % of a core");
    for (k, v) in r["idle_cpu_pct"].as_object().into_iter().flatten() {
        println!("  {k:<18} {:>14.3}", v.as_f64().unwrap_or(0.0));
    }
    println!("\nfirst message after a 2 ms pause, one-way p50 ns");
    for (k, v) in r["wake_ns"].as_object().into_iter().flatten() {
        println!("  {k:<18} {:>14.0}", v.as_f64().unwrap_or(0.0));
    }
    crate::report_rows::print(r);
    println!("\nratios");
    for (k, v) in r["ratios"].as_object().into_iter().flatten() {
        println!(
            "  {k:<22} {}",
            if v.is_null() {
                "n/a".to_string()
            } else {
                v.to_string()
            }
        );
    }
    println!(
        "\n(measured in {:.1} s; baselines and ours interleaved per round)",
        took.as_secs_f64()
    );
}
