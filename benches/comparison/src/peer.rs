//! The other process of each measurement: the running binary again, started as
//! `bench-peer KIND NAME [N...]` (see [`crate::peer`]) and pinned to CPU 1. [`Role`] says
//! which side it plays; `echo` has one function per role.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{err, Error};

/// What a peer process does, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Echoes the raw floor's atomics.
    Floor,
    /// Echoes the raw futex ping-pong.
    FutexFloor,
    /// Echoes 64-byte messages on a Unix socket.
    Uds,
    /// Echoes 64-byte messages from stdin to stdout.
    Pipe,
    /// Echoes byte messages on a channel that busy-polls.
    Spin,
    /// Echoes byte messages on a channel in block mode.
    Block,
    /// [`Role::Block`] with every send and receive awaited (`send_async`, `recv_async`).
    AsyncBlock,
    /// Idles (awaiting `recv_async` when `asynchronous` is 1, else blocking `recv`),
    /// then receives `wakes` time-stamped messages; reports CPU time and wake latency.
    Idle {
        asynchronous: u64,
        wakes: u64,
    },
    /// Decodes each `Sample` and answers with one carrying the same sequence number.
    SpinCapnp,
    /// [`Role::SpinCapnp`] building a whole `Sample` for each answer (`send_built`).
    CapnpBuilt,
    /// [`Role::Spin`] with an untrusted-mode receiver.
    SpinUntrusted,
    /// [`Role::SpinCapnp`] with an untrusted-mode receiver.
    CapnpUntrusted,
    /// Consumes `n` messages of `size` bytes from the minimal ring of `slots` slots.
    Ring {
        size: u64,
        slots: u64,
        n: u64,
    },
    /// Consumes `n` messages of `size` bytes from the minimal ring of `slots` slots,
    /// reading every word (the large-message floor).
    RingAll {
        size: u64,
        slots: u64,
        n: u64,
    },
    /// Echoes the protocol floor's round trip: two rings of `slots` slots of `slot_size`
    /// bytes (a2b, b2a) in one mapping.
    ProtoEcho {
        slot_size: u64,
        slots: u64,
    },
    /// Consumes `n` messages from the protocol floor's ring of `slots` slots of
    /// `slot_size` bytes.
    ProtoSink {
        slot_size: u64,
        slots: u64,
        n: u64,
    },
    /// Receives `n` messages from a channel, then acknowledges.
    Stream {
        n: u64,
    },
    /// [`Role::Stream`] with an untrusted-mode receiver.
    StreamUntrusted {
        n: u64,
    },
    /// Receives `n` large messages, reading every word in place, then acknowledges.
    Large {
        n: u64,
    },
    /// Reads `n` 64-byte messages from a Unix socket, then acknowledges.
    UdsStream {
        n: u64,
    },
    BoardWriter,
    BoardReader,
    BoardEcho,
    /// A fresh process that opens side B and receives the message waiting there; the
    /// harness spawned it at `spawned_ns` (CLOCK_MONOTONIC).
    Startup {
        spawned_ns: u64,
    },
    /// An idle side in block mode (A, with a receive thread, when `side` is 0; else B, in a
    /// blocking `recv`) until `ms` after `spawned_ns`; reports CPU and wake-ups.
    IdleSide {
        side: u64,
        ms: u64,
        spawned_ns: u64,
    },
}

impl Role {
    /// The words after `bench-peer`, with the channel (or socket) name second.
    pub(crate) fn args(&self, name: &str) -> Vec<String> {
        let (kind, numbers): (&str, &[u64]) = match self {
            Role::Floor => ("floor", &[]),
            Role::FutexFloor => ("futex_floor", &[]),
            Role::Uds => ("uds", &[]),
            Role::Pipe => ("pipe", &[]),
            Role::Spin => ("spin", &[]),
            Role::Block => ("block", &[]),
            Role::AsyncBlock => ("async_block", &[]),
            Role::Idle {
                asynchronous,
                wakes,
            } => ("idle", &[*asynchronous, *wakes]),
            Role::SpinCapnp => ("spin_capnp", &[]),
            Role::CapnpBuilt => ("capnp_built", &[]),
            Role::SpinUntrusted => ("spin_untrusted", &[]),
            Role::CapnpUntrusted => ("capnp_untrusted", &[]),
            Role::Ring { size, slots, n } => ("ring", &[*size, *slots, *n]),
            Role::RingAll { size, slots, n } => ("ring_all", &[*size, *slots, *n]),
            Role::ProtoEcho { slot_size, slots } => ("proto_echo", &[*slot_size, *slots]),
            Role::ProtoSink {
                slot_size,
                slots,
                n,
            } => ("proto_sink", &[*slot_size, *slots, *n]),
            Role::Stream { n } => ("stream", &[*n]),
            Role::StreamUntrusted { n } => ("stream_untrusted", &[*n]),
            Role::Large { n } => ("large", &[*n]),
            Role::UdsStream { n } => ("uds-stream", &[*n]),
            Role::BoardWriter => ("board_writer", &[]),
            Role::BoardReader => ("board_reader", &[]),
            Role::BoardEcho => ("board_echo", &[]),
            Role::Startup { spawned_ns } => ("startup", &[*spawned_ns]),
            Role::IdleSide {
                side,
                ms,
                spawned_ns,
            } => ("idle_side", &[*side, *ms, *spawned_ns]),
        };
        let mut args = vec![kind.to_string(), name.to_string()];
        args.extend(numbers.iter().map(u64::to_string));
        args
    }

