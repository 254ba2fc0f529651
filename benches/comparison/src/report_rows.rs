//! The JSON rows of the message-size, ring-size, cold-start and idle-side measurements
//! (`rtt_by_size_ns`, `ring_sweep`, `open_first_msg_ns`, `spawn_first_msg_ns`,
//! `idle_cpu_percent`, `idle_wakeups_per_sec`) and their ratios, added to the report
//! object `report::to_json` builds.

use serde_json::{json, Map, Value};

use crate::idle_sides::Side;
use crate::report::{median, num, ratio};
use crate::sizes::SIZES;
use crate::startup::Startup;
use crate::sweep::{SweepSamples, SLOT_COUNTS};

/// What these rows are computed from.
pub(crate) struct Rows<'a> {
    /// Rounds run: each per-batch vector holds `rounds` equal runs of batches, in order.
    pub rounds: usize,
    /// `rtt_ns.floor`'s per-batch means.
    pub floor: &'a [f64],
    /// Per entry of [`SIZES`]: per-batch means.
    pub by_size: &'a [Vec<f64>],
    /// Per entry of [`SIZES`]: the protocol floor's per-batch means.
    pub by_size_proto: &'a [Vec<f64>],
    pub sweep: &'a SweepSamples,
    /// One per round.
    pub startup: &'a [Startup],
    /// Side A, side B.
    pub idle_sides: Option<&'a (Side, Side)>,
}

/// The median of each round's batches.
fn round_medians(v: &[f64], rounds: usize) -> Vec<f64> {
    if rounds == 0 || v.len() < rounds {
        return Vec::new();
    }
    v.chunks(v.len() / rounds)
        .take(rounds)
        .filter_map(|c| median(&mut c.to_vec()))
        .collect()
}

/// `rtt_by_size_ns`: this transport's rows keyed by size, the protocol floor's as
/// `proto_N`.
fn by_size(r: &Rows<'_>) -> Value {
    let mut o = match by_key(&SIZES, r.by_size) {
        Value::Object(o) => o,
        _ => unreachable!("by_key builds an object"),
    };
    for (size, v) in SIZES.iter().zip(r.by_size_proto) {
        o.insert(format!("proto_{size}"), num(median(&mut v.clone())));
    }
    Value::Object(o)
}

/// The median over rounds of `v`'s round median over the floor's in the same round.
fn over_floor_by_round(v: &[f64], floor: &[f64], rounds: usize) -> Value {
    let mut per_round: Vec<f64> = round_medians(v, rounds)
        .iter()
        .zip(round_medians(floor, rounds))
        .filter(|(_, f)| *f > 0.0)
        .map(|(x, f)| x / f)
        .collect();
    ratio(median(&mut per_round), Some(1.0))
}

/// One key per number in `keys`, the median of the matching vector.
fn by_key(keys: &[usize], v: &[Vec<f64>]) -> Value {
    let mut o = Map::new();
    for (k, x) in keys.iter().zip(v) {
        o.insert(k.to_string(), num(median(&mut x.clone())));
    }
    Value::Object(o)
}

fn side(s: Option<&Side>) -> Value {
    s.map_or(Value::Null, |s| {
        let rates = s
            .wakeups_per_sec
            .iter()
            .map(|(k, v)| (k.clone(), num(Some(*v))))
            .collect();
        Value::Object(rates)
    })
}

