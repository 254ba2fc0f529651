//! What the RPC test binaries share: a bounded local runtime, a server on a thread of its
//! own, the echo call, the conformance suite, the serving child process and the
//! killed-host check.

use std::rc::Rc;
use std::time::Duration;

use capnp::ErrorKind;
use capnp_shm_rpc::service_capnp::{host, listener};
use capnp_shm_rpc::{connect, Address, CountingListener, ExampleHost, Server};

use crate::common::peer::{read_stdin_line, say_value, Peer};

/// Every wait of these tests ends within this.
pub const WAIT: Duration = Duration::from_secs(30);

/// Runs `f` on a fresh current-thread runtime's `LocalSet`, failing after `WAIT`.
pub fn local<F: std::future::Future>(f: F) -> F::Output {
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
pub fn serve_one(address: String) -> (Address, std::thread::JoinHandle<()>) {
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

pub async fn echo(
    host: &host::Client,
    value: u64,
    payload: &[u8],
) -> capnp::Result<(u64, Vec<u8>)> {
    let mut call = host.echo_request();
    call.get().set_value(value);
    call.get().set_payload(payload);
    let reply = call.send().promise.await?;
    let r = reply.get()?;
    Ok((r.get_value(), r.get_payload()?.to_vec()))
}

/// The conformance suite, on a connected `host`.
pub async fn conformance(host: host::Client) {
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
    assert!(!resolve(&host, 2, 5).await.unwrap());
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

/// Answers the `later` call holding `ticket` with `value`; whether one was waiting.
pub async fn resolve(host: &host::Client, ticket: u64, value: u64) -> capnp::Result<bool> {
    let mut resolve = host.resolve_request();
    resolve.get().set_ticket(ticket);
    resolve.get().set_value(value);
    Ok(resolve.send().promise.await?.get()?.get_waiting())
}

/// The serving child of `Peer::spawn("serve", ADDRESS)`: serves the example host at
/// the address to one client until its stdin says to stop. Call it from a test named
/// `child_process_entry`; it returns at once in the parent.
pub fn serve_child() {
    let Some((role, address)) = crate::common::peer::role() else {
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
pub fn killed_mid_call(address: String) {
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
