//! [`UringWait`]: how a [`ShmNetwork`](crate::ShmNetwork) receive sleeps when io_uring is
//! there: an io_uring `FUTEX_WAIT` (Linux ≥ 6.7) on the channel's wait word, announced
//! as a blocking receive announces its sleep (`Receiver::announce_sleep`), with the
//! ring's fd registered with tokio's reactor. The peer's ordinary futex wake after
//! publishing (or the liveness monitor's, when the peer goes) completes the wait, and the
//! completion wakes the executor's `epoll` directly: one thread wake-up per message, as a
//! socket's, instead of three through the channel's waiter thread. Nothing changes for
//! the peer, in the protocol or in the layout.
//!
//! A wait lasts at most [`SLICE`] (then it is cancelled and announced again), as a
//! blocking receive's futex sleep lasts at most `SLEEP_SLICE`: a bound on a missed wake
//! (the peer's publication and the liveness monitor's wake on its departure both wake
//! the word). Ten times longer than a blocking sleep's, because each slice costs the
//! executor a timer, a cancellation and a new submission (measured: 0.31–0.36% of a core
//! for an idle process with 50 ms slices, against 0.14% with the waiter thread). A receive dropped with a wait in flight leaves it
//! to the next sleep, which cancels it first; the word stays mapped until its completion
//! is reaped. Where io_uring or its `FUTEX_WAIT` is refused (an older kernel, a seccomp
//! filter, `kernel.io_uring_disabled`) the network falls back to the waiter thread.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use capnp_shm_transport::SLEEP_SLICE;
use capnp_shm_transport::{Announced, Error as ChannelError, Receiver, SleepWord, Timeout};
use io_uring::{opcode, IoUring};
use tokio::io::unix::AsyncFd;

/// The longest single futex wait (see the module's documentation).
const SLICE: std::time::Duration = SLEEP_SLICE.saturating_mul(10);

/// `FUTEX2_SIZE_U32`: a 32-bit futex, shared between processes (no `FUTEX2_PRIVATE`).
const FUTEX2_SIZE_U32: u32 = 0x02;
/// `FUTEX_BITSET_MATCH_ANY`: woken by any wake.
const MATCH_ANY: u64 = u32::MAX as u64;
/// The `user_data` of the futex wait, and of its cancellation.
const WAIT: u64 = 1;
const CANCEL: u64 = 2;

/// Whether new networks sleep with io_uring (when the kernel allows it).
// A mutex, not an atomic: the workspace's atomics come from the library's loom funnel
// (clippy.toml), and this setting is read once per network.
static ENABLED: std::sync::Mutex<bool> = std::sync::Mutex::new(true);

/// Sets whether the [`ShmNetwork`](crate::ShmNetwork)s made after this call in this
/// process sleep with io_uring `FUTEX_WAIT` where the kernel allows it (the default), or
/// always with the channel's waiter thread (`false`). See README, "RPC".
///
/// ```
/// capnp_shm_rpc::set_io_uring_wait(false);
/// assert!(!capnp_shm_rpc::io_uring_wait());
/// capnp_shm_rpc::set_io_uring_wait(true);
/// ```
pub fn set_io_uring_wait(on: bool) {
    *ENABLED.lock().unwrap_or_else(|e| e.into_inner()) = on;
}

/// Whether new networks try io_uring (see [`set_io_uring_wait`]).
pub fn io_uring_wait() -> bool {
    *ENABLED.lock().unwrap_or_else(|e| e.into_inner())
}

struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One network's ring: one futex wait in flight at a time.
pub(crate) struct UringWait {
    /// Declared before `ring`, so it is deregistered before the ring's fd closes.
    fd: AsyncFd<RingFd>,
    ring: IoUring,
    /// The word of the wait in flight, kept (and so mapped) until its completion is
    /// reaped. Declared after `ring`: a ring dropped with a wait in flight is gone before
    /// the word's segment may be unmapped.
    pending: Option<SleepWord>,
    /// The kernel refused the futex wait: this ring is of no use.
    refused: bool,
}

/// How a wait ended.
enum Woken {
    /// Woken, timed out or cancelled: look again.
    Again,
    /// The kernel refused the futex wait (no `FUTEX_WAIT` in io_uring).
    Unsupported,
}

impl UringWait {
    /// A ring, when enabled ([`set_io_uring_wait`]), in a tokio runtime, and the kernel
    /// allows it.
    pub(crate) fn if_enabled() -> Option<UringWait> {
        if !io_uring_wait() || tokio::runtime::Handle::try_current().is_err() {
            return None;
        }
        UringWait::new().ok()
    }

    /// Whether the kernel refused the futex wait (then wait another way for good).
    pub(crate) fn refused(&self) -> bool {
        self.refused
    }

