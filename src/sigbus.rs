//! The SIGBUS guard: a process that truncates a segment under our mapping must not kill us.
//!
//! Touching a page of a `MAP_SHARED` mapping that lies past the end of its (shrunk) object
//! raises SIGBUS. libwayland-server's answer for `wl_shm` buffers is used here: a SIGBUS
//! handler that, when the faulting address lies inside a registered mapping, maps
//! anonymous zero pages over the whole mapping (`MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS`),
//! marks it truncated and returns, so the faulting access completes (reading zeros, or
//! writing into private memory). The transport then reports
//! [`Corruption::Truncated`](crate::Corruption::Truncated) where it checks the mark. A
//! fault anywhere else goes to the handler installed before ours (its function is called),
//! or, when that was the default action or "ignore", the previous action is restored and
//! the signal re-raised, which kills the process as it would have without us.
//!
//! The registry is a fixed array of slots, each a sequence word (generation and state),
//! the range and the truncation mark, all atomics: the handler reads it without locks or
//! allocation (async-signal-safe), and registration and removal from any thread claim and
//! free slots with a compare-and-swap and plain stores, never freeing memory. A range is
//! unregistered before it is unmapped; a thread that faults inside a registered range is
//! using it (it holds the segment), so the range cannot be unmapped and reused while the
//! handler runs.
//!
//! Limits: the handler is process-wide and installed once, the first time a channel with
//! the guard on is created or opened. A SIGBUS handler the program installs later replaces
//! ours (then truncation kills the process again, unless that handler calls ours). When
//! every slot is taken ([`SLOTS`] mappings at once), further mappings are not guarded.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::Once;

use crate::sync::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

/// How many mappings can be guarded at once (two per channel).
pub(crate) const SLOTS: usize = 1024;

const FREE: u64 = 0;
const CLAIMED: u64 = 1;
const ACTIVE: u64 = 2;
const STATE: u64 = 3;
/// One generation step of a slot's sequence word (above the two state bits).
const GENERATION: u64 = 4;

struct Slot {
    /// Generation (high bits) and state (`FREE`, `CLAIMED`, `ACTIVE`).
    seq: AtomicU64,
    start: AtomicU64,
    len: AtomicU64,
    truncated: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)] // the array initialiser's element
const EMPTY: Slot = Slot {
    seq: AtomicU64::new(FREE),
    start: AtomicU64::new(0),
    len: AtomicU64::new(0),
    truncated: AtomicU32::new(0),
};

static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];

/// Truncations seen in this process (any mapping): one Relaxed load tells the data path
/// whether to look at its own segments' marks.
static TRUNCATIONS: AtomicU32 = AtomicU32::new(0);

/// The SIGBUS action in place before ours, written once before ours is installed.
struct Previous(UnsafeCell<MaybeUninit<libc::sigaction>>);
// SAFETY: written only inside `INSTALL.call_once`, before `PREVIOUS_SET` is stored
// (Release); read only after `PREVIOUS_SET` is loaded true (Acquire), never written again.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new(MaybeUninit::uninit()));
static PREVIOUS_SET: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the process-wide SIGBUS handler, once. Returns whether it is installed.
pub(crate) fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a null new action only reads the current one into
        // `PREVIOUS`, which nothing else touches until `PREVIOUS_SET` is true.
        let read = unsafe {
            libc::sigaction(
                libc::SIGBUS,
                std::ptr::null(),
                (*PREVIOUS.0.get()).as_mut_ptr(),
            )
        };
        if read != 0 {
            return;
        }
        // SYNC POINT with the Acquire load in `chain`: `PREVIOUS` is written before.
        PREVIOUS_SET.store(true, Ordering::Release);
        // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct; the
        // mask is emptied with `sigemptyset` and the handler has the SA_SIGINFO signature.
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) == 0
        };
        // Relaxed: information only (`installed`).
        INSTALLED.store(installed, Ordering::Relaxed);
    });
    // Relaxed: `call_once` above ordered the store before this load.
    INSTALLED.load(Ordering::Relaxed)
}

