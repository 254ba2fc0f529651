//! The busy-spin round trip by message size (`rtt_by_size_ns`): 8, 48, 64 and 256 bytes
//! through the same channel as `rtt_ns.spin` (256-byte slots, 16 slots). A slot's header
//! is 16 bytes (docs/LAYOUT.md), so up to 48 B a message and its header share one 64-byte
//! cache line; from 64 B on they take two.

use capnp_shm_transport::WaitMode;

use crate::peer::Role;
use crate::{rtt, Error, Plan};

/// The message sizes measured, in measuring order (and JSON key order).
pub(crate) const SIZES: [usize; 4] = [8, 48, 64, 256];

/// The busy-spin round trip of `size`-byte messages through a ring of `slots` 256-byte
/// slots, echoed by a [`Role::Spin`] peer: appends per-batch means (ns) to `out`.
pub(crate) fn spin_rtt(
    plan: &Plan,
    tag: &str,
    size: usize,
    slots: usize,
    out: &mut Vec<f64>,
) -> Result<(), Error> {
    rtt::channel_bytes(plan, tag, out, WaitMode::Poll, Role::Spin, size, slots)
}

/// One round of the size rows: one measurement per entry of [`SIZES`] (16 slots), each
/// appended to its vector in `out`.
pub(crate) fn measure(plan: &Plan, round: usize, out: &mut [Vec<f64>]) -> Result<(), Error> {
    for (size, out) in SIZES.iter().zip(out) {
        spin_rtt(plan, &format!("size-{size}-{round}"), *size, 16, out)?;
    }
    Ok(())
}
