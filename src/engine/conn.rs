//! Serving one connection with hyper: the HTTP/1.1 or HTTP/2 builder's settings, the loop
//! that runs the connection beside its timeout watchdog, drain, and the close a broken
//! response asks for.
//!
//! Knows nothing of requests beyond counting them (see `service`). Must not: read or write
//! the socket itself (`watched_io` does, under hyper).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::activity::{close_at, Activity, SendWindow, Watch, MIN_CHECK};
use super::framing::FramingWatch;
use super::h2::H2Server;
use super::interim::Interim;
use super::sendfile::{self, FileHandoff, SendfileSocket};
use super::service::{Link, RequestService};
use super::watched_io::WatchedIo;
use super::{Phase, Shared};
use crate::handoff::{LogLevel, Peer};

/// How many fields hyper parses into a request head when it is not told a number (its
/// `DEFAULT_MAX_HEADERS`, not public).
const HYPER_STACK_FIELDS: usize = 100;

/// How long a draining server keeps an idle connection open for a request in flight.
const DRAIN_GRACE: Duration = Duration::from_millis(1000);

/// The drain grace, never longer than the header-read timeout a request head gets anyway.
pub(super) fn drain_grace(shared: &Shared) -> Duration {
    shared.config.header_read_timeout.min(DRAIN_GRACE)
}

/// The connection a socket is served with: hyper's for HTTP/1.1, ours for HTTP/2.
enum Served<S> {
    Http1(Pin<Box<http1::UpgradeableConnection<TokioIo<WatchedIo<S>>, RequestService>>>),
    Http2(Pin<Box<H2Server<WatchedIo<S>>>>),
}

/// Why a connection ended early.
enum ConnError {
    Http1(hyper::Error),
    Http2(h2::Error),
}

impl<S> Served<S>
where
    S: AsyncRead + AsyncWrite + SendfileSocket + Unpin + Send + 'static,
{
    /// HTTP/1.1: finish the response in flight, then close; HTTP/2: GOAWAY, finish the
    /// streams in flight, then close.
    fn graceful_shutdown(&mut self) {
        match self {
            Served::Http1(c) => c.as_mut().graceful_shutdown(),
            Served::Http2(c) => c.as_mut().graceful_shutdown(),
        }
    }
}

impl<S> Future for Served<S>
where
    S: AsyncRead + AsyncWrite + SendfileSocket + Unpin + Send + 'static,
{
    type Output = Result<(), ConnError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Served::Http1(c) => c.as_mut().poll(cx).map_err(ConnError::Http1),
            Served::Http2(c) => c.as_mut().poll(cx).map_err(ConnError::Http2),
        }
    }
}

