//! The instruction-count harness (docs/BENCHMARKS.md, "Instructions per message"): runs
//! `n` messages through one channel whose two sides live in this process (poll mode, zero
//! timeouts, so nothing ever waits), in one of these modes:
//!
//! - `raw-rtt`: send one 64-byte message, receive it;
//! - `raw-stream`: send 32 64-byte messages, receive them with one `recv_batch`;
//! - `typed-rtt`: build and send a `Sample` (16-byte payload), receive it, read its root
//!   and `seq`, with the fastest typed API ([`SendBuilt::send_built`]);
//! - `typed-stream`: 32 of those, then 32 receives;
//! - `typed-rtt-copy`: as `typed-rtt`, with the build-then-copy `send_message`.
//!
//! The send and receive steps are the functions `icount_send` and `icount_recv` (never
//! inlined), so callgrind's inclusive count of each, run at two `n` and differenced,
//! gives instructions per message (`scripts/icount.sh` does that).
//!
//! ```text
//! cargo run --release -p capnp-shm-comparison --example icount -- raw-rtt 10000
//! ```

use std::time::Duration;

use capnp::message::{Builder, HeapAllocator};
use capnp_shm_transport::typed::{RecvMessage, SendBuilt, SendMessage};
use capnp_shm_transport::{Channel, Error};

#[allow(dead_code, unused_qualifications, clippy::all, clippy::pedantic)]
mod demo_capnp {
    include!(concat!(env!("OUT_DIR"), "/demo_capnp.rs"));
}
use demo_capnp::sample;

/// Messages per batch in the stream modes.
const BATCH: usize = 32;

/// Never wait: both sides are here, so a message is always there.
const NOW: Duration = Duration::ZERO;

/// How long the two-process mode waits for a message.
const WAIT: Duration = Duration::from_secs(10);

/// What is measured (see the module's documentation).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    RawRtt,
    RawStream,
    TypedRtt,
    TypedStream,
    TypedRttCopy,
}

/// The send step of `mode`: `k` is the message's sequence number. Each mode's code is a
/// function of its own, so what the compiler inlines into one does not depend on the
/// others.
#[inline(never)]
fn icount_send(
    mode: Mode,
    a: &mut Channel,
    msg: &[u8],
    built: &mut Builder<HeapAllocator>,
    k: u64,
    timeout: Duration,
) {
    match mode {
        Mode::RawRtt | Mode::RawStream => send_raw(a, msg, timeout),
        Mode::TypedRttCopy => send_copy(a, built, k, timeout),
        Mode::TypedRtt | Mode::TypedStream => send_sample(a, k, timeout),
    }
}

#[inline(never)]
fn send_raw(a: &mut Channel, msg: &[u8], timeout: Duration) {
    a.send(msg, timeout).expect("send")
}

#[inline(never)]
fn send_copy(a: &mut Channel, built: &mut Builder<HeapAllocator>, k: u64, timeout: Duration) {
    built
        .get_root::<sample::Builder>()
        .expect("root")
        .set_seq(k);
    a.send_message(built, timeout).expect("send_message")
}

/// A `Sample` with a 16-byte payload: 72 bytes framed.
#[inline(never)]
fn send_sample(a: &mut Channel, k: u64, timeout: Duration) {
    a.send_built::<sample::Owned>(80, timeout, |mut s| {
        s.set_seq(k);
        s.set_payload(&[0x5a; 16]);
        Ok(())
    })
    .expect("send_built")
}

/// The receive step of `mode` (`count` messages for `raw-stream`); returns a checksum so
/// nothing is optimized away.
#[inline(never)]
fn icount_recv(mode: Mode, b: &mut Channel, count: usize, timeout: Duration) -> u64 {
    match mode {
        Mode::RawRtt => recv_raw(b, timeout),
        Mode::RawStream => recv_batch(b, count, timeout),
        _ => recv_sample(b, timeout),
    }
}

#[inline(never)]
fn recv_raw(b: &mut Channel, timeout: Duration) -> u64 {
    b.recv(timeout).expect("recv").len() as u64
}

#[inline(never)]
fn recv_batch(b: &mut Channel, count: usize, timeout: Duration) -> u64 {
    let mut sum = 0;
    let n = b
        .recv_batch(count, timeout, |m| sum += m.len() as u64)
        .expect("recv_batch");
    assert_eq!(n, count);
    sum
}

#[inline(never)]
fn recv_sample(b: &mut Channel, timeout: Duration) -> u64 {
    let m = b.recv_message(timeout).expect("recv_message");
    m.root::<sample::Owned>().expect("root").get_seq()
}

