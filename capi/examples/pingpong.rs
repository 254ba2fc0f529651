//! The Rust side of the binding's cost measurement (`scripts/bench-cpp.sh`): a 64-byte
//! ping-pong over the Rust API, busy spin, receiving in place; `examples/cpp/pingpong.cpp`
//! does the same through the C++ header and the C ABI.
//!
//! `pingpong a NAME ROUND_TRIPS [inplace|copy]` creates the channel, waits for B, bounces
//! ROUND_TRIPS messages and prints `p50_ns p99_ns`; `pingpong b NAME [inplace|copy]` opens
//! it and echoes until A closes. `copy` receives with `recv_into` (as the C++ reference
//! calls `recvSlot` do), `inplace` (default) with `recv`.

use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error, Timeout};

const LEN: usize = 64;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: pingpong a NAME ROUND_TRIPS [inplace|copy] | pingpong b NAME [inplace|copy]";
    let (Some(role), Some(name)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let builder = Channel::builder(name)
        .slot_size(LEN)
        .slot_count(64)
        .poll_interval(Duration::ZERO);
    let copy = args
        .get(if role == "b" { 3 } else { 4 })
        .is_some_and(|s| s == "copy");
    let mut buf = Vec::with_capacity(LEN);
    if role == "b" {
        let mut b = builder.open_timeout(Duration::from_secs(5)).open()?;
        let mut reply = [0u8; LEN];
        loop {
            let got = if copy {
                b.recv_into(&mut buf, Timeout::Never)
                    .map(|_| reply.copy_from_slice(&buf))
            } else {
                b.recv(Timeout::Never)
                    .map(|msg| reply.copy_from_slice(&msg))
            };
            match got {
                Ok(()) => {}
                Err(Error::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
            b.send(&reply, Timeout::Never)?;
        }
    }
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mut a = builder.create()?;
    let ping = [0x5au8; LEN];
    let mut rtt = Vec::with_capacity(n);
    // The first round trip waits for B to open.
    a.send(&ping, Timeout::Never)?;
    drop(a.recv(Duration::from_secs(10))?);
    for _ in 0..n {
        let start = Instant::now();
        a.send(&ping, Timeout::Never)?;
        if copy {
            assert_eq!(a.recv_into(&mut buf, Timeout::Never)?, LEN);
        } else {
            assert_eq!(a.recv(Timeout::Never)?.len(), LEN);
        }
        rtt.push(start.elapsed().as_nanos() as u64);
    }
    rtt.sort_unstable();
    println!("{} {}", rtt[n / 2], rtt[n * 99 / 100]);
    Ok(())
}