/// Registers `[start, start + len)`; the slot's number, or `None` when all are taken.
pub(crate) fn register(start: *mut u8, len: usize) -> Option<usize> {
    for (i, slot) in REGISTRY.iter().enumerate() {
        let seq = slot.seq.load(Ordering::Relaxed);
        if seq & STATE != FREE {
            continue;
        }
        // Relaxed CAS: the fence below orders it before the range's stores (seqlock writer).
        if slot
            .seq
            .compare_exchange(seq, seq | CLAIMED, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        // SYNC POINT with the Acquire fence in `find`: a handler that reads the new range
        // sees CLAIMED (or a later generation) in its second load, and skips it.
        fence(Ordering::Release);
        slot.start.store(start as u64, Ordering::Relaxed);
        slot.len.store(len as u64, Ordering::Relaxed);
        slot.truncated.store(0, Ordering::Relaxed);
        // SYNC POINT with the Acquire load of `seq` in `find`: the range is complete.
        slot.seq.store((seq & !STATE) | ACTIVE, Ordering::Release);
        return Some(i);
    }
    None
}

/// Frees slot `i` (before its range is unmapped).
pub(crate) fn unregister(i: usize) {
    let slot = &REGISTRY[i];
    let seq = slot.seq.load(Ordering::Relaxed);
    // SYNC POINT with the Acquire fence in `find`: a handler that read this range before
    // sees a new generation in its second load.
    slot.seq
        .store((seq & !STATE) + GENERATION, Ordering::Release);
}

/// Whether slot `i`'s mapping was found truncated.
pub(crate) fn is_truncated(i: usize) -> bool {
    // SYNC POINT with the Release store in `mark`: the zero pages are in place.
    REGISTRY[i].truncated.load(Ordering::Acquire) != 0
}

/// Whether any mapping of this process was ever found truncated (one Relaxed load).
#[inline]
pub(crate) fn any_truncated() -> bool {
    // Relaxed: a hint; the caller then reads the mark with Acquire (`is_truncated`).
    TRUNCATIONS.load(Ordering::Relaxed) != 0
}

/// Marks slot `i`'s mapping truncated (without touching the mapping). Async-signal-safe.
pub(crate) fn mark(i: usize) {
    // SYNC POINT with the Acquire load in `is_truncated`.
    if REGISTRY[i].truncated.swap(1, Ordering::Release) == 0 {
        // Relaxed: a counter read as a hint (`any_truncated`).
        TRUNCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Maps zero pages over `[start, start + len)`, keeping the address. Async-signal-safe.
///
/// # Safety
/// The range is one of our registered mappings, in use by the caller (not unmapped
/// meanwhile); its old content is discarded for every thread of the process.
pub(crate) unsafe fn zero_fill(start: *mut u8, len: usize) -> bool {
    // SAFETY: per the contract the range is our own live mapping; MAP_FIXED replaces
    // exactly its pages with private zero pages, at the same address and protection.
    let ptr = unsafe {
        libc::mmap(
            start.cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    ptr != libc::MAP_FAILED
}

/// The registered slot whose range holds `addr`, with its range. Async-signal-safe.
fn find(addr: u64) -> Option<(usize, u64, u64)> {
    for (i, slot) in REGISTRY.iter().enumerate() {
        // SYNC POINT with the Release store of ACTIVE in `register`.
        let seq = slot.seq.load(Ordering::Acquire);
        if seq & STATE != ACTIVE {
            continue;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        // SYNC POINT with the Release fence in `register` and the Release store in
        // `unregister` (seqlock reader): a changed slot shows a changed `seq` below.
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != seq {
            continue;
        }
        if addr >= start && addr - start < len {
            return Some((i, start, len));
        }
    }
    None
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as u64;
    if let Some((i, start, len)) = find(addr) {
        // SAFETY: the range is registered, so mapped and in use by the faulting thread.
        if unsafe { zero_fill(start as *mut u8, len as usize) } {
            mark(i);
            return; // the faulting access runs again, on zero pages
        }
    }
    chain(sig, info, ctx);
}

/// Hands a SIGBUS that is not ours to the previous action. Async-signal-safe.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SYNC POINT with the Release store in `install`.
    if !PREVIOUS_SET.load(Ordering::Acquire) {
        return reraise(std::ptr::null());
    }
    // SAFETY: written before `PREVIOUS_SET` was set and never again.
    let previous = unsafe { (*PREVIOUS.0.get()).assume_init_ref() };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return reraise(previous);
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, `sa_sigaction` is a handler of this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO, `sa_sigaction` holds an `sa_handler`.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// Restores `previous` (or the default action) and raises SIGBUS again: with the default
/// action the process dies of it, as it would have without the guard.
fn reraise(previous: *const libc::sigaction) {
    // SAFETY: an all-zero `sigaction` is SIG_DFL with no flags; `previous` is null or the
    // saved action; sigaction and raise are async-signal-safe.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        let action = if previous.is_null() { &default } else { &*previous };
        libc::sigaction(libc::SIGBUS, action, std::ptr::null_mut());
        libc::raise(libc::SIGBUS);
    }
}
