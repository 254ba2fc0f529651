//! The wait for a [`ShmNetwork`](crate::ShmNetwork)'s next incoming message: a polling
//! window on the executor thread when one is set (`spin.rs`), then an io_uring
//! `FUTEX_WAIT` in tokio's reactor (`uring.rs`), or the channel's `recv_async` (its
//! waiter thread) where io_uring is refused. The message is copied once into word-aligned
//! memory of its own (capnp-rpc keeps it while the call it carries runs, and ring slots
//! are released in order).

use std::cell::Cell;
use std::time::Instant;

use capnp::Word;
use capnp_shm_transport::{Error as ChannelError, Receiver};

use crate::spin::{SpinPolicy, SpinRecv};
use crate::uring::UringWait;

/// Word-aligned bytes of one received message (what the Cap'n Proto reader reads).
pub(crate) struct Aligned(Vec<Word>, usize);

impl std::ops::Deref for Aligned {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &Word::words_to_bytes(&self.0)[..self.1]
    }
}

/// One copy of a received message into word-aligned memory of its own.
fn aligned_copy(msg: &[u8]) -> Aligned {
    let mut words = Word::allocate_zeroed_vec(msg.len().div_ceil(8));
    Word::words_to_bytes_mut(&mut words)[..msg.len()].copy_from_slice(msg);
    Aligned(words, msg.len())
}

/// The next message, copied out: polled for until `deadline` (if any; the outcome is
/// recorded in `spin`), then slept for with `uring` (dropped for good if the kernel
/// refuses its futex wait) or, where it cannot serve, with the waiter thread.
pub(crate) async fn next_message(
    receiver: &mut Receiver,
    spin: &Cell<SpinPolicy>,
    deadline: Option<Instant>,
    uring: &mut Option<UringWait>,
) -> Result<Aligned, ChannelError> {
    // The polling window (no wake-up when the message comes meanwhile); bounded by its
    // deadline, so a failed send ends the receive at the latest when it is over.
    if let Some(deadline) = deadline {
        let (outcome, polled) = SpinRecv::new(receiver, deadline, aligned_copy).await;
        let mut policy = spin.get();
        policy.record(outcome);
        spin.set(policy);
        if let Some(received) = polled {
            return received;
        }
    }
    // io_uring's futex wait (one wake-up into the executor's epoll); the waiter thread
    // where it is refused.
    if let Some(u) = uring.as_mut() {
        match crate::uring::recv(receiver, u, aligned_copy).await {
            Ok(Some(bytes)) => return Ok(bytes),
            Ok(None) if u.refused() => *uring = None,
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    receiver.recv_async().await.map(|m| aligned_copy(&m))
}