    fn new() -> io::Result<UringWait> {
        let ring = IoUring::new(4)?;
        let raw = RingFd(ring.as_raw_fd());
        // SAFETY: the ring's fd stays open and the same for the AsyncFd's whole life: the
        // ring is dropped after it (field order).
        let fd = unsafe { AsyncFd::register_with_interest(raw, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(UringWait {
            fd,
            ring,
            pending: None,
            refused: false,
        })
    }

    /// Sleeps on `word` until it is woken, for [`SLICE`] at most.
    async fn sleep(&mut self, word: SleepWord) -> io::Result<Woken> {
        self.cancel().await?;
        let entry = opcode::FutexWait::new(
            word.futex_addr(),
            u64::from(SleepWord::VALUE),
            MATCH_ANY,
            FUTEX2_SIZE_U32,
        )
        .build()
        .user_data(WAIT);
        // SAFETY: the futex word stays mapped until the completion is reaped: `word` (which
        // keeps its segment mapped) is held in `self.pending` until then, and outlives the
        // ring when both are dropped (field order).
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        self.pending = Some(word);
        self.ring.submit()?;
        match tokio::time::timeout(SLICE, self.reap()).await {
            Ok(woken) => woken,
            Err(_) => self.cancel().await.map(|()| Woken::Again),
        }
    }

    /// Cancels the wait in flight, if any, and reaps it.
    async fn cancel(&mut self) -> io::Result<()> {
        if self.pending.is_none() {
            return Ok(());
        }
        let entry = opcode::AsyncCancel::new(WAIT).build().user_data(CANCEL);
        // SAFETY: a cancellation holds no pointer into our memory.
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        self.ring.submit()?;
        self.reap().await.map(drop)
    }

    /// Waits for the futex wait's completion (dropping the cancellations' on the way),
    /// then ends the announced sleep.
    async fn reap(&mut self) -> io::Result<Woken> {
        let UringWait {
            fd, ring, pending, ..
        } = self;
        loop {
            let mut ready = fd.readable().await?;
            let done = ring.completion().find(|c| c.user_data() == WAIT);
            let Some(done) = done else {
                ready.clear_ready();
                continue;
            };
            if let Some(word) = pending.take() {
                word.done();
            }
            let errno = -done.result();
            // EAGAIN: the word changed before the wait began (woken meanwhile); EINTR,
            // ECANCELED: interrupted or cancelled. Anything else: not supported here.
            return Ok(match errno {
                0 | libc::EAGAIN | libc::EINTR | libc::ECANCELED => Woken::Again,
                _ => Woken::Unsupported,
            });
        }
    }
}

/// The next message, copied out by `take`, sleeping with `uring` while there is none.
/// `Ok(None)`: wait another way this time (this side polls, or waits for a
/// reconnection), or for good when [`UringWait::refused`].
pub(crate) async fn recv<T>(
    receiver: &mut Receiver,
    uring: &mut UringWait,
    take: impl Fn(&[u8]) -> T,
) -> Result<Option<T>, ChannelError> {
    let os = |source| ChannelError::Os {
        op: "io_uring futex wait",
        name: String::new(),
        source,
    };
    loop {
        match receiver.announce_sleep()? {
            Announced::Ready => match receiver.recv(Timeout::Immediate) {
                Ok(msg) => return Ok(Some(take(&msg))),
                Err(ChannelError::Timeout { .. }) => {}
                Err(e) => return Err(e),
            },
            Announced::NotBlockMode | Announced::Reconnecting => return Ok(None),
            Announced::Sleep(word) => match uring.sleep(word).await.map_err(os)? {
                Woken::Again => {}
                Woken::Unsupported => {
                    uring.refused = true;
                    return Ok(None);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use capnp_shm_transport::Channel;

    use super::*;

    /// A `cst-` channel name of this test, removed on drop (failure included).
    struct Name(String);

    impl Drop for Name {
        fn drop(&mut self) {
            let _ = capnp_shm_transport::remove_channel(&self.0);
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_receive_dropped_mid_wait_and_waits_past_a_slice_lose_nothing() {
        let name = Name(format!("cst-rpc-uring-{}", std::process::id()));
        let a = Channel::builder(&name.0).slot_size(64).create().unwrap();
        let b = Channel::builder(&name.0)
            .open_timeout(Duration::from_secs(5))
            .open()
            .unwrap();
        let (mut tx, _) = a.split().unwrap();
        let (_, mut rx) = b.split().unwrap();
        runtime().block_on(async {
            let Some(mut uring) = UringWait::new().ok() else {
                return; // io_uring refused here: nothing to test
            };
            let copy = |m: &[u8]| m.to_vec();
            // Nothing comes: the receive is dropped with its futex wait in flight.
            let early =
                tokio::time::timeout(Duration::from_millis(20), recv(&mut rx, &mut uring, copy));
            assert!(early.await.is_err(), "a message out of nowhere");
            assert!(uring.pending.is_some(), "the wait stays in flight");
            // The next receive cancels it first, then gets what comes.
            tx.send(b"one", Timeout::Immediate).unwrap();
            let got =
                tokio::time::timeout(Duration::from_secs(10), recv(&mut rx, &mut uring, copy));
            match got.await.expect("the message was lost").unwrap() {
                Some(m) => assert_eq!(m, b"one"),
                None => return, // no FUTEX_WAIT in this kernel's io_uring
            }
            // (The message was there at once: the old wait is still in flight, for the
            // next sleep to cancel.)
            // A message sent after more than one sleep slice (each wait is cancelled and
            // announced again) still wakes the receive.
            let later = async {
                tokio::time::sleep(SLICE * 2 + Duration::from_millis(20)).await;
                tx.send(b"two", Timeout::Immediate).unwrap();
            };
            let receive =
                tokio::time::timeout(Duration::from_secs(10), recv(&mut rx, &mut uring, copy));
            let (got, ()) = futures::join!(receive, later);
            assert_eq!(got.expect("the message was lost").unwrap().unwrap(), b"two");
        });
    }
}
