//! [`Parker`]: the waiter thread behind the async calls (`recv_async`, `send_async`). A
//! future that finds nothing to do hands the parker a [`Job`] (what it waits for, and the
//! futex word the peer wakes) and its `Waker`; one thread per half, started at the first
//! park, waits exactly as a block-mode call would (the same [`Waiter`], the same wait
//! word, so the peer's ordinary `wake_sleeper` after publishing wakes it) and then wakes
//! the task. Between jobs the thread sleeps on a condition variable: no CPU, no spinning.
//!
//! Cancellation: a dropped future withdraws its job ([`Parker::cancel`]); the thread sees
//! the withdrawal in the same re-check that precedes every futex sleep (the withdrawal is
//! followed by `wake_all` on the job's word, so a sleeping thread is woken at once).

use std::sync::Arc;
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::link::Link;
use super::session::Session;
use crate::error::{Error, Result};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{self, Backoff, Policy, Timeout, WaitMode, Waiter};

/// Which of a link's wait words a job sleeps on (the one the peer wakes).
pub(super) type WordOf = fn(&Link) -> &AtomicU32;

/// What a parked future waits for.
pub(super) struct Job {
    /// The link whose words the wait uses (kept mapped while the job runs).
    pub link: Arc<Link>,
    /// The word to announce in and sleep on (ignored when `poll_ms` is set).
    pub word: WordOf,
    /// Whether the awaited thing happened (or anything else the future must see: the
    /// peer's departure, a new link). Checked before every sleep.
    pub ready: Box<dyn FnMut(&Link) -> bool + Send>,
    /// Poll `ready` every millisecond instead of sleeping on `word` (a wait for a
    /// reconnection, which no peer announces on a word).
    pub poll_ms: bool,
}

impl Job {
    /// A wait on `word` until `ready` holds, the peer is gone, or link `epoch` was
    /// replaced (each of which the future must see).
    pub(super) fn on_word(
        link: Arc<Link>,
        word: WordOf,
        session: Arc<Session>,
        epoch: u64,
        ready: impl Fn() -> bool + Send + 'static,
    ) -> Job {
        Job {
            link,
            word,
            ready: Box::new(move |link| {
                ready() || link.peer_gone().is_some() || session.epoch() != epoch
            }),
            poll_ms: false,
        }
    }

    /// A wait for a reconnection that began on link `epoch` to settle (see
    /// [`Session::reconnect_settled`]), polled every millisecond.
    pub(super) fn reconnection(
        link: Arc<Link>,
        word: WordOf,
        session: Arc<Session>,
        epoch: u64,
    ) -> Job {
        Job {
            link,
            word,
            ready: Box::new(move |_| session.reconnect_settled(epoch)),
            poll_ms: true,
        }
    }
}

/// One half's waiter thread (started at its first park) and the job it runs.
pub(crate) struct Parker {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// How long an async call spins (in bursts) before it parks, in block mode.
    spin: Duration,
}

impl Default for Parker {
    fn default() -> Parker {
        Parker {
            shared: Arc::default(),
            thread: Mutex::default(),
            spin: Backoff::DEFAULT.spin,
        }
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    work: Condvar,
    /// The newest withdrawn job's number (`u64::MAX`: the thread is to stop).
    withdrawn: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The last job number handed out.
    last: u64,
    /// The job that is waited for, until it is done or withdrawn.
    pending: Option<u64>,
    /// That job, until the thread takes it.
    job: Option<(u64, Job)>,
    /// Who to wake when the pending job is done.
    waker: Option<Waker>,
    /// The pending job's word, to wake the thread out of its sleep on withdrawal.
    word: Option<(Arc<Link>, WordOf)>,
    stop: bool,
}

impl Parker {
    /// How long an async call spins before it parks (block mode).
    pub(super) fn spin(&self) -> Duration {
        self.spin
    }

