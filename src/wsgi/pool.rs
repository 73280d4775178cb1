//! The WSGI request pool: requests the engine hands over, the Python threads that take them,
//! and how a thread blocked on its exchange is woken.
//!
//! The engine's dispatcher calls [`WsgiPool::submit`]; each WSGI thread loops on
//! [`WsgiPool::next`] (with the GIL released). While a thread serves a request it is
//! registered under the exchange's id, so the engine's `wake_app(id)` (body arrived, buffer
//! drained, client gone) unparks exactly that thread. Registration also carries the start
//! time, which `--timeout-request` reads ([`WsgiPool::expire`]).
//!
//! Holds no Python objects and never takes the GIL; every lock here is short.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::handoff::access_record::RequestFields;
use crate::handoff::exchange::Response;
use crate::handoff::{Exchange, IncomingRequest};

/// How long a parked thread sleeps before it looks at its exchange again even without a
/// wake: a safety net only (every state change it waits for wakes it).
const PARK_SLICE: Duration = Duration::from_secs(1);

/// Who answers a request: the app (its response started) or the deadline (504).
#[derive(Default)]
pub struct Claim(AtomicU8);

const UNCLAIMED: u8 = 0;
const BY_APP: u8 = 1;
const BY_DEADLINE: u8 = 2;

impl Claim {
    /// The app's response starts; false when the deadline answered first.
    pub fn take_for_app(&self) -> bool {
        match self
            .0
            .compare_exchange(UNCLAIMED, BY_APP, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(now) => now == BY_APP,
        }
    }

    fn take_for_deadline(&self) -> bool {
        self.0
            .compare_exchange(UNCLAIMED, BY_DEADLINE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn lost_to_deadline(&self) -> bool {
        self.0.load(Ordering::Acquire) == BY_DEADLINE
    }
}

/// "METHOD /path?query" of a request, for its log lines: kept as the parts (cheap to clone)
/// and only formatted when a line needs it, which few requests do.
#[derive(Clone)]
pub struct RequestLabel {
    method: http::Method,
    uri: http::Uri,
}

impl RequestLabel {
    pub fn of(req: &IncomingRequest) -> Self {
        RequestLabel {
            method: req.head.method.clone(),
            uri: req.head.uri.clone(),
        }
    }
}

impl std::fmt::Display for RequestLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.uri)
    }
}

struct Running {
    thread: Thread,
    started: Instant,
    claim: Arc<Claim>,
    exchange: Arc<Exchange>,
    label: RequestLabel,
    /// For the fields of the warning about a deadline.
    fields: RequestFields,
    expired: bool,
}

#[derive(Default)]
struct Queue {
    requests: VecDeque<IncomingRequest>,
    closed: bool,
    /// Threads asleep in `next`: a submit wakes one only when there is one (a futex call
    /// saved per request while every thread is busy).
    sleepers: usize,
}

#[derive(Default)]
pub struct WsgiPool {
    queue: Mutex<Queue>,
    ready: Condvar,
    running: Mutex<HashMap<u64, Running>>,
}

/// Makes the calling WSGI thread one that does not preempt a running thread when it wakes
/// (Linux `SCHED_BATCH`; it keeps its fair share of the CPU). A thread woken for a request or
/// for the GIL would otherwise take the core from the engine thread or from the thread that
/// holds the GIL, and be taken from again a moment later: measured on wsgi-hello (8 threads,
/// wrk -c100), 0.97 context switches per request against 1.84, 18-23 us of CPU per request
/// against 27-35. Best effort: a refusal changes nothing but speed.
pub fn yield_to_running_threads() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: changes only the calling thread's scheduling policy (pid 0), with a valid
        // parameter; SCHED_BATCH needs no privilege.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        }
    }
}

