//! iceoryx2 64 B ping-pong with busy polling, for the iceoryx2 row of
//! `capnp-shm-demo bench --peers`:
//!
//! `iceoryx2-pingpong pong NAME` echoes; `iceoryx2-pingpong ping NAME BATCH BATCHES` runs
//! the round trips (pinned to CPU 0, the pong side to CPU 1 where the machine has them)
//! and prints the mean nanoseconds per round trip of each batch, one per line.

use std::time::Instant;

use iceoryx2::prelude::*;

type Payload = [u8; 64];

fn pin(cpu: usize) {
    // SAFETY: sysconf reads a constant; CPU_SET sets a bit of a zeroed set on our stack,
    // which sched_setaffinity only reads, for the calling thread.
    unsafe {
        if libc::sysconf(libc::_SC_NPROCESSORS_ONLN) <= cpu as libc::c_long {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() -> Result<(), Box<dyn core::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let role = args.get(1).map(String::as_str).unwrap_or("");
    let name = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "capnp-shm-bench".into());
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let ping_name = format!("{name}/ping");
    let pong_name = format!("{name}/pong");
    let ping = node
        .service_builder(&ping_name.as_str().try_into()?)
        .publish_subscribe::<Payload>()
        .open_or_create()?;
    let pong = node
        .service_builder(&pong_name.as_str().try_into()?)
        .publish_subscribe::<Payload>()
        .open_or_create()?;
    match role {
        "pong" => {
            pin(1);
            let sub = ping.subscriber_builder().create()?;
            let publisher = pong.publisher_builder().create()?;
            println!("ready");
            loop {
                if let Some(sample) = sub.receive()? {
                    let msg = *sample.payload();
                    drop(sample);
                    if msg[0] == 0xff {
                        return Ok(());
                    }
                    publisher.send_copy(msg)?;
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        "ping" => {
            pin(0);
            let batch: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10_000);
            let batches: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(10);
            let publisher = ping.publisher_builder().create()?;
            let sub = pong.subscriber_builder().create()?;
            let mut msg: Payload = [1; 64];
            let mut one = || -> Result<(), Box<dyn core::error::Error>> {
                publisher.send_copy(msg)?;
                loop {
                    if let Some(sample) = sub.receive()? {
                        msg = *sample.payload();
                        return Ok(());
                    }
                    std::hint::spin_loop();
                }
            };
            for _ in 0..batch / 10 {
                one()?;
            }
            for _ in 0..batches {
                let start = Instant::now();
                for _ in 0..batch {
                    one()?;
                }
                println!("{}", start.elapsed().as_nanos() as f64 / batch as f64);
            }
            let mut stop: Payload = [0; 64];
            stop[0] = 0xff;
            publisher.send_copy(stop)?;
            Ok(())
        }
        _ => Err("usage: iceoryx2-pingpong ping NAME [BATCH BATCHES] | pong NAME".into()),
    }
}
