//! Named POSIX shared-memory segments: create, open, map, remove, name checks, and the
//! owner lock that claims one side of a channel.
//!
//! Direct `shm_open` / `fstat` / `mmap` (no wrapper crate), because the descriptor is
//! needed after mapping: the owner lock is taken on it, and `fstat` on it names the very
//! object that was mapped (its owner, mode and identity: see the `ownership` module).
//! Every user of a [`Segment`] checks [`Segment::len`] against what it expects (the
//! `layout` module does).
//!
//! **The owner lock.** Each side holds an open-file-description lock (`fcntl(F_OFD_SETLK)`,
//! a write lock on byte 0) on the segment it writes for as long as it is attached: side A
//! on `<name>.fs.a2b`, side B on `<name>.fs.b2a`. The kernel drops it when the descriptor
//! closes, so a process that dies frees its side without anyone trusting a word in the
//! mapping; two opens in one process conflict too (the lock belongs to the open file
//! description, not to the process); and an observer tests it with `F_OFD_GETLK`, which
//! takes nothing, so looking never makes a real opener fail.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::ptr::NonNull;

use crate::error::{Corruption, Error, Result};
use crate::ownership::{Identity, Stat, SEGMENT_MODE};
use crate::sigbus;

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

/// An open shared-memory object, not necessarily mapped: its descriptor (which carries
/// the owner lock) and what `fstat` on it reported when it was opened.
pub(crate) struct Object {
    fd: OwnedFd,
    stat: Stat,
}