/// A deadline passed: what happened to the request, for the warning.
pub struct Expired {
    pub label: RequestLabel,
    pub fields: RequestFields,
    /// True: it got a 504; false: its response had started, so the connection was cut.
    pub answered: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent across a panic (plain pushes and removes).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WsgiPool {
    /// The engine hands over a request (engine thread).
    pub fn submit(&self, request: IncomingRequest) {
        let mut q = lock(&self.queue);
        if q.closed {
            drop(q);
            request
                .exchange
                .respond(Response::service_unavailable(), true);
            return;
        }
        q.requests.push_back(request);
        let sleeper = q.sleepers > 0;
        drop(q);
        if sleeper {
            self.ready.notify_one();
        }
    }

    /// The next request, waiting for one; `None` once the pool is closed (call without the
    /// GIL).
    pub fn next(&self) -> Option<IncomingRequest> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(r) = q.requests.pop_front() {
                return Some(r);
            }
            if q.closed {
                return None;
            }
            q.sleepers += 1;
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            q.sleepers -= 1;
        }
    }

    /// A queued request, if one is there (a thread that just finished takes it before it
    /// gives up the GIL).
    pub fn try_next(&self) -> Option<IncomingRequest> {
        lock(&self.queue).requests.pop_front()
    }

    /// No more requests: the threads return from `next` once the queue is empty; requests
    /// still queued are answered 503.
    pub fn close(&self) {
        let left: Vec<_> = {
            let mut q = lock(&self.queue);
            q.closed = true;
            q.requests.drain(..).collect()
        };
        for r in left {
            r.exchange.respond(Response::service_unavailable(), true);
        }
        self.ready.notify_all();
    }

    /// The calling thread starts serving `exchange`: it is woken for it from now on.
    pub fn begin(
        &self,
        exchange: &Arc<Exchange>,
        label: RequestLabel,
        fields: RequestFields,
    ) -> Arc<Claim> {
        let claim = Arc::new(Claim::default());
        lock(&self.running).insert(
            exchange.id,
            Running {
                thread: std::thread::current(),
                started: Instant::now(),
                claim: claim.clone(),
                exchange: exchange.clone(),
                label,
                fields,
                expired: false,
            },
        );
        claim
    }

    pub fn end(&self, id: u64) {
        lock(&self.running).remove(&id);
    }

    /// The engine changed something the thread serving `id` may wait on.
    pub fn wake(&self, id: u64) {
        if let Some(r) = lock(&self.running).get(&id) {
            r.thread.unpark();
        }
    }

    /// Blocks the calling thread (without the GIL) until `ready` gives a value. `ready` must
    /// register the thread as waiting on its exchange before it returns `None`, so that the
    /// engine's wake cannot fall between the check and the park (an unpark before the park
    /// makes the park return at once).
    pub fn wait_for<T>(mut ready: impl FnMut() -> Option<T>) -> T {
        loop {
            if let Some(v) = ready() {
                return v;
            }
            std::thread::park_timeout(PARK_SLICE);
        }
    }

    /// Requests running longer than `timeout` get a 504 (if their response has not started)
    /// or have their connection cut; each is reported once. The thread serving it cannot
    /// be stopped: it goes on, and what it sends is dropped.
    pub fn expire(&self, timeout: Duration) -> Vec<Expired> {
        let now = Instant::now();
        let mut expired = Vec::new();
        for r in lock(&self.running).values_mut() {
            if r.expired || now.duration_since(r.started) < timeout {
                continue;
            }
            r.expired = true;
            let answered = r.claim.take_for_deadline();
            if answered {
                r.exchange.respond(Response::gateway_timeout(), true);
            } else {
                r.exchange.abort();
            }
            r.thread.unpark();
            expired.push(Expired {
                label: r.label.clone(),
                fields: r.fields.clone(),
                answered,
            });
        }
        expired
    }

    pub fn running(&self) -> usize {
        lock(&self.running).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_and_the_app_claim_once() {
        let c = Claim::default();
        assert!(c.take_for_app());
        assert!(
            c.take_for_app(),
            "the app may start again (write after write)"
        );
        assert!(!c.take_for_deadline());
        let c = Claim::default();
        assert!(c.take_for_deadline());
        assert!(!c.take_for_app());
        assert!(c.lost_to_deadline());
    }

    #[test]
    fn closed_pool_releases_waiting_threads() {
        let pool = Arc::new(WsgiPool::default());
        let p = pool.clone();
        let t = std::thread::spawn(move || p.next().is_none());
        std::thread::sleep(Duration::from_millis(20));
        pool.close();
        assert!(t.join().unwrap());
    }

    #[test]
    fn an_unpark_before_the_park_is_not_lost() {
        let mut calls = 0;
        std::thread::current().unpark();
        let started = Instant::now();
        let v = WsgiPool::wait_for(|| {
            calls += 1;
            (calls == 2).then_some(7)
        });
        assert_eq!(v, 7);
        assert!(started.elapsed() < PARK_SLICE / 2);
    }
}
