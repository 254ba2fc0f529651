//! The typed send and receive paths do no heap allocation per message in steady state:
//! a counting global allocator sees none across 1000 round trips after warm-up.

// Test code is not model-checked: it uses std's atomics (clippy.toml funnels the library's).
#![allow(clippy::disallowed_types)]

#[path = "common/demo_capnp.rs"]
mod demo_capnp;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use capnp::message::{Builder, ScratchSpaceHeapAllocator};
use capnp_shm_transport::{Channel, RecvMessage, SendMessage};
use demo_capnp::sample;

/// Counts allocations made by threads that opted in (the test thread, while measuring),
/// so the test harness's own threads do not disturb the count.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// This thread's counted allocations (tests in this file run in parallel).
    static MINE: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        MINE.with(|m| m.set(m.get() + 1));
    }
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WAIT: Duration = Duration::from_secs(5);

/// Builds the message once; each send only overwrites fields in place (the payload keeps
/// its length), so the builder's single segment never grows.
fn template(builder: &mut Builder<ScratchSpaceHeapAllocator<'_>>) {
    let mut s = builder.init_root::<sample::Builder>();
    s.reborrow().init_payload(64);
    s.get_control().set_ping(());
}

fn round_trip(
    a: &mut Channel,
    b: &mut Channel,
    to_b: &mut Builder<ScratchSpaceHeapAllocator<'_>>,
    to_a: &mut Builder<ScratchSpaceHeapAllocator<'_>>,
    seq: u64,
) {
    {
        let mut s = to_b.get_root::<sample::Builder>().unwrap();
        s.set_seq(seq);
        s.set_sent_ns(seq * 10);
        s.reborrow().get_payload().unwrap()[0] = seq as u8;
    }
    a.send_message(to_b, WAIT).unwrap();

    let got = {
        let msg = b.recv_message(WAIT).unwrap();
        let s = msg.root::<sample::Owned>().unwrap();
        assert_eq!(s.get_payload().unwrap()[0], seq as u8);
        s.get_seq()
    };
    assert_eq!(got, seq);
    {
        let mut s = to_a.get_root::<sample::Builder>().unwrap();
        s.set_seq(got);
        s.get_control().set_pong(());
    }
    b.send_message(to_a, WAIT).unwrap();

    let msg = a.recv_message(WAIT).unwrap();
    let s = msg.root::<sample::Owned>().unwrap();
    assert_eq!(s.get_seq(), seq);
    assert!(matches!(
        s.get_control().which(),
        Ok(sample::control::Pong(()))
    ));
}

/// Both sides of a channel of 16 slots of 512 bytes named after `test`.
fn pair(test: &str) -> (Channel, Channel) {
    let name = format!("{test}-{}", std::process::id());
    let a = Channel::builder(&name)
        .slot_size(512)
        .slot_count(16)
        .create()
        .unwrap();
    let b = Channel::builder(&name).open_timeout(WAIT).open().unwrap();
    (a, b)
}

#[test]
fn typed_round_trips_do_not_allocate() {
    let (mut a, mut b) = pair("typed-alloc");

    let mut scratch_b = capnp::Word::allocate_zeroed_vec(64);
    let mut scratch_a = capnp::Word::allocate_zeroed_vec(64);
    let mut to_b = Builder::new(ScratchSpaceHeapAllocator::new(
        capnp::Word::words_to_bytes_mut(&mut scratch_b),
    ));
    let mut to_a = Builder::new(ScratchSpaceHeapAllocator::new(
        capnp::Word::words_to_bytes_mut(&mut scratch_a),
    ));
    template(&mut to_b);
    template(&mut to_a);

    for seq in 0..100 {
        round_trip(&mut a, &mut b, &mut to_b, &mut to_a, seq);
    }

    // The counter itself works: one box is one allocation.
    COUNTING.with(|c| c.set(true));
    drop(std::hint::black_box(Box::new(1u64)));
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 1);

    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    for seq in 100..1100 {
        round_trip(&mut a, &mut b, &mut to_b, &mut to_a, seq);
    }
    COUNTING.with(|c| c.set(false));
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(allocations, 0, "heap allocations in 1000 typed round trips");
    assert_eq!(to_b.get_segments_for_output().len(), 1);
}

/// Messages built with `send_built` (in the per-thread buffer) allocate nothing either.
#[test]
fn built_round_trips_do_not_allocate() {
    use capnp_shm_transport::SendBuilt;
    let (mut a, mut b) = pair("typed-alloc-built");
    let mut trip = |seq: u64| {
        a.send_built::<sample::Owned>(128, WAIT, |mut s| {
            s.set_seq(seq);
            s.set_payload(&[seq as u8; 16]);
            s.get_control().set_ping(());
            Ok(())
        })
        .unwrap();
        let msg = b.recv_message(WAIT).unwrap();
        assert_eq!(msg.root::<sample::Owned>().unwrap().get_seq(), seq);
    };
    for seq in 0..100 {
        trip(seq);
    }
    COUNTING.with(|c| c.set(true));
    let before = MINE.with(Cell::get);
    for seq in 100..1100 {
        trip(seq);
    }
    let after = MINE.with(Cell::get);
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        after - before,
        0,
        "heap allocations in 1000 built round trips"
    );
}
