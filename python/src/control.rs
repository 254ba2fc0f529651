//! `_native.Control`: live settings and statistics of one side (poll intervals and wait
//! modes, local and remote; peer state; counters), usable from any thread.

use std::time::Duration;

use capnp_shm_transport::{Control, DirectionStats, PeerState, Side};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::to_py;
use crate::options::{wait_mode, wait_name};

/// Live settings and statistics of one side of a channel.
#[pyclass(frozen, module = "capnp_shm_transport._native", name = "Control")]
pub(crate) struct PyControl {
    pub(crate) control: Control,
}

fn direction<'py>(py: Python<'py>, d: &DirectionStats) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("slot_size", d.slot_size)?;
    out.set_item("slot_count", d.slot_count)?;
    out.set_item("used_slots", d.used_slots)?;
    out.set_item("producer_closed", d.producer_closed)?;
    out.set_item("messages_sent", d.messages_sent)?;
    out.set_item("bytes_sent", d.bytes_sent)?;
    out.set_item("messages_received", d.messages_received)?;
    out.set_item("bytes_received", d.bytes_received)?;
    Ok(out)
}

#[pymethods]
impl PyControl {
    /// The channel's name.
    #[getter]
    fn name(&self) -> String {
        self.control.name().to_owned()
    }
    /// `"a"` (creator) or `"b"`.
    #[getter]
    fn side(&self) -> &'static str {
        match self.control.side() {
            Side::A => "a",
            _ => "b",
        }
    }
    /// The channel's generation (changes when side B re-attaches to a new side A).
    #[getter]
    fn generation(&self) -> u64 {
        self.control.generation()
    }
    /// Payload bytes per slot.
    #[getter]
    fn slot_size(&self) -> usize {
        self.control.slot_size()
    }
    /// Slots per direction.
    #[getter]
    fn slot_count(&self) -> usize {
        self.control.slot_count()
    }
    /// This side's poll interval in µs.
    #[getter]
    fn local_poll_us(&self) -> u128 {
        self.control.local_poll_interval().as_micros()
    }
    /// The peer's poll interval in µs.
    #[getter]
    fn remote_poll_us(&self) -> u128 {
        self.control.remote_poll_interval().as_micros()
    }
    /// This side's wait mode: `"block"`, `"spin"` or `"sleep"`.
    #[getter]
    fn local_wait(&self) -> &'static str {
        wait_name(
            self.control.local_wait_mode(),
            self.control.local_poll_interval(),
        )
    }
    /// The peer's wait mode: `"block"`, `"spin"` or `"sleep"`.
    #[getter]
    fn remote_wait(&self) -> &'static str {
        wait_name(
            self.control.remote_wait_mode(),
            self.control.remote_poll_interval(),
        )
    }
    /// Sets this side's (`remote=False`) or the peer's wait mode and poll interval, live.
    #[pyo3(signature = (wait, poll_us = 0, remote = false))]
    fn set_wait(&self, py: Python<'_>, wait: &str, poll_us: u32, remote: bool) -> PyResult<()> {
        let (mode, poll): (_, Duration) = wait_mode(wait, poll_us)?;
        let c = &self.control;
        let set = if remote {
            c.set_remote_poll_interval(poll)
        } else {
            c.set_local_poll_interval(poll)
        };
        set.map_err(|e| to_py(py, e))?;
        if remote {
            c.set_remote_wait_mode(mode);
        } else {
            c.set_local_wait_mode(mode);
        }
        Ok(())
    }
    /// `"not_attached"`, `"alive"`, `"closed"` or `"dead"`.
    #[getter]
    fn peer_state(&self) -> &'static str {
        match self.control.peer_state() {
            PeerState::NotAttached => "not_attached",
            PeerState::Alive => "alive",
            PeerState::Closed => "closed",
            PeerState::Dead => "dead",
        }
    }
    /// Whether the peer process is attached and alive.
    #[getter]
    fn peer_alive(&self) -> bool {
        self.control.peer_alive()
    }
    /// Whether the peer closed its side.
    #[getter]
    fn peer_closed(&self) -> bool {
        self.control.peer_closed()
    }
    /// Counters of both directions: `{"outgoing": {...}, "incoming": {...}}`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.control.stats();
        let out = PyDict::new(py);
        out.set_item("outgoing", direction(py, &s.outgoing)?)?;
        out.set_item("incoming", direction(py, &s.incoming)?)?;
        Ok(out)
    }
}
