//! The example service's conformance tests, the same over every transport: a channel
//! (`shm://`), TCP on loopback (`tcp://`) and a Unix socket (`unix://`). And a serving
//! process killed in the middle of a call: the caller gets a `Disconnected` error, over
//! shm and over TCP, within a bounded time.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use capnp_shm_rpc::service_capnp::host;
use capnp_shm_rpc::{connect, Address};
use common::TestName;
use support::{conformance, echo, killed_mid_call, local, serve_one};

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
