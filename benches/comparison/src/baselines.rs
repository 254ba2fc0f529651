//! The baselines of the comparison, written here without any of the library's transport
//! code (docs/BENCHMARKS.md): the raw shared-memory floor (two atomics bouncing), a raw futex
//! ping-pong, a minimal SPSC ring, Unix-socket and pipe ping-pongs, memcpy.

use std::ffi::CString;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A plain shared mapping (shm_open + mmap), unlinked by the creator on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
    name: Option<CString>,
}

impl Mapping {
    /// Creates (or truncates) the object `/name` of `len` bytes and maps it.
    pub fn create(name: &str, len: usize) -> std::io::Result<Mapping> {
        Self::map(name, len, true)
    }

    /// Maps the existing object `/name`, `len` bytes of it.
    pub fn open(name: &str, len: usize) -> std::io::Result<Mapping> {
        Self::map(name, len, false)
    }

    fn map(name: &str, len: usize, create: bool) -> std::io::Result<Mapping> {
        let c_name = CString::new(format!("/{name}")).expect("no NUL");
        let flags = if create {
            libc::O_CREAT | libc::O_RDWR | libc::O_TRUNC
        } else {
            libc::O_RDWR
        };
        // SAFETY: plain POSIX calls on a valid C string; every result is checked, and the
        // fd is closed once mapped (the mapping keeps the object).
        unsafe {
            let fd = libc::shm_open(c_name.as_ptr(), flags, 0o600);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if create && libc::ftruncate(fd, len as libc::off_t) != 0 {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                return Err(e);
            }
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            libc::close(fd);
            if ptr == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Mapping {
                ptr: ptr.cast(),
                len,
                name: create.then_some(c_name),
            })
        }
    }

    /// The 64-bit atomic at byte `offset` (8-aligned, in bounds).
    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.len);
        // SAFETY: in bounds, aligned (mmap is page-aligned), valid for the mapping's life.
        unsafe { &*self.ptr.add(offset).cast::<AtomicU64>() }
    }

    /// The 32-bit atomic at byte `offset` (4-aligned, in bounds).
    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset + 4 <= self.len);
        // SAFETY: as for `u64_at`.
        unsafe { &*self.ptr.add(offset).cast::<AtomicU32>() }
    }

    /// Raw pointer to byte `offset` with `len` bytes after it in bounds.
    pub fn bytes_at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(offset + len <= self.len);
        // SAFETY: in bounds by the check above.
        unsafe { self.ptr.add(offset) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped; unlinks the name we created.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
            if let Some(name) = &self.name {
                libc::shm_unlink(name.as_ptr());
            }
        }
    }
}

/// Bytes of the floors' mapping.
pub const FLOOR_LEN: usize = 4096;
const PING: usize = 0;
const PONG: usize = 128;
/// The ping value that stops the floor's echoing side.
pub const STOP: u64 = u64::MAX;

/// One round trip of the raw floor from the pinging side.
#[inline]
pub fn floor_ping(m: &Mapping, i: u64) {
    m.u64_at(PING).store(i, Ordering::Release);
    while m.u64_at(PONG).load(Ordering::Acquire) != i {
        std::hint::spin_loop();
    }
}

