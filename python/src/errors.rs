//! The library's `Error` as Python exceptions: each variant raises the class of the same
//! name from `capnp_shm_transport._errors` (a pure-Python hierarchy under
//! `capnp_shm_transport.Error`), with the Rust message as its text and the variant's
//! values as attributes.

use capnp_shm_transport::{Corruption, Error};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

/// The `_errors` module, imported once.
static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The exception class `name` of `capnp_shm_transport._errors`.
fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let module = ERRORS.get_or_try_init(py, || {
        PyModule::import(py, "capnp_shm_transport._errors").map(Bound::unbind)
    })?;
    module.bind(py).getattr(name)
}

/// Raises `name(message)` with `attrs` set on the exception (a failure to build it raises
/// that failure instead, never panics).
pub(crate) fn raise(
    py: Python<'_>,
    name: &str,
    message: String,
    attrs: &[(&str, Py<PyAny>)],
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let exc = class(py, name)?.call1((message.clone(),))?;
        for (key, value) in attrs {
            exc.setattr(*key, value.bind(py))?;
        }
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|e| e)
}

/// Attribute names and values set on an exception.
type Attrs = Vec<(&'static str, Py<PyAny>)>;

/// Converts a library error into its Python exception.
pub(crate) fn to_py(py: Python<'_>, error: Error) -> PyErr {
    let message = error.to_string();
    let int = |v: u64| v.into_pyobject(py).map(|b| b.into_any().unbind());
    let text = |s: &str| s.into_pyobject(py).map(|b| b.into_any().unbind());
    let attrs = || -> PyResult<(&'static str, Attrs)> {
        Ok(match &error {
            Error::Timeout { full } => (
                "Timeout",
                vec![(
                    "full",
                    full.into_pyobject(py)?.to_owned().into_any().unbind(),
                )],
            ),
            Error::Closed => ("Closed", vec![]),
            Error::PeerDead => ("PeerDead", vec![]),
            Error::Reconnecting => ("Reconnecting", vec![]),
            Error::GaveUp => ("GaveUp", vec![]),
            Error::MessageTooLarge { len, max_len } => (
                "MessageTooLarge",
                vec![
                    ("len", int(*len as u64)?),
                    ("max_len", int(*max_len as u64)?),
                ],
            ),
            Error::InvalidArgument { what, .. } => ("InvalidArgument", vec![("what", text(what)?)]),
            Error::NotFound { name, .. } => ("NotFound", vec![("name", text(name)?)]),
            Error::SideInUse { name, side, pid } => (
                "SideInUse",
                vec![
                    ("name", text(name)?),
                    ("side", text(side)?),
                    ("pid", int(u64::from(*pid))?),
                ],
            ),
            Error::Foreign { name, .. } => ("Foreign", vec![("name", text(name)?)]),
            Error::ReceiverInUse => ("ReceiverInUse", vec![]),
            Error::Corrupt(c) => {
                let (kind, field) = corruption_field(c);
                (
                    "Corrupt",
                    vec![("kind", text(kind)?), ("field", text(field)?)],
                )
            }
            Error::Decode(_) => ("Decode", vec![]),
            Error::Encode(_) => ("Encode", vec![]),
            Error::Os { op, name, source } => (
                "OsError",
                vec![
                    ("op", text(op)?),
                    ("name", text(name)?),
                    ("errno", int(source.raw_os_error().unwrap_or(0) as u64)?),
                ],
            ),
            _ => ("Error", vec![]),
        })
    };
    match attrs() {
        Ok((name, attrs)) => raise(py, name, message, &attrs),
        Err(e) => e,
    }
}

/// The variant's name and the header field (or slot word) a corruption is about.
fn corruption_field(c: &Corruption) -> (&'static str, &'static str) {
    match c {
        Corruption::MappingTooSmall { .. } => ("MappingTooSmall", "mapping"),
        Corruption::BadMagic { .. } => ("BadMagic", "magic"),
        Corruption::UnsupportedVersion { .. } => ("UnsupportedVersion", "version"),
        Corruption::BadReady { .. } => ("BadReady", "ready"),
        Corruption::Geometry { field, .. } => ("Geometry", field),
        Corruption::GeometryExceedsMapping { .. } => ("GeometryExceedsMapping", "geometry"),
        Corruption::SegmentsDisagree { field, .. } => ("SegmentsDisagree", field),
        Corruption::IndexOutOfRange { .. } => ("IndexOutOfRange", "head/tail"),
        Corruption::CommitWord { .. } => ("CommitWord", "commit"),
        Corruption::Truncated { .. } => ("Truncated", "segment size"),
        Corruption::SlotLength { .. } => ("SlotLength", "len"),
        _ => ("Other", "unknown"),
    }
}

/// A Python-side usage error of this package (closed channel, view still open, ...).
pub(crate) fn usage(py: Python<'_>, name: &str, message: impl Into<String>) -> PyErr {
    raise(py, name, message.into(), &[])
}

/// An internal invariant broke (a poisoned lock): reported, never a panic across FFI.
pub(crate) fn internal(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!("capnp_shm_transport internal error: {what}"))
}
