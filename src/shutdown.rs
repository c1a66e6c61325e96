//! Graceful shutdown: a signal passed in, and a tracker of what must drain.
//!
//! The server never decides to stop by itself: whoever runs it holds the
//! [`ShutdownTrigger`] (the PyO3 `Server`, on `shutdown()` or a Python signal)
//! and every accept loop and connection holds a [`ShutdownSignal`]. On the
//! signal, accept loops return and connections finish the request in flight,
//! then close (idle keep-alive connections after a drain period: see
//! `protocols::http1::conn`). A `TaskTracker` tells when the
//! last connection has gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::{watch, Notify};

/// The sending half: `trigger()` starts a graceful shutdown. Idempotent.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
    /// Wakes every [`ShutdownSignal::stopped`] future.
    notify: Arc<Notify>,
    /// Set by [`ShutdownTrigger::retire`].
    retiring: Arc<AtomicBool>,
}

/// The receiving half, cloned into every task that must stop.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
    notify: Arc<Notify>,
    retiring: Arc<AtomicBool>,
}

/// Creates a connected trigger and signal.
pub fn channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    let notify = Arc::new(Notify::new());
    let retiring = Arc::new(AtomicBool::new(false));
    (
        ShutdownTrigger {
            tx,
            notify: notify.clone(),
            retiring: retiring.clone(),
        },
        ShutdownSignal {
            rx,
            notify,
            retiring,
        },
    )
}

impl ShutdownTrigger {
    /// Starts the graceful shutdown; every `ShutdownSignal::recv` completes.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
        self.notify.notify_waiters();
    }

    /// Starts the graceful shutdown of a server that retires while its
    /// listening sockets stay open elsewhere (`--max-requests`: the master
    /// keeps them for the next worker): the connections waiting in the
    /// listen queue are left there, for the next worker, instead of being
    /// taken and served on the way out.
    pub fn retire(&self) {
        self.retiring.store(true, Ordering::Release);
        self.trigger();
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

    /// Whether it was [`ShutdownTrigger::retire`]: the listen queue is left
    /// to the next server on the same sockets.
    pub fn is_retiring(&self) -> bool {
        self.retiring.load(Ordering::Acquire)
    }
}
