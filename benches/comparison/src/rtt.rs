//! Round-trip measurements of 64-byte messages, one function per kind: each starts a fresh
//! peer and appends `plan.batches` per-batch means (ns per round trip) to `out`.

use std::io::BufRead;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Instant;

use capnp_shm_transport::{RecvMessage, SendBuilt, SendMessage, Trust, WaitMode};

use crate::baselines::{self as base, Mapping};
use crate::demo_capnp::sample;
use crate::peer::{Peer, Role};
use crate::{channel_builder, channel_name, err, typed_sample, Error, Plan, WAIT};

/// Times `batches` batches of `batch` calls of `one(i)`, after a tenth of a batch of
/// warm-up; pushes ns per call per batch.
pub(crate) fn time_batches(
    out: &mut Vec<f64>,
    batches: usize,
    batch: u64,
    mut one: impl FnMut(u64) -> Result<(), Error>,
) -> Result<(), Error> {
    for i in 0..batch / 10 {
        one(i)?; // warm-up
    }
    let mut next = batch / 10;
    for _ in 0..batches {
        let start = Instant::now();
        for _ in 0..batch {
            next += 1;
            one(next)?;
        }
        out.push(start.elapsed().as_nanos() as f64 / batch as f64);
    }
    Ok(())
}

/// The raw floor: two atomics bouncing between the processes.
pub(crate) fn floor(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    let name = channel_name(tag);
    let m = Mapping::create(&name, base::FLOOR_LEN).map_err(|e| err("shm", e))?;
    let peer = Peer::spawn(Role::Floor, &name, false)?;
    time_batches(out, plan.batches, plan.fast_batch, |i| {
        base::floor_ping(&m, i);
        Ok(())
    })?;
    m.u64_at(0).store(base::STOP, Ordering::Release);
    peer.finish();
    Ok(())
}

/// A raw futex ping-pong: the kernel wake-up floor.
pub(crate) fn futex_floor(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    let name = channel_name(tag);
    let m = Mapping::create(&name, base::FLOOR_LEN).map_err(|e| err("shm", e))?;
    let peer = Peer::spawn(Role::FutexFloor, &name, false)?;
    time_batches(out, plan.batches, plan.slow_batch, |i| {
        base::futex_ping(&m, i as u32);
        Ok(())
    })?;
    base::futex_stop(&m);
    peer.finish();
    Ok(())
}

/// A Unix domain socket ping-pong.
pub(crate) fn uds(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    let path = std::env::temp_dir().join(format!("{}.sock", channel_name(tag)));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| err("bind", e))?;
    let peer = Peer::spawn(Role::Uds, &path.to_string_lossy(), false)?;
    let (mut s, _) = listener.accept().map_err(|e| err("accept", e))?;
    let mut r = s.try_clone().map_err(|e| err("socket", e))?;
    let mut msg = [1u8; 64];
    time_batches(out, plan.batches, plan.slow_batch, |_| {
        base::stream_ping(&mut s, &mut r, &mut msg).map_err(|e| err("uds", e))
    })?;
    drop((s, r));
    let _ = std::fs::remove_file(&path);
    peer.finish();
    Ok(())
}

/// A ping-pong over the peer's stdin and stdout pipes.
pub(crate) fn pipe(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    let mut peer = Peer::spawn(Role::Pipe, &channel_name(tag), true)?;
    let mut w = peer.0.stdin.take().expect("piped");
    let mut r = peer.0.stdout.take().expect("piped");
    let mut msg = [1u8; 64];
    time_batches(out, plan.batches, plan.slow_batch, |_| {
        base::stream_ping(&mut w, &mut r, &mut msg).map_err(|e| err("pipe", e))
    })?;
    drop((w, r));
    peer.finish();
    Ok(())
}

/// This transport, busy-polling both sides.
pub(crate) fn spin(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    channel_bytes(plan, tag, out, WaitMode::Poll, Role::Spin, 64, 16)
}

/// [`spin`] with both receivers in untrusted mode (each message copied once).
pub(crate) fn spin_untrusted(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    channel_bytes(plan, tag, out, WaitMode::Poll, Role::SpinUntrusted, 64, 16)
}

/// This transport in block mode (spin phase, then futex).
pub(crate) fn block(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    channel_bytes(plan, tag, out, WaitMode::Block, Role::Block, 64, 16)
}

