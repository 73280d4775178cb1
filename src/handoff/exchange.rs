//! One request/response exchange, as shared between the engine and the app side.
//!
//! The engine (tokio threads) and the ASGI adapter (the Python loop thread) meet here and
//! nowhere else: the engine fills the request body and drains the response, the adapter does
//! the opposite. All state sits behind one short-held mutex; neither side ever blocks on the
//! other. When the engine changes something the app is waiting for, it asks the [`AppWaker`]
//! to wake the loop thread; when the app changes something the engine waits for, it wakes the
//! engine task through a stored [`Waker`].
//!
//! This module holds no Python objects and never takes the GIL.
//!
//! Why it is one long file: every method is one transition of the same state behind the same
//! lock, and the invariants between the two sides (who wakes whom, when) read best together;
//! a fifth of it is the unit tests of those transitions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

pub use super::in_flight::{InFlight, InFlightSlot};

/// How the two sides of an exchange wake each other.
pub trait AppWaker: Send + Sync + 'static {
    /// The engine changed something the app waits on (called on the engine side).
    fn wake_app(&self, exchange_id: u64);

    /// The app changed something an engine task waits on (called on the app side). The
    /// bridge may batch these when the engine runs on the loop thread.
    fn wake_engine(&self, waker: Waker) {
        waker.wake();
    }

    /// Like `wake_engine`, for a response chunk that does not end its body: the bridge may
    /// hold it for a moment while streams are busy, so that the chunks an app sends in quick
    /// succession (awaiting something between them) leave in one write.
    fn wake_engine_soon(&self, waker: Waker) {
        self.wake_engine(waker);
    }
}

/// A response head as the app produced it, already validated by the adapter.
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// A reason phrase other than the status's usual one (a WSGI status line such as
    /// "500 Oops"); HTTP/1.1 sends it, HTTP/2 has none.
    pub reason: Option<Bytes>,
}

/// What the engine should send.
pub enum Response {
    /// The whole body arrived in one message: sent with a Content-Length.
    Full(ResponseHead, Bytes),
    /// The body follows in chunks through [`Exchange::push_chunk`].
    Streaming(ResponseHead),
    /// The request body was malformed (a bad chunk): the engine answers 400 and closes.
    BadRequestBody,
    /// The client left mid-body: the engine closes the connection, answering nobody.
    ClientLeft,
    /// The request body stopped arriving (`--timeout-request-body` passed with the app
    /// waiting for it): the engine answers 408 and closes.
    BodyTimedOut,
    /// The request body went past `--limit-request-body`: the engine answers 413 and closes.
    BodyTooLarge,
    /// The engine sends this file as the body (`http.response.pathsend`, `wsgi.file_wrapper`).
    File(ResponseHead, FileSource),
}

/// What the engine waits for before a response's body: the early hints the app sent (each
/// one a 103 with its `Link` fields), then the response itself.
pub enum Awaited {
    EarlyHints(Vec<HeaderMap>),
    Response(Response),
}

/// Where a file body comes from.
pub enum FileSource {
    /// A path the engine opens (`http.response.pathsend`).
    Path(std::path::PathBuf),
    /// A file the app opened, sent from its current position (`wsgi.file_wrapper`).
    Open(std::fs::File),
}

/// What the error line says when the file cannot be sent.
impl std::fmt::Display for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileSource::Path(p) => write!(f, "http.response.pathsend: cannot send {}", p.display()),
            FileSource::Open(_) => f.write_str("wsgi.file_wrapper: cannot send the app's file"),
        }
    }
}

