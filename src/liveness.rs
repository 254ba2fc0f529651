//! Peer liveness: who a process is (pid, start time, pid namespace), and a monitor thread
//! that keeps this side's heartbeat going and notices when the peer process is gone.
//!
//! In the same pid namespace the monitor holds a `pidfd` on the peer: it names that exact
//! process (a recycled pid cannot fool it; the start time recorded in the header is checked
//! when the pidfd is opened) and becomes readable the moment the process exits, zombie or
//! not, so death is seen within microseconds. Across pid namespaces (containers sharing
//! `/dev/shm`) pids mean nothing, and the peer's heartbeat counter is used instead: no
//! progress for the threshold means dead.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::layout::ProducerBlock;
use crate::ring::Region;
use crate::segment::Segment;
use crate::sync::{AtomicBool, AtomicU64, Ordering};

/// Default time after which a silent peer in another pid namespace counts as dead; also
/// sets how often the monitor runs (a quarter of it).
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_millis(100);

/// How often the monitor runs while it watches a live peer through a pidfd (when that is
/// longer than its usual period). The pidfd wakes it the moment the peer exits, and such a
/// peer shares our pid namespace, so it watches us the same way and never reads our
/// heartbeat; a round then only notices a clean close (for the `PeerClosed` event and side
/// B's reconnection; calls see the closed flag themselves) and a truncated segment.
pub(crate) const WATCHED_PERIOD: Duration = Duration::from_millis(250);

/// How long a monitor started from now on waits before its first heartbeat, in µs: a test
/// seam (see [`delay_first_heartbeat`]), 0 otherwise.
static FIRST_BEAT_DELAY_US: AtomicU64 = AtomicU64::new(0);

/// Not API (a test seam): every liveness monitor started afterwards in this process bumps
/// its heartbeat for the first time only `delay` after it starts, as a monitor thread that
/// is scheduled late would. The tests use it to make a peer's first heartbeat late
/// deterministically.
#[doc(hidden)]
pub fn delay_first_heartbeat(delay: Duration) {
    let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
    // Relaxed: a setting read once by each monitor started later; nothing depends on it.
    FIRST_BEAT_DELAY_US.store(us, Ordering::Relaxed);
}

/// Who a process is, as recorded in the producer block of the ring it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// Inode of `/proc/<pid>/ns/pid`.
    pub pid_ns: u64,
}

impl ProcessIdentity {
    /// This process.
    pub(crate) fn current() -> ProcessIdentity {
        static ME: OnceLock<ProcessIdentity> = OnceLock::new();
        *ME.get_or_init(|| {
            let pid = std::process::id();
            ProcessIdentity {
                pid,
                // /proc/self, not /proc/<pid>: our pid means another process where /proc
                // belongs to an ancestor pid namespace (`unshare --pid` without a new /proc).
                start_time: start_time_in("/proc/self/stat").unwrap_or(0),
                pid_ns: std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino()),
            }
        })
    }

    /// Publishes this identity in a producer block (the side's outgoing ring): one first
    /// heartbeat, then `start_time` and `pid_ns`, then `pid` with Release, so a watcher
    /// that sees the pid sees the rest and a heartbeat already begun.
    pub(crate) fn record(&self, block: &ProducerBlock) {
        block.heartbeat.fetch_add(1, Ordering::Relaxed);
        block.start_time.store(self.start_time, Ordering::Relaxed);
        block.pid_ns.store(self.pid_ns, Ordering::Relaxed);
        // SYNC POINT with the Acquire load of `pid` in `ProcessIdentity::read`.
        block.pid.store(self.pid, Ordering::Release);
    }

    /// The identity in a producer block (pid 0: nobody attached yet). A read during a
    /// rewrite by a new process may mix both; the monitor takes that for a new peer and
    /// reads again next round.
    fn read(block: &ProducerBlock) -> ProcessIdentity {
        // SYNC POINT with the Release store of `pid` in `ProcessIdentity::record`: the
        // fields and the first heartbeat written before it are visible.
        let pid = block.pid.load(Ordering::Acquire);
        ProcessIdentity {
            pid,
            start_time: block.start_time.load(Ordering::Relaxed),
            pid_ns: block.pid_ns.load(Ordering::Relaxed),
        }
    }
}

