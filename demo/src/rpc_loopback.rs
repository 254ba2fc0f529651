//! The `loopback` row of `capnp-shm-demo rpc`: both RPC systems in this process, on one
//! thread, joined by an in-memory pipe (`tokio::io::duplex`) under capnp-rpc's own
//! two-party network. No thread is woken and no system call is made for a message, so its
//! one-call time is capnp-rpc's own per-call cost (both vats' work, the framing of each
//! message into a byte stream and back): the floor under which no transport can bring
//! a call made through capnp-rpc.

use capnp::message::ReaderOptions;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use capnp_shm_rpc::service_capnp::host;
use capnp_shm_rpc::ExampleHost;
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// The in-memory pipe's buffer per direction (bytes).
const PIPE_BYTES: usize = 64 * 1024;

fn system(
    stream: tokio::io::DuplexStream,
    side: Side,
    bootstrap: Option<capnp::capability::Client>,
) -> RpcSystem<Side> {
    let (read, write) = tokio::io::split(stream);
    let network = twoparty::VatNetwork::new(
        futures::io::BufReader::new(read.compat()),
        futures::io::BufWriter::new(write.compat_write()),
        side,
        ReaderOptions::new(),
    );
    RpcSystem::new(Box::new(network), bootstrap)
}

/// Serves the example host to a client in this thread (call it on a tokio `LocalSet`):
/// the host's capability, and the two RPC systems' tasks (abort them to end).
pub fn connect() -> (host::Client, [tokio::task::JoinHandle<()>; 2]) {
    let (a, b) = tokio::io::duplex(PIPE_BYTES);
    let server = system(a, Side::Server, Some(ExampleHost::client().client));
    let mut client = system(b, Side::Client, None);
    let host: host::Client = client.bootstrap(Side::Server);
    let tasks = [
        tokio::task::spawn_local(async move {
            let _ = server.await;
        }),
        tokio::task::spawn_local(async move {
            let _ = client.await;
        }),
    ];
    (host, tasks)
}