impl Response {
    /// The 500 a request gets when the app fails before answering.
    pub fn server_error() -> Response {
        Self::plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            true,
        )
    }

    /// The 504 of a request past `--timeout-request` that had not answered yet.
    pub fn gateway_timeout() -> Response {
        Self::plain(
            StatusCode::GATEWAY_TIMEOUT,
            "Gateway Timeout: the request took too long",
            false,
        )
    }

    /// The 503 of a request the server took but can no longer serve (shutting down).
    pub fn service_unavailable() -> Response {
        Self::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: the server is shutting down",
            true,
        )
    }

    fn plain(status: StatusCode, body: &'static str, close: bool) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if close {
            headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        Response::Full(
            ResponseHead {
                status,
                headers,
                reason: None,
            },
            Bytes::from_static(body.as_bytes()),
        )
    }

    /// The same response with its head changed (the body, if any, is untouched).
    pub fn map_head(self, f: impl FnOnce(ResponseHead) -> ResponseHead) -> Response {
        match self {
            Response::Full(head, body) => Response::Full(f(head), body),
            Response::Streaming(head) => Response::Streaming(f(head)),
            Response::BadRequestBody => Response::BadRequestBody,
            Response::ClientLeft => Response::ClientLeft,
            Response::BodyTimedOut => Response::BodyTimedOut,
            Response::BodyTooLarge => Response::BodyTooLarge,
            Response::File(head, source) => Response::File(f(head), source),
        }
    }
}

/// Why a request body could not be read to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFailure {
    /// A broken chunk: 400.
    Malformed,
    /// The client left before the whole body came: nobody to answer.
    ClientLeft,
    /// It stopped arriving for `--timeout-request-body`: 408.
    TimedOut,
    /// It went past `--limit-request-body`: 413.
    TooLarge,
}

/// Room in the response buffer, as the app sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Capacity {
    Available,
    /// Full: the app is now registered as waiting.
    Wait,
    Disconnected,
}

/// The app failed mid-response; the engine must not finish the message cleanly.
#[derive(Debug)]
pub struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the ASGI app failed after the response started")
    }
}

impl std::error::Error for Aborted {}

/// Request body for the app: the chunks as they arrived, to be copied once, straight into
/// the Python `bytes` object (no concatenation first).
#[derive(Default)]
pub struct BodyChunks(Vec<Bytes>);

impl BodyChunks {
    /// The chunks themselves, for a reader that copies each once where it needs it.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Bytes::is_empty)
    }

    /// Copies the chunks into `out`, which must be `len()` bytes long.
    pub fn copy_into(&self, out: &mut [u8]) {
        let mut at = 0;
        for c in &self.0 {
            out[at..at + c.len()].copy_from_slice(c);
            at += c.len();
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        match &self.0[..] {
            [] => Bytes::new(),
            [one] => one.clone(),
            _ => {
                let mut v = vec![0; self.len()];
                self.copy_into(&mut v);
                Bytes::from(v)
            }
        }
    }
}

/// What the app gets when it asks for request body.
pub enum BodyRead {
    /// Chunks (possibly none) and whether more follows.
    Chunk(BodyChunks, bool),
    /// Nothing yet: the app side must wait for a wake.
    Wait,
    /// The client is gone.
    Disconnected,
}

/// What the app gets when it pushes a response chunk.
pub enum PushResult {
    /// Accepted; the buffer still has room.
    Accepted,
    /// Accepted, but the buffer is over its high-water mark: wait for a wake before the next.
    Full,
    /// The client is gone; the chunk was dropped.
    Disconnected,
}

#[derive(Default)]
struct State {
    // Request body, engine -> app.
    body: VecDeque<Bytes>,
    body_bytes: usize,
    body_end: bool,
    body_started: bool,
    // Response, app -> engine.
    /// `http.response.early_hint` messages not yet taken by the engine.
    early_hints: Vec<HeaderMap>,
    response: Option<Response>,
    out: VecDeque<Bytes>,
    out_bytes: usize,
    out_end: bool,
    /// Trailer fields sent after the body (`http.response.trailers`).
    trailers: Option<HeaderMap>,
    // Lifecycle.
    client_gone: bool,
    /// Tell the app side about a disconnect even when it is not waiting (it may cancel).
    announce_gone: bool,
    /// Why the request body could not be read to its end, if it could not.
    body_failed: Option<BodyFailure>,
    aborted: bool,
    abort_flushed: bool,
    engine_done: bool,
    app_waiting: bool,
    /// Body bytes the waiting app needs before a wake is worth it (`read_body_wanting`);
    /// 0: any.
    app_wants: usize,
    engine_waker: Option<Waker>,
    pump_waker: Option<Waker>,
}