/// Start time of process `pid` in clock ticks since boot, if it exists.
fn start_time_of(pid: u32) -> Option<u64> {
    start_time_in(&format!("/proc/{pid}/stat"))
}

/// The start time in a `/proc/*/stat` file.
fn start_time_in(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What the monitor concluded about the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// No peer has attached yet (side A before B opens).
    Absent,
    Alive,
    Dead,
}

/// Tracks one peer across monitor rounds.
struct PeerWatch {
    dead_after: Duration,
    /// A pidfd on the peer process, when it shares our pid namespace.
    pidfd: Option<(ProcessIdentity, OwnedFd)>,
    /// A process the pidfd showed exiting.
    exited: Option<ProcessIdentity>,
    /// Across namespaces: the peer the no-progress clock runs for, its heartbeat as last
    /// seen, and when that value was first seen. The clock starts when a peer first
    /// appears (attaches), not when the watcher starts.
    beats: Option<(ProcessIdentity, u64, Instant)>,
}

impl PeerWatch {
    fn new(dead_after: Duration) -> PeerWatch {
        PeerWatch {
            dead_after,
            pidfd: None,
            exited: None,
            beats: None,
        }
    }

    /// Sleeps up to `period`, waking early if the watched process exits (remembered for
    /// the next [`PeerWatch::check`]) or `stop_fd` is signalled.
    fn wait(&mut self, period: Duration, stop_fd: &OwnedFd) {
        let mut fds = [
            libc::pollfd {
                fd: stop_fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.pidfd.as_ref().map_or(-1, |(_, fd)| fd.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is an array of two valid pollfds on our stack (a negative fd is
        // ignored by poll), both descriptors stay open for the call, and the timeout is a
        // small positive number of milliseconds.
        let rc = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                2,
                period.as_millis().clamp(1, 60_000) as libc::c_int,
            )
        };
        if rc > 0 && fds[1].revents & libc::POLLIN != 0 {
            self.exited = self.pidfd.take().map(|(id, _)| id);
        }
    }

    fn check(&mut self, peer_block: &ProducerBlock, me: &ProcessIdentity) -> Verdict {
        let peer = ProcessIdentity::read(peer_block);
        if peer.pid == 0 {
            return Verdict::Absent;
        }
        if peer.pid_ns == me.pid_ns && peer.pid_ns != 0 {
            return self.check_pid(peer);
        }
        self.pidfd = None;
        let heartbeat = peer_block.heartbeat.load(Ordering::Relaxed);
        match &mut self.beats {
            Some((id, last, since)) if *id == peer => {
                if heartbeat != *last {
                    (*last, *since) = (heartbeat, Instant::now());
                    Verdict::Alive
                } else if since.elapsed() > self.dead_after {
                    Verdict::Dead
                } else {
                    Verdict::Alive
                }
            }
            _ => {
                // A peer seen for the first time: it has just attached.
                self.beats = Some((peer, heartbeat, Instant::now()));
                Verdict::Alive
            }
        }
    }

    fn check_pid(&mut self, peer: ProcessIdentity) -> Verdict {
        if self.exited == Some(peer) {
            return Verdict::Dead;
        }
        if self.pidfd.as_ref().is_some_and(|(id, _)| *id == peer) {
            return Verdict::Alive; // exits are reported by `wait`
        }
        // A new peer (or the first): take a pidfd, then confirm it is the recorded process
        // and not a later one that reused the pid.
        // SAFETY: pidfd_open takes a pid and flags (0) and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, peer.pid as libc::pid_t, 0) };
        if fd < 0 {
            self.pidfd = None;
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                self.exited = Some(peer); // no such process
                return Verdict::Dead;
            }
            // No pidfd here (a kernel before 5.3, a seccomp filter, valgrind, no fds left):
            // poll the process table instead, once per period.
            return match start_time_of(peer.pid) {
                Some(t) if peer.start_time == 0 || t == peer.start_time => Verdict::Alive,
                _ => {
                    self.exited = Some(peer);
                    Verdict::Dead
                }
            };
        }
        // SAFETY: `fd` is a fresh descriptor we own exclusively.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        if start_time_of(peer.pid).is_some_and(|t| peer.start_time != 0 && t != peer.start_time) {
            self.exited = Some(peer); // the pid now belongs to another process
            return Verdict::Dead;
        }
        self.pidfd = Some((peer, fd));
        Verdict::Alive
    }
}

