//! The example service's conformance tests, the same over every transport: a channel
//! (`shm://`), TCP on loopback (`tcp://`) and a Unix socket (`unix://`). And a serving
//! process killed in the middle of a call: the caller gets a `Disconnected` error, over
//! shm and over TCP, within a bounded time.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::rc::Rc;
use std::time::Duration;

use capnp::ErrorKind;
use capnp_shm_rpc::service_capnp::{host, listener};
use capnp_shm_rpc::{connect, Address, CountingListener, ExampleHost, Server};
use common::peer::{read_stdin_line, say_value, Peer};
use common::TestName;

/// Every wait of these tests ends within this.
const WAIT: Duration = Duration::from_secs(30);

/// Runs `f` on a fresh current-thread runtime's `LocalSet`, failing after `WAIT`.
fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let set = tokio::task::LocalSet::new();
    set.block_on(&rt, async {
        tokio::time::timeout(WAIT, f)
            .await
            .expect("the test did not finish in time")
    })
}

/// Serves the example host at `address` to one client on a thread of its own; sends
/// back the address clients use. The thread ends when that client goes away.
fn serve_one(address: String) -> (Address, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        local(async move {
            let mut server = Server::bind(&address).await.unwrap();
            tx.send(server.address().unwrap()).unwrap();
            let connection = server.accept(ExampleHost::client().client).await.unwrap();
            let _ = connection.finished().await;
        })
    });
    (
        rx.recv_timeout(WAIT).expect("the server did not start"),
        thread,
    )
}

async fn echo(host: &host::Client, value: u64, payload: &[u8]) -> capnp::Result<(u64, Vec<u8>)> {
    let mut call = host.echo_request();
    call.get().set_value(value);
    call.get().set_payload(payload);
    let reply = call.send().promise.await?;
    let r = reply.get()?;
    Ok((r.get_value(), r.get_payload()?.to_vec()))
}