/// The floor's echoing side: answers every ping until STOP.
pub fn floor_echo(m: &Mapping) {
    let mut last = 0;
    loop {
        let v = m.u64_at(PING).load(Ordering::Acquire);
        if v == STOP {
            return;
        }
        if v != last {
            last = v;
            m.u64_at(PONG).store(v, Ordering::Release);
        } else {
            std::hint::spin_loop();
        }
    }
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: a shared futex call on a valid aligned word in a shared mapping; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// One round trip of the futex floor: set ping, wake, sleep until pong matches.
pub fn futex_ping(m: &Mapping, i: u32) {
    let (ping, pong) = (m.u32_at(PING), m.u32_at(PONG));
    ping.store(i, Ordering::Release);
    futex(ping, libc::FUTEX_WAKE, 1);
    loop {
        let v = pong.load(Ordering::Acquire);
        if v == i {
            return;
        }
        futex(pong, libc::FUTEX_WAIT, v);
    }
}

/// The futex floor's echoing side, until ping is u32::MAX.
pub fn futex_echo(m: &Mapping) {
    let (ping, pong) = (m.u32_at(PING), m.u32_at(PONG));
    let mut last = 0;
    loop {
        let v = ping.load(Ordering::Acquire);
        if v == u32::MAX {
            return;
        }
        if v == last {
            futex(ping, libc::FUTEX_WAIT, v);
            continue;
        }
        last = v;
        pong.store(v, Ordering::Release);
        futex(pong, libc::FUTEX_WAKE, 1);
    }
}

/// Stops the futex echo side.
pub fn futex_stop(m: &Mapping) {
    m.u32_at(PING).store(u32::MAX, Ordering::Release);
    futex(m.u32_at(PING), libc::FUTEX_WAKE, 1);
}

/// A minimal SPSC ring in a mapping: no validation, no length prefix, no headers beyond
/// head, tail and done (separate lines); `slots` (a power of two) slots of `size` bytes
/// from byte 4096.
pub struct RawRing {
    /// Slots in the ring, a power of two.
    pub slots: u64,
    /// Bytes per slot.
    pub size: usize,
}

const HEAD: usize = 0;
const TAIL: usize = 128;
const DONE: usize = 256;
const READY: usize = 384;
const RING_BASE: usize = 4096;

impl RawRing {
    /// Bytes from one slot to the next: the size plus a cache line, so large power-of-two
    /// slots do not alias in the cache's sets.
    fn stride(&self) -> usize {
        self.size + 64
    }

    /// Byte offset of message `i`'s slot (`slots` is a power of two).
    fn slot_offset(&self, i: u64) -> usize {
        RING_BASE + (i & (self.slots - 1)) as usize * self.stride()
    }

    /// Bytes of the ring's mapping.
    pub fn len(&self) -> usize {
        RING_BASE + self.slots as usize * self.stride()
    }

    /// Produces `n` copies of `msg`.
    pub fn produce(&self, m: &Mapping, msg: &[u8], n: u64) {
        // SAFETY: `produce_with` passes a free, in-bounds slot that `msg` fits.
        self.produce_with(m, msg, n, |dst, src| unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len())
        });
    }

    /// [`RawRing::produce`] with non-temporal (streaming) stores: each message goes to
    /// memory around the producer's cache, then a store fence orders it before `head`.
    pub fn produce_streaming(&self, m: &Mapping, msg: &[u8], n: u64) {
        // SAFETY: `produce_with` passes a free, in-bounds slot that `msg` fits, 64-aligned
        // (slots start at 4096 with strides that are multiples of 64).
        self.produce_with(m, msg, n, |dst, src| unsafe { copy_streaming(dst, src) });
    }

    /// Produces `n` copies of `msg` (cut to the slot size), each written by `copy` into its
    /// slot.
    fn produce_with(&self, m: &Mapping, msg: &[u8], n: u64, copy: impl Fn(*mut u8, &[u8])) {
        let (head, tail) = (m.u64_at(HEAD), m.u64_at(TAIL));
        let msg = &msg[..msg.len().min(self.size)];
        let mut cached_tail = 0;
        for i in 0..n {
            while i - cached_tail >= self.slots {
                cached_tail = tail.load(Ordering::Acquire);
                std::hint::spin_loop();
            }
            copy(m.bytes_at(self.slot_offset(i), self.size), msg);
            head.store(i + 1, Ordering::Release);
        }
    }

    /// Consumes `n` messages, reading the first word of each in place (a consumer must at
    /// least look at a message, which moves its first cache line across cores, as the
    /// transport's consumer does when it checks the slot's commit word), then sets `done`.
    pub fn consume(&self, m: &Mapping, n: u64) {
        self.consume_with(m, n, |words| {
            // SAFETY: published, in bounds and aligned (see `consume_with`).
            std::hint::black_box(unsafe { std::ptr::read_volatile(words) });
        });
    }

    /// Consumes `n` messages, reading every word of each in place (as the large-message
    /// consumer of this transport's bench does), then sets `done`.
    pub fn consume_all(&self, m: &Mapping, n: u64) {
        let len = self.size / 8;
        self.consume_with(m, n, |words| {
            // SAFETY: published, in bounds and aligned (see `consume_with`); u64 has no
            // invalid bit patterns.
            let words = unsafe { std::slice::from_raw_parts(words, len) };
            std::hint::black_box(words.iter().fold(0u64, |acc, w| acc ^ w));
        });
    }

    /// Consumes `n` messages, calling `read` on each slot's first word, then sets `done`.
    /// The pointer is published (head passed it), in bounds for `size` bytes and 8-aligned
    /// (slots start at 4096 with sizes that are multiples of 64), and the slot is not
    /// rewritten until `read` returns and tail moves.
    fn consume_with(&self, m: &Mapping, n: u64, read: impl Fn(*const u64)) {
        let (head, tail) = (m.u64_at(HEAD), m.u64_at(TAIL));
        m.u64_at(READY).store(1, Ordering::Release);
        let mut cached_head = 0;
        for i in 0..n {
            while cached_head <= i {
                cached_head = head.load(Ordering::Acquire);
                std::hint::spin_loop();
            }
            read(
                m.bytes_at(self.slot_offset(i), self.size)
                    .cast::<u64>()
                    .cast_const(),
            );
            tail.store(i + 1, Ordering::Release);
        }
        m.u64_at(DONE).store(1, Ordering::Release);
    }

    /// Waits until the consumer has started (mapped the ring and is about to poll it), so
    /// a measurement timed from here leaves out the peer process's start, as the
    /// transport's measurements do with their attach handshake.
    pub fn wait_ready(&self, m: &Mapping) {
        while m.u64_at(READY).load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
    }

    /// Waits until the consumer set `done`.
    pub fn wait_done(&self, m: &Mapping) {
        while m.u64_at(DONE).load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
    }
}

