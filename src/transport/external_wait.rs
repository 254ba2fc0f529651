//! [`SleepWord`]: a receive's sleep announced on its wait word for a waiter outside the
//! library (an io_uring `FUTEX_WAIT` in an executor's reactor, say). The announcement is
//! the one a blocking receive makes before its `FUTEX_WAIT` (`Waiter::idle_block`): store
//! 1 in the word, a SeqCst fence, re-check; the peer's `wake_sleeper` after publishing
//! (and the liveness monitor's `wake_all` on departure) then wakes any futex waiter on
//! the word. Nothing changes for the peer, in the protocol or in the layout.

use std::sync::Arc;

use super::link::Link;
use super::ready::{Half, Readiness};
use super::receiver::Receiver;
use crate::error::Result;
use crate::sync::{fence, AtomicU32, Ordering};

/// What [`Receiver::announce_sleep`] found.
pub enum Announced {
    /// A message (or anything else a receive must report) is there: receive now.
    Ready,
    /// This side does not wait in block mode (the peer would not wake a futex waiter):
    /// wait with `recv_async` instead.
    NotBlockMode,
    /// The peer is gone and the channel waits for a reconnection, which no word
    /// announces: wait with `recv_async` instead (it polls for the new link).
    Reconnecting,
    /// The sleep is announced: wait on the word (value 1) until woken, then
    /// [`SleepWord::done`] and receive.
    Sleep(SleepWord),
}

/// An announced sleep on a receive's wait word; keeps the word's segment mapped.
pub struct SleepWord {
    link: Arc<Link>,
}

impl SleepWord {
    fn word(&self) -> &AtomicU32 {
        &self.link.incoming().header().consumer.wait
    }

    /// The futex word's address: a shared (not process-private) 32-bit futex, mapped as
    /// long as this value lives. Wait while it holds [`SleepWord::VALUE`].
    pub fn futex_addr(&self) -> *const u32 {
        self.word() as *const AtomicU32 as *const u32
    }

    /// The value the word holds while the sleep is announced.
    pub const VALUE: u32 = 1;

    /// Ends the sleep (woken, or given up): withdraws the announcement.
    pub fn done(self) {
        self.word().store(0, Ordering::Relaxed);
    }
}

impl Receiver {
    /// Announces that this side sleeps until the next message, for a waiter of the
    /// caller's own on the returned word (see [`SleepWord`]: a futex wait while it holds
    /// [`SleepWord::VALUE`]); or says why not. After the wait (woken or not), end the
    /// sleep with [`SleepWord::done`] and call this again: after the peer's publication
    /// (or a new link) it answers [`Announced::Ready`], after its departure it returns
    /// the error a receive would (`Closed`, `PeerDead`, ...).
    ///
    /// ```
    /// use std::time::Duration;
    /// use capnp_shm_transport::{Announced, Channel, Timeout};
    ///
    /// # let name = format!("doc-announce-{}", std::process::id());
    /// let a = Channel::builder(&name).slot_size(64).create()?;
    /// let b = Channel::builder(&name).open_timeout(Duration::from_secs(1)).open()?;
    /// let (mut tx, _) = a.split()?;
    /// let (_, mut rx) = b.split()?;
    /// let Announced::Sleep(word) = rx.announce_sleep()? else { panic!("nothing was sent") };
    /// // A futex wait on `word.futex_addr()` while it holds `SleepWord::VALUE` would be
    /// // woken by this send.
    /// tx.send(b"wake", Timeout::Immediate)?;
    /// word.done();
    /// assert!(matches!(rx.announce_sleep()?, Announced::Ready));
    /// assert_eq!(&*rx.recv(Timeout::Immediate)?, b"wake");
    /// # drop((tx, rx));
    /// # capnp_shm_transport::remove_channel(&name)?;
    /// # Ok::<(), capnp_shm_transport::Error>(())
    /// ```
    pub fn announce_sleep(&mut self) -> Result<Announced> {
        if !self.block_mode() {
            return Ok(Announced::NotBlockMode);
        }
        match self.readiness(0)? {
            Readiness::Empty => {}
            Readiness::Reconnecting => return Ok(Announced::Reconnecting),
            Readiness::Now => return Ok(Announced::Ready),
        }
        let sleep = SleepWord {
            link: self.job(Readiness::Empty, 0).link,
        };
        sleep.word().store(SleepWord::VALUE, Ordering::Relaxed);
        // SYNC POINT with the fence in `wait::wake_block_sleeper` / `wait::wake_all`: either the
        // re-check below sees the peer's publication (or departure), or the peer sees the
        // announcement and wakes the word (as in `Waiter::idle_block`).
        fence(Ordering::SeqCst);
        let readiness = self.readiness(0);
        if let Ok(Readiness::Empty) = readiness {
            return Ok(Announced::Sleep(sleep));
        }
        sleep.done();
        Ok(match readiness? {
            Readiness::Reconnecting => Announced::Reconnecting,
            _ => Announced::Ready,
        })
    }
}