fn main() -> Result<(), Error> {
    let mut args: Vec<String> = std::env::args().collect();
    let two = args.get(1).is_some_and(|a| a == "--two-process");
    let echo = args.get(1).is_some_and(|a| a == "--echo");
    if two || echo {
        args.remove(1);
    }
    let usage =
        "usage: icount [--two-process] raw-rtt|raw-stream|typed-rtt|typed-stream|typed-rtt-copy N";
    let (Some(mode), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let label = mode.as_str();
    let mode = match label {
        "raw-rtt" => Mode::RawRtt,
        "raw-stream" => Mode::RawStream,
        "typed-rtt" => Mode::TypedRtt,
        "typed-stream" => Mode::TypedStream,
        "typed-rtt-copy" => Mode::TypedRttCopy,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    if two || echo {
        return two_process(mode, n, args.get(3).filter(|_| echo).map(String::as_str));
    }
    let name = format!("cst-icount-{}", std::process::id());
    let mut a = Channel::builder(&name)
        .slot_size(256)
        .slot_count(64)
        .poll_interval(Duration::ZERO)
        .create()?;
    let mut b = Channel::builder(&name)
        .open_timeout(Duration::from_secs(5))
        .poll_interval(Duration::ZERO)
        .open()?;
    let msg = [1u8; 64];
    let mut built = Builder::new(HeapAllocator::new());
    built
        .init_root::<sample::Builder>()
        .set_payload(&[0x5a; 16]);
    let per_round = if matches!(mode, Mode::RawStream | Mode::TypedStream) {
        BATCH
    } else {
        1
    };
    let mut sum = 0u64;
    let mut k = 0;
    while k < n {
        for _ in 0..per_round {
            icount_send(mode, &mut a, &msg, &mut built, k, NOW);
            k += 1;
        }
        if mode == Mode::RawStream {
            sum = sum.wrapping_add(icount_recv(mode, &mut b, per_round, NOW));
        } else {
            for _ in 0..per_round {
                sum = sum.wrapping_add(icount_recv(mode, &mut b, 1, NOW));
            }
        }
    }
    println!("{label} {n} messages, checksum {sum}");
    Ok(())
}

/// Pins this thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: CPU_SET sets one bit of a zeroed cpu_set_t on our stack; sched_setaffinity
    // only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The two-process round trip (for `perf record` and same-run wall-clock ratios): side A
/// (CPU 0) sends, a child side B (CPU 1, this binary with `--echo`) receives and answers
/// the same way; prints the median of 5 batches in ns per round trip. `raw-stream`: A
/// only sends, B receives in batches of up to 256 and acknowledges the last (ns per
/// message). `echo_of`: the
/// channel to answer on, in the child.
fn two_process(mode: Mode, n: u64, echo_of: Option<&str>) -> Result<(), Error> {
    let msg = [1u8; 64];
    let mut built = Builder::new(HeapAllocator::new());
    built
        .init_root::<sample::Builder>()
        .set_payload(&[0x5a; 16]);
    let rounds = 5 * n + n / 10;
    if let Some(name) = echo_of {
        pin(1);
        let mut b = Channel::builder(name)
            .open_timeout(WAIT)
            .poll_interval(Duration::ZERO)
            .open()?;
        if mode == Mode::RawStream {
            // Receive everything in batches, then acknowledge.
            let mut got = 0;
            while got < rounds {
                got += b.recv_batch(256, WAIT, |m| {
                    std::hint::black_box(m);
                })? as u64;
            }
            b.send(b"done", WAIT)?;
            return Ok(());
        }
        for _ in 0..rounds {
            let k = icount_recv(mode, &mut b, 1, WAIT);
            icount_send(mode, &mut b, &msg, &mut built, k, WAIT);
        }
        return Ok(());
    }
    pin(0);
    let name = format!("cst-icount2-{}", std::process::id());
    // As the comparison: 256-byte slots for round trips, 256 slots of 64 bytes to stream.
    let (size, count) = if mode == Mode::RawStream {
        (64, 256)
    } else {
        (256, 16)
    };
    let mut a = Channel::builder(&name)
        .slot_size(size)
        .slot_count(count)
        .poll_interval(Duration::ZERO)
        .create()?;
    let label = std::env::args().nth(2).unwrap_or_default();
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["--echo", &label, &n.to_string(), &name])
        .spawn()
        .expect("spawn the echo side");
    let stream = mode == Mode::RawStream;
    let mut one = |k: u64| {
        icount_send(mode, &mut a, &msg, &mut built, k, WAIT);
        if stream {
            return 0; // one way: the child acknowledges only the last
        }
        icount_recv(mode, &mut a, 1, WAIT)
    };
    for k in 0..n / 10 {
        one(k);
    }
    let mut batches = Vec::new();
    for _ in 0..5 {
        let start = std::time::Instant::now();
        for k in 0..n {
            std::hint::black_box(one(k));
        }
        batches.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    // The child's acknowledgement of the last message (streaming), then its exit.
    let acked = if stream {
        a.recv(WAIT).map(drop)
    } else {
        Ok(())
    };
    child.wait().expect("the echo side ends");
    acked?;
    drop(a);
    let _ = capnp_shm_transport::remove_channel(&name);
    batches.sort_by(f64::total_cmp);
    println!(
        "{label} two-process: {1:.1} ns per {0} (median of 5 batches of {n})",
        if stream {
            "message (one way)"
        } else {
            "round trip"
        },
        batches[2]
    );
    Ok(())
}
