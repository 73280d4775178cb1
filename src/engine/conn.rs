//! Accepting connections and serving one connection with hyper.
//!
//! Owns the accept loops, socket options, the keep-alive idle watchdog and the per-connection
//! reaction to draining. Knows nothing of requests beyond counting them (see `service`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};

use super::framing::{FramingWatch, Verdict};
use super::service::RequestService;
use super::{LogLevel, Peer, Phase, Shared};

pub(super) async fn accept_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut phase = shared.phase.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let server = stream.local_addr().map(Peer::Socket).unwrap_or(Peer::Unix);
                    spawn_connection(stream, Peer::Socket(peer), server, &shared);
                }
                Err(e) => accept_error(&shared, e).await,
            },
            _ = phase.changed() => break,
        }
    }
    // Dropping the listener closes the socket: new connections are refused from here on.
}

pub(super) async fn accept_unix(listener: UnixListener, shared: Arc<Shared>) {
    let mut phase = shared.phase.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => spawn_connection(stream, Peer::Unix, Peer::Unix, &shared),
                Err(e) => accept_error(&shared, e).await,
            },
            _ = phase.changed() => break,
        }
    }
}

/// Serves an accepted connection on a task of its own, counted in `connections_open` from
/// now until that task ends.
fn spawn_connection<S>(stream: S, client: Peer, server: Peer, shared: &Arc<Shared>)
where
    S: FirstByte + AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let counted = OpenConnection::count(shared);
    let shared = shared.clone();
    tokio::spawn(async move {
        let _counted = counted;
        if first_bytes(&stream, &shared).await {
            serve(stream, client, server, "http", shared).await;
        }
    });
}

/// One accepted connection in `connections_open`, from the accept until its task ends (or is
/// dropped unpolled at shutdown). Counted before the task is spawned, so that a drain that
/// begins in between still sees it and waits for it.
struct OpenConnection(Arc<super::Stats>);

