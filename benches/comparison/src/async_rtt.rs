//! The async round trip (`rtt_ns.async_block`): both sides in block mode, every send and
//! receive awaited (`send_async`, `recv_async`) on a minimal executor of their own, so
//! the figure is the library's async path and nothing of a runtime's.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error as ChannelError, WaitMode};

use crate::peer::{Peer, Role};
use crate::rtt::time_batches;
use crate::{channel_builder, channel_name, Error, Plan, WAIT};

/// Wakes the thread that blocks on the future.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs futures to completion on the calling thread, parking it while they are pending.
pub(crate) struct BlockOn(Waker);

impl BlockOn {
    pub(crate) fn new() -> BlockOn {
        BlockOn(Waker::from(Arc::new(Unpark(thread::current()))))
    }

    pub(crate) fn run<F: Future>(&self, f: F) -> F::Output {
        let mut cx = Context::from_waker(&self.0);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            thread::park();
        }
    }
}

/// Side A: 64-byte messages sent and received with the async calls, echoed by a peer
/// that awaits too.
pub(crate) fn async_block(plan: &Plan, tag: &str, out: &mut Vec<f64>) -> Result<(), Error> {
    let name = channel_name(tag);
    let mut a = channel_builder(&name, 256, 16, WaitMode::Block).create()?;
    let peer = Peer::spawn(Role::AsyncBlock, &name, false)?;
    let exec = BlockOn::new();
    let msg = [1u8; 64];
    time_batches(out, plan.batches, plan.fast_batch, |_| {
        exec.run(async {
            a.send_async(&msg).await?;
            std::hint::black_box(&*a.recv_async().await?);
            Ok::<(), ChannelError>(())
        })?;
        Ok(())
    })?;
    drop(a);
    peer.finish();
    Ok(())
}

/// The peer: echoes with the async calls until side A closes.
pub(crate) fn echo(name: &str) -> Result<(), Error> {
    let b = Channel::builder(name)
        .open_timeout(WAIT)
        .wait_mode(WaitMode::Block)
        .open()?;
    let (mut tx, mut rx) = b.split()?;
    let exec = BlockOn::new();
    let mut buf = Vec::with_capacity(256);
    loop {
        let echoed = exec.run(async {
            rx.recv_into_async(&mut buf).await?;
            tx.send_async(&buf).await
        });
        match echoed {
            Ok(()) => {}
            Err(ChannelError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
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

/// Idle CPU of an awaiting side, in percent of one core: the peer process (side B, block
/// mode) awaits `recv_async` for `idle` with no traffic; its whole process is measured
/// (the parked task's thread, its waiter thread, its liveness monitor).
pub(crate) fn idle_cpu(tag: &str, idle: Duration) -> Result<f64, Error> {
    let name = channel_name(tag);
    let mut a = channel_builder(&name, 256, 16, WaitMode::Block).create()?;
    let peer = Peer::spawn(Role::AsyncIdle, &name, false)?;
    a.recv(WAIT)?; // the peer is attached and about to await
    std::thread::sleep(idle);
    a.send(b"stop", WAIT)?;
    let report = a.recv(WAIT)?;
    let [cpu_ns, wall_ns]: [u64; 2] =
        [0, 8].map(|at| u64::from_le_bytes(report[at..at + 8].try_into().expect("16-byte report")));
    drop(report);
    drop(a);
    peer.finish();
    Ok(100.0 * cpu_ns as f64 / wall_ns as f64)
}

/// The idle peer: attaches, says so, awaits one message (measuring its own CPU time over
/// the wait), and answers with the CPU and wall nanoseconds.
pub(crate) fn idle_peer(name: &str) -> Result<(), Error> {
    let b = Channel::builder(name)
        .open_timeout(WAIT)
        .wait_mode(WaitMode::Block)
        .open()?;
    let (mut tx, mut rx) = b.split()?;
    tx.send(b"ready", WAIT)?;
    let (cpu, wall) = (cpu_time(), Instant::now());
    BlockOn::new().run(async { rx.recv_async().await.map(drop) })?;
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    let mut report = [0u8; 16];
    report[..8].copy_from_slice(&(cpu.as_nanos() as u64).to_le_bytes());
    report[8..].copy_from_slice(&(wall.as_nanos() as u64).to_le_bytes());
    tx.send(&report, WAIT)?;
    // Until side A has read the report and closed.
    let closed = BlockOn::new().run(rx.recv_async()).map(drop);
    match closed {
        Err(ChannelError::Closed) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
