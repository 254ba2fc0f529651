//! Round trip A -> B -> A of the demo `Sample` (build, send, receive, read a field,
//! reply) against raw bytes of the same framed size, over a busy-spin channel, with B's
//! echo loop on its own thread.
//!
//! `cargo bench --bench typed -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/common/demo_capnp.rs"]
mod demo_capnp;

use std::hint::black_box;
use std::thread;
use std::time::Duration;

use capnp::message::{Builder, ScratchSpaceHeapAllocator};
use capnp_shm_transport::{Channel, Error, RecvMessage, SendMessage};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use demo_capnp::sample;

const WAIT: Duration = Duration::from_secs(5);
const PAYLOAD: u32 = 64;

fn channels(test: &str) -> (Channel, Channel) {
    let name = format!("bench-typed-{test}-{}", std::process::id());
    let a = Channel::builder(&name)
        .slot_size(256)
        .slot_count(16)
        .poll_interval(Duration::ZERO)
        .create()
        .expect("create");
    let b = Channel::builder(&name)
        .poll_interval(Duration::ZERO)
        .open_timeout(WAIT)
        .open()
        .expect("open");
    (a, b)
}

/// Runs `f` with a builder holding a `Sample` with a `PAYLOAD`-byte payload, over a
/// reused scratch segment (so sends do not allocate).
fn with_template<R>(f: impl FnOnce(&mut Builder<ScratchSpaceHeapAllocator<'_>>) -> R) -> R {
    let mut scratch = capnp::Word::allocate_zeroed_vec(64);
    let mut message = Builder::new(ScratchSpaceHeapAllocator::new(
        capnp::Word::words_to_bytes_mut(&mut scratch),
    ));
    {
        let mut s = message.init_root::<sample::Builder>();
        s.reborrow().init_payload(PAYLOAD);
        s.get_control().set_ping(());
    }
    f(&mut message)
}

fn framed_size() -> usize {
    with_template(|m| capnp::serialize::compute_serialized_size_in_words(m) * 8)
}

fn typed(c: &mut Criterion) {
    let (mut a, mut b) = channels("typed");
    let echo = thread::spawn(move || {
        with_template(|reply| loop {
            let seq = match b.recv_message(Duration::from_secs(30)) {
                Ok(msg) => msg.root::<sample::Owned>().expect("root").get_seq(),
                Err(Error::Closed) => return,
                Err(e) => panic!("echo: {e}"),
            };
            {
                let mut s = reply.get_root::<sample::Builder>().expect("root");
                s.set_seq(seq);
                s.get_control().set_pong(());
            }
            b.send_message(reply, WAIT).expect("echo send");
        })
    });
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Bytes(framed_size() as u64));
    with_template(|message| {
        let mut seq = 0u64;
        group.bench_function("typed_sample", |bench| {
            bench.iter(|| {
                seq += 1;
                {
                    let mut s = message.get_root::<sample::Builder>().expect("root");
                    s.set_seq(seq);
                    s.set_sent_ns(seq);
                }
                a.send_message(message, WAIT).expect("send");
                let msg = a.recv_message(WAIT).expect("recv");
                let got = msg.root::<sample::Owned>().expect("root").get_seq();
                assert_eq!(black_box(got), seq);
            })
        });
    });
    group.finish();
    drop(a);
    echo.join().expect("echo thread");
}

fn raw(c: &mut Criterion) {
    let size = framed_size();
    let (mut a, mut b) = channels("raw");
    let echo = thread::spawn(move || {
        let mut reply = vec![0u8; size];
        loop {
            match b.recv(Duration::from_secs(30)) {
                Ok(msg) => reply[..8].copy_from_slice(&msg[..8]),
                Err(Error::Closed) => return,
                Err(e) => panic!("echo: {e}"),
            }
            b.send(&reply, WAIT).expect("echo send");
        }
    });
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Bytes(size as u64));
    let mut msg = vec![0u8; size];
    let mut seq = 0u64;
    group.bench_function("raw_same_size", |bench| {
        bench.iter(|| {
            seq += 1;
            msg[..8].copy_from_slice(&seq.to_le_bytes());
            a.send(&msg, WAIT).expect("send");
            let back = a.recv(WAIT).expect("recv");
            let got = u64::from_le_bytes(back[..8].try_into().expect("8 bytes"));
            assert_eq!(black_box(got), seq);
        })
    });
    group.finish();
    drop(a);
    echo.join().expect("echo thread");
}

criterion_group!(benches, typed, raw);
criterion_main!(benches);