pub struct Exchange {
    pub id: u64,
    state: Mutex<State>,
    /// The app broke the response's framing after its head went out: the connection must end
    /// after this response.
    close_after: AtomicBool,
    app_waker: Arc<dyn AppWaker>,
    slot: InFlightSlot,
    /// Response bytes buffered before `send()` must wait for the client to read.
    high_water: usize,
    /// Request bytes read ahead of the app.
    read_ahead: usize,
}

impl Exchange {
    pub fn new(
        id: u64,
        app_waker: Arc<dyn AppWaker>,
        in_flight: InFlight,
        high_water: usize,
        read_ahead: usize,
    ) -> Self {
        Exchange {
            id,
            state: Mutex::new(State::default()),
            close_after: AtomicBool::new(false),
            app_waker,
            slot: InFlightSlot::new(in_flight),
            high_water,
            read_ahead,
        }
    }

    /// Stops counting this exchange as in flight (see [`InFlightSlot`]).
    pub fn release(&self) {
        self.slot.release();
    }

    /// Keeps the request's admission slot until the exchange is released.
    pub fn hold(&self, permit: Option<tokio::sync::OwnedSemaphorePermit>) {
        self.slot.hold(permit);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind, still consistent enough
        // to finish the exchange, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state under the lock and returns what `f` took out of it (a waker to wake
    /// once the lock is released).
    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }

    /// Wakes the app if it said it was waiting; called with the lock released.
    fn wake_app_if(&self, waiting: bool) {
        if waiting {
            self.app_waker.wake_app(self.id);
        }
    }

    // ----- engine side -----------------------------------------------------------------

    /// Request body known in full before dispatch (empty, or prefetched).
    pub fn set_full_body(&self, body: Bytes) {
        let mut s = self.lock();
        s.body_bytes = body.len();
        if !body.is_empty() {
            s.body.push_back(body);
        }
        s.body_end = true;
    }

    /// The body pump delivers a chunk (or the end of the body).
    pub fn deliver_body(&self, chunk: Option<Bytes>) {
        let waiting = {
            let mut s = self.lock();
            match chunk {
                Some(c) => {
                    s.body_bytes += c.len();
                    s.body.push_back(c);
                }
                None => s.body_end = true,
            }
            // A thread that waits for a read of n bytes is woken once they are there, not
            // for each chunk on the way (a 1 MiB upload comes in many).
            let enough = s.body_end || s.body_bytes >= s.app_wants;
            enough && std::mem::take(&mut s.app_waiting)
        };
        self.wake_app_if(waiting);
    }

