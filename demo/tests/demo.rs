//! The demo binary, run as users run it: reports, pacing, live tuning, tools, bad input,
//! and (side B) the peer's death with and without reconnection.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const DEMO: &str = env!("CARGO_BIN_EXE_capnp-shm-demo");
const WAIT: Duration = Duration::from_secs(30);

/// A channel name unique to this process and call site, removed (both segments) when the
/// guard drops, so a failing test leaves nothing in /dev/shm.
struct TestName(String);

impl TestName {
    fn new(test: &str) -> TestName {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("cst-{test}-{}-{n}", std::process::id());
        let _ = capnp_shm_transport::remove_channel(&name);
        TestName(name)
    }

    fn path(&self, suffix: &str) -> std::path::PathBuf {
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

fn demo(args: &[&str]) -> Output {
    Command::new(DEMO)
        .args(args)
        .output()
        .expect("run capnp-shm-demo")
}

fn last_json(out: &Output) -> Value {
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
struct Running(Child);

impl Running {
    fn start(args: &[&str]) -> Running {
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
    fn wait(mut self, limit: Duration) -> Output {
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
fn until_inspect_shows(name: &str, needle: &str) {
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

fn check_side(r: &Value, side: &str) {
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

#[test]
fn run_reports_traffic_both_ways_without_loss() {
    let out = demo(&["run", "--seconds", "1", "--json", "--wait", "block"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = last_json(&out);
    check_side(&report["a"], "a");
    check_side(&report["b"], "b");
    assert_eq!(report["a"]["wait"], "block");
}

#[test]
fn messages_larger_than_a_slot_go_both_ways_without_loss() {
    // 64 KiB payloads through 1 KiB slots (each message covers 64 or 65 slots).
    let out = demo(&[
        "run",
        "--seconds",
        "1",
        "--json",
        "--slot-size",
        "1024",
        "--message-bytes",
        "65536",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = last_json(&out);
    check_side(&report["a"], "a");
    check_side(&report["b"], "b");
    let received = report["a"]["received"].as_u64().unwrap();
    assert!(report["a"]["bytes_per_sec"].as_f64().unwrap() >= received as f64 * 65536.0 * 0.5);
}

#[test]
fn a_and_b_started_separately_connect() {
    let name = TestName::new("demo-ab");
    let a = Running::start(&[
        "a",
        "--name",
        &name,
        "--seconds",
        "1",
        "--json",
        "--wait",
        "block",
    ]);
    let b = Running::start(&[
        "b",
        "--name",
        &name,
        "--seconds",
        "1",
        "--json",
        "--wait",
        "sleep",
        "--local-poll-us",
        "200",
    ]);
    let (a, b) = (a.wait(WAIT), b.wait(WAIT));
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let (ra, rb) = (last_json(&a), last_json(&b));
    assert!(ra["received"].as_u64().unwrap() > 0 && rb["received"].as_u64().unwrap() > 0);
    assert_eq!(rb["wait"], "sleep");
    assert_eq!(rb["local_poll_us"], 200);
}

#[test]
fn pace_30ms_sends_about_33_messages_a_second() {
    let out = demo(&["run", "--seconds", "2", "--pace", "30ms", "--json"]);
    assert!(out.status.success());
    let report = last_json(&out);
    for side in ["a", "b"] {
        let sent = report[side]["sent"].as_u64().unwrap();
        assert!(
            (50..=75).contains(&sent),
            "{side} sent {sent} in 2 s at 30 ms"
        );
    }
}

#[test]
fn tune_changes_the_remote_poll_interval_visibly() {
    let name = TestName::new("demo-tune");
    let _a = Running::start(&[
        "a",
        "--name",
        &name,
        "--seconds",
        "20",
        "--pace",
        "off",
        "--tune",
        "0.2s:remote=2000,0.4s:local=block",
    ]);
    let _b = Running::start(&["b", "--name", &name, "--seconds", "20", "--pace", "off"]);
    until_inspect_shows(&name, "side B: poll 2000 µs, wait Poll");
    until_inspect_shows(&name, "side A: poll 50 µs, wait Block");
}

#[test]
fn list_inspect_and_remove_show_and_remove_a_channel() {
    let name = TestName::new("demo-tools");
    let _a = Running::start(&[
        "a",
        "--name",
        &name,
        "--seconds",
        "20",
        "--pace",
        "off",
        "--slot-count",
        "16",
    ]);
    until_inspect_shows(&name, "geometry: 16 slots of 256 bytes");
    let listed = demo(&["list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&*name.0));
    let removed = demo(&["remove", &name]);
    assert!(removed.status.success());
    assert!(!name.path(".fs.a2b").exists());
}

#[test]
fn bad_input_gives_one_line_and_a_non_zero_exit() {
    let missing = TestName::new("demo-missing");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--no-such-flag"], "unexpected argument"),
        (vec!["run", "--seconds", "0"], "positive number of seconds"),
        (
            vec!["run", "--pace", "often"],
            "not `burst`, `off` or a period",
        ),
        (
            vec![
                "a",
                "--name",
                &missing,
                "--slot-count",
                "3",
                "--seconds",
                "1",
            ],
            "power of two",
        ),
        (
            vec![
                "b",
                "--name",
                &missing,
                "--open-timeout-ms",
                "50",
                "--seconds",
                "1",
            ],
            "did not appear",
        ),
        (vec!["inspect", &missing], "did not appear"),
        (vec!["remove", &missing], "no channel named"),
        (
            vec!["a", "--name", "bad/name", "--seconds", "1"],
            "must not contain '/'",
        ),
    ];
    for (args, expect) in cases {
        let out = demo(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: not one line: {stderr}"
        );
        assert!(
            stderr.contains(expect) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn b_without_reconnect_exits_non_zero_soon_after_a_dies() {
    let name = TestName::new("demo-dies");
    let mut a = Running::start(&["a", "--name", &name, "--seconds", "30", "--pace", "10ms"]);
    let b = Running::start(&["b", "--name", &name, "--seconds", "30", "--pace", "10ms"]);
    until_inspect_shows(&name, "attached: A yes, B yes");
    a.0.kill().unwrap();
    let killed = Instant::now();
    let out = b.wait(WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "b took {:?}",
        killed.elapsed()
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("peer process died"), "{stderr}");
}

#[test]
fn b_with_reconnect_reports_each_transition() {
    let name = TestName::new("demo-reconnect");
    let mut a1 = Running::start(&["a", "--name", &name, "--seconds", "30", "--pace", "20ms"]);
    let mut b = Running::start(&[
        "b",
        "--name",
        &name,
        "--seconds",
        "3",
        "--pace",
        "20ms",
        "--reconnect",
        "--json",
    ]);
    let (tx, lines) = mpsc::channel();
    let stdout = b.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    until_inspect_shows(&name, "attached: A yes, B yes");
    a1.0.kill().unwrap();
    let _ = a1.0.wait();
    let stderr = b.0.stderr.take().unwrap();
    let err_lines = std::thread::spawn(move || {
        let lines = BufReader::new(stderr).lines().map_while(Result::ok);
        lines.collect::<Vec<_>>().join("\n")
    });
    let mut err_lines = Some(err_lines);
    let mut next = |want: &str| -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                // b's stdout ended (it exited) or stayed silent: show what it said.
                let err = err_lines.take().map(|t| t.join().unwrap());
                panic!("no `{want}` event from b; its stderr: {err:?}");
            };
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["event"] == want {
                return v;
            }
        }
    };
    next("peer_dead");
    assert_eq!(next("reconnecting")["attempt"], 1);
    let _a2 = Running::start(&["a", "--name", &name, "--seconds", "30", "--pace", "20ms"]);
    assert!(next("reconnected")["generation"].as_u64().unwrap() > 0);
    let out = b.wait(WAIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_receive_thread_stopped_by_corruption_ends_the_side_with_one_line() {
    use std::os::unix::fs::FileExt;
    let name = TestName::new("demo-corrupt");
    let _a = Running::start(&["a", "--name", &name, "--seconds", "30", "--pace", "off"]);
    let b = Running::start(&["b", "--name", &name, "--seconds", "6", "--pace", "off"]);
    until_inspect_shows(&name, "attached: A yes, B yes");
    // Slot 0's commit word (offset 512) in the ring B reads: neither published nor free.
    std::fs::OpenOptions::new()
        .write(true)
        .open(name.path(".fs.a2b"))
        .unwrap()
        .write_all_at(&99u64.to_le_bytes(), 512)
        .unwrap();
    let out = b.wait(WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "b exited 0 after its receive thread stopped: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("capnp-shm-demo: ") && last.contains("commit word"),
        "{stderr}"
    );
}

#[test]
fn board_reports_freshness_and_skipped_values_and_tools_know_boards() {
    let name = TestName::new("demo-board");
    let out = demo(&[
        "board",
        "--name",
        &name,
        "--seconds",
        "0.3",
        "--pace",
        "1ms",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = last_json(&out);
    let published = report["writer"]["published"].as_u64().unwrap();
    let reader = &report["reader"];
    let read = reader["read"].as_u64().unwrap();
    assert!(read > 0 && read <= published, "{report}");
    assert_eq!(reader["ended"], "writer closed", "{report}");
    // Every value was either read or skipped, none twice.
    assert_eq!(
        read + reader["skipped"].as_u64().unwrap(),
        published,
        "{report}"
    );
    assert!(reader["age_ns"]["p50"].as_u64().unwrap() > 0);
    // The writer removed its board on exit.
    assert!(!name.path(".fs.board").exists());
    let out = demo(&["inspect", &name]);
    assert!(!out.status.success());
}

#[test]
fn rpc_calls_the_example_service_over_each_transport() {
    let out = demo(&["rpc", "--calls", "300", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = last_json(&out);
    for transport in ["shm", "uds", "tcp"] {
        let p50 = r["rpc_rtt_ns"][transport].as_f64().unwrap_or(0.0);
        assert!(p50 > 0.0, "{transport}: {r}");
        let t = &r["transports"][transport];
        assert!(
            t["calls_per_sec_16_in_flight"].as_f64().unwrap_or(0.0) > 0.0,
            "{r}"
        );
        assert!(t["p99_ns"].as_f64() >= t["p50_ns"].as_f64(), "{r}");
    }
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("capnp-shm-demo-rpc-"))
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
}
