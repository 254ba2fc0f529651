//! One-way streaming measurements, one function per kind: each starts a fresh peer, sends
//! about `plan.stream_bytes` (at least 1000 messages) and returns messages per second;
//! [`large`] sends 1 MiB messages and returns GB/s.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Instant;

use capnp_shm_transport::WaitMode;

use crate::baselines::{Mapping, RawRing};
use crate::peer::{Peer, Role};
use crate::proto::{Flag, ProtoRing};
use crate::{channel_builder, channel_name, err, Error, Plan, MIB, WAIT};

/// How many `size`-byte messages a streaming measurement sends.
fn count(plan: &Plan, size: usize) -> u64 {
    (plan.stream_bytes / size).max(1000) as u64
}

/// Slots per ring for `size`-byte messages.
fn slots(size: usize) -> u64 {
    if size >= 65536 {
        32
    } else {
        256
    }
}

/// The minimal SPSC ring (no validation, no commit words): the streaming floor.
pub(crate) fn floor(plan: &Plan, size: usize, tag: &str) -> Result<f64, Error> {
    let name = channel_name(tag);
    let n = count(plan, size);
    let msg = vec![0xa5u8; size];
    let ring = RawRing {
        slots: slots(size),
        size,
    };
    let m = Mapping::create(&name, ring.len()).map_err(|e| err("shm", e))?;
    let role = Role::Ring {
        size: size as u64,
        slots: ring.slots,
        n,
    };
    let peer = Peer::spawn(role, &name, false)?;
    ring.wait_ready(&m);
    let start = Instant::now();
    ring.produce(&m, &msg, n);
    ring.wait_done(&m);
    let t = start.elapsed();
    peer.finish();
    Ok(n as f64 / t.as_secs_f64())
}

/// The protocol floor ([`crate::proto`]): this transport's slot format (`size`-byte slots)
/// and nothing else; the consumer drains up to 256 messages per `tail` store, as
/// `recv_batch(256, ..)` does for [`ours`]. Timed from the consumer's ready flag to its
/// done flag, as [`floor`] is.
pub(crate) fn proto(plan: &Plan, size: usize, tag: &str) -> Result<f64, Error> {
    let name = channel_name(tag);
    let n = count(plan, size);
    let msg = vec![0xa5u8; size];
    let ring = ProtoRing::new(0, size, slots(size));
    let m = Mapping::create(&name, ring.end()).map_err(|e| err("shm", e))?;
    let role = Role::ProtoSink {
        slot_size: size as u64,
        slots: ring.slots,
        n,
    };
    let peer = Peer::spawn(role, &name, false)?;
    ring.wait_for(&m, Flag::Ready)?;
    let start = Instant::now();
    ring.producer(&m).send_n(&msg, n)?;
    ring.wait_for(&m, Flag::Done)?;
    let t = start.elapsed();
    peer.finish();
    Ok(n as f64 / t.as_secs_f64())
}

/// This transport, busy-polling; the peer receives in batches.
pub(crate) fn ours(plan: &Plan, size: usize, tag: &str) -> Result<f64, Error> {
    channel_stream(plan, size, slots(size) as usize, tag, false)
}

/// [`ours`] with the peer receiving in untrusted mode (each message copied once).
pub(crate) fn untrusted(plan: &Plan, size: usize, tag: &str) -> Result<f64, Error> {
    channel_stream(plan, size, slots(size) as usize, tag, true)
}

/// Streams `size`-byte messages through `slots` slots to a peer that receives in batches,
/// in untrusted mode if `untrusted`.
pub(crate) fn channel_stream(
    plan: &Plan,
    size: usize,
    slots: usize,
    tag: &str,
    untrusted: bool,
) -> Result<f64, Error> {
    let name = channel_name(tag);
    let n = count(plan, size);
    let msg = vec![0xa5u8; size];
    let mut a = channel_builder(&name, size, slots, WaitMode::Poll).create()?;
    let role = if untrusted {
        Role::StreamUntrusted { n }
    } else {
        Role::Stream { n }
    };
    let peer = Peer::spawn(role, &name, false)?;
    a.send(&msg, WAIT)?; // attach handshake: the peer counts it
    drop(a.recv(WAIT)?);
    let start = Instant::now();
    for _ in 0..n {
        a.send(&msg, WAIT)?;
    }
    drop(a.recv(WAIT)?); // the peer's ack after the last one
    let t = start.elapsed();
    drop(a);
    peer.finish();
    Ok(n as f64 / t.as_secs_f64())
}