impl Object {
    /// Opens existing object `name` (read-write). `Ok(None)` when it does not exist;
    /// [`Error::Foreign`] when we may not open it because it is not ours (someone else's,
    /// or our own with another mode). Does not check ownership otherwise: users of the
    /// object call [`Object::check_ours`] (a creator's object is briefly empty and, under
    /// a narrow umask, of another mode until its `fchmod`).
    pub(crate) fn open(name: &str) -> Result<Option<Object>> {
        match shm_open(name, libc::O_RDWR, 0) {
            Ok(fd) => Object::from_fd(name, fd).map(Some),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                match Stat::of_path(&format!("{SHM_DIR}/{name}")) {
                    Ok(stat) => stat.check_ours(name)?,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
                    Err(_) => {}
                }
                Err(os("shm_open", name, e))
            }
            Err(e) => Err(os("shm_open", name, e)),
        }
    }

    fn from_fd(name: &str, fd: OwnedFd) -> Result<Object> {
        let stat = Stat::of(fd.as_fd()).map_err(|e| os("fstat", name, e))?;
        Ok(Object { fd, stat })
    }

    /// [`Error::Foreign`] unless the object, as `fstat` reported it when opened, is a
    /// regular file owned by our effective uid with mode 0600.
    pub(crate) fn check_ours(&self, name: &str) -> Result<()> {
        self.stat.check_ours(name)
    }

    /// Unlinks `name` only if it still names this object (see the `ownership` module's
    /// removal window). Returns `Ok(true)` when it unlinked it.
    pub(crate) fn remove_if_named(&self, name: &str) -> Result<bool> {
        if self.is_named_by(name) {
            remove(name)
        } else {
            Ok(false)
        }
    }

    /// Takes the owner lock. `Ok(false)` when another open file description holds it (a
    /// live owner, in this process or another).
    pub(crate) fn try_lock(&self) -> io::Result<bool> {
        match self.owner_lock(libc::F_OFD_SETLK, libc::F_WRLCK) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Releases the owner lock (closing the descriptor would too).
    pub(crate) fn unlock(&self) {
        let _ = self.owner_lock(libc::F_OFD_SETLK, libc::F_UNLCK);
    }

    /// Whether another open file description holds the owner lock (tested, not taken).
    /// `false` when the test itself fails (it cannot on Linux 3.15 and later).
    pub(crate) fn lock_held(&self) -> bool {
        self.owner_lock(libc::F_OFD_GETLK, libc::F_WRLCK)
            .is_ok_and(|l_type| l_type != libc::F_UNLCK as libc::c_short)
    }

    /// One `fcntl` on the owner lock (byte 0); returns the `l_type` the kernel left.
    fn owner_lock(&self, cmd: libc::c_int, l_type: libc::c_int) -> io::Result<libc::c_short> {
        // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = l_type as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = 0;
        lock.l_len = 1;
        // OFD locks require l_pid = 0 (already zero).
        // SAFETY: `fd` is open and `lock` is a valid, writable `flock` on our stack.
        if unsafe { libc::fcntl(self.fd.as_raw_fd(), cmd, &mut lock) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(lock.l_type)
    }

    /// Reads the native-endian u32 at `offset` through the descriptor, as information
    /// only (such as a pid to name in an error): any value is accepted, nothing is mapped.
    pub(crate) fn read_u32(&self, offset: usize) -> Option<u32> {
        let mut bytes = [0u8; 4];
        // SAFETY: reads at most 4 bytes into our 4-byte buffer from an open descriptor.
        let n = unsafe {
            libc::pread(
                self.fd.as_raw_fd(),
                bytes.as_mut_ptr().cast(),
                4,
                libc::off_t::try_from(offset).ok()?,
            )
        };
        (n == 4).then(|| u32::from_ne_bytes(bytes))
    }

    /// The object's inode.
    pub(crate) fn inode(&self) -> u64 {
        self.stat.id.ino()
    }

    /// Whether segment name `name` refers to this object: the device and inode of what it
    /// names now (`fstat` on a descriptor of it) are this object's.
    pub(crate) fn is_named_by(&self, name: &str) -> bool {
        Stat::of_path(&format!("{SHM_DIR}/{name}")).ok().map(|s| s.id) == Some(self.identity())
    }

    fn identity(&self) -> Identity {
        self.stat.id
    }
}

/// One mapped shared-memory segment. Unmapped on drop; never unlinked implicitly (see
/// [`Segment::remove_if_same`]).
pub(crate) struct Segment {
    object: Object,
    ptr: NonNull<u8>,
    len: usize,
    name: String,
    /// The mapping's slot in the SIGBUS guard's registry (`None` when it was full).
    guard: Option<usize>,
}

// SAFETY: the raw pointer is the only thing that keeps `Segment` from being Send/Sync. It
// is valid from creation until drop (unmapped only then), `Segment` never changes it, and
// all access to the mapped bytes goes through atomics or raw pointers whose users uphold
// the ring protocol, so sharing and sending the handle is sound.
unsafe impl Send for Segment {}
// SAFETY: see `Send` above; `&Segment` only exposes the pointer, length and descriptor.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates segment `name` (exclusive, mode 0600 whatever the umask) of `len` zeroed
    /// bytes. With `claim`, takes the owner lock on it right after creating it, before
    /// sizing and mapping.
    pub(crate) fn create(name: &str, len: usize, claim: bool) -> Result<Segment> {
        let fd = shm_open(name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, SEGMENT_MODE)
            .map_err(|e| os("shm_open(O_CREAT|O_EXCL)", name, e))?;
        // The umask narrowed the mode `shm_open` was given (0600 under umask 0277 is
        // 0400, which a side B refuses): set it exactly, before anyone can see it sized.
        // SAFETY: fchmod on a descriptor we own.
        if unsafe { libc::fchmod(fd.as_raw_fd(), SEGMENT_MODE) } != 0 {
            let err = io::Error::last_os_error();
            let _ = remove(name);
            return Err(os("fchmod", name, err));
        }
        let object = Object::from_fd(name, fd)?;
        let sized = if claim && !object.try_lock().unwrap_or(false) {
            // Only an opener of this very object, in the instant since we created it, can
            // hold its lock: a concurrent creator of the same name.
            Err(os("F_OFD_SETLK", name, io::Error::from_raw_os_error(libc::EAGAIN)))
        } else {
            let size = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
            // SAFETY: ftruncate on a descriptor we own.
            match unsafe { libc::ftruncate(object.fd.as_raw_fd(), size) } {
                0 => Segment::map(name, object, len),
                _ => Err(os("ftruncate", name, io::Error::last_os_error())),
            }
        };
        if sized.is_err() {
            let _ = remove(name);
        }
        sized
    }

    /// Opens an existing segment. `Ok(None)` when it does not exist yet, or exists but has
    /// not been sized yet (the creator is between `shm_open` and `ftruncate`).
    /// [`Error::Foreign`] when it is not ours (see [`Object::check_ours`]).
    pub(crate) fn open(name: &str) -> Result<Option<Segment>> {
        let Some(object) = Object::open(name)? else {
            return Ok(None);
        };
        if object.stat.len == 0 {
            return Ok(None);
        }
        object.check_ours(name)?;
        let len = usize::try_from(object.stat.len)
            .map_err(|_| os("mmap", name, io::Error::from_raw_os_error(libc::EFBIG)))?;
        Segment::map(name, object, len).map(Some)
    }

    fn map(name: &str, object: Object, len: usize) -> Result<Segment> {
        // SAFETY: a fresh shared read-write mapping of `len` bytes of an open descriptor;
        // the kernel picks the address, so no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                object.fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os("mmap", name, io::Error::last_os_error()));
        }
        Ok(Segment {
            object,
            ptr: NonNull::new(ptr.cast()).expect("mmap never returns null on success"),
            len,
            name: name.to_string(),
            guard: sigbus::register(ptr.cast(), len),
        })
    }

    /// Start of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapping's real length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The mapped object's descriptor and owner lock.
    pub(crate) fn object(&self) -> &Object {
        &self.object
    }

    /// Whether the segment's name still refers to the object this segment mapped.
    pub(crate) fn is_named(&self) -> bool {
        self.object.is_named_by(&self.name)
    }

    /// `Some(Truncated)` once the object was found shrunk below the mapping: by the SIGBUS
    /// guard (a fault past its end) or by `fstat` here. On first detection here the mapping
    /// is marked and replaced by zero pages, so no later access faults. A cold-path check
    /// (one `fstat` unless the guard's mark is already set).
    pub(crate) fn truncation(&self) -> Option<Corruption> {
        let marked = self.guard.is_some_and(sigbus::is_truncated);
        let size = self.size();
        if !marked {
            if size >= self.len as u64 {
                return None;
            }
            self.mark_truncated();
            self.zero_fill();
        }
        Some(Corruption::Truncated {
            segment: self.name.clone(),
            mapped: self.len,
            size,
        })
    }

    /// Whether the SIGBUS guard (or an earlier [`Segment::truncation`]) marked this
    /// mapping truncated: one Acquire load, no system call.
    pub(crate) fn marked(&self) -> bool {
        self.guard.is_some_and(sigbus::is_truncated)
    }

    /// Whether the object is now smaller than the mapping (`fstat` on our descriptor).
    pub(crate) fn shrunk(&self) -> bool {
        self.size() < self.len as u64
    }

    /// Marks the mapping truncated in the guard's registry (what `truncation` reports).
    pub(crate) fn mark_truncated(&self) {
        if let Some(slot) = self.guard {
            sigbus::mark(slot);
        }
    }

    /// Replaces the mapping with zero pages at the same address (after a truncation).
    pub(crate) fn zero_fill(&self) {
        // SAFETY: our own live mapping, exactly as `map` made it; `&self` keeps it mapped.
        unsafe { sigbus::zero_fill(self.ptr.as_ptr(), self.len) };
    }

    /// The object's current size (`fstat` on our descriptor); 0 when it cannot be read.
    fn size(&self) -> u64 {
        // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open and `st` is a writable `stat` on our stack.
        if unsafe { libc::fstat(self.object.fd.as_raw_fd(), &mut st) } != 0 {
            return 0;
        }
        u64::try_from(st.st_size).unwrap_or(0)
    }

    /// Unlinks the segment's name only if it still names the object this segment mapped.
    pub(crate) fn remove_if_same(&self) {
        let _ = self.object.remove_if_named(&self.name);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Unregistered first: the SIGBUS guard must never zero-fill a range after munmap.
        if let Some(slot) = self.guard {
            sigbus::unregister(slot);
        }
        // SAFETY: unmaps exactly the mapping `map` made; no reference into it outlives the
        // segment (regions hold an `Arc<Segment>`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn shm_open(name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c_name = CString::new(os_id(name)).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call.
    let fd = unsafe { libc::shm_open(c_name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own exclusively.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
