//! The two sides of the protocol floor's round trip (`rtt_by_size_ns.proto_N`): the
//! pinging side ([`Pinger`]) and the echoing peer ([`echo`]), each doing with a message
//! what the transport's `spin` round trip does with it.

use super::{Consumer, Halt, Producer, ProtoRing};
use crate::baselines::Mapping;

/// The pinging side of a round trip: sends on a2b, takes the reply on b2a.
pub(crate) struct Pinger<'m> {
    tx: Producer<'m>,
    rx: Consumer<'m>,
    msg: Vec<u8>,
}

impl<'m> Pinger<'m> {
    /// Pings `msg` through `rings` (a2b, b2a) in `m`.
    pub(crate) fn new(m: &'m Mapping, rings: [ProtoRing; 2], msg: &[u8]) -> Pinger<'m> {
        assert!(
            msg.len() <= rings[0].slot_size,
            "message larger than a slot"
        );
        Pinger {
            tx: rings[0].producer(m),
            rx: rings[1].consumer(m),
            msg: msg.to_vec(),
        }
    }

    /// One round trip: sends the message, waits for the reply, reads its length word and
    /// releases it (as `rtt::channel_bytes` does with `recv`: the payload is not read).
    /// Returns the reply's length.
    #[inline(always)]
    pub(crate) fn round_trip(&mut self) -> Result<usize, Halt> {
        // SAFETY: `msg` fits a slot (checked in `new`) and is our own memory.
        unsafe { self.tx.publish(self.msg.as_ptr(), self.msg.len())? };
        self.rx.take_one()
    }
}

/// The echoing side of a round trip: copies each message of a2b, straight from its slot,
/// into its reply slot on b2a, publishes it, then releases the a2b slot; until `stop`.
pub(crate) fn echo(m: &Mapping, rings: [ProtoRing; 2]) -> Result<(), Halt> {
    assert_eq!(rings[0].slot_size, rings[1].slot_size, "equal slot sizes");
    let (mut rx, mut tx) = (rings[0].consumer(m), rings[1].producer(m));
    loop {
        let len = match rx.wait_next() {
            Ok(len) => len,
            Err(Halt::Stopped) => return Ok(()),
            Err(e) => return Err(e),
        };
        let src = rx.slots.payload(rx.next);
        // SAFETY: `src` is message `next`'s payload, published and not released, `len`
        // bytes long (clamped to the slot size, which both rings share); it lies in the
        // other ring's slot area.
        unsafe { tx.publish(src, len)? };
        rx.release(rx.next + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{named_mapping, word};
    use super::super::{duplex, Flag, TAIL};
    use super::*;

    #[test]
    fn the_echo_sends_back_each_payload() {
        for (k, size) in [8, 48, 64, 256, 1, 0, 200].into_iter().enumerate() {
            let rings = duplex(256, 16);
            let (m, name) = named_mapping(rings[1].end());
            let msg: Vec<u8> = (0..size).map(|b| (b + k) as u8).collect();
            std::thread::scope(|s| {
                let echo = s.spawn(|| {
                    let m = Mapping::open(&name, rings[1].end()).expect("shm");
                    echo(&m, rings)
                });
                let mut ping = Pinger::new(&m, rings, &msg);
                for i in 0..40 {
                    assert_eq!(ping.round_trip(), Ok(size), "size {size}");
                    let slot = rings[1].slot_area() + (i % 16) * rings[1].stride();
                    // SAFETY: in bounds (bytes_at checks); the echo does not write this
                    // slot again before our next ping.
                    let reply =
                        unsafe { std::slice::from_raw_parts(m.bytes_at(slot + 16, size), size) };
                    assert_eq!(reply, &msg[..], "size {size}, index {i}");
                }
                rings[0].raise(&m, Flag::Stop);
                assert_eq!(echo.join().unwrap(), Ok(()));
            });
            assert_eq!(word(&m, rings[0].base + TAIL), 40);
            assert_eq!(word(&m, rings[1].base + TAIL), 40);
        }
    }
}
