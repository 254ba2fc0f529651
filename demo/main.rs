//! `capnp-shm-demo`: both sides of a channel exchanging typed Cap'n Proto messages, with
//! live poll tuning, latency histograms and channel tools.
//!
//! `capnp-shm-demo run` creates side A, starts side B as a child process of this binary,
//! lets both send `Sample` messages for a few seconds and prints one report for both.

// clippy.toml funnels the library's atomics through its loom-aware module; the demo and
// its baselines are not model-checked and use std's.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod baselines;
mod bench;
mod report;
mod side;
mod tools;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Run(RunArgs),
    /// Run side A (creates the channel).
    A(SideArgs),
    /// Run side B (opens the channel, waiting for side A).
    B(SideArgs),
    /// Compare this transport with the hardware floor and kernel IPC, measured in one run.
    Bench {
        /// A short run (under 20 s).
        #[arg(long)]
        quick: bool,
        /// One JSON object as the last line on stdout.
        #[arg(long)]
        json: bool,
        /// Include peer libraries (iceoryx2) when built with them.
        #[arg(long)]
        peers: bool,
    },
    /// The other process of one `bench` measurement (internal).
    #[command(hide = true)]
    BenchPeer { kind: String, name: String },
    /// List the channels in /dev/shm.
    List,
    /// Print one channel's headers.
    Inspect {
        /// Channel name.
        name: String,
    },
    /// Remove a channel's segments, or every stale channel.
    Remove {
        /// Channel name.
        #[arg(required_unless_present = "stale", conflicts_with = "stale")]
        name: Option<String>,
        /// Remove every channel whose creator process is gone.
        #[arg(long)]
        stale: bool,
    },
}

/// How a side waits when idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Wait {
    /// Busy spin (poll interval 0).
    Spin,
    /// Sleep the poll interval per idle round.
    Sleep,
    /// Spin briefly, then sleep on a futex until woken (the library default).
    Block,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    traffic: Traffic,
    /// Poll interval of both sides in µs (selects spin for 0, sleep otherwise, unless
    /// --wait says otherwise).
    #[arg(long)]
    poll_us: Option<u32>,
    /// How both sides wait when idle.
    #[arg(long, value_enum)]
    wait: Option<Wait>,
}

#[derive(Args, Clone)]
struct SideArgs {
    /// Channel name.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    traffic: Traffic,
    /// This side's poll interval in µs.
    #[arg(long)]
    local_poll_us: Option<u32>,
    /// Ask the peer to use this poll interval (µs).
    #[arg(long)]
    remote_poll_us: Option<u32>,
    /// How this side waits when idle.
    #[arg(long, value_enum)]
    wait: Option<Wait>,
    /// Changes during the run, e.g. "2s:local=0,5s:remote=2000" (µs; or =spin/sleep/block).
    #[arg(long, value_parser = side::parse_schedule)]
    tune: Option<side::Schedule>,
    /// Side B: how long to wait for side A, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    open_timeout_ms: u64,
    /// Side B: re-attach when side A restarts, reporting each transition.
    #[arg(long)]
    reconnect: bool,
}

#[derive(Args, Clone)]
pub struct Traffic {
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    pub seconds: f64,
    /// Payload bytes per slot (side A).
    #[arg(long, default_value_t = 256)]
    pub slot_size: usize,
    /// Slots per direction, a power of two (side A).
    #[arg(long, default_value_t = 256)]
    pub slot_count: usize,
    /// `burst` (as fast as the ring allows), a period such as `30ms` or `100us`, or `off`.
    #[arg(long, default_value = "burst", value_parser = side::parse_pace)]
    pub pace: side::Pace,
    /// One JSON object as the last line on stdout (and event lines before it).
    #[arg(long)]
    pub json: bool,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

/// The wait mode and poll interval a side starts with.
pub fn wait_settings(wait: Option<Wait>, poll_us: Option<u32>) -> (Wait, u32) {
    match (wait, poll_us) {
        (Some(Wait::Spin), _) => (Wait::Spin, 0),
        (Some(Wait::Sleep), poll) => (Wait::Sleep, poll.filter(|&p| p > 0).unwrap_or(50)),
        (Some(Wait::Block), poll) => (Wait::Block, poll.unwrap_or(0)),
        (None, Some(0)) => (Wait::Spin, 0),
        (None, Some(poll)) => (Wait::Sleep, poll),
        (None, None) => (Wait::Block, 0),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One clear line (clap's first), not the usage block.
            let text = e.render().to_string();
            eprintln!(
                "capnp-shm-demo: {}",
                text.lines()
                    .next()
                    .unwrap_or("bad arguments")
                    .trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
    };
    let result = match cli.command {
        Cmd::Run(args) => {
            let (wait, poll) = wait_settings(args.wait, args.poll_us);
            side::run_both(&args.traffic, wait, poll)
        }
        Cmd::A(args) => run_side(args, true),
        Cmd::B(args) => run_side(args, false),
        Cmd::Bench { quick, json, peers } => bench::run(quick, json, peers),
        Cmd::BenchPeer { kind, name } => bench::peer(&kind, &name),
        Cmd::List => tools::list(),
        Cmd::Inspect { name } => tools::inspect(&name),
        Cmd::Remove { name, stale } => tools::remove(name.as_deref(), stale),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capnp-shm-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_side(args: SideArgs, creator: bool) -> Result<(), side::DemoError> {
    let (wait, poll) = wait_settings(args.wait, args.local_poll_us);
    let config = side::SideConfig {
        name: args.name,
        creator,
        traffic: args.traffic,
        wait,
        poll_us: poll,
        remote_poll_us: args.remote_poll_us,
        schedule: args.tune.unwrap_or_default(),
        open_timeout: Duration::from_millis(args.open_timeout_ms),
        reconnect: args.reconnect,
    };
    let report = side::run(&config)?;
    report.print(config.traffic.json);
    Ok(())
}