/// `size`-byte messages over this transport in `mode` (`slots` slots of 256 bytes), echoed
/// by a peer in `role`; side A receives in untrusted mode when the peer does.
pub(crate) fn channel_bytes(
    plan: &Plan,
    tag: &str,
    out: &mut Vec<f64>,
    mode: WaitMode,
    role: Role,
    size: usize,
    slots: usize,
) -> Result<(), Error> {
    let name = channel_name(tag);
    let trust = if role == Role::SpinUntrusted {
        Trust::Untrusted
    } else {
        Trust::Cooperating
    };
    let mut a = channel_builder(&name, 256, slots, mode)
        .trust(trust)
        .create()?;
    let peer = Peer::spawn(role, &name, false)?;
    let msg = vec![1u8; size];
    time_batches(out, plan.batches, plan.fast_batch, |_| {
        a.send(&msg, WAIT)?;
        std::hint::black_box(&*a.recv(WAIT)?);
        Ok(())
    })?;
    drop(a);
    peer.finish();
    Ok(())
}

/// This transport, busy-polling, with a Cap'n Proto `Sample` sent, decoded and answered
/// each way: the sequence number set in a prebuilt message, which `send_message` frames
/// and copies into the slot (the fastest way measured, see [`capnp_built`]).
pub(crate) fn spin_capnp(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    capnp_rtt(plan, tag, out, Trust::Cooperating, Role::SpinCapnp)
}

/// [`spin_capnp`] with a whole `Sample` built for every message (`send_built`, each side).
pub(crate) fn capnp_built(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    capnp_rtt(plan, tag, out, Trust::Cooperating, Role::CapnpBuilt)
}

/// [`spin_capnp`] with both receivers in untrusted mode: each message copied once, then
/// decoded from the copy.
pub(crate) fn capnp_untrusted(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    capnp_rtt(plan, tag, out, Trust::Untrusted, Role::CapnpUntrusted)
}

/// The Cap'n Proto round trip, side A receiving in `trust` mode, the peer in `role`.
fn capnp_rtt(
    plan: &Plan,
    tag: &str,
    out: &mut Vec<f64>,
    trust: Trust,
    role: Role,
) -> Result<(), Error> {
    let name = channel_name(tag);
    let mut a = channel_builder(&name, 256, 16, WaitMode::Poll)
        .trust(trust)
        .create()?;
    let peer = Peer::spawn(role, &name, false)?;
    let mut m = typed_sample();
    let built = role == Role::CapnpBuilt;
    time_batches(out, plan.batches, plan.fast_batch, |i| {
        if built {
            a.send_built::<sample::Owned>(crate::SAMPLE_CAPACITY, WAIT, |s| {
                crate::build_sample(s, i);
                Ok(())
            })?;
        } else {
            m.get_root::<sample::Builder>()?.set_seq(i);
            a.send_message(&m, WAIT)?;
        }
        let reply = a.recv_message(WAIT)?;
        std::hint::black_box(reply.root::<sample::Owned>()?.get_seq());
        Ok(())
    })?;
    drop(a);
    peer.finish();
    Ok(())
}

/// The iceoryx2 ping-pong binary (benches/iceoryx2-peer), if built: `CAPNP_SHM_ICEORYX2`,
/// else the crate's release build path relative to the working directory.
pub(crate) fn iceoryx2_binary() -> Option<PathBuf> {
    let path = std::env::var_os("CAPNP_SHM_ICEORYX2")
        .map(PathBuf::from)
        .unwrap_or_else(|| "benches/iceoryx2-peer/target/release/iceoryx2-pingpong".into());
    path.is_file().then_some(path)
}

/// iceoryx2 0.10: its own pong process (CPU 1) and ping process (CPU 0); appends the ping
/// side's per-batch means.
pub(crate) fn iceoryx2(
    bin: &Path,
    tag: &str,
    plan: &Plan,
    out: &mut Vec<f64>,
) -> Result<(), Error> {
    let name = channel_name(tag);
    let mut pong = Peer(
        Command::new(bin)
            .args(["pong", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err("spawn iceoryx2 pong", e))?,
    );
    // Wait for its subscriber, so no ping is sent before anyone listens.
    let stdout = pong.0.stdout.take().expect("piped");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| err("iceoryx2 pong", e))?;
    if !line.contains("ready") {
        return Err(err("iceoryx2 pong", "did not start"));
    }
    let ping = Command::new(bin)
        .args([
            "ping",
            &name,
            &plan.fast_batch.to_string(),
            &plan.batches.to_string(),
        ])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| err("iceoryx2 ping", e))?;
    if !ping.status.success() {
        return Err(err("iceoryx2 ping", ping.status));
    }
    out.extend(
        String::from_utf8_lossy(&ping.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok()),
    );
    pong.finish();
    Ok(())
}
