//! Prometheus metrics (`--metrics-bind`), summed over every worker, past and
//! present, without IPC per request.
//!
//! The master maps one shared memory segment before it forks
//! ([`open`]): one [`Slot`] of plain atomic counters per worker (and one
//! of its own, for restarts). A worker claims a slot when it starts
//! ([`claim`]) and adds to it with relaxed atomic adds; a replacement
//! claims a dead worker's slot and keeps adding to its counters, while the
//! master zeroes the dead worker's gauges ([`release`]). Whichever worker
//! accepts a scrape sums the slots ([`expose`]); the endpoint runs on a
//! thread of its own ([`endpoint`]), so it answers while every Python
//! thread is busy, and while the I/O thread runs the application itself
//! (`--threads 1`). The master serves nothing and starts no thread.
//!
//! Without `--metrics-bind` no segment exists and every `record_*` call
//! is one load and a branch.

pub mod endpoint;
pub mod expose;

use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use http::Method;

/// Histogram bucket upper bounds, seconds (Prometheus' defaults).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Methods counted by name; any other is counted as `other`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

/// Status codes counted: 100 to 599.
const STATUSES: usize = 500;

/// Why the master replaced a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// It died without being asked to.
    Crash,
    /// `--timeout`: killed while stuck.
    Timeout,
    /// `--max-requests`: it retired after its share.
    MaxRequests,
    /// `--max-worker-memory`: it retired over the limit.
    Memory,
    /// A reload (SIGHUP, `--reload`) replaced it.
    Reload,
}

/// The `cause` label of each [`Restart`], in its order.
pub const RESTART_CAUSES: [&str; 5] = ["crash", "timeout", "max-requests", "memory", "reload"];

impl Restart {
    /// The restart named `cause` (one of [`RESTART_CAUSES`]).
    pub fn parse(cause: &str) -> Option<Self> {
        Some(match cause {
            "crash" => Restart::Crash,
            "timeout" => Restart::Timeout,
            "max-requests" => Restart::MaxRequests,
            "memory" => Restart::Memory,
            "reload" => Restart::Reload,
            _ => return None,
        })
    }
}

/// A histogram's counts: one per bucket of [`BUCKETS`] (not cumulative)
/// plus one for +Inf, and the sum of the observations in microseconds.
#[repr(C)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// One process's figures, in shared memory: atomics only (all zeros is
/// the empty slot), the same layout in every process of one master.
#[repr(C)]
pub struct Slot {
    requests: [[AtomicU64; STATUSES]; METHODS.len()],
    duration: Histogram,
    wait: Histogram,
    in_flight: AtomicI64,
    waiting: AtomicI64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connections_open: AtomicI64,
    connections_accepted: AtomicU64,
    exceptions: AtomicU64,
    /// 1 while a live worker owns the slot.
    alive: AtomicI64,
    restarts: [AtomicU64; RESTART_CAUSES.len()],
}

impl Slot {
    /// Zeroes the gauges (what a dead process left "open").
    fn clear_gauges(&self) {
        for gauge in [
            &self.in_flight,
            &self.waiting,
            &self.connections_open,
            &self.alive,
        ] {
            gauge.store(0, Ordering::Relaxed);
        }
    }
}

/// The shared memory segment: slot 0 is the master's, 1.. the workers'.
pub struct Segment {
    slots: &'static [Slot],
}

impl Segment {
    /// Maps a zeroed segment of `workers + 1` slots, shared with the
    /// processes forked after it.
    ///
    /// # Errors
    /// The OS error when `mmap` fails.
    fn map(workers: usize) -> std::io::Result<Self> {
        let count = workers + 1;
        let len = count * std::mem::size_of::<Slot>();
        // SAFETY: an anonymous shared mapping of `len` bytes, never unmapped
        // (it lives as long as the process); zero-filled by the kernel, and
        // all zeros is a valid `Slot` (atomics only).
        let slots = unsafe {
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if ptr == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            std::slice::from_raw_parts(ptr.cast::<Slot>(), count)
        };
        Ok(Segment { slots })
    }

    /// Every slot, the master's first.
    pub fn slots(&self) -> &[Slot] {
        self.slots
    }
}

static SEGMENT: OnceLock<Segment> = OnceLock::new();
/// This process's slot; null: metrics are off here.
static MINE: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());

