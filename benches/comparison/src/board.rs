//! The latest-value board's rows: a 64-byte read while a writer process publishes at full
//! speed, a 64-byte publish while a reader process reads at full speed, `closest` over
//! 64 history entries, and a 1 MiB write + read cycle (all per-batch means, ns or GB/s).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use capnp_shm_transport::board::{remove_board, Board, BoardWait, WriterState};
use capnp_shm_transport::Error as BoardError;

use crate::baselines::{self as base, Mapping};
use crate::peer::{Peer, Role};
use crate::rtt::time_batches;
use crate::{channel_name, err, Error, Plan, MIB, WAIT};

/// Per-batch samples of the board rows over all rounds.
#[derive(Default)]
pub(crate) struct BoardSamples {
    pub read_64: Vec<f64>,
    pub write_64: Vec<f64>,
    pub closest_64: Vec<f64>,
    pub rtt_64: Vec<f64>,
    /// Per round: the share of `read_64`'s reads that found a newer value than the read
    /// before (near 0 when the writer did not run alongside: the reads were uncontended).
    pub read_64_new: Vec<f64>,
    pub cycle_1m: Vec<f64>,
}

/// Measures one round of every board row.
pub(crate) fn measure(plan: &Plan, round: usize, s: &mut BoardSamples) -> Result<(), Error> {
    let name = |row: &str| channel_name(&format!("board-{row}-{round}"));
    read_64(plan, &name("r"), &mut s.read_64, &mut s.read_64_new)?;
    write_64(plan, &name("w"), &mut s.write_64)?;
    closest_64(plan, &name("c"), &mut s.closest_64)?;
    cycle_1m(plan, &name("m"), &mut s.cycle_1m)?;
    rtt_64(plan, &name("p"), &mut s.rtt_64)?;
    Ok(())
}

/// `latest()` of a 64-byte value while the peer publishes as fast as it can.
fn read_64(plan: &Plan, name: &str, out: &mut Vec<f64>, new: &mut Vec<f64>) -> Result<(), Error> {
    let stop =
        Mapping::create(&format!("{name}-stop"), base::FLOOR_LEN).map_err(|e| err("shm", e))?;
    let peer = Peer::spawn(Role::BoardWriter, name, false)?;
    let mut reader = Board::builder(name).open(WAIT)?;
    reader.wait_newer(0, WAIT)?;
    let mut buf = Vec::with_capacity(64);
    let (mut last, mut reads, mut newer) = (0u64, 0u64, 0u64);
    let timed = time_batches(out, plan.batches, plan.fast_batch, |_| {
        let seq = reader.latest(&mut buf)?.map_or(0, |s| s.sequence);
        (reads, newer, last) = (reads + 1, newer + u64::from(seq != last), seq);
        Ok(())
    });
    new.push(newer as f64 / reads.max(1) as f64);
    stop.u64_at(0).store(base::STOP, Ordering::Release);
    peer.finish();
    timed
}

/// The peer of `read_64`: publishes 64-byte values until told to stop.
pub(crate) fn writer_peer(name: &str) -> Result<(), Error> {
    let stop =
        Mapping::open(&format!("{name}-stop"), base::FLOOR_LEN).map_err(|e| err("shm", e))?;
    let mut writer = Board::builder(name).value_size(64).create()?;
    let value = [0x5au8; 64];
    let deadline = Instant::now() + Duration::from_secs(120);
    while stop.u64_at(0).load(Ordering::Acquire) != base::STOP && Instant::now() < deadline {
        for _ in 0..256 {
            writer.publish(&value)?;
        }
    }
    Ok(())
}

/// `publish()` of a 64-byte value while the peer reads the newest as fast as it can.
fn write_64(plan: &Plan, name: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    let mut writer = Board::builder(name).value_size(64).create()?;
    let peer = Peer::spawn(Role::BoardReader, name, false)?;
    let value = [0xa5u8; 64];
    writer.publish(&value)?;
    // Wait (bounded) until the reader is attached: it bumps nothing we can see, so give
    // it the time a start takes, then measure while it reads.
    std::thread::sleep(Duration::from_millis(50));
    let timed = time_batches(out, plan.batches, plan.fast_batch, |_| {
        writer.publish(&value)?;
        Ok(())
    });
    drop(writer);
    peer.finish();
    timed
}

