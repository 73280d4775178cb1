//! Prometheus metrics: counters kept in one fixed-layout block of atomics per process.
//!
//! Recording is a relaxed `fetch_add` on the engine's hot path: no lock, no GIL. The block
//! has a `repr(C)` layout of plain atomics so that, with several workers, it can live in a
//! shared file mapping (one slot per worker) that the supervisor sums when scraped; with one
//! process it is simply leaked on the heap. Gauges (connections, requests in flight) are
//! copied into the block by the worker a few times a second rather than kept on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub mod shared;

use http::Method;

pub const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "OTHER",
];
/// Upper bounds in seconds, for requests from 1 ms to a minute; +Inf is the last slot.
pub const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
pub const REJECTION_REASONS: [&str; 3] = ["limit", "queue_timeout", "deadline"];
const STATUSES: usize = 500; // 100..=599

#[repr(C)]
pub struct MetricsBlock {
    requests: [[AtomicU64; STATUSES]; METHODS.len()],
    duration_buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_sum_us: AtomicU64,
    rejected: [AtomicU64; REJECTION_REASONS.len()],
    loop_blocked_us: AtomicU64,
    // Gauges, published by their owner.
    pub in_flight: AtomicU64,
    pub connections_open: AtomicU64,
    pub websocket_sessions_open: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    Limit = 0,
    QueueTimeout = 1,
    Deadline = 2,
}

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::HEAD => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

impl MetricsBlock {
    /// A zeroed block on the heap that lives as long as the process.
    pub fn leaked() -> &'static MetricsBlock {
        let layout = std::alloc::Layout::new::<MetricsBlock>();
        // SAFETY: the layout is MetricsBlock's (non-zero size). Every field is an atomic
        // integer, for which all-zero bytes are a valid value, so the zeroed allocation is
        // an initialised MetricsBlock; it is never freed, hence 'static.
        unsafe {
            let ptr = std::alloc::alloc_zeroed(layout).cast::<MetricsBlock>();
            if ptr.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            &*ptr
        }
    }

    pub fn record(&self, method: &Method, status: u16, elapsed: Duration) {
        let s = usize::from(status.clamp(100, 599)) - 100;
        self.requests[method_index(method)][s].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.duration_buckets[bucket].fetch_add(1, Relaxed);
        self.duration_sum_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    pub fn rejected(&self, why: Rejected) {
        self.rejected[why as usize].fetch_add(1, Relaxed);
    }

    pub fn loop_blocked(&self, seconds: f64) {
        self.loop_blocked_us
            .fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    /// Adds `other`'s counters (not its gauges) to this block: a retired worker's history.
    pub fn absorb_counters(&self, other: &MetricsBlock) {
        for (a, b) in self.counters().zip(other.counters()) {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
    }

    /// Zeroes everything (a slot handed to a new worker).
    pub fn clear(&self) {
        for c in self.counters() {
            c.store(0, Relaxed);
        }
        for g in [
            &self.in_flight,
            &self.connections_open,
            &self.websocket_sessions_open,
        ] {
            g.store(0, Relaxed);
        }
    }

    fn counters(&self) -> impl Iterator<Item = &AtomicU64> {
        self.requests
            .iter()
            .flatten()
            .chain(self.duration_buckets.iter())
            .chain(std::iter::once(&self.duration_sum_us))
            .chain(self.rejected.iter())
            .chain(std::iter::once(&self.loop_blocked_us))
    }
}

/// What the process itself uses, for autoscalers: (resident bytes, CPU seconds).
pub fn process_usage(pids: &[u32]) -> (u64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let (mut rss, mut cpu) = (0u64, 0.0);
    for pid in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the ")" of the command name: utime is 14th, stime 15th, rss 24th.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                cpu += (num(11) + num(12)) / ticks;
                rss += num(21) as u64 * 4096;
            }
        }
    }
    (rss, cpu)
}

