//! Python timeouts, and waits that release the GIL and stay interruptible: a wait runs in
//! slices of at most [`SLICE`] with the GIL released, and checks for signals (Ctrl-C)
//! between slices, so `KeyboardInterrupt` is raised within one slice and other Python
//! threads run meanwhile.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The longest stretch a wait runs without looking for a pending signal.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// A call's timeout: `None` waits without limit, `0` tries once, a positive number of
/// seconds waits up to that long.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    Once,
    Until(Instant),
    Forever,
}

impl Wait {
    /// Parses a Python timeout (`None`, or seconds as an int or float, `>= 0`).
    pub(crate) fn from_py(timeout: Option<f64>) -> PyResult<Wait> {
        match timeout {
            None => Ok(Wait::Forever),
            Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(format!(
                "timeout must be None or a number of seconds >= 0, not {t}"
            ))),
            Some(0.0) => Ok(Wait::Once),
            Some(t) => Ok(Duration::try_from_secs_f64(t)
                .ok()
                .and_then(|d| Instant::now().checked_add(d))
                .map_or(Wait::Forever, Wait::Until)),
        }
    }

    /// The next slice: `None` when the deadline has passed (after the first try).
    fn slice(&self) -> Option<Duration> {
        match self {
            Wait::Once => None,
            Wait::Forever => Some(SLICE),
            Wait::Until(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(SLICE))
            }
        }
    }
}

/// Runs `attempt` until it succeeds or fails with something other than a timeout
/// (`is_timeout`), or `wait` ends: first once with a zero timeout while holding the GIL
/// (so a ready ring costs no GIL hand-off; the attempt must not block then), then in
/// slices with the GIL released, checking for signals between slices. The last timeout
/// error is returned when the wait ends.
pub(crate) fn sliced<T, E, F>(
    py: Python<'_>,
    wait: Wait,
    mut attempt: F,
    is_timeout: impl Fn(&E) -> bool,
) -> PyResult<Result<T, E>>
where
    T: Send,
    E: Send,
    F: FnMut(Duration) -> Result<T, E> + Send,
{
    let mut last = match attempt(Duration::ZERO) {
        Err(e) if is_timeout(&e) => e,
        other => return Ok(other),
    };
    while let Some(slice) = wait.slice() {
        match py.detach(|| attempt(slice)) {
            Err(e) if is_timeout(&e) => last = e,
            other => return Ok(other),
        }
        py.check_signals()?;
    }
    Ok(Err(last))
}
