//! `capnp-shm-demo`: runs both sides of a channel and reports what moved.
//!
//! `capnp-shm-demo run` creates side A, starts side B as a child process of the same
//! binary, lets both send sequence-numbered messages for a few seconds, and prints one
//! report per side (sent, received, lost, out of order, messages per second).

use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capnp_shm_transport::{remove_channel, Channel, Error};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "capnp-shm-demo",
    version,
    about = "Demo of the capnp-shm-transport channel"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run side A here and side B as a child process, then report both.
    Run(Traffic),
    /// Run side A (creates the channel).
    A {
        /// Channel name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        traffic: Traffic,
    },
    /// Run side B (opens the channel, waiting for A).
    B {
        /// Channel name.
        #[arg(long)]
        name: String,
        /// How long to wait for side A, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        open_timeout_ms: u64,
        #[command(flatten)]
        traffic: Traffic,
    },
    /// Remove a channel's segments.
    Remove {
        /// Channel name.
        name: String,
    },
}

#[derive(Args, Clone)]
struct Traffic {
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    seconds: f64,
    /// Payload bytes per slot (side A).
    #[arg(long, default_value_t = 64)]
    slot_size: usize,
    /// Slots per direction, a power of two (side A).
    #[arg(long, default_value_t = 256)]
    slot_count: usize,
    /// `burst` (as fast as the ring allows), a period such as `30ms` or `100us`, or `off`.
    #[arg(long, default_value = "burst", value_parser = parse_pace)]
    pace: Pace,
    /// Poll interval when idle, in microseconds (0 = busy spin).
    #[arg(long, default_value_t = 0)]
    poll_us: u64,
}

#[derive(Clone, Copy)]
enum Pace {
    Burst,
    Every(Duration),
    Off,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

fn parse_pace(s: &str) -> Result<Pace, String> {
    let bad = || format!("`{s}` is not `burst`, `off` or a period like `30ms`, `100us`, `1s`");
    match s {
        "burst" => return Ok(Pace::Burst),
        "off" => return Ok(Pace::Off),
        _ => {}
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let period = match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        _ => return Err(bad()),
    };
    if period.is_zero() {
        return Err(bad());
    }
    Ok(Pace::Every(period))
}

/// What the receive callback learns from the sequence numbers.
#[derive(Default)]
struct Seen {
    received: AtomicU64,
    lost: AtomicU64,
    out_of_order: AtomicU64,
    next: AtomicU64,
}

impl Seen {
    /// Called on the receive thread only; atomics let the main thread read the counts.
    fn record(&self, msg: &[u8]) {
        let Some(seq) = msg
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        else {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let next = self.next.load(Ordering::Relaxed);
        if seq < next {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        } else {
            self.lost.fetch_add(seq - next, Ordering::Relaxed);
            self.next.store(seq + 1, Ordering::Relaxed);
        }
        self.received.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(traffic) => run_both(traffic),
        Cmd::A { name, traffic } => {
            side(&name, true, &traffic, Duration::ZERO).map(|r| println!("{r}"))
        }
        Cmd::B {
            name,
            open_timeout_ms,
            traffic,
        } => side(
            &name,
            false,
            &traffic,
            Duration::from_millis(open_timeout_ms),
        )
        .map(|r| println!("{r}")),
        Cmd::Remove { name } => remove_channel(&name).map(|existed| {
            println!(
                "{}",
                if existed {
                    "removed"
                } else {
                    "no such channel"
                }
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capnp-shm-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_both(traffic: Traffic) -> Result<(), Error> {
    let name = format!("capnp-shm-demo-{}", std::process::id());
    let exe = std::env::current_exe().map_err(|source| Error::Os {
        op: "current_exe",
        name: name.clone(),
        source,
    })?;
    let pace = match traffic.pace {
        Pace::Burst => "burst".to_string(),
        Pace::Off => "off".to_string(),
        Pace::Every(d) => format!("{}us", d.as_micros()),
    };
    // Side A first, so B's open finds it at once; B runs as a child of this binary.
    let spawn_b = || {
        Command::new(&exe)
            .args([
                "b",
                "--name",
                &name,
                "--seconds",
                &traffic.seconds.to_string(),
            ])
            .args(["--pace", &pace, "--poll-us", &traffic.poll_us.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Os {
                op: "spawn side B",
                name: name.clone(),
                source,
            })
    };
    let report_a = side_with(&name, &traffic, spawn_b)?;
    println!("{report_a}");
    Ok(())
}

/// Runs side A, starting `peer` once the channel exists, and prints the peer's report.
fn side_with(
    name: &str,
    traffic: &Traffic,
    peer: impl FnOnce() -> Result<std::process::Child, Error>,
) -> Result<String, Error> {
    let (channel, seen) = attach(name, true, traffic, Duration::ZERO)?;
    let child = peer()?;
    let report = drive(channel, seen, traffic, "a")?;
    let output = child.wait_with_output().map_err(|source| Error::Os {
        op: "wait for side B",
        name: name.to_string(),
        source,
    })?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        eprintln!("side B failed: {}", output.status);
    }
    Ok(report)
}

fn side(
    name: &str,
    creator: bool,
    traffic: &Traffic,
    open_timeout: Duration,
) -> Result<String, Error> {
    let (channel, seen) = attach(name, creator, traffic, open_timeout)?;
    drive(channel, seen, traffic, if creator { "a" } else { "b" })
}

fn attach(
    name: &str,
    creator: bool,
    traffic: &Traffic,
    open_timeout: Duration,
) -> Result<(Channel, Arc<Seen>), Error> {
    let seen = Arc::new(Seen::default());
    let recorder = seen.clone();
    let builder = Channel::builder(name)
        .slot_size(traffic.slot_size)
        .slot_count(traffic.slot_count)
        .poll_interval(Duration::from_micros(traffic.poll_us))
        .on_receive(move |msg| recorder.record(msg));
    let channel = if creator {
        builder.create()?
    } else {
        builder.open_timeout(open_timeout).open()?
    };
    Ok((channel, seen))
}

/// Sends for the configured time, then reports.
fn drive(
    mut channel: Channel,
    seen: Arc<Seen>,
    traffic: &Traffic,
    role: &str,
) -> Result<String, Error> {
    let len = traffic.slot_size.clamp(8, 64).min(traffic.slot_size);
    let mut msg = vec![0u8; len];
    let start = Instant::now();
    let duration = Duration::from_secs_f64(traffic.seconds);
    let mut sent = 0u64;
    let mut next_due = start;
    while start.elapsed() < duration {
        match traffic.pace {
            Pace::Off => std::thread::sleep(Duration::from_millis(10).min(duration)),
            Pace::Burst => {}
            Pace::Every(period) => {
                let now = Instant::now();
                if now < next_due {
                    std::thread::sleep(next_due - now);
                }
                next_due += period;
            }
        }
        if matches!(traffic.pace, Pace::Off) || msg.len() < 8 {
            continue;
        }
        msg[..8].copy_from_slice(&sent.to_le_bytes());
        match channel.send(&msg, Duration::from_millis(100)) {
            Ok(()) => sent += 1,
            Err(Error::Timeout { .. }) => {}
            Err(Error::Closed) => break,
            Err(e) => return Err(e),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let received = seen.received.load(Ordering::Relaxed);
    Ok(format!(
        "side {role}: sent {sent:>10}  received {received:>10}  lost {:>4}  out of order {:>4}  {:>12.0} msg/s received over {seconds:.2} s",
        seen.lost.load(Ordering::Relaxed),
        seen.out_of_order.load(Ordering::Relaxed),
        received as f64 / seconds,
    ))
}
