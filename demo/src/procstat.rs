//! Per-process CPU time and context switches from `/proc` (Linux), summed over all of a
//! process's threads: what `capnp-shm-demo rpc` reports per call (thread wake-ups, CPU)
//! and for an idle connection (CPU share while a call is outstanding and nothing flows).

/// CPU time (ns) and context switches (voluntary + involuntary) of one process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// Time on a CPU, all threads, in nanoseconds (`/proc/PID/task/*/schedstat`).
    pub cpu_ns: u64,
    /// Context switches, all threads (`/proc/PID/task/*/status`).
    pub switches: u64,
}

impl ProcStat {
    /// The figures of process `pid` now (zero where `/proc` cannot be read). Threads that
    /// ended before are not counted, so take both readings while the threads live.
    pub fn of(pid: u32) -> ProcStat {
        let mut stat = ProcStat::default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return stat;
        };
        for task in tasks.flatten() {
            let dir = task.path();
            if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
                stat.cpu_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            if let Ok(s) = std::fs::read_to_string(dir.join("status")) {
                stat.switches += s
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
        stat
    }

    /// The figures of several processes, added.
    pub fn of_all(pids: &[u32]) -> ProcStat {
        pids.iter()
            .map(|&p| ProcStat::of(p))
            .fold(ProcStat::default(), |a, b| ProcStat {
                cpu_ns: a.cpu_ns + b.cpu_ns,
                switches: a.switches + b.switches,
            })
    }

    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: ProcStat) -> ProcStat {
        ProcStat {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            switches: self.switches.saturating_sub(earlier.switches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_counts_grow() {
        let before = ProcStat::of(std::process::id());
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        std::thread::spawn(|| ()).join().unwrap();
        let after = ProcStat::of(std::process::id());
        assert!(before.cpu_ns > 0, "schedstat unreadable: {before:?}");
        assert!(after.since(before).cpu_ns > 0, "{before:?} -> {after:?}");
        assert!(after.switches >= before.switches);
        assert_eq!(ProcStat::of(u32::MAX), ProcStat::default());
    }
}
