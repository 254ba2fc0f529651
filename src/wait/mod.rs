//! How an idle side waits, always bounded by a deadline: busy spin, sleep for the poll
//! interval, or block on a futex until the peer wakes it.
//!
//! [`WaitMode::Poll`] is the reference design: poll interval 0 spins with a spin-loop hint
//! and no system call (the clock is read every [`SPINS_PER_CLOCK_CHECK`] spins); a non-zero
//! interval sleeps that long per idle round. `nanosleep` rounds up by the thread's timer
//! slack (50 µs by default on Linux), so a 1 µs interval really sleeps 60–75 µs on a stock
//! system; the receive thread lowers its own slack to 1 ns (`PR_SET_TIMERSLACK`), and
//! [`lower_timer_slack`] does the same for a caller's thread.
//!
//! [`WaitMode::Block`] removes the trade-off between idle CPU and latency with an
//! eventcount: the idle side spins for `SPIN_PHASE`, yields `YIELDS` times, then
//! announces itself in its wait word, issues a SeqCst fence, re-checks, and sleeps in
//! `FUTEX_WAIT` (in slices of at most [`SLEEP_SLICE`]). The other side, after publishing or
//! releasing, issues one fence and loads the word, and calls `FUTEX_WAKE` only when
//! someone sleeps ([`wake_sleeper`]). Either the sleeper's re-check sees the new message or
//! the waker sees the announcement: the two fences forbid both missing each other.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::sync::{fence, futex, thread, AtomicU32, Ordering};

mod slices;
use slices::Slices;
pub use slices::MAX_IDLE_SLICE;

/// The longest poll interval, in µs, a waiter honours (1 s); larger values read from the
/// header are clamped to it.
pub const MAX_POLL_US: u32 = 1_000_000;

/// How long a blocking call may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Try once; never wait.
    Immediate,
    /// Wait up to this long.
    After(Duration),
    /// Wait as long as it takes (a closed peer still ends the wait).
    Never,
}

impl From<Duration> for Timeout {
    /// `Duration::ZERO` means [`Timeout::Immediate`]; `Duration::MAX` means
    /// [`Timeout::Never`].
    fn from(d: Duration) -> Self {
        if d.is_zero() {
            Timeout::Immediate
        } else if d == Duration::MAX {
            Timeout::Never
        } else {
            Timeout::After(d)
        }
    }
}

/// How a side waits when it has nothing to do. Per side, stored in both headers, and
/// changeable live for either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitMode {
    /// The reference design: busy-spin when the poll interval is zero, else sleep for the
    /// poll interval per idle round.
    Poll = 0,
    /// Spin briefly, yield, then sleep on a futex until the peer wakes it: near-zero idle
    /// CPU, and no system call while traffic flows.
    #[default]
    Block = 1,
}

impl WaitMode {
    /// Decodes a header word; any value other than 1 reads as `Poll`, which never sleeps
    /// longer than the (clamped) poll interval, so a scribbled word cannot hang a waiter.
    pub(crate) fn from_word(word: u32) -> WaitMode {
        if word == WaitMode::Block as u32 {
            WaitMode::Block
        } else {
            WaitMode::Poll
        }
    }
}

/// Spins between two reads of the clock while spinning.
const SPINS_PER_CLOCK_CHECK: u32 = 64;
/// How long a blocking waiter spins before it yields.
const SPIN_PHASE: Duration = Duration::from_micros(20);
/// How many times a blocking waiter yields before it sleeps on the futex.
const YIELDS: u32 = 8;
/// Default first futex sleep of an idle stretch; the waiter then re-checks (peer state,
/// mode changes), and each later sleep that nothing interrupted lasts twice as long, up to
/// [`MAX_IDLE_SLICE`]. See `ChannelBuilder::sleep_slice`.
pub const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// The shared words that decide how one waiter idles.
pub(crate) struct Policy<'a> {
    /// This side's [`WaitMode`] word.
    pub mode: &'a AtomicU32,
    /// This side's poll interval in µs.
    pub poll_us: &'a AtomicU32,
    /// The word this waiter announces itself in and sleeps on.
    pub wait_word: &'a AtomicU32,
    /// Longest single futex sleep before re-checking.
    pub sleep_slice: Duration,
}

