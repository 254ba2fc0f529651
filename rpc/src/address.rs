//! One way in, whatever the transport: [`connect`] and [`Server`] take an address,
//! `shm://NAME` (a channel on this machine, capnp-rpc over [`ShmNetwork`]),
//! `tcp://HOST:PORT` or `unix:///PATH` (capnp-rpc's own `twoparty` network over a
//! socket), and give the same bootstrap capability. Moving a service to another machine
//! changes an address, not code.
//!
//! Everything here runs on a tokio `LocalSet` (capnp-rpc's objects are not `Send`): the
//! RPC system of each connection is a local task.

use std::path::PathBuf;
use std::time::Duration;

use capnp::capability::FromClientHook;
use capnp::message::ReaderOptions;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use capnp_shm_transport::Channel;
use futures::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

use crate::network::ShmNetwork;
use crate::Error;

/// How long `connect("shm://..")` waits for the serving side's channel.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The serving side's channel: 1 KiB slots (most RPC messages take one), 1024 of them
/// per direction, so one RPC message may be up to about 1 MiB.
const SLOT_SIZE: usize = 1024;
const SLOT_COUNT: usize = 1024;

fn create(name: &str) -> Result<Channel, capnp_shm_transport::Error> {
    Channel::builder(name)
        .slot_size(SLOT_SIZE)
        .slot_count(SLOT_COUNT)
        .create()
}

