//! Removal by name never unlinks a newer channel: a newer creator that takes the name
//! after a removal has judged the old channel (stale, or free to take over) keeps its
//! segments. The interleaving runs at [`crate::ownership::removal_window`], deterministically.

use std::cell::RefCell;
use std::os::unix::fs::OpenOptionsExt;
use std::rc::Rc;
use crate::sync::{AtomicU32, Ordering};

use crate::inspect::{inspect_channel, remove_if_stale};
use crate::segment::{self, Direction};
use crate::{remove_channel, Channel};

/// A unique channel name, removed (both segments) when dropped, failing or not.
struct Name(String);

impl Name {
    fn new(test: &str) -> Name {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = Name(format!("cst-{test}-{}-{n}", std::process::id()));
        let _ = remove_channel(&name.0);
        name
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = remove_channel(&self.0);
    }
}

/// Leaves both segments of a dead, unreadable channel `name` behind (ours, mode 0600,
/// zero-filled: never marked ready, mapped by no one).
fn leave_dead_channel(name: &str) {
    for direction in [Direction::AToB, Direction::BToA] {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(segment::path_of(&direction.segment_name(name)))
            .unwrap();
        file.set_len(4096).unwrap();
    }
}

/// Arms the interleaving: in the next removal window on this thread, a newer side A creates
/// channel `name`; the returned slot holds it (and its generation) afterwards.
fn newer_creator_at_judgement(name: &str) -> Rc<RefCell<Option<(Channel, u64)>>> {
    let newer = Rc::new(RefCell::new(None));
    let (slot, name) = (newer.clone(), name.to_string());
    crate::ownership::BEFORE_UNLINK.with(|h| {
        *h.borrow_mut() = Some(Box::new(move || {
            let a = Channel::builder(&name).slot_count(8).create().unwrap();
            let generation = a.control().generation();
            *slot.borrow_mut() = Some((a, generation));
        }))
    });
    newer
}

/// Asserts that the newer channel still has both its segments under its name.
fn assert_intact(name: &str, newer: &RefCell<Option<(Channel, u64)>>) {
    let generation = newer.borrow().as_ref().expect("the interleaving ran").1;
    let info = inspect_channel(name).expect("the newer channel lost a segment");
    assert_eq!(info.generation, generation, "not the newer channel");
    let b = Channel::builder(name).open();
    assert!(b.is_ok(), "B cannot open the newer channel: {:?}", b.err());
}

#[test]
fn remove_stale_leaves_a_channel_created_after_judging_the_old_one() {
    let name = Name::new("rm-judged");
    leave_dead_channel(&name.0);
    let newer = newer_creator_at_judgement(&name.0);
    let removed = remove_if_stale(&name.0).unwrap();
    assert_intact(&name.0, &newer);
    assert!(!removed, "reported the newer channel removed");
}

#[test]
fn create_leaves_a_channel_created_after_judging_the_old_one() {
    let name = Name::new("claim-judged");
    leave_dead_channel(&name.0);
    let newer = newer_creator_at_judgement(&name.0);
    let late = Channel::builder(&name.0).slot_count(8).create();
    assert!(late.is_err(), "two creators took one name");
    assert_intact(&name.0, &newer);
}