/// How long a blocking waiter spins and how often it yields before it sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Spin this long (measured every [`SPINS_PER_CLOCK_CHECK`] spins) before yielding.
    pub spin: Duration,
    /// Then yield this many times before sleeping on the futex.
    pub yields: u32,
}

impl Backoff {
    /// What every channel uses: [`SPIN_PHASE`], then [`YIELDS`] yields.
    pub(crate) const DEFAULT: Backoff = Backoff {
        spin: SPIN_PHASE,
        yields: YIELDS,
    };
    /// Straight to the futex: no spin, no yield (the loom models, where time does not
    /// pass and each spin would only multiply the interleavings).
    #[cfg(any(loom, test))]
    pub(crate) const NONE: Backoff = Backoff {
        spin: Duration::ZERO,
        yields: 0,
    };

    fn first_phase(self) -> Phase {
        if !self.spin.is_zero() {
            Phase::Spin
        } else if self.yields > 0 {
            Phase::Yield
        } else {
            Phase::Sleep
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spin,
    Yield,
    Sleep,
}

/// One wait's state. The deadline is computed lazily, so a call that finds its ring ready
/// at once never reads the clock. A call makes one `Waiter` and passes it to every phase
/// that may wait (the peer's return, free space, a message), so its timeout bounds the
/// whole call.
pub(crate) struct Waiter {
    timeout: Timeout,
    backoff: Backoff,
    deadline: Option<Instant>,
    spins: u32,
    phase: Phase,
    idle_since: Option<Instant>,
    yields: u32,
    slices: Slices,
}

impl Waiter {
    /// A wait bounded by `timeout`, with the default backoff.
    pub(crate) fn new(timeout: Timeout) -> Waiter {
        Waiter::with_backoff(timeout, Backoff::DEFAULT)
    }

    /// A wait bounded by `timeout` that backs off per `backoff` in block mode.
    pub(crate) fn with_backoff(timeout: Timeout, backoff: Backoff) -> Waiter {
        Waiter {
            timeout,
            backoff,
            deadline: None,
            spins: 0,
            phase: backoff.first_phase(),
            idle_since: None,
            yields: 0,
            slices: Slices::default(),
        }
    }

    /// Starts the backoff over (after work was found), keeping the deadline.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn reset(&mut self) {
        self.phase = self.backoff.first_phase();
        self.idle_since = None;
        self.yields = 0;
        self.slices.reset();
    }

    /// Waits one idle round per the policy's words (read afresh each round, so a change
    /// takes effect at once). `ready` re-checks the condition waited for (including
    /// shutdown) right before a futex sleep. Returns `false` once the deadline has passed.
    #[inline]
    pub(crate) fn idle(&mut self, policy: &Policy<'_>, ready: impl FnOnce() -> bool) -> bool {
        match WaitMode::from_word(policy.mode.load(Ordering::Relaxed)) {
            WaitMode::Poll => {
                self.slices.reset();
                self.idle_poll(policy.poll_us)
            }
            WaitMode::Block => self.idle_block(policy, ready),
        }
    }

    fn idle_poll(&mut self, poll_us: &AtomicU32) -> bool {
        let poll = poll_us.load(Ordering::Relaxed).min(MAX_POLL_US);
        if poll == 0 {
            return self.spin();
        }
        let Some(remaining) = self.remaining() else {
            return false;
        };
        thread::sleep(remaining.min(Duration::from_micros(poll.into())));
        true
    }

    #[inline]
    fn spin(&mut self) -> bool {
        thread::spin_loop();
        self.spins = self.spins.wrapping_add(1);
        if self.spins % SPINS_PER_CLOCK_CHECK != 0 {
            return !matches!(self.timeout, Timeout::Immediate);
        }
        self.remaining().is_some()
    }

    fn idle_block(&mut self, policy: &Policy<'_>, ready: impl FnOnce() -> bool) -> bool {
        let wait_word = policy.wait_word;
        match self.phase {
            Phase::Spin => {
                let more = self.spin();
                if self.spins % SPINS_PER_CLOCK_CHECK == 0 {
                    let since = *self.idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.backoff.spin {
                        self.phase = if self.backoff.yields > 0 {
                            Phase::Yield
                        } else {
                            Phase::Sleep
                        };
                    }
                }
                more
            }
            Phase::Yield => {
                thread::yield_now();
                self.yields += 1;
                if self.yields >= self.backoff.yields {
                    self.phase = Phase::Sleep;
                }
                self.remaining().is_some()
            }
            Phase::Sleep => {
                let Some(remaining) = self.remaining() else {
                    return false;
                };
                wait_word.store(1, Ordering::Relaxed);
                // SYNC POINT with the fence in `wake_block_sleeper` / `wake_all`: either our
                // re-check below sees the peer's publication (or close), or the peer sees
                // our announcement and wakes us.
                fence(Ordering::SeqCst);
                // A mode change stores the mode, then wakes all (`wake_all`'s fence): the
                // same handshake, so either it wakes us or this load sees the new mode.
                let block = || policy.mode.load(Ordering::Relaxed) == WaitMode::Block as u32;
                if !ready() && block() {
                    let slice = self.slices.slice(policy.sleep_slice);
                    let asked = remaining.min(slice);
                    let slept = Instant::now();
                    futex::wait(wait_word, 1, asked);
                    self.slices
                        .after_sleep(asked == slice && slept.elapsed() >= slice);
                } else {
                    self.slices.reset();
                }
                wait_word.store(0, Ordering::Relaxed);
                true
            }
        }
    }

    /// Time left before the deadline, `None` once it has passed. The deadline is fixed at
    /// the first call; one past the clock's range (`Instant + d` would overflow) is no
    /// deadline at all: the wait becomes [`Timeout::Never`].
    fn remaining(&mut self) -> Option<Duration> {
        match self.timeout {
            Timeout::Immediate => None,
            Timeout::Never => Some(Duration::MAX),
            Timeout::After(d) => {
                let now = Instant::now();
                let deadline = match self.deadline {
                    Some(deadline) => deadline,
                    None => match now.checked_add(d) {
                        Some(deadline) => *self.deadline.insert(deadline),
                        None => {
                            self.timeout = Timeout::Never;
                            return Some(Duration::MAX);
                        }
                    },
                };
                deadline
                    .checked_duration_since(now)
                    .filter(|r| !r.is_zero())
            }
        }
    }
}

/// How a wait for the next message ended.
#[derive(Debug)]
pub(crate) enum Received<T> {
    /// A message is there (what `peek` returned).
    Message(T),
    /// The peer is gone and the ring holds nothing more from it.
    Gone(Error),
    /// The deadline passed.
    TimedOut,
    /// `also` asked to stop idling (a stop request, a new link).
    Interrupted,
}

/// The receiving side's wait: idles per `policy` until `peek` finds the next message, the
/// peer is `gone`, `also` asks to stop idling, or the waiter's deadline passes.
///
/// The close protocol lives here: a closing peer commits its last message, then stores
/// its closed flag with Release (`Link`'s close); `gone` loads the flag with Acquire, so a
/// `peek` after seeing it finds every message committed before the close. A dead peer
/// commits nothing after its monitor saw it exit. Either way one more look after `gone`
/// means the flag never hides a message (model-checked in `loom_tests.rs`).
pub(crate) fn next_message<T, E>(
    waiter: &mut Waiter,
    policy: &Policy<'_>,
    mut peek: impl FnMut() -> std::result::Result<Option<T>, E>,
    gone: impl Fn() -> Option<Error>,
    also: impl Fn() -> bool,
) -> std::result::Result<Received<T>, E> {
    loop {
        if let Some(message) = peek()? {
            return Ok(Received::Message(message));
        }
        if let Some(why) = gone() {
            // SYNC POINT: after the Acquire load of the closed flag in `gone`, with the
            // Release store of the flag after the peer's last commit.
            return Ok(match peek()? {
                Some(message) => Received::Message(message),
                None => Received::Gone(why),
            });
        }
        let more = waiter.idle(policy, || {
            // A corrupt ring is "something to look at": the next `peek` reports it.
            !matches!(peek(), Ok(None)) || gone().is_some() || also()
        });
        if !more {
            return Ok(Received::TimedOut);
        }
        if also() {
            return Ok(Received::Interrupted);
        }
    }
}

/// Called after publishing a message (or releasing slots): wakes the peer if it sleeps on
/// `wait_word`. When the peer is not in Block mode this is one Relaxed load; otherwise one
/// fence and one load, and a system call only when the peer really sleeps.
///
/// A peer that switches to Block mode just as we publish may be missed once; it then
/// wakes after at most [`SLEEP_SLICE`] (mode changes also wake it, see [`wake_all`]).
#[inline]
pub(crate) fn wake_sleeper(peer_mode: &AtomicU32, wait_word: &AtomicU32) {
    if peer_mode.load(Ordering::Relaxed) != WaitMode::Block as u32 {
        return;
    }
    wake_block_sleeper(wait_word);
}

/// [`wake_sleeper`] for a peer in Block mode, out of line: a send to a polling peer then
/// calls nothing.
#[inline(never)]
fn wake_block_sleeper(wait_word: &AtomicU32) {
    // SYNC POINT with the fence in `Waiter::idle_block` (see there).
    fence(Ordering::SeqCst);
    if wait_word.load(Ordering::Relaxed) != 0 {
        wait_word.store(0, Ordering::Relaxed);
        futex::wake(wait_word, i32::MAX);
    }
}

/// Wakes every sleeper on `wait_word` unconditionally (shutdown, stop, mode changes). The
/// caller stores the state change (closed flag, stop flag, mode) before calling.
pub(crate) fn wake_all(wait_word: &AtomicU32) {
    // SYNC POINT with the fence in `Waiter::idle_block`: a sleeper that announced itself
    // before this fence is woken; one that announces after it sees the state change in
    // its re-check.
    fence(Ordering::SeqCst);
    wait_word.store(0, Ordering::Relaxed);
    futex::wake(wait_word, i32::MAX);
}

/// Lowers the calling thread's timer slack to 1 ns, so sleeps of a few microseconds last
/// about as long as asked instead of the default 50 µs more. Affects this thread only.
pub fn lower_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches only the calling
    // thread's scheduling attributes.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn words(mode: WaitMode, poll_us: u32) -> [AtomicU32; 3] {
        [
            AtomicU32::new(mode as u32),
            AtomicU32::new(poll_us),
            AtomicU32::new(0),
        ]
    }

    /// A long sleep slice, so a lost wake-up shows as a hang instead of hiding behind
    /// the periodic re-check.
    fn policy(w: &[AtomicU32; 3]) -> Policy<'_> {
        Policy {
            mode: &w[0],
            poll_us: &w[1],
            wait_word: &w[2],
            sleep_slice: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_mode_switched_away_from_block_just_before_the_sleep_is_not_slept_through() {
        // The switch lands after the waiter chose Block, its wake-up (`wake_all`) before
        // the waiter announced itself, so it woke nobody (simulated: only the store,
        // seen by the re-check): the waiter must not sleep a whole (60 s) slice.
        let w = words(WaitMode::Block, 0);
        let mut waiter =
            Waiter::with_backoff(Timeout::After(Duration::from_secs(30)), Backoff::NONE);
        let start = Instant::now();
        assert!(waiter.idle(&policy(&w), || {
            w[0].store(WaitMode::Poll as u32, Ordering::Relaxed);
            false
        }));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "slept through the switch"
        );
    }

    #[test]
    fn immediate_never_waits() {
        for (mode, poll) in [
            (WaitMode::Poll, 0),
            (WaitMode::Poll, 100),
            (WaitMode::Block, 0),
        ] {
            let w = words(mode, poll);
            assert!(!Waiter::new(Timeout::Immediate).idle(&policy(&w), || false));
        }
    }

    #[test]
    fn finite_timeout_expires_in_every_mode() {
        for (mode, poll) in [
            (WaitMode::Poll, 0),
            (WaitMode::Poll, 200),
            (WaitMode::Block, 0),
        ] {
            let w = words(mode, poll);
            let mut waiter = Waiter::new(Timeout::After(Duration::from_millis(5)));
            let start = Instant::now();
            let mut rounds = 0u64;
            while waiter.idle(&policy(&w), || false) {
                rounds += 1;
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "deadline never passed"
                );
            }
            assert!(start.elapsed() >= Duration::from_millis(5));
            assert!(rounds > 0);
        }
    }

    #[test]
    fn a_deadline_past_the_clock_range_is_no_deadline() {
        for d in [
            Duration::MAX - Duration::from_nanos(1),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            for timeout in [Timeout::from(d), Timeout::After(d)] {
                for (mode, poll) in [
                    (WaitMode::Poll, 0),
                    (WaitMode::Poll, 1),
                    (WaitMode::Block, 0),
                ] {
                    let w = words(mode, poll);
                    let mut waiter = Waiter::with_backoff(timeout, Backoff::NONE);
                    // Enough rounds to read the clock; a ready condition ends the sleeps.
                    for _ in 0..2 * SPINS_PER_CLOCK_CHECK {
                        assert!(waiter.idle(&policy(&w), || true), "{timeout:?} expired");
                    }
                }
            }
        }
    }

    #[test]
    fn block_mode_sleeps_until_woken() {
        let w = Arc::new(words(WaitMode::Block, 0));
        let flag = Arc::new(AtomicU32::new(0));
        let sleeper = {
            let (w, flag) = (w.clone(), flag.clone());
            std::thread::spawn(move || {
                let mut waiter = Waiter::new(Timeout::After(Duration::from_secs(60)));
                let start = Instant::now();
                while flag.load(Ordering::Acquire) == 0 {
                    assert!(waiter.idle(&policy(&w), || flag.load(Ordering::Acquire) != 0));
                }
                start.elapsed()
            })
        };
        // Wait (bounded) until the sleeper has announced itself, then wake it.
        let start = Instant::now();
        while w[2].load(Ordering::Relaxed) == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "never announced");
            thread::yield_now();
        }
        flag.store(1, Ordering::Release);
        wake_sleeper(&AtomicU32::new(WaitMode::Block as u32), &w[2]);
        assert!(
            sleeper.join().unwrap() < Duration::from_secs(10),
            "the wake was lost"
        );
    }

    #[test]
    fn without_backoff_the_first_idle_round_sleeps_on_the_futex() {
        let w = words(WaitMode::Block, 0);
        let mut waiter =
            Waiter::with_backoff(Timeout::After(Duration::from_millis(30)), Backoff::NONE);
        let start = Instant::now();
        // Not ready and nobody wakes us: one round is one futex sleep until the deadline.
        assert!(waiter.idle(&policy(&w), || false));
        assert!(start.elapsed() >= Duration::from_millis(29));
        assert_eq!(
            w[2].load(Ordering::Relaxed),
            0,
            "the sleeper clears its word"
        );
        // A ready condition skips the sleep.
        let start = Instant::now();
        let mut waiter = Waiter::with_backoff(Timeout::Never, Backoff::NONE);
        assert!(waiter.idle(&policy(&w), || true));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn wake_sleeper_is_a_no_op_for_a_polling_peer() {
        let word = AtomicU32::new(1);
        wake_sleeper(&AtomicU32::new(WaitMode::Poll as u32), &word);
        assert_eq!(word.load(Ordering::Relaxed), 1);
        wake_sleeper(&AtomicU32::new(WaitMode::Block as u32), &word);
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn duration_conversions_and_mode_words() {
        assert_eq!(Timeout::from(Duration::ZERO), Timeout::Immediate);
        assert_eq!(Timeout::from(Duration::MAX), Timeout::Never);
        assert_eq!(
            Timeout::from(Duration::from_millis(1)),
            Timeout::After(Duration::from_millis(1))
        );
        assert_eq!(WaitMode::from_word(1), WaitMode::Block);
        assert_eq!(WaitMode::from_word(0), WaitMode::Poll);
        assert_eq!(WaitMode::from_word(77), WaitMode::Poll);
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
