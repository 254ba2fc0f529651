//! Criterion benches of the channel itself:
//! - in-process throughput, one producer thread and one consumer thread, 64 B, 1 KiB and
//!   64 KiB messages (elements and bytes per second);
//! - cross-process round trip of 64 B, busy spin on both sides: the bench re-executes
//!   itself as the echoing peer, pinned to another core, and times batches of round trips
//!   with `iter_custom`.
//!
//! `cargo bench --bench ring` (about a minute); `-- --test` runs each once.
//! The side-by-side comparison with the hardware floor and kernel IPC is
//! `capnp-shm-demo bench`.

use std::hint::black_box;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use capnp_shm_transport::{remove_channel, Channel, Error};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

const WAIT: Duration = Duration::from_secs(10);
const PEER_ENV: &str = "CAPNP_SHM_BENCH_PEER";

/// Pins the calling thread to `cpu` when the machine has it (best effort).
fn pin(cpu: usize) {
    // The online CPU count, not available_parallelism(): that honours the affinity mask,
    // which a child inherits from its pinned parent.
    // SAFETY: sysconf only reads a system constant.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online <= cpu as libc::c_long {
        return;
    }
    // SAFETY: CPU_SET writes one bit of a zeroed cpu_set_t on our stack, and
    // sched_setaffinity(0, ..) only reads it, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn spin_channel(name: &str, slot_size: usize, slot_count: usize) -> Channel {
    Channel::builder(name)
        .slot_size(slot_size)
        .slot_count(slot_count)
        .poll_interval(Duration::ZERO)
        .create()
        .expect("create")
}

fn open_spin(name: &str) -> Channel {
    Channel::builder(name)
        .poll_interval(Duration::ZERO)
        .open_timeout(WAIT)
        .open()
        .expect("open")
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("in_process_throughput");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (size, slots, batch) in [
        (64usize, 256usize, 10_000u64),
        (1024, 256, 10_000),
        (65_536, 32, 1_000),
    ] {
        let name = format!("bench-ring-tp-{size}-{}", std::process::id());
        let a = spin_channel(&name, size, slots);
        let b = open_spin(&name);
        let (mut tx, _a_rx) = a.split().expect("split");
        let (_b_tx, mut rx) = b.split().expect("split");
        let msg = vec![0xa5u8; size];
        group.throughput(Throughput::Elements(batch));
        group.bench_function(BenchmarkId::new("messages", size), |bench| {
            bench.iter_custom(|iters| {
                std::thread::scope(|s| {
                    let consumer = s.spawn(|| {
                        let mut left = iters * batch;
                        while left > 0 {
                            left -= rx
                                .recv_batch(64, WAIT, |m| {
                                    black_box(m);
                                })
                                .expect("recv") as u64;
                        }
                    });
                    let start = Instant::now();
                    for _ in 0..iters * batch {
                        tx.send(&msg, WAIT).expect("send");
                    }
                    consumer.join().unwrap();
                    start.elapsed()
                })
            })
        });
        let _ = remove_channel(&name);
    }
    group.finish();
}

/// The echoing peer of the cross-process bench, in a child process.
fn peer(name: &str) {
    pin(1);
    let mut b = open_spin(name);
    let mut buf = Vec::with_capacity(64);
    loop {
        match b.recv_into(&mut buf, Duration::from_secs(60)) {
            Ok(_) => b.send(&buf, WAIT).expect("echo"),
            Err(Error::Closed) => return,
            Err(e) => panic!("bench peer: {e}"),
        }
    }
}

struct PeerProcess(Child);

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn round_trip(c: &mut Criterion) {
    let name = format!("bench-ring-rtt-{}", std::process::id());
    let mut a = spin_channel(&name, 64, 16);
    let _peer = PeerProcess(
        Command::new(std::env::current_exe().expect("own path"))
            .env(PEER_ENV, &name)
            .spawn()
            .expect("spawn peer"),
    );
    pin(0);
    let msg = [7u8; 64];
    // Wait for the peer: one round trip.
    a.send(&msg, WAIT).expect("send");
    drop(a.recv(WAIT).expect("peer did not answer"));
    let mut group = c.benchmark_group("cross_process");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    group.bench_function("rtt_64B_spin", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                a.send(&msg, WAIT).expect("send");
                black_box(&*a.recv(WAIT).expect("recv"));
            }
            start.elapsed()
        })
    });
    group.finish();
    drop(a);
    let _ = remove_channel(&name);
}

criterion_group!(benches, throughput, round_trip);

fn main() {
    if let Ok(name) = std::env::var(PEER_ENV) {
        peer(&name);
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
