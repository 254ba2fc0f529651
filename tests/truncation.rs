//! Truncation: a process that shrinks a channel's segment under both sides (`ftruncate` to
//! 100 bytes, as `truncate -s 100 /dev/shm/<name>.fs.a2b` does) must not kill them with
//! SIGBUS. Each side runs in a child process, so the test survives to see how they ended:
//! both must report `Corrupt(Truncated)` and exit normally, and the segments must be gone
//! afterwards (removed by side A, or by `remove_stale_channels` when A was killed).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use capnp_shm_transport::inspect::{list_channels, remove_stale_channels};
use capnp_shm_transport::{Channel, Corruption, Error};
use common::peer::{read_stdin_line, say, say_value, Peer};
use common::TestName;

const WAIT: Duration = Duration::from_secs(10);
/// Round trips before the test truncates, so messages are flowing when it does.
const WARM_UP: u64 = 1000;

#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    let name = name.as_str();
    match role.as_str() {
        "a" | "a-then-wait" => {
            let mut a = Channel::builder(name)
                .slot_size(1024)
                .slot_count(16)
                .create()
                .unwrap();
            say("created");
            ping_pong(&mut a, true);
            if role == "a-then-wait" {
                say("waiting");
                read_stdin_line(); // killed here by the test
            }
        }
        "b" => {
            let mut b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
            ping_pong(&mut b, false);
        }
        "foreign-sigbus" => foreign_sigbus(name),
        other => panic!("unknown role {other}"),
    }
}

/// Ping-pongs until an error, which must be the truncation (printed first, so a test that
/// fails shows what the side saw).
fn ping_pong(channel: &mut Channel, sends_first: bool) {
    let mut buf = Vec::new();
    for round in 1u64.. {
        let result = if sends_first {
            channel
                .send(&round.to_le_bytes(), WAIT)
                .and_then(|()| channel.recv_into(&mut buf, WAIT))
        } else {
            channel
                .recv_into(&mut buf, WAIT)
                .and_then(|_| channel.send(&buf, WAIT).map(|()| 0))
        };
        match result {
            Ok(_) if round == WARM_UP => say("flowing"),
            Ok(_) => {}
            Err(e) => {
                say_value("error", &e.to_string());
                assert!(
                    matches!(e, Error::Corrupt(Corruption::Truncated { .. })),
                    "expected Truncated, got {e:?}"
                );
                return;
            }
        }
    }
}

fn truncate(name: &TestName, suffix: &str) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path(suffix))
        .expect("open the segment file");
    file.set_len(100).expect("ftruncate");
}

fn assert_survived(peer: Peer, who: &str) {
    let status = peer.wait_exit();
    assert!(
        status.success(),
        "side {who} did not survive the truncation: {status} (signal {:?})",
        status.signal()
    );
}

fn truncate_mid_run(suffix: &str) {
    let name = TestName::new(&format!("trunc{}", &suffix[4..]));
    let mut a = Peer::spawn("a", &name);
    a.expect_line("created");
    let mut b = Peer::spawn("b", &name);
    a.expect_line("flowing");
    b.expect_line("flowing");
    truncate(&name, suffix);
    let (a_saw, b_saw) = (a.expect_value("error"), b.expect_value("error"));
    assert!(
        a_saw.contains("truncated") && b_saw.contains("truncated"),
        "A: {a_saw}; B: {b_saw}"
    );
    assert_survived(a, "A");
    assert_survived(b, "B");
    for suffix in [".fs.a2b", ".fs.b2a"] {
        assert!(!name.path(suffix).exists(), "side A left {suffix} behind");
    }
}

#[test]
fn truncating_a2b_mid_run_is_survived_and_reported_by_both_sides() {
    truncate_mid_run(".fs.a2b");
}

#[test]
fn truncating_b2a_mid_run_is_survived_and_reported_by_both_sides() {
    truncate_mid_run(".fs.b2a");
}

#[test]
fn a_truncated_channel_whose_creator_died_is_removed_as_stale() {
    let name = TestName::new("trunc-stale");
    let mut a = Peer::spawn("a-then-wait", &name);
    a.expect_line("created");
    let b = Peer::spawn("b", &name);
    a.expect_line("flowing");
    truncate(&name, ".fs.a2b");
    a.expect_line("waiting");
    assert_survived(b, "B");
    a.kill_and_reap();
    let removed = remove_stale_channels().unwrap();
    assert!(removed.contains(&name.0), "{removed:?}");
    assert!(!list_channels().unwrap().contains(&name.0));
    assert!(!name.path(".fs.a2b").exists() && !name.path(".fs.b2a").exists());
}

/// Exit code of the handler installed before the transport's.
const PREVIOUS_HANDLER_EXIT: i32 = 42;

extern "C" fn previous_handler(_: libc::c_int) {
    // SAFETY: `_exit` is async-signal-safe.
    unsafe { libc::_exit(PREVIOUS_HANDLER_EXIT) };
}

/// With a SIGBUS handler installed before the transport's: a truncated channel segment is
/// survived (the transport's handler), then a SIGBUS on a file mapping the transport does
/// not know reaches the previous handler, which exits with its code.
fn foreign_sigbus(name: &str) {
    // SAFETY: installs a plain handler for SIGBUS; the sigaction struct is zeroed and
    // filled, and the handler only calls `_exit`.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = previous_handler as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()),
            0
        );
    }
    let mut a = Channel::builder(name)
        .slot_size(1024)
        .slot_count(16)
        .create()
        .unwrap();
    let path = format!("/dev/shm/{name}.fs.a2b");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    // 16 slots of 1 KiB: the later ones lie past the first page, which faults.
    let err = (0..32)
        .find_map(|_| a.send(&[7; 1024], Duration::ZERO).err())
        .expect("sends into a truncated segment failed");
    assert!(
        matches!(err, Error::Corrupt(Corruption::Truncated { .. })),
        "{err:?}"
    );
    say("survived");

    let file_name = format!("/dev/shm/{name}.foreign");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&file_name)
        .unwrap();
    file.set_len(8192).unwrap();
    // SAFETY: a fresh shared mapping of our own file; the kernel picks the address.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    assert_ne!(ptr, libc::MAP_FAILED);
    file.set_len(0).unwrap();
    std::fs::remove_file(&file_name).unwrap();
    say("faulting");
    // SAFETY: deliberately reads a page past the file's end: SIGBUS, which must reach the
    // previous handler (it exits the process).
    let _ = unsafe { std::ptr::read_volatile(ptr.cast::<u8>().add(4096)) };
    panic!("the read past the end of the file did not fault");
}

#[test]
fn a_sigbus_outside_our_mappings_reaches_the_previous_handler() {
    let name = TestName::new("trunc-chain");
    let mut child = Peer::spawn("foreign-sigbus", &name);
    child.expect_line("survived");
    child.expect_line("faulting");
    let status = child.wait_exit();
    let _ = std::fs::remove_file(format!("/dev/shm/{}.foreign", name.0));
    assert_eq!(
        status.code(),
        Some(PREVIOUS_HANDLER_EXIT),
        "{status} (signal {:?})",
        status.signal()
    );
}