/// The peer of `write_64`: reads the newest value until the writer closes.
pub(crate) fn reader_peer(name: &str) -> Result<(), Error> {
    let mut reader = Board::builder(name).open(WAIT)?;
    let mut buf = Vec::with_capacity(64);
    let deadline = Instant::now() + Duration::from_secs(120);
    while reader.writer_state() == WriterState::Alive && Instant::now() < deadline {
        for _ in 0..4096 {
            reader.latest(&mut buf)?;
        }
    }
    Ok(())
}

/// `closest()` over a full history of 64 values (one process, nothing else writing).
fn closest_64(plan: &Plan, name: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    let _ = remove_board(name);
    let mut writer = Board::builder(name).value_size(64).history(64).create()?;
    let mut reader = Board::builder(name).open(WAIT)?;
    for i in 0..64u64 {
        writer.publish_at(&[0; 64], 1_000 + i * 100)?;
    }
    let mut buf = Vec::with_capacity(64);
    time_batches(out, plan.batches, plan.fast_batch, |i| {
        let t = 1_000 + (i * 37) % 6_300;
        match reader.closest(t, 50, &mut buf)? {
            Some(_) => Ok(()),
            None => Err(err("closest", format!("no value within 50 ns of {t}"))),
        }
    })
}

/// Publish a 1 MiB value and read it back (one process): GB/s counting both copies, so it
/// compares with memcpy's GB/s of one copy.
fn cycle_1m(plan: &Plan, name: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    let mut writer = Board::builder(name).value_size(MIB).create()?;
    let mut reader = Board::builder(name).open(WAIT)?;
    let value = vec![0x3cu8; MIB];
    let mut buf = Vec::with_capacity(MIB);
    let mut ns = Vec::new();
    time_batches(
        &mut ns,
        plan.batches,
        (plan.large_messages / 4).max(16),
        |_| {
            writer.publish(&value)?;
            reader.latest(&mut buf)?;
            Ok(())
        },
    )?;
    out.extend(ns.iter().map(|ns| (2 * MIB) as f64 / ns));
    Ok(())
}

/// A ping-pong of 64-byte values through two boards (`<name>-ping`, ours, and
/// `<name>-pong`, the peer's), each side spinning in `wait_newer` and reading the value
/// with `latest`: the round trip of a fresh value, to set beside the raw floor's.
fn rtt_64(plan: &Plan, name: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    let mut ping = Board::builder(&format!("{name}-ping"))
        .value_size(64)
        .create()?;
    let peer = Peer::spawn(Role::BoardEcho, name, false)?;
    let mut pong = Board::builder(&format!("{name}-pong"))
        .wait(BoardWait::Spin)
        .open(WAIT)?;
    let mut value = [0u8; 64];
    let mut buf = Vec::with_capacity(64);
    let timed = time_batches(out, plan.batches, plan.fast_batch, |i| {
        value[..8].copy_from_slice(&i.to_le_bytes());
        let seq = ping.publish(&value)?;
        pong.wait_newer(seq - 1, WAIT)?;
        pong.latest(&mut buf)?;
        match buf.get(..8) {
            Some(echo) if echo == &value[..8] => Ok(()),
            _ => Err(err("board ping-pong", "the echo is not the value sent")),
        }
    });
    drop(ping);
    peer.finish();
    timed
}

/// The peer of `rtt_64`: echoes each newer value of `<name>-ping` on `<name>-pong` until
/// the ping board closes.
pub(crate) fn echo_peer(name: &str) -> Result<(), Error> {
    let mut pong = Board::builder(&format!("{name}-pong"))
        .value_size(64)
        .create()?;
    let mut ping = Board::builder(&format!("{name}-ping"))
        .wait(BoardWait::Spin)
        .open(WAIT)?;
    let mut buf = Vec::with_capacity(64);
    let mut seen = 0;
    loop {
        match ping.wait_newer(seen, WAIT) {
            Ok(_) => {}
            Err(BoardError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if let Some(stamp) = ping.latest(&mut buf)? {
            seen = stamp.sequence;
            pong.publish(&buf)?;
        }
    }
}
