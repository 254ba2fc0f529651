//! `_native.Channel`: one side of a channel, for Python. Sends and receives release the
//! GIL while they wait (see `waiting`); the two halves have locks of their own, so one
//! Python thread can block in `recv` while another sends.
//!
//! Lock rule: `tx` and `rx` are locked only with the GIL released (or with `try_lock`),
//! so a thread that holds one of them may take the GIL (to build `bytes`) without
//! deadlocking against a thread that holds the GIL and waits for the lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capnp_shm_transport::{Channel, Control, Error, OnDisconnect, Sender};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::buffer::{Exported, Message};
use crate::errors::{internal, to_py};
use crate::fail::{busy, lock, Fail};
use crate::options::Options;
use crate::rx::{Got, Rx};
use crate::waiting::{sliced, Wait};

/// The sending half: the whole channel when a receive thread owns the receiver (the
/// channel keeps that thread), else the split-off sender.
#[allow(clippy::large_enum_variant)] // one per channel, never moved on a hot path
pub(crate) enum Tx {
    Whole(Channel),
    Split(Sender),
}

impl Tx {
    fn sender(&mut self) -> &mut Sender {
        match self {
            Tx::Whole(c) => c.sender(),
            Tx::Split(s) => s,
        }
    }
}

/// The receiving half and whether this side was closed (a view may keep it past `close`).
pub(crate) struct RxSlot {
    pub rx: Option<Rx>,
    pub closed: bool,
}

/// One side of a channel (see the Python class `capnp_shm_transport.Channel`).
#[pyclass(frozen, module = "capnp_shm_transport._native", name = "Channel")]
pub(crate) struct PyChannel {
    /// A user handle: the side closes when the last one drops, so `close` takes it out.
    control: Mutex<Option<Control>>,
    pub(crate) max_len: usize,
    tx: Mutex<Option<Tx>>,
    pub(crate) rx: Arc<Mutex<RxSlot>>,
    /// Whether calls wait through a reconnection (`on_disconnect` other than "fail"):
    /// then a slice that ends with `Reconnecting` is retried like a timeout.
    waits_for_reconnect: bool,
}

impl PyChannel {
    /// Builds with `options` (create for side A, open for side B), waiting for side A in
    /// slices so Ctrl-C interrupts an open.
    pub(crate) fn build(
        py: Python<'_>,
        options: Options,
        create: bool,
        open: Wait,
    ) -> PyResult<PyChannel> {
        let channel = if create {
            py.detach(|| options.builder().create())
                .map_err(|e| to_py(py, e))?
        } else {
            let started = std::time::Instant::now();
            let attempt = |slice: Duration| -> Result<Channel, Fail> {
                match options.builder().open_timeout(slice).open() {
                    // Side A not there yet: this slice timed out, try again.
                    Err(Error::NotFound { .. }) => Err(busy(false)),
                    other => other.map_err(Fail::Lib),
                }
            };
            match sliced(py, open, attempt, Fail::is_timeout)? {
                Ok(c) => c,
                Err(Fail::Lib(Error::Timeout { .. })) => {
                    let name = options.name.clone();
                    let waited = started.elapsed();
                    return Err(to_py(py, Error::NotFound { name, waited }));
                }
                Err(f) => return Err(f.into_py(py)),
            }
        };
        let control = channel.control().clone();
        let threaded = options.on_receive.is_some();
        let waits_for_reconnect = options.on_disconnect != OnDisconnect::Fail;
        let (tx, rx) = if threaded {
            (Tx::Whole(channel), None)
        } else {
            let (s, r) = channel.split().map_err(|e| to_py(py, e))?;
            (Tx::Split(s), Some(Rx::new(r)))
        };
        let mut tx = tx;
        let max_len = tx.sender().max_message_len();
        Ok(PyChannel {
            control: Mutex::new(Some(control)),
            max_len,
            tx: Mutex::new(Some(tx)),
            rx: Arc::new(Mutex::new(RxSlot { rx, closed: false })),
            waits_for_reconnect,
        })
    }

    /// The live settings, or `ChannelClosed` after `close`. The lock is only ever held
    /// for the clone, so taking it with the GIL held cannot deadlock.
    pub(crate) fn control(&self, py: Python<'_>) -> PyResult<Control> {
        let control = self.control.lock().map_err(|_| internal("control lock"))?;
        control.clone().ok_or_else(|| Fail::closed().into_py(py))
    }

