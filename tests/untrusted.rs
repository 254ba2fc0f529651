//! Untrusted mode against a hostile writer: a thread that maps the a2b segment itself and,
//! for a few seconds, keeps flipping the words of every slot (segment-table words, pointer
//! words, payload bytes, slot length words) while side B receives typed messages. Side B
//! must see only valid messages or typed errors, never a panic or a signal, and what it
//! is handed must not change under it (it is a private copy). The nightly AddressSanitizer
//! job runs this file too (scripts/checkers.sh).
//!
//! Cooperating mode is not run against this writer: there the reader works in place, and
//! capnp reads some words twice (README, "Trust"), so it may read past the slot.

// The hostile writer pokes the mapping with raw pointers and counts with std atomics.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
#[path = "common/demo_capnp.rs"]
mod demo_capnp;

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capnp::message::{Builder, HeapAllocator};
use capnp_shm_transport::{
    Channel, ChannelBuilder, Error, Geometry, OnReceiveMessage, RecvMessage, SendMessage, Trust,
};
use common::TestName;
use demo_capnp::sample;

const SLOT: usize = 256;
const SLOTS: usize = 4;
const RUN: Duration = Duration::from_secs(3);
const HEADER: usize = 512;
const SLOT_HEADER: usize = 16;

/// Side B's builder in the mode under test.
fn receiving(name: &str) -> ChannelBuilder {
    Channel::builder(name)
        .open_timeout(Duration::from_secs(5))
        .trust(Trust::Untrusted)
}

/// A shared mapping of a segment file, written by the hostile thread.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is only written through raw pointers (volatile stores).
unsafe impl Send for Mapping {}

impl Mapping {
    fn open(path: &std::path::Path) -> Mapping {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let len = file.metadata().unwrap().len() as usize;
        // SAFETY: a fresh shared mapping of the whole file; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        Mapping {
            ptr: ptr.cast(),
            len,
        }
    }

    fn write_u64(&self, offset: usize, value: u64) {
        assert!(offset % 8 == 0 && offset + 8 <= self.len);
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `self`.
        unsafe { std::ptr::write_volatile(self.ptr.add(offset).cast::<u64>(), value) }
    }

    fn write_u32(&self, offset: usize, value: u32) {
        assert!(offset % 4 == 0 && offset + 4 <= self.len);
        // SAFETY: as in `write_u64`.
        unsafe { std::ptr::write_volatile(self.ptr.add(offset).cast::<u32>(), value) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `open` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Keeps flipping words of every slot's payload and length (never the commit words:
/// those are checked by the ring, see tests/hostile.rs) until `stop`.
fn hostile_writer(map: Mapping, stop: Arc<AtomicBool>) -> u64 {
    let geometry = Geometry::new(SLOT, SLOTS).unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut flips = 0u64;
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = HEADER + (x as usize % SLOTS) * geometry.slot_stride;
        let payload = slot + SLOT_HEADER;
        // The first words of a small message: segment table, root pointer, the struct's
        // data and pointer words, the payload's bytes.
        let word = (x >> 8) as usize % 12;
        match (x >> 16) % 6 {
            // Length words in range (an out-of-range one is a typed `SlotLength` error
            // that ends the channel, tested in tests/hostile.rs).
            0 => slot_len(&map, slot, (x >> 24) as u32 % (SLOT as u32 + 1)),
            1 => map.write_u64(payload + word * 8, x),
            2 => map.write_u64(payload + word * 8, x & 0xFFFF_FFFF_0000_FFFF),
            3 => map.write_u64(payload + word * 8, (x >> 32) | 1), // a struct/list pointer
            4 => map.write_u64(payload, x & 0x0000_00FF_0000_0000), // segment table
            _ => map.write_u64(payload + 8 * (4 + word % 8), !x),  // payload bytes
        }
        flips += 1;
    }
    flips
}

fn slot_len(map: &Mapping, slot: usize, len: u32) {
    map.write_u32(slot + 8, len);
}

fn sample(seq: u64) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
    let mut s = m.init_root::<sample::Builder>();
    s.set_seq(seq);
    s.set_sent_ns(!seq);
    s.set_payload(&[seq as u8; 40]);
    s.get_control().set_ping(());
    m
}

