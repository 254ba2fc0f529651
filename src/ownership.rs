//! Ownership and identity of shared-memory objects.
//!
//! **Ownership.** A segment is used (mapped by side B, taken over by side A's create,
//! judged stale) only when it is a regular file owned by our effective uid with mode
//! exactly 0600: anything else was created or changed by someone else, who may read or
//! write it. The check is [`Stat::check_ours`], on `fstat` of the open descriptor.
//!
//! **Identity.** An object is its `(st_dev, st_ino)` as `fstat` reports it on a descriptor
//! we hold open (so the inode cannot be freed and its number reused meanwhile). Whether a
//! name still refers to an object is asked by opening the name again (`O_PATH |
//! O_NOFOLLOW`: no permission needed, a symbolic link is not followed) and comparing
//! `fstat` of that descriptor, never by `stat` on the path.
//!
//! **The removal window.** POSIX shared memory has no unlink-by-descriptor, so a removal
//! compares the name's identity with the object it judged and then calls `shm_unlink` by
//! name. A creator that replaces the name between that comparison and the unlink (it must
//! itself remove the old object and create a new one, in that instant) loses its new name;
//! no other interleaving does. [`removal_window`] marks where a removal has opened what it
//! judges; tests run a newer creator there.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};

/// The mode a segment must have: read and write for its owner only.
pub(crate) const SEGMENT_MODE: libc::mode_t = 0o600;

/// Which object a descriptor refers to: device and inode, from `fstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    /// The inode number (what `/proc/<pid>/maps` shows).
    pub(crate) fn ino(self) -> u64 {
        self.ino
    }
}

/// What `fstat` reports about an open object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) id: Identity,
    pub(crate) uid: u32,
    /// Full `st_mode`: file type and permission bits.
    pub(crate) mode: u32,
    pub(crate) len: u64,
}

impl Stat {
    /// `fstat` on `fd`.
    pub(crate) fn of(fd: BorrowedFd<'_>) -> io::Result<Stat> {
        // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open for the borrow and `st` is a writable `stat` on our stack.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Stat {
            id: Identity {
                dev: st.st_dev,
                ino: st.st_ino,
            },
            uid: st.st_uid,
            mode: st.st_mode,
            len: u64::try_from(st.st_size).unwrap_or(0),
        })
    }

    /// `fstat` on a descriptor of whatever `path` (a segment's file) names now, opened with
    /// `O_PATH | O_NOFOLLOW` (no permission on the object needed; a symbolic link is
    /// itself).
    pub(crate) fn of_path(path: &str) -> io::Result<Stat> {
        let path = std::ffi::CString::new(path)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(path.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own exclusively.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Stat::of(fd.as_fd())
    }

    /// [`Error::Foreign`] unless this is a regular file owned by our effective uid with
    /// mode exactly 0600.
    pub(crate) fn check_ours(&self, name: &str) -> Result<()> {
        let expected_uid = euid();
        let regular = self.mode & libc::S_IFMT == libc::S_IFREG;
        if regular && self.uid == expected_uid && self.mode & 0o7777 == SEGMENT_MODE {
            return Ok(());
        }
        Err(Error::Foreign {
            name: name.to_string(),
            owner_uid: self.uid,
            mode: self.mode,
            expected_uid,
        })
    }
}

/// Our effective uid.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Marks where a removal has opened what it judges and will unlink it by name (see the
/// module's "removal window"). Tests run their interleaving here; elsewhere it does
/// nothing.
pub(crate) fn removal_window() {
    #[cfg(test)]
    if let Some(hook) = BEFORE_UNLINK.with(|h| h.borrow_mut().take()) {
        hook();
    }
}

#[cfg(test)]
thread_local! {
    /// Tests only: run once, on this thread, by the next [`removal_window`].
    pub(crate) static BEFORE_UNLINK: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}
