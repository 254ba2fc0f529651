//! A `Waker` that reports each wake on a channel, so a test can poll a future by hand and
//! wait (bounded) for the wake-up that should follow.

use std::sync::{mpsc, Arc, Mutex};
use std::task::{Wake, Waker};

struct Signal(Mutex<mpsc::Sender<()>>);

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

/// A waker and the channel its wakes arrive on.
pub fn signal_waker() -> (Waker, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    (Waker::from(Arc::new(Signal(Mutex::new(tx)))), rx)
}

/// Polls `fut` until its task parks: until a poll returns `Pending` without the future
/// having woken its own task (an async call spinning in block mode wakes itself to be
/// polled again). Panics if it completes, or spins for more than 10 s.
pub fn poll_until_parked<F: std::future::Future>(
    mut fut: std::pin::Pin<&mut F>,
    waker: &Waker,
    woken: &mpsc::Receiver<()>,
) {
    let mut cx = std::task::Context::from_waker(waker);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "completed");
        if woken.try_recv().is_err() {
            return;
        }
        while woken.try_recv().is_ok() {}
        assert!(std::time::Instant::now() < deadline, "never parked");
    }
}
