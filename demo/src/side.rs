//! One side of the demo: attach, send paced `Sample` messages, receive the peer's through
//! the callback thread (checking order and loss, timing each one), apply the tuning
//! schedule, print a line per second, and report.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capnp::message::{Builder, HeapAllocator};
use capnp_shm_transport::typed::default_reader_options;
use capnp_shm_transport::{
    Channel, Control, Error, LinkEvent, OnDisconnect, OnReceiveMessage, PeerState, ReconnectPolicy,
    SendMessage, WaitMode,
};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::demo_capnp::sample;
use crate::pacing::{Change, Pace, Schedule};
use crate::report::{latency_histogram, print_table, CpuMeter, Report};
use crate::wakeup::Wakeup;
use crate::{Traffic, Wait};

/// Payload bytes carried by each demo message.
/// Errors of the demo: the library's, or the demo's own (one line each).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Channel(#[from] Error),
    #[error(transparent)]
    Encode(#[from] capnp::Error),
    #[error("{0}")]
    Other(String),
}

/// Everything one side needs to run.
pub struct SideConfig {
    pub name: String,
    pub creator: bool,
    pub traffic: Traffic,
    pub wait: Wait,
    pub poll_us: u32,
    pub remote_poll_us: Option<u32>,
    pub schedule: Schedule,
    pub open_timeout: Duration,
    pub reconnect: bool,
}

/// What the receive callback learns, shared with the main thread.
struct Seen {
    received: u64,
    bytes: u64,
    lost: u64,
    out_of_order: u64,
    decode_errors: u64,
    next_seq: u64,
    total: Histogram<u64>,
    second: Histogram<u64>,
    second_received: u64,
}

