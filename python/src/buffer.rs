//! Borrowing the bytes of any object that exports the buffer protocol, without copying.
//!
//! The stable ABI gained `Py_buffer` and `PyObject_GetBuffer` only in CPython 3.11, so
//! pyo3 offers them to an abi3-py39 module only on 3.11+. Their layout and symbols have
//! not changed since CPython 3.3 and every CPython 3.9+ exports them, so this module
//! declares them itself: the one place where the wheel relies on more than the 3.9 stable
//! ABI. `bytes` takes a faster path that needs none of it.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::ffi::{PyObject, Py_ssize_t};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// CPython's `Py_buffer` (Include/pybuffer.h, unchanged since 3.3).
#[repr(C)]
struct RawBuffer {
    buf: *mut c_void,
    obj: *mut PyObject,
    len: Py_ssize_t,
    itemsize: Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut Py_ssize_t,
    strides: *mut Py_ssize_t,
    suboffsets: *mut Py_ssize_t,
    internal: *mut c_void,
}

/// `PyBUF_SIMPLE`: contiguous bytes, read-only access is enough.
const PYBUF_SIMPLE: c_int = 0;
/// `PyBUF_WRITABLE`: contiguous bytes the caller may write.
const PYBUF_WRITABLE: c_int = 0x0001;

extern "C" {
    fn PyObject_GetBuffer(obj: *mut PyObject, view: *mut RawBuffer, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut RawBuffer);
}

/// An exported buffer, released on drop. While it lives the exporter keeps the memory in
/// place (a `bytearray` refuses to resize, an `mmap` to close), so the bytes stay valid
/// with the GIL released.
pub(crate) struct Exported {
    raw: RawBuffer,
}

// SAFETY: the export pins the memory until `PyBuffer_Release`, which `Drop` calls after
// taking the GIL (`Python::attach`) on whatever thread drops it; in between, the bytes are
// plain memory that any thread may read (a GIL-released read does exactly that).
unsafe impl Send for Exported {}

impl Exported {
    /// Exports `obj`'s buffer, writable when `writable`. A `TypeError` for an object
    /// without the buffer protocol, the exporter's own error for a non-contiguous one.
    pub(crate) fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Exported> {
        let mut raw = RawBuffer {
            buf: ptr::null_mut(),
            obj: ptr::null_mut(),
            len: 0,
            itemsize: 0,
            readonly: 0,
            ndim: 0,
            format: ptr::null_mut(),
            shape: ptr::null_mut(),
            strides: ptr::null_mut(),
            suboffsets: ptr::null_mut(),
            internal: ptr::null_mut(),
        };
        let flags = if writable {
            PYBUF_WRITABLE
        } else {
            PYBUF_SIMPLE
        };
        // SAFETY: `obj` is a live object (we hold the GIL and a reference); `raw` is a
        // properly laid-out, writable Py_buffer that the call fills on success.
        let rc = unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut raw, flags) };
        if rc != 0 {
            let py = obj.py();
            let err = PyErr::take(py).unwrap_or_else(|| PyTypeError::new_err("no buffer"));
            // A read-only exporter answers a writable request with BufferError; Python's
            // own `readinto` calls raise TypeError for both cases.
            let not_writable = writable && err.is_instance_of::<PyBufferError>(py);
            if err.is_instance_of::<PyTypeError>(py) || not_writable {
                let kind = obj
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                let which = if writable { "writable " } else { "" };
                return Err(PyTypeError::new_err(format!(
                    "a {which}bytes-like object (buffer protocol) is required, not '{kind}'"
                )));
            }
            return Err(err);
        }
        Ok(Exported { raw })
    }

    /// The exported bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.raw.len <= 0 || self.raw.buf.is_null() {
            return &[];
        }
        // SAFETY: a PyBUF_SIMPLE/WRITABLE export is `len` contiguous bytes at `buf`, valid
        // until released, which happens only in Drop.
        unsafe { std::slice::from_raw_parts(self.raw.buf as *const u8, self.raw.len as usize) }
    }

    /// The exported bytes, writable (only for an export made with `writable`).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        if self.raw.len <= 0 || self.raw.buf.is_null() {
            return &mut [];
        }
        // SAFETY: as `bytes`; the export was requested PyBUF_WRITABLE (and succeeded, so
        // the exporter allows writes), and `&mut self` makes this the only slice.
        unsafe { std::slice::from_raw_parts_mut(self.raw.buf as *mut u8, self.raw.len as usize) }
    }
}

impl Drop for Exported {
    fn drop(&mut self) {
        // PyBuffer_Release must run with the GIL held; attach takes it if this thread
        // does not hold it already.
        Python::attach(|_py| {
            // SAFETY: `raw` was filled by a successful PyObject_GetBuffer and is released
            // exactly once, here.
            unsafe { PyBuffer_Release(&mut self.raw) }
        });
    }
}

/// A message argument: a `bytes` object (immutable: read in place) or any other buffer
/// exporter (pinned by an export).
pub(crate) enum Message<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(Exported),
}

impl<'py> Message<'py> {
    /// Borrows `obj`'s bytes for a send.
    pub(crate) fn get(obj: &Bound<'py, PyAny>) -> PyResult<Message<'py>> {
        match obj.cast::<PyBytes>() {
            Ok(b) => Ok(Message::Bytes(b.clone())),
            Err(_) => Exported::get(obj, false).map(Message::Buffer),
        }
    }

    /// The message's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Message::Bytes(b) => b.as_bytes(),
            Message::Buffer(e) => e.bytes(),
        }
    }
}
