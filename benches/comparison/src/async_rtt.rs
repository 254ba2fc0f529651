//! The async round trip (`rtt_ns.async_block`): both sides in block mode, every send and
//! receive awaited (`send_async`, `recv_async`) on a minimal executor of their own, so
//! the figure is the library's async path and nothing of a runtime's.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

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