impl Seen {
    fn record(&mut self, msg: capnp::Result<(u64, u64, usize)>, now: u64) {
        let Ok((seq, sent_ns, len)) = msg else {
            self.decode_errors += 1;
            return;
        };
        if seq < self.next_seq {
            self.out_of_order += 1;
        } else {
            self.lost += seq - self.next_seq;
            self.next_seq = seq + 1;
        }
        self.received += 1;
        self.second_received += 1;
        self.bytes += len as u64;
        let latency = now.saturating_sub(sent_ns).max(1);
        let _ = self.total.record(latency);
        let _ = self.second.record(latency);
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in both processes.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, a valid local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn apply_wait(control: &Control, remote: bool, wait: Wait, poll_us: u32) -> Result<(), Error> {
    let (mode, poll) = match wait {
        Wait::Block => (WaitMode::Block, poll_us),
        Wait::Spin => (WaitMode::Poll, 0),
        Wait::Sleep => (WaitMode::Poll, poll_us.max(1)),
    };
    let poll = Duration::from_micros(poll.into());
    if remote {
        control.set_remote_poll_interval(poll)?;
        control.set_remote_wait_mode(mode);
    } else {
        control.set_local_poll_interval(poll)?;
        control.set_local_wait_mode(mode);
    }
    Ok(())
}

fn wait_name(control: &Control) -> &'static str {
    match (
        control.local_wait_mode(),
        control.local_poll_interval().is_zero(),
    ) {
        (WaitMode::Block, _) => "block",
        (WaitMode::Poll, true) => "spin",
        (WaitMode::Poll, false) => "sleep",
    }
}

/// Attaches one side: create (A) or open (B), with the receive callback and events; every
/// event also wakes the main thread (`wakeup`).
fn attach(
    config: &SideConfig,
    seen: &Arc<Mutex<Seen>>,
    wakeup: &Arc<Wakeup>,
) -> Result<Channel, DemoError> {
    let recorder = seen.clone();
    let mut builder = Channel::builder(&config.name)
        .slot_size(config.traffic.slot_size)
        .slot_count(config.traffic.slot_count)
        .on_receive_message(default_reader_options(), move |msg| {
            let now = monotonic_ns();
            let fields = msg
                .map_err(|e| capnp::Error::failed(e.to_string()))
                .and_then(|reader| {
                    let s = reader.get_root::<sample::Reader<'_>>()?;
                    Ok((s.get_seq(), s.get_sent_ns(), s.get_payload()?.len()))
                });
            recorder.lock().record(fields, now);
        });
    builder = match config.wait {
        Wait::Block => builder.wait_mode(WaitMode::Block),
        Wait::Spin => builder.poll_interval(Duration::ZERO),
        Wait::Sleep => builder.poll_interval(Duration::from_micros(config.poll_us.max(1).into())),
    };
    let report = (!config.creator && config.reconnect).then(|| (config.traffic.json, seen.clone()));
    let wakeup = wakeup.clone();
    builder = builder.on_event(move |event| {
        if let Some((json, seen)) = &report {
            report_event(event, *json, seen);
        }
        wakeup.notify();
    });
    if config.creator {
        return Ok(builder.create()?);
    }
    if config.reconnect {
        builder = builder
            .reconnect(ReconnectPolicy::default())
            .on_disconnect(OnDisconnect::WaitForReconnect);
    }
    Ok(builder.open_timeout(config.open_timeout).open()?)
}

/// Prints a connection event (a JSON line with `--json`) and restarts the sequence check
/// when a new side A (numbering from 0 again) is attached.
fn report_event(event: LinkEvent, json: bool, seen: &Mutex<Seen>) {
    let value = match event {
        LinkEvent::PeerDead => json!({"event": "peer_dead"}),
        LinkEvent::PeerClosed => json!({"event": "peer_closed"}),
        LinkEvent::PeerAttached => json!({"event": "peer_attached"}),
        LinkEvent::Reconnecting { attempt } => json!({"event": "reconnecting", "attempt": attempt}),
        LinkEvent::Reconnected { generation } => {
            seen.lock().next_seq = 0;
            json!({"event": "reconnected", "generation": generation})
        }
        LinkEvent::GaveUp { .. } => json!({"event": "gave_up"}),
        _ => json!({"event": format!("{event:?}")}),
    };
    if json {
        println!("{value}");
        let _ = std::io::stdout().flush();
    } else {
        eprintln!("[b] {}", value["event"].as_str().unwrap_or("event"));
    }
}

/// Runs one side for the configured time and reports.
pub fn run(config: &SideConfig) -> Result<Report, DemoError> {
    run_then(config, || Ok(()))
}

/// Like [`run`], calling `attached` once the channel exists (to start side B).
fn run_then(
    config: &SideConfig,
    attached: impl FnOnce() -> Result<(), DemoError>,
) -> Result<Report, DemoError> {
    capnp_shm_transport::lower_timer_slack();
    let seen = Arc::new(Mutex::new(Seen {
        received: 0,
        bytes: 0,
        lost: 0,
        out_of_order: 0,
        decode_errors: 0,
        next_seq: 0,
        total: latency_histogram(),
        second: latency_histogram(),
        second_received: 0,
    }));
    let wakeup = Arc::new(Wakeup::default());
    let mut channel = attach(config, &seen, &wakeup)?;
    if let Some(us) = config.remote_poll_us {
        let wait = if us == 0 { Wait::Spin } else { Wait::Sleep };
        apply_wait(channel.control(), true, wait, us)?;
    }
    attached()?;
    let role = if config.creator { "a" } else { "b" };
    let mut message = Builder::new(HeapAllocator::new());
    message
        .init_root::<sample::Builder>()
        .set_payload(&vec![0x5a; config.traffic.message_bytes]);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(config.traffic.seconds);
    let mut cpu_total = CpuMeter::start();
    let mut cpu_second = CpuMeter::start();
    let mut next_tick = start + Duration::from_secs(1);
    let mut next_send = start;
    let mut steps = config.schedule.0.iter().peekable();
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        while let Some(step) = steps.next_if(|s| start + s.at <= now) {
            let (wait, poll) = match step.change {
                Change::PollUs(0) => (Wait::Spin, 0),
                Change::PollUs(us) => (Wait::Sleep, us),
                Change::Mode(w) => (w, 50),
            };
            apply_wait(channel.control(), step.remote, wait, poll)?;
        }
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            live_line(
                role,
                &channel,
                &seen,
                cpu_second.lap(),
                (now - start).as_secs(),
            );
            if let Some(end_early) = peer_check(&channel, config.reconnect)? {
                if end_early {
                    break;
                }
            }
        }
        match config.traffic.pace {
            Pace::Off => {
                // Nothing to send: sleep until the next thing to do (the end, the next
                // second's line, the next schedule step) or a channel event.
                let step = steps.peek().map(|s| start + s.at);
                wakeup.wait_until(step.into_iter().fold(end.min(next_tick), Instant::min));
                if peer_check(&channel, config.reconnect)? == Some(true) {
                    break;
                }
                continue;
            }
            Pace::Every(period) => {
                if now < next_send {
                    std::thread::sleep((next_send - now).min(Duration::from_millis(10)));
                    continue;
                }
                next_send += period;
            }
            Pace::Burst => {}
        }
        {
            let mut s = message.get_root::<sample::Builder>()?;
            s.set_seq(sent);
            s.set_sent_ns(monotonic_ns());
        }
        match channel.send_message(&message, Duration::from_millis(100)) {
            Ok(()) => sent += 1,
            Err(Error::Timeout { .. } | Error::Reconnecting) => {}
            Err(Error::Closed) => break, // the peer finished first
            Err(e) => return Err(e.into()),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_percent = cpu_total.lap();
    // Let the receive thread take what is already in the ring.
    std::thread::sleep(Duration::from_millis(20));
    let control = channel.control().clone();
    let report = {
        let s = seen.lock();
        Report {
            role,
            sent,
            received: s.received,
            lost: s.lost,
            out_of_order: s.out_of_order,
            decode_errors: s.decode_errors,
            seconds,
            bytes_received: s.bytes,
            latency_ns: s.total.clone(),
            cpu_percent,
            local_poll_us: control.local_poll_interval().as_micros() as u64,
            remote_poll_us: control.remote_poll_interval().as_micros() as u64,
            wait: wait_name(&control),
        }
    };
    drop(channel);
    Ok(report)
}

/// Whether to end early: `Some(true)` when the peer closed, an error when it died and we do
/// not reconnect, or when our receive thread stopped on one (such as a corrupt slot).
fn peer_check(channel: &Channel, reconnect: bool) -> Result<Option<bool>, DemoError> {
    if let Some(e) = channel.take_receive_error() {
        return Err(e.into());
    }
    match channel.control().peer_state() {
        PeerState::Closed if !reconnect => Ok(Some(true)),
        PeerState::Dead if !reconnect => Err(Error::PeerDead.into()),
        _ => Ok(None),
    }
}

/// The per-second line on stderr: received rate, latency, CPU, wait settings.
fn live_line(role: &str, channel: &Channel, seen: &Mutex<Seen>, cpu: f64, second: u64) {
    let (received, p50, p99) = {
        let mut s = seen.lock();
        let q = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let line = (s.second_received, q(&s.second, 0.5), q(&s.second, 0.99));
        s.second.reset();
        s.second_received = 0;
        line
    };
    let c = channel.control();
    let line = format!(
        "[{role}] {second:>3}s {received:>10} msg/s  p50 {p50:>8.1} µs  p99 {p99:>8.1} µs  cpu {cpu:>5.1}%  {} poll {}/{} µs\n",
        wait_name(c),
        c.local_poll_interval().as_micros(),
        c.remote_poll_interval().as_micros(),
    );
    // One write per line, so the two processes' lines do not interleave.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `run`: side A here, side B as a child of this binary, one report for both.
pub fn run_both(traffic: &Traffic, wait: Wait, poll_us: u32) -> Result<(), DemoError> {
    let name = format!("capnp-shm-demo-{}", std::process::id());
    let exe = std::env::current_exe()
        .map_err(|e| DemoError::Other(format!("cannot find this program: {e}")))?;
    let wait_arg = match wait {
        Wait::Spin => "spin",
        Wait::Sleep => "sleep",
        Wait::Block => "block",
    };
    let config = SideConfig {
        name: name.clone(),
        creator: true,
        traffic: traffic.clone(),
        wait,
        poll_us,
        remote_poll_us: None,
        schedule: Schedule::default(),
        open_timeout: Duration::ZERO,
        reconnect: false,
    };
    let mut child = None;
    let report_a = run_then(&config, || {
        let spawned = Command::new(&exe)
            .args([
                "b",
                "--name",
                &name,
                "--json",
                "--seconds",
                &traffic.seconds.to_string(),
            ])
            .args(["--pace", &traffic.pace.arg(), "--wait", wait_arg])
            .args(["--message-bytes", &traffic.message_bytes.to_string()])
            .args(["--local-poll-us", &poll_us.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| DemoError::Other(format!("cannot start side B: {e}")))?;
        child = Some(spawned);
        Ok(())
    });
    let child = child.ok_or_else(|| DemoError::Other("side B was not started".into()))?;
    let output = child
        .wait_with_output()
        .map_err(|e| DemoError::Other(format!("side B: {e}")))?;
    let report_a = report_a?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report_b: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            DemoError::Other(format!(
                "side B failed ({}) without a report",
                output.status
            ))
        })?;
    let a = report_a.to_json();
    if traffic.json {
        println!("{}", json!({"a": a, "b": report_b}));
    } else {
        print_table(&[&a, &report_b]);
    }
    Ok(())
}