/// Where a service is: parsed from `shm://NAME`, `tcp://HOST:PORT` or `unix:///PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A channel of this machine, by name.
    Shm(String),
    /// A TCP host and port (`HOST:PORT`).
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::str::FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Address, Error> {
        let bad = || Error::Address(s.to_string());
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match scheme {
            "shm" => Ok(Address::Shm(rest.to_string())),
            "tcp" => Ok(Address::Tcp(rest.to_string())),
            "unix" => Ok(Address::Unix(PathBuf::from(rest))),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Shm(name) => write!(f, "shm://{name}"),
            Address::Tcp(host) => write!(f, "tcp://{host}"),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// A connection's RPC system, running as a local task; dropping this handle leaves it
/// running until the peer goes away, [`Connection::disconnect`] ends it.
pub struct Connection {
    disconnector: capnp_rpc::Disconnector<Side>,
    task: tokio::task::JoinHandle<Result<(), capnp::Error>>,
}

impl Connection {
    fn spawn(system: RpcSystem<Side>) -> Connection {
        let disconnector = system.get_disconnector();
        Connection {
            disconnector,
            task: tokio::task::spawn_local(system),
        }
    }

    /// Shuts the connection down (pending calls fail with `Disconnected`) and waits for
    /// its RPC system to end.
    pub async fn disconnect(self) -> Result<(), Error> {
        self.disconnector.await?;
        self.task.await.map_err(|e| Error::Task(e.to_string()))??;
        Ok(())
    }

    /// Waits until the connection ends by itself (the peer went away); its outcome.
    pub async fn finished(self) -> Result<(), Error> {
        self.task.await.map_err(|e| Error::Task(e.to_string()))??;
        Ok(())
    }
}

fn stream_system<R, W>(
    read: R,
    write: W,
    side: Side,
    bootstrap: Option<capnp::capability::Client>,
) -> RpcSystem<Side>
where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let network = twoparty::VatNetwork::new(
        futures::io::BufReader::new(read),
        futures::io::BufWriter::new(write),
        side,
        ReaderOptions::new(),
    );
    RpcSystem::new(Box::new(network), bootstrap)
}

fn shm_system(
    channel: Channel,
    side: Side,
    bootstrap: Option<capnp::capability::Client>,
) -> Result<RpcSystem<Side>, Error> {
    let network = ShmNetwork::new(channel, side, ReaderOptions::new())?;
    Ok(RpcSystem::new(Box::new(network), bootstrap))
}

/// Connects to the service at `address` and returns its bootstrap capability (as `C`,
/// e.g. `service_capnp::host::Client`) and the connection. Call it on a tokio `LocalSet`.
///
/// ```no_run
/// # async fn f() -> Result<(), capnp_shm_rpc::Error> {
/// use capnp_shm_rpc::service_capnp::host;
/// // The same code for either transport: only the address differs.
/// for address in ["shm://my-service", "tcp://127.0.0.1:4000"] {
///     let (host, connection) = capnp_shm_rpc::connect::<host::Client>(address).await?;
///     let mut call = host.echo_request();
///     call.get().set_value(7);
///     assert_eq!(call.send().promise.await?.get()?.get_value(), 7);
///     connection.disconnect().await?;
/// }
/// # Ok(()) }
/// ```
pub async fn connect<C: FromClientHook>(address: &str) -> Result<(C, Connection), Error> {
    let mut system = match address.parse()? {
        Address::Shm(name) => {
            let open = move || Channel::builder(name).open_timeout(OPEN_TIMEOUT).open();
            let channel = tokio::task::spawn_blocking(open)
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
            shm_system(channel, Side::Client, None)?
        }
        Address::Tcp(host) => {
            let stream = TcpStream::connect(host).await?;
            stream.set_nodelay(true)?;
            let (read, write) = stream.into_split();
            stream_system(read.compat(), write.compat_write(), Side::Client, None)
        }
        Address::Unix(path) => {
            let (read, write) = UnixStream::connect(path).await?.into_split();
            stream_system(read.compat(), write.compat_write(), Side::Client, None)
        }
    };
    let bootstrap: C = system.bootstrap(Side::Server);
    Ok((bootstrap, Connection::spawn(system)))
}

enum Listening {
    Shm(String, Option<Box<Channel>>),
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// The serving side at an address: a channel it created (`shm://`, side A), or a bound
/// socket.
pub struct Server {
    listening: Listening,
}

impl Server {
    /// Listens at `address`: creates the channel (`shm://NAME`), or binds the socket
    /// (`tcp://HOST:0` picks a free port; see [`Server::address`]).
    pub async fn bind(address: &str) -> Result<Server, Error> {
        let listening = match address.parse()? {
            Address::Shm(name) => {
                let channel = create(&name)?;
                Listening::Shm(name, Some(Box::new(channel)))
            }
            Address::Tcp(host) => Listening::Tcp(TcpListener::bind(host).await?),
            Address::Unix(path) => Listening::Unix(UnixListener::bind(&path)?, path),
        };
        Ok(Server { listening })
    }

    /// The address clients connect to (with the port a `tcp://HOST:0` got).
    pub fn address(&self) -> Result<Address, Error> {
        Ok(match &self.listening {
            Listening::Shm(name, _) => Address::Shm(name.clone()),
            Listening::Tcp(l) => Address::Tcp(l.local_addr()?.to_string()),
            Listening::Unix(_, path) => Address::Unix(path.clone()),
        })
    }

    /// Takes the next client and serves `bootstrap` to it on a local task; the returned
    /// connection ends when the client goes away. Over shm the next client is the
    /// channel's next side B: a fresh channel is created for it once this one is done.
    pub async fn accept(
        &mut self,
        bootstrap: capnp::capability::Client,
    ) -> Result<Connection, Error> {
        let system = match &mut self.listening {
            Listening::Shm(name, channel) => {
                let channel = match channel.take() {
                    Some(c) => *c,
                    None => create(name)?,
                };
                shm_system(channel, Side::Server, Some(bootstrap))?
            }
            Listening::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                stream.set_nodelay(true)?;
                let (read, write) = stream.into_split();
                stream_system(
                    read.compat(),
                    write.compat_write(),
                    Side::Server,
                    Some(bootstrap),
                )
            }
            Listening::Unix(l, _) => {
                let (stream, _) = l.accept().await?;
                let (read, write) = stream.into_split();
                stream_system(
                    read.compat(),
                    write.compat_write(),
                    Side::Server,
                    Some(bootstrap),
                )
            }
        };
        Ok(Connection::spawn(system))
    }

    /// Serves `bootstrap` to every client, one after another over shm, side by side over
    /// sockets, until an error.
    pub async fn run(mut self, bootstrap: capnp::capability::Client) -> Result<(), Error> {
        loop {
            let connection = self.accept(bootstrap.clone()).await?;
            if matches!(self.listening, Listening::Shm(..)) {
                let _ = connection.finished().await;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Listening::Unix(_, path) = &self.listening {
            let _ = std::fs::remove_file(path);
        }
    }
}
