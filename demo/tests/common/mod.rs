//! Helpers of the demo's tests: the binary's path, unique channel names removed on drop,
//! running the demo and reading its JSON report, a demo process killed on drop.
// Each test file uses some of these.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const DEMO: &str = env!("CARGO_BIN_EXE_capnp-shm-demo");
pub const WAIT: Duration = Duration::from_secs(30);

/// A channel name unique to this process and call site, removed (both segments) when the
/// guard drops, so a failing test leaves nothing in /dev/shm.
pub struct TestName(pub String);

impl TestName {
    pub fn new(test: &str) -> TestName {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("cst-{test}-{}-{n}", std::process::id());
        let _ = capnp_shm_transport::remove_channel(&name);
        TestName(name)
    }

    pub fn path(&self, suffix: &str) -> std::path::PathBuf {
        std::path::PathBuf::from("/dev/shm").join(format!("{}{suffix}", self.0))
    }
}

impl std::ops::Deref for TestName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for TestName {
    fn drop(&mut self) {
        let _ = capnp_shm_transport::remove_channel(&self.0);
        let _ = capnp_shm_transport::board::remove_board(&self.0);
    }
}

pub fn demo(args: &[&str]) -> Output {
    Command::new(DEMO)
        .args(args)
        .output()
        .expect("run capnp-shm-demo")
}

pub fn last_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "last line is not JSON ({e}): {line:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A demo process killed and reaped on drop.
pub struct Running(pub Child);

impl Running {
    pub fn start(args: &[&str]) -> Running {
        Running(
            Command::new(DEMO)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn demo"),
        )
    }

    /// Waits (bounded) for the process to end.
    pub fn wait(mut self, limit: Duration) -> Output {
        let start = Instant::now();
        while self.0.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < limit, "demo did not end within {limit:?}");
            std::thread::sleep(Duration::from_millis(10)); // polling a process exit
        }
        let child = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `inspect NAME` (an external process) until its output contains `needle`.
pub fn until_inspect_shows(name: &str, needle: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = demo(&["inspect", name]);
        if String::from_utf8_lossy(&out.stdout).contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "inspect never showed {needle:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn check_side(r: &Value, side: &str) {
    for key in [
        "role",
        "sent",
        "received",
        "lost",
        "out_of_order",
        "decode_errors",
        "seconds",
        "msgs_per_sec",
        "bytes_per_sec",
        "latency_ns",
        "cpu_percent",
        "local_poll_us",
        "remote_poll_us",
        "wait",
    ] {
        assert!(r.get(key).is_some(), "{side} report lacks {key}: {r}");
    }
    assert_eq!(r["lost"], 0, "{side}: {r}");
    assert_eq!(r["out_of_order"], 0, "{side}: {r}");
    assert_eq!(r["decode_errors"], 0, "{side}: {r}");
    assert!(
        r["sent"].as_u64().unwrap() > 0 && r["received"].as_u64().unwrap() > 0,
        "{side}: {r}"
    );
    for q in ["p50", "p99", "p999", "max"] {
        assert!(r["latency_ns"][q].as_u64().unwrap() > 0, "{side}: {r}");
    }
}
