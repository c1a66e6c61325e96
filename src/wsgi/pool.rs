//! The Python threads that call the application (`--threads`).
//!
//! Each thread attaches to the interpreter once and stays attached; it waits
//! for the next job with the GIL released (`py.detach`) and only takes the
//! GIL to run a request. When jobs are already queued it takes the next one
//! without releasing the GIL in between, which saves two GIL hand-overs per
//! request under load.
//!
//! The queue carries [`Work`]: requests, and the rest of responses that began
//! inline on the I/O thread (`wsgi::dispatch`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use pyo3::prelude::*;

use crate::exchange::Job;
use crate::wsgi::response::Resume;
use crate::wsgi::Gateway;

/// One item of the pool's queue.
// Requests are the common case: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Work {
    /// A request to run through the application, and when it was queued
    /// (`None` when metrics are off: nothing times the wait then).
    Request(Job, Option<Instant>),
    /// The rest of a response that began inline.
    Resume(Resume),
}

/// What the pool has done, read by the worker process's watchdog (`--timeout`, recycling).
#[derive(Debug)]
pub struct PoolStats {
    epoch: Instant,
    /// Per thread, and one more slot for inline calls on the I/O thread:
    /// when its running application call started, in ms after `epoch` plus
    /// one; 0 while the thread waits for work.
    busy_since: Vec<AtomicU64>,
    /// Requests handed to the application so far.
    requests: AtomicU64,
}

impl PoolStats {
    /// Statistics for a pool of `threads` threads, plus inline calls.
    pub fn new(threads: usize) -> Self {
        PoolStats {
            epoch: Instant::now(),
            busy_since: (0..=threads).map(|_| AtomicU64::new(0)).collect(),
            requests: AtomicU64::new(0),
        }
    }

    /// Requests handed to the application so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// How long the oldest running application call has been running, or
    /// zero when no call is running.
    pub fn longest_call(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let oldest = self
            .busy_since
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&b| b > 0)
            .min();
        oldest.map_or(Duration::ZERO, |start| {
            Duration::from_millis(now.saturating_sub(start))
        })
    }

    /// The slot of inline calls (after the pool threads').
    pub fn inline_slot(&self) -> usize {
        self.busy_since.len() - 1
    }

    /// Counts a request handed to the application; returns the new count.
    pub fn count_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Runs `call` (application code: a request's, or the rest of a
    /// streamed response's) as busy time of `slot` (a thread, or the inline
    /// slot), which `longest_call` reports.
    pub fn running<T>(&self, slot: usize, call: impl FnOnce() -> T) -> T {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.busy_since[slot].store(now, Ordering::Relaxed);
        let result = call();
        self.busy_since[slot].store(0, Ordering::Relaxed);
        result
    }
}

/// A running set of Python threads.
pub struct Pool {
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts one thread per thread slot of `stats`, taking work from
    /// `queue` and decrementing `pending` after each item; they exit when
    /// every sender of `queue` is dropped. Returns once every thread is
    /// attached to the interpreter and waiting for work (the GIL released
    /// meanwhile), so that "ready" means ready.
    ///
    /// # Errors
    /// The OS error when a thread cannot be spawned.
    pub fn start(
        py: Python<'_>,
        stats: Arc<PoolStats>,
        gateway: Arc<Gateway>,
        queue: Receiver<Work>,
        pending: Arc<AtomicUsize>,
    ) -> std::io::Result<Self> {
        let (started_tx, started) = crossbeam_channel::unbounded();
        let threads = (0..stats.inline_slot())
            .map(|i| {
                let started = started_tx.clone();
                let thread = PoolThread {
                    gateway: gateway.clone(),
                    queue: queue.clone(),
                    stats: stats.clone(),
                    pending: pending.clone(),
                    slot: i,
                };
                std::thread::Builder::new()
                    .name(format!("ferrowsgi-py-{i}"))
                    .spawn(move || {
                        Python::attach(|py| {
                            let _ = started.send(());
                            drop(started);
                            thread.run(py);
                        })
                    })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        drop(started_tx);
        py.detach(|| while started.recv().is_ok() {});
        Ok(Pool { threads })
    }

    /// Waits (without the GIL) for the threads to exit, until `deadline`.
    /// Returns how many are still running an application call by then; those
    /// are left to finish on their own.
    pub fn join(self, py: Python<'_>, deadline: Instant) -> usize {
        py.detach(|| {
            let mut running = self.threads;
            while !running.is_empty() && Instant::now() < deadline {
                let (done, busy): (Vec<_>, Vec<_>) =
                    running.into_iter().partition(|t| t.is_finished());
                done.into_iter().for_each(|t| {
                    let _ = t.join();
                });
                running = busy;
                if !running.is_empty() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            running.len()
        })
    }
}

/// What one pool thread needs.
struct PoolThread {
    gateway: Arc<Gateway>,
    queue: Receiver<Work>,
    stats: Arc<PoolStats>,
    pending: Arc<AtomicUsize>,
    slot: usize,
}

impl PoolThread {
    fn run(&self, py: Python<'_>) {
        loop {
            let work = match self.queue.try_recv() {
                Ok(work) => work,
                Err(_) => match py.detach(|| self.queue.recv()) {
                    Ok(work) => work,
                    Err(_) => return,
                },
            };
            match work {
                Work::Request(job, queued) => {
                    if let Some(queued) = queued {
                        crate::metrics::record_dequeued(queued.elapsed());
                    }
                    self.stats
                        .running(self.slot, || self.gateway.handle(py, job));
                }
                Work::Resume(resume) => self.stats.running(self.slot, || resume.run(py)),
            }
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
