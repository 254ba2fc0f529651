//! The lease behind a `recv_view`: while it lives, the viewed message stays held (its slot
//! is not released, so the peer cannot reuse it, and the mapping stays). The Python layer
//! ties it to the view's exporter, so it ends only when no memoryview over the slot is
//! left (see `capnp_shm_transport._view`).

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use crate::channel::RxSlot;

/// Holds one viewed message; `release()` or garbage collection lets it go.
#[pyclass(frozen, module = "capnp_shm_transport._native")]
pub(crate) struct Lease {
    rx: Arc<Mutex<RxSlot>>,
    id: u64,
}

impl Lease {
    pub(crate) fn new(rx: Arc<Mutex<RxSlot>>, id: u64) -> Lease {
        Lease { rx, id }
    }

    /// Releases the message (once; later calls do nothing). Locks with the GIL released
    /// (the channel's lock rule).
    fn end(&self, py: Python<'_>) {
        py.detach(|| {
            // A poisoned lock means a panic elsewhere: the message then stays held.
            if let Ok(mut slot) = self.rx.lock() {
                let closed = slot.closed;
                if let Some(rx) = slot.rx.as_mut() {
                    rx.end_view(self.id);
                    if closed && !rx.view_open() {
                        slot.rx = None; // `close` waited for this view
                    }
                }
            }
        });
    }
}

#[pymethods]
impl Lease {
    /// Releases the viewed message's slot. Call only when no memoryview over it is left.
    fn release(&self, py: Python<'_>) {
        self.end(py);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        Python::attach(|py| self.end(py));
    }
}