    /// The pump waits until the app has asked for the body (so `100 Continue` goes out only
    /// then) and the read-ahead buffer has room. Returns false when the pump should stop.
    pub fn poll_pump_ready(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = self.lock();
        if s.client_gone || s.engine_done {
            return Poll::Ready(false);
        }
        if s.body_started && s.body_bytes < self.read_ahead {
            return Poll::Ready(true);
        }
        s.pump_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The engine waits for the app's response head, and takes the early hints sent before
    /// it first.
    pub fn poll_response(&self, cx: &mut Context<'_>) -> Poll<Awaited> {
        let mut s = self.lock();
        if !s.early_hints.is_empty() {
            return Poll::Ready(Awaited::EarlyHints(std::mem::take(&mut s.early_hints)));
        }
        if let Some(r) = s.response.take() {
            return Poll::Ready(Awaited::Response(r));
        }
        if let Some(failure) = s.body_failed {
            return Poll::Ready(Awaited::Response(match failure {
                BodyFailure::Malformed => Response::BadRequestBody,
                BodyFailure::ClientLeft => Response::ClientLeft,
                BodyFailure::TimedOut => Response::BodyTimedOut,
                BodyFailure::TooLarge => Response::BodyTooLarge,
            }));
        }
        s.engine_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The engine takes response body for the wire; `Err` means the app failed mid-response
    /// and the connection must be cut so the client sees an incomplete response.
    pub fn poll_chunk(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Aborted>>> {
        let mut s = self.lock();
        if let Some(chunk) = s.out.pop_front() {
            let was_full = s.out_bytes >= self.high_water;
            s.out_bytes -= chunk.len();
            let wake = was_full && s.out_bytes < self.high_water && s.app_waiting;
            if wake {
                s.app_waiting = false;
            }
            drop(s);
            self.wake_app_if(wake);
            return Poll::Ready(Some(Ok(chunk)));
        }
        // Chunks the app sent before failing still go out; then the cut. One `Pending`
        // first, so hyper flushes what it buffered before it drops the connection.
        if s.aborted {
            if s.abort_flushed {
                return Poll::Ready(Some(Err(Aborted)));
            }
            s.abort_flushed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if s.out_end {
            return Poll::Ready(None);
        }
        s.engine_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The connection went away (or the engine gave up on it) before the exchange finished.
    pub fn client_gone(&self) {
        let (waiting, pump) = {
            let mut s = self.lock();
            let announce = s.announce_gone && !s.client_gone;
            s.client_gone = true;
            s.engine_done = true;
            (
                std::mem::take(&mut s.app_waiting) || announce,
                s.pump_waker.take(),
            )
        };
        if let Some(p) = pump {
            p.wake();
        }
        self.wake_app_if(waiting);
    }

    /// `--cancel-on-disconnect`: a disconnect wakes the app side even when it is busy with
    /// something of its own, so the bridge can cancel its task.
    pub fn announce_disconnect(&self) {
        self.lock().announce_gone = true;
    }

    /// The request body cannot be read to its end (see [`BodyFailure`]). To the app the
    /// request is over (it sees `http.disconnect`); the engine answers 400, 408 or 413
    /// unless a response already went out.
    pub fn body_failed(&self, why: BodyFailure) {
        let (waiting, engine) = {
            let mut s = self.lock();
            s.body_failed = Some(why);
            s.client_gone = true;
            (std::mem::take(&mut s.app_waiting), s.engine_waker.take())
        };
        if let Some(w) = engine {
            w.wake();
        }
        self.wake_app_if(waiting);
    }

    /// The engine finished its part normally (response written); stops the body pump.
    pub fn engine_done(&self) {
        let pump = self.update(|s| {
            s.engine_done = true;
            s.pump_waker.take()
        });
        if let Some(p) = pump {
            p.wake();
        }
    }

    // ----- app side --------------------------------------------------------------------

    /// The app asks for request body. `Wait` registers the app as waiting.
    pub fn read_body(&self) -> BodyRead {
        self.read_body_wanting(0)
    }

    /// Like `read_body`, for a reader that needs `wanted` bytes to go on (WSGI's
    /// `read(n)`): it waits until that many are buffered (at most the read-ahead) or the
    /// body ends, rather than take each chunk as it comes and wait again.
    pub fn read_body_wanting(&self, wanted: usize) -> BodyRead {
        let mut s = self.lock();
        let wanted = wanted.min(self.read_ahead);
        if !s.body.is_empty() && (s.body_bytes >= wanted || s.body_end) {
            // Hand over everything buffered at once: fewer messages, fewer wakeups.
            let chunk = BodyChunks(s.body.drain(..).collect());
            s.body_bytes = 0;
            let more = !s.body_end;
            let pump = if more { s.pump_waker.take() } else { None };
            drop(s);
            if let Some(p) = pump {
                self.app_waker.wake_engine(p);
            }
            return BodyRead::Chunk(chunk, more);
        }
        if s.body_end {
            return BodyRead::Chunk(BodyChunks::default(), false);
        }
        if s.client_gone {
            return BodyRead::Disconnected;
        }
        s.body_started = true;
        s.app_waiting = true;
        s.app_wants = wanted;
        let pump = s.pump_waker.take();
        drop(s);
        if let Some(p) = pump {
            self.app_waker.wake_engine(p);
        }
        BodyRead::Wait
    }

    /// Whether the client has gone; when not, registers the app as waiting for it to go.
    pub fn wait_disconnect(&self) -> bool {
        let mut s = self.lock();
        if s.client_gone {
            return true;
        }
        s.app_waiting = true;
        false
    }

    pub fn is_client_gone(&self) -> bool {
        self.lock().client_gone
    }

    /// The app hands over its response. Returns false if the client is already gone.
    pub fn respond(&self, response: Response, end: bool) -> bool {
        self.hand_over(|s| {
            s.response = Some(response);
            s.out_end = end;
        })
    }

    /// The app sends an early hint (`http.response.early_hint`): the `Link` fields of a 103
    /// the engine sends before the response. False if the client is already gone.
    pub fn push_early_hint(&self, links: HeaderMap) -> bool {
        self.hand_over(|s| s.early_hints.push(links))
    }

    /// Applies what the app hands over and wakes the engine; false (nothing applied) if the
    /// client is already gone.
    fn hand_over(&self, apply: impl FnOnce(&mut State)) -> bool {
        let waker = {
            let mut s = self.lock();
            if s.client_gone {
                return false;
            }
            apply(&mut s);
            s.engine_waker.take()
        };
        if let Some(w) = waker {
            self.app_waker.wake_engine(w);
        }
        true
    }

    /// The app pushes a response chunk (empty allowed) and possibly the end of the body.
    pub fn push_chunk(&self, chunk: Bytes, end: bool) -> PushResult {
        let (waker, full) = {
            let mut s = self.lock();
            if s.client_gone {
                return PushResult::Disconnected;
            }
            if !chunk.is_empty() {
                s.out_bytes += chunk.len();
                s.out.push_back(chunk);
            }
            s.out_end |= end;
            let full = !end && s.out_bytes >= self.high_water;
            if full {
                s.app_waiting = true;
            }
            (s.engine_waker.take(), full)
        };
        match waker {
            // A full buffer must drain now: the app waits for room.
            Some(w) if end || full => self.app_waker.wake_engine(w),
            Some(w) => self.app_waker.wake_engine_soon(w),
            None => {}
        }
        if full {
            PushResult::Full
        } else {
            PushResult::Accepted
        }
    }

    /// The response's trailer fields; they end the body. False if the client is gone.
    pub fn push_trailers(&self, trailers: HeaderMap) -> bool {
        self.hand_over(|s| {
            s.trailers = Some(trailers);
            s.out_end = true;
        })
    }

    /// The trailers, once the body's chunks are all taken.
    pub fn take_trailers(&self) -> Option<HeaderMap> {
        self.lock().trailers.take()
    }

    /// The connection must not carry another response after this one (call before pushing
    /// the response's last bytes, so the engine knows it before it writes them).
    pub fn close_after_response(&self) {
        self.close_after.store(true, Ordering::Release);
    }

    /// Whether the connection must end after this response (engine side).
    pub fn wants_close(&self) -> bool {
        self.close_after.load(Ordering::Acquire)
    }

    /// The app failed after the response started: the engine cuts the connection.
    pub fn abort(&self) {
        if let Some(w) = self.update(|s| {
            s.aborted = true;
            s.engine_waker.take()
        }) {
            self.app_waker.wake_engine(w);
        }
    }

    /// Whether the app may push again after a `Full` (registers as waiting when not).
    pub fn poll_capacity(&self) -> Capacity {
        let mut s = self.lock();
        // Room first: a chunk the engine took before the client left was sent, and its
        // `send()` succeeds; the next one finds the client gone.
        if s.out_bytes < self.high_water {
            return Capacity::Available;
        }
        if s.client_gone {
            return Capacity::Disconnected;
        }
        s.app_waiting = true;
        Capacity::Wait
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[derive(Default)]
    struct CountingWaker(AtomicU64);
    impl AppWaker for CountingWaker {
        fn wake_app(&self, _id: u64) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn exchange(high_water: usize) -> (Arc<Exchange>, Arc<CountingWaker>, InFlight) {
        let waker = Arc::new(CountingWaker::default());
        let in_flight = InFlight::default();
        let ex = Exchange::new(1, waker.clone(), in_flight.clone(), high_water, 1024);
        (Arc::new(ex), waker, in_flight)
    }

    #[test]
    fn in_flight_counts_live_exchanges_once() {
        let (ex, _, in_flight) = exchange(16);
        let (other, _, _) = exchange(16);
        let count = || in_flight.load(Ordering::SeqCst);
        assert_eq!(count(), 1, "an exchange counts from its creation");
        drop(ex);
        assert_eq!(count(), 0, "and stops counting when dropped");
        // Released early (the app's task ended), then dropped: counted down once.
        let (ex, _, in_flight) = exchange(16);
        ex.release();
        ex.release();
        drop(ex);
        assert_eq!(in_flight.load(Ordering::SeqCst), 0);
        drop(other);
    }

    #[test]
    fn body_read_waits_then_is_woken_by_delivery() {
        let (ex, waker, _) = exchange(16);
        assert!(matches!(ex.read_body(), BodyRead::Wait));
        ex.deliver_body(Some(Bytes::from_static(b"ab")));
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        ex.deliver_body(Some(Bytes::from_static(b"cd")));
        // The app was no longer registered as waiting: no second wake.
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        match ex.read_body() {
            BodyRead::Chunk(c, more) => {
                assert_eq!(&c.to_bytes()[..], b"abcd");
                assert!(more);
            }
            _ => panic!("expected the buffered chunks"),
        }
        ex.deliver_body(None);
        assert!(matches!(ex.read_body(), BodyRead::Chunk(c, false) if c.is_empty()));
    }

    #[test]
    fn full_body_is_one_message() {
        let (ex, _, _) = exchange(16);
        ex.set_full_body(Bytes::from_static(b"hello"));
        assert!(
            matches!(ex.read_body(), BodyRead::Chunk(c, false) if &c.to_bytes()[..] == b"hello")
        );
    }

    #[test]
    fn push_reports_full_and_drain_wakes_app() {
        let (ex, waker, _) = exchange(4);
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        assert!(matches!(
            ex.push_chunk(Bytes::from_static(b"abcdef"), false),
            PushResult::Full
        ));
        assert_eq!(ex.poll_capacity(), Capacity::Wait);
        assert!(matches!(ex.poll_chunk(&mut cx), Poll::Ready(Some(Ok(_)))));
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert_eq!(ex.poll_capacity(), Capacity::Available);
        assert!(matches!(
            ex.push_chunk(Bytes::new(), true),
            PushResult::Accepted
        ));
        assert!(matches!(ex.poll_chunk(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn client_gone_wakes_waiting_app_and_refuses_more() {
        let (ex, waker, _) = exchange(4);
        assert!(!ex.wait_disconnect());
        ex.client_gone();
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert!(matches!(ex.read_body(), BodyRead::Disconnected));
        assert!(matches!(
            ex.push_chunk(Bytes::from_static(b"x"), false),
            PushResult::Disconnected
        ));
        assert!(ex.wait_disconnect());
    }
}