/// Messages sent per `send_batch` call by [`batched`].
const BATCH: usize = 32;

/// [`ours`] with the sender calling `send_batch` with [`BATCH`] messages at a time (the
/// streaming API that checks the peer and free space once per call, then commits each
/// message in turn); the peer receives in batches as for [`ours`].
pub(crate) fn batched(plan: &Plan, size: usize, tag: &str) -> Result<f64, Error> {
    let name = channel_name(tag);
    let n = count(plan, size) / BATCH as u64 * BATCH as u64;
    let msg = vec![0xa5u8; size];
    let msgs = [&msg[..]; BATCH];
    let mut a = channel_builder(&name, size, slots(size) as usize, WaitMode::Poll).create()?;
    let peer = Peer::spawn(Role::Stream { n }, &name, false)?;
    a.send(&msg, WAIT)?; // attach handshake: the peer counts it
    drop(a.recv(WAIT)?);
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let left = (n - sent).min(BATCH as u64) as usize;
        sent += a.send_batch(&msgs[..left], WAIT)? as u64;
    }
    drop(a.recv(WAIT)?); // the peer's ack after the last one
    let t = start.elapsed();
    drop(a);
    peer.finish();
    Ok(n as f64 / t.as_secs_f64())
}

/// A Unix domain socket: one write and one read per message, so the socket carries
/// messages, not a byte stream batched by buffers.
pub(crate) fn uds(plan: &Plan, size: usize, tag: &str) -> Result<f64, Error> {
    let n = count(plan, size);
    let msg = vec![0xa5u8; size];
    let path = std::env::temp_dir().join(format!("{}.sock", channel_name(tag)));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| err("bind", e))?;
    let peer = Peer::spawn(Role::UdsStream { n }, &path.to_string_lossy(), false)?;
    let (mut w, _) = listener.accept().map_err(|e| err("accept", e))?;
    let mut r = w.try_clone().map_err(|e| err("socket", e))?;
    let start = Instant::now();
    for _ in 0..n {
        w.write_all(&msg).map_err(|e| err("uds", e))?;
    }
    let mut ack = [0u8; 1];
    r.read_exact(&mut ack).map_err(|e| err("uds ack", e))?;
    let t = start.elapsed();
    drop((w, r));
    let _ = std::fs::remove_file(&path);
    peer.finish();
    Ok(n as f64 / t.as_secs_f64())
}

/// 1 MiB messages through the transport with `slot_size`-byte slots (a message covers
/// several when they are smaller; the consumer reads every word in place): GB/s.
pub(crate) fn large(plan: &Plan, tag: &str, slot_size: usize, slots: usize) -> Result<f64, Error> {
    let name = channel_name(tag);
    let n = plan.large_messages;
    let mut a = channel_builder(&name, slot_size, slots, WaitMode::Poll).create()?;
    let peer = Peer::spawn(Role::Large { n }, &name, false)?;
    let msg = vec![0x3cu8; MIB];
    a.send(&msg[..1], WAIT)?;
    drop(a.recv(WAIT)?);
    let start = Instant::now();
    for _ in 0..n {
        a.send(&msg, WAIT)?;
    }
    drop(a.recv(WAIT)?);
    let t = start.elapsed();
    drop(a);
    peer.finish();
    Ok((n as usize * MIB) as f64 / t.as_secs_f64() / 1e9)
}

/// The large-message floor: 1 MiB messages through the minimal ring (8 slots, as
/// [`large`]'s channel), the consumer reading every word; with `streaming` the producer
/// copies with non-temporal stores. Returns GB/s.
pub(crate) fn large_floor(plan: &Plan, tag: &str, streaming: bool) -> Result<f64, Error> {
    let name = channel_name(tag);
    let n = plan.large_messages;
    let msg = vec![0x3cu8; MIB];
    let ring = RawRing {
        slots: 8,
        size: MIB,
    };
    let m = Mapping::create(&name, ring.len()).map_err(|e| err("shm", e))?;
    let role = Role::RingAll {
        size: MIB as u64,
        slots: ring.slots,
        n,
    };
    let peer = Peer::spawn(role, &name, false)?;
    ring.wait_ready(&m);
    let start = Instant::now();
    if streaming {
        ring.produce_streaming(&m, &msg, n);
    } else {
        ring.produce(&m, &msg, n);
    }
    ring.wait_done(&m);
    let t = start.elapsed();
    peer.finish();
    Ok((n as usize * MIB) as f64 / t.as_secs_f64() / 1e9)
}
