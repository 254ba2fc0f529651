//! `capnp-shm-demo bench`: this transport side by side with the hardware floor and kernel
//! IPC, measured in one run, two processes pinned to different cores where the machine has
//! them, baselines and ours interleaved round by round (docs/BENCHMARKS.md).
//! The peer of every measurement is this binary again (`bench-peer KIND NAME`).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capnp::message::{Builder, HeapAllocator};
use capnp_shm_transport::demo_capnp::sample;
use capnp_shm_transport::{remove_channel, Channel, Error, RecvMessage, SendMessage, WaitMode};
use serde_json::{json, Value};

use crate::baselines::{self as base, Mapping, RawRing};
use crate::side::DemoError;

const WAIT: Duration = Duration::from_secs(30);
const RTT_KINDS: [&str; 7] = [
    "floor",
    "spin",
    "spin_capnp",
    "block",
    "futex_floor",
    "uds",
    "pipe",
];
const STREAMS: [(&str, usize); 7] = [
    ("floor", 64),
    ("ours", 64),
    ("uds", 64),
    ("floor", 1024),
    ("ours", 1024),
    ("floor", 65536),
    ("ours", 65536),
];
const MIB: usize = 1 << 20;

/// How much to measure.
struct Plan {
    rounds: usize,
    batches: usize,
    fast_batch: u64,
    slow_batch: u64,
    stream_bytes: usize,
    large_messages: u64,
}

fn err(context: &str, e: impl std::fmt::Display) -> DemoError {
    DemoError::Other(format!("{context}: {e}"))
}

/// Pins the calling thread to `cpu` when the machine has it (best effort).
pub fn pin(cpu: usize) {
    // The online CPU count, not available_parallelism(): that honours the affinity mask,
    // which a child inherits from its pinned parent.
    // SAFETY: sysconf only reads a system constant.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online <= cpu as libc::c_long {
        return;
    }
    // SAFETY: CPU_SET sets one bit of a zeroed cpu_set_t on our stack; sched_setaffinity
    // only reads it, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A peer process, killed and reaped on drop.
struct Peer(Child);

impl Peer {
    fn spawn(kind: &str, name: &str, pipes: bool) -> Result<Peer, DemoError> {
        let exe = std::env::current_exe().map_err(|e| err("own path", e))?;
        let mut cmd = Command::new(exe);
        cmd.args(["bench-peer", kind, name]);
        if pipes {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        }
        Ok(Peer(cmd.spawn().map_err(|e| err("spawn bench peer", e))?))
    }

    fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn channel_builder(
    name: &str,
    slot_size: usize,
    slot_count: usize,
    mode: WaitMode,
) -> capnp_shm_transport::ChannelBuilder {
    let b = Channel::builder(name)
        .slot_size(slot_size)
        .slot_count(slot_count);
    match mode {
        WaitMode::Poll => b.poll_interval(Duration::ZERO),
        _ => b.wait_mode(mode),
    }
}

/// Times `batches` batches of `batch` calls of `one(i)`; pushes ns per call per batch.
fn time_batches(
    out: &mut Vec<f64>,
    batches: usize,
    batch: u64,
    mut one: impl FnMut(u64) -> Result<(), DemoError>,
) -> Result<(), DemoError> {
    for i in 0..batch / 10 {
        one(i)?; // warm-up
    }
    let mut next = batch / 10;
    for _ in 0..batches {
        let start = Instant::now();
        for _ in 0..batch {
            next += 1;
            one(next)?;
        }
        out.push(start.elapsed().as_nanos() as f64 / batch as f64);
    }
    Ok(())
}

fn typed_sample() -> Builder<HeapAllocator> {
    let mut m = Builder::new(HeapAllocator::new());
    m.init_root::<sample::Builder>().set_payload(&[0x5a; 16]);
    m
}

/// One RTT measurement of `kind` (a fresh peer), appending per-batch means.
fn rtt_round(kind: &str, tag: &str, plan: &Plan, out: &mut Vec<f64>) -> Result<(), DemoError> {
    let name = format!("capnp-shm-bench-{}-{tag}", std::process::id());
    let fast = matches!(kind, "floor" | "spin" | "spin_capnp" | "block");
    let batch = if fast {
        plan.fast_batch
    } else {
        plan.slow_batch
    };
    match kind {
        "floor" | "futex_floor" => {
            let m = Mapping::create(&name, base::FLOOR_LEN).map_err(|e| err("shm", e))?;
            let peer = Peer::spawn(kind, &name, false)?;
            if kind == "floor" {
                time_batches(out, plan.batches, batch, |i| {
                    base::floor_ping(&m, i);
                    Ok(())
                })?;
                m.u64_at(0)
                    .store(base::STOP, std::sync::atomic::Ordering::Release);
            } else {
                time_batches(out, plan.batches, batch, |i| {
                    base::futex_ping(&m, i as u32);
                    Ok(())
                })?;
                base::futex_stop(&m);
            }
            peer.finish();
        }
        "uds" => {
            let path = std::env::temp_dir().join(format!("{name}.sock"));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(|e| err("bind", e))?;
            let peer = Peer::spawn(kind, &path.to_string_lossy(), false)?;
            let (mut s, _) = listener.accept().map_err(|e| err("accept", e))?;
            let mut r = s.try_clone().map_err(|e| err("socket", e))?;
            let mut msg = [1u8; 64];
            time_batches(out, plan.batches, batch, |_| {
                base::stream_ping(&mut s, &mut r, &mut msg).map_err(|e| err("uds", e))
            })?;
            drop((s, r));
            let _ = std::fs::remove_file(&path);
            peer.finish();
        }
        "pipe" => {
            let mut peer = Peer::spawn(kind, &name, true)?;
            let mut w = peer.0.stdin.take().expect("piped");
            let mut r = peer.0.stdout.take().expect("piped");
            let mut msg = [1u8; 64];
            time_batches(out, plan.batches, batch, |_| {
                base::stream_ping(&mut w, &mut r, &mut msg).map_err(|e| err("pipe", e))
            })?;
            drop((w, r));
            peer.finish();
        }
        "spin" | "block" | "spin_capnp" => {
            let mode = if kind == "block" {
                WaitMode::Block
            } else {
                WaitMode::Poll
            };
            let mut a = channel_builder(&name, 256, 16, mode).create()?;
            let peer = Peer::spawn(kind, &name, false)?;
            if kind == "spin_capnp" {
                let mut m = typed_sample();
                time_batches(out, plan.batches, batch, |i| {
                    m.get_root::<sample::Builder>()?.set_seq(i);
                    a.send_message(&m, WAIT)?;
                    let reply = a.recv_message(WAIT)?;
                    std::hint::black_box(reply.root::<sample::Owned>()?.get_seq());
                    Ok(())
                })?;
            } else {
                let msg = [1u8; 64];
                time_batches(out, plan.batches, batch, |_| {
                    a.send(&msg, WAIT)?;
                    std::hint::black_box(&*a.recv(WAIT)?);
                    Ok(())
                })?;
            }
            drop(a);
            peer.finish();
        }
        other => return Err(err("unknown kind", other)),
    }
    Ok(())
}

/// One one-way streaming measurement: messages per second.
fn stream_round(kind: &str, size: usize, tag: &str, plan: &Plan) -> Result<f64, DemoError> {
    let name = format!("capnp-shm-bench-{}-{tag}", std::process::id());
    let n = (plan.stream_bytes / size).max(1000) as u64;
    let msg = vec![0xa5u8; size];
    let slots = if size >= 65536 { 32 } else { 256 };
    let start;
    match kind {
        "floor" => {
            let ring = RawRing { slots, size };
            let m = Mapping::create(&name, ring.len()).map_err(|e| err("shm", e))?;
            let peer = Peer::spawn(&format!("ring:{size}:{slots}:{n}"), &name, false)?;
            start = Instant::now();
            ring.produce(&m, &msg, n);
            ring.wait_done(&m);
            let t = start.elapsed();
            peer.finish();
            Ok(n as f64 / t.as_secs_f64())
        }
        "ours" => {
            let mut a = channel_builder(&name, size, slots as usize, WaitMode::Poll).create()?;
            let peer = Peer::spawn(&format!("stream:{n}"), &name, false)?;
            a.send(&msg, WAIT)?; // attach handshake: the peer counts it
            drop(a.recv(WAIT)?);
            start = Instant::now();
            for _ in 0..n {
                a.send(&msg, WAIT)?;
            }
            drop(a.recv(WAIT)?); // the peer's ack after the last one
            let t = start.elapsed();
            drop(a);
            peer.finish();
            Ok(n as f64 / t.as_secs_f64())
        }
        _ => {
            let path = std::env::temp_dir().join(format!("{name}.sock"));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(|e| err("bind", e))?;
            let peer = Peer::spawn(&format!("uds-stream:{n}"), &path.to_string_lossy(), false)?;
            // One write per message and one read per message on the other side: the socket
            // carries messages, not a byte stream batched by buffers.
            let (mut w, _) = listener.accept().map_err(|e| err("accept", e))?;
            let mut r = w.try_clone().map_err(|e| err("socket", e))?;
            start = Instant::now();
            for _ in 0..n {
                w.write_all(&msg).map_err(|e| err("uds", e))?;
            }
            let mut ack = [0u8; 1];
            r.read_exact(&mut ack).map_err(|e| err("uds ack", e))?;
            let t = start.elapsed();
            drop((w, r));
            let _ = std::fs::remove_file(&path);
            peer.finish();
            Ok(n as f64 / t.as_secs_f64())
        }
    }
}

/// 1 MiB messages through the transport (the consumer reads every word in place): GB/s.
fn large_round(tag: &str, plan: &Plan) -> Result<f64, DemoError> {
    let name = format!("capnp-shm-bench-{}-{tag}", std::process::id());
    let n = plan.large_messages;
    let mut a = channel_builder(&name, MIB, 8, WaitMode::Poll).create()?;
    let peer = Peer::spawn(&format!("large:{n}"), &name, false)?;
    let msg = vec![0x3cu8; MIB];
    a.send(&msg[..1], WAIT)?;
    drop(a.recv(WAIT)?);
    let start = Instant::now();
    for _ in 0..n {
        a.send(&msg, WAIT)?;
    }
    drop(a.recv(WAIT)?);
    let t = start.elapsed();
    drop(a);
    peer.finish();
    Ok((n as usize * MIB) as f64 / t.as_secs_f64() / 1e9)
}

/// The iceoryx2 ping-pong binary (benches/iceoryx2-peer), if built: `CAPNP_SHM_ICEORYX2`,
/// else the crate's release build path relative to the working directory.
fn iceoryx2_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("CAPNP_SHM_ICEORYX2")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "benches/iceoryx2-peer/target/release/iceoryx2-pingpong".into());
    path.is_file().then_some(path)
}

