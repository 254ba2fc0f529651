//! `ShmNetwork` with a polling window (`set_default_spin`): calls are answered while the
//! receive polls the ring on the executor thread (no waiter thread is needed then), a
//! long-running call outstanding past the window parks and is still answered, and a host
//! killed while the caller polls gives the caller `Disconnected`. The tests of this
//! binary share the process-wide window, so they run one at a time.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::Mutex;
use std::time::Duration;

use capnp::message::ReaderOptions;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use capnp_shm_rpc::service_capnp::host;
use capnp_shm_rpc::{connect, set_default_spin, set_io_uring_wait, ExampleHost, ShmNetwork};
use capnp_shm_transport::Channel;
use common::TestName;
use support::{conformance, echo, killed_mid_call, local, resolve, serve_one};

/// The polling window: long, so that an in-thread peer always answers within it, even on
/// a loaded machine (polling costs nothing there: the peer runs between the looks).
const WINDOW: Duration = Duration::from_secs(1);

/// One test at a time: the window is process-wide, and one test counts this process's
/// waiter threads.
static SERIAL: Mutex<()> = Mutex::new(());

/// This process's async waiter threads (started by a receive that parks).
fn waiter_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "shm-async-waite")
        })
        .count()
}

/// Both vats on this thread over one channel (each network polls with `window`): calls
/// on the host, then the number of waiter threads seen while the networks lived.
fn calls_on_one_thread(name: &str, window: Duration) -> usize {
    let a = Channel::builder(name).slot_size(1024).create().unwrap();
    let b = Channel::builder(name)
        .open_timeout(Duration::from_secs(5))
        .open()
        .unwrap();
    local(async move {
        let mut server = ShmNetwork::new(a, Side::Server, ReaderOptions::new()).unwrap();
        let mut client = ShmNetwork::new(b, Side::Client, ReaderOptions::new()).unwrap();
        server.set_spin(window);
        client.set_spin(window);
        let server = RpcSystem::new(Box::new(server), Some(ExampleHost::client().client));
        let mut client = RpcSystem::new(Box::new(client), None);
        let host: host::Client = client.bootstrap(Side::Server);
        let server = tokio::task::spawn_local(server);
        let client = tokio::task::spawn_local(client);
        for i in 0..200 {
            assert_eq!(echo(&host, i, b"spin").await.unwrap().0, i);
        }
        let waiters = waiter_threads();
        drop(host);
        client.abort();
        server.abort();
        waiters
    })
}

#[test]
fn calls_answered_within_the_window_need_no_waiter_thread() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Sleeping with the waiter thread (not io_uring) when the window is over.
    set_io_uring_wait(false);
    let name = TestName::new("rpc-spin-inthread");
    let with_window = calls_on_one_thread(&name, WINDOW);
    // Without a window every receive parks (the check below can fail).
    let name = TestName::new("rpc-spin-parks");
    let without = calls_on_one_thread(&name, Duration::ZERO);
    set_io_uring_wait(true);
    assert_eq!(with_window, 0);
    assert!(without > 0);
}

/// Whether this kernel lets io_uring wait on a futex (Linux 6.7 and later).
fn io_uring_futex_wait() -> bool {
    let Ok(ring) = io_uring::IoUring::new(2) else {
        return false;
    };
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).is_ok()
        && probe.is_supported(io_uring::opcode::FutexWait::CODE)
}

#[test]
fn receives_sleeping_with_io_uring_need_no_waiter_thread() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !io_uring_futex_wait() {
        eprintln!("skipped: io_uring has no FUTEX_WAIT here");
        return;
    }
    assert!(capnp_shm_rpc::io_uring_wait(), "on by default");
    // No polling window: every receive that finds nothing sleeps, on io_uring.
    let name = TestName::new("rpc-uring-inthread");
    assert_eq!(calls_on_one_thread(&name, Duration::ZERO), 0);
}

#[test]
fn a_call_outstanding_past_the_window_parks_and_is_answered() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_default_spin(Duration::from_micros(20));
    let name = TestName::new("rpc-spin-later");
    let (address, server) = serve_one(format!("shm://{}", &*name));
    local(async move {
        let (host, connection) = connect::<host::Client>(&address.to_string()).await.unwrap();
        let mut later = host.later_request();
        later.get().set_ticket(5);
        let pending = later.send().promise;
        assert_eq!(echo(&host, 1, b"spin").await.unwrap().0, 1);
        // Well past the window: both receives have parked by now.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(resolve(&host, 5, 42).await.unwrap());
        assert_eq!(pending.await.unwrap().get().unwrap().get_value(), 42);
        for i in 0..100 {
            assert_eq!(echo(&host, i, b"spin").await.unwrap().0, i);
        }
        connection.disconnect().await.unwrap();
    });
    server.join().unwrap();
    set_default_spin(Duration::ZERO);
}

#[test]
fn child_process_entry() {
    if common::peer::role().is_some() {
        set_default_spin(Duration::from_micros(20));
    }
    support::serve_child();
}

#[test]
fn a_host_killed_while_the_caller_polls_gives_disconnected() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A window longer than the test's calls: the kill lands while the caller polls.
    set_default_spin(Duration::from_secs(1));
    let name = TestName::new("rpc-spin-kill");
    killed_mid_call(format!("shm://{}", &*name));
    set_default_spin(Duration::ZERO);
}

#[test]
fn conformance_over_shm_sleeping_with_the_waiter_thread() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Both sides in this process (the server on a thread of its own): both sleep with
    // the channel's waiter thread, as where io_uring is refused.
    set_io_uring_wait(false);
    let name = TestName::new("rpc-thread");
    let (address, server) = serve_one(format!("shm://{}", &*name));
    local(async move {
        let (host, connection) = connect::<host::Client>(&address.to_string()).await.unwrap();
        conformance(host).await;
        connection.disconnect().await.unwrap();
    });
    server.join().unwrap();
    set_io_uring_wait(true);
}
