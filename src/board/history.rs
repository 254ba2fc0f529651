//! Time queries over a board's history: the value closest to a timestamp, and the pair
//! of neighbours around one (for interpolation). A binary search over the stamps of the
//! newest `history` values, each stamp read under its slot's sequence lock; a value
//! overwritten during the search restarts it over the newer history.

use super::reader::{BoardReader, Found};
use super::{protocol, Stamp};
use crate::error::{Corruption, Error, Result};

/// Restarts of a search whose values were overwritten under it before the query gives
/// up and answers `None` (a writer lapping the whole history that fast).
const RESTARTS: u32 = 64;

/// The outcome of one search over a snapshot of the history.
enum Search {
    /// `first`: the oldest value with a stamp `>= t` (`newest + 1` when none), with the
    /// range searched.
    Done { oldest: u64, newest: u64, first: u64 },
    /// A value probed was overwritten: search again.
    Lapped,
    /// Nothing published yet.
    Empty,
}

impl BoardReader {
    /// Copies into `buf` the held value whose stamp is closest to `t_ns` (the earlier one
    /// on a tie), if it is at most `max_distance_ns` away; `None` otherwise, and when no
    /// value is held. Never a value outside the distance guard, and never a torn one.
    pub fn closest(&mut self, t_ns: u64, max_distance_ns: u64, buf: &mut Vec<u8>) -> Result<Option<Stamp>> {
        for _ in 0..RESTARTS {
            let (oldest, newest, first) = match self.search(t_ns)? {
                Search::Done { oldest, newest, first } => (oldest, newest, first),
                Search::Lapped => continue,
                Search::Empty => return Ok(None),
            };
            let before = (first > oldest).then(|| first - 1);
            let after = (first <= newest).then_some(first);
            let stamps = (
                before.map(|s| self.stamp_of(s)).transpose()?,
                after.map(|s| self.stamp_of(s)).transpose()?,
            );
            let candidate = match (before, after, stamps) {
                (_, _, (Some(None), _) | (_, Some(None))) => continue, // overwritten
                (Some(b), Some(a), (Some(Some(sb)), Some(Some(sa)))) => {
                    check_order(b, sb, sa)?;
                    if t_ns - sb.min(t_ns) <= sa.saturating_sub(t_ns) { (b, sb) } else { (a, sa) }
                }
                (Some(b), None, (Some(Some(sb)), None)) => (b, sb),
                (None, Some(a), (None, Some(Some(sa)))) => (a, sa),
                _ => return Ok(None),
            };
            if candidate.1.abs_diff(t_ns) > max_distance_ns {
                return Ok(None);
            }
            match self.read(candidate.0, buf)? {
                Found::Value(stamp) if stamp.timestamp_ns == candidate.1 => return Ok(Some(stamp)),
                Found::Value(stamp) => return Err(moved(stamp.sequence, stamp.timestamp_ns)),
                Found::Gone => continue,
            }
        }
        Ok(None)
    }

    /// Copies into `before` and `after` two consecutive held values whose stamps enclose
    /// `t_ns` (`before.t <= t_ns <= after.t`), for interpolating between them. `None`
    /// when `t_ns` is outside the stamps held (never a pair that does not enclose it), or
    /// fewer than two values are held.
    pub fn interpolation_pair(
        &mut self,
        t_ns: u64,
        before: &mut Vec<u8>,
        after: &mut Vec<u8>,
    ) -> Result<Option<(Stamp, Stamp)>> {
        for _ in 0..RESTARTS {
            let (oldest, newest, first) = match self.search(t_ns)? {
                Search::Done { oldest, newest, first } => (oldest, newest, first),
                Search::Lapped => continue,
                Search::Empty => return Ok(None),
            };
            if first > newest || oldest == newest {
                return Ok(None); // t after the newest stamp, or a single value
            }
            // The pair (first - 1, first); at the oldest value only an exact hit counts.
            let b = if first > oldest { first - 1 } else { first };
            let a = b + 1;
            if a > newest {
                return Ok(None);
            }
            let (Found::Value(sb), Found::Value(sa)) = (self.read(b, before)?, self.read(a, after)?) else {
                continue;
            };
            check_order(b, sb.timestamp_ns, sa.timestamp_ns)?;
            if sb.timestamp_ns <= t_ns && t_ns <= sa.timestamp_ns {
                return Ok(Some((sb, sa)));
            }
            if first == oldest {
                return Ok(None); // t before the oldest stamp
            }
            // The stamps read now differ from the search's: overwritten meanwhile.
        }
        Ok(None)
    }

    /// Binary search over the newest `history` values for the oldest stamp `>= t_ns`.
    fn search(&self, t_ns: u64) -> Result<Search> {
        let newest = protocol::newest(&self.map().words());
        if newest == 0 {
            return Ok(Search::Empty);
        }
        let held = self.map().geometry().history as u64;
        let oldest = newest.saturating_sub(held - 1).max(1);
        let (mut lo, mut hi) = (oldest, newest + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.stamp_of(mid)? {
                None => return Ok(Search::Lapped),
                Some(stamp) if stamp < t_ns => lo = mid + 1,
                Some(_) => hi = mid,
            }
        }
        Ok(Search::Done { oldest, newest, first: lo })
    }
}

/// Stamps of consecutive values `seq`, `seq + 1` must not go backwards.
fn check_order(seq: u64, earlier: u64, later: u64) -> Result<()> {
    if earlier > later {
        return Err(Corruption::BoardSlot {
            seq: seq + 1,
            found: later,
            why: "its stamp is earlier than the previous value's",
        }
        .into());
    }
    Ok(())
}

/// A value whose stamp changed between two stable reads of the same sequence number.
fn moved(seq: u64, stamp: u64) -> Error {
    Corruption::BoardSlot {
        seq,
        found: stamp,
        why: "the value's stamp changed while its sequence number did not",
    }
    .into()
}