/// One 64-byte round trip over a stream (Unix socket, pipes).
/// Copies `src` to `dst` with non-temporal stores (SSE2's `movntdq`, 16 bytes at a time;
/// the tail with plain stores), then fences them (`sfence`): streaming stores are weakly
/// ordered, so without the fence a later Release store could become visible first.
///
/// # Safety
/// `dst` is valid for `src.len()` bytes, 16-byte aligned, and does not overlap `src`.
#[cfg(target_arch = "x86_64")]
pub unsafe fn copy_streaming(dst: *mut u8, src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    let whole = src.len() / 16 * 16;
    let mut i = 0;
    while i < whole {
        // SAFETY: `i + 16 <= src.len()`, `dst + i` is 16-aligned and in bounds (caller);
        // SSE2 is part of x86_64.
        unsafe {
            let v = _mm_loadu_si128(src.as_ptr().add(i).cast::<__m128i>());
            _mm_stream_si128(dst.add(i).cast::<__m128i>(), v);
        }
        i += 16;
    }
    // SAFETY: the rest is in bounds of both (caller); the fence has no preconditions.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr().add(whole), dst.add(whole), src.len() - whole);
        _mm_sfence();
    }
}

/// Elsewhere: a plain copy.
///
/// # Safety
/// `dst` is valid for `src.len()` bytes and does not overlap `src`.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn copy_streaming(dst: *mut u8, src: &[u8]) {
    // SAFETY: as the caller guarantees.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
}

pub fn stream_ping(
    w: &mut impl Write,
    r: &mut impl Read,
    msg: &mut [u8; 64],
) -> std::io::Result<()> {
    w.write_all(msg)?;
    r.read_exact(msg)
}

/// Echoes 64-byte messages until the stream ends.
pub fn stream_echo(r: &mut impl Read, w: &mut impl Write) {
    let mut msg = [0u8; 64];
    while r.read_exact(&mut msg).is_ok() {
        if w.write_all(&msg).and_then(|_| w.flush()).is_err() {
            return;
        }
    }
}

/// Single-thread memcpy bandwidth of `size`-byte copies, in GB/s.
pub fn memcpy_gb_per_sec(size: usize, total: usize) -> f64 {
    let src = vec![1u8; size];
    let mut dst = vec![0u8; size];
    let n = (total / size).max(1);
    let start = std::time::Instant::now();
    for _ in 0..n {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    (n * size) as f64 / start.elapsed().as_secs_f64() / 1e9
}
