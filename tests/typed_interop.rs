//! A message sent through the transport decodes with the official `capnp decode` tool:
//! the slot holds the standard stream framing. Skipped (with a message) when `capnp` is
//! not on PATH.

mod common;
#[path = "common/demo_capnp.rs"]
mod demo_capnp;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use capnp::message::ReaderSegments;
use capnp_shm_transport::{Channel, RecvMessage, SendMessage};
use demo_capnp::sample;

const WAIT: Duration = Duration::from_secs(5);

fn capnp_available() -> bool {
    Command::new("capnp")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs `capnp decode --short schema/demo.capnp Sample` on `framed` and returns its stdout.
fn capnp_decode(framed: &[u8]) -> String {
    let schema = common::project_path("schema/demo.capnp");
    let mut child = Command::new("capnp")
        .args(["decode", "--short"])
        .arg(&schema)
        .arg("Sample")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn capnp decode");
    child.stdin.take().unwrap().write_all(framed).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "capnp decode failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn slot_bytes_decode_with_capnp_tool() {
    if !capnp_available() {
        println!("SKIPPED slot_bytes_decode_with_capnp_tool: `capnp` is not on PATH");
        return;
    }
    let name = format!("typed-interop-{}", std::process::id());
    let mut a = Channel::builder(&name)
        .slot_size(256)
        .slot_count(16)
        .create()
        .unwrap();
    let mut b = Channel::builder(&name).open_timeout(WAIT).open().unwrap();

    // Fill the slot with stale bytes first, so the framing must say where the message ends.
    a.send(&[0xAB; 256], WAIT).unwrap();
    drop(b.recv(WAIT).unwrap());

    let cases: [(u64, u64, &[u8], &str); 3] = [
        (42, 123_456_789, b"hello", "ping = void"),
        (u64::MAX, 0, b"", "pong = void"),
        (7, 1, b"a b~", "tune = (pollIntervalUs = 250)"),
    ];
    for (seq, sent_ns, payload, control) in cases {
        let mut message = capnp::message::Builder::new_default();
        {
            let mut s = message.init_root::<sample::Builder>();
            s.set_seq(seq);
            s.set_sent_ns(sent_ns);
            s.set_payload(payload);
            let mut c = s.get_control();
            match control {
                "ping = void" => c.set_ping(()),
                "pong = void" => c.set_pong(()),
                _ => c.init_tune().set_poll_interval_us(250),
            }
        }
        a.send_message(&message, WAIT).unwrap();

        let msg = b.recv_message(WAIT).unwrap();
        let framed = &msg.bytes()[..msg.get_segments().framed_len()];
        assert_eq!(
            framed,
            capnp::serialize::write_message_to_words(&message).as_slice()
        );
        let text = capnp_decode(framed);
        // Printable payloads only: how `capnp` escapes other bytes differs by version
        // (the byte-for-byte comparison above covers them).
        let payload_text = std::str::from_utf8(payload).unwrap();
        let expected = format!(
            "(seq = {seq}, sentNs = {sent_ns}, payload = \"{payload_text}\", control = ({control}))\n"
        );
        assert_eq!(text, expected);
        assert_eq!(msg.get_segments().len(), 1);
    }
}