pub(super) async fn serve<S>(stream: S, client: Peer, server: Peer, link: Link, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + SendfileSocket + Unpin + Send + 'static,
{
    let http2 = link.http2;
    let activity = Arc::new(if http2 {
        Activity::http2()
    } else {
        Activity::new()
    });
    // HTTP/2 has no byte stream to put a 103 into between hyper's frames.
    let interim = (!http2).then(|| Arc::new(Interim::default()));
    // Nor a file: HTTP/2 frames it in DATA, and TLS must encrypt it.
    let handoff = (!http2 && sendfile::possible::<S>()).then(|| Arc::new(FileHandoff::default()));
    let io = WatchedIo {
        inner: stream,
        activity: activity.clone(),
        // The HTTP/1.1 byte-level checks mean nothing in HTTP/2's binary frames.
        framing: if http2 {
            FramingWatch::off()
        } else {
            // The watch refuses a line whose bytes before its LF reach its figure: the
            // longest line allowed, its CR, and one more.
            FramingWatch::new((shared.config.limits.line + 2).min(shared.config.max_header_bytes))
        },
        shared: shared.clone(),
        interim: interim.clone(),
        handoff: handoff.clone(),
    };
    let cfg = &shared.config;
    let service = RequestService::new(
        shared.clone(),
        client,
        server,
        link,
        activity.clone(),
        interim,
        handoff,
    );
    let conn = if http2 {
        Served::Http2(Box::pin(H2Server::new(
            io,
            service,
            &cfg.h2,
            cfg.websocket.is_some(),
            cfg.date_header,
        )))
    } else {
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
            // each) hello 8.5 against 8.8 us of CPU per request and json 8.9 against 9.0; a
            // 4 KiB echo pays for the copy (11.0 against 10.75), small API answers are the
            // common case.
            .writev(false);
        // hyper parses a head's fields into arrays on the stack, as many as it parses by
        // default, or into two 3 KiB arrays on the heap per request when told a number
        // (and glibc merges its free lists for each). So the number is left to hyper up to
        // its own: the service refuses the fields past the limit with 431 and a log line,
        // and hyper answers 431 to more fields than it parses (logged as a head too large).
        // Only a higher limit tells hyper to parse one more field than the limit.
        if cfg.limits.fields > HYPER_STACK_FIELDS {
            builder.max_headers(cfg.limits.fields + 1);
        }
        Served::Http1(Box::pin(
            builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        ))
    };
    tokio::pin!(conn);

    let (keep_alive, header_read) = (cfg.keep_alive, cfg.header_read_timeout);
    let mut phase = shared.phase.clone();
    // While draining, an idle connection stays open a moment for a request the client may
    // already have sent (closing at once would lose it); responses then say
    // `Connection: close` (service.rs), so each connection ends after at most one more.
    let drain_grace = drain_grace(&shared);
    let mut drain = (*phase.borrow() == Phase::Draining).then(|| (Instant::now(), drain_grace));
    // Re-checked at least this often; between checks the deadline is exact.
    let limits = &cfg.limits;
    let mut check = keep_alive.min(header_read);
    if limits.min_send_rate.is_some() {
        check = check.min(limits.slow_send_grace / 2);
    }
    let check = check.max(MIN_CHECK);
    let mut send_window = SendWindow::default();
    let watchdog = tokio::time::sleep(if drain.is_some() {
        Duration::ZERO
    } else {
        check
    });
    tokio::pin!(watchdog);
    let mut closing = false;
    if http2 && drain.is_some() {
        closing = true;
        conn.as_mut().get_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    log_connection_error(&shared, &e);
                }
                break;
            }
            _ = activity.close_requested(), if !closing => {
                closing = true;
                conn.as_mut().get_mut().graceful_shutdown();
            }
            _ = phase.changed(), if drain.is_none() => {
                drain = Some((Instant::now(), drain_grace));
                if http2 && !closing {
                    // GOAWAY: no new streams; those in flight finish, then hyper closes.
                    closing = true;
                    conn.as_mut().get_mut().graceful_shutdown();
                }
                watchdog.as_mut().reset(Instant::now().into());
            }
            _ = watchdog.as_mut() => {
                let now = Instant::now();
                if let Some(floor) = limits.min_send_rate {
                    if send_window.too_slow(now, &activity, floor, limits.slow_send_grace) {
                        shared.refused(super::refusals::Refusal::SlowReader);
                        break;
                    }
                }
                let watch = activity.watch();
                let stalled = matches!(watch, Watch::Stalled(_));
                match close_at(watch, keep_alive, header_read, drain) {
                    None => watchdog.as_mut().reset((now + check).into()),
                    Some(deadline) if deadline > now => {
                        watchdog.as_mut().reset(deadline.min(now + check).into())
                    }
                    Some(_) if !http2 && activity.head_partly_read()
                        && activity.time_out_head() =>
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
                    Some(_) if http2 && !closing => {
                        // HTTP/2 says goodbye with GOAWAY (RFC 9113 6.8) so that the client
                        // knows no stream was lost; a moment later the socket closes anyway.
                        closing = true;
                        conn.as_mut().get_mut().graceful_shutdown();
                        shared.dispatcher.log(
                            LogLevel::Debug,
                            "closing an idle HTTP/2 connection (GOAWAY)".to_string(),
                        );
                        watchdog.as_mut().reset((now + drain_grace).into());
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

fn log_connection_error(shared: &Shared, e: &ConnError) {
    let e = match e {
        ConnError::Http1(e) => e,
        ConnError::Http2(e) => {
            // Protocol errors the client made (a GOAWAY with the reason went out), a
            // client that hung up, floods the h2 crate stopped: each ends this connection.
            shared
                .dispatcher
                .log(LogLevel::Debug, format!("HTTP/2 connection error: {e}"));
            return;
        }
    };
    // A client that hangs up mid-way is ordinary; malformed input and timeouts are worth a
    // line at debug level (hyper already answered 400/431 where it could).
    let what = if e.is_timeout() {
        "timed out reading the request head"
    } else if e.is_parse_too_large() {
        shared.refused(super::refusals::Refusal::FieldTooLarge);
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
