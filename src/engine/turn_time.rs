//! Time left in the engine's turn on the loop thread, for steps that cost milliseconds of CPU.
//!
//! On the loop thread a turn of the engine runs every ready task, and the turn's 10 ms bound
//! (`runtime::MAX_TURN_TIME`) is checked only between rounds of them. Most tasks take
//! microseconds, but a TLS handshake takes about a millisecond with an RSA key: hundreds of
//! ClientHellos that arrive together (clients reconnecting after a restart) made one round,
//! and the app's event loop stood still for a third of a second. So a handshake first waits
//! here for a turn with time left; the ones that find none wait for the next turn, which
//! the turn asks for at once (the loop runs one iteration in between).
//!
//! Owns only that deadline and who waits for it. With engine threads, or while the assistant
//! thread drives the engine, no loop thread waits on it and the time is unlimited.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::Instant;

pub(super) struct TurnTime {
    origin: Instant,
    /// Nanoseconds after `origin` past which no heavy step starts; `u64::MAX` while no loop
    /// thread waits on the engine.
    until: AtomicU64,
    waiting: Mutex<Vec<Waker>>,
}

impl TurnTime {
    pub(super) fn unlimited() -> Self {
        TurnTime {
            origin: Instant::now(),
            until: AtomicU64::new(u64::MAX),
            waiting: Mutex::new(Vec::new()),
        }
    }

    /// A turn on the loop thread begins: heavy steps may start until `until`.
    pub(super) fn begin_turn(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.origin).as_nanos();
        self.until.store(
            u64::try_from(nanos).unwrap_or(u64::MAX - 1),
            Ordering::SeqCst,
        );
        self.wake_waiting();
    }

    /// No loop thread waits on the engine any more (the assistant drives it).
    pub(super) fn lift(&self) {
        self.until.store(u64::MAX, Ordering::SeqCst);
        self.wake_waiting();
    }

    /// Whether a heavy step waits for the next turn.
    pub(super) fn has_waiting(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Returns once the current turn has time left (at once, when the time is unlimited).
    pub(super) async fn wait(&self) {
        poll_fn(|cx| {
            if self.time_left() {
                return Poll::Ready(());
            }
            self.lock().push(cx.waker().clone());
            // `lift` may have run between the check and the push (from the loop thread,
            // while this task runs on the assistant's).
            if self.time_left() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn time_left(&self) -> bool {
        let until = self.until.load(Ordering::SeqCst);
        until == u64::MAX || (self.origin.elapsed().as_nanos() as u64) < until
    }

    fn wake_waiting(&self) {
        let waiting = std::mem::take(&mut *self.lock());
        waiting.into_iter().for_each(Waker::wake);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        // A panic while holding it leaves only wakers behind: still usable.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unlimited_until_a_turn_begins_and_again_once_lifted() {
        let time = TurnTime::unlimited();
        assert!(time.time_left());
        time.begin_turn(Instant::now() - Duration::from_millis(1));
        assert!(!time.time_left());
        time.begin_turn(Instant::now() + Duration::from_secs(60));
        assert!(time.time_left());
        time.begin_turn(Instant::now() - Duration::from_millis(1));
        time.lift();
        assert!(time.time_left());
    }

    #[test]
    fn a_step_past_the_deadline_waits_for_the_next_turn() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let time = std::sync::Arc::new(TurnTime::unlimited());
        time.begin_turn(Instant::now() - Duration::from_millis(1));
        let waiter = time.clone();
        let task = rt.spawn(async move { waiter.wait().await });
        rt.block_on(tokio::task::yield_now());
        assert!(time.has_waiting() && !task.is_finished());
        time.begin_turn(Instant::now() + Duration::from_secs(60));
        assert!(!time.has_waiting());
        rt.block_on(task).unwrap();
    }
}
