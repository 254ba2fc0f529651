//! The board across processes: a writer at full speed against a reader that checks every
//! value it reads (10 million reads, none torn), and a writer killed with SIGKILL in the
//! middle of a write (the previous value stays readable, the reader sees it dead).

mod common;

use std::time::{Duration, Instant};

use capnp_shm_transport::board::{Board, BoardWait, WriterState};
use capnp_shm_transport::Error;
use common::peer::{read_stdin_line, say, Peer};
use common::TestName;

const VALUE: usize = 64;
const READS: u64 = 10_000_000;
/// A peer writer publishes for at most this long (the parent kills it well before).
const WRITER_LIMIT: Duration = Duration::from_secs(100);

#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    match role.as_str() {
        "full-speed" => full_speed(&name),
        "stuck-mid-write" => stuck_mid_write(&name),
        other => panic!("unknown role {other}"),
    }
}

/// Value `seq`: seven words derived from it and an eighth that checks them.
fn value(seq: u64) -> [u8; VALUE] {
    let mut out = [0u8; VALUE];
    let mut sum = 0u64;
    for (i, chunk) in out.chunks_exact_mut(8).take(7).enumerate() {
        let w = seq
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(i as u32 * 9)
            ^ i as u64;
        sum = sum.wrapping_mul(31).wrapping_add(w);
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    out[56..].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Publishes checked values as fast as it can until killed.
fn full_speed(name: &str) {
    let mut writer = Board::builder(name)
        .value_size(VALUE)
        .history(1)
        .create()
        .unwrap();
    say("created");
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < WRITER_LIMIT {
        for _ in 0..1024 {
            seq += 1;
            let v = value(seq);
            assert_eq!(
                writer
                    .publish_with(|buf| {
                        buf[..VALUE].copy_from_slice(&v);
                        VALUE
                    })
                    .unwrap(),
                seq
            );
        }
    }
}

/// Publishes one value, then stops halfway through writing the next and waits to be
/// killed.
fn stuck_mid_write(name: &str) {
    let mut writer = Board::builder(name)
        .value_size(VALUE)
        .history(4)
        .create()
        .unwrap();
    writer.publish(&value(1)).unwrap();
    let _ = writer.publish_with(|buf| {
        buf[..VALUE / 2].fill(0xee);
        say("mid-write");
        read_stdin_line(); // killed here
        VALUE
    });
}

#[test]
fn ten_million_reads_against_a_full_speed_writer_are_never_torn() {
    let name = TestName::new("board-torn");
    let mut peer = Peer::spawn("full-speed", &name);
    peer.expect_line("created");
    let mut reader = Board::builder(&name).open(Duration::from_secs(30)).unwrap();
    let mut buf = Vec::new();
    let (mut distinct, mut last) = (0u64, 0u64);
    for _ in 0..READS {
        let stamp = reader
            .latest(&mut buf)
            .unwrap()
            .expect("the writer published");
        assert_eq!(buf.len(), VALUE);
        assert_eq!(
            &buf[..],
            &value(stamp.sequence)[..],
            "torn value {}",
            stamp.sequence
        );
        assert!(
            stamp.sequence >= last,
            "went backwards: {last} then {}",
            stamp.sequence
        );
        distinct += u64::from(stamp.sequence != last);
        last = stamp.sequence;
    }
    // The writer really ran alongside: the reads saw many different values.
    assert!(
        distinct > 1000,
        "only {distinct} distinct values in {READS} reads"
    );
    eprintln!("{READS} reads, {distinct} distinct values, newest {last}");
    peer.kill_and_reap();
}

#[test]
fn a_writer_killed_mid_write_leaves_the_previous_value_and_is_seen_dead() {
    let name = TestName::new("board-kill");
    let mut peer = Peer::spawn("stuck-mid-write", &name);
    peer.expect_line("mid-write");
    let mut reader = Board::builder(&name)
        .wait(BoardWait::Block)
        .open(Duration::from_secs(30))
        .unwrap();
    assert_eq!(reader.writer_state(), WriterState::Alive);
    peer.kill_and_reap();
    let mut buf = Vec::new();
    let stamp = reader.latest(&mut buf).unwrap().expect("the first value");
    assert_eq!((stamp.sequence, &buf[..]), (1, &value(1)[..]));
    assert_eq!(reader.get(0, &mut buf).unwrap().unwrap().sequence, 1);
    assert_eq!(reader.writer_state(), WriterState::Dead);
    let start = Instant::now();
    assert!(matches!(
        reader.wait_newer(1, Duration::from_secs(10)),
        Err(Error::WriterDead)
    ));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(capnp_shm_transport::board::board_is_stale(&name).unwrap());
}
