//! A cold start (`open_first_msg_ns`): side A has created the channel and sent one message;
//! a freshly spawned process opens side B and receives it. The child times, on
//! CLOCK_MONOTONIC, from just before `open()` to the message in hand, and from the moment
//! the harness spawned it (exec, loading, `main`, then the same) to the message in hand.

use std::io::Read;
use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, WaitMode};

use crate::idle::now_ns;
use crate::peer::{Peer, Role};
use crate::{channel_builder, channel_name, err, Error, WAIT};

/// What one fresh process measured, in ns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Startup {
    /// From just before `open()` to the first message in hand.
    pub open_to_msg: f64,
    /// From just before the harness spawned the process to the first message in hand.
    pub spawn_to_msg: f64,
}

/// Side A: creates the channel (block mode), sends the first message, then starts a fresh
/// process that opens side B and receives it; returns the child's figures.
pub(crate) fn measure(tag: &str) -> Result<Startup, Error> {
    let name = channel_name(tag);
    let mut a = channel_builder(&name, 256, 16, WaitMode::Block).create()?;
    a.send(b"first", WAIT)?;
    let role = Role::Startup {
        spawned_ns: now_ns(),
    };
    let mut peer = Peer::spawn(role, &name, true)?;
    let mut out = String::new();
    peer.0
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .map_err(|e| err("startup peer output", e))?;
    drop(a);
    peer.finish();
    let numbers: Vec<f64> = out
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        [open_to_msg, spawn_to_msg] => Ok(Startup {
            open_to_msg,
            spawn_to_msg,
        }),
        _ => Err(err("startup peer output", out)),
    }
}

/// The fresh process: opens side B of `name`, receives the waiting message, and prints
/// both times (ns) on stdout.
pub(crate) fn peer(name: &str, spawned_ns: u64) -> Result<(), Error> {
    let start = Instant::now();
    let mut b = Channel::builder(name)
        .open_timeout(WAIT)
        .wait_mode(WaitMode::Block)
        .open()?;
    let msg = b.recv(Duration::from_secs(10))?;
    let open_to_msg = start.elapsed().as_nanos();
    let spawn_to_msg = now_ns().saturating_sub(spawned_ns);
    std::hint::black_box(&*msg);
    drop(msg);
    println!("{open_to_msg} {spawn_to_msg}");
    Ok(())
}
