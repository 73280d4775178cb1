//! Requests refused for breaking a limit (413, 414, 431, 408) and connections dropped for
//! reading too slowly, and the log lines that say so: at most one a second per kind, with the count since the last one, so that a flood of
//! bad requests costs a line a second, not a line a request.
//!
//! Owns [`Throttle`] (also used by admission for its 503s) and the wording of each refusal.
//! Must not: decide what is refused (the service and the socket wrapper do).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::RequestLimits;
use crate::handoff::LogLevel;

/// Counts events; `note` says when a report is due (at most once a second) and how many
/// events it covers.
pub(super) struct Throttle {
    epoch: Instant,
    since_report: AtomicU64,
    last_report_ms: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            epoch: Instant::now(),
            since_report: AtomicU64::new(0),
            last_report_ms: AtomicU64::new(0),
        }
    }
}

impl Throttle {
    /// Counts one event; `Some(count)` when a report is due now.
    pub(super) fn note(&self) -> Option<u64> {
        let count = self.since_report.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_report_ms.load(Ordering::Relaxed);
        if last != 0 && now - last < 1000 {
            return None;
        }
        // One reporter wins a second; the others' events go into the next report.
        self.last_report_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        self.since_report.fetch_sub(count, Ordering::Relaxed);
        Some(count)
    }

    /// As if the last report were long ago.
    #[cfg(test)]
    pub(super) fn make_due(&self) {
        self.last_report_ms.store(0, Ordering::Relaxed);
    }
}

/// What a request was refused for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 413: the body is larger than `--limit-request-body`.
    BodyTooLarge,
    /// 414: the request line is longer than `--limit-request-line`.
    LineTooLong,
    /// 431: more fields than `--limit-request-fields`.
    TooManyFields,
    /// 431: a field larger than `--limit-request-field-size`, or a head past its limit.
    FieldTooLarge,
    /// 408: the body stopped arriving for `--timeout-request-body`.
    BodyStalled,
    /// No status: the client took response bytes slower than `--limit-min-send-rate`.
    SlowReader,
}

const KINDS: usize = 6;

impl Refusal {
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default)]
pub(super) struct Refusals {
    throttles: [Throttle; KINDS],
}

impl Refusals {
    /// Counts a refusal; returns the warning to log when one is due.
    pub(super) fn note(&self, why: Refusal, limits: &RequestLimits) -> Option<(LogLevel, String)> {
        let count = self.throttles[why.index()].note()?;
        if why == Refusal::SlowReader {
            return Some((
                LogLevel::Warning,
                format!(
                    "Dropped {count} connection(s) since the last report: the client took \
                     response bytes slower than --limit-min-send-rate ({} bytes/s) for \
                     --timeout-slow-send ({:.0} s)",
                    limits.min_send_rate.unwrap_or(0),
                    limits.slow_send_grace.as_secs_f64()
                ),
            ));
        }
        let (status, cause) = match why {
            Refusal::BodyTooLarge => (
                413,
                format!(
                    "request body over --limit-request-body ({} bytes)",
                    limits.body.unwrap_or(0)
                ),
            ),
            Refusal::LineTooLong => (
                414,
                format!(
                    "request line over --limit-request-line ({} bytes)",
                    limits.line
                ),
            ),
            Refusal::TooManyFields => (
                431,
                format!(
                    "more header fields than --limit-request-fields ({})",
                    limits.fields
                ),
            ),
            Refusal::FieldTooLarge => (
                431,
                format!(
                    "a header field over --limit-request-field-size ({} bytes) or a head over \
                     --h11-max-incomplete-event-size",
                    limits.field_size
                ),
            ),
            Refusal::SlowReader => unreachable!("worded above"),
            Refusal::BodyStalled => (
                408,
                format!(
                    "request body stopped arriving for --timeout-request-body ({:.0} s)",
                    limits.body_timeout.as_secs_f64()
                ),
            ),
        };
        Some((
            LogLevel::Warning,
            format!("Refused {count} request(s) with {status} since the last report: {cause}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_report_a_second_with_the_count_per_kind() {
        let limits = RequestLimits {
            body: Some(10),
            line: 100,
            fields: 5,
            field_size: 50,
            body_timeout: Duration::from_secs(3),
            min_send_rate: Some(1024),
            slow_send_grace: Duration::from_secs(30),
        };
        let r = Refusals::default();
        let (_, line) = r.note(Refusal::BodyTooLarge, &limits).unwrap();
        assert_eq!(
            line,
            "Refused 1 request(s) with 413 since the last report: request body over \
             --limit-request-body (10 bytes)"
        );
        assert!(r.note(Refusal::BodyTooLarge, &limits).is_none());
        assert!(r.note(Refusal::BodyTooLarge, &limits).is_none());
        // Another kind has its own second.
        assert!(r.note(Refusal::LineTooLong, &limits).is_some());
        r.throttles[Refusal::BodyTooLarge.index()].make_due();
        let (_, line) = r.note(Refusal::BodyTooLarge, &limits).unwrap();
        assert!(line.starts_with("Refused 3 request(s) with 413"), "{line}");
    }
}