/// Adds the rows to `report` (an object with a `ratios` object).
pub(crate) fn add(report: &mut Value, r: Rows<'_>) {
    let mut open: Vec<f64> = r.startup.iter().map(|s| s.open_to_msg).collect();
    let mut spawn: Vec<f64> = r.startup.iter().map(|s| s.spawn_to_msg).collect();
    let (a, b) = (r.idle_sides.map(|s| &s.0), r.idle_sides.map(|s| &s.1));
    let rows = json!({
        "rtt_by_size_ns": by_size(&r),
        "ring_sweep": {
            "rtt_ns": by_key(&SLOT_COUNTS, &r.sweep.rtt),
            "stream_64_msgs_per_sec": by_key(&SLOT_COUNTS, &r.sweep.stream_64),
        },
        "open_first_msg_ns": num(median(&mut open)),
        "spawn_first_msg_ns": num(median(&mut spawn)),
        "idle_cpu_percent": {
            "side_a": num(a.map(|s| s.cpu_pct)),
            "side_b": num(b.map(|s| s.cpu_pct)),
        },
        "idle_wakeups_per_sec": { "side_a": side(a), "side_b": side(b) },
    });
    let Value::Object(report) = report else {
        return;
    };
    for (k, v) in rows.as_object().into_iter().flatten() {
        report.insert(k.clone(), v.clone());
    }
    if let Some(Value::Object(ratios)) = report.get_mut("ratios") {
        for (size, v) in SIZES.iter().zip(r.by_size) {
            ratios.insert(
                format!("spin_{size}_over_floor"),
                over_floor_by_round(v, r.floor, r.rounds),
            );
        }
        // What the protocol costs (proto / floor) and what the code path adds (ours /
        // proto), each round by round as above.
        for ((size, ours), proto) in SIZES.iter().zip(r.by_size).zip(r.by_size_proto) {
            ratios.insert(
                format!("proto_{size}_over_floor"),
                over_floor_by_round(proto, r.floor, r.rounds),
            );
            ratios.insert(
                format!("spin_{size}_over_proto"),
                over_floor_by_round(ours, proto, r.rounds),
            );
        }
    }
}

