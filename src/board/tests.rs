//! Unit tests of the board: publication and reads, history, time queries against a model
//! (proptest), waiting, a writer stopped mid-write, hostile headers, and the tools.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::layout::{BoardHeader, HEADER_SIZE};
use super::protocol;
use super::*;
use crate::error::{Corruption, Error};
use crate::sync::Ordering;

/// Held by the tests that leave a stale board behind or remove every stale board, so
/// one's `remove_stale_boards` never takes another's board from under it.
static STALE_BOARDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Keeps `value` alive, undropped, for the rest of the process: a writer "killed" without
/// running its drop (which would close and unlink), still reachable from a static so the
/// leak checker (the ASan job) does not report it.
fn abandon<T: Send + 'static>(value: T) {
    static ABANDONED: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send>>> =
        std::sync::Mutex::new(Vec::new());
    ABANDONED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Box::new(value));
}

fn stale_boards() -> std::sync::MutexGuard<'static, ()> {
    STALE_BOARDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A unique board name, removed on drop.
struct Name(String);

impl Name {
    fn new(test: &str) -> Name {
        static N: crate::sync::AtomicU32 = crate::sync::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Name(format!("cst-board-{test}-{}-{n}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = remove_board(&self.0);
    }
}

fn pair(name: &Name, value_size: usize, history: usize) -> (BoardWriter, BoardReader) {
    let w = Board::builder(&name.0)
        .value_size(value_size)
        .history(history)
        .create()
        .unwrap();
    let r = Board::builder(&name.0).open(Duration::from_secs(5)).unwrap();
    (w, r)
}

#[test]
fn latest_get_and_envelope() {
    let name = Name::new("latest");
    let (mut w, mut r) = pair(&name, 16, 4);
    let mut buf = Vec::new();
    assert_eq!(r.latest(&mut buf).unwrap(), None);
    assert_eq!(r.get(0, &mut buf).unwrap(), None);
    for i in 1..=6u64 {
        assert_eq!(w.publish_at(&i.to_le_bytes(), i * 100).unwrap(), i);
    }
    let s = r.latest(&mut buf).unwrap().unwrap();
    assert_eq!((s.sequence, s.timestamp_ns, s.len), (6, 600, 8));
    assert_eq!(buf, 6u64.to_le_bytes());
    for back in 0..4 {
        let s = r.get(back, &mut buf).unwrap().unwrap();
        assert_eq!(s.sequence, 6 - back as u64);
        assert_eq!(buf, (6 - back as u64).to_le_bytes());
    }
    assert_eq!(r.get(4, &mut buf).unwrap(), None, "beyond the history");
    assert!(matches!(w.publish(&[0; 17]), Err(Error::MessageTooLarge { len: 17, max_len: 16 })));
    assert!(matches!(w.publish_at(b"x", 5), Err(Error::InvalidArgument { what: "stamp_ns", .. })));
    assert_eq!(r.newest_sequence(), 6, "refused values publish nothing");
}

#[test]
fn bad_builder_arguments_are_refused() {
    let name = Name::new("args");
    for (size, history) in [(0, 1), (64, 3), (64, 0), (MAX_VALUE_SIZE + 1, 1), (64, MAX_HISTORY * 2)] {
        let e = Board::builder(&name.0).value_size(size).history(history).create();
        assert!(matches!(e, Err(Error::InvalidArgument { .. })), "{size} {history}");
    }
    assert!(matches!(Board::builder("a/b").create(), Err(Error::InvalidArgument { what: "name", .. })));
}

#[test]
fn a_second_writer_is_refused_and_a_dead_ones_board_replaced() {
    let _serial = stale_boards();
    let name = Name::new("second");
    let w = Board::builder(&name.0).create().unwrap();
    assert!(matches!(Board::builder(&name.0).create(), Err(Error::SideInUse { .. })));
    // A writer that died: its owner lock gone, the segment left behind.
    w.map.segment().object().unlock();
    abandon(w);
    assert!(board_is_stale(&name.0).unwrap());
    let _w2 = Board::builder(&name.0).create().unwrap();
    assert!(!board_is_stale(&name.0).unwrap());
}

#[test]
fn a_write_stopped_midway_leaves_the_previous_value_readable() {
    for history in [1, 4] {
        let name = Name::new("midway");
        let (mut w, mut r) = pair(&name, 8, history);
        w.publish(b"previous").unwrap();
        // The writer stops after marking the next slot odd and scribbling half of it.
        let slot = w.map.slot(2);
        protocol::begin_write(slot, 2);
        // SAFETY: the test is the board's only writer and slot 2 is marked odd.
        unsafe { w.map.payload_mut(2)[..4].copy_from_slice(b"torn") };
        let mut buf = Vec::new();
        let s = r.latest(&mut buf).unwrap().unwrap();
        assert_eq!((s.sequence, &buf[..]), (1, &b"previous"[..]));
        if history == 4 {
            assert_eq!(r.get(0, &mut buf).unwrap().unwrap().sequence, 1);
        }
        // publish_with returning too much also leaves the previous value the newest.
        let e = w.publish_with(|_| 9);
        assert!(matches!(e, Err(Error::MessageTooLarge { len: 9, .. })));
        assert_eq!(r.latest(&mut buf).unwrap().unwrap().sequence, 1);
        assert_eq!(w.publish(b"next").unwrap(), 2);
        assert_eq!(r.latest(&mut buf).unwrap().unwrap().sequence, 2);
    }
}

#[test]
fn wait_newer_in_each_mode_and_on_close() {
    for mode in [BoardWait::Spin, BoardWait::Sleep(Duration::from_micros(100)), BoardWait::Block] {
        let name = Name::new("wait");
        let (mut w, mut r) = pair(&name, 8, 1);
        r.set_wait(mode);
        let e = r.wait_newer(0, Duration::from_millis(5));
        assert!(matches!(e, Err(Error::Timeout { full: false })), "{mode:?}: {e:?}");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            rx.recv().unwrap();
            w.publish(b"one").unwrap();
            rx.recv().unwrap();
            drop(w);
        });
        tx.send(()).unwrap();
        assert_eq!(r.wait_newer(0, Duration::from_secs(10)).unwrap(), 1, "{mode:?}");
        tx.send(()).unwrap();
        let start = Instant::now();
        assert!(matches!(r.wait_newer(1, Duration::from_secs(10)), Err(Error::Closed)));
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        // The value published before the close stays readable.
        let mut buf = Vec::new();
        assert_eq!(r.latest(&mut buf).unwrap().unwrap().sequence, 1);
        assert_eq!(r.writer_state(), WriterState::Closed);
    }
}

