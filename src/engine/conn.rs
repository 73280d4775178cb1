//! Accepting connections and serving one connection with hyper.
//!
//! Owns the accept loops, socket options, the keep-alive idle watchdog and the per-connection
//! reaction to draining. Knows nothing of requests beyond counting them (see `service`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};

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
                    tokio::spawn(serve(stream, Peer::Socket(peer), server, "http", shared.clone()));
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
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, Peer::Unix, Peer::Unix, "http", shared.clone()));
                }
                Err(e) => accept_error(&shared, e).await,
            },
            _ = phase.changed() => break,
        }
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

/// Activity of one connection, read by its idle watchdog.
pub(super) struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or request finished.
    last_active_ms: AtomicU64,
    /// Requests being served on this connection right now.
    pub(super) busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_deadline(&self, keep_alive: Duration) -> Instant {
        self.epoch + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed)) + keep_alive
    }
}

async fn serve<S>(stream: S, client: Peer, server: Peer, scheme: &'static str, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stats = shared.stats.clone();
    stats.connections_open.fetch_add(1, Ordering::Relaxed);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WatchedIo {
        inner: stream,
        activity: activity.clone(),
    });
    let cfg = &shared.config;
    let service = RequestService::new(shared.clone(), client, server, scheme, activity.clone());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper starts this clock when it begins waiting for a request head, idle time
        // included; the idle watchdog below closes idle connections sooner.
        .header_read_timeout(cfg.header_read_timeout.max(cfg.keep_alive))
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .max_header_size(cfg.max_header_bytes)
        .auto_date_header(cfg.date_header)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);

    let keep_alive = cfg.keep_alive;
    let mut phase = shared.phase.clone();
    let mut draining = *phase.borrow() == Phase::Draining;
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    let idle = tokio::time::sleep(keep_alive);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    log_connection_error(&shared, &e);
                }
                break;
            }
            _ = phase.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = idle.as_mut() => {
                let now = Instant::now();
                let deadline = activity.idle_deadline(keep_alive);
                if activity.busy.load(Ordering::Relaxed) > 0 {
                    idle.as_mut().reset((now + keep_alive).into());
                } else if deadline > now {
                    idle.as_mut().reset(deadline.into());
                } else {
                    // Idle past the keep-alive timeout: close without a word, as RFC 9112
                    // allows for idle persistent connections.
                    break;
                }
            }
        }
    }
    stats.connections_open.fetch_sub(1, Ordering::Relaxed);
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

/// The connection's socket, noting reads so the idle watchdog knows the client is active.
struct WatchedIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