/// One iceoryx2 round: its own pong process (CPU 1) and ping process (CPU 0); appends the
/// ping side's per-batch means.
fn iceoryx2_round(
    bin: &std::path::Path,
    tag: &str,
    plan: &Plan,
    out: &mut Vec<f64>,
) -> Result<(), DemoError> {
    use std::io::BufRead;
    let name = format!("capnp-shm-bench-{}-{tag}", std::process::id());
    let mut pong = Peer(
        Command::new(bin)
            .args(["pong", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err("spawn iceoryx2 pong", e))?,
    );
    // Wait for its subscriber, so no ping is sent before anyone listens.
    let stdout = pong.0.stdout.take().expect("piped");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| err("iceoryx2 pong", e))?;
    if !line.contains("ready") {
        return Err(err("iceoryx2 pong", "did not start"));
    }
    let ping = Command::new(bin)
        .args([
            "ping",
            &name,
            &plan.fast_batch.to_string(),
            &plan.batches.to_string(),
        ])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| err("iceoryx2 ping", e))?;
    if !ping.status.success() {
        return Err(err("iceoryx2 ping", ping.status));
    }
    out.extend(
        String::from_utf8_lossy(&ping.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok()),
    );
    pong.finish();
    Ok(())
}

fn median(v: &mut [f64]) -> Option<f64> {
    quantile(v, 0.5)
}

fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[((v.len() - 1) as f64 * q).round() as usize])
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let vm = cpuinfo.contains(" hypervisor");
    // SAFETY: sysconf only reads a system constant.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    json!({"cpus": cpus, "model": model, "kernel": kernel, "vm": vm})
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Value {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 1000.0).round() / 1000.0),
        _ => Value::Null,
    }
}

fn num(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |v| json!((v * 100.0).round() / 100.0))
}

/// Runs the comparison and prints the table (or the JSON object as the last line).
pub fn run(quick: bool, json_out: bool, peers: bool) -> Result<(), DemoError> {
    let plan = if quick {
        Plan {
            rounds: 5,
            batches: 10,
            fast_batch: 10_000,
            slow_batch: 300,
            stream_bytes: 32 * MIB,
            large_messages: 256,
        }
    } else {
        Plan {
            rounds: 9,
            batches: 20,
            fast_batch: 20_000,
            slow_batch: 1500,
            stream_bytes: 128 * MIB,
            large_messages: 1024,
        }
    };
    let iceoryx2 = if peers { iceoryx2_binary() } else { None };
    if peers && iceoryx2.is_none() {
        eprintln!("note: iceoryx2 row skipped: build it with `cargo build --release --manifest-path benches/iceoryx2-peer/Cargo.toml` (or set CAPNP_SHM_ICEORYX2)");
    }
    let mut ice = Vec::new();
    pin(0);
    let started = Instant::now();
    let mut rtt: Vec<Vec<f64>> = vec![Vec::new(); RTT_KINDS.len()];
    let mut stream: Vec<Vec<f64>> = vec![Vec::new(); STREAMS.len()];
    let mut large = Vec::new();
    for round in 0..plan.rounds {
        for (k, kind) in RTT_KINDS.iter().enumerate() {
            rtt_round(kind, &format!("rtt-{kind}-{round}"), &plan, &mut rtt[k])?;
        }
        if let Some(bin) = &iceoryx2 {
            iceoryx2_round(bin, &format!("ice-{round}"), &plan, &mut ice)?;
        }
        for (k, (kind, size)) in STREAMS.iter().enumerate() {
            stream[k].push(stream_round(
                kind,
                *size,
                &format!("st-{kind}-{size}-{round}"),
                &plan,
            )?);
        }
        large.push(large_round(&format!("large-{round}"), &plan)?);
        eprintln!(
            "round {}/{} done ({:.1} s)",
            round + 1,
            plan.rounds,
            started.elapsed().as_secs_f64()
        );
    }
    let memcpy = {
        let mut v: Vec<f64> = (0..plan.rounds)
            .map(|_| base::memcpy_gb_per_sec(MIB, plan.large_messages as usize * MIB))
            .collect();
        median(&mut v)
    };
    let mut p50 = |k: usize| median(&mut rtt[k].clone());
    let rtt_p50: Vec<Option<f64>> = (0..RTT_KINDS.len()).map(&mut p50).collect();
    let rtt_p99: Vec<Option<f64>> = (0..RTT_KINDS.len())
        .map(|k| quantile(&mut rtt[k].clone(), 0.99))
        .collect();
    let st: Vec<Option<f64>> = stream.iter_mut().map(|v| median(v)).collect();
    let ours_1m = median(&mut large);
    let by = |k: &str| RTT_KINDS.iter().position(|x| *x == k).expect("kind");
    let ice_p50 = median(&mut ice.clone());
    let ice_p99 = quantile(&mut ice.clone(), 0.99);
    let rtt_obj = |v: &[Option<f64>], ice: Option<f64>| {
        let mut o = serde_json::Map::new();
        for (k, kind) in RTT_KINDS.iter().enumerate() {
            o.insert((*kind).into(), num(v[k]));
        }
        o.insert("iceoryx2".into(), num(ice));
        Value::Object(o)
    };
    let report = json!({
        "machine": machine(),
                "rtt_ns": rtt_obj(&rtt_p50, ice_p50),
        "rtt_p99_ns": rtt_obj(&rtt_p99, ice_p99),
        "stream_msgs_per_sec": {
            "floor_64": num(st[0]), "ours_64": num(st[1]), "uds_64": num(st[2]),
            "floor_1k": num(st[3]), "ours_1k": num(st[4]), "floor_64k": num(st[5]), "ours_64k": num(st[6]),
        },
        "large_gb_per_sec": {"memcpy_1m": num(memcpy), "ours_1m": num(ours_1m)},
        "ratios": {
            "spin_over_floor": ratio(rtt_p50[by("spin")], rtt_p50[by("floor")]),
            "capnp_over_floor": ratio(rtt_p50[by("spin_capnp")], rtt_p50[by("floor")]),
            "block_over_futex": ratio(rtt_p50[by("block")], rtt_p50[by("futex_floor")]),
            "uds_over_spin": ratio(rtt_p50[by("uds")], rtt_p50[by("spin")]),
                        "iceoryx2_over_spin": ratio(ice_p50, rtt_p50[by("spin")]),
            "stream_64_of_floor": ratio(st[1], st[0]),
            "large_of_memcpy": ratio(ours_1m, memcpy),
        },
    });
    if json_out {
        println!("{report}");
    } else {
        print_report(&report, started.elapsed());
    }
    Ok(())
}

