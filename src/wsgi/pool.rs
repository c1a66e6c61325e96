//! The Python threads that call the application (`--threads`).
//!
//! Each thread attaches to the interpreter once and stays attached; it waits
//! for the next job with the GIL released (`py.detach`) and only takes the
//! GIL to run a request. When jobs are already queued it takes the next one
//! without releasing the GIL in between, which saves two GIL hand-overs per
//! request under load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use pyo3::prelude::*;

use crate::exchange::Job;
use crate::wsgi::Gateway;

/// What the pool has done, read by a supervisor (worker timeout, recycling).
#[derive(Debug)]
pub struct PoolStats {
    epoch: Instant,
    /// Per thread: when its running application call started, in ms after
    /// `epoch` plus one; 0 while the thread waits for work.
    busy_since: Vec<AtomicU64>,
    /// Requests handed to the application so far.
    requests: AtomicU64,
}

impl PoolStats {
    /// Statistics for a pool of `threads` threads.
    pub fn new(threads: usize) -> Self {
        PoolStats {
            epoch: Instant::now(),
            busy_since: (0..threads).map(|_| AtomicU64::new(0)).collect(),
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

    fn begin(&self, thread: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.busy_since[thread].store(now, Ordering::Relaxed);
    }

    fn end(&self, thread: usize) {
        self.busy_since[thread].store(0, Ordering::Relaxed);
    }
}

/// A running set of Python threads.
pub struct Pool {
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts one thread per slot of `stats`, taking jobs from `jobs`; they
    /// exit when every sender of `jobs` is dropped.
    ///
    /// # Errors
    /// The OS error when a thread cannot be spawned.
    pub fn start(
        stats: Arc<PoolStats>,
        gateway: Arc<Gateway>,
        jobs: Receiver<Job>,
    ) -> std::io::Result<Self> {
        let threads = (0..stats.busy_since.len())
            .map(|i| {
                let (gateway, jobs, stats) = (gateway.clone(), jobs.clone(), stats.clone());
                std::thread::Builder::new()
                    .name(format!("ferrowsgi-py-{i}"))
                    .spawn(move || Python::attach(|py| work(py, &gateway, &jobs, &stats, i)))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
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

fn work(py: Python<'_>, gateway: &Gateway, jobs: &Receiver<Job>, stats: &PoolStats, i: usize) {
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(_) => match py.detach(|| jobs.recv()) {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        stats.begin(i);
        gateway.handle(py, job);
        stats.end(i);
    }
}
