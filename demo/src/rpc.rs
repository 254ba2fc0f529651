//! `capnp-shm-demo rpc`: the example RPC service (`schema/service.capnp`) served by a
//! child process of this binary and called from this one, over each transport asked for
//! (`shm`, `uds`, `tcp`): one-call latency percentiles and calls per second, one call at
//! a time and with 16 in flight. The same calls, the same client code: only the address
//! differs. Per transport it also reports the context switches and CPU time of both
//! processes per call (one at a time), and the CPU share each process uses while a
//! long-running call is outstanding and nothing else flows (an idle awaiting side). The
//! `loopback` transport serves in this process, on this thread (`rpc_loopback`): the
//! floor of capnp-rpc's own per-call cost. `shm-spin` is shm with a polling window on
//! both sides (`capnp_shm_rpc::set_default_spin`), for a same-run comparison with
//! `shm` (the default: every receive parks at once). With `--json` the last line on stdout is one
//! object.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capnp_shm_rpc::service_capnp::host;
use capnp_shm_rpc::{connect, ExampleHost, Server};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Map, Value};

use crate::procstat::ProcStat;
use crate::report::latency_histogram;
use crate::side::DemoError;

/// Calls kept in flight for the pipelined throughput figure.
const IN_FLIGHT: usize = 16;
/// The echo call's payload: a small struct.
const PAYLOAD: &[u8] = &[0x5a; 16];
/// How long the idle figure watches a connection with one call outstanding.
const IDLE_WATCH: Duration = Duration::from_millis(500);

fn other(e: impl std::fmt::Display) -> DemoError {
    DemoError::Other(e.to_string())
}

/// Runs `f` on a current-thread runtime's `LocalSet` (capnp-rpc is not `Send`).
fn local<T>(f: impl std::future::Future<Output = Result<T, DemoError>>) -> Result<T, DemoError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(other)?;
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// The serving process: serves the example host at `address` to one client, printing the
/// address clients use first; `shm_spin_us` sets the shm network's polling window.
pub fn serve(address: &str, shm_spin_us: Option<u64>) -> Result<(), DemoError> {
    if let Some(us) = shm_spin_us {
        capnp_shm_rpc::set_default_spin(Duration::from_micros(us));
    }
    local(async {
        let mut server = Server::bind(address).await.map_err(other)?;
        println!("listening {}", server.address().map_err(other)?);
        let connection = server
            .accept(ExampleHost::client().client)
            .await
            .map_err(other)?;
        let _ = connection.finished().await;
        Ok(())
    })
}

/// A serving child process, killed and reaped on drop.
struct ServerProcess(Child);