fn print_report(r: &Value, took: Duration) {
    let m = &r["machine"];
    println!(
        "machine: {} cpus, {}, kernel {}{}",
        m["cpus"],
        m["model"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        if m["vm"] == true { ", VM" } else { "" }
    );
    println!("\nround trip, 64 B        p50 ns     p99 ns   vs floor");
    let floor = r["rtt_ns"]["floor"].as_f64();
    for k in RTT_KINDS.iter().chain(["iceoryx2"].iter()) {
        let p50 = r["rtt_ns"][*k].as_f64();
        let p99 = r["rtt_p99_ns"][*k].as_f64();
        let vs = match (p50, floor) {
            (Some(a), Some(f)) if f > 0.0 => format!("{:.2}x", a / f),
            _ => "-".into(),
        };
        let show = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        println!("  {k:<18} {:>10} {:>10} {vs:>10}", show(p50), show(p99));
    }
    println!("\none-way streaming        msgs/s");
    for (k, v) in r["stream_msgs_per_sec"].as_object().into_iter().flatten() {
        println!("  {k:<18} {:>14.0}", v.as_f64().unwrap_or(0.0));
    }
    println!("\n1 MiB messages           GB/s");
    for (k, v) in r["large_gb_per_sec"].as_object().into_iter().flatten() {
        println!("  {k:<18} {:>14.2}", v.as_f64().unwrap_or(0.0));
    }
    println!("\nratios");
    for (k, v) in r["ratios"].as_object().into_iter().flatten() {
        println!(
            "  {k:<22} {}",
            if v.is_null() {
                "n/a".to_string()
            } else {
                v.to_string()
            }
        );
    }
    println!(
        "\n(measured in {:.1} s; baselines and ours interleaved per round)",
        took.as_secs_f64()
    );
}

/// The peer side of one measurement (`capnp-shm-demo bench-peer KIND NAME`).
pub fn peer(kind: &str, name: &str) -> Result<(), DemoError> {
    pin(1);
    let mut parts = kind.split(':');
    let head = parts.next().unwrap_or_default();
    let mut arg = |what: &str| -> Result<u64, DemoError> {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| err("bench peer argument", what))
    };
    match head {
        "floor" => {
            base::floor_echo(&Mapping::open(name, base::FLOOR_LEN).map_err(|e| err("shm", e))?)
        }
        "futex_floor" => {
            base::futex_echo(&Mapping::open(name, base::FLOOR_LEN).map_err(|e| err("shm", e))?)
        }
        "uds" => {
            let s = UnixStream::connect(name).map_err(|e| err("connect", e))?;
            let mut w = s.try_clone().map_err(|e| err("socket", e))?;
            base::stream_echo(&mut &s, &mut w);
        }
        "pipe" => base::stream_echo(&mut std::io::stdin().lock(), &mut std::io::stdout().lock()),
        "spin" | "block" | "spin_capnp" => {
            let mode = if head == "block" {
                WaitMode::Block
            } else {
                WaitMode::Poll
            };
            let b = Channel::builder(name).open_timeout(WAIT);
            let mut b = if mode == WaitMode::Block {
                b.wait_mode(mode)
            } else {
                b.poll_interval(Duration::ZERO)
            }
            .open()?;
            let mut reply = typed_sample();
            let mut buf = Vec::with_capacity(256);
            loop {
                let r = if head == "spin_capnp" {
                    let seq = b
                        .recv_message(Duration::from_secs(60))
                        .and_then(|m| Ok(m.root::<sample::Owned>()?.get_seq()));
                    seq.and_then(|seq| {
                        reply
                            .get_root::<sample::Builder>()
                            .map_err(Error::Encode)?
                            .set_seq(seq);
                        b.send_message(&reply, WAIT)
                    })
                } else {
                    b.recv_into(&mut buf, Duration::from_secs(60))
                        .and_then(|_| b.send(&buf, WAIT))
                };
                match r {
                    Ok(()) => {}
                    Err(Error::Closed) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        "ring" => {
            let (size, slots, n) = (arg("size")? as usize, arg("slots")?, arg("n")?);
            let ring = RawRing { slots, size };
            ring.consume(
                &Mapping::open(name, ring.len()).map_err(|e| err("shm", e))?,
                n,
            );
        }
        "stream" | "large" => {
            let n = arg("n")?;
            let mut b = Channel::builder(name)
                .poll_interval(Duration::ZERO)
                .open_timeout(WAIT)
                .open()?;
            let mut buf = Vec::new();
            b.recv_into(&mut buf, WAIT)?; // handshake
            b.send(b"ready", WAIT)?;
            let mut got = 0;
            while got < n {
                got += if head == "large" {
                    // Read every word in place (zero-copy), as a consumer of the data would.
                    let msg = b.recv(WAIT)?;
                    // SAFETY: u64 has no invalid bit patterns; align_to only reinterprets the
                    // aligned middle of the slice (slot payloads are 8-byte aligned).
                    let (_, words, _) = unsafe { msg.align_to::<u64>() };
                    std::hint::black_box(words.iter().fold(0u64, |acc, w| acc ^ w));
                    1
                } else {
                    b.recv_batch(256, WAIT, |m| {
                        std::hint::black_box(m);
                    })? as u64
                };
            }
            b.send(b"done", WAIT)?;
            // Stay until A has read the ack and closed.
            let _ = b.recv(WAIT);
        }
        "uds-stream" => {
            let n = arg("n")?;
            let s = UnixStream::connect(name).map_err(|e| err("connect", e))?;
            let mut w = s.try_clone().map_err(|e| err("socket", e))?;
            let mut r = s;
            let mut msg = [0u8; 64];
            for _ in 0..n {
                r.read_exact(&mut msg).map_err(|e| err("uds", e))?;
            }
            w.write_all(&[1]).map_err(|e| err("uds ack", e))?;
        }
        other => return Err(err("unknown bench peer", other)),
    }
    let _ = remove_channel(name);
    Ok(())
}
