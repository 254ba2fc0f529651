//! Named POSIX shared-memory segments: create, open, remove, name checks.
//!
//! A thin wrapper over the `shared_memory` crate. That crate cannot unlink by name and does
//! not check sizes, so removal goes through `libc::shm_unlink` and every user of a
//! [`Segment`] checks [`Segment::len`] against what it expects (the `layout` module does).

use std::ffi::CString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use shared_memory::{Shmem, ShmemConf, ShmemError};

use crate::error::{Error, Result};

/// Longest channel name accepted: `NAME_MAX` (255) minus the `.fs.a2b` suffix.
pub const MAX_NAME_LEN: usize = 255 - SUFFIX_LEN;
const SUFFIX_LEN: usize = ".fs.a2b".len();

/// Where Linux keeps POSIX shared-memory objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// Which of a channel's two segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `<name>.fs.a2b`: side A writes, side B reads.
    AToB = 0,
    /// `<name>.fs.b2a`: side B writes, side A reads.
    BToA = 1,
}

impl Direction {
    /// The suffix appended to the channel name.
    pub fn suffix(self) -> &'static str {
        match self {
            Direction::AToB => ".fs.a2b",
            Direction::BToA => ".fs.b2a",
        }
    }

    /// The segment's file name under `/dev/shm` for channel `name`.
    pub fn segment_name(self, name: &str) -> String {
        format!("{name}{}", self.suffix())
    }
}

/// Checks a channel name: non-empty, at most [`MAX_NAME_LEN`] bytes, no `/` or NUL, and
/// not `.` or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "must not be empty".to_string()
    } else if name.len() > MAX_NAME_LEN {
        format!(
            "{} bytes is longer than the limit of {MAX_NAME_LEN}",
            name.len()
        )
    } else if name.contains('/') {
        format!("`{name}` must not contain '/'")
    } else if name.contains('\0') {
        "must not contain NUL".to_string()
    } else if name == "." || name == ".." {
        format!("`{name}` is not a usable name")
    } else {
        return Ok(());
    };
    Err(Error::invalid("name", why))
}

/// One mapped shared-memory segment. Unmapped on drop; never unlinked implicitly (see
/// [`Segment::remove_if_same`]).
pub(crate) struct Segment {
    shmem: Shmem,
    name: String,
    /// Inode of the object this segment mapped, to recognise it by name later.
    inode: u64,
}

// SAFETY: `Shmem` is !Send/!Sync only because it holds the mapping's raw pointer. The
// pointer is valid from creation until drop, `Segment` never mutates `Shmem` after
// construction, and all access to the mapped bytes goes through atomics or raw pointers
// whose users uphold the ring protocol, so sharing and sending the handle is sound.
unsafe impl Send for Segment {}
// SAFETY: see `Send` above; `&Segment` only exposes the pointer and length.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates segment `name` (exclusive, mode 0600) of `len` zeroed bytes.
    pub(crate) fn create(name: &str, len: usize) -> Result<Segment> {
        let mut shmem = ShmemConf::new()
            .os_id(os_id(name))
            .size(len)
            .create()
            .map_err(|e| shmem_error("shm_open(O_CREAT|O_EXCL)", name, e))?;
        // Removal is explicit and checked (remove_if_same), never by name on drop: an old
        // creator must not unlink a newer creator's segment of the same name.
        shmem.set_owner(false);
        let inode = inode_of(name).map_err(|e| os("stat", name, e))?;
        Ok(Segment {
            shmem,
            name: name.to_string(),
            inode,
        })
    }

    /// Opens an existing segment. `Ok(None)` when it does not exist yet, or exists but has
    /// not been sized yet (the creator is between `shm_open` and `ftruncate`).
    pub(crate) fn open(name: &str) -> Result<Option<Segment>> {
        match ShmemConf::new().os_id(os_id(name)).open() {
            Ok(mut shmem) => {
                shmem.set_owner(false);
                let inode = inode_of(name).unwrap_or(0);
                Ok(Some(Segment {
                    shmem,
                    name: name.to_string(),
                    inode,
                }))
            }
            Err(ShmemError::MapOpenFailed(errno))
                if errno == libc::ENOENT as u32 || errno == libc::EINVAL as u32 =>
            {
                // ENOENT: not created yet. EINVAL: mmap of a zero-length object (created,
                // not yet truncated to size).
                Ok(None)
            }
            Err(e) => Err(shmem_error("shm_open", name, e)),
        }
    }

    /// Start of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.shmem.as_ptr()
    }

    /// The mapping's real length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.shmem.len()
    }

    /// Unlinks the segment's name only if it still names the object this segment mapped.
    pub(crate) fn remove_if_same(&self) {
        if inode_of(&self.name).ok() == Some(self.inode) {
            let _ = remove(&self.name);
        }
    }
}

/// Unlinks segment `name`. Returns `Ok(false)` when it did not exist.
pub(crate) fn remove(name: &str) -> Result<bool> {
    let c_name = CString::new(os_id(name)).map_err(|_| Error::invalid("name", "contains NUL"))?;
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::shm_unlink(c_name.as_ptr()) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOENT) {
        Ok(false)
    } else {
        Err(os("shm_unlink", name, err))
    }
}

/// The path of segment `name` under `/dev/shm`.
pub(crate) fn path_of(name: &str) -> PathBuf {
    PathBuf::from(SHM_DIR).join(name)
}

fn inode_of(name: &str) -> io::Result<u64> {
    std::fs::metadata(path_of(name)).map(|m| m.ino())
}

fn os_id(name: &str) -> String {
    format!("/{name}")
}

fn os(op: &'static str, name: &str, source: io::Error) -> Error {
    Error::Os {
        op,
        name: name.to_string(),
        source,
    }
}

fn shmem_error(op: &'static str, name: &str, e: ShmemError) -> Error {
    let source = match e {
        ShmemError::MapCreateFailed(errno)
        | ShmemError::MapOpenFailed(errno)
        | ShmemError::UnknownOsError(errno) => io::Error::from_raw_os_error(errno as i32),
        ShmemError::MappingIdExists => io::Error::from_raw_os_error(libc::EEXIST),
        other => io::Error::other(other.to_string()),
    };
    os(op, name, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("ok-name_1.x").is_ok());
        for bad in ["", "a/b", "/abs", ".", "..", "nul\0"] {
            assert!(
                matches!(
                    validate_name(bad),
                    Err(Error::InvalidArgument { what: "name", .. })
                ),
                "{bad:?} was accepted"
            );
        }
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn segment_names_have_direction_suffixes() {
        assert_eq!(Direction::AToB.segment_name("ch"), "ch.fs.a2b");
        assert_eq!(Direction::BToA.segment_name("ch"), "ch.fs.b2a");
    }
}
