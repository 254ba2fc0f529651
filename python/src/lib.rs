//! `capnp_shm_transport._native`: the Rust side of the Python package. The pure-Python
//! package (`capnp_shm_transport/`) wraps it with the public classes, the exception
//! hierarchy, the `recv_view` block and the pycapnp helpers.

#![warn(clippy::undocumented_unsafe_blocks)]

mod buffer;
mod channel;
mod control;
mod errors;
mod fail;
mod lease;
mod options;
mod rx;
mod tools;
mod waiting;

use pyo3::prelude::*;

use channel::PyChannel;
use control::PyControl;
use options::{callable, on_disconnect, reconnect, seconds, trust, wait_mode, Options};
use waiting::Wait;

/// Side A: creates channel `name` (see `Channel.create`).
#[pyfunction]
#[pyo3(signature = (name, slot_size = None, slot_count = None, wait = "block", poll_us = 0,
    trust_mode = "cooperating", dead_after = None, replace_live = false, sigbus_guard = true,
    burst = None, on_receive = None, on_event = None))]
#[allow(clippy::too_many_arguments)]
fn create(
    py: Python<'_>,
    name: String,
    slot_size: Option<usize>,
    slot_count: Option<usize>,
    wait: &str,
    poll_us: u32,
    trust_mode: &str,
    dead_after: Option<f64>,
    replace_live: bool,
    sigbus_guard: bool,
    burst: Option<usize>,
    on_receive: Option<Bound<'_, PyAny>>,
    on_event: Option<Bound<'_, PyAny>>,
) -> PyResult<PyChannel> {
    let options = Options {
        name,
        slot_size,
        slot_count,
        wait: wait_mode(wait, poll_us)?,
        trust: trust(trust_mode)?,
        dead_after: dead_after.map(|s| seconds("dead_after", s)).transpose()?,
        replace_live,
        sigbus_guard,
        burst,
        reconnect: None,
        on_disconnect: Default::default(),
        on_receive: callable("on_receive", on_receive)?,
        on_event: callable("on_event", on_event)?,
    };
    PyChannel::build(py, options, true, Wait::Once)
}

/// Side B: opens channel `name`, waiting up to `timeout` for side A (see `Channel.open`).
#[pyfunction]
#[pyo3(signature = (name, timeout = Some(5.0), wait = "block", poll_us = 0,
    trust_mode = "cooperating", dead_after = None, sigbus_guard = true, burst = None,
    reconnect_policy = None, disconnect = "fail", on_receive = None, on_event = None))]
#[allow(clippy::too_many_arguments)]
fn open(
    py: Python<'_>,
    name: String,
    timeout: Option<f64>,
    wait: &str,
    poll_us: u32,
    trust_mode: &str,
    dead_after: Option<f64>,
    sigbus_guard: bool,
    burst: Option<usize>,
    reconnect_policy: Option<(f64, u32, f64)>,
    disconnect: &str,
    on_receive: Option<Bound<'_, PyAny>>,
    on_event: Option<Bound<'_, PyAny>>,
) -> PyResult<PyChannel> {
    let options = Options {
        name,
        slot_size: None,
        slot_count: None,
        wait: wait_mode(wait, poll_us)?,
        trust: trust(trust_mode)?,
        dead_after: dead_after.map(|s| seconds("dead_after", s)).transpose()?,
        replace_live: false,
        sigbus_guard,
        burst,
        reconnect: reconnect(reconnect_policy)?,
        on_disconnect: on_disconnect(disconnect)?,
        on_receive: callable("on_receive", on_receive)?,
        on_event: callable("on_event", on_event)?,
    };
    PyChannel::build(py, options, false, Wait::from_py(timeout)?)
}

/// The live settings and statistics of `channel`.
#[pyfunction]
fn control_of(channel: &Bound<'_, PyChannel>) -> PyControl {
    PyControl {
        channel: channel.clone().unbind(),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyChannel>()?;
    m.add_class::<PyControl>()?;
    m.add_class::<lease::Lease>()?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(control_of, m)?)?;
    m.add_function(wrap_pyfunction!(tools::list_channels, m)?)?;
    m.add_function(wrap_pyfunction!(tools::inspect, m)?)?;
    m.add_function(wrap_pyfunction!(tools::remove, m)?)?;
    m.add_function(wrap_pyfunction!(tools::remove_stale, m)?)?;
    m.add_function(wrap_pyfunction!(tools::is_stale, m)?)?;
    m.add("DEFAULT_SLOT_SIZE", capnp_shm_transport::DEFAULT_SLOT_SIZE)?;
    m.add(
        "DEFAULT_SLOT_COUNT",
        capnp_shm_transport::DEFAULT_SLOT_COUNT,
    )?;
    Ok(())
}
