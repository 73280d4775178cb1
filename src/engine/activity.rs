//! What a connection's timeout watchdog reads: when its last response ended, when the next
//! head began, whether a write is stalled, how many requests are being served, and the
//! requests to end it (a response that broke its framing, a stalled head that gets 408).
//!
//! Owns the rules of `close_at` (nginx's: header read, keep-alive idle, a stalled reader,
//! the drain grace). Must not: touch the socket or hyper (the connection loop in `conn` acts
//! on what this says). All state is atomics: it is written on every read and write.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

/// The shortest period at which the watchdog looks at a connection again: a zero keep-alive
/// timeout must not make it spin.
pub(super) const MIN_CHECK: Duration = Duration::from_millis(50);

/// Activity of one connection, read by its timeout watchdog.
///
/// The watchdog applies nginx's rules: a new connection must deliver a complete request
/// head within the header-read timeout; after a response the connection may idle for the
/// keep-alive timeout; once the first byte of the next head arrives, the header-read timeout
/// runs again from that byte. A response still being written counts as activity, not as
/// idle time: hyper finishes writing after it has let go of the body, and a slow reader of a
/// large answer must not have it cut by the keep-alive timeout. A client that takes none of
/// the bytes for the header-read timeout is given up on.
pub(super) struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` + 1 when the last response ended (0: none yet).
    idle_since_ms: AtomicU64,
    /// Milliseconds since `epoch` + 1 of the first byte read while idle (0: none).
    head_started_ms: AtomicU64,
    /// Milliseconds since `epoch` + 1 since when a write has been waiting for the client to
    /// take bytes (0: writes are not blocked).
    write_stalled_ms: AtomicU64,
    /// Requests being served on this connection right now.
    pub(super) busy: AtomicUsize,
    /// A response broke its framing after its head went out: end the connection after it,
    /// and answer no request that was pipelined behind it.
    close_requested: tokio::sync::Notify,
    closing: AtomicBool,
    /// A request head stalled past the header-read timeout: the next read answers 408.
    head_timed_out: AtomicBool,
    /// HTTP/2: bytes read between requests are frames (PING, SETTINGS, WINDOW_UPDATE), not
    /// the start of a head, so they do not turn idle time into header-read time.
    frames: bool,
    /// Response bytes the client has taken, and how many writes found its socket full: what
    /// the slow-reader rule (`SendWindow`) measures.
    written: AtomicU64,
    write_blocks: AtomicU64,
}

/// A connection as its watchdog sees it.
#[derive(Debug, PartialEq)]
pub(super) enum Watch {
    /// A request is being served: no deadline.
    Busy,
    /// A request head is awaited since this instant (the connection's start, or the first
    /// byte of the head).
    Head(Instant),
    /// Idle between requests since this instant.
    Idle(Instant),
    /// Response bytes are waiting for the client since this instant.
    Stalled(Instant),
}

impl Activity {
    pub(super) fn new() -> Self {
        Self::with_frames(false)
    }

    /// An HTTP/2 connection's activity (see `frames`).
    pub(super) fn http2() -> Self {
        Self::with_frames(true)
    }

    fn with_frames(frames: bool) -> Self {
        Activity {
            frames,
            epoch: Instant::now(),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            write_stalled_ms: AtomicU64::new(0),
            written: AtomicU64::new(0),
            write_blocks: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            close_requested: tokio::sync::Notify::new(),
            closing: AtomicBool::new(false),
            head_timed_out: AtomicBool::new(false),
        }
    }

    /// The response being written is the connection's last (see `Exchange::wants_close`).
    pub(super) fn close_after_response(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.close_requested.notify_one();
    }

    /// Resolves when a response asked for the connection to end after it.
    pub(super) fn close_requested(&self) -> tokio::sync::futures::Notified<'_> {
        self.close_requested.notified()
    }

    /// Marks a stalled head to be answered with 408; false if it already was.
    pub(super) fn time_out_head(&self) -> bool {
        !self.head_timed_out.swap(true, Ordering::Relaxed)
    }

    /// Whether the next read answers 408 instead of reading.
    pub(super) fn head_timed_out(&self) -> bool {
        self.head_timed_out.load(Ordering::Relaxed)
    }

    /// Whether the connection is ending after a response that broke its framing.
    pub(super) fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Whether part of a request head has arrived and the rest is awaited.
    pub(super) fn head_partly_read(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 && self.head_started_ms.load(Ordering::Relaxed) > 0
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Bytes arrived from the client.
    pub(super) fn bytes_read(&self) {
        if !self.frames
            && self.busy.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            self.head_started_ms
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// A write found the socket full.
    fn write_stalled(&self) {
        if self.write_stalled_ms.load(Ordering::Relaxed) == 0 {
            self.write_stalled_ms
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// A write went through. Cheap when nothing was stalled (the usual case).
    fn write_progressed(&self) {
        if self.write_stalled_ms.load(Ordering::Relaxed) != 0 {
            self.write_stalled_ms.store(0, Ordering::Relaxed);
            if self.busy.load(Ordering::Relaxed) == 0 {
                // The answer was still going out: idle time starts now, not at its end.
                self.idle_since_ms
                    .store(self.now_ms() + 1, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn note_write(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Pending => {
                self.write_blocks.fetch_add(1, Ordering::Relaxed);
                self.write_stalled();
            }
            Poll::Ready(Ok(n)) => {
                self.written.fetch_add(*n as u64, Ordering::Relaxed);
                self.write_progressed();
            }
            Poll::Ready(Err(_)) => {}
        }
    }

    /// A request head was parsed and handed on.
    pub(super) fn request_started(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
    }

    /// A response (or the whole exchange) ended.
    pub(super) fn request_ended(&self) {
        self.idle_since_ms
            .store(self.now_ms() + 1, Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn watch(&self) -> Watch {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Watch::Busy;
        }
        let at = |ms: u64| self.epoch + Duration::from_millis(ms - 1);
        let stalled = self.write_stalled_ms.load(Ordering::Relaxed);
        let head = self.head_started_ms.load(Ordering::Relaxed);
        let idle = self.idle_since_ms.load(Ordering::Relaxed);
        if stalled > 0 {
            Watch::Stalled(at(stalled))
        } else if head > 0 {
            Watch::Head(at(head))
        } else if idle == 0 {
            Watch::Head(self.epoch)
        } else {
            Watch::Idle(at(idle))
        }
    }
}

/// The slow-reader rule (`--limit-min-send-rate` over `--timeout-slow-send`): a client whose
/// socket stays full, and that takes fewer than `floor` bytes a second over `grace`, is
/// dropped. It holds the response's buffer and the app's task (or thread) for as long as it
/// likes otherwise. Measured only while the client is behind (a write found its socket
/// full since the last check): a client that keeps up, however little it is sent, is never
/// measured.
#[derive(Default)]
pub(super) struct SendWindow {
    /// When the client fell behind, with the bytes written and blocked writes then.
    since: Option<(Instant, u64)>,
    blocks_seen: u64,
}

impl SendWindow {
    /// Called at each watchdog check: true when the client is to be dropped.
    pub(super) fn too_slow(
        &mut self,
        now: Instant,
        activity: &Activity,
        floor: u64,
        grace: Duration,
    ) -> bool {
        let written = activity.written.load(Ordering::Relaxed);
        let blocks = activity.write_blocks.load(Ordering::Relaxed);
        let blocked_now = activity.write_stalled_ms.load(Ordering::Relaxed) != 0;
        let behind = blocked_now || blocks != self.blocks_seen;
        self.blocks_seen = blocks;
        let Some((start, written_then)) = self.since else {
            if behind {
                self.since = Some((now, written));
            }
            return false;
        };
        if !behind {
            self.since = None; // it caught up
            return false;
        }
        let elapsed = now.duration_since(start);
        if elapsed < grace {
            return false;
        }
        let taken = written - written_then;
        if (taken as f64) < floor as f64 * elapsed.as_secs_f64() {
            return true;
        }
        // Fast enough over this window: measure the next one.
        self.since = Some((now, written));
        false
    }
}

/// Keeps a connection busy while held: an HTTP/2 stream that outlives its response (a
/// WebSocket over extended CONNECT) must not let the connection look idle.
pub(super) struct Busy(std::sync::Arc<Activity>);

impl Busy {
    pub(super) fn new(activity: std::sync::Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// When the watchdog closes a connection in state `watch`, or `None` (not while busy).
/// Draining (since `drain_started`) shortens the waits for a next request to `drain_grace`,
/// counted from when the connection became idle if that was later; an answer still being
/// written is left to finish.
pub(super) fn close_at(
    watch: Watch,
    keep_alive: Duration,
    header_read: Duration,
    drain: Option<(Instant, Duration)>,
) -> Option<Instant> {
    let graced = |at: Instant, since: Instant| match drain {
        Some((started, grace)) => at.min(since.max(started) + grace),
        None => at,
    };
    match watch {
        Watch::Busy => None,
        Watch::Stalled(since) => Some(since + header_read),
        Watch::Idle(since) => Some(graced(since + keep_alive, since)),
        Watch::Head(since) => Some(graced(since + header_read, since)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_behind_and_slower_than_the_floor_is_dropped_after_the_grace() {
        let a = Activity::new();
        let mut w = SendWindow::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let s = |secs| t0 + Duration::from_secs(secs);
        // Keeping up: never measured.
        a.note_write(&Poll::Ready(Ok(1000)));
        assert!(!w.too_slow(s(0), &a, 100, grace));
        assert!(!w.too_slow(s(20), &a, 100, grace));
        // Behind: 500 bytes in 10 s against a floor of 100 a second.
        a.note_write(&Poll::Pending);
        assert!(!w.too_slow(s(21), &a, 100, grace));
        a.note_write(&Poll::Ready(Ok(500)));
        a.note_write(&Poll::Pending);
        assert!(!w.too_slow(s(25), &a, 100, grace));
        a.note_write(&Poll::Pending);
        assert!(w.too_slow(s(31), &a, 100, grace));
    }

    #[test]
    fn a_client_that_catches_up_starts_over_and_a_fast_one_is_kept() {
        let a = Activity::new();
        let mut w = SendWindow::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let s = |secs| t0 + Duration::from_secs(secs);
        a.note_write(&Poll::Pending);
        assert!(!w.too_slow(s(0), &a, 100, grace));
        // It took everything: not behind at the next check.
        a.note_write(&Poll::Ready(Ok(10)));
        assert!(!w.too_slow(s(5), &a, 100, grace));
        a.note_write(&Poll::Pending);
        assert!(!w.too_slow(s(6), &a, 100, grace));
        // Behind for 11 s but at 2,000 bytes a second: kept.
        a.note_write(&Poll::Ready(Ok(22_000)));
        a.note_write(&Poll::Pending);
        assert!(!w.too_slow(s(17), &a, 100, grace));
    }

    const KA: Duration = Duration::from_secs(5);
    const HR: Duration = Duration::from_secs(30);

    fn deadline(a: &Activity) -> Option<Instant> {
        close_at(a.watch(), KA, HR, None)
    }

    #[test]
    fn fresh_connection_gets_the_header_read_timeout() {
        let a = Activity::new();
        assert_eq!(deadline(&a), Some(a.epoch + HR));
    }

    #[test]
    fn busy_connection_has_no_deadline() {
        let a = Activity::new();
        a.request_started();
        assert_eq!(deadline(&a), None);
        a.bytes_read();
        assert_eq!(
            deadline(&a),
            None,
            "pipelined bytes while busy start no clock"
        );
    }

    #[test]
    fn idle_after_a_response_gets_keep_alive_then_header_read_from_first_byte() {
        let a = Activity::new();
        a.request_started();
        a.request_ended();
        let idle = deadline(&a).unwrap();
        assert!(idle <= Instant::now() + KA && idle > Instant::now() + KA / 2);
        a.bytes_read();
        let head = deadline(&a).unwrap();
        assert!(
            head > Instant::now() + HR / 2,
            "a started head gets the header-read timeout"
        );
        a.request_started();
        assert_eq!(deadline(&a), None);
    }

    #[test]
    fn an_answer_still_being_written_is_not_idle_time() {
        let a = Activity::new();
        a.request_started();
        a.request_ended(); // hyper let go of the body; its bytes are still going out
        a.note_write(&Poll::Pending);
        let stalled = deadline(&a).unwrap();
        assert!(
            stalled > Instant::now() + HR / 2,
            "a stalled write gets the header-read timeout, not keep-alive"
        );
        a.note_write(&Poll::Ready(Ok(1000)));
        let idle = deadline(&a).unwrap();
        assert!(idle <= Instant::now() + KA && idle > Instant::now() + KA / 2);
        assert!(matches!(a.watch(), Watch::Idle(_)));
    }

    #[test]
    fn writes_that_never_stall_cost_no_clock_reads() {
        let a = Activity::new();
        a.request_started();
        a.request_ended();
        let before = a.idle_since_ms.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        a.note_write(&Poll::Ready(Ok(10)));
        assert_eq!(a.idle_since_ms.load(Ordering::Relaxed), before);
    }

    #[test]
    fn draining_shortens_idle_waits_from_when_they_began_but_not_a_stalled_answer() {
        let now = Instant::now();
        let grace = Duration::from_secs(1);
        let drain = Some((now, grace));
        // Idle since before the drain: the grace counts from the drain.
        let early = now - Duration::from_secs(2);
        assert_eq!(
            close_at(Watch::Idle(early), KA, HR, drain),
            Some(now + grace)
        );
        // Idle only since after the drain began: the grace counts from then.
        let later = now + Duration::from_secs(3);
        assert_eq!(
            close_at(Watch::Idle(later), KA, HR, drain),
            Some(later + grace)
        );
        // A fresh connection's head: the same grace.
        assert_eq!(close_at(Watch::Head(now), KA, HR, drain), Some(now + grace));
        // An answer the client is still taking is not cut by the drain.
        assert_eq!(close_at(Watch::Stalled(now), KA, HR, drain), Some(now + HR));
        assert_eq!(close_at(Watch::Busy, KA, HR, drain), None);
    }
}