    /// Whether a failed slice is retried while the call's own timeout lasts.
    fn retry(&self) -> impl Fn(&Fail) -> bool {
        let reconnect = self.waits_for_reconnect;
        move |f| f.is_timeout() || (reconnect && matches!(f, Fail::Lib(Error::Reconnecting)))
    }

    /// Runs `f` on the sender, waiting as `wait` says.
    fn with_sender<T: Send>(
        &self,
        py: Python<'_>,
        wait: Wait,
        f: impl Fn(&mut Sender, Duration) -> Result<T, Error> + Send + Sync,
    ) -> PyResult<T> {
        let attempt = |slice: Duration| -> Result<T, Fail> {
            let mut tx = lock(&self.tx, slice.is_zero(), busy(true))?;
            let tx = tx.as_mut().ok_or_else(Fail::closed)?;
            Ok(f(tx.sender(), slice)?)
        };
        sliced(py, wait, attempt, self.retry())?.map_err(|f| f.into_py(py))
    }

    /// Runs `f` on the receiving state, waiting as `wait` says.
    fn with_rx<T: Send>(
        &self,
        py: Python<'_>,
        wait: Wait,
        f: impl Fn(&mut Rx, Duration) -> Result<T, Fail> + Send + Sync,
    ) -> PyResult<T> {
        let attempt = |slice: Duration| -> Result<T, Fail> {
            let mut slot = lock(&self.rx, slice.is_zero(), busy(false))?;
            if slot.closed {
                return Err(Fail::closed());
            }
            let rx = slot.rx.as_mut().ok_or(Fail::Lib(Error::ReceiverInUse))?;
            f(rx, slice)
        };
        sliced(py, wait, attempt, self.retry())?.map_err(|f| f.into_py(py))
    }
}

/// The payload as a new `bytes` (takes the GIL: callers hold the `rx` lock, see above).
fn to_bytes(msg: &[u8]) -> Py<PyBytes> {
    Python::attach(|py| PyBytes::new(py, msg).unbind())
}

