//! An idle channel sleeps until something happens (issue 20): with both sides attached in
//! block mode and no traffic, the liveness monitors (which watch a live peer through a
//! pidfd), a receive thread and a thread blocked in `recv` wake a few times a second at
//! most, not every 25 ms round or 50 ms sleep slice. Both sides live in this process (each
//! monitor watches the other side's pid, ours, through a pidfd). Wake-ups are counted as
//! each thread's voluntary context switches (`/proc/self/task/*/status`) over one second,
//! after a second in which the sleep slices grow.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use capnp_shm_transport::{Channel, Error};
use common::TestName;

/// Whether this process may open a pidfd (a kernel before 5.3 or a seccomp filter may
/// refuse it; the monitor then keeps its 25 ms rounds).
fn pidfd_available() -> bool {
    // SAFETY: pidfd_open takes a pid and flags (0) and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is the descriptor just opened, closed once.
    unsafe { libc::close(fd as i32) };
    true
}

/// Per thread id: (name, voluntary context switches so far).
fn switches() -> BTreeMap<String, (String, u64)> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("status")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let voluntary = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        let tid = task.file_name().to_string_lossy().into_owned();
        out.insert(tid, (comm.trim().to_string(), voluntary));
    }
    out
}

#[test]
fn an_idle_channel_wakes_its_threads_a_few_times_a_second_at_most() {
    let pidfd = pidfd_available();
    if !pidfd {
        eprintln!("no pidfd here: the liveness monitors' wake-ups are not checked");
    }
    let name = TestName::new("idle-wakeups");
    let a = Channel::builder(&*name)
        .slot_size(256)
        .slot_count(16)
        .on_receive(|_| {})
        .create()
        .unwrap();
    let mut b = Channel::builder(&*name)
        .open_timeout(Duration::from_secs(10))
        .open()
        .unwrap();
    let blocked = std::thread::Builder::new()
        .name("idle-recv".into())
        .spawn(move || {
            let got = b.recv(Duration::from_millis(2500)).map(|m| m.len());
            assert!(matches!(got, Err(Error::Timeout { .. })), "{got:?}");
        })
        .unwrap();
    std::thread::sleep(Duration::from_secs(1)); // the slices grow
    let before = switches();
    std::thread::sleep(Duration::from_secs(1)); // measured: nothing happens
    let after = switches();
    blocked.join().unwrap();
    drop(a);
    let mut seen = Vec::new();
    for (tid, (comm, n)) in &after {
        let Some((_, m)) = before.get(tid) else {
            continue;
        };
        let limit = match comm.as_str() {
            // 4 rounds a second (250 ms) while the peer is watched through a pidfd.
            "shm-liveness" if pidfd => 10,
            "shm-liveness" => u64::MAX,
            // Slices of 800 ms and 1 s by now.
            c if c.starts_with("shm-recv") || c == "idle-recv" => 5,
            _ => continue,
        };
        seen.push(comm.clone());
        assert!(n - m <= limit, "{comm} woke {} times in 1 s", n - m);
    }
    seen.sort();
    assert_eq!(seen.len(), 4, "threads measured: {seen:?}");
}
