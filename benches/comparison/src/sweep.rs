//! The ring size sweep (`ring_sweep`): the 64-byte busy-spin round trip and the 64-byte
//! one-way stream through rings of 16, 64, 256 and 1024 slots, to show which ring size
//! serves latency and which throughput.

use crate::{sizes, stream, Error, Plan};

/// The slot counts measured, in measuring order (and JSON key order).
pub(crate) const SLOT_COUNTS: [usize; 4] = [16, 64, 256, 1024];

/// Per-round samples of the sweep, one vector per entry of [`SLOT_COUNTS`].
pub(crate) struct SweepSamples {
    /// Per-batch ns per 64-byte round trip (256-byte slots).
    pub rtt: Vec<Vec<f64>>,
    /// Messages per second of the 64-byte stream (64-byte slots), one per round.
    pub stream_64: Vec<Vec<f64>>,
}

impl Default for SweepSamples {
    fn default() -> SweepSamples {
        SweepSamples {
            rtt: vec![Vec::new(); SLOT_COUNTS.len()],
            stream_64: vec![Vec::new(); SLOT_COUNTS.len()],
        }
    }
}

/// Measures one round of the sweep: per slot count, the round trip, then the stream.
pub(crate) fn measure(plan: &Plan, round: usize, s: &mut SweepSamples) -> Result<(), Error> {
    for (i, slots) in SLOT_COUNTS.iter().enumerate() {
        let tag = format!("sweep-{slots}-{round}");
        sizes::spin_rtt(plan, &format!("{tag}-rtt"), 64, *slots, &mut s.rtt[i])?;
        let rate = stream::channel_stream(plan, 64, *slots, &format!("{tag}-st"), false)?;
        s.stream_64[i].push(rate);
    }
    Ok(())
}