#[pymethods]
impl PyChannel {
    /// Sends one message (any contiguous buffer, read in place).
    #[pyo3(signature = (data, timeout = None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let wait = Wait::from_py(timeout)?;
        let msg = Message::get(data)?;
        let bytes = msg.bytes();
        self.with_sender(py, wait, |s, slice| s.send(bytes, slice))
    }

    /// Sends several messages with one free-space check; returns how many were sent.
    #[pyo3(signature = (messages, timeout = None))]
    fn send_batch(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let wait = Wait::from_py(timeout)?;
        let held: Vec<Message<'_>> = messages
            .try_iter()?
            .map(|m| Message::get(&m?))
            .collect::<PyResult<_>>()?;
        let slices: Vec<&[u8]> = held.iter().map(Message::bytes).collect();
        self.with_sender(py, wait, |s, slice| s.send_batch(&slices, slice))
    }

    /// Receives one message as `bytes`.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        let wait = Wait::from_py(timeout)?;
        self.with_rx(py, wait, |rx, slice| {
            let out = match rx.recv(slice) {
                Ok(Got::Message(guard)) => return Ok(to_bytes(&guard)),
                Ok(Got::Pending(bytes)) => to_bytes(bytes),
                Err(None) => return Err(Fail::view_open()),
                Err(Some(e)) => return Err(e.into()),
            };
            rx.clear_pending();
            Ok(out)
        })
    }

    /// Receives one message into a writable buffer; returns its length. A message longer
    /// than the buffer raises `BufferTooSmall` and stays for the next receive.
    #[pyo3(signature = (buffer, timeout = None))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let wait = Wait::from_py(timeout)?;
        let out = Mutex::new(Exported::get(buffer, true)?);
        let got = self.with_rx(py, wait, |rx, slice| {
            let (addr, len, _) = rx
                .hold(slice, false)
                .map_err(|e| e.map_or_else(Fail::view_open, Fail::Lib))?;
            let mut out = out
                .lock()
                .map_err(|_| Fail::Here("Error", "poisoned".into()))?;
            let dest = out.bytes_mut();
            if len > dest.len() {
                return Ok(Err(len));
            }
            // SAFETY: `hold` returned the held message's address and length; it stays
            // held (valid, not reused) until `clear_pending` below.
            let src = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
            dest[..len].copy_from_slice(src);
            rx.clear_pending();
            Ok(Ok(len))
        })?;
        got.map_err(|len| {
            let needed = len.into_pyobject(py).map(|v| v.into_any().unbind());
            match needed {
                Ok(n) => crate::errors::raise(
                    py,
                    "BufferTooSmall",
                    format!("message of {len} bytes does not fit the buffer; it stays for the next receive"),
                    &[("needed", n)],
                ),
                Err(e) => e.into(),
            }
        })
    }

    /// Receives up to `max` messages (at least one, waiting as `timeout` says) as a list
    /// of `bytes`, releasing their slots together.
    #[pyo3(signature = (max = 64, timeout = None))]
    fn recv_batch<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let wait = Wait::from_py(timeout)?;
        let (arena, lens) = self.with_rx(py, wait, |rx, slice| {
            let receiver = rx.receiver_mut().ok_or_else(Fail::view_open)?;
            let (mut arena, mut lens) = (Vec::new(), Vec::new());
            receiver.recv_batch(max, slice, |m| {
                arena.extend_from_slice(m);
                lens.push(m.len());
            })?;
            Ok((arena, lens))
        })?;
        let mut at = 0;
        let items = lens.iter().map(|&n| {
            at += n;
            PyBytes::new(py, &arena[at - n..at])
        });
        PyList::new(py, items)
    }

    /// Holds the next message for a view: `(address, length, lease)`. Internal: use
    /// `Channel.recv_view`.
    #[pyo3(signature = (timeout = None))]
    fn _view_begin(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<(usize, usize, crate::lease::Lease)> {
        let wait = Wait::from_py(timeout)?;
        let (addr, len, id) = self.with_rx(py, wait, |rx, slice| {
            rx.hold(slice, true)
                .map_err(|e| e.map_or_else(Fail::view_open, Fail::Lib))
        })?;
        Ok((addr, len, crate::lease::Lease::new(self.rx.clone(), id)))
    }

    /// The largest message this channel carries.
    #[getter]
    fn max_message_len(&self) -> usize {
        self.max_len
    }

    /// Whether the receive thread (`on_receive`) runs.
    fn receive_thread_running(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| {
            let tx = self.tx.lock().map_err(|_| internal("tx lock"))?;
            Ok(matches!(tx.as_ref(), Some(Tx::Whole(c)) if c.receive_thread_running()))
        })
    }

    /// The error that stopped the receive thread, as an exception object, or `None`.
    fn take_receive_error(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let error = py.detach(|| {
            let tx = self.tx.lock().map_err(|_| internal("tx lock"))?;
            Ok::<_, PyErr>(match tx.as_ref() {
                Some(Tx::Whole(c)) => c.take_receive_error(),
                _ => None,
            })
        })?;
        Ok(error.map(|e| to_py(py, e).into_value(py).into_any()))
    }

    /// Closes this side: the peer sees it closed; later calls raise `ChannelClosed`. A
    /// receive thread is stopped and joined. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let control = self.control.lock().map(|mut c| c.take()).ok().flatten();
        // The last handle's drop shuts the side down, which may wait for a callback
        // thread that needs the GIL.
        py.detach(|| drop(control));
        let tx = py.detach(|| {
            self.tx
                .lock()
                .map(|mut t| t.take())
                .map_err(|_| internal("tx lock"))
        })?;
        // Joining a receive thread may wait for its callback, which needs the GIL.
        py.detach(|| drop(tx));
        py.detach(|| {
            let mut slot = self.rx.lock().map_err(|_| internal("rx lock"))?;
            slot.closed = true;
            if !slot.rx.as_ref().is_some_and(Rx::view_open) {
                slot.rx = None;
            }
            Ok(())
        })
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| {
            self.rx
                .lock()
                .map(|s| s.closed)
                .map_err(|_| internal("rx lock"))
        })
    }
}

impl Drop for PyChannel {
    /// A channel collected without `close`: its handles go with the GIL released, since
    /// the last one's drop joins the receive thread and shuts the liveness monitor down,
    /// either of which may be waiting for the GIL to call back into Python.
    fn drop(&mut self) {
        let tx = self.tx.get_mut().ok().and_then(Option::take);
        let control = self.control.get_mut().ok().and_then(Option::take);
        Python::attach(|py| py.detach(|| drop((tx, control))));
    }
}
