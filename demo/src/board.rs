//! `board`: a latest-value board between two processes. The writer (here) publishes a
//! Cap'n Proto `Sample` at a pace; a reader (a child process of this binary) waits for
//! each newer value, reads the newest, and reports how fresh the values were when read
//! and how many it skipped (a board reader skips to now instead of queueing).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capnp_shm_transport::board::{monotonic_ns, Board, BoardWait};
use capnp_shm_transport::Error;
use serde_json::{json, Value};

use crate::demo_capnp::sample;
use crate::pacing::Pace;
use crate::report::latency_histogram;
use crate::side::DemoError;
use crate::Wait;

/// What the `board` and `board-reader` subcommands take.
pub struct BoardArgs {
    pub name: Option<String>,
    pub seconds: f64,
    pub pace: Pace,
    pub value_size: usize,
    pub history: usize,
    pub wait: Wait,
    pub json: bool,
}

fn board_wait(wait: Wait) -> BoardWait {
    match wait {
        Wait::Spin => BoardWait::Spin,
        Wait::Sleep => BoardWait::Sleep(Duration::from_micros(50)),
        Wait::Block => BoardWait::Block,
    }
}

fn wait_arg(wait: Wait) -> &'static str {
    match wait {
        Wait::Spin => "spin",
        Wait::Sleep => "sleep",
        Wait::Block => "block",
    }
}

/// `board`: the writer here, the reader as a child; one report for both.
pub fn run(args: &BoardArgs) -> Result<(), DemoError> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("capnp-shm-demo-board-{}", std::process::id()));
    let mut writer = Board::builder(&name)
        .value_size(args.value_size)
        .history(args.history)
        .create()?;
    let exe = std::env::current_exe()
        .map_err(|e| DemoError::Other(format!("cannot find this program: {e}")))?;
    let child = Command::new(exe)
        .args(["board-reader", "--name", &name, "--json"])
        .args(["--seconds", &(args.seconds + 5.0).to_string()])
        .args(["--wait", wait_arg(args.wait)])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| DemoError::Other(format!("cannot start the reader: {e}")))?;
    // The payload fills what the framed message leaves of the value size.
    let framing = {
        let mut empty = capnp::message::Builder::new_default();
        empty.init_root::<sample::Builder>().set_payload(&[]);
        capnp::serialize::compute_serialized_size_in_words(&empty) * 8
    };
    let payload = vec![0x5a; args.value_size.saturating_sub(framing) / 8 * 8];
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut published = 0u64;
    while Instant::now() < end {
        let mut message = capnp::message::Builder::new_default();
        {
            let mut s = message.init_root::<sample::Builder>();
            s.set_seq(published);
            s.set_sent_ns(monotonic_ns());
            s.set_payload(&payload);
        }
        writer.publish_message(&message)?;
        published += 1;
        match args.pace {
            Pace::Burst => {}
            Pace::Every(d) => std::thread::sleep(d),
            Pace::Off => std::thread::sleep(end.saturating_duration_since(Instant::now())),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(writer); // closes the board: the reader reports and exits
    let out = child
        .wait_with_output()
        .map_err(|e| DemoError::Other(format!("reader: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reader: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| DemoError::Other(format!("the reader failed ({})", out.status)))?;
    let report = json!({
        "board": name,
        "value_size": args.value_size,
        "history": args.history,
        "wait": wait_arg(args.wait),
        "writer": {
            "published": published,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "values_per_sec": (published as f64 / seconds).round(),
        },
        "reader": reader,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "board {name}: writer published {published} values in {seconds:.2} s; reader read {} \
             values and skipped {}; age when read p50 {} ns, p99 {} ns, max {} ns",
            reader["read"],
            reader["skipped"],
            reader["age_ns"]["p50"],
            reader["age_ns"]["p99"],
            reader["age_ns"]["max"]
        );
    }
    Ok(())
}

/// `board-reader`: reads until the writer closes (or dies, or `seconds` pass).
pub fn read(args: &BoardArgs) -> Result<(), DemoError> {
    let name = args.name.as_deref().expect("clap requires --name");
    let mut reader = Board::builder(name)
        .wait(board_wait(args.wait))
        .open(Duration::from_secs(5))?;
    let mut words = Vec::new();
    let mut ages = latency_histogram();
    let (mut read, mut skipped, mut seen) = (0u64, 0u64, 0u64);
    let mut last_value: Option<u64> = None;
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let ended = loop {
        let left = end.saturating_duration_since(Instant::now());
        match reader.wait_newer(seen, left.min(Duration::from_millis(100))) {
            Ok(_) => {}
            Err(Error::Timeout { .. }) if !left.is_zero() => continue,
            Err(Error::Timeout { .. }) => break "deadline",
            Err(Error::Closed) => break "writer closed",
            Err(Error::WriterDead) => break "writer died",
            Err(e) => return Err(e.into()),
        }
        let Some((stamp, message)) = reader.latest_message(&mut words, Default::default())? else {
            continue;
        };
        let value = message.get_root::<sample::Reader>()?;
        let sent = value.get_sent_ns();
        ages.saturating_record(monotonic_ns().saturating_sub(sent).max(1));
        let v = value.get_seq();
        skipped += last_value.map_or(v, |l| v.saturating_sub(l + 1));
        last_value = Some(v);
        read += 1;
        seen = stamp.sequence;
    };
    let q = |q: f64| {
        if ages.is_empty() {
            0
        } else {
            ages.value_at_quantile(q)
        }
    };
    let report = json!({
        "read": read,
        "skipped": skipped,
        "newest": seen,
        "ended": ended,
        "age_ns": {"p50": q(0.5), "p99": q(0.99), "max": ages.max()},
    });
    if args.json {
        println!("{report}");
    } else {
        println!("reader: {report}");
    }
    Ok(())
}
