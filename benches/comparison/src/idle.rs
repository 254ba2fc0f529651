//! An awaiting side with no traffic: its process's CPU use while it idles
//! (`idle_cpu_pct.async_await`), and how long the first message after a pause takes to
//! reach it (`wake_ns`), awaited (`recv_async`) and, as the baseline from the same run,
//! received by a blocking call in block mode.

use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error as ChannelError, Receiver, WaitMode};

use crate::async_rtt::BlockOn;
use crate::peer::{Peer, Role};
use crate::{channel_builder, channel_name, Error, WAIT};

/// How long side A pauses before each message of the wake-up measurement: far past the
/// 20 µs spin phase, so the receiver sleeps every time.
const PAUSE: Duration = Duration::from_millis(2);

/// What one idle peer measured.
pub(crate) struct Idle {
    /// CPU (% of a core) of the peer's process while it awaited with no traffic.
    pub cpu_pct: f64,
    /// Median one-way latency (ns) of a message sent after a pause.
    pub wake_p50_ns: f64,
}

/// Process CPU time (user + system) so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass; RUSAGE_SELF needs nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CLOCK_MONOTONIC in ns: the same clock in both processes.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: clock_gettime fills the zeroed timespec we pass.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("a 24-byte report"))
}

/// Side A: lets a peer (block mode; awaiting when `asynchronous`, else blocking calls)
/// idle for `idle`, then sends `wakes` time-stamped messages, each after a pause.
pub(crate) fn measure(
    tag: &str,
    asynchronous: bool,
    idle: Duration,
    wakes: u64,
) -> Result<Idle, Error> {
    let name = channel_name(tag);
    let mut a = channel_builder(&name, 256, 16, WaitMode::Block).create()?;
    let role = Role::Idle {
        asynchronous: asynchronous.into(),
        wakes,
    };
    let peer = Peer::spawn(role, &name, false)?;
    a.recv(WAIT)?; // the peer is attached and about to wait
    std::thread::sleep(idle);
    a.send(b"idle over", WAIT)?;
    for _ in 0..wakes {
        std::thread::sleep(PAUSE);
        a.send(&now_ns().to_le_bytes(), WAIT)?;
    }
    let report = a.recv(WAIT)?;
    let (cpu_ns, wall_ns, p50) = (word(&report, 0), word(&report, 8), word(&report, 16));
    drop(report);
    drop(a);
    peer.finish();
    Ok(Idle {
        cpu_pct: 100.0 * cpu_ns as f64 / wall_ns.max(1) as f64,
        wake_p50_ns: p50 as f64,
    })
}

/// One receive, awaited or blocking; returns the message's first 8 bytes as a number.
fn next(rx: &mut Receiver, exec: Option<&BlockOn>) -> Result<u64, ChannelError> {
    let msg = match exec {
        Some(exec) => exec.run(rx.recv_async())?,
        None => rx.recv(WAIT)?,
    };
    Ok(msg.get(..8).map_or(0, |b| word(b, 0)))
}

/// The peer: attaches and says so, waits for the end of the idle period (measuring its
/// own CPU time), then receives `wakes` stamped messages, and answers with its CPU and
/// wall ns over the idle period and the median latency.
pub(crate) fn peer(name: &str, asynchronous: bool, wakes: u64) -> Result<(), Error> {
    let b = Channel::builder(name)
        .open_timeout(WAIT)
        .wait_mode(WaitMode::Block)
        .open()?;
    let (mut tx, mut rx) = b.split()?;
    let exec = asynchronous.then(BlockOn::new);
    tx.send(b"ready", WAIT)?;
    let (cpu, wall) = (cpu_time(), Instant::now());
    next(&mut rx, exec.as_ref())?;
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    let mut latencies = Vec::with_capacity(wakes as usize);
    for _ in 0..wakes {
        let sent = next(&mut rx, exec.as_ref())?;
        latencies.push(now_ns().saturating_sub(sent));
    }
    latencies.sort_unstable();
    let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or(0);
    let mut report = [0u8; 24];
    for (at, v) in [
        (0, cpu.as_nanos() as u64),
        (8, wall.as_nanos() as u64),
        (16, p50),
    ] {
        report[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    tx.send(&report, WAIT)?;
    // Until side A has read the report and closed.
    match next(&mut rx, exec.as_ref()) {
        Err(ChannelError::Closed) | Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
