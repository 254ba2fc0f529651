//! The board across processes: a writer at full speed against a reader that checks every
//! value it reads (10 million reads, none torn), and a writer killed with SIGKILL in the
//! middle of a write (the previous value stays readable, the reader sees it dead).

mod common;

use std::time::{Duration, Instant};

use capnp_shm_transport::board::{Board, BoardWait, WriterState};
use capnp_shm_transport::{Corruption, Error};
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
        "block-reader" => block_reader(&name),
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

/// Waits (block mode) for each newer value until the writer closes, checking each one;
/// prints how many it read and the last sequence number.
fn block_reader(name: &str) {
    let mut reader = Board::builder(name)
        .wait(BoardWait::Block)
        .open(Duration::from_secs(30))
        .unwrap();
    say("opened");
    let (mut seen, mut reads) = (0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        match reader.wait_newer(seen, Duration::from_secs(30)) {
            Ok(_) => {}
            Err(Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
        let stamp = reader.latest(&mut buf).unwrap().unwrap();
        assert_eq!(
            &buf[..],
            &value(stamp.sequence)[..],
            "torn value {}",
            stamp.sequence
        );
        assert!(stamp.sequence > seen);
        (seen, reads) = (stamp.sequence, reads + 1);
    }
    common::peer::say_value("done", &format!("{reads} {seen}"));
}

/// Several reader processes asleep on the board's futex at once: each publish wakes them
/// all (the waiter count), each sees the last value, and the close ends every wait.
#[test]
fn several_blocked_readers_are_all_woken_and_see_the_last_value() {
    const VALUES: u64 = 2_000;
    let name = TestName::new("board-readers");
    let mut writer = Board::builder(&name)
        .value_size(VALUE)
        .history(4)
        .create()
        .unwrap();
    let mut readers: Vec<Peer> = (0..3).map(|_| Peer::spawn("block-reader", &name)).collect();
    for r in &mut readers {
        r.expect_line("opened");
    }
    for seq in 1..=VALUES {
        writer.publish(&value(seq)).unwrap();
        if seq % 100 == 0 {
            // Let the readers fall asleep now and then, so the futex path is taken.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    drop(writer);
    for mut r in readers {
        let done = r.expect_value("done");
        let (reads, last) = done.split_once(' ').unwrap();
        assert_eq!(
            last.parse::<u64>().unwrap(),
            VALUES,
            "a reader missed the last value"
        );
        assert!(reads.parse::<u64>().unwrap() >= 1);
        r.finish();
    }
}

#[test]
fn ten_million_reads_against_a_full_speed_writer_are_never_torn() {
    let name = TestName::new("board-torn");
    let mut peer = Peer::spawn("full-speed", &name);
    peer.expect_line("created");
    let mut reader = Board::builder(&name).open(Duration::from_secs(30)).unwrap();
    reader.wait_newer(0, Duration::from_secs(30)).unwrap();
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

/// Here, not among the unit tests: valgrind (which runs those) mis-resumes a copy that the
/// SIGBUS guard's handler interrupted.
#[test]
fn a_board_truncated_under_its_readers_is_reported_not_fatal() {
    for cut in [100, 4096] {
        let name = TestName::new("board-truncated");
        let mut writer = Board::builder(&name)
            .value_size(8192)
            .history(4)
            .create()
            .unwrap();
        let mut reader = Board::builder(&name).open(Duration::from_secs(5)).unwrap();
        writer.publish(&[7; 8000]).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(name.path(".fs.board"))
            .unwrap()
            .set_len(cut)
            .unwrap();
        let mut buf = Vec::new();
        // Cut at 100: the header's words read as zeros. Cut at 4096: the header is intact
        // and the copy of the value faults past the end; the SIGBUS guard zero-fills the
        // mapping. Either way the reader reports the truncation and lives.
        let e = reader.latest(&mut buf).unwrap_err();
        assert!(
            matches!(e, Error::Corrupt(Corruption::Truncated { size, .. }) if size == cut),
            "{cut}: {e:?}"
        );
        // The writer's next write faults too, into its zero-filled mapping: no crash.
        let _ = writer.publish(&[8; 8000]);
    }
}
