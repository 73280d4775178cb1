//! Gathering the chunks of busy streams into fewer writes, when the engine runs on the loop
//! thread.
//!
//! An app that awaits anything between two sends (every token stream) pushes one chunk per
//! loop iteration. Written as they come, each chunk is a `write(2)` and a wakeup of the
//! client: on `stream-10-yield` (ten chunks, the app yielding between them) the kernel's send
//! path was 55% of the worker's CPU. So while many mid-body chunks arrive (`BUSY` in a
//! `WINDOW`), the engine wakers of mid-body chunks are held for up to `HOLD`, and what a
//! stream sends in that time leaves in one write. A chunk that ends its body or fills the
//! buffer is never held, nor is anything while few streams send: a quiet server adds no delay,
//! a busy one at most `HOLD` per chunk, less than one iteration of its loop takes then.
//!
//! Owns the held wakers and the alarm that makes the loop turn when they are due. Must not
//! hold a waker past `HOLD`, nor wake anything itself: the turn does, inside the runtime.

use std::sync::Mutex;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::wake::Alarm;

/// Longest a mid-body chunk waits for the ones after it.
const HOLD: Duration = Duration::from_millis(1);
/// How often the rate of mid-body chunks is looked at ...
const WINDOW: Duration = Duration::from_millis(10);
/// ... and how many make streams busy (10,000 a second).
const BUSY: u32 = 100;

pub(super) struct Gather {
    state: Mutex<State>,
    alarm: Alarm,
}

struct State {
    held: Vec<Waker>,
    /// When the oldest held waker was held.
    held_since: Option<Instant>,
    /// The alarm is set (or has fired and was not yet cleared).
    armed: bool,
    /// Mid-body chunk wakes since `window_start`.
    count: u32,
    window_start: Instant,
    busy: bool,
}

impl Gather {
    /// `None` where there is no alarm to wake the loop (not Linux): nothing is ever held.
    pub(super) fn new() -> Option<Gather> {
        Some(Gather {
            state: Mutex::new(State {
                held: Vec::new(),
                held_since: None,
                armed: false,
                count: 0,
                window_start: Instant::now(),
                busy: false,
            }),
            alarm: Alarm::new()?,
        })
    }

    /// The fd the engine's poll fd must include: readable when held wakers are due.
    pub(super) fn fileno(&self) -> std::os::fd::RawFd {
        self.alarm.fileno()
    }

    /// App side, a mid-body chunk: holds the engine's waker while streams are busy, else
    /// gives it back for the usual wake.
    pub(super) fn hold(&self, waker: Waker) -> Option<Waker> {
        let mut s = self.lock();
        s.count += 1;
        if !s.busy {
            return Some(waker);
        }
        if s.held.is_empty() {
            s.held_since = Some(Instant::now());
            if !s.armed {
                s.armed = true;
                self.alarm.set(HOLD);
            }
        }
        s.held.push(waker);
        None
    }

    /// Turn side: moves the held wakers that are due (or all, once streams are no longer
    /// busy) into `wakes`, and decides whether streams are busy for the next window.
    pub(super) fn release_due(&self, wakes: &mut Vec<Waker>) {
        let now = Instant::now();
        let mut s = self.lock();
        if now.duration_since(s.window_start) >= WINDOW {
            s.busy = s.count >= BUSY;
            s.count = 0;
            s.window_start = now;
        }
        if let Some(since) = s.held_since {
            if !s.busy || now.duration_since(since) >= HOLD {
                self.hand_over(&mut s, wakes);
            }
        }
    }

    /// Hands over every held waker now (the engine is leaving the loop thread).
    pub(super) fn release_all(&self, wakes: &mut Vec<Waker>) {
        self.hand_over(&mut self.lock(), wakes);
    }

    /// Moves every held waker into `wakes`; the alarm is set exactly while some are held.
    fn hand_over(&self, s: &mut State, wakes: &mut Vec<Waker>) {
        wakes.append(&mut s.held);
        s.held_since = None;
        if s.armed {
            // Disarmed, not just read: a timer still pending would make a turn for nothing.
            s.armed = false;
            self.alarm.disarm();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> Waker {
        Waker::from(Arc::new(Count(AtomicUsize::new(0))))
    }

    /// Makes the next `release_due` start a window that is busy (or not).
    fn set_busy(g: &Gather, busy: bool) {
        let mut s = g.lock();
        s.count = if busy { BUSY } else { 0 };
        s.window_start = Instant::now() - WINDOW;
    }

    #[test]
    fn quiet_streams_are_never_held() {
        let g = Gather::new().unwrap();
        assert!(g.hold(waker()).is_some());
        let mut wakes = Vec::new();
        g.release_due(&mut wakes);
        assert!(wakes.is_empty());
    }

    #[test]
    fn busy_streams_are_held_until_due() {
        let g = Gather::new().unwrap();
        set_busy(&g, true);
        let mut wakes = Vec::new();
        g.release_due(&mut wakes);
        assert!(g.hold(waker()).is_none());
        assert!(g.hold(waker()).is_none());
        // A turn before the hold is over keeps them.
        g.release_due(&mut wakes);
        assert!(wakes.is_empty());
        std::thread::sleep(HOLD * 2);
        g.release_due(&mut wakes);
        assert_eq!(wakes.len(), 2);
        assert!(!g.lock().armed);
    }

    #[test]
    fn held_wakers_go_when_streams_calm_down() {
        let g = Gather::new().unwrap();
        set_busy(&g, true);
        let mut wakes = Vec::new();
        g.release_due(&mut wakes);
        assert!(g.hold(waker()).is_none());
        set_busy(&g, false);
        g.release_due(&mut wakes);
        assert_eq!(wakes.len(), 1);
        assert!(!g.lock().armed);
    }
}