impl OpenConnection {
    fn count(shared: &Shared) -> Self {
        shared
            .stats
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        OpenConnection(shared.stats.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sockets on which the first byte can be awaited without consuming it.
pub(super) trait FirstByte {
    fn first_byte(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
}

impl FirstByte for tokio::net::TcpStream {
    // `readable()` alone fires for a fresh socket with no data (measured: for every one of
    // 3,000 idle connections); a one-byte peek really waits for a byte (or EOF).
    async fn first_byte(&self) -> io::Result<()> {
        let mut byte = [0u8; 1];
        self.peek(&mut byte).await.map(|_| ())
    }
}

impl FirstByte for tokio::net::UnixStream {
    async fn first_byte(&self) -> io::Result<()> {
        self.readable().await
    }
}

/// A new connection costs a task and a socket until its first bytes arrive; hyper's 8 KiB
/// read buffer is allocated only then (measured: idle connections fell from about 12 KiB
/// to about 4 KiB of RSS each). Returns false when the connection should just be dropped:
/// nothing within the header-read timeout, or nothing within the drain grace once the
/// server drains.
///
/// A connection we accepted is one the client is about to use, so draining does not drop it
/// at once: its request may already be on the way (a rolling restart lost one that way). It
/// gets the grace an idle keep-alive connection gets; its response then says
/// `Connection: close`.
async fn first_bytes<S: FirstByte>(stream: &S, shared: &Shared) -> bool {
    let mut phase = shared.phase.clone();
    let header_read = shared.config.header_read_timeout;
    let drain_grace = drain_grace(shared);
    let arrived = |r: Result<io::Result<()>, _>| matches!(r, Ok(Ok(())));
    let ready = if *phase.borrow() == Phase::Draining {
        arrived(tokio::time::timeout(drain_grace, stream.first_byte()).await)
    } else {
        let first = stream.first_byte();
        tokio::pin!(first);
        tokio::select! {
            r = tokio::time::timeout(header_read, first.as_mut()) => arrived(r),
            _ = phase.changed() => {
                arrived(tokio::time::timeout(drain_grace, first.as_mut()).await)
            }
        }
    };
    ready
}

/// `/metrics` on its own listener (single-process mode), in Prometheus text format.
pub(super) async fn serve_metrics(listener: TcpListener, shared: Arc<Shared>) {
    use http_body_util::Full;
    let mut phase = shared.phase.clone();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => { accept_error(&shared, e).await; continue; }
            },
            _ = phase.changed() => break,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let metrics = shared.config.metrics;
                        super::publish_gauges(&shared.stats, metrics);
                        let (status, body) = if req.uri().path() == "/metrics" {
                            (
                                200,
                                super::metrics::render(&[metrics], &[std::process::id()]),
                            )
                        } else {
                            (404, "Not Found: metrics are at /metrics\n".to_string())
                        };
                        let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(body)));
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(
                                "text/plain; version=0.0.4; charset=utf-8",
                            ),
                        );
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Out of file descriptors or a similar transient failure: say so, back off, keep going.
async fn accept_error(shared: &Shared, e: io::Error) {
    shared.dispatcher.log(
        LogLevel::Error,
        format!(
            "accept() failed: {e}; retrying in 50 ms (raise the open-file limit if this is EMFILE)"
        ),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// How long a draining server keeps an idle connection open for a request in flight.
const DRAIN_GRACE: Duration = Duration::from_millis(1000);

/// The drain grace, never longer than the header-read timeout a request head gets anyway.
fn drain_grace(shared: &Shared) -> Duration {
    shared.config.header_read_timeout.min(DRAIN_GRACE)
}

/// The shortest period at which the watchdog looks at a connection again: a zero keep-alive
/// timeout must not make it spin.
const MIN_CHECK: Duration = Duration::from_millis(50);

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
}

/// A connection as its watchdog sees it.
#[derive(Debug, PartialEq)]
enum Watch {
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
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            write_stalled_ms: AtomicU64::new(0),
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

    /// Whether the connection is ending after a response that broke its framing.
    pub(super) fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Whether part of a request head has arrived and the rest is awaited.
    fn head_partly_read(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 && self.head_started_ms.load(Ordering::Relaxed) > 0
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Bytes arrived from the client.
    fn bytes_read(&self) {
        if self.busy.load(Ordering::Relaxed) == 0
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

    fn note_write(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Pending => self.write_stalled(),
            Poll::Ready(Ok(_)) => self.write_progressed(),
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

    fn watch(&self) -> Watch {
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

/// When the watchdog closes a connection in state `watch`, or `None` (not while busy).
/// Draining (since `drain_started`) shortens the waits for a next request to `drain_grace`,
/// counted from when the connection became idle if that was later; an answer still being
/// written is left to finish.
fn close_at(
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

async fn serve<S>(stream: S, client: Peer, server: Peer, scheme: &'static str, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WatchedIo {
        inner: stream,
        activity: activity.clone(),
        framing: FramingWatch::new(shared.config.max_header_bytes),
        shared: shared.clone(),
    });
    let cfg = &shared.config;
    let service = RequestService::new(shared.clone(), client, server, scheme, activity.clone());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Our watchdog below owns every wait for a request head (hyper's own timer would
        // count idle keep-alive time as header time).
        .header_read_timeout(None)
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .max_header_size(cfg.max_header_bytes)
        .auto_date_header(cfg.date_header)
        // A zero keep-alive timeout means one request per connection, said in the response.
        .keep_alive(!cfg.keep_alive.is_zero())
        // One flat buffer per write instead of a head + body iovec: measured (A/B, 3 runs
        // each) hello 8.5 against 8.8 us of CPU per request and json 8.9 against 9.0; a 4 KiB
        // echo pays for the copy (11.0 against 10.75), small API answers are the common case.
        .writev(false);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);

    let (keep_alive, header_read) = (cfg.keep_alive, cfg.header_read_timeout);
    let mut phase = shared.phase.clone();
    // While draining, an idle connection stays open a moment for a request the client may
    // already have sent (closing at once would lose it); responses then say
    // `Connection: close` (service.rs), so each connection ends after at most one more.
    let drain_grace = drain_grace(&shared);
    let mut drain = (*phase.borrow() == Phase::Draining).then(|| (Instant::now(), drain_grace));
    // Re-checked at least this often; between checks the deadline is exact.
    let check = keep_alive.min(header_read).max(MIN_CHECK);
    let watchdog = tokio::time::sleep(if drain.is_some() {
        Duration::ZERO
    } else {
        check
    });
    tokio::pin!(watchdog);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    log_connection_error(&shared, &e);
                }
                break;
            }
            _ = activity.close_requested.notified(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = phase.changed(), if drain.is_none() => {
                drain = Some((Instant::now(), drain_grace));
                watchdog.as_mut().reset(Instant::now().into());
            }
            _ = watchdog.as_mut() => {
                let now = Instant::now();
                let watch = activity.watch();
                let stalled = matches!(watch, Watch::Stalled(_));
                match close_at(watch, keep_alive, header_read, drain) {
                    None => watchdog.as_mut().reset((now + check).into()),
                    Some(deadline) if deadline > now => {
                        watchdog.as_mut().reset(deadline.min(now + check).into())
                    }
                    Some(_) if activity.head_partly_read()
                        && !activity.head_timed_out.swap(true, Ordering::Relaxed) =>
                    {
                        // A client that sent part of a head and stopped gets 408 (RFC 9110
                        // 15.5.9): hyper owns the socket, so the socket itself answers on
                        // hyper's next read, which this loop's next turn makes at once.
                        shared.dispatcher.log(
                            LogLevel::Debug,
                            "request head incomplete after the header-read timeout: answered 408".to_string(),
                        );
                        watchdog.as_mut().reset((now + MIN_CHECK * 20).into());
                    }
                    Some(_) => {
                        // Idle past the keep-alive timeout (or the drain grace), a head
                        // that did not arrive in time, or a client that took no bytes of
                        // its answer for the header-read timeout: close without a word
                        // (RFC 9112 9.8 allows it for idle connections; the others get no
                        // answer worth waiting for).
                        let why = if stalled {
                            "closed a connection: the client took no response bytes for the header-read timeout"
                        } else {
                            "closed a connection: keep-alive, header-read or drain timeout"
                        };
                        shared.dispatcher.log(LogLevel::Debug, why.to_string());
                        break;
                    }
                }
            }
        }
    }
}

fn log_connection_error(shared: &Shared, e: &hyper::Error) {
    // A client that hangs up mid-way is ordinary; malformed input and timeouts are worth a
    // line at debug level (hyper already answered 400/431 where it could).
    let what = if e.is_timeout() {
        "timed out reading the request head"
    } else if e.is_parse_too_large() {
        "request head too large (431)"
    } else if e.is_parse() || e.is_parse_status() {
        "malformed request (400)"
    } else if e.is_incomplete_message() {
        "connection closed before the message completed"
    } else {
        "connection error"
    };
    shared
        .dispatcher
        .log(LogLevel::Debug, format!("{what}: {e}"));
}

/// The answer to a request head that did not arrive within the header-read timeout.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: 16\r\n\r\nRequest Timeout\n";

/// The answer to a request line longer than the head limit.
const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: 13\r\n\r\nURI Too Long\n";

/// The connection's socket, noting reads so the idle watchdog knows the client is active,
/// and following request framing for the checks hyper leaves out (see `framing`).
struct WatchedIo<S> {
    inner: S,
    activity: Arc<Activity>,
    framing: FramingWatch,
    shared: Arc<Shared>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        if this.activity.head_timed_out.load(Ordering::Relaxed) {
            // Best effort: the socket is idle in both directions, so the short answer fits
            // its send buffer; then the end of input makes hyper drop the connection.
            let _ = Pin::new(&mut this.inner).poll_write(cx, REQUEST_TIMEOUT);
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
            match this.framing.observe(&mut buf.filled_mut()[before..]) {
                Verdict::Pass => {}
                Verdict::Spoiled => this.shared.dispatcher.log(
                    LogLevel::Debug,
                    "rejected a request with both Content-Length and Transfer-Encoding (400)"
                        .to_string(),
                ),
                Verdict::TargetTooLong => {
                    this.shared.dispatcher.log(
                        LogLevel::Debug,
                        "request line longer than the head limit: answered 414".to_string(),
                    );
                    // As for 408: the socket answers, and the end of input ends hyper's turn.
                    buf.set_filled(before);
                    let _ = Pin::new(&mut this.inner).poll_write(cx, URI_TOO_LONG);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.note_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.note_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
