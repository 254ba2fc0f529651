//! Ownership and identity: side B's `open()` refuses a segment that is not owned by our
//! effective uid or whose mode is not 0600, side A's create refuses to take over such a
//! leftover, and side A creates its segments with mode 0600 whatever the umask.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use capnp_shm_transport::{Channel, Error};
use common::peer::{read_stdin_line, say, Peer};
use common::TestName;

/// A uid that is not ours (`nobody` on most systems).
const OTHER_UID: u32 = 65534;
const SUFFIXES: [&str; 2] = [".fs.a2b", ".fs.b2a"];

#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    match role.as_str() {
        "umask-a" => {
            // SAFETY: umask only sets this process's file-creation mask.
            unsafe { libc::umask(0o277) };
            let _a = Channel::builder(&name).slot_count(8).create().unwrap();
            say("created");
            read_stdin_line();
        }
        other => panic!("unknown role {other}"),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Asserts that `result` is the refusal of segment `segment` with this owner and mode.
fn assert_foreign<T>(result: Result<T, Error>, segment: &str, owner: u32, perms: u32) {
    match result {
        Err(Error::Foreign {
            name,
            owner_uid,
            mode,
            ..
        }) => {
            assert_eq!(name, segment, "the error names the segment");
            assert_eq!(owner_uid, owner, "the error names the owner");
            assert_eq!(
                mode & 0o7777,
                perms,
                "the error names the mode (got {mode:o})"
            );
        }
        Err(e) => panic!("expected Error::Foreign for {segment}, got: {e}"),
        Ok(_) => panic!("{segment} (owner {owner}, mode {perms:o}) was accepted"),
    }
}

/// Whether this process may give a file away (as root, the test runs everywhere it must).
fn can_chown() -> bool {
    if euid() != 0 {
        eprintln!("SKIPPED: not root, cannot give a segment to uid {OTHER_UID}");
        return false;
    }
    true
}

#[test]
fn open_refuses_a_world_writable_segment() {
    for suffix in SUFFIXES {
        let name = TestName::new("own-0666");
        let _a = Channel::builder(&*name).slot_count(8).create().unwrap();
        let path = name.path(suffix);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let opened = Channel::builder(&*name)
            .open_timeout(Duration::from_secs(5))
            .open();
        assert_foreign(opened, &format!("{}{suffix}", name.0), euid(), 0o666);
    }
}

#[test]
fn open_refuses_a_foreign_owned_segment() {
    if !can_chown() {
        return;
    }
    for suffix in SUFFIXES {
        let name = TestName::new("own-uid");
        let _a = Channel::builder(&*name).slot_count(8).create().unwrap();
        std::os::unix::fs::chown(name.path(suffix), Some(OTHER_UID), None).unwrap();
        let opened = Channel::builder(&*name)
            .open_timeout(Duration::from_secs(5))
            .open();
        assert_foreign(opened, &format!("{}{suffix}", name.0), OTHER_UID, 0o600);
    }
}

/// Leaves a segment `path` behind as someone else would: no owner lock, no header.
fn leftover(path: &std::path::Path, mode: u32, owner: Option<u32>) -> u64 {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(4096).unwrap();
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .unwrap();
    if owner.is_some() {
        std::os::unix::fs::fchown(&file, owner, None).unwrap();
    }
    file.metadata().unwrap().ino()
}

#[test]
fn create_refuses_to_take_over_a_foreign_or_world_writable_leftover() {
    let mut cases = vec![(0o666, None, euid())];
    if can_chown() {
        cases.push((0o600, Some(OTHER_UID), OTHER_UID));
    }
    for (mode, owner, owner_uid) in cases {
        for suffix in SUFFIXES {
            let name = TestName::new("own-left");
            let path = name.path(suffix);
            let inode = leftover(&path, mode, owner);
            let created = Channel::builder(&*name).slot_count(8).create();
            assert_foreign(created, &format!("{}{suffix}", name.0), owner_uid, mode);
            let kept = std::fs::metadata(&path).expect("the leftover was removed");
            assert_eq!(kept.ino(), inode, "the leftover was replaced");
        }
    }
}

#[test]
fn segments_are_created_with_mode_0600_whatever_the_umask() {
    let name = TestName::new("own-umask");
    let mut a = Peer::spawn("umask-a", &name);
    a.expect_line("created");
    for suffix in SUFFIXES {
        let meta = std::fs::metadata(name.path(suffix)).unwrap();
        assert_eq!(
            meta.mode() & 0o7777,
            0o600,
            "{suffix} created under umask 0277 has mode {:o}",
            meta.mode() & 0o7777
        );
    }
    let b = Channel::builder(&*name)
        .open_timeout(Duration::from_secs(5))
        .open();
    assert!(b.is_ok(), "B cannot open it: {:?}", b.err());
    a.tell("stop");
    a.finish();
}
