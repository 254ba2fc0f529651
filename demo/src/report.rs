//! What a side reports: counts, rates, a latency histogram and CPU use, as an aligned table
//! for people or one JSON object for scripts.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// One side's figures over a run (or over one second, for the live lines).
pub struct Report {
    pub role: &'static str,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub decode_errors: u64,
    pub seconds: f64,
    pub bytes_received: u64,
    pub latency_ns: Histogram<u64>,
    pub cpu_percent: f64,
    pub local_poll_us: u64,
    pub remote_poll_us: u64,
    pub wait: &'static str,
}

/// A histogram of one-way latencies in nanoseconds (1 ns to 100 s, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

impl Report {
    pub fn to_json(&self) -> Value {
        let h = &self.latency_ns;
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        json!({
            "role": self.role,
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "out_of_order": self.out_of_order,
            "decode_errors": self.decode_errors,
            "seconds": round3(self.seconds),
            "msgs_per_sec": round3(self.received as f64 / self.seconds),
            "bytes_per_sec": round3(self.bytes_received as f64 / self.seconds),
            "latency_ns": {"p50": q(0.50), "p99": q(0.99), "p999": q(0.999), "max": h.max()},
            "cpu_percent": round3(self.cpu_percent),
            "local_poll_us": self.local_poll_us,
            "remote_poll_us": self.remote_poll_us,
            "wait": self.wait,
        })
    }

    /// Prints the final report: a table, or the JSON object as the last stdout line.
    pub fn print(&self, json: bool) {
        let value = self.to_json();
        if json {
            println!("{value}");
        } else {
            print_table(&[&value]);
        }
    }
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// Prints reports (JSON values as made by [`Report::to_json`]) as an aligned table.
pub fn print_table(rows: &[&Value]) {
    println!(
        "{:<4} {:>6} {:>11} {:>11} {:>5} {:>5} {:>12} {:>9} {:>9} {:>9} {:>6} {:>11}",
        "side",
        "wait",
        "sent",
        "received",
        "lost",
        "ooo",
        "msg/s",
        "p50 µs",
        "p99 µs",
        "max µs",
        "cpu%",
        "poll µs l/r"
    );
    for r in rows {
        let us = |k: &str| r["latency_ns"][k].as_u64().unwrap_or(0) as f64 / 1000.0;
        println!(
            "{:<4} {:>6} {:>11} {:>11} {:>5} {:>5} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>6.1} {:>11}",
            r["role"].as_str().unwrap_or("?"),
            r["wait"].as_str().unwrap_or("?"),
            r["sent"].as_u64().unwrap_or(0),
            r["received"].as_u64().unwrap_or(0),
            r["lost"].as_u64().unwrap_or(0),
            r["out_of_order"].as_u64().unwrap_or(0),
            r["msgs_per_sec"].as_f64().unwrap_or(0.0),
            us("p50"),
            us("p99"),
            us("max"),
            r["cpu_percent"].as_f64().unwrap_or(0.0),
            format!("{}/{}", r["local_poll_us"], r["remote_poll_us"]),
        );
    }
}

/// Process CPU time (user + system) so far.
pub fn cpu_time() -> Duration {
    capnp_shm_comparison::cpu_time()
}

/// CPU use between two points, as a percentage of one core.
pub struct CpuMeter {
    wall: Instant,
    cpu: Duration,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        CpuMeter {
            wall: Instant::now(),
            cpu: cpu_time(),
        }
    }

    /// Percent of one core used since the last call (or the start), and restarts.
    pub fn lap(&mut self) -> f64 {
        let now = CpuMeter::start();
        let wall = now.wall.duration_since(self.wall).as_secs_f64();
        let cpu = now.cpu.saturating_sub(self.cpu).as_secs_f64();
        *self = now;
        if wall > 0.0 {
            100.0 * cpu / wall
        } else {
            0.0
        }
    }
}
