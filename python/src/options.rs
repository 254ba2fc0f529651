//! The keyword arguments of `Channel.create` and `Channel.open`, turned into a
//! [`ChannelBuilder`]: wait modes by name, trust, reconnection, and the Python callbacks
//! the receive and liveness threads call.

use std::sync::Arc;
use std::time::Duration;

use capnp_shm_transport::{
    Channel, ChannelBuilder, LinkEvent, OnDisconnect, ReconnectPolicy, Trust, WaitMode,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// How a side waits, by its Python name, and its poll interval.
pub(crate) fn wait_mode(wait: &str, poll_us: u32) -> PyResult<(WaitMode, Duration)> {
    let us = |v: u32| Duration::from_micros(v.into());
    match wait {
        "block" => Ok((WaitMode::Block, us(poll_us))),
        "spin" => Ok((WaitMode::Poll, Duration::ZERO)),
        "sleep" => Ok((WaitMode::Poll, us(if poll_us == 0 { 50 } else { poll_us }))),
        other => Err(PyValueError::new_err(format!(
            "wait must be 'block', 'spin' or 'sleep', not {other:?}"
        ))),
    }
}

/// The Python name of a wait mode and poll interval.
pub(crate) fn wait_name(mode: WaitMode, poll: Duration) -> &'static str {
    match (mode, poll.is_zero()) {
        (WaitMode::Block, _) => "block",
        (WaitMode::Poll, true) => "spin",
        (WaitMode::Poll, false) => "sleep",
    }
}

/// Seconds as a positive `Duration` (`what` names the argument in the error).
pub(crate) fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{what} must be a positive number of seconds, not {s}"
            ))
        })
}

/// Everything a builder needs, kept so side B can build one per open attempt.
pub(crate) struct Options {
    pub name: String,
    pub slot_size: Option<usize>,
    pub slot_count: Option<usize>,
    pub wait: (WaitMode, Duration),
    pub trust: Trust,
    pub dead_after: Option<Duration>,
    pub replace_live: bool,
    pub sigbus_guard: bool,
    pub burst: Option<usize>,
    pub reconnect: Option<ReconnectPolicy>,
    pub on_disconnect: OnDisconnect,
    pub on_receive: Option<Arc<Py<PyAny>>>,
    pub on_event: Option<Arc<Py<PyAny>>>,
}

/// Parses `trust`.
pub(crate) fn trust(name: &str) -> PyResult<Trust> {
    match name {
        "cooperating" => Ok(Trust::Cooperating),
        "untrusted" => Ok(Trust::Untrusted),
        other => Err(PyValueError::new_err(format!(
            "trust must be 'cooperating' or 'untrusted', not {other:?}"
        ))),
    }
}

/// Parses `on_disconnect`.
pub(crate) fn on_disconnect(name: &str) -> PyResult<OnDisconnect> {
    match name {
        "fail" => Ok(OnDisconnect::Fail),
        "wait" => Ok(OnDisconnect::WaitForReconnect),
        "keep_waiting" => Ok(OnDisconnect::KeepWaiting),
        other => Err(PyValueError::new_err(format!(
            "on_disconnect must be 'fail', 'wait' or 'keep_waiting', not {other:?}"
        ))),
    }
}

/// Parses `reconnect=(retry_interval_s, max_attempts, max_wait_s)` (zeros: unlimited).
pub(crate) fn reconnect(policy: Option<(f64, u32, f64)>) -> PyResult<Option<ReconnectPolicy>> {
    let Some((retry, attempts, max_wait)) = policy else {
        return Ok(None);
    };
    let max_wait = if max_wait == 0.0 {
        Duration::ZERO
    } else {
        seconds("max_wait", max_wait)?
    };
    Ok(Some(ReconnectPolicy {
        retry_interval: seconds("retry_interval", retry)?,
        max_attempts: attempts,
        max_wait,
    }))
}

/// A callable argument (`None` or callable).
pub(crate) fn callable(
    what: &str,
    f: Option<Bound<'_, PyAny>>,
) -> PyResult<Option<Arc<Py<PyAny>>>> {
    match f {
        None => Ok(None),
        Some(f) if f.is_callable() => Ok(Some(Arc::new(f.unbind()))),
        Some(f) => Err(PyValueError::new_err(format!(
            "{what} must be callable, not {}",
            f.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))),
    }
}

impl Options {
    /// A builder with these options (callbacks included; a fresh one per attempt).
    pub(crate) fn builder(&self) -> ChannelBuilder {
        let mut b = Channel::builder(self.name.clone())
            .poll_interval(self.wait.1)
            .wait_mode(self.wait.0)
            .trust(self.trust)
            .replace_live(self.replace_live)
            .sigbus_guard(self.sigbus_guard)
            .on_disconnect(self.on_disconnect);
        if let Some(v) = self.slot_size {
            b = b.slot_size(v);
        }
        if let Some(v) = self.slot_count {
            b = b.slot_count(v);
        }
        if let Some(v) = self.dead_after {
            b = b.dead_after(v);
        }
        if let Some(v) = self.burst {
            b = b.burst(v);
        }
        if let Some(policy) = self.reconnect {
            b = b.reconnect(policy);
        }
        if let Some(cb) = &self.on_receive {
            let cb = cb.clone();
            b = b.on_receive(move |msg| call_on_receive(&cb, msg));
        }
        if let Some(cb) = &self.on_event {
            let cb = cb.clone();
            b = b.on_event(move |event| call_on_event(&cb, event));
        }
        b
    }
}

/// Calls the receive callback with the message as `bytes`, holding the GIL for the call
/// only. An exception it raises goes to `sys.unraisablehook` and the thread goes on with
/// the next message.
fn call_on_receive(cb: &Py<PyAny>, msg: &[u8]) {
    Python::attach(|py| {
        let bytes = PyBytes::new(py, msg);
        if let Err(e) = cb.call1(py, (bytes,)) {
            e.write_unraisable(py, Some(cb.bind(py)));
        }
    });
}

/// Calls the event callback with `(event_name, value)`; `value` is the attempt number of
/// `reconnecting`/`gave_up`, the generation of `reconnected`, else `None`.
fn call_on_event(cb: &Py<PyAny>, event: LinkEvent) {
    let (name, value): (&str, Option<u64>) = match event {
        LinkEvent::PeerDead => ("peer_dead", None),
        LinkEvent::PeerClosed => ("peer_closed", None),
        LinkEvent::PeerAttached => ("peer_attached", None),
        LinkEvent::Reconnecting { attempt } => ("reconnecting", Some(attempt.into())),
        LinkEvent::Reconnected { generation } => ("reconnected", Some(generation)),
        LinkEvent::GaveUp { attempts } => ("gave_up", Some(attempts.into())),
        LinkEvent::ReceiveStopped => ("receive_stopped", None),
        _ => ("other", None),
    };
    Python::attach(|py| {
        if let Err(e) = cb.call1(py, (name, value)) {
            e.write_unraisable(py, Some(cb.bind(py)));
        }
    });
}
