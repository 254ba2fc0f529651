//! The busy-spin round trip by message size (`rtt_by_size_ns`): 8, 48, 64 and 256 bytes
//! through the same channel as `rtt_ns.spin` (256-byte slots, 16 slots). A slot's header
//! is 16 bytes (docs/LAYOUT.md), so up to 48 B a message and its header share one 64-byte
//! cache line; from 64 B on they take two. Beside each, the same round trip through the
//! protocol floor (`rtt_by_size_ns.proto_N`, [`crate::proto`]): the same slot format with
//! none of the transport's code path.

use capnp_shm_transport::WaitMode;

use crate::baselines::Mapping;
use crate::peer::{Peer, Role};
use crate::{channel_name, err, proto, rtt, Error, Plan};

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

/// The same round trip through the protocol floor: two [`proto::ProtoRing`]s (a2b, b2a)
/// of `slots` 256-byte slots in one plain mapping, echoed by a [`Role::ProtoEcho`] peer
/// that does with each message what [`Role::Spin`] does (copies it into its reply), timed
/// as [`rtt::channel_bytes`] is. Appends per-batch means (ns) to `out`.
pub(crate) fn proto_rtt(
    plan: &Plan,
    tag: &str,
    size: usize,
    slots: u64,
    out: &mut Vec<f64>,
) -> Result<(), Error> {
    let name = channel_name(tag);
    let rings = proto::duplex(256, slots);
    let m = Mapping::create(&name, rings[1].end()).map_err(|e| err("shm", e))?;
    let role = Role::ProtoEcho {
        slot_size: 256,
        slots,
    };
    let peer = Peer::spawn(role, &name, false)?;
    let mut ping = proto::Pinger::new(&m, rings, &vec![1u8; size]);
    rtt::time_batches(out, plan.batches, plan.fast_batch, |_| {
        std::hint::black_box(ping.round_trip()?);
        Ok(())
    })?;
    rings[0].raise(&m, proto::Flag::Stop);
    peer.finish();
    Ok(())
}

/// One round of the size rows: per entry of [`SIZES`] (16 slots), this transport's round
/// trip (appended to its vector in `ours`), then the protocol floor's (in `proto`), so
/// that a noisy moment hits both alike.
pub(crate) fn measure(
    plan: &Plan,
    round: usize,
    ours: &mut [Vec<f64>],
    proto: &mut [Vec<f64>],
) -> Result<(), Error> {
    for ((size, ours), proto) in SIZES.iter().zip(ours).zip(proto) {
        spin_rtt(plan, &format!("size-{size}-{round}"), *size, 16, ours)?;
        proto_rtt(plan, &format!("proto-{size}-{round}"), *size, 16, proto)?;
    }
    Ok(())
}