/// The conformance suite, on a connected `host`.
async fn conformance(host: host::Client) {
    // The fast call.
    assert_eq!(echo(&host, 7, b"hi").await.unwrap(), (7, b"hi".to_vec()));

    // A message larger than a slot (1 KiB) each way, many slots long.
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    assert_eq!(echo(&host, 8, &big).await.unwrap(), (8, big));

    // The long-running call: answered only after `resolve`, while other calls go on.
    let mut later = host.later_request();
    later.get().set_ticket(1);
    let later = later.send().promise;
    for i in 0..10 {
        assert_eq!(echo(&host, i, b"meanwhile").await.unwrap().0, i);
    }
    let mut resolve = host.resolve_request();
    resolve.get().set_ticket(1);
    resolve.get().set_value(42);
    assert!(resolve
        .send()
        .promise
        .await
        .unwrap()
        .get()
        .unwrap()
        .get_waiting());
    assert_eq!(later.await.unwrap().get().unwrap().get_value(), 42);
    // Resolved before it is asked for: kept for the call that comes.
    let mut resolve = host.resolve_request();
    resolve.get().set_ticket(2);
    resolve.get().set_value(5);
    assert!(!resolve
        .send()
        .promise
        .await
        .unwrap()
        .get()
        .unwrap()
        .get_waiting());
    let mut later = host.later_request();
    later.get().set_ticket(2);
    assert_eq!(
        later
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_value(),
        5
    );

    // A capability handed back, called through promise pipelining: the `next` calls are
    // sent before the `counter` answer arrives.
    let mut counter = host.counter_request();
    counter.get().set_start(10);
    let counter = counter.send().pipeline.get_counter();
    let nexts: Vec<_> = (0..3)
        .map(|_| counter.next_request().send().promise)
        .collect();
    let mut values = Vec::new();
    for next in nexts {
        values.push(next.await.unwrap().get().unwrap().get_value());
    }
    assert_eq!(values, [10, 11, 12]);

    // A callback: the host calls our listener back, in order, while we hold the
    // subscription it handed us.
    let listener = Rc::new(CountingListener::default());
    let client: listener::Client = capnp_rpc::new_client_from_rc(listener.clone());
    let mut subscribe = host.subscribe_request();
    subscribe.get().set_listener(client);
    subscribe.get().set_count(5);
    let subscription = subscribe
        .send()
        .promise
        .await
        .unwrap()
        .get()
        .unwrap()
        .get_subscription()
        .unwrap();
    loop {
        let delivered = subscription
            .delivered_request()
            .send()
            .promise
            .await
            .unwrap();
        if delivered.get().unwrap().get_done() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(listener.received.get(), 5);

    // Many calls in flight at once, answered in any order, each correctly.
    let calls: Vec<_> = (0..64u64)
        .map(|i| {
            let mut call = host.echo_request();
            call.get().set_value(i);
            call.send().promise
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().get().unwrap().get_value(), i as u64);
    }
}

fn conformance_at(address: String) {
    let (address, server) = serve_one(address);
    local(async move {
        let (host, connection) = connect::<host::Client>(&address.to_string()).await.unwrap();
        conformance(host).await;
        connection.disconnect().await.unwrap();
    });
    server.join().unwrap();
}

#[test]
fn conformance_over_shm() {
    let name = TestName::new("rpc-shm");
    conformance_at(format!("shm://{}", &*name));
}

#[test]
fn conformance_over_tcp() {
    conformance_at("tcp://127.0.0.1:0".into());
}

#[test]
fn conformance_over_a_unix_socket() {
    let name = TestName::new("rpc-uds");
    let path = std::env::temp_dir().join(format!("{}.sock", &*name));
    let _ = std::fs::remove_file(&path);
    conformance_at(format!("unix://{}", path.display()));
}

#[test]
fn addresses_parse_and_print_back() {
    for s in ["shm://a-name", "tcp://127.0.0.1:4000", "unix:///tmp/x.sock"] {
        assert_eq!(s.parse::<Address>().unwrap().to_string(), s);
    }
    for bad in ["a-name", "shm://", "http://x", "tcp:/x"] {
        assert!(bad.parse::<Address>().is_err(), "{bad} parsed");
    }
}

#[test]
fn child_process_entry() {
    let Some((role, address)) = common::peer::role() else {
        return;
    };
    assert_eq!(role, "serve");
    local(async move {
        let mut server = Server::bind(&address).await.unwrap();
        say_value("listening", &server.address().unwrap().to_string());
        let _connection = server.accept(ExampleHost::client().client).await.unwrap();
        tokio::task::spawn_blocking(read_stdin_line).await.unwrap();
    });
}

/// A call that is never answered (its host is killed -9 meanwhile) fails with
/// `Disconnected`, and so does the next call.
fn killed_mid_call(address: String) {
    let mut peer = Peer::spawn("serve", &address);
    let address = peer.expect_value("listening");
    local(async move {
        let (host, _connection) = connect::<host::Client>(&address).await.unwrap();
        assert_eq!(echo(&host, 1, b"alive").await.unwrap().0, 1);
        let mut later = host.later_request();
        later.get().set_ticket(99);
        let pending = later.send().promise;
        // The call has reached the host once a later call has been answered.
        assert_eq!(echo(&host, 2, b"after").await.unwrap().0, 2);
        peer.kill();
        let error = pending.await.err().expect("a killed host answered");
        assert_eq!(error.kind, ErrorKind::Disconnected, "{error}");
        let error = echo(&host, 3, b"gone").await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Disconnected, "{error}");
    });
}

#[test]
fn a_host_killed_mid_call_gives_disconnected_over_shm() {
    let name = TestName::new("rpc-kill");
    killed_mid_call(format!("shm://{}", &*name));
}

#[test]
fn a_host_killed_mid_call_gives_disconnected_over_tcp() {
    killed_mid_call("tcp://127.0.0.1:0".into());
}

#[test]
fn a_message_larger_than_the_ring_fails_the_connection_instead_of_hanging() {
    let name = TestName::new("rpc-too-large");
    let (address, server) = serve_one(format!("shm://{}", &*name));
    local(async move {
        let (host, _connection) = connect::<host::Client>(&address.to_string()).await.unwrap();
        assert_eq!(echo(&host, 1, b"small").await.unwrap().0, 1);
        let huge = vec![1u8; 2 << 20]; // the ring holds about 1 MiB
        let error = echo(&host, 2, &huge).await.unwrap_err();
        assert!(error.to_string().contains("exceeds the ring"), "{error}");
        // The connection ended with that error (as a failed socket write ends capnp-rpc's
        // two-party connection): later calls fail at once too.
        let error = echo(&host, 3, b"after").await.unwrap_err();
        assert!(error.to_string().contains("exceeds the ring"), "{error}");
    });
    server.join().unwrap();
}