/// The words the monitor reads and writes.
pub(crate) struct Watched {
    /// This side's outgoing ring: its producer block holds our heartbeat.
    pub own: Region,
    /// The peer's outgoing ring: its producer block holds the peer's identity/heartbeat.
    pub peer: Region,
    /// The a2b ring, whose control block holds the copy of the closed flags every reader
    /// uses (the b2a copy is only a mirror).
    pub control: Region,
    /// Which closed flag is the peer's.
    pub peer_index: usize,
    pub dead_after: Duration,
    /// The peer's outgoing segment, on which it holds its owner lock while it lives: a
    /// peer is declared dead only once the kernel has dropped that lock, so no scribbled
    /// identity word can make a live peer "dead".
    pub peer_owner: Option<Arc<Segment>>,
    /// Both segments, checked each round for truncation (`fstat`), so a side asleep on a
    /// futex learns of it within a period and a sleep slice.
    pub segments: Vec<Arc<Segment>>,
}

/// A change in the peer's state, reported once per change by the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerChange {
    /// The peer's process died without closing.
    Died,
    /// The peer closed cleanly.
    Closed,
    /// A live peer is attached again after `Died` or `Closed` (a new process).
    Back,
}

/// Keeps this side's heartbeat going and reports changes of the peer's state through
/// `on_change` (from the monitor thread). Stopped and joined on drop.
pub(crate) struct Monitor {
    stop: Arc<AtomicBool>,
    /// An eventfd that interrupts the monitor's `poll` when it must stop.
    stop_fd: Arc<OwnedFd>,
    handle: Option<JoinHandle<()>>,
}

impl Monitor {
    pub(crate) fn spawn(
        watched: Watched,
        on_change: impl FnMut(PeerChange) + Send + 'static,
    ) -> std::io::Result<Monitor> {
        // SAFETY: eventfd takes an initial value and flags and returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own exclusively.
        let stop_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let stop = Arc::new(AtomicBool::new(false));
        let handle = std::thread::Builder::new()
            .name("shm-liveness".into())
            .spawn({
                let stop = stop.clone();
                let stop_fd = stop_fd.clone();
                move || run(watched, &stop, &stop_fd, on_change)
            })?;
        Ok(Monitor {
            stop,
            stop_fd,
            handle: Some(handle),
        })
    }
}