#[test]
fn a_dead_writer_is_reported() {
    let _serial = stale_boards();
    let name = Name::new("dead");
    let (w, mut r) = pair(&name, 8, 1);
    assert_eq!(r.writer_state(), WriterState::Alive);
    w.map.segment().object().unlock(); // what the kernel does when the process dies
    assert_eq!(r.writer_state(), WriterState::Dead);
    assert!(matches!(r.wait_newer(0, Duration::from_secs(5)), Err(Error::WriterDead)));
    assert_eq!(inspect_board(&name.0).unwrap().writer, WriterState::Dead);
    assert!(remove_stale_boards().unwrap().contains(&name.0));
    abandon(w);
}

#[test]
fn latest_if_fresh() {
    let name = Name::new("fresh");
    let (mut w, mut r) = pair(&name, 8, 1);
    let mut buf = Vec::new();
    w.publish(b"now").unwrap();
    assert!(r.latest_if_fresh(Duration::from_secs(60), &mut buf).unwrap().is_some());
    let stale = monotonic_ns() - 1_000_000_000;
    let name2 = Name::new("fresh2");
    let (mut w2, mut r2) = pair(&name2, 8, 1);
    w2.publish_at(b"old", stale).unwrap();
    assert!(r2.latest_if_fresh(Duration::from_millis(500), &mut buf).unwrap().is_none());
    assert!(r2.latest_if_fresh(Duration::from_secs(60), &mut buf).unwrap().is_some());
}

#[test]
fn inspect_and_list_know_boards() {
    let _serial = stale_boards();
    let name = Name::new("inspect");
    let (mut w, _r) = pair(&name, 100, 8);
    w.publish(b"x").unwrap();
    assert!(list_boards().unwrap().contains(&name.0));
    let info = inspect_board(&name.0).unwrap();
    assert_eq!(info.geometry.value_size, 100);
    assert_eq!(info.geometry.history, 8);
    assert_eq!((info.newest, info.writer, info.writer_pid), (1, WriterState::Alive, std::process::id()));
    assert!(!board_is_stale(&name.0).unwrap());
    assert!(!remove_stale_boards().unwrap().contains(&name.0));
    drop(w);
    assert!(!list_boards().unwrap().contains(&name.0), "the writer removes its board");
}

