//! `list`, `inspect` and `remove`: looking at channels and boards without attaching to them.

use capnp_shm_transport::board::{inspect_board, list_boards, remove_board, remove_stale_boards};
use capnp_shm_transport::inspect::{
    channel_is_stale, inspect_channel, list_channels, remove_stale_channels, ChannelInfo, RingInfo,
};
use capnp_shm_transport::remove_channel;

use crate::side::DemoError;

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn list() -> Result<(), DemoError> {
    list_board_lines()?;
    let names = list_channels()?;
    if names.is_empty() {
        println!("no channels in /dev/shm");
        return Ok(());
    }
    println!(
        "{:<40} {:>10} {:>7} {:>6} {:>6} {:>6}",
        "name", "slot size", "slots", "A", "B", "stale"
    );
    for name in names {
        match inspect_channel(&name) {
            Ok(info) => println!(
                "{:<40} {:>10} {:>7} {:>6} {:>6} {:>6}",
                name,
                info.geometry.slot_size,
                info.geometry.slot_count,
                yes_no(info.a_attached()),
                yes_no(info.b_attached()),
                yes_no(info.creator_gone),
            ),
            Err(e) => println!(
                "{name:<40} unreadable (stale: {}): {e}",
                channel_is_stale(&name).map_or("unknown", yes_no)
            ),
        }
    }
    Ok(())
}

/// One line per board (none when there is none).
fn list_board_lines() -> Result<(), DemoError> {
    for name in list_boards()? {
        match inspect_board(&name) {
            Ok(info) => println!(
                "board {name}: value size {}, history {}, newest {}, writer {:?} (pid {})",
                info.geometry.value_size,
                info.geometry.history,
                info.newest,
                info.writer,
                info.writer_pid
            ),
            Err(e) => println!("board {name}: unreadable: {e}"),
        }
    }
    Ok(())
}

fn ring(label: &str, r: &RingInfo) {
    println!(
        "  {label}: head {} tail {} used {} | messages sent {} received {} | bytes sent {} received {} | producer pid {} consumer pid {}",
        r.head, r.tail, r.used_slots, r.messages_sent, r.messages_received, r.bytes_sent, r.bytes_received, r.producer_pid, r.consumer_pid
    );
}

pub fn inspect(name: &str) -> Result<(), DemoError> {
    if list_boards()?.iter().any(|b| b == name) && !list_channels()?.iter().any(|c| c == name) {
        let info = inspect_board(name)?;
        println!("board {name}");
        println!(
            "  value size {}, history {} ({} slots of stride {})",
            info.geometry.value_size,
            info.geometry.history,
            info.geometry.slot_count,
            info.geometry.slot_stride
        );
        println!(
            "  newest value {}, writer {:?} (pid {}), waiting readers {}",
            info.newest, info.writer, info.writer_pid, info.waiters
        );
        return Ok(());
    }
    let info: ChannelInfo = inspect_channel(name)?;
    println!("channel {name}");
    println!(
        "  generation {:#x}, creator pid {}",
        info.generation, info.creator_pid
    );
    println!(
        "  geometry: {} slots of {} bytes (stride {})",
        info.geometry.slot_count, info.geometry.slot_size, info.geometry.slot_stride
    );
    ring("a2b", &info.a2b);
    ring("b2a", &info.b2a);
    for (i, side) in ["A", "B"].iter().enumerate() {
        println!(
            "  side {side}: poll {} µs, wait {:?}, closed {}",
            info.poll_us[i],
            info.wait_mode[i],
            yes_no(info.closed[i])
        );
    }
    println!(
        "  attached: A {}, B {}; creator gone (stale): {}",
        yes_no(info.a_attached()),
        yes_no(info.b_attached()),
        yes_no(info.creator_gone)
    );
    Ok(())
}

pub fn remove(name: Option<&str>, stale: bool) -> Result<(), DemoError> {
    if stale {
        let mut removed = remove_stale_channels()?;
        removed.extend(
            remove_stale_boards()?
                .into_iter()
                .map(|b| format!("board {b}")),
        );
        println!(
            "removed {} stale channel(s){}",
            removed.len(),
            if removed.is_empty() {
                String::new()
            } else {
                format!(": {}", removed.join(", "))
            }
        );
        return Ok(());
    }
    let name = name.expect("clap requires a name without --stale");
    if remove_channel(name)? | remove_board(name)? {
        println!("removed {name}");
        Ok(())
    } else {
        Err(DemoError::Other(format!("no channel named `{name}`")))
    }
}