fn run(
    watched: Watched,
    stop: &AtomicBool,
    stop_fd: &OwnedFd,
    mut on_change: impl FnMut(PeerChange),
) {
    let me = ProcessIdentity::current();
    let period = (watched.dead_after / 4).max(Duration::from_millis(1));
    let mut watch = PeerWatch::new(watched.dead_after);
    let own = &watched.own.header().producer;
    let peer = &watched.peer.header().producer;
    let closed = &watched.control.header().control.closed[watched.peer_index];
    let mut reported: Option<PeerChange> = None;
    // Relaxed: see `delay_first_heartbeat`.
    let first_beat = Duration::from_micros(FIRST_BEAT_DELAY_US.load(Ordering::Relaxed));
    let started = Instant::now();
    let mut truncated = false;
    loop {
        // Relaxed: the flag only asks the loop to end.
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if !truncated {
            truncated = check_truncation(&watched);
        }
        if first_beat.is_zero() || started.elapsed() >= first_beat {
            own.heartbeat.fetch_add(1, Ordering::Relaxed);
        }
        // Check before waiting, so the pidfd is open from the first round on.
        // SYNC POINT with the peer's Release store of its closed flag (`Link`'s
        // `set_control_word`); the same copy the data path reads (`Link::peer_closed`).
        let mut verdict = None;
        let now = if closed.load(Ordering::Acquire) != 0 {
            Some(PeerChange::Closed)
        } else {
            match *verdict.insert(watch.check(peer, &me)) {
                Verdict::Dead if peer_lock_held(&watched) => None,
                Verdict::Dead => Some(PeerChange::Died),
                // An attached peer whose owner lock is free has exited (the kernel drops
                // the lock with its last descriptor) or is closing: a closing side stores
                // its closed flag before it unlocks, so a second look at the flag tells
                // the two apart. This sees a death within one round even where only the
                // heartbeat would (across pid namespaces: a whole threshold).
                Verdict::Alive if peer_lock_free(&watched) => {
                    // SYNC POINT with the peer's Release store of its closed flag, made
                    // before its unlock (`Link::close`), which our lock test observed.
                    if closed.load(Ordering::Acquire) != 0 {
                        Some(PeerChange::Closed)
                    } else {
                        Some(PeerChange::Died)
                    }
                }
                Verdict::Alive => None,
                // Side A created the segments B attached to, so an A with no identity
                // yet (it died between marking them ready and publishing it, or a word
                // was scribbled) is still judged: by its owner lock, which the kernel
                // drops when it dies. A B with no identity has simply not attached.
                Verdict::Absent if watched.peer_index == 0 && peer_lock_free(&watched) => {
                    Some(PeerChange::Died)
                }
                Verdict::Absent => reported, // nothing attached: no change
            }
        };
        match (reported, now) {
            (old, Some(change)) if old != Some(change) => on_change(change),
            (Some(_), None) => on_change(PeerChange::Back),
            _ => {}
        }
        reported = now;
        // A live peer whose exit the pidfd reports at once: rounds can be rarer.
        let by_pidfd = verdict == Some(Verdict::Alive) && watch.pidfd.is_some() && !truncated;
        watch.wait(if by_pidfd { period.max(WATCHED_PERIOD) } else { period }, stop_fd);
    }
}

/// Whether a segment was truncated under its mapping. When the monitor is the first to see
/// it (`fstat`), it marks the segment, wakes every sleeper on the still-mapped wait words
/// (they re-check and find the mark), and only then replaces the mapping by zero pages.
fn check_truncation(watched: &Watched) -> bool {
    let shrunk: Vec<&Arc<Segment>> = watched
        .segments
        .iter()
        .filter(|s| !s.marked() && s.shrunk())
        .collect();
    for segment in &shrunk {
        segment.mark_truncated();
    }
    if !shrunk.is_empty() {
        for region in [&watched.own, &watched.peer] {
            crate::wait::wake_all(&region.header().producer.wait);
            crate::wait::wake_all(&region.header().consumer.wait);
        }
        for segment in &shrunk {
            segment.zero_fill();
        }
    }
    watched.segments.iter().any(|s| s.marked())
}

/// Whether the peer's owner lock is known to be free (no process holds it): `false` when
/// there is no lock to test.
fn peer_lock_free(watched: &Watched) -> bool {
    watched
        .peer_owner
        .as_ref()
        .is_some_and(|segment| !segment.object().lock_held())
}

