//! Helpers shared by the integration tests: unique channel names and cleanup guards.
#![allow(dead_code)]
// each test file uses a different subset
// The crate funnels its atomics through a loom-aware module (clippy.toml); test helpers
// are not model-checked and use std's directly.
#![allow(clippy::disallowed_types)]

pub mod peer;
pub mod signal;

use std::sync::atomic::{AtomicU32, Ordering};

/// A channel name unique to this process and call site, removed (both segments) when the
/// guard drops, so a failing test leaves nothing in /dev/shm.
pub struct TestName(pub String);

impl TestName {
    pub fn new(test: &str) -> TestName {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("cst-{test}-{}-{n}", std::process::id());
        let _ = capnp_shm_transport::remove_channel(&name);
        TestName(name)
    }

    pub fn path(&self, suffix: &str) -> std::path::PathBuf {
        std::path::PathBuf::from("/dev/shm").join(format!("{}{suffix}", self.0))
    }
}

impl std::ops::Deref for TestName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for TestName {
    fn drop(&mut self) {
        let _ = capnp_shm_transport::remove_channel(&self.0);
        let _ = capnp_shm_transport::board::remove_board(&self.0);
    }
}

/// Writes a segment file as side A creates one: mode 0600, owned by us (any other mode or
/// owner is refused with `Error::Foreign` before its bytes are looked at).
pub fn write_segment(
    path: impl AsRef<std::path::Path>,
    bytes: impl AsRef<[u8]>,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes.as_ref())
}

/// Deterministic message `i` of a stream: a length in `0..=max_len` and bytes derived
/// from `i`, so a receiver can check loss, duplication, reordering and contents.
pub fn message(stream: u64, i: u64, max_len: usize, buf: &mut Vec<u8>) {
    let mut x = (i ^ stream.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    let len = (x % (max_len as u64 + 1)) as usize;
    buf.clear();
    buf.extend((0..len).map(|j| (x >> ((j % 8) * 8)) as u8 ^ j as u8));
    if len >= 8 {
        buf[..8].copy_from_slice(&i.to_le_bytes());
    }
}

/// A path in the project tree: under `CARGO_MANIFEST_DIR` for Cargo, or relative to the
/// working directory, which is the runfiles root under Bazel (where the compile-time
/// manifest directory may not exist).
pub fn project_path(relative: &str) -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if manifest.join(relative).exists() {
        manifest.join(relative)
    } else {
        std::path::PathBuf::from(relative)
    }
}
