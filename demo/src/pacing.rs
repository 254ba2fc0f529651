//! How a demo side paces its sends (`--pace`) and when it changes its wait settings
//! (`--tune`): the two schedules, parsed from the command line.

use std::time::Duration;

use crate::Wait;

/// How often a side sends.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    Burst,
    Every(Duration),
    Off,
}

impl Pace {
    /// The `--pace` argument that reproduces this pace (for the child side).
    pub fn arg(&self) -> String {
        match self {
            Pace::Burst => "burst".into(),
            Pace::Off => "off".into(),
            Pace::Every(d) => format!("{}us", d.as_micros()),
        }
    }
}

pub fn parse_pace(s: &str) -> Result<Pace, String> {
    match s {
        "burst" => Ok(Pace::Burst),
        "off" => Ok(Pace::Off),
        _ => match parse_duration(s) {
            Some(d) if !d.is_zero() => Ok(Pace::Every(d)),
            _ => Err(format!(
                "`{s}` is not `burst`, `off` or a period like `30ms`, `100us`, `1s`"
            )),
        },
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// One change of the tuning schedule.
#[derive(Clone, Debug)]
pub struct Step {
    pub at: Duration,
    pub remote: bool,
    pub change: Change,
}

#[derive(Clone, Copy, Debug)]
pub enum Change {
    /// A poll interval in µs (and poll mode: 0 spins, more sleeps).
    PollUs(u32),
    Mode(Wait),
}

/// The `--tune` schedule, sorted by time.
#[derive(Clone, Debug, Default)]
pub struct Schedule(pub Vec<Step>);

pub fn parse_schedule(s: &str) -> Result<Schedule, String> {
    let mut steps = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = || format!("`{item}` is not like `2s:local=0` or `5s:remote=block`");
        let (at, rest) = item.split_once(':').ok_or_else(bad)?;
        let (who, value) = rest.split_once('=').ok_or_else(bad)?;
        let remote = match who {
            "local" => false,
            "remote" => true,
            _ => return Err(bad()),
        };
        let change = match value {
            "spin" => Change::Mode(Wait::Spin),
            "sleep" => Change::Mode(Wait::Sleep),
            "block" => Change::Mode(Wait::Block),
            n => Change::PollUs(n.parse().map_err(|_| bad())?),
        };
        steps.push(Step {
            at: parse_duration(at).ok_or_else(bad)?,
            remote,
            change,
        });
    }
    steps.sort_by_key(|s| s.at);
    Ok(Schedule(steps))
}
