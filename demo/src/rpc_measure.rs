//! The measurement of `capnp-shm-demo rpc`, interleaved: every transport's connection is
//! open at once, and the calls run in rounds, a block of calls on each transport in turn,
//! so that the load of a shared machine, which changes from one second to the next,
//! falls on every transport alike and the ratios of one run compare like with like.

use std::time::{Duration, Instant};

use capnp_shm_rpc::service_capnp::host;
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::procstat::ProcStat;
use crate::report::latency_histogram;
use crate::side::DemoError;

/// Calls kept in flight for the pipelined throughput figure.
pub const IN_FLIGHT: usize = 16;
/// Rounds the calls of each phase are split into.
const ROUNDS: u64 = 20;
/// The echo call's payload: a small struct.
const PAYLOAD: &[u8] = &[0x5a; 16];
/// How long the idle figure watches a connection with one call outstanding.
const IDLE_WATCH: Duration = Duration::from_millis(500);

fn other(e: impl std::fmt::Display) -> DemoError {
    DemoError::Other(e.to_string())
}

/// One transport under measurement: its host capability, the processes whose CPU time
/// and context switches count (the caller's, and the server's when it is another), and
/// what was measured so far.
pub struct Target {
    host: host::Client,
    pids: Vec<u32>,
    latency: Histogram<u64>,
    sequential: Duration,
    used: ProcStat,
    in_flight: Duration,
}

impl Target {
    pub fn new(host: host::Client, pids: Vec<u32>) -> Target {
        Target {
            host,
            pids,
            latency: latency_histogram(),
            sequential: Duration::ZERO,
            used: ProcStat::default(),
            in_flight: Duration::ZERO,
        }
    }

    /// `n` calls one at a time, each timed.
    async fn sequential(&mut self, n: u64) -> Result<(), DemoError> {
        let before = ProcStat::of_all(&self.pids);
        let start = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            echo(&self.host, i).await?;
            self.latency
                .saturating_record(t.elapsed().as_nanos() as u64);
        }
        self.sequential += start.elapsed();
        let used = ProcStat::of_all(&self.pids).since(before);
        self.used.cpu_ns += used.cpu_ns;
        self.used.switches += used.switches;
        Ok(())
    }

    /// `n` calls, [`IN_FLIGHT`] at a time.
    async fn pipelined(&mut self, n: u64) -> Result<(), DemoError> {
        let start = Instant::now();
        let mut pending = FuturesUnordered::new();
        let mut next = 0;
        while next < n || !pending.is_empty() {
            while next < n && pending.len() < IN_FLIGHT {
                pending.push(echo(&self.host, next));
                next += 1;
            }
            if let Some(done) = pending.next().await {
                done?;
            }
        }
        self.in_flight += start.elapsed();
        Ok(())
    }
}

async fn echo(host: &host::Client, i: u64) -> Result<(), DemoError> {
    let mut call = host.echo_request();
    call.get().set_value(i);
    call.get().set_payload(PAYLOAD);
    let reply = call.send().promise.await?;
    if reply.get()?.get_value() != i {
        return Err(other("a wrong answer"));
    }
    Ok(())
}

/// The CPU share (percent of one core) that each of `pids` uses over [`IDLE_WATCH`]
/// while a `later` call is outstanding on `host` and nothing else flows; then the call is
/// answered.
async fn idle_cpu_percent(host: &host::Client, pids: &[u32]) -> Result<Vec<f64>, DemoError> {
    const TICKET: u64 = u64::MAX;
    let mut later = host.later_request();
    later.get().set_ticket(TICKET);
    let pending = later.send().promise;
    // Let the call reach the host and both sides settle into their wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before: Vec<ProcStat> = pids.iter().map(|&p| ProcStat::of(p)).collect();
    let start = Instant::now();
    tokio::time::sleep(IDLE_WATCH).await;
    let elapsed = start.elapsed().as_nanos() as f64;
    let shares = pids.iter().zip(before).map(|(&p, before)| {
        let share = ProcStat::of(p).since(before).cpu_ns as f64 / elapsed * 100.0;
        (share * 1000.0).round() / 1000.0
    });
    let shares = shares.collect();
    let mut resolve = host.resolve_request();
    resolve.get().set_ticket(TICKET);
    resolve.get().set_value(7);
    resolve.send().promise.await?;
    if pending.await?.get()?.get_value() != 7 {
        return Err(other("a wrong answer to later"));
    }
    Ok(shares)
}

/// Measures every target over `calls` calls each (one at a time, then [`IN_FLIGHT`] at a
/// time), interleaved in rounds; then each one's idle CPU. One figure object per target.
pub async fn measure(targets: &mut [Target], calls: u64) -> Result<Vec<Value>, DemoError> {
    for t in targets.iter_mut() {
        for i in 0..calls / 10 + 1 {
            echo(&t.host, i).await?; // warm-up
        }
    }
    let block = calls.div_ceil(ROUNDS);
    for _ in 0..ROUNDS {
        for t in targets.iter_mut() {
            t.sequential(block).await?;
        }
    }
    for _ in 0..ROUNDS {
        for t in targets.iter_mut() {
            t.pipelined(block).await?;
        }
    }
    let total = (block * ROUNDS) as f64;
    let per_call = |v: u64| (v as f64 / total * 100.0).round() / 100.0;
    let mut figures = Vec::new();
    for t in targets.iter() {
        let idle = idle_cpu_percent(&t.host, &t.pids).await?;
        figures.push(json!({
            "p50_ns": t.latency.value_at_quantile(0.5),
            "p99_ns": t.latency.value_at_quantile(0.99),
            "max_ns": t.latency.max(),
            "calls_per_sec": (total / t.sequential.as_secs_f64()).round(),
            "calls_per_sec_16_in_flight": (total / t.in_flight.as_secs_f64()).round(),
            "switches_per_call": per_call(t.used.switches),
            "cpu_ns_per_call": per_call(t.used.cpu_ns).round(),
            // The caller's, then the server's (when it is another process).
            "idle_cpu_percent": idle,
        }));
    }
    Ok(figures)
}
