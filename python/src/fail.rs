//! Why one attempt of a sliced wait failed ([`Fail`]), and taking the channel's locks
//! under its lock rule (see `channel`).

use std::sync::{Mutex, MutexGuard};

use capnp_shm_transport::Error;
use pyo3::prelude::*;

use crate::errors::{to_py, usage};

/// Why an attempt failed: the library's error, or a state of this handle.
pub(crate) enum Fail {
    Lib(Error),
    /// `(exception class, message)`.
    Here(&'static str, String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Lib(e)
    }
}

impl Fail {
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, Fail::Lib(Error::Timeout { .. }))
    }
    pub(crate) fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Fail::Lib(e) => to_py(py, e),
            Fail::Here(class, message) => usage(py, class, message),
        }
    }
    pub(crate) fn closed() -> Fail {
        Fail::Here("ChannelClosed", "this channel was closed".into())
    }
    pub(crate) fn view_open() -> Fail {
        Fail::Here(
            "ViewInUse",
            "a recv_view of the previous message (or a memoryview derived from it) is still \
             alive; its slot is released when the last one is"
                .into(),
        )
    }
}

/// Locks `m`: blocking when the GIL is released (`gil == false`), else `try_lock` (a busy
/// lock then reads as a timeout, and the caller retries with the GIL released).
pub(crate) fn lock<T>(m: &Mutex<T>, gil: bool, busy: Fail) -> Result<MutexGuard<'_, T>, Fail> {
    if gil {
        m.try_lock().map_err(|_| busy)
    } else {
        m.lock()
            .map_err(|_| Fail::Here("Error", "a lock was poisoned".into()))
    }
}

/// A timeout of this attempt (`full`: a send's), retried while the call's wait lasts.
pub(crate) fn busy(full: bool) -> Fail {
    Fail::Lib(Error::Timeout { full })
}
