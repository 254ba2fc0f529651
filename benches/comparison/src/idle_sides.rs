//! Two idle sides in block mode (`idle_cpu_percent`, `idle_wakeups_per_sec`): side A with a
//! receive thread (`on_receive`) and its main thread asleep until the end, side B in one
//! blocking `recv`, as `capnp-shm-demo run --pace off --wait block` runs them. No traffic.
//! Each side is a fresh process and measures itself from the moment the harness spawned it
//! (startup included): its CPU time (`getrusage`) and, per thread, the context switches
//! (`/proc/self/task/*/status`, voluntary + involuntary), i.e. how often it woke.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use capnp_shm_transport::{Channel, Error as ChannelError, WaitMode};

use crate::idle::{cpu_time, now_ns};
use crate::peer::{Peer, Role};
use crate::{channel_builder, channel_name, err, Error, WAIT};

/// What one idle side measured over its whole life so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Side {
    /// CPU time over wall time since spawn, % of one core.
    pub cpu_pct: f64,
    /// Per thread name (`main`, `shm-liveness`, `shm-recv`, ...): wake-ups per second.
    pub wakeups_per_sec: BTreeMap<String, f64>,
}

/// Starts side A and side B as fresh processes, lets them idle for `idle` from their
/// spawn, and returns what each measured.
pub(crate) fn measure(tag: &str, idle: Duration) -> Result<(Side, Side), Error> {
    let name = channel_name(tag);
    let ms = idle.as_millis() as u64;
    let mut a = Peer::spawn(
        Role::IdleSide {
            side: 0,
            ms,
            spawned_ns: now_ns(),
        },
        &name,
        true,
    )?;
    let mut b = Peer::spawn(
        Role::IdleSide {
            side: 1,
            ms,
            spawned_ns: now_ns(),
        },
        &name,
        true,
    )?;
    let report_b = read_report(&mut b)?;
    let report_a = read_report(&mut a)?;
    // Closing their stdin ends both (A last, so B never sees a closed peer first).
    drop(b.0.stdin.take());
    b.finish();
    drop(a.0.stdin.take());
    a.finish();
    Ok((report_a, report_b))
}

/// Reads a side's report: `cpu PCT`, then `thread NAME RATE` lines, then `end`.
fn read_report(peer: &mut Peer) -> Result<Side, Error> {
    let mut lines = BufReader::new(peer.0.stdout.take().expect("piped")).lines();
    let mut side = Side::default();
    loop {
        let line = match lines.next() {
            Some(line) => line.map_err(|e| err("idle side output", e))?,
            None => return Err(err("idle side output", "ended early")),
        };
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["cpu", pct] => side.cpu_pct = pct.parse().map_err(|e| err("idle cpu", e))?,
            ["thread", name, rate] => {
                let rate: f64 = rate.parse().map_err(|e| err("idle wake-ups", e))?;
                *side.wakeups_per_sec.entry(name.to_string()).or_default() += rate;
            }
            ["end"] => return Ok(side),
            _ => return Err(err("idle side output", line)),
        }
    }
}

/// The peer process: plays side A (`side` 0) or B of `name` until `ms` after
/// `spawned_ns`, prints its report, then stays attached until stdin closes.
pub(crate) fn peer(name: &str, side: u64, ms: u64, spawned_ns: u64) -> Result<(), Error> {
    let end_ns = spawned_ns + ms * 1_000_000;
    let left = || Duration::from_nanos(end_ns.saturating_sub(now_ns()));
    let channel = if side == 0 {
        let a = channel_builder(name, 256, 16, WaitMode::Block)
            .on_receive(|m| {
                std::hint::black_box(m);
            })
            .create()?;
        std::thread::sleep(left());
        a
    } else {
        let mut b = Channel::builder(name)
            .open_timeout(WAIT)
            .wait_mode(WaitMode::Block)
            .open()?;
        match b.recv(left()) {
            Err(ChannelError::Timeout { .. }) => {}
            Ok(_) => return Err(err("idle side B", "a message arrived")),
            Err(e) => return Err(e.into()),
        }
        b
    };
    let wall_s = now_ns().saturating_sub(spawned_ns) as f64 / 1e9;
    let mut report = format!("cpu {}\n", 100.0 * cpu_time().as_secs_f64() / wall_s);
    for (thread, switches) in thread_switches() {
        report += &format!("thread {thread} {}\n", switches as f64 / wall_s);
    }
    println!("{report}end");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(channel);
    Ok(())
}

/// Per thread of this process: its name (`main` for the main thread, `shm-recv` for a
/// receive thread, whose name carries the channel's) and its context switches so far.
fn thread_switches() -> Vec<(String, u64)> {
    let pid = std::process::id().to_string();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let name = if tid == pid {
            "main".to_string()
        } else if comm.starts_with("shm-recv") {
            "shm-recv".to_string()
        } else {
            comm.trim().replace(char::is_whitespace, "_")
        };
        let switches = field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:");
        out.push((name, switches));
    }
    out
}
