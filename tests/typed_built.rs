//! Messages built without a `capnp::message::Builder` (`SendBuilt::send_built`): fields
//! read back, the earlier messages' bytes in the reused private buffer never show through
//! (only what the builder allocates is zeroed), a message that outgrows its capacity is
//! still delivered whole, and a build error publishes nothing.

mod common;
#[path = "common/demo_capnp.rs"]
mod demo_capnp;

use std::time::Duration;

use capnp_shm_transport::{Channel, Error, RecvMessage, SendBuilt, Trust};
use common::TestName;
use demo_capnp::sample;

const WAIT: Duration = Duration::from_secs(5);

fn pair(name: &TestName, trust: Trust) -> (Channel, Channel) {
    let a = Channel::builder(&name.0)
        .slot_size(256)
        .slot_count(4)
        .trust(trust)
        .create()
        .unwrap();
    let b = Channel::builder(&name.0)
        .open_timeout(WAIT)
        .trust(trust)
        .open()
        .unwrap();
    (a, b)
}

/// Receives one `Sample`: its seq, sent_ns, payload and whether its union is `none`.
fn receive(b: &mut Channel) -> (u64, u64, Vec<u8>, bool) {
    let msg = b.recv_message(WAIT).unwrap();
    let s = msg.root::<sample::Owned>().unwrap();
    let none = matches!(s.get_control().which(), Ok(sample::control::None(())));
    (
        s.get_seq(),
        s.get_sent_ns(),
        s.get_payload().unwrap().to_vec(),
        none,
    )
}

/// Fills the sender's private buffer (and every slot) with a message whose every field is
/// set, so anything a later build does not zero shows.
fn dirty(a: &mut Channel, b: &mut Channel) {
    for _ in 0..4 {
        a.send_built::<sample::Owned>(256, WAIT, |mut s| {
            s.set_seq(u64::MAX);
            s.set_sent_ns(u64::MAX);
            s.set_payload(&[0xff; 160]);
            s.get_control().init_tune().set_poll_interval_us(u32::MAX);
            Ok(())
        })
        .unwrap();
        assert_eq!(receive(b).1, u64::MAX);
    }
}

fn round_trips_over_stale_bytes(trust: Trust) {
    let name = TestName::new("built");
    let (mut a, mut b) = pair(&name, trust);
    dirty(&mut a, &mut b);
    for seq in 0..8u64 {
        // Only seq and payload are set: sent_ns and the union must read as zero.
        a.send_built::<sample::Owned>(256, WAIT, |mut s| {
            s.set_seq(seq);
            s.set_payload(&[seq as u8; 5]);
            Ok(())
        })
        .unwrap();
        assert_eq!(receive(&mut b), (seq, 0, vec![seq as u8; 5], true));
    }
}

#[test]
fn built_over_stale_bytes() {
    round_trips_over_stale_bytes(Trust::Cooperating);
}

#[test]
fn built_over_stale_bytes_to_an_untrusting_receiver() {
    round_trips_over_stale_bytes(Trust::Untrusted);
}

#[test]
fn a_message_that_outgrows_its_capacity_is_sent_whole() {
    let name = TestName::new("built-outgrown");
    for trust in [Trust::Cooperating, Trust::Untrusted] {
        let (mut a, mut b) = pair(&name, trust);
        dirty(&mut a, &mut b);
        // 32 bytes of room: the 200-byte payload goes to a second segment.
        a.send_built::<sample::Owned>(32, WAIT, |mut s| {
            s.set_seq(9);
            s.set_payload(&[7; 200]);
            Ok(())
        })
        .unwrap();
        let msg = b.recv_message(WAIT).unwrap();
        assert!(msg.bytes().len() > 200);
        let s = msg.root::<sample::Owned>().unwrap();
        assert_eq!(
            (s.get_seq(), s.get_payload().unwrap()),
            (9, &[7u8; 200][..])
        );
        drop(msg);
        drop((a, b));
    }
}

#[test]
fn a_build_error_publishes_nothing() {
    let name = TestName::new("built-error");
    let (mut a, mut b) = pair(&name, Trust::Cooperating);
    let failed = a.send_built::<sample::Owned>(128, WAIT, |mut s| {
        s.set_seq(1);
        Err(capnp::Error::failed("no".into()))
    });
    assert!(matches!(failed, Err(Error::Encode(_))), "{failed:?}");
    assert!(matches!(b.recv(Duration::ZERO), Err(Error::Timeout { .. })));
    // The slot is still usable.
    a.send_built::<sample::Owned>(128, WAIT, |mut s| {
        s.set_seq(2);
        Ok(())
    })
    .unwrap();
    assert_eq!(receive(&mut b).0, 2);
}

#[test]
fn a_capacity_below_two_words_is_too_large_a_request() {
    let name = TestName::new("built-tiny");
    let (mut a, _b) = pair(&name, Trust::Cooperating);
    let tiny = a.send_built::<sample::Owned>(15, WAIT, |_| Ok(()));
    assert!(
        matches!(tiny, Err(Error::MessageTooLarge { .. })),
        "{tiny:?}"
    );
}

#[test]
fn a_send_built_inside_a_build_closure_gets_a_buffer_of_its_own() {
    let name = TestName::new("built-nested");
    let (mut a, mut b) = pair(&name, Trust::Cooperating);
    let other = TestName::new("built-nested-other");
    let (mut c, mut d) = pair(&other, Trust::Cooperating);
    a.send_built::<sample::Owned>(128, WAIT, |mut s| {
        s.set_seq(1);
        // The thread's buffer is in use by the outer build: the inner one must not share it.
        c.send_built::<sample::Owned>(128, WAIT, |mut t| {
            t.set_seq(2);
            t.set_payload(b"inner");
            Ok(())
        })
        .map_err(|e| capnp::Error::failed(e.to_string()))?;
        s.set_payload(b"outer");
        Ok(())
    })
    .unwrap();
    assert_eq!(receive(&mut b), (1, 0, b"outer".to_vec(), true));
    assert_eq!(receive(&mut d), (2, 0, b"inner".to_vec(), true));
}
