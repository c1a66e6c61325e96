//! Where a request runs: inline on the I/O thread, or on a Python thread.
//!
//! With `--threads 1` there is one application call at a time anyway, so the
//! I/O thread runs it itself (taking the GIL) instead of handing it to the
//! Python thread and waking up again for the answer: two thread switches and
//! a wake-up less per request. The Python thread still exists, for what must
//! not run on the I/O thread: the rest of a streamed response that outgrew
//! its buffer (`response::Resume`), and requests that arrive meanwhile, which
//! queue behind it so calls never overlap. With more threads every request
//! goes to the pool: a blocked I/O thread would stall the other calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use pyo3::prelude::*;

use http::StatusCode;

use crate::exchange::{Dispatch, Job, ResponseStart, Stopped};
use crate::shutdown::ShutdownTrigger;
use crate::wsgi::pool::{PoolStats, Work};
use crate::wsgi::Gateway;

/// Sends requests to the application, inline or through the pool's queue.
pub struct Dispatcher {
    queue: Sender<Work>,
    /// The gateway to call inline; `None` when every call goes to the pool.
    inline: Option<Arc<Gateway>>,
    stats: Arc<PoolStats>,
    /// Work queued or running in the pool (inline calls wait for zero).
    pending: Arc<AtomicUsize>,
    /// `max_requests`: after this many requests, the graceful stop begins.
    limit: Option<(u64, Arc<ShutdownTrigger>)>,
    /// `max_queue`: requests that may wait for a Python thread; 0: any.
    max_queue: usize,
}

impl Dispatcher {
    /// A dispatcher feeding `queue`; `inline`: the gateway to call on the
    /// I/O thread while the pool is idle. `pending` is shared with the pool,
    /// which decrements it as it finishes work. `limit`: the number of
    /// requests (`max_requests`) after which `trigger` starts the graceful
    /// stop; the requests already read still run, no new one is accepted.
    pub fn new(
        queue: Sender<Work>,
        inline: Option<Arc<Gateway>>,
        stats: Arc<PoolStats>,
        pending: Arc<AtomicUsize>,
        limit: Option<(u64, Arc<ShutdownTrigger>)>,
    ) -> Self {
        Dispatcher {
            queue,
            inline,
            stats,
            pending,
            limit,
            max_queue: 0,
        }
    }

    /// Sheds load beyond `max_queue` requests waiting for a Python thread
    /// (0: never): the next one is answered 503 at once.
    pub fn with_max_queue(mut self, max_queue: usize) -> Self {
        self.max_queue = max_queue;
        self
    }

    /// Whether `max_queue` requests already wait (queued, not yet taken by
    /// a Python thread).
    fn full(&self) -> bool {
        self.max_queue > 0 && self.queue.len() >= self.max_queue
    }

    /// Counts a request, and begins the stop when it is the last one.
    fn count(&self) {
        let served = self.stats.count_request();
        if let Some((limit, trigger)) = &self.limit {
            if served == *limit {
                trigger.retire();
            }
        }
    }

    fn enqueue(&self, work: Work) -> Result<(), Stopped> {
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.queue.send(work).map_err(|_| {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            Stopped
        })
    }
}

impl Dispatch for Dispatcher {
    fn dispatch(&self, job: Job) -> Result<(), Stopped> {
        if self.full() {
            // The client may have left: nothing to answer then.
            let _ = job.reply.send(overloaded());
            return Ok(());
        }
        let idle = self.pending.load(Ordering::Acquire) == 0;
        self.count();
        match &self.inline {
            Some(gateway) if idle => {
                let resume = Python::attach(|py| {
                    let slot = self.stats.inline_slot();
                    self.stats.running(slot, || gateway.handle_inline(py, job))
                });
                if let Some(resume) = resume {
                    // The pool outlives every connection: this cannot fail
                    // but at exit, when the connection is dropped anyway.
                    let _ = self.enqueue(Work::Resume(resume));
                }
                Ok(())
            }
            _ => {
                // The wait is timed for the metrics only.
                let queued = crate::metrics::enabled().then(Instant::now);
                crate::metrics::record_queued();
                self.enqueue(Work::Request(job, queued))
            }
        }
    }
}

/// The answer to a request shed by `--max-queue`: 503 with `Retry-After: 1`
/// (RFC 9110 §15.6.4, §10.2.3), the connection kept.
fn overloaded() -> ResponseStart {
    let mut start = ResponseStart::plain(StatusCode::SERVICE_UNAVAILABLE, false);
    let _ = start.headers.push(b"Retry-After", b"1");
    start
}