/// Whether the peer still holds its owner lock (it is alive, whatever its words say).
fn peer_lock_held(watched: &Watched) -> bool {
    watched
        .peer_owner
        .as_ref()
        .is_some_and(|segment| segment.object().lock_held())
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our own eventfd; a failure (counter
        // overflow, impossible here) would only delay the stop to the next period.
        unsafe { libc::write(self.stop_fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(handle) = self.handle.take() {
            // The last handle to a channel can be dropped by the monitor's own callback
            // (reconnection); a thread cannot join itself, and it is ending anyway.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_of_this_process_is_readable() {
        let me = ProcessIdentity::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_time > 0 && me.pid_ns > 0);
        assert_eq!(start_time_of(me.pid), Some(me.start_time));
        assert_eq!(start_time_of(u32::MAX), None);
    }

    fn block() -> Region {
        Region::heap(8, 2).unwrap()
    }

    #[test]
    fn across_pid_namespaces_a_stalled_heartbeat_means_dead() {
        let me = ProcessIdentity::current();
        let region = block();
        let peer = &region.header().producer;
        ProcessIdentity {
            pid: 12345,
            start_time: 1,
            pid_ns: me.pid_ns + 1, // another namespace: the pid means nothing here
        }
        .record(peer);
        let mut watch = PeerWatch::new(Duration::from_millis(30));
        let start = Instant::now();
        // While the heartbeat moves, the peer is alive however long it takes.
        while start.elapsed() < Duration::from_millis(80) {
            peer.heartbeat.fetch_add(1, Ordering::Relaxed);
            assert_eq!(watch.check(peer, &me), Verdict::Alive);
            std::thread::sleep(Duration::from_millis(5));
        }
        // Once it stops, the peer is dead after the threshold, and not before.
        peer.heartbeat.fetch_add(1, Ordering::Relaxed);
        assert_eq!(watch.check(peer, &me), Verdict::Alive); // last progress: now
        let stalled = Instant::now();
        while watch.check(peer, &me) == Verdict::Alive {
            assert!(
                stalled.elapsed() < Duration::from_secs(5),
                "never declared dead"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(stalled.elapsed() >= Duration::from_millis(29));
    }

    #[test]
    fn the_no_progress_clock_starts_when_the_peer_appears_not_with_the_watcher() {
        let me = ProcessIdentity::current();
        let region = block();
        let peer = &region.header().producer;
        let dead_after = Duration::from_millis(30);
        let mut watch = PeerWatch::new(dead_after);
        assert_eq!(watch.check(peer, &me), Verdict::Absent);
        // The watcher is older than the threshold when a peer in another namespace appears,
        // its heartbeat word not moved yet (written here field by field, without a beat).
        std::thread::sleep(dead_after + Duration::from_millis(10));
        peer.pid_ns.store(me.pid_ns + 1, Ordering::Relaxed);
        peer.start_time.store(1, Ordering::Relaxed);
        peer.pid.store(12345, Ordering::Release);
        let appeared = Instant::now();
        assert_eq!(watch.check(peer, &me), Verdict::Alive, "dead at first sight");
        while watch.check(peer, &me) == Verdict::Alive {
            assert!(
                appeared.elapsed() < Duration::from_secs(5),
                "never declared dead"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(appeared.elapsed() >= dead_after);
        // Another process in that namespace attaching later restarts the clock.
        peer.pid.store(12346, Ordering::Release);
        assert_eq!(watch.check(peer, &me), Verdict::Alive);
    }

    #[test]
    fn an_identity_is_published_after_a_first_heartbeat() {
        let region = block();
        let block = &region.header().producer;
        ProcessIdentity::current().record(block);
        assert_eq!(block.heartbeat.load(Ordering::Relaxed), 1);
        assert_eq!(ProcessIdentity::read(block), ProcessIdentity::current());
    }

    #[test]
    fn a_recycled_pid_is_not_taken_for_the_peer() {
        let me = ProcessIdentity::current();
        let region = block();
        let peer = &region.header().producer;
        let mut watch = PeerWatch::new(DEFAULT_DEAD_AFTER);
        assert_eq!(watch.check(peer, &me), Verdict::Absent);
        // Our own pid, but with another start time: a later process that reused the pid.
        ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        }
        .record(peer);
        assert_eq!(watch.check(peer, &me), Verdict::Dead);
        // The real identity is alive.
        me.record(peer);
        let mut watch = PeerWatch::new(DEFAULT_DEAD_AFTER);
        assert_eq!(watch.check(peer, &me), Verdict::Alive);
    }
}