/// Writes a board segment holding `header` bytes (a valid header, then edited).
fn hostile(name: &Name, edit: impl FnOnce(&BoardHeader)) -> Error {
    let w = Board::builder(&name.0).value_size(64).history(4).create().unwrap();
    edit(w.map.header());
    let e = Board::builder(&name.0).open(Duration::from_millis(50)).unwrap_err();
    drop(w);
    e
}

#[test]
fn hostile_header_fields_are_typed_corruption() {
    type Edit = fn(&BoardHeader);
    let cases: [(Edit, &str); 9] = [
        (|h| h.identity.magic.store(7, Ordering::Relaxed), "magic"),
        (|h| h.identity.version.store(9, Ordering::Relaxed), "version"),
        (|h| h.identity.ready.store(5, Ordering::Relaxed), "ready"),
        (|h| h.identity.value_size.store(0, Ordering::Relaxed), "value_size"),
        (|h| h.identity.history.store(3, Ordering::Relaxed), "history"),
        (|h| h.identity.slot_count.store(1 << 40, Ordering::Relaxed), "slot_count"),
        (|h| h.identity.slot_stride.store(8, Ordering::Relaxed), "slot_stride"),
        (|h| h.identity.data_offset.store(0, Ordering::Relaxed), "data_offset"),
        (|h| h.identity.value_size.store(1 << 20, Ordering::Relaxed), "slot_stride"),
    ];
    for (edit, field) in cases {
        let name = Name::new("hostile");
        let e = hostile(&name, edit);
        let ok = match &e {
            Error::Corrupt(Corruption::BadMagic { .. }) => field == "magic",
            Error::Corrupt(Corruption::UnsupportedVersion { .. }) => field == "version",
            Error::Corrupt(Corruption::BadReady { .. }) => field == "ready",
            Error::Corrupt(Corruption::Geometry { field: f, .. }) => *f == field,
            _ => false,
        };
        assert!(ok, "{field}: {e:?}");
    }
    // A mapping shorter than the header, and one shorter than its geometry.
    let name = Name::new("short");
    let path = format!("/dev/shm/{}", segment_name(&name.0));
    write_owned(&path, &[0u8; 100]);
    assert!(matches!(
        Board::builder(&name.0).open(Duration::from_millis(20)),
        Err(Error::Corrupt(Corruption::MappingTooSmall { len: 100, needed: HEADER_SIZE }))
    ));
    let w = Board::builder(&name.0).value_size(64).history(4).create().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let name2 = Name::new("short2");
    write_owned(&format!("/dev/shm/{}", segment_name(&name2.0)), &bytes[..HEADER_SIZE + 10]);
    assert!(matches!(
        Board::builder(&name2.0).open(Duration::from_millis(20)),
        Err(Error::Corrupt(Corruption::GeometryExceedsMapping { .. }))
    ));
    drop(w);
}

