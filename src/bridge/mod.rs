//! The bridge: the only way work crosses between the engine's threads and the Python loop
//! thread, and the only module that takes or releases the GIL.
//!
//! Engine -> loop: events go into one mutex-guarded `Vec`; the loop thread is rung (an
//! eventfd watched by `loop.add_reader`) only if it said it was going to sleep. While events
//! keep arriving the loop polls the queue again with `call_soon` instead of sleeping, so a
//! busy server rings the doorbell rarely and drains many events per GIL hold.
//!
//! WSGI mode: requests and wakes go to the WSGI threads' pool (`crate::wsgi::pool`) instead;
//! the loop thread then only sees log lines.
//!
//! Loop -> engine: the ASGI adapter writes into the request's `Exchange` and wakes the
//! engine task's waker; no GIL is involved on the engine side.
//!
//! Python objects are created and dropped on the loop thread only.

mod assist;
mod engine_config;
mod gather;
pub mod processes;
mod server;
mod tasks;
mod wake;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::handoff::{AppWaker, Dispatcher, IncomingRequest, IncomingWebSocket, LogLevel};
use crate::wsgi::pool::WsgiPool;

pub use processes::supervise;
pub use server::Server;

/// Seconds from Python as a `Duration`; `what` names the option in the error.
fn seconds(v: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        PyValueError::new_err(format!("{what} must be a non-negative number of seconds"))
    })
}

/// Requests (and WebSocket sessions) the loop starts per iteration. A burst of thousands of
/// connections would otherwise start every app in one callback, and the streams already
/// running would wait for the whole burst for their next timer or wakeup; bounded, the loop
/// runs the others' timers and steps between slices of the burst. 64 rather than 512:
/// slow-100ms (1,000 connections whose requests come in waves) had the loop's timers late
/// by 2.3-3.3 ms at p90 and its p50 3 ms over Granian's with 512 (a timer probe in the
/// app), 1.3-1.6 ms and 103.4-105.0 ms with 64; hello measured the same (its 100
/// connections' requests then take two iterations at most).
pub(crate) const MAX_STARTS_PER_BATCH: usize = 64;

/// A request queued behind this many events gets its header values copied out of the
/// connection's read buffer (`handoff::detach`) before it waits.
const DETACH_WHEN_WAITING: usize = MAX_STARTS_PER_BATCH;

/// Work for the loop thread.
pub enum Event {
    Request(Box<IncomingRequest>),
    WebSocket(Box<IncomingWebSocket>),
    /// Something the app waits on changed for this exchange.
    Wake(u64),
    Log(LogLevel, String),
}

/// The queue the engine pushes into and the loop thread drains.
pub struct EventQueue {
    events: Mutex<Vec<Event>>,
    /// Local mode only: engine wakers from the app side, run at the start of the next turn.
    deferred_wakes: Mutex<Vec<Waker>>,
    /// Local mode only: a turn is already due (one remote wake made the engine fd readable).
    turn_due: AtomicBool,
    local: AtomicBool,
    /// Local mode only: mid-body chunks of busy streams, held to leave in fewer writes.
    gather: Option<gather::Gather>,
    /// Mid-body chunks that woke (or would have woken) the engine, for the assist policy.
    chunk_wakes: AtomicU64,
    /// The doorbell was rung since the loop last cleared it.
    rang: AtomicBool,
    /// Set by the loop thread just before it sleeps on the doorbell.
    sleeping: AtomicBool,
    doorbell: wake::Doorbell,
    /// WSGI mode: requests and their wakes go to the WSGI threads, not the loop.
    wsgi: OnceLock<Arc<WsgiPool>>,
    /// Events the loop took but left for a later iteration (`MAX_STARTS_PER_BATCH`).
    backlog: AtomicUsize,
}

impl EventQueue {
    pub fn new() -> std::io::Result<Self> {
        Ok(EventQueue {
            events: Mutex::new(Vec::with_capacity(256)),
            deferred_wakes: Mutex::new(Vec::new()),
            turn_due: AtomicBool::new(false),
            local: AtomicBool::new(false),
            gather: gather::Gather::new(),
            chunk_wakes: AtomicU64::new(0),
            rang: AtomicBool::new(false),
            sleeping: AtomicBool::new(true),
            doorbell: wake::Doorbell::new()?,
            wsgi: OnceLock::new(),
            backlog: AtomicUsize::new(0),
        })
    }

    /// Local mode: the loop thread itself produces the events, so it never sleeps on us, and
    /// engine wakes from the app can wait for the next turn.
    fn set_local(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        self.turn_due.store(false, Ordering::SeqCst);
        self.local.store(true, Ordering::SeqCst);
    }

    /// Local mode handed to the assistant thread: wakes go straight to the engine again and
    /// the loop drains the queue as in threaded mode (it is awake now). Returns the wakes
    /// deferred or held so far, for the caller to wake.
    fn set_assisted(&self) -> Vec<Waker> {
        self.local.store(false, Ordering::SeqCst);
        self.sleeping.store(false, Ordering::SeqCst);
        let mut wakes = self.take_deferred_wakes();
        if let Some(gather) = &self.gather {
            gather.release_all(&mut wakes);
        }
        wakes
    }

