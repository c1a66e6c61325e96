//! Graceful shutdown: a signal passed in, and a tracker of what must drain.
//!
//! The server never decides to stop by itself: whoever runs it holds the
//! [`ShutdownTrigger`] (the PyO3 `Server`, on `shutdown()` or a Python signal)
//! and every accept loop and connection holds a [`ShutdownSignal`]. On the
//! signal, accept loops return and connections finish the request in flight,
//! then close (idle keep-alive connections after a drain period: see
//! `protocols::http1::conn`). A `TaskTracker` tells when the
//! last connection has gone.

use std::sync::Arc;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::{watch, Notify};

/// The sending half: `trigger()` starts a graceful shutdown. Idempotent.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
    /// Wakes every [`ShutdownSignal::stopped`] future.
    notify: Arc<Notify>,
}

/// The receiving half, cloned into every task that must stop.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
    notify: Arc<Notify>,
}

/// Creates a connected trigger and signal.
pub fn channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    let notify = Arc::new(Notify::new());
    (
        ShutdownTrigger {
            tx,
            notify: notify.clone(),
        },
        ShutdownSignal { rx, notify },
    )
}

impl ShutdownTrigger {
    /// Starts the graceful shutdown; every `ShutdownSignal::recv` completes.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
        self.notify.notify_waiters();
    }
}

impl ShutdownSignal {
    /// Completes once the shutdown was triggered (at once if it already was,
    /// or if the trigger was dropped).
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// A future that completes when the shutdown is triggered after this
    /// call (check [`ShutdownSignal::is_triggered`] for one before). Small
    /// and allocation-free, to sit in every idle connection (c10k).
    pub fn stopped(&self) -> OwnedNotified {
        self.notify.clone().notified_owned()
    }

    /// Whether the shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}
