//! `_native.Control`: live settings and statistics of one side (poll intervals and wait
//! modes, local and remote; peer state; counters), usable from any thread.

use std::time::Duration;

use capnp_shm_transport::{Control, DirectionStats, PeerState, Side};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::channel::PyChannel;
use crate::errors::to_py;
use crate::options::{wait_mode, wait_name};

/// Live settings and statistics of one side of a channel.
#[pyclass(frozen, module = "capnp_shm_transport._native", name = "Control")]
pub(crate) struct PyControl {
    /// The channel it speaks for (a `Control` of its own would keep the side open).
    pub(crate) channel: Py<PyChannel>,
}

impl PyControl {
    fn control(&self, py: Python<'_>) -> PyResult<Control> {
        self.channel.get().control(py)
    }
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
    fn name(&self, py: Python<'_>) -> PyResult<String> {
        let c = self.control(py)?;
        Ok(c.name().to_owned())
    }
    /// `"a"` (creator) or `"b"`.
    #[getter]
    fn side(&self, py: Python<'_>) -> PyResult<&'static str> {
        let c = self.control(py)?;
        Ok({
            match c.side() {
                Side::A => "a",
                _ => "b",
            }
        })
    }
    /// The channel's generation (changes when side B re-attaches to a new side A).
    #[getter]
    fn generation(&self, py: Python<'_>) -> PyResult<u64> {
        let c = self.control(py)?;
        Ok(c.generation())
    }
    /// Payload bytes per slot: messages up to this size take one slot each.
    #[getter]
    fn slot_size(&self, py: Python<'_>) -> PyResult<usize> {
        let c = self.control(py)?;
        Ok(c.slot_size())
    }
    /// The largest message the channel carries (one that covers every slot).
    #[getter]
    fn max_message_len(&self, py: Python<'_>) -> PyResult<usize> {
        let c = self.control(py)?;
        Ok(c.max_message_len())
    }
    /// Slots per direction.
    #[getter]
    fn slot_count(&self, py: Python<'_>) -> PyResult<usize> {
        let c = self.control(py)?;
        Ok(c.slot_count())
    }
    /// This side's poll interval in µs.
    #[getter]
    fn local_poll_us(&self, py: Python<'_>) -> PyResult<u128> {
        let c = self.control(py)?;
        Ok(c.local_poll_interval().as_micros())
    }
    /// The peer's poll interval in µs.
    #[getter]
    fn remote_poll_us(&self, py: Python<'_>) -> PyResult<u128> {
        let c = self.control(py)?;
        Ok(c.remote_poll_interval().as_micros())
    }
    /// This side's wait mode: `"block"`, `"spin"` or `"sleep"`.
    #[getter]
    fn local_wait(&self, py: Python<'_>) -> PyResult<&'static str> {
        let c = self.control(py)?;
        Ok(wait_name(c.local_wait_mode(), c.local_poll_interval()))
    }
    /// The peer's wait mode: `"block"`, `"spin"` or `"sleep"`.
    #[getter]
    fn remote_wait(&self, py: Python<'_>) -> PyResult<&'static str> {
        let c = self.control(py)?;
        Ok(wait_name(c.remote_wait_mode(), c.remote_poll_interval()))
    }
    /// Sets this side's (`remote=False`) or the peer's wait mode and poll interval, live.
    #[pyo3(signature = (wait, poll_us = 0, remote = false))]
    fn set_wait(&self, py: Python<'_>, wait: &str, poll_us: u32, remote: bool) -> PyResult<()> {
        let (mode, poll): (_, Duration) = wait_mode(wait, poll_us)?;
        let c = &self.control(py)?;
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
    fn peer_state(&self, py: Python<'_>) -> PyResult<&'static str> {
        let c = self.control(py)?;
        Ok({
            match c.peer_state() {
                PeerState::NotAttached => "not_attached",
                PeerState::Alive => "alive",
                PeerState::Closed => "closed",
                PeerState::Dead => "dead",
            }
        })
    }
    /// Whether the peer process is attached and alive.
    #[getter]
    fn peer_alive(&self, py: Python<'_>) -> PyResult<bool> {
        let c = self.control(py)?;
        Ok(c.peer_alive())
    }
    /// Whether the peer closed its side.
    #[getter]
    fn peer_closed(&self, py: Python<'_>) -> PyResult<bool> {
        let c = self.control(py)?;
        Ok(c.peer_closed())
    }
    /// Counters of both directions: `{"outgoing": {...}, "incoming": {...}}`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.control(py)?.stats();
        let out = PyDict::new(py);
        out.set_item("outgoing", direction(py, &s.outgoing)?)?;
        out.set_item("incoming", direction(py, &s.incoming)?)?;
        Ok(out)
    }
}
