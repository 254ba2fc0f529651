//! The peer side of each measurement, one function per [`Role`]: each runs until its
//! measuring side is done, then returns.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use capnp_shm_transport::{
    Channel, Error as ChannelError, RecvMessage, SendBuilt, SendMessage, Trust, WaitMode,
};

use crate::baselines::{self as base, Mapping, RawRing};
use crate::demo_capnp::sample;
use crate::peer::Role;
use crate::proto::{self, Flag};
use crate::{err, typed_sample, Error, WAIT};

/// How long an echoing peer waits for the next message before giving up.
const IDLE: Duration = Duration::from_secs(60);

/// Plays `role` on `name` (a channel, mapping or socket path).
pub(crate) fn run(role: Role, name: &str) -> Result<(), Error> {
    match role {
        Role::Floor => floor(name),
        Role::FutexFloor => futex_floor(name),
        Role::Uds => uds(name),
        Role::Pipe => pipe(),
        Role::Spin => channel(name, WaitMode::Poll, Trust::Cooperating),
        Role::Block => channel(name, WaitMode::Block, Trust::Cooperating),
        Role::AsyncBlock => crate::async_rtt::echo(name),
        Role::Idle {
            asynchronous,
            wakes,
        } => crate::idle::peer(name, asynchronous != 0, wakes),
        Role::SpinCapnp => capnp(name, Trust::Cooperating, false),
        Role::CapnpBuilt => capnp(name, Trust::Cooperating, true),
        Role::SpinUntrusted => channel(name, WaitMode::Poll, Trust::Untrusted),
        Role::CapnpUntrusted => capnp(name, Trust::Untrusted, false),
        Role::Ring { size, slots, n } => ring(name, size as usize, slots, n, false),
        Role::RingAll { size, slots, n } => ring(name, size as usize, slots, n, true),
        Role::ProtoEcho { slot_size, slots } => proto_echo(name, slot_size as usize, slots),
        Role::ProtoSink {
            slot_size,
            slots,
            n,
        } => proto_sink(name, slot_size as usize, slots, n),
        Role::Stream { n } => stream(name, n, Trust::Cooperating),
        Role::StreamUntrusted { n } => stream(name, n, Trust::Untrusted),
        Role::Large { n } => large(name, n),
        Role::UdsStream { n } => uds_stream(name, n),
        Role::BoardWriter => crate::board::writer_peer(name),
        Role::BoardReader => crate::board::reader_peer(name),
        Role::BoardEcho => crate::board::echo_peer(name),
        Role::Startup { spawned_ns } => crate::startup::peer(name, spawned_ns),
        Role::IdleSide {
            side,
            ms,
            spawned_ns,
        } => crate::idle_sides::peer(name, side, ms, spawned_ns),
    }
}

/// Answers the raw floor's pings until told to stop.
fn floor(name: &str) -> Result<(), Error> {
    base::floor_echo(&Mapping::open(name, base::FLOOR_LEN).map_err(|e| err("shm", e))?);
    Ok(())
}

/// Answers the futex floor's pings until told to stop.
fn futex_floor(name: &str) -> Result<(), Error> {
    base::futex_echo(&Mapping::open(name, base::FLOOR_LEN).map_err(|e| err("shm", e))?);
    Ok(())
}

/// Echoes 64-byte messages on the Unix socket at `path` until it closes.
fn uds(path: &str) -> Result<(), Error> {
    let s = UnixStream::connect(path).map_err(|e| err("connect", e))?;
    let mut w = s.try_clone().map_err(|e| err("socket", e))?;
    base::stream_echo(&mut &s, &mut w);
    Ok(())
}

/// Echoes 64-byte messages from stdin to stdout until stdin closes.
fn pipe() -> Result<(), Error> {
    base::stream_echo(&mut std::io::stdin().lock(), &mut std::io::stdout().lock());
    Ok(())
}

/// Opens side B of `name`, busy-polling (`Poll`) or in `mode`, receiving in `trust` mode.
fn open(name: &str, mode: WaitMode, trust: Trust) -> Result<Channel, Error> {
    let b = Channel::builder(name).open_timeout(WAIT).trust(trust);
    let b = if mode == WaitMode::Poll {
        b.poll_interval(Duration::ZERO)
    } else {
        b.wait_mode(mode)
    };
    Ok(b.open()?)
}

