//! The WSGI request pool: requests the engine hands over, the Python threads that take them,
//! and how a thread blocked on its exchange is woken.
//!
//! The engine's dispatcher calls [`WsgiPool::submit`]; each WSGI thread takes queued requests
//! while it has the GIL ([`WsgiPool::try_next`]), and otherwise sleeps in
//! [`WsgiPool::wait_for_work`] (GIL released) until woken for one. While a thread serves a
//! request it is registered under the exchange's id, so the engine's `wake_app(id)` (body
//! arrived, buffer drained, client gone) unparks exactly that thread. Registration also
//! carries the start time, which `--timeout-request` reads ([`WsgiPool::expire`]).
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
    /// Threads asleep in `wait_for_work`.
    sleepers: usize,
    /// A sleeper has been notified and has not woken yet.
    notified: bool,
    /// Threads woken for queued work that have not taken it yet (most of that time they
    /// wait for the GIL). While one is on its way, the work queued is already someone's.
    coming: usize,
}

impl Queue {
    /// Whether to wake a sleeper for the work queued: only when nobody is already on the
    /// way to take it. A thread serving a request does not count: it may be blocked in the
    /// app (`time.sleep`, a database) for as long as the app likes.
    fn wants_a_thread(&self) -> bool {
        !self.requests.is_empty() && self.sleepers > 0 && !self.notified && self.coming == 0
    }
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
        self.wake_one_if_wanted(q);
    }

    fn wake_one_if_wanted(&self, mut q: MutexGuard<'_, Queue>) {
        if q.wants_a_thread() {
            q.notified = true;
            drop(q);
            self.ready.notify_one();
        }
    }

    /// Waits until a request is queued (call without the GIL), then counts the caller as on
    /// its way to it: the caller takes the GIL and then [`WsgiPool::take`]s. False once the
    /// pool is closed and empty.
    ///
    /// Why the GIL comes before the request: a thread that held a request while it waited
    /// for the GIL would keep it from the thread that has the GIL and is about to look for
    /// more work (measured on wsgi-hello: each request then changed threads and the GIL
    /// with it). A woken thread that finds the work gone goes back to sleep.
    pub fn wait_for_work(&self) -> bool {
        let mut q = lock(&self.queue);
        loop {
            if !q.requests.is_empty() {
                q.coming += 1;
                return true;
            }
            if q.closed {
                return false;
            }
            q.sleepers += 1;
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            q.sleepers -= 1;
            q.notified = false;
        }
    }

    /// A thread back from `wait_for_work`, now with the GIL, takes a request if one is
    /// left. With more queued it wakes another sleeper: the first request may block in the
    /// app, and a burst must not wait for it.
    pub fn take(&self) -> Option<IncomingRequest> {
        let mut q = lock(&self.queue);
        q.coming -= 1;
        let request = q.requests.pop_front();
        self.wake_one_if_wanted(q);
        request
    }

    /// A queued request, if one is there (a thread that just finished takes it before it
    /// gives up the GIL).
    pub fn try_next(&self) -> Option<IncomingRequest> {
        lock(&self.queue).requests.pop_front()
    }

    /// No more requests: the threads return from `wait_for_work` once the queue is empty;
    /// requests still queued are answered 503.
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
        let t = std::thread::spawn(move || !p.wait_for_work());
        std::thread::sleep(Duration::from_millis(20));
        pool.close();
        assert!(t.join().unwrap());
    }

    struct NoWaker;
    impl crate::handoff::AppWaker for NoWaker {
        fn wake_app(&self, _id: u64) {}
    }

    fn request(id: u64) -> IncomingRequest {
        let exchange = Exchange::new(id, Arc::new(NoWaker), Default::default(), 1024, 1024);
        let peer = crate::handoff::Peer::Unix;
        IncomingRequest {
            exchange: Arc::new(exchange),
            head: crate::handoff::RequestHead {
                method: http::Method::GET,
                uri: http::Uri::from_static("/"),
                version: http::Version::HTTP_11,
                headers: http::HeaderMap::new(),
                client: peer.clone(),
                server: peer,
                scheme: "http",
                tls: None,
                request_id: None,
            },
        }
    }

    /// A thread of the pool that takes one request and holds it (an app blocked in
    /// `time.sleep`) until `release` is dropped; reports the id it took.
    fn blocked_thread(
        pool: &Arc<WsgiPool>,
        took: std::sync::mpsc::Sender<u64>,
        release: Arc<std::sync::RwLock<()>>,
    ) -> std::thread::JoinHandle<()> {
        let pool = pool.clone();
        std::thread::spawn(move || {
            while pool.wait_for_work() {
                if let Some(r) = pool.take() {
                    took.send(r.exchange.id).unwrap();
                    drop(release.read().unwrap());
                    return;
                }
            }
        })
    }

    #[test]
    fn a_burst_behind_blocked_threads_fans_out_one_thread_at_a_time() {
        let pool = Arc::new(WsgiPool::default());
        let (took, taken) = std::sync::mpsc::channel();
        let release = Arc::new(std::sync::RwLock::new(()));
        let hold = release.write().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| blocked_thread(&pool, took.clone(), release.clone()))
            .collect();
        while lock(&pool.queue).sleepers < 4 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for id in 0..3 {
            pool.submit(request(id));
        }
        // One wake for the burst, not one per request: the woken thread wakes the next as
        // it takes its request and sees more queued.
        let mut ids: Vec<u64> = (0..3)
            .map(|_| {
                taken
                    .recv_timeout(Duration::from_secs(5))
                    .expect("a request waited")
            })
            .collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [0, 1, 2],
            "each request on a thread of its own, none left queued"
        );
        let q = lock(&pool.queue);
        assert!(q.requests.is_empty() && q.coming == 0);
        drop(q);
        drop(hold);
        pool.close();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_thread_on_its_way_keeps_the_next_submit_from_waking_another() {
        let pool = WsgiPool::default();
        {
            let mut q = lock(&pool.queue);
            q.sleepers = 2;
            q.coming = 1;
        }
        pool.submit(request(1));
        assert!(
            !lock(&pool.queue).notified,
            "the thread on its way takes it"
        );
        lock(&pool.queue).coming = 0;
        pool.submit(request(2));
        assert!(
            lock(&pool.queue).notified,
            "nobody on the way: a sleeper is woken"
        );
        pool.submit(request(3));
        let q = lock(&pool.queue);
        assert!(
            q.notified && q.requests.len() == 3,
            "one wake in flight at a time"
        );
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