fn write_owned(path: &str, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn hostile_slots_are_typed_corruption() {
    let name = Name::new("slots");
    let (mut w, mut r) = pair(&name, 16, 4);
    for i in 1..=3u64 {
        w.publish_at(&[1], i * 10).unwrap();
    }
    let mut buf = Vec::new();
    // A length above the value size.
    w.map.slot(3).len.store(17, Ordering::Relaxed);
    assert!(matches!(r.latest(&mut buf), Err(Error::Corrupt(Corruption::SlotLength { len: 17, .. }))));
    w.map.slot(3).len.store(1, Ordering::Relaxed);
    // A stable value of another slot's sequence number.
    w.map.slot(3).lock.store(2 * 4, Ordering::Relaxed);
    assert!(matches!(r.latest(&mut buf), Err(Error::Corrupt(Corruption::BoardSlot { seq: 3, found: 4, .. }))));
    w.map.slot(3).lock.store(2 * 3, Ordering::Relaxed);
    // Stamps out of order can make a query miss a held value, never return one outside
    // its distance guard.
    w.map.slot(2).stamp.store(1000, Ordering::Relaxed);
    for t in [0, 25, 500, 2000] {
        if let Some(s) = r.closest(t, 10, &mut buf).unwrap() {
            assert!(s.timestamp_ns.abs_diff(t) <= 10, "{t}: {s:?}");
        }
    }
    // A head beyond anything written: the slot is empty.
    w.map.header().writer.head.store(4, Ordering::Release);
    assert!(matches!(r.latest(&mut buf), Err(Error::Corrupt(Corruption::BoardSlot { seq: 4, found: 0, .. }))));
}

#[test]
fn typed_values_round_trip() {
    let name = Name::new("typed");
    let (mut w, mut r) = pair(&name, 64, 1);
    let mut words = Vec::new();
    assert!(r.latest_message(&mut words, Default::default()).unwrap().is_none());
    let mut message = capnp::message::Builder::new_default();
    message.set_root("x".repeat(100).as_str()).unwrap();
    assert!(matches!(w.publish_message(&message), Err(Error::MessageTooLarge { .. })));
    let mut message = capnp::message::Builder::new_default();
    message.set_root("board").unwrap();
    w.publish_message(&message).unwrap();
    let (stamp, reader) = r.latest_message(&mut words, Default::default()).unwrap().unwrap();
    assert_eq!(stamp.sequence, 1);
    assert_eq!(reader.get_root::<capnp::text::Reader>().unwrap().to_str().unwrap(), "board");
}

/// The model: stamps held (seq, stamp) for the newest `history` values.
fn model_closest(held: &[(u64, u64)], t: u64, max: u64) -> Option<u64> {
    let best = held.iter().min_by_key(|&&(s, st)| (st.abs_diff(t), st > t, s))?;
    (best.1.abs_diff(t) <= max).then_some(best.0)
}

fn model_pair(held: &[(u64, u64)], t: u64) -> Option<(u64, u64)> {
    held.windows(2)
        .find(|w| w[0].1 <= t && t <= w[1].1)
        .map(|w| (w[0].0, w[1].0))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `closest`, `interpolation_pair` and `get` agree with a model over any history,
    /// stamps (with repeats) and query times, including ones outside the held range.
    #[test]
    fn time_queries_match_the_model(
        history_log in 0u32..5,
        gaps in proptest::collection::vec(0u64..50, 1..40),
        queries in proptest::collection::vec((0u64..2200, 0u64..60), 1..20),
    ) {
        let history = 1usize << history_log;
        let name = Name::new("model");
        let (mut w, mut r) = pair(&name, 8, history);
        let mut stamps = Vec::new();
        let mut t = 100;
        for (i, gap) in gaps.iter().enumerate() {
            t += gap;
            w.publish_at(&(i as u64 + 1).to_le_bytes(), t).unwrap();
            stamps.push((i as u64 + 1, t));
        }
        let held = &stamps[stamps.len().saturating_sub(history)..];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for &(q, max) in &queries {
            let got = r.closest(q, max, &mut a).unwrap();
            // Ties: any held value at the same distance is right; the model picks the
            // earliest such stamp, the board the earlier neighbour of the search.
            let want = model_closest(held, q, max);
            match (got, want) {
                (None, None) => {}
                (Some(s), Some(m)) => {
                    let ms = held.iter().find(|h| h.0 == m).unwrap().1;
                    prop_assert_eq!(s.timestamp_ns.abs_diff(q), ms.abs_diff(q));
                    prop_assert_eq!(a.clone(), s.sequence.to_le_bytes().to_vec());
                }
                other => prop_assert!(false, "closest({}, {}): {:?}", q, max, other),
            }
            let got = r.interpolation_pair(q, &mut a, &mut b).unwrap();
            match (got, model_pair(held, q)) {
                (None, None) => {}
                (Some((x, y)), Some(_)) => {
                    prop_assert!(x.timestamp_ns <= q && q <= y.timestamp_ns);
                    prop_assert_eq!(x.sequence + 1, y.sequence);
                    prop_assert_eq!(a.clone(), x.sequence.to_le_bytes().to_vec());
                    prop_assert_eq!(b.clone(), y.sequence.to_le_bytes().to_vec());
                }
                other => prop_assert!(false, "pair({}): {:?}", q, other),
            }
        }
        for back in 0..history {
            let got = r.get(back, &mut a).unwrap().map(|s| s.sequence);
            let want = held.len().checked_sub(back + 1).map(|i| held[i].0);
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn an_unready_board_is_stale_only_once_old_and_unmapped() {
    let _serial = stale_boards();
    let name = Name::new("unready");
    let path = format!("/dev/shm/{}", segment_name(&name.0));
    // What a creator leaves between creating the object and taking its lock, or a creator
    // that died there: no lock, no header.
    write_owned(&path, &[0u8; 1000]);
    assert!(!board_is_stale(&name.0).unwrap(), "a creator may be about to lock it");
    assert!(!remove_stale_boards().unwrap().contains(&name.0));
    let old = std::time::SystemTime::now() - Duration::from_secs(5);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
    assert!(board_is_stale(&name.0).unwrap());
    assert!(remove_stale_boards().unwrap().contains(&name.0));
    assert!(!std::path::Path::new(&path).exists());
}