    /// The engine wakes deferred to the next turn (local mode).
    fn take_deferred_wakes(&self) -> Vec<Waker> {
        std::mem::take(
            &mut *self
                .deferred_wakes
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Mid-body chunk wakes so far.
    fn chunk_wakes(&self) -> u64 {
        self.chunk_wakes.load(Ordering::Relaxed)
    }

    /// Clears the doorbell if it was rung (local mode watches it beside the engine).
    fn clear_doorbell_if_rung(&self) {
        if self.rang.swap(false, Ordering::SeqCst) {
            self.doorbell.clear();
        }
    }

    /// Local mode: a turn begins; hands over the wakes deferred since the last one.
    fn begin_turn(&self) -> Vec<Waker> {
        self.turn_due.store(false, Ordering::SeqCst);
        let mut wakes = self.take_deferred_wakes();
        if let Some(gather) = &self.gather {
            gather.release_due(&mut wakes);
        }
        wakes
    }

    /// Local mode: the fd that must wake the loop when held chunks are due.
    fn gather_fd(&self) -> Option<std::os::fd::RawFd> {
        self.gather.as_ref().map(gather::Gather::fileno)
    }

    /// WSGI mode: set before the engine starts.
    fn route_to_wsgi(&self, pool: Arc<WsgiPool>) {
        let _ = self.wsgi.set(pool);
    }

    fn push(&self, event: Event) {
        self.push_with(|_| event);
    }

    /// Pushes the event `make` returns, given how many events wait before it.
    fn push_with(&self, make: impl FnOnce(usize) -> Event) {
        {
            let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            let waiting = events.len() + self.backlog.load(Ordering::Relaxed);
            events.push(make(waiting));
        }
        // Pushed before the check: if the loop set `sleeping` after our push, it re-checks
        // the queue and finds the event; if before, we see the flag and ring.
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.rang.store(true, Ordering::SeqCst);
            self.doorbell.ring();
        }
    }

    /// The loop side says how many events it holds back for later iterations.
    fn set_backlog(&self, events: usize) {
        self.backlog.store(events, Ordering::Relaxed);
    }

    /// Swaps the pending events into `batch` (which must be empty).
    fn take(&self, batch: &mut Vec<Event>) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *events, batch);
    }

    /// Appends the pending events to `batch`.
    fn take_into(&self, batch: &mut Vec<Event>) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        batch.append(&mut events);
    }

    /// Loop side: take what is there; if nothing, declare sleep and check once more so that
    /// an event pushed in between is not left waiting for a ring that never comes.
    fn take_or_sleep(&self, batch: &mut Vec<Event>) {
        self.take(batch);
        if batch.is_empty() {
            self.sleeping.store(true, Ordering::SeqCst);
            self.take(batch);
            if !batch.is_empty() {
                // Awake after all; a ring that raced with us only causes one empty wakeup.
                self.sleeping.store(false, Ordering::SeqCst);
            }
        }
    }
}

impl AppWaker for EventQueue {
    fn wake_app(&self, exchange_id: u64) {
        if let Some(pool) = self.wsgi.get() {
            return pool.wake(exchange_id);
        }
        self.push(Event::Wake(exchange_id));
    }

    /// In local mode the first wake after a turn goes through tokio (one eventfd write that
    /// makes the engine fd readable, so a turn follows); the rest of the batch waits for
    /// that turn and is woken inside it, without a syscall each.
    fn wake_engine(&self, waker: Waker) {
        if !self.local.load(Ordering::Relaxed) || !self.turn_due.swap(true, Ordering::SeqCst) {
            waker.wake();
        } else {
            self.deferred_wakes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(waker);
        }
    }

    fn wake_engine_soon(&self, waker: Waker) {
        self.chunk_wakes.fetch_add(1, Ordering::Relaxed);
        let waker = match &self.gather {
            Some(gather) if self.local.load(Ordering::Relaxed) => gather.hold(waker),
            _ => Some(waker),
        };
        if let Some(waker) = waker {
            self.wake_engine(waker);
        }
    }
}

impl Dispatcher for EventQueue {
    fn dispatch(&self, request: IncomingRequest) {
        if let Some(pool) = self.wsgi.get() {
            return pool.submit(request);
        }
        self.push_with(|waiting| {
            let mut request = request;
            if waiting >= DETACH_WHEN_WAITING {
                // It will wait a while: its head must not hold the connection's read buffer
                // meanwhile (hyper would allocate another for its next read).
                crate::handoff::detach::header_values(&mut request.head.headers);
            }
            Event::Request(Box::new(request))
        });
    }

    fn dispatch_websocket(&self, websocket: IncomingWebSocket) {
        self.push(Event::WebSocket(Box::new(websocket)));
    }

    fn log(&self, level: LogLevel, message: String) {
        self.push(Event::Log(level, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_only_when_loop_sleeps() {
        let q = EventQueue::new().unwrap();
        let mut batch = Vec::new();
        // Initially asleep: the first push rings, the second does not.
        q.push(Event::Wake(1));
        assert!(!q.sleeping.load(Ordering::SeqCst));
        q.push(Event::Wake(2));
        q.take_or_sleep(&mut batch);
        assert_eq!(batch.len(), 2);
        batch.clear();
        // Nothing left: the loop declares sleep, and the next push rings again.
        q.take_or_sleep(&mut batch);
        assert!(batch.is_empty());
        assert!(q.sleeping.load(Ordering::SeqCst));
        q.push(Event::Wake(3));
        assert!(!q.sleeping.load(Ordering::SeqCst));
    }
}
