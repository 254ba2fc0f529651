//! The optional receive thread: drains incoming messages in bursts and hands each to the
//! user's callback; waits per the local poll interval when nothing arrived.

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::link::Side;
use super::receiver::Receiver;
use super::session::{LinkEvent, Session};
use crate::error::{Error, Result};
use crate::sync::{AtomicBool, Ordering};
use crate::wait::{self, Timeout, Waiter};

/// How often the receive thread looks for a new link while side B reconnects.
const RECONNECT_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// The callback the receive thread calls for each incoming message; the slice is valid
/// only during the call.
pub type Callback = Box<dyn FnMut(&[u8]) + Send + 'static>;
/// Owns the receiving half while the callback thread runs; stops and joins it on drop.
pub(crate) struct ReceiveThread {
    stop: Arc<AtomicBool>,
    /// The session whose current link's incoming ring the thread reads: its consumer wait
    /// word is where the thread sleeps (after a reconnection, on the new link's ring).
    session: Arc<Session>,
    outcome: Arc<Mutex<Option<Error>>>,
    handle: Option<JoinHandle<()>>,
}

impl ReceiveThread {
    pub(crate) fn spawn(
        mut receiver: Receiver,
        burst: usize,
        mut callback: Callback,
    ) -> Result<ReceiveThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let session = receiver.control().session.clone();
        let outcome = Arc::new(Mutex::new(None));
        let handle = std::thread::Builder::new()
            .name(format!("shm-recv-{}", receiver.control().name()))
            .spawn({
                let stop = stop.clone();
                let outcome = outcome.clone();
                move || {
                    wait::lower_timer_slack();
                    if let Err(e) = run(&mut receiver, burst, &mut callback, &stop) {
                        *outcome.lock() = Some(e);
                        // Say so at once: the process may otherwise run on, receiving
                        // nothing, with no sign of why.
                        receiver.control().session.emit(LinkEvent::ReceiveStopped);
                    }
                }
            })
            .map_err(|source| Error::Os {
                op: "spawn receive thread",
                name: String::new(),
                source,
            })?;
        Ok(ReceiveThread {
            stop,
            session,
            outcome,
            handle: Some(handle),
        })
    }

    /// Whether the thread has ended (peer closed, corruption, or a panicking callback).
    pub(crate) fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// The error that ended the thread, if one did (taken: reported once).
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.outcome.lock().take()
    }
}

/// Drains until stopped. Ends with `Ok` when asked to stop or when side B's peer (side A)
/// has closed and everything it sent was delivered (no reconnection follows); with `Err` on
/// corruption, or when side A died and no reconnection follows. Side A never ends for a
/// gone peer: it drains what the old side B sent and waits for the next one.
fn run(
    receiver: &mut Receiver,
    burst: usize,
    callback: &mut Callback,
    stop: &AtomicBool,
) -> Result<()> {
    let mut waiter = Waiter::new(Timeout::Never);
    // Relaxed: the flag only asks the loop to end; no data is published with it.
    while !stop.load(Ordering::Relaxed) {
        if receiver.drain(burst, &mut *callback)? > 0 {
            waiter.reset();
            continue;
        }
        if let Some(state) = receiver.peer_gone() {
            // Everything committed before the close (or death) is visible now; deliver it.
            while receiver.drain(burst, &mut *callback)? > 0 {}
            if receiver.will_reconnect() {
                // Side B re-attaches on its reconnection thread; `drain` moves to the new
                // link once it is in. Check back every millisecond meanwhile.
                std::thread::sleep(RECONNECT_POLL);
                continue;
            }
            if receiver.control().side() == Side::A {
                // The link stays; a new side B attaches to it. Idle per this side's mode
                // until a message comes (the new B's first publication wakes us) or we
                // are stopped.
                receiver.idle_for_message(&mut waiter, || stop.load(Ordering::Relaxed));
                continue;
            }
            // No reconnection: end. A dead peer is reported as this thread's error.
            return match state {
                Error::Closed => Ok(()),
                other => Err(other),
            };
        }
        receiver.idle(&mut waiter, || stop.load(Ordering::Relaxed));
    }
    Ok(())
}

impl Drop for ReceiveThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread may sleep on its futex word: wake it so it sees the flag. It sleeps on
        // the session's current link: it moves to a new link before sleeping on it, and a
        // reconnection wakes the old link's sleepers (which then see the new epoch, so they
        // do not sleep there again). A link installed after this read sees the flag: the
        // store above happens before the swap, which happens before the thread's move.
        let (link, _) = self.session.current();
        wait::wake_all(&link.incoming().header().consumer.wait);
        drop(link);
        if let Some(handle) = self.handle.take() {
            // A panic in the user's callback already ended the thread; nothing to add.
            let _ = handle.join();
        }
    }
}
