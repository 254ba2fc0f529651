//! `capnp-shm-demo rpc`: the example RPC service (`schema/service.capnp`) served by a
//! child process of this binary and called from this one, over each transport asked for
//! (`shm`, `uds`, `tcp`): one-call latency percentiles and calls per second, one call at
//! a time and with 16 in flight. The same calls, the same client code: only the address
//! differs. Per transport it also reports the context switches and CPU time of both
//! processes per call (one at a time), and the CPU share each process uses while a
//! long-running call is outstanding and nothing else flows (an idle awaiting side). The
//! `loopback` transport serves in this process, on this thread (`rpc_loopback`): the
//! floor of capnp-rpc's own per-call cost. `shm-spin` is shm with a polling window on
//! both sides (`capnp_shm_rpc::set_default_spin`), for a same-run comparison with `shm`
//! (the default: every receive parks at once). The transports are measured interleaved
//! (`rpc_measure`). With `--json` the last line on stdout is one object.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capnp_shm_rpc::service_capnp::host;
use capnp_shm_rpc::{connect, ExampleHost, Server};
use serde_json::{json, Map, Value};

use crate::rpc_measure::{Target, IN_FLIGHT};
use crate::side::DemoError;

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
/// address clients use first; `shm_spin_us` sets the shm network's polling window,
/// `shm_thread` makes it sleep with the waiter thread, not io_uring.
pub fn serve(address: &str, shm_spin_us: Option<u64>, shm_thread: bool) -> Result<(), DemoError> {
    if let Some(us) = shm_spin_us {
        capnp_shm_rpc::set_default_spin(Duration::from_micros(us));
    }
    capnp_shm_rpc::set_io_uring_wait(!shm_thread);
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
fn start_server(
    address: &str,
    spin: Duration,
    thread: bool,
) -> Result<(ServerProcess, String), DemoError> {
    let exe = std::env::current_exe().map_err(other)?;
    let spin_us = spin.as_micros().to_string();
    let mut command = Command::new(exe);
    command.args(["rpc-serve", address, "--shm-spin-us", &spin_us]);
    if thread {
        command.arg("--shm-thread");
    }
    let mut child = ServerProcess(command.stdout(Stdio::piped()).spawn().map_err(other)?);
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

/// `capnp-shm-demo rpc`: measures each of `transports` (`shm`, `shm-spin` with a polling
/// window of `spin`, `uds`, `tcp`, `loopback`).
pub fn run(
    calls: u64,
    transports: &[String],
    spin: Duration,
    json_out: bool,
) -> Result<(), DemoError> {
    let pid = std::process::id();
    let default = capnp_shm_rpc::default_spin();
    let mut servers = Vec::new();
    let mut addresses = Vec::new();
    let mut channels = Vec::new();
    for transport in transports {
        // Both processes' polling window (shm only).
        let window = if transport == "shm-spin" {
            spin
        } else {
            default
        };
        let address = match transport.as_str() {
            "shm" | "shm-spin" | "shm-thread" => {
                format!("shm://capnp-shm-demo-rpc-{pid}-{transport}")
            }
            "uds" => {
                let path = std::env::temp_dir().join(format!("capnp-shm-demo-rpc-{pid}.sock"));
                format!("unix://{}", path.display())
            }
            "tcp" => "tcp://127.0.0.1:0".to_string(),
            "loopback" => {
                addresses.push((None, window, false));
                continue;
            }
            other_kind => return Err(other(format!("unknown transport {other_kind}"))),
        };
        if let Some(name) = address.strip_prefix("shm://") {
            channels.push(name.to_string());
        }
        let thread = transport == "shm-thread";
        let (server, listening) = start_server(&address, window, thread)?;
        addresses.push((Some((listening, server.0.id())), window, thread));
        servers.push(server);
    }
    let measured = local(async {
        let mut targets = Vec::new();
        let mut connections = Vec::new();
        let mut loopback = Vec::new();
        for (address, window, thread) in &addresses {
            capnp_shm_rpc::set_default_spin(*window);
            capnp_shm_rpc::set_io_uring_wait(!*thread);
            match address {
                Some((listening, server_pid)) => {
                    let (host, c) = connect::<host::Client>(listening).await.map_err(other)?;
                    targets.push(Target::new(host, vec![pid, *server_pid]));
                    connections.push(c);
                }
                None => {
                    let (host, tasks) = crate::rpc_loopback::connect();
                    targets.push(Target::new(host, vec![pid]));
                    loopback.extend(tasks);
                }
            }
        }
        capnp_shm_rpc::set_default_spin(default);
        capnp_shm_rpc::set_io_uring_wait(true);
        let figures = crate::rpc_measure::measure(&mut targets, calls).await;
        for c in connections {
            c.disconnect().await.map_err(other)?;
        }
        for task in loopback {
            task.abort();
        }
        figures
    });
    for server in servers {
        server.finish();
    }
    for name in channels {
        let _ = capnp_shm_transport::remove_channel(&name);
    }
    let mut figures = Map::new();
    for (transport, measured) in transports.iter().zip(measured?) {
        if !json_out {
            println!(
                "{transport:<8} one call p50 {:>8} ns  p99 {:>8} ns  {:>9} calls/s  {:>9} calls/s with {IN_FLIGHT} in flight  {:>5} switches/call  {:>6} CPU ns/call  idle CPU {}%",
                measured["p50_ns"], measured["p99_ns"], measured["calls_per_sec"], measured["calls_per_sec_16_in_flight"],
                measured["switches_per_call"], measured["cpu_ns_per_call"], measured["idle_cpu_percent"]
            );
        }
        figures.insert(transport.clone(), measured);
    }
    let p50 = |k: &str| figures.get(k).and_then(|f| f["p50_ns"].as_f64());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 1000.0).round() / 1000.0),
        _ => Value::Null,
    };
    let report = json!({
        "calls": calls,
        "rpc_rtt_ns": {
            "shm": p50("shm"), "shm_spin": p50("shm-spin"), "shm_thread": p50("shm-thread"), "uds": p50("uds"), "tcp": p50("tcp"),
            "loopback": p50("loopback"),
        },
        "transports": figures,
        "ratios": {
            "uds_over_shm": ratio(p50("uds"), p50("shm")),
            "tcp_over_shm": ratio(p50("tcp"), p50("shm")),
            "shm_over_shm_spin": ratio(p50("shm"), p50("shm-spin")),
            "shm_thread_over_shm": ratio(p50("shm-thread"), p50("shm")),
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