/// Echoes byte messages until side A closes.
fn channel(name: &str, mode: WaitMode, trust: Trust) -> Result<(), Error> {
    let mut b = open(name, mode, trust)?;
    let mut buf = Vec::with_capacity(256);
    loop {
        match b.recv_into(&mut buf, IDLE).and_then(|_| b.send(&buf, WAIT)) {
            Ok(()) => {}
            Err(ChannelError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Answers each `Sample` with one carrying its sequence number, until side A closes: set
/// in a prebuilt message that is then framed and copied (`send_message`), or, with
/// `built`, a whole `Sample` built for each answer ([`SendBuilt::send_built`]).
fn capnp(name: &str, trust: Trust, built: bool) -> Result<(), Error> {
    let mut b = open(name, WaitMode::Poll, trust)?;
    let mut reply = typed_sample();
    loop {
        let seq = b
            .recv_message(IDLE)
            .and_then(|m| Ok(m.root::<sample::Owned>()?.get_seq()));
        let sent = seq.and_then(|seq| {
            if built {
                return b.send_built::<sample::Owned>(crate::SAMPLE_CAPACITY, WAIT, |s| {
                    crate::build_sample(s, seq);
                    Ok(())
                });
            }
            reply
                .get_root::<sample::Builder>()
                .map_err(ChannelError::Encode)?
                .set_seq(seq);
            b.send_message(&reply, WAIT)
        });
        match sent {
            Ok(()) => {}
            Err(ChannelError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Consumes `n` messages from the minimal ring, reading the first word of each or, with
/// `all`, every word.
fn ring(name: &str, size: usize, slots: u64, n: u64, all: bool) -> Result<(), Error> {
    let ring = RawRing { slots, size };
    let m = Mapping::open(name, ring.len()).map_err(|e| err("shm", e))?;
    if all {
        ring.consume_all(&m, n);
    } else {
        ring.consume(&m, n);
    }
    Ok(())
}

/// Echoes the protocol floor's round trip (two rings in one mapping) until told to stop.
fn proto_echo(name: &str, slot_size: usize, slots: u64) -> Result<(), Error> {
    let rings = proto::duplex(slot_size, slots);
    let m = Mapping::open(name, rings[1].end()).map_err(|e| err("shm", e))?;
    Ok(proto::echo(&m, rings)?)
}

/// Consumes `n` messages from the protocol floor's ring, draining up to 256 per `tail`
/// store (as [`stream`]'s `recv_batch(256, ..)`), then raises `done`.
fn proto_sink(name: &str, slot_size: usize, slots: u64, n: u64) -> Result<(), Error> {
    let ring = proto::ProtoRing::new(0, slot_size, slots);
    let m = Mapping::open(name, ring.end()).map_err(|e| err("shm", e))?;
    let mut rx = ring.consumer(&m);
    ring.raise(&m, Flag::Ready);
    let mut got = 0;
    while got < n {
        got += rx.drain(256)?;
    }
    ring.raise(&m, Flag::Done);
    Ok(())
}

/// Receives `n` messages in batches (without reading them), then acknowledges.
fn stream(name: &str, n: u64, trust: Trust) -> Result<(), Error> {
    sink(name, n, trust, |b| {
        Ok(b.recv_batch(256, WAIT, |m| {
            std::hint::black_box(m);
        })? as u64)
    })
}

/// Receives `n` large messages, reading every word in place (zero-copy, as a consumer of
/// the data would), then acknowledges.
fn large(name: &str, n: u64) -> Result<(), Error> {
    sink(name, n, Trust::Cooperating, |b| {
        let msg = b.recv(WAIT)?;
        // SAFETY: u64 has no invalid bit patterns; align_to only reinterprets the aligned
        // middle of the slice (slot payloads are 8-byte aligned).
        let (_, words, _) = unsafe { msg.align_to::<u64>() };
        std::hint::black_box(words.iter().fold(0u64, |acc, w| acc ^ w));
        Ok(1)
    })
}

/// Side B of a streaming measurement: answers A's handshake, calls `take` (which returns
/// how many messages it received) until `n` arrived, acknowledges, and stays until A is
/// done with the channel.
fn sink(
    name: &str,
    n: u64,
    trust: Trust,
    mut take: impl FnMut(&mut Channel) -> Result<u64, Error>,
) -> Result<(), Error> {
    let mut b = open(name, WaitMode::Poll, trust)?;
    let mut buf = Vec::new();
    b.recv_into(&mut buf, WAIT)?; // handshake
    b.send(b"ready", WAIT)?;
    let mut got = 0;
    while got < n {
        got += take(&mut b)?;
    }
    b.send(b"done", WAIT)?;
    // Stay until A has read the ack and closed.
    let _ = b.recv(WAIT);
    Ok(())
}

/// Reads `n` 64-byte messages from the Unix socket at `path`, then acknowledges.
fn uds_stream(path: &str, n: u64) -> Result<(), Error> {
    let s = UnixStream::connect(path).map_err(|e| err("connect", e))?;
    let mut w = s.try_clone().map_err(|e| err("socket", e))?;
    let mut r = s;
    let mut msg = [0u8; 64];
    for _ in 0..n {
        r.read_exact(&mut msg).map_err(|e| err("uds", e))?;
    }
    w.write_all(&[1]).map_err(|e| err("uds ack", e))
}