    /// The role and name from the words after `bench-peer`, as [`Role::args`] writes them.
    pub(crate) fn parse(args: &[String]) -> Result<(Role, String), Error> {
        let [kind, name, rest @ ..] = args else {
            return Err(err("bench peer arguments", "expected KIND NAME [N...]"));
        };
        let numbers = rest
            .iter()
            .map(|a| a.parse::<u64>().map_err(|e| err("bench peer argument", e)))
            .collect::<Result<Vec<u64>, Error>>()?;
        let role = match (kind.as_str(), numbers.as_slice()) {
            ("floor", []) => Role::Floor,
            ("futex_floor", []) => Role::FutexFloor,
            ("uds", []) => Role::Uds,
            ("pipe", []) => Role::Pipe,
            ("spin", []) => Role::Spin,
            ("block", []) => Role::Block,
            ("async_block", []) => Role::AsyncBlock,
            ("idle", &[asynchronous, wakes]) => Role::Idle {
                asynchronous,
                wakes,
            },
            ("spin_capnp", []) => Role::SpinCapnp,
            ("capnp_built", []) => Role::CapnpBuilt,
            ("spin_untrusted", []) => Role::SpinUntrusted,
            ("capnp_untrusted", []) => Role::CapnpUntrusted,
            ("ring", &[size, slots, n]) => Role::Ring { size, slots, n },
            ("ring_all", &[size, slots, n]) => Role::RingAll { size, slots, n },
            ("proto_echo", &[slot_size, slots]) => Role::ProtoEcho { slot_size, slots },
            ("proto_sink", &[slot_size, slots, n]) => Role::ProtoSink {
                slot_size,
                slots,
                n,
            },
            ("stream", &[n]) => Role::Stream { n },
            ("stream_untrusted", &[n]) => Role::StreamUntrusted { n },
            ("large", &[n]) => Role::Large { n },
            ("uds-stream", &[n]) => Role::UdsStream { n },
            ("board_writer", []) => Role::BoardWriter,
            ("board_reader", []) => Role::BoardReader,
            ("board_echo", []) => Role::BoardEcho,
            ("startup", &[spawned_ns]) => Role::Startup { spawned_ns },
            ("idle_side", &[side, ms, spawned_ns]) => Role::IdleSide {
                side,
                ms,
                spawned_ns,
            },
            _ => return Err(err("unknown bench peer", args.join(" "))),
        };
        Ok((role, name.clone()))
    }
}

/// A peer process, killed and reaped on drop.
pub(crate) struct Peer(pub(crate) Child);

impl Peer {
    /// Starts the running binary as `bench-peer` in `role` on `name`; with `pipes`, its
    /// stdin and stdout are pipes to this process.
    pub(crate) fn spawn(role: Role, name: &str, pipes: bool) -> Result<Peer, Error> {
        let exe = std::env::current_exe().map_err(|e| err("own path", e))?;
        let mut cmd = Command::new(exe);
        cmd.arg("bench-peer").args(role.args(name));
        if pipes {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        }
        Ok(Peer(cmd.spawn().map_err(|e| err("spawn bench peer", e))?))
    }

    /// Waits (up to 10 s) for the peer to exit by itself; drop kills it otherwise.
    pub(crate) fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pins the calling thread to `cpu` when the machine has it (best effort).
pub(crate) fn pin(cpu: usize) {
    // The online CPU count, not available_parallelism(): that honours the affinity mask,
    // which a child inherits from its pinned parent.
    // SAFETY: sysconf only reads a system constant.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online <= cpu as libc::c_long {
        return;
    }
    // SAFETY: CPU_SET sets one bit of a zeroed cpu_set_t on our stack; sched_setaffinity
    // only reads it, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn every_role_survives_its_command_line() {
        for role in [
            Role::Floor,
            Role::FutexFloor,
            Role::Uds,
            Role::Pipe,
            Role::Spin,
            Role::Block,
            Role::AsyncBlock,
            Role::Idle {
                asynchronous: 1,
                wakes: 9,
            },
            Role::SpinCapnp,
            Role::CapnpBuilt,
            Role::SpinUntrusted,
            Role::CapnpUntrusted,
            Role::StreamUntrusted { n: 6 },
            Role::Ring {
                size: 1024,
                slots: 256,
                n: 7,
            },
            Role::RingAll {
                size: 4096,
                slots: 8,
                n: 2,
            },
            Role::Stream { n: 3 },
            Role::ProtoEcho {
                slot_size: 256,
                slots: 16,
            },
            Role::ProtoSink {
                slot_size: 48,
                slots: 256,
                n: 14,
            },
            Role::Large { n: 4 },
            Role::UdsStream { n: 5 },
            Role::BoardWriter,
            Role::BoardReader,
            Role::BoardEcho,
            Role::Startup { spawned_ns: 11 },
            Role::IdleSide {
                side: 1,
                ms: 12,
                spawned_ns: 13,
            },
        ] {
            let args = role.args("chan");
            assert_eq!(Role::parse(&args).unwrap(), (role, "chan".to_string()));
        }
        for bad in [
            &["ring", "x", "1"][..],
            &["spin"],
            &["what", "x"],
            &["stream", "x", "y"],
            &["proto_echo", "x", "256"],
            &["proto_sink", "x", "48", "256"],
        ] {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(Role::parse(&bad).is_err(), "{bad:?} parsed");
        }
    }
}