impl ServerProcess {
    /// Waits (up to 10 s) for the server to end by itself once its client is gone, so it
    /// removes its channel; drop kills it otherwise.
    fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a serving child at `address` (with the shm polling window `spin`); returns it
/// and the address it listens at.
fn start_server(address: &str, spin: Duration) -> Result<(ServerProcess, String), DemoError> {
    let exe = std::env::current_exe().map_err(other)?;
    let spin_us = spin.as_micros().to_string();
    let mut child = ServerProcess(
        Command::new(exe)
            .args(["rpc-serve", address, "--shm-spin-us", &spin_us])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(other)?,
    );
    let stdout = child.0.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(other)?;
    let listening = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| other(format!("the server said {line:?}")))?
        .to_string();
    Ok((child, listening))
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

/// One transport's figures over `calls` calls, through `host`; `pids` are the processes
/// whose CPU time and context switches are counted (the caller's and the server's).
async fn measure(host: &host::Client, calls: u64, pids: &[u32]) -> Result<Value, DemoError> {
    let host = host.clone();
    for i in 0..calls / 10 + 1 {
        echo(&host, i).await?; // warm-up
    }
    let mut latency = latency_histogram();
    let before = ProcStat::of_all(pids);
    let start = Instant::now();
    for i in 0..calls {
        let t = Instant::now();
        echo(&host, i).await?;
        latency.saturating_record(t.elapsed().as_nanos() as u64);
    }
    let sequential = calls as f64 / start.elapsed().as_secs_f64();
    let used = ProcStat::of_all(pids).since(before);
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    while next < calls || !pending.is_empty() {
        while next < calls && pending.len() < IN_FLIGHT {
            pending.push(echo(&host, next));
            next += 1;
        }
        if let Some(done) = pending.next().await {
            done?;
        }
    }
    let in_flight = calls as f64 / start.elapsed().as_secs_f64();
    drop(pending);
    let idle = idle_cpu_percent(&host, pids).await?;
    let per_call = |v: u64| (v as f64 / calls as f64 * 100.0).round() / 100.0;
    Ok(json!({
        "p50_ns": latency.value_at_quantile(0.5),
        "p99_ns": latency.value_at_quantile(0.99),
        "max_ns": latency.max(),
        "calls_per_sec": sequential.round(),
        "calls_per_sec_16_in_flight": in_flight.round(),
        "switches_per_call": per_call(used.switches),
        "cpu_ns_per_call": per_call(used.cpu_ns).round(),
        // The caller's, then the server's (when it is another process).
        "idle_cpu_percent": idle,
    }))
}

/// Measures over a served address, the server in the child process `server_pid`.
async fn measure_at(address: &str, calls: u64, server_pid: u32) -> Result<Value, DemoError> {
    let (host, connection) = connect::<host::Client>(address).await.map_err(other)?;
    let figures = measure(&host, calls, &[std::process::id(), server_pid]).await?;
    connection.disconnect().await.map_err(other)?;
    Ok(figures)
}

/// Measures the `loopback` transport (both vats on this thread).
async fn measure_loopback(calls: u64) -> Result<Value, DemoError> {
    let (host, tasks) = crate::rpc_loopback::connect();
    let figures = measure(&host, calls, &[std::process::id()]).await;
    for task in tasks {
        task.abort();
    }
    figures
}

/// `capnp-shm-demo rpc`: measures each of `transports` (`shm`, `shm-spin` with a polling
/// window of `spin`, `uds`, `tcp`, `loopback`).
pub fn run(
    calls: u64,
    transports: &[String],
    spin: Duration,
    json_out: bool,
) -> Result<(), DemoError> {
    let pid = std::process::id();
    let mut figures = Map::new();
    let default = capnp_shm_rpc::default_spin();
    for transport in transports {
        // Both processes' polling window (shm only).
        let window = if transport == "shm-spin" {
            spin
        } else {
            default
        };
        capnp_shm_rpc::set_default_spin(window);
        let address = match transport.as_str() {
            "shm" | "shm-spin" => format!("shm://capnp-shm-demo-rpc-{pid}"),
            "uds" => {
                let path = std::env::temp_dir().join(format!("capnp-shm-demo-rpc-{pid}.sock"));
                format!("unix://{}", path.display())
            }
            "tcp" => "tcp://127.0.0.1:0".to_string(),
            "loopback" => String::new(),
            other_kind => return Err(other(format!("unknown transport {other_kind}"))),
        };
        let measured = if address.is_empty() {
            local(measure_loopback(calls))
        } else {
            let (server, listening) = start_server(&address, window)?;
            let measured = local(measure_at(&listening, calls, server.0.id()));
            server.finish();
            measured
        };
        if let Some(name) = address.strip_prefix("shm://") {
            let _ = capnp_shm_transport::remove_channel(name);
        }
        let measured = measured?;
        if !json_out {
            println!(
                "{transport:<8} one call p50 {:>8} ns  p99 {:>8} ns  {:>9} calls/s  {:>9} calls/s with {IN_FLIGHT} in flight  {:>5} switches/call  {:>6} CPU ns/call  idle CPU {}%",
                measured["p50_ns"], measured["p99_ns"], measured["calls_per_sec"], measured["calls_per_sec_16_in_flight"],
                measured["switches_per_call"], measured["cpu_ns_per_call"], measured["idle_cpu_percent"]
            );
        }
        figures.insert(transport.clone(), measured);
    }
    capnp_shm_rpc::set_default_spin(default);
    let p50 = |k: &str| figures.get(k).and_then(|f| f["p50_ns"].as_f64());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 1000.0).round() / 1000.0),
        _ => Value::Null,
    };
    let report = json!({
        "calls": calls,
        "rpc_rtt_ns": {
            "shm": p50("shm"), "shm_spin": p50("shm-spin"), "uds": p50("uds"), "tcp": p50("tcp"),
            "loopback": p50("loopback"),
        },
        "transports": figures,
        "ratios": {
            "uds_over_shm": ratio(p50("uds"), p50("shm")),
            "tcp_over_shm": ratio(p50("tcp"), p50("shm")),
            "shm_over_shm_spin": ratio(p50("shm"), p50("shm-spin")),
            "uds_over_loopback": ratio(p50("uds"), p50("loopback")),
        },
    });
    if json_out {
        println!("{report}");
    } else {
        println!("ratios: {}", report["ratios"]);
    }
    Ok(())
}
