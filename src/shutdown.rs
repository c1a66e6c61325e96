//! Graceful shutdown: a signal passed in, and a tracker of what must drain.
//!
//! The server never decides to stop by itself: whoever runs it holds the
//! [`ShutdownTrigger`] (the PyO3 `Server`, on `shutdown()` or a Python signal)
//! and every accept loop and connection holds a [`ShutdownSignal`]. On the
//! signal, accept loops return and connections finish the request in flight,
//! then close (hyper's `graceful_shutdown`). A `TaskTracker` tells when the
//! last connection has gone.

use tokio::sync::watch;

/// The sending half: `trigger()` starts a graceful shutdown. Idempotent.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// The receiving half, cloned into every task that must stop.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

/// Creates a connected trigger and signal.
pub fn channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, ShutdownSignal { rx })
}

impl ShutdownTrigger {
    /// Starts the graceful shutdown; every `ShutdownSignal::recv` completes.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl ShutdownSignal {
    /// Completes once the shutdown was triggered (at once if it already was,
    /// or if the trigger was dropped).
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// Whether the shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}
