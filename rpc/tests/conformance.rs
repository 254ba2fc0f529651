//! The example service's conformance tests, the same over every transport: a channel
//! (`shm://`), TCP on loopback (`tcp://`) and a Unix socket (`unix://`). And a serving
//! process killed in the middle of a call: the caller gets a `Disconnected` error, over
//! shm and over TCP, within a bounded time.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::rc::Rc;

use capnp_shm_rpc::service_capnp::{host, listener};
use capnp_shm_rpc::{connect, Address, CountingListener};
use common::TestName;
use support::{echo, killed_mid_call, local, resolve, serve_one};

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
    assert!(resolve(&host, 1, 42).await.unwrap());
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
    support::serve_child();
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
