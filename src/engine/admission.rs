//! Admission control: how many requests may be inside the app at once, and what waits.
//!
//! Requests are counted, never connections, so idle keep-alive connections cost nothing
//! (`--limit-concurrency`). Past the limit up to `--limit-queue` requests wait first in first
//! out (tokio's semaphore is fair) for as long as `--timeout-queue` allows; the rest are
//! answered 503 with `Retry-After` at once, without calling the app. Rejections are logged
//! at most once a second, with a count, so an overload does not become a log flood.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::refusals::Throttle;

/// Why a request was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The limit is reached and the queue is full (or there is no queue).
    Limit,
    /// The request waited in the queue longer than `--timeout-queue`.
    QueueTimeout,
}

#[derive(Clone, Debug, Default)]
pub struct AdmissionConfig {
    pub limit: Option<usize>,
    pub queue: usize,
    pub queue_timeout: Option<Duration>,
}

pub(super) struct Admission {
    slots: Option<Arc<Semaphore>>,
    config: AdmissionConfig,
    queued: AtomicUsize,
    reports: Throttle,
}

/// Leaves the queue when dropped, also when the client goes away while waiting.
struct QueueSeat<'a>(&'a AtomicUsize);

impl Drop for QueueSeat<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub(super) fn new(config: AdmissionConfig) -> Self {
        Admission {
            slots: config.limit.map(|n| Arc::new(Semaphore::new(n))),
            config,
            queued: AtomicUsize::new(0),
            reports: Throttle::default(),
        }
    }

    /// A slot for one request (`None` when there is no limit), or why there is none.
    pub(super) async fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Rejection> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.config.queue {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Rejection::Limit);
        }
        let _seat = QueueSeat(&self.queued);
        let wait = slots.clone().acquire_owned();
        let permit = match self.config.queue_timeout {
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .map_err(|_| Rejection::QueueTimeout)?,
            None => wait.await,
        };
        // The semaphore is never closed, so acquiring cannot fail.
        Ok(permit.ok())
    }

    /// Counts a rejection; returns a log line at most once a second.
    pub(super) fn note_rejection(&self, why: Rejection) -> Option<String> {
        let count = self.reports.note()?;
        let cause = match why {
            Rejection::Limit => format!(
                "{} requests in flight and {} queued",
                self.config.limit.unwrap_or(0),
                self.config.queue
            ),
            Rejection::QueueTimeout => "requests waited too long in the queue".to_string(),
        };
        Some(format!(
            "Overloaded: answered 503 to {count} request(s) since the last report ({cause}); \
             raise --limit-concurrency or --limit-queue, or add workers"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(limit: usize, queue: usize, timeout_ms: Option<u64>) -> Admission {
        Admission::new(AdmissionConfig {
            limit: Some(limit),
            queue,
            queue_timeout: timeout_ms.map(Duration::from_millis),
        })
    }

    #[tokio::test]
    async fn no_limit_admits_everything() {
        let a = Admission::new(AdmissionConfig::default());
        assert!(matches!(a.admit().await, Ok(None)));
    }

    #[tokio::test]
    async fn past_the_limit_without_queue_is_rejected() {
        let a = admission(1, 0, None);
        let held = a.admit().await.unwrap();
        assert!(held.is_some());
        assert_eq!(a.admit().await.unwrap_err(), Rejection::Limit);
        drop(held);
        assert!(a.admit().await.unwrap().is_some());
    }

    #[tokio::test]
    async fn queued_request_gets_the_freed_slot_or_times_out() {
        let a = Arc::new(admission(1, 1, Some(200)));
        let held = a.admit().await.unwrap();
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.admit().await.map(|p| p.is_some()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The queue (1) is full now: the next one is turned away at once.
        assert_eq!(a.admit().await.unwrap_err(), Rejection::Limit);
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(true));

        let _held = a.admit().await.unwrap();
        assert_eq!(a.admit().await.unwrap_err(), Rejection::QueueTimeout);
    }

    #[test]
    fn rejections_are_reported_once_a_second_with_a_count() {
        let a = admission(1, 0, None);
        assert!(a
            .note_rejection(Rejection::Limit)
            .unwrap()
            .contains("503 to 1 request"));
        assert!(a.note_rejection(Rejection::Limit).is_none());
        assert!(a.note_rejection(Rejection::Limit).is_none());
        a.reports.make_due();
        let line = a.note_rejection(Rejection::Limit).unwrap();
        assert!(line.contains("503 to 3 request"), "{line}");
    }
}