/// Side A's sender: sends until `stop` (a full ring only delays it).
fn sender(mut a: Channel, stop: Arc<AtomicBool>) {
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        match a.send_message(&sample(seq), Duration::from_millis(10)) {
            Ok(()) => seq += 1,
            Err(Error::Timeout { .. }) => {}
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// Reads every field of a received sample twice; the two readings must agree.
fn read_twice(s: sample::Reader<'_>) -> Result<(), capnp::Error> {
    let first = (s.get_seq(), s.get_sent_ns(), s.get_payload()?.to_vec());
    let _ = s.get_control().which();
    for _ in 0..50 {
        std::hint::black_box(s.get_payload()?);
    }
    let second = (s.get_seq(), s.get_sent_ns(), s.get_payload()?.to_vec());
    assert_eq!(first, second, "a received message changed under its reader");
    Ok(())
}

/// Side A's sending thread and the hostile writer, until `finish`.
struct Run {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    flips: std::thread::JoinHandle<u64>,
}

fn start(name: &TestName) -> Run {
    let a = Channel::builder(&**name)
        .slot_size(SLOT)
        .slot_count(SLOTS)
        .create()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let map = Mapping::open(&name.path(".fs.a2b"));
    let s = stop.clone();
    let threads = vec![std::thread::spawn(move || sender(a, s))];
    let s = stop.clone();
    let flips = std::thread::spawn(move || hostile_writer(map, s));
    Run {
        stop,
        threads,
        flips,
    }
}

impl Run {
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        self.flips.join().unwrap()
    }
}

#[test]
fn hostile_writer_gives_valid_messages_or_typed_errors() {
    let name = TestName::new("untrusted-hostile");
    let run = start(&name);
    let mut b = receiving(&name).open().unwrap();
    let (mut valid, mut decode_errors) = (0u64, 0u64);
    let deadline = Instant::now() + RUN;
    while Instant::now() < deadline {
        let outcome = match b.recv_message(Duration::from_millis(100)) {
            Ok(msg) => msg
                .root::<sample::Owned>()
                .and_then(|s| read_twice(s).map_err(Error::Decode)),
            Err(Error::Timeout { .. }) => continue,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => valid += 1,
            Err(Error::Decode(_)) => decode_errors += 1,
            Err(e) => panic!("expected a message or a decode error, got {e}"),
        }
    }
    let flips = run.finish();
    drop(b);
    eprintln!("{valid} valid, {decode_errors} decode errors, {flips} flips");
    assert!(valid > 0 && decode_errors > 0 && flips > 1000);
}

#[test]
fn hostile_writer_against_the_receive_thread() {
    let name = TestName::new("untrusted-thread");
    let run = start(&name);
    let (tx, rx) = std::sync::mpsc::channel();
    let b = receiving(&name)
        .on_receive_message(capnp::message::ReaderOptions::new(), move |r| {
            let outcome = r.and_then(|r| {
                r.get_root::<sample::Reader<'_>>()
                    .and_then(read_twice)
                    .map_err(Error::Decode)
            });
            let _ = tx.send(match outcome {
                Ok(()) => Ok(()),
                Err(Error::Decode(_)) => Err(None),
                Err(e) => Err(Some(e.to_string())),
            });
        })
        .open()
        .unwrap();
    let (mut valid, mut decode_errors) = (0u64, 0u64);
    let deadline = Instant::now() + RUN;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Ok(())) => valid += 1,
            Ok(Err(None)) => decode_errors += 1,
            Ok(Err(Some(e))) => panic!("expected a message or a decode error, got {e}"),
            Err(_) => break,
        }
    }
    assert!(b.receive_thread_running(), "{:?}", b.take_receive_error());
    run.finish();
    drop(b);
    assert!(valid > 0 && decode_errors > 0);
}

/// Writes `len` bytes of 0xEE over slot `slot`'s payload of channel `name`'s a2b ring.
fn scribble(name: &TestName, slot: usize, len: usize) {
    let stride = Geometry::new(SLOT, SLOTS).unwrap().slot_stride;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path(".fs.a2b"))
        .unwrap();
    let offset = HEADER + slot * stride + SLOT_HEADER;
    file.write_all_at(&vec![0xEE; len], offset as u64).unwrap();
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn untrusted_receives_hand_out_private_copies() {
    let name = TestName::new("untrusted-copy");
    let mut a = Channel::builder(&*name)
        .slot_size(SLOT)
        .slot_count(SLOTS)
        .create()
        .unwrap();
    let mut b = receiving(&name).open().unwrap();
    // recv: the guard's bytes do not change when the slot does.
    a.send(b"message0", WAIT).unwrap();
    let msg = b.recv(WAIT).unwrap();
    scribble(&name, 0, 8);
    assert_eq!(&*msg, b"message0");
    drop(msg);
    // recv_batch hands the callback the copy.
    a.send(b"message1", WAIT).unwrap();
    let n = b
        .recv_batch(4, WAIT, |m| {
            scribble(&name, 1, 8);
            assert_eq!(m, b"message1");
        })
        .unwrap();
    assert_eq!(n, 1);
    // The typed layer decodes the copy.
    a.send_message(&sample(7), WAIT).unwrap();
    let msg = b.recv_message(WAIT).unwrap();
    scribble(&name, 2, SLOT);
    let s = msg.root::<sample::Owned>().unwrap();
    assert_eq!((s.get_seq(), s.get_payload().unwrap()), (7, &[7u8; 40][..]));
    drop(msg);
    // recv_into.
    a.send(b"message3", WAIT).unwrap();
    let mut buf = Vec::new();
    assert_eq!(b.recv_into(&mut buf, WAIT).unwrap(), 8);
    assert_eq!(buf, b"message3");
    // The slot is released when the copy is made: with a guard held, the peer can fill
    // the whole ring.
    a.send(b"message4", WAIT).unwrap();
    let msg = b.recv(WAIT).unwrap();
    for i in 0..SLOTS {
        a.send(&[i as u8], Duration::ZERO).unwrap();
    }
    assert_eq!(&*msg, b"message4");
}

#[test]
fn cooperating_receives_are_in_place() {
    let name = TestName::new("cooperating-in-place");
    let mut a = Channel::builder(&*name)
        .slot_size(SLOT)
        .slot_count(SLOTS)
        .create()
        .unwrap();
    let mut b = Channel::builder(&*name)
        .open_timeout(WAIT)
        .trust(Trust::Cooperating)
        .open()
        .unwrap();
    a.send(b"message0", WAIT).unwrap();
    let msg = b.recv(WAIT).unwrap();
    scribble(&name, 0, 8);
    assert_eq!(&*msg, &[0xEE; 8], "zero copy: the guard reads the slot");
}