/// Prints the rows as tables (before the ratios).
pub(crate) fn print(r: &Value) {
    let show = |v: &Value, digits: usize| {
        v.as_f64()
            .map_or("n/a".to_string(), |x| format!("{x:.digits$}"))
    };
    println!("\nround trip by size        spin p50 ns   protocol floor p50 ns");
    for size in SIZES {
        let row = &r["rtt_by_size_ns"];
        let (ours, proto) = (&row[size.to_string()], &row[format!("proto_{size}")]);
        let k = format!("{size} B");
        println!("  {k:<18} {:>14} {:>23}", show(ours, 0), show(proto, 0));
    }
    println!("\nring size sweep (slots)  rtt 64 B ns   stream 64 B msgs/s");
    let sweep = &r["ring_sweep"];
    for k in SLOT_COUNTS.map(|n| n.to_string()) {
        let (rtt, st) = (&sweep["rtt_ns"][&k], &sweep["stream_64_msgs_per_sec"][&k]);
        println!("  {k:<18} {:>14} {:>18}", show(rtt, 0), show(st, 0));
    }
    println!("\ncold start, fresh process, p50 ns");
    for k in ["open_first_msg_ns", "spawn_first_msg_ns"] {
        println!("  {k:<18} {:>14}", show(&r[k], 0));
    }
    println!("\nidle sides in block mode: CPU % of a core; wake-ups/s per thread");
    for k in ["side_a", "side_b"] {
        println!("  {k:<18} {:>14}", show(&r["idle_cpu_percent"][k], 3));
        for (t, v) in r["idle_wakeups_per_sec"][k]
            .as_object()
            .into_iter()
            .flatten()
        {
            println!("    {t:<16} {:>14}", show(v, 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_taken_round_by_round() {
        // Two rounds of two batches: the floor doubles in round 2, and so does the row.
        let floor = [100.0, 100.0, 200.0, 200.0];
        let row = [150.0, 150.0, 300.0, 300.0];
        assert_eq!(over_floor_by_round(&row, &floor, 2), json!(1.5));
        assert_eq!(over_floor_by_round(&[], &floor, 2), Value::Null);
        assert_eq!(round_medians(&row, 0), Vec::<f64>::new());
    }

    /// A run's samples: `measured` fills every new row, else none of them is measured.
    fn samples(measured: bool) -> crate::report::Samples {
        let n = |x: f64| if measured { vec![x, x] } else { Vec::new() };
        let side = Side {
            cpu_pct: 0.25,
            wakeups_per_sec: [("main".to_string(), 1.0), ("shm-liveness".into(), 40.0)].into(),
        };
        crate::report::Samples {
            rtt: crate::RTT.iter().map(|_| n(300.0)).collect(),
            iceoryx2: Vec::new(),
            stream: crate::STREAMS.iter().map(|_| n(1e6)).collect(),
            idle: None,
            large: n(10.0),
            large_in_64k: n(10.0),
            large_floor: n(12.0),
            large_floor_streaming: n(11.0),
            memcpy: n(20.0),
            board: Default::default(),
            rounds: 2,
            by_size: SIZES.iter().map(|_| n(450.0)).collect(),
            by_size_proto: SIZES.iter().map(|_| n(360.0)).collect(),
            sweep: SweepSamples {
                rtt: SLOT_COUNTS.iter().map(|_| n(400.0)).collect(),
                stream_64: SLOT_COUNTS.iter().map(|_| n(3e7)).collect(),
            },
            startup: if measured {
                vec![
                    Startup {
                        open_to_msg: 1e5,
                        spawn_to_msg: 2e6
                    };
                    2
                ]
            } else {
                Vec::new()
            },
            idle_sides: measured.then(|| (side.clone(), side)),
        }
    }

    /// Every key the new rows must have, as JSON pointers.
    fn keys() -> Vec<String> {
        let mut keys: Vec<String> = ["/open_first_msg_ns", "/spawn_first_msg_ns"]
            .map(String::from)
            .into();
        for size in SIZES {
            keys.push(format!("/rtt_by_size_ns/{size}"));
            keys.push(format!("/ratios/spin_{size}_over_floor"));
            keys.push(format!("/rtt_by_size_ns/proto_{size}"));
            keys.push(format!("/ratios/proto_{size}_over_floor"));
            keys.push(format!("/ratios/spin_{size}_over_proto"));
        }
        for slots in SLOT_COUNTS {
            keys.push(format!("/ring_sweep/rtt_ns/{slots}"));
            keys.push(format!("/ring_sweep/stream_64_msgs_per_sec/{slots}"));
        }
        for side in ["side_a", "side_b"] {
            keys.push(format!("/idle_cpu_percent/{side}"));
        }
        for row in ["proto_64", "proto_48"] {
            keys.push(format!("/stream_msgs_per_sec/{row}"));
        }
        for ratio in [
            "proto_stream_64_of_floor",
            "proto_stream_48_of_floor_64",
            "stream_64_of_proto",
            "stream_64_batched_of_proto",
            "stream_48_of_proto_48",
            "stream_48_batched_of_proto_48",
        ] {
            keys.push(format!("/ratios/{ratio}"));
        }
        keys
    }

    #[test]
    fn the_new_rows_are_numbers_when_measured_and_null_when_not() {
        let report = crate::report::to_json(samples(true));
        for key in keys() {
            assert!(report.pointer(&key).is_some_and(Value::is_number), "{key}");
        }
        assert_eq!(report["ratios"]["spin_64_over_floor"], json!(1.5));
        // Protocol floor 360 ns, floor 300, ours 450: the protocol costs 1.2 of the
        // floor, the code path 1.25 of the protocol.
        assert_eq!(report["ratios"]["proto_8_over_floor"], json!(1.2));
        assert_eq!(report["ratios"]["spin_8_over_proto"], json!(1.25));
        assert_eq!(report["rtt_by_size_ns"]["proto_256"], json!(360.0));
        for side in ["side_a", "side_b"] {
            let rates = &report["idle_wakeups_per_sec"][side];
            assert_eq!(rates["shm-liveness"], json!(40.0), "{side}");
            assert!(rates.as_object().unwrap().values().all(Value::is_number));
        }
        // The whole report survives a round trip through its text.
        let text = report.to_string();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), report);

        let report = crate::report::to_json(samples(false));
        for key in keys() {
            assert!(report.pointer(&key).is_some_and(Value::is_null), "{key}");
        }
        for side in ["side_a", "side_b"] {
            assert!(report["idle_wakeups_per_sec"][side].is_null());
        }
        // The rows that were there before are kept.
        assert!(report["idle_cpu_pct"]["async_await"].is_null());
        assert!(report["rtt_ns"]["floor"].is_null());
    }
}
