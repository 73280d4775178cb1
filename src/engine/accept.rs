//! Accepting connections: the TCP and Unix accept loops, the wait for a connection's first
//! byte, the count of open connections, and the inline `/metrics` listener.
//!
//! Owns what happens before hyper sees a connection. Must not: parse HTTP (beyond the tiny
//! `/metrics` answer) or hold a connection past its first byte (`conn::serve` takes it).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use super::conn::{drain_grace, serve};
use super::sendfile::SendfileSocket;
use super::service::Link;
use super::Tls;
use super::{Phase, Shared};
use crate::handoff::{LogLevel, Peer};

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
                Err(e) if listener_shut_down(&e) => break,
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
                Err(e) if listener_shut_down(&e) => break,
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
    S: FirstByte + AsyncRead + AsyncWrite + SendfileSocket + Unpin + Send + Sync + 'static,
{
    let counted = OpenConnection::count(shared);
    let shared = shared.clone();
    tokio::spawn(async move {
        let _counted = counted;
        let accepted = tokio::time::Instant::now();
        if !first_bytes(&stream, &shared).await {
            return;
        }
        let config = &shared.config;
        match config.tls.clone() {
            None => {
                // Plain text: HTTP/2 by prior knowledge (RFC 9113 3.3), else HTTP/1.1.
                let http2 = config.http2 && stream.starts_with_h2_preface().await;
                if refused_without_h2(&shared, http2, "not an HTTP/2 connection preface") {
                    return;
                }
                let link = Link {
                    scheme: "http",
                    tls: None,
                    http2,
                };
                serve(stream, client, server, link, shared).await
            }
            // Boxed: the TLS session and its connection are large, and inline they would
            // size every plain connection's task as well (about 5 KiB more per open stream).
            Some(tls) => Box::pin(serve_tls(tls, stream, accepted, client, server, shared)).await,
        }
    });
}

/// A TLS connection: the handshake, then HTTP over it.
async fn serve_tls<S>(
    tls: Arc<Tls>,
    stream: S,
    accepted: tokio::time::Instant,
    client: Peer,
    server: Peer,
    shared: Arc<Shared>,
) where
    S: FirstByte + AsyncRead + AsyncWrite + SendfileSocket + Unpin + Send + Sync + 'static,
{
    // About a millisecond of CPU: on the loop thread, only while its turn has time left.
    shared.turn_time.wait().await;
    // The handshake gets what is left of the time a request head gets, counted from the
    // accept; a client that fails it (plain HTTP on this port, an aborted or stalled
    // handshake) costs only this connection.
    let timeout = shared
        .config
        .header_read_timeout
        .saturating_sub(accepted.elapsed());
    match tls.handshake(stream, timeout).await {
        Some(stream) => {
            let conn = stream.get_ref().1;
            let http2 = Tls::chose_http2(conn);
            let why = "TLS client did not choose h2 by ALPN";
            if refused_without_h2(&shared, http2, why) {
                return;
            }
            let link = Link {
                scheme: "https",
                tls: Some(Arc::new(tls.connection_info(conn))),
                http2,
            };
            serve(stream, client, server, link, shared).await
        }
        None => shared.dispatcher.log(
            LogLevel::Debug,
            "TLS handshake failed or timed out: connection closed".to_string(),
        ),
    }
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

/// Sockets whose waiting bytes can be looked at without consuming them.
pub(super) trait FirstByte: Sync {
    /// Waits for bytes (or EOF) and copies the first ones into `buf`, leaving them queued.
    fn peek(&self, buf: &mut [u8]) -> impl std::future::Future<Output = io::Result<usize>> + Send;

    // `readable()` alone fires for a fresh socket with no data (measured: for every one of
    // 3,000 idle TCP connections); a one-byte peek really waits for a byte (or EOF).
    fn first_byte(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        async {
            let mut byte = [0u8; 1];
            self.peek(&mut byte).await.map(|_| ())
        }
    }

    /// Whether the bytes waiting start HTTP/2's connection preface ("PRI * HTTP/2.0"); no
    /// HTTP/1.1 request starts with the method `PRI`. Looks without consuming.
    fn starts_with_h2_preface(&self) -> impl std::future::Future<Output = bool> + Send {
        async {
            let mut head = [0u8; 4];
            // The preface comes in one write; a few looks cover a client that splits it.
            for _ in 0..20 {
                match self.peek(&mut head).await {
                    Ok(n) if n >= 4 => return &head == b"PRI ",
                    Ok(n) if n > 0 && head[..n] == b"PRI "[..n] => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    _ => return false,
                }
            }
            false
        }
    }
}

impl FirstByte for tokio::net::TcpStream {
    async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::net::TcpStream::peek(self, buf).await
    }
}

impl FirstByte for tokio::net::UnixStream {
    /// tokio has no peek for Unix sockets: `recv(MSG_PEEK)` once the socket is readable.
    async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        loop {
            self.readable().await?;
            let peeked = self.try_io(tokio::io::Interest::READABLE, || {
                // SAFETY: `buf` is valid for writes of `buf.len()` bytes, and the descriptor
                // is this stream's, open while `self` is borrowed. MSG_PEEK leaves the
                // bytes queued; the socket is non-blocking (tokio's), so an empty one gives
                // EAGAIN, which `try_io` turns into a new wait.
                let n = unsafe {
                    libc::recv(
                        self.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_PEEK,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match peeked {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
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

/// `--http h2` serves HTTP/2 alone: a connection that did not start it is closed, with a
/// debug line saying `why`.
fn refused_without_h2(shared: &Shared, http2: bool, why: &str) -> bool {
    if http2 || shared.config.http1 {
        return false;
    }
    shared.dispatcher.log(
        LogLevel::Debug,
        format!("{why} (--http h2): connection closed"),
    );
    true
}

/// The supervisor shut the shared listening socket down (SIGTERM): this worker is about to
/// drain, and there is nothing more to accept.
fn listener_shut_down(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
}

/// Out of file descriptors or a similar transient failure: back off, keep going, and say so
/// at most once a second (a server at its descriptor limit fails every accept it tries).
async fn accept_error(shared: &Shared, e: io::Error) {
    if let Some(count) = shared.accept_failures.note() {
        shared.dispatcher.log(
            LogLevel::Error,
            format!(
                "accept() failed {count} time(s) since the last report: {e}; each time the server waits 50 ms before accepting again (raise the open-file limit, `ulimit -n`, if this is EMFILE)"
            ),
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}
