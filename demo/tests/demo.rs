//! The demo binary, run as users run it: reports, pacing, live tuning, tools, bad input,
//! and (side B) the peer's death with and without reconnection.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

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
