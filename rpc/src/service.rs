//! [`ExampleHost`]: the example service of `schema/service.capnp`, the reference design's
//! host/guest pattern: a fast call (`echo`), a long-running call answered later
//! (`later`, resolved by `resolve` while other calls go on), and capabilities handed
//! back (`counter`, and `subscribe`, which calls the caller's `Listener` back).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use capnp::Error;
use futures::channel::oneshot;

use crate::service_capnp::{counter, host, listener, subscription};

/// What a ticket of `later`/`resolve` holds: a waiting call, or a value that came first.
enum Ticket {
    Waiting(oneshot::Sender<u64>),
    Resolved(u64),
}

/// The example host. Serve it with [`crate::Server`] (any address) or hand
/// `capnp_rpc::new_client(ExampleHost::default())` to an `RpcSystem`.
#[derive(Default)]
pub struct ExampleHost {
    tickets: RefCell<HashMap<u64, Ticket>>,
}

impl ExampleHost {
    /// The host as a capability (what a server bootstraps).
    pub fn client() -> host::Client {
        capnp_rpc::new_client(ExampleHost::default())
    }
}

impl host::Server for ExampleHost {
    async fn echo(
        self: Rc<Self>,
        params: host::EchoParams,
        mut results: host::EchoResults,
    ) -> Result<(), Error> {
        let p = params.get()?;
        let mut r = results.get();
        r.set_value(p.get_value());
        r.set_payload(p.get_payload()?);
        Ok(())
    }

    async fn later(
        self: Rc<Self>,
        params: host::LaterParams,
        mut results: host::LaterResults,
    ) -> Result<(), Error> {
        let ticket = params.get()?.get_ticket();
        let waiting = {
            let mut tickets = self.tickets.borrow_mut();
            match tickets.remove(&ticket) {
                Some(Ticket::Resolved(value)) => Ok(value),
                Some(Ticket::Waiting(_)) => {
                    return Err(Error::failed(format!(
                        "ticket {ticket} is already waited for"
                    )))
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    tickets.insert(ticket, Ticket::Waiting(tx));
                    Err(rx)
                }
            }
        };
        let value = match waiting {
            Ok(value) => value,
            Err(rx) => rx
                .await
                .map_err(|_| Error::failed(format!("ticket {ticket} was dropped")))?,
        };
        results.get().set_value(value);
        Ok(())
    }

    async fn resolve(
        self: Rc<Self>,
        params: host::ResolveParams,
        mut results: host::ResolveResults,
    ) -> Result<(), Error> {
        let p = params.get()?;
        let (ticket, value) = (p.get_ticket(), p.get_value());
        let waiter = {
            let mut tickets = self.tickets.borrow_mut();
            match tickets.remove(&ticket) {
                Some(Ticket::Waiting(tx)) => Some(tx),
                _ => {
                    tickets.insert(ticket, Ticket::Resolved(value));
                    None
                }
            }
        };
        let waiting = waiter.is_some_and(|tx| tx.send(value).is_ok());
        results.get().set_waiting(waiting);
        Ok(())
    }

    async fn counter(
        self: Rc<Self>,
        params: host::CounterParams,
        mut results: host::CounterResults,
    ) -> Result<(), Error> {
        let next = Cell::new(params.get()?.get_start());
        results
            .get()
            .set_counter(capnp_rpc::new_client(Counter { next }));
        Ok(())
    }

    async fn subscribe(
        self: Rc<Self>,
        params: host::SubscribeParams,
        mut results: host::SubscribeResults,
    ) -> Result<(), Error> {
        let p = params.get()?;
        let (listener, count) = (p.get_listener()?, p.get_count());
        let state = Rc::new(Delivery {
            count,
            delivered: Cell::new(0),
        });
        results
            .get()
            .set_subscription(capnp_rpc::new_client(Subscription(state.clone())));
        // Runs beside other calls: the RPC system drives it (as a call's own future would
        // be) once this call has returned its subscription.
        let deliver = async move {
            for seq in 0..u64::from(count) {
                let mut request = listener.event_request();
                request.get().set_seq(seq);
                request.send().promise.await?;
                state.delivered.set(state.delivered.get() + 1);
            }
            Ok::<(), Error>(())
        };
        tokio::task::spawn_local(async move {
            let _ = deliver.await;
        });
        Ok(())
    }
}

/// A counter of the caller's own.
struct Counter {
    next: Cell<u64>,
}

impl counter::Server for Counter {
    async fn next(
        self: Rc<Self>,
        _: counter::NextParams,
        mut results: counter::NextResults,
    ) -> Result<(), Error> {
        let value = self.next.get();
        self.next.set(value + 1);
        results.get().set_value(value);
        Ok(())
    }
}

/// How far a subscription's events have got.
struct Delivery {
    count: u32,
    delivered: Cell<u32>,
}

struct Subscription(Rc<Delivery>);

impl subscription::Server for Subscription {
    async fn delivered(
        self: Rc<Self>,
        _: subscription::DeliveredParams,
        mut results: subscription::DeliveredResults,
    ) -> Result<(), Error> {
        let delivered = self.0.delivered.get();
        let mut r = results.get();
        r.set_count(delivered);
        r.set_done(delivered == self.0.count);
        Ok(())
    }
}

/// A listener that counts the events it gets (for tests and the demo).
#[derive(Default)]
pub struct CountingListener {
    /// Events received so far, each checked to be the next in order.
    pub received: Cell<u64>,
}

impl listener::Server for CountingListener {
    async fn event(
        self: Rc<Self>,
        params: listener::EventParams,
        _: listener::EventResults,
    ) -> Result<(), Error> {
        let seq = params.get()?.get_seq();
        if seq != self.received.get() {
            return Err(Error::failed(format!(
                "event {seq} out of order (expected {})",
                self.received.get()
            )));
        }
        self.received.set(seq + 1);
        Ok(())
    }
}
