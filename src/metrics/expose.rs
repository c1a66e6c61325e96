//! The scrape: every slot summed, in the OpenMetrics text format that
//! Prometheus reads (encoded by the `prometheus-client` crate).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{Histogram, Slot, BUCKETS, METHODS, RESTART_CAUSES, STATUSES};

/// `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The figures of every slot of `slots`, summed, as exposition text.
pub fn render(slots: &[Slot]) -> String {
    let mut registry = Registry::with_prefix("ferrowsgi");
    register_requests(&mut registry, slots);
    let histogram = |pick: fn(&Slot) -> &Histogram| Summed::of(slots.iter().map(pick));
    registry.register_with_unit(
        "request_duration",
        "Time from the request head to the end of the response",
        Unit::Seconds,
        histogram(|s| &s.duration),
    );
    registry.register_with_unit(
        "request_wait",
        "Time requests waited for a Python thread",
        Unit::Seconds,
        histogram(|s| &s.wait),
    );
    let gauge = |pick: fn(&Slot) -> &AtomicI64| {
        let g = Gauge::<i64>::default();
        g.set(
            slots
                .iter()
                .map(|s| pick(s).load(Ordering::Relaxed))
                .sum::<i64>()
                .max(0),
        );
        g
    };
    let counter = |pick: fn(&Slot) -> &AtomicU64| {
        let c = Counter::<u64>::default();
        c.inc_by(slots.iter().map(|s| pick(s).load(Ordering::Relaxed)).sum());
        c
    };
    let gauges: [(&str, &str, GaugeOf); 4] = [
        (
            "requests_in_flight",
            "Requests read and not yet answered",
            |s| &s.in_flight,
        ),
        (
            "requests_waiting",
            "Requests waiting for a Python thread",
            |s| &s.waiting,
        ),
        ("connections_open", "Client connections open", |s| {
            &s.connections_open
        }),
        ("workers", "Worker processes alive", |s| &s.alive),
    ];
    for (name, help, pick) in gauges {
        registry.register(name, help, gauge(pick));
    }
    let counters: [(&str, &str, Option<Unit>, CounterOf); 4] = [
        (
            "request",
            "Request body bytes received",
            Some(Unit::Bytes),
            |s| &s.bytes_in,
        ),
        (
            "response",
            "Response body bytes sent",
            Some(Unit::Bytes),
            |s| &s.bytes_out,
        ),
        (
            "connections_accepted",
            "Client connections accepted",
            None,
            |s| &s.connections_accepted,
        ),
        (
            "application_exceptions",
            "Application calls that raised",
            None,
            |s| &s.exceptions,
        ),
    ];
    for (name, help, unit, pick) in counters {
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit, counter(pick)),
            None => registry.register(name, help, counter(pick)),
        }
    }
    register_restarts(&mut registry, slots);
    let mut text = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// Which gauge of a slot a series sums.
type GaugeOf = fn(&Slot) -> &AtomicI64;
/// Which counter of a slot a series sums.
type CounterOf = fn(&Slot) -> &AtomicU64;

/// `ferrowsgi_requests_total{method, status}`: only the pairs seen.
fn register_requests(registry: &mut Registry, slots: &[Slot]) {
    let family = Family::<Vec<(&'static str, String)>, Counter>::default();
    for (m, method) in METHODS.iter().enumerate() {
        for status in 0..STATUSES {
            let n: u64 = slots
                .iter()
                .map(|s| s.requests[m][status].load(Ordering::Relaxed))
                .sum();
            if n > 0 {
                let labels = vec![
                    ("method", (*method).to_owned()),
                    ("status", (status + 100).to_string()),
                ];
                family.get_or_create(&labels).inc_by(n);
            }
        }
    }
    registry.register("requests", "Requests answered", family);
}

/// `ferrowsgi_worker_restarts_total{cause}`: every cause, 0 included.
fn register_restarts(registry: &mut Registry, slots: &[Slot]) {
    let family = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    for (i, cause) in RESTART_CAUSES.iter().enumerate() {
        let n: u64 = slots
            .iter()
            .map(|s| s.restarts[i].load(Ordering::Relaxed))
            .sum();
        family.get_or_create(&vec![("cause", *cause)]).inc_by(n);
    }
    registry.register("worker_restarts", "Workers replaced, by cause", family);
}

/// A histogram summed over slots, encoded as it is.
#[derive(Debug)]
struct Summed {
    /// Counts per bucket of [`BUCKETS`], then +Inf, each bucket's own (the
    /// encoder makes them cumulative).
    buckets: Vec<(f64, u64)>,
    sum_secs: f64,
    count: u64,
}

impl Summed {
    fn of<'a>(histograms: impl Iterator<Item = &'a Histogram>) -> Self {
        let mut counts = [0u64; BUCKETS.len() + 1];
        let mut sum_micros = 0u64;
        for h in histograms {
            for (total, bucket) in counts.iter_mut().zip(&h.buckets) {
                *total += bucket.load(Ordering::Relaxed);
            }
            sum_micros = sum_micros.wrapping_add(h.sum_micros.load(Ordering::Relaxed));
        }
        let bounds = BUCKETS.iter().copied().chain([f64::INFINITY]);
        Summed {
            buckets: bounds.zip(counts).collect(),
            sum_secs: sum_micros as f64 / 1e6,
            count: counts.iter().sum(),
        }
    }
}

impl EncodeMetric for Summed {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum_secs, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The whole exposition for this process tree, or a note when metrics are
/// off (no segment).
pub fn scrape() -> String {
    match super::segment() {
        Some(segment) => render(segment.slots()),
        None => {
            let mut text = String::new();
            let _ = writeln!(text, "# metrics are off: no --metrics-bind");
            text
        }
    }
}
