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
