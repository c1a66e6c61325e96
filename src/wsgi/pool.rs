//! The Python threads that call the application (`--threads`).
//!
//! Each thread attaches to the interpreter once and stays attached; it waits
//! for the next job with the GIL released (`py.detach`) and only takes the
//! GIL to run a request. When jobs are already queued it takes the next one
//! without releasing the GIL in between, which saves two GIL hand-overs per
//! request under load.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use pyo3::prelude::*;

use crate::exchange::Job;
use crate::wsgi::Gateway;

/// A running set of Python threads.
pub struct Pool {
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `count` threads taking jobs from `jobs`; they exit when every
    /// sender of `jobs` is dropped.
    ///
    /// # Errors
    /// The OS error when a thread cannot be spawned.
    pub fn start(
        count: usize,
        gateway: Arc<Gateway>,
        jobs: Receiver<Job>,
    ) -> std::io::Result<Self> {
        let threads = (0..count)
            .map(|i| {
                let (gateway, jobs) = (gateway.clone(), jobs.clone());
                std::thread::Builder::new()
                    .name(format!("ferrowsgi-py-{i}"))
                    .spawn(move || Python::attach(|py| work(py, &gateway, &jobs)))
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

fn work(py: Python<'_>, gateway: &Gateway, jobs: &Receiver<Job>) {
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(_) => match py.detach(|| jobs.recv()) {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        gateway.handle(py, job);
    }
}