/// Maps the segment for `workers` worker slots, once per process tree (a
/// second call keeps the first segment).
///
/// # Errors
/// The OS error when `mmap` fails.
pub fn open(workers: usize) -> std::io::Result<()> {
    if SEGMENT.get().is_none() {
        let _ = SEGMENT.set(Segment::map(workers)?);
    }
    Ok(())
}

/// The segment, if [`open`] was called in this process or before its fork.
pub fn segment() -> Option<&'static Segment> {
    SEGMENT.get()
}

/// Makes worker slot `slot` (1-based) this process's: its gauges start at
/// zero, it counts as alive. Returns false when there is no such slot.
pub fn claim(slot: usize) -> bool {
    let Some(found) = segment().and_then(|s| s.slots.get(slot)) else {
        return false;
    };
    found.clear_gauges();
    found.alive.store(1, Ordering::Relaxed);
    MINE.store(std::ptr::from_ref(found).cast_mut(), Ordering::Release);
    true
}

/// In the master, after worker slot `slot` was left by a dead worker: its
/// gauges go back to zero (its counters stay: they are history).
pub fn release(slot: usize) {
    if let Some(found) = segment().and_then(|s| s.slots.get(slot)) {
        found.clear_gauges();
    }
}

/// In the master: one worker replaced, for `cause`.
pub fn count_restart(cause: Restart) {
    if let Some(master) = segment().and_then(|s| s.slots.first()) {
        master.restarts[cause as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// This process's slot, when metrics are on.
fn mine() -> Option<&'static Slot> {
    let ptr = MINE.load(Ordering::Acquire);
    // SAFETY: non-null only when set by `claim` from a `&'static Slot` of
    // the never-unmapped segment.
    unsafe { ptr.as_ref() }
}

/// Whether this process counts (a slot is claimed).
pub fn enabled() -> bool {
    mine().is_some()
}

/// A request whose head arrived: in flight until the returned guard is
/// dropped; [`InFlight::finish`] counts its answer.
pub fn request_started() -> InFlight {
    let slot = mine();
    if let Some(slot) = slot {
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
    }
    InFlight(slot)
}

/// A request body of `bytes` bytes received (read whole by an engine).
pub fn record_request_body(bytes: u64) {
    if let Some(slot) = mine() {
        slot.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A request in flight (see [`request_started`]); dropping it without
/// [`InFlight::finish`] counts no answer (the client left first).
#[must_use]
pub struct InFlight(Option<&'static Slot>);

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

impl InFlight {
    /// The request was answered: `status` sent, `body_bytes` of response
    /// body written, `duration` since its head arrived. `method`: `None`
    /// for a request refused before it was understood (counted as `other`).
    pub fn finish(self, method: Option<&Method>, status: u16, body_bytes: u64, duration: Duration) {
        let Some(slot) = self.0 else { return };
        let method = method
            .and_then(|m| {
                METHODS[..METHODS.len() - 1]
                    .iter()
                    .position(|n| *n == m.as_str())
            })
            .unwrap_or(METHODS.len() - 1);
        let status = usize::from(status.clamp(100, 599)) - 100;
        slot.requests[method][status].fetch_add(1, Ordering::Relaxed);
        slot.duration.observe(duration);
        slot.bytes_out.fetch_add(body_bytes, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            slot.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A request queued for a Python thread.
pub fn record_queued() {
    if let Some(slot) = mine() {
        slot.waiting.fetch_add(1, Ordering::Relaxed);
    }
}

/// A queued request taken by a Python thread after waiting `waited`.
pub fn record_dequeued(waited: Duration) {
    if let Some(slot) = mine() {
        slot.waiting.fetch_sub(1, Ordering::Relaxed);
        slot.wait.observe(waited);
    }
}

/// A client connection accepted (open until [`record_closed`]).
pub fn record_accepted() {
    if let Some(slot) = mine() {
        slot.connections_accepted.fetch_add(1, Ordering::Relaxed);
        slot.connections_open.fetch_add(1, Ordering::Relaxed);
    }
}

/// A client connection closed.
pub fn record_closed() {
    if let Some(slot) = mine() {
        slot.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An application call raised (or returned something PEP 3333 forbids).
pub fn record_exception() {
    if let Some(slot) = mine() {
        slot.exceptions.fetch_add(1, Ordering::Relaxed);
    }
}