/// The Prometheus text exposition of the sum of `blocks`.
pub fn render(blocks: &[&MetricsBlock], pids: &[u32]) -> String {
    let sum = |f: &dyn Fn(&MetricsBlock) -> &AtomicU64| -> u64 {
        blocks.iter().map(|b| f(b).load(Relaxed)).sum()
    };
    let mut out = String::with_capacity(8192);
    out.push_str("# HELP ferricorn_http_requests_total HTTP requests answered.\n");
    out.push_str("# TYPE ferricorn_http_requests_total counter\n");
    for (m, method) in METHODS.iter().enumerate() {
        for s in 0..STATUSES {
            let n = sum(&|b| &b.requests[m][s]);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "ferricorn_http_requests_total{{method=\"{method}\",status=\"{}\"}} {n}",
                    s + 100
                );
            }
        }
    }
    out.push_str("# HELP ferricorn_http_request_duration_seconds Time from request head to the end of the response.\n");
    out.push_str("# TYPE ferricorn_http_request_duration_seconds histogram\n");
    let mut cumulative = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        cumulative += sum(&|b| &b.duration_buckets[i]);
        let _ = writeln!(
            out,
            "ferricorn_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += sum(&|b| &b.duration_buckets[BUCKETS.len()]);
    let _ = writeln!(
        out,
        "ferricorn_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "ferricorn_http_request_duration_seconds_sum {}",
        sum(&|b| &b.duration_sum_us) as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "ferricorn_http_request_duration_seconds_count {cumulative}"
    );
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        );
    };
    gauge(
        &mut out,
        "ferricorn_http_requests_in_flight",
        "Requests inside the app now.",
        sum(&|b| &b.in_flight),
    );
    gauge(
        &mut out,
        "ferricorn_connections_open",
        "Open client connections.",
        sum(&|b| &b.connections_open),
    );
    gauge(
        &mut out,
        "ferricorn_websocket_sessions_open",
        "Open WebSocket sessions.",
        sum(&|b| &b.websocket_sessions_open),
    );
    out.push_str("# HELP ferricorn_http_requests_rejected_total Requests answered without the app (503) or cut by a deadline (504).\n");
    out.push_str("# TYPE ferricorn_http_requests_rejected_total counter\n");
    for (i, reason) in REJECTION_REASONS.iter().enumerate() {
        let n = sum(&|b| &b.rejected[i]);
        let _ = writeln!(
            out,
            "ferricorn_http_requests_rejected_total{{reason=\"{reason}\"}} {n}"
        );
    }
    out.push_str("# HELP ferricorn_event_loop_blocked_seconds_total Time event loops were reported blocked.\n");
    out.push_str("# TYPE ferricorn_event_loop_blocked_seconds_total counter\n");
    let _ = writeln!(
        out,
        "ferricorn_event_loop_blocked_seconds_total {}",
        sum(&|b| &b.loop_blocked_us) as f64 / 1e6
    );
    let (rss, cpu) = process_usage(pids);
    out.push_str(
        "# HELP process_resident_memory_bytes Resident memory of the server's processes.\n",
    );
    let _ = writeln!(
        out,
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
    );
    out.push_str("# HELP process_cpu_seconds_total CPU time of the server's processes.\n");
    let _ = writeln!(
        out,
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_renders_counters_and_histogram() {
        let a = MetricsBlock::leaked();
        let b = MetricsBlock::leaked();
        a.record(&Method::GET, 200, Duration::from_millis(3));
        b.record(&Method::GET, 200, Duration::from_secs(90));
        b.record(&Method::POST, 503, Duration::from_micros(10));
        b.rejected(Rejected::Limit);
        let text = render(&[a, b], &[]);
        assert!(
            text.contains("ferricorn_http_requests_total{method=\"GET\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("ferricorn_http_requests_total{method=\"POST\",status=\"503\"} 1"));
        assert!(text.contains("ferricorn_http_request_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("ferricorn_http_request_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("ferricorn_http_request_duration_seconds_bucket{le=\"60\"} 2"));
        assert!(text.contains("ferricorn_http_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("ferricorn_http_requests_rejected_total{reason=\"limit\"} 1"));
    }

    #[test]
    fn absorbing_keeps_counters_and_clear_resets() {
        let retired = MetricsBlock::leaked();
        let slot = MetricsBlock::leaked();
        slot.record(&Method::GET, 404, Duration::from_millis(1));
        slot.in_flight.store(3, Relaxed);
        retired.absorb_counters(slot);
        slot.clear();
        let text = render(&[retired, slot], &[]);
        assert!(text.contains("status=\"404\"} 1"));
        assert!(text.contains("ferricorn_http_requests_in_flight 0"));
    }
}
