//! Looking at channels without attaching: list, inspect, remove, remove the stale ones.

use capnp_shm_transport::inspect::{
    channel_is_stale, inspect_channel, list_channels as list, remove_stale_channels, RingInfo,
};
use capnp_shm_transport::remove_channel;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::to_py;
use crate::options::wait_name;

/// Names of the channels under `/dev/shm`, sorted.
#[pyfunction]
pub(crate) fn list_channels(py: Python<'_>) -> PyResult<Vec<String>> {
    list().map_err(|e| to_py(py, e))
}

fn ring<'py>(py: Python<'py>, r: &RingInfo) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("head", r.head)?;
    out.set_item("tail", r.tail)?;
    out.set_item("used_slots", r.used_slots)?;
    out.set_item("bytes_sent", r.bytes_sent)?;
    out.set_item("bytes_received", r.bytes_received)?;
    out.set_item("producer_pid", r.producer_pid)?;
    out.set_item("consumer_pid", r.consumer_pid)?;
    Ok(out)
}

/// Channel `name`'s headers as a dict, validated like an open would, without attaching.
#[pyfunction]
pub(crate) fn inspect<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let info = inspect_channel(name).map_err(|e| to_py(py, e))?;
    let out = PyDict::new(py);
    out.set_item("name", &info.name)?;
    out.set_item("generation", info.generation)?;
    out.set_item("creator_pid", info.creator_pid)?;
    out.set_item("slot_size", info.geometry.slot_size)?;
    out.set_item("slot_count", info.geometry.slot_count)?;
    out.set_item("a2b", ring(py, &info.a2b)?)?;
    out.set_item("b2a", ring(py, &info.b2a)?)?;
    out.set_item("poll_us", (info.poll_us[0], info.poll_us[1]))?;
    let wait = |i: usize| {
        let poll = std::time::Duration::from_micros(info.poll_us[i].into());
        wait_name(info.wait_mode[i], poll)
    };
    out.set_item("wait", (wait(0), wait(1)))?;
    out.set_item("closed", (info.closed[0], info.closed[1]))?;
    out.set_item("a_attached", info.a_attached())?;
    out.set_item("b_attached", info.b_attached())?;
    out.set_item("stale", info.creator_gone)?;
    Ok(out)
}

/// Removes channel `name`'s segments; `True` if any existed.
#[pyfunction]
pub(crate) fn remove(py: Python<'_>, name: &str) -> PyResult<bool> {
    remove_channel(name).map_err(|e| to_py(py, e))
}

/// Removes every channel whose creator is gone; returns their names.
#[pyfunction]
pub(crate) fn remove_stale(py: Python<'_>) -> PyResult<Vec<String>> {
    remove_stale_channels().map_err(|e| to_py(py, e))
}

/// Whether channel `name` is stale (its creator is gone).
#[pyfunction]
pub(crate) fn is_stale(py: Python<'_>, name: &str) -> PyResult<bool> {
    channel_is_stale(name).map_err(|e| to_py(py, e))
}