    /// Sets [`Parker::spin`].
    pub(super) fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Parks the caller's task: `ticket` names its pending job. A job still pending under
    /// that ticket only gets the new `waker`; otherwise `job()` is handed to the thread.
    pub(super) fn park(
        &self,
        ticket: &mut Option<u64>,
        waker: &Waker,
        job: impl FnOnce() -> Job,
    ) -> Result<()> {
        {
            let mut s = self.shared.state.lock();
            if ticket.is_some() && s.pending == *ticket {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    s.waker = Some(waker.clone());
                }
                return Ok(());
            }
            s.last += 1;
            let n = s.last;
            let job = job();
            s.word = Some((job.link.clone(), job.word));
            s.job = Some((n, job));
            s.pending = Some(n);
            s.waker = Some(waker.clone());
            *ticket = Some(n);
        }
        self.shared.work.notify_one();
        let mut thread = self.thread.lock();
        if thread.is_none() {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("shm-async-waiter".into())
                .spawn(move || serve(&shared))
                .map_err(|source| Error::Os {
                    op: "spawn async waiter thread",
                    name: String::new(),
                    source,
                })?;
            *thread = Some(spawned);
        }
        Ok(())
    }

    /// Withdraws the job under `ticket` (a future dropped or done): the thread stops
    /// waiting for it and wakes nobody.
    pub(super) fn cancel(&self, ticket: &mut Option<u64>) {
        let Some(n) = ticket.take() else { return };
        let word = {
            let mut s = self.shared.state.lock();
            if s.pending != Some(n) {
                return;
            }
            s.pending = None;
            s.waker = None;
            s.job = None;
            s.word.take()
        };
        // SYNC POINT with the Acquire load in `serve`'s withdrawal check: followed by
        // `wake_all`'s fence, so the thread's re-check before its futex sleep sees it, or
        // the wake reaches the sleep.
        self.shared.withdrawn.store(n, Ordering::Release);
        if let Some((link, word)) = word {
            wait::wake_all(word(&link));
        }
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        let Some(thread) = self.thread.get_mut().take() else {
            return;
        };
        let word = {
            let mut s = self.shared.state.lock();
            s.stop = true;
            s.job = None;
            s.pending = None;
            s.waker = None;
            s.word.take()
        };
        // SYNC POINT with the Acquire load in `serve` (as in `cancel`).
        self.shared.withdrawn.store(u64::MAX, Ordering::Release);
        if let Some((link, word)) = word {
            wait::wake_all(word(&link));
        }
        self.shared.work.notify_all();
        // The thread wakes within one sleep slice at worst; a panic in it is not ours to
        // re-raise in a destructor.
        let _ = thread.join();
    }
}

/// The waiter thread: takes each job, waits for it, wakes its task (unless withdrawn).
fn serve(shared: &Shared) {
    wait::lower_timer_slack();
    loop {
        let (n, mut job) = {
            let mut s = shared.state.lock();
            loop {
                if s.stop {
                    return;
                }
                if let Some(job) = s.job.take() {
                    break job;
                }
                shared.work.wait(&mut s);
            }
        };
        // SYNC POINT with the Release stores in `Parker::cancel` and `Parker::drop`.
        let withdrawn = || shared.withdrawn.load(Ordering::Acquire) >= n;
        wait_for(&mut job, &withdrawn);
        drop(job);
        let waker = {
            let mut s = shared.state.lock();
            if s.pending != Some(n) {
                continue;
            }
            s.pending = None;
            s.word = None;
            s.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Waits (no deadline) until the job is ready or withdrawn, idling per the link's wait
/// mode on the job's word: the spin phase already ran in the future, so straight to the
/// futex in block mode.
fn wait_for(job: &mut Job, withdrawn: &dyn Fn() -> bool) {
    let mut waiter = Waiter::with_backoff(
        Timeout::Never,
        Backoff {
            spin: Duration::ZERO,
            yields: 0,
        },
    );
    let (mode, poll_us, unused) = (
        AtomicU32::new(WaitMode::Poll as u32),
        AtomicU32::new(1000),
        AtomicU32::new(0),
    );
    let link = job.link.clone();
    let link = &*link;
    let policy = if job.poll_ms {
        Policy {
            mode: &mode,
            poll_us: &poll_us,
            wait_word: &unused,
            sleep_slice: Duration::from_millis(1),
        }
    } else {
        link.policy((job.word)(link))
    };
    let ready = &mut job.ready;
    while !withdrawn() && !ready(link) {
        waiter.idle(&policy, || ready(link) || withdrawn());
    }
}
