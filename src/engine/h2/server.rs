//! One HTTP/2 connection: the handshake, accepting streams, keep-alive pings, and the
//! graceful close (GOAWAY, then the streams in flight finish). Each stream's work runs
//! inside this connection's task (`streams`), next to the frames it sends and receives: what
//! a turn's streams queue goes out in that same turn, together, with no hop between tasks.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use h2::server::{Connection, Handshake};
use h2::{Ping, PingPong, Reason};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::engine::service::RequestService;
use crate::engine::H2Limits;
use crate::handoff::LogLevel;

/// How long a keep-alive PING may go unanswered before the connection is given up.
const PONG_TIMEOUT: Duration = Duration::from_secs(20);

type StreamWork = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(in crate::engine) struct H2Server<I> {
    state: State<I>,
    service: RequestService,
    streams: FuturesUnordered<StreamWork>,
    date_header: bool,
    closing: bool,
    keep_alive: Option<KeepAlive>,
}

enum State<I> {
    Handshaking(Handshake<I, Bytes>),
    Serving(Connection<I, Bytes>),
}

struct KeepAlive {
    interval: Duration,
    pings: Option<PingPong>,
    /// When the next PING goes out, or (while one is out) when its PONG is overdue.
    timer: Pin<Box<tokio::time::Sleep>>,
    awaiting_pong: bool,
}

impl<I: AsyncRead + AsyncWrite + Unpin> H2Server<I> {
    pub(in crate::engine) fn new(
        io: I,
        service: RequestService,
        limits: &H2Limits,
        websockets: bool,
        date_header: bool,
    ) -> Self {
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(limits.max_header_list_size)
            // Fixed windows: the client's share of our memory is what the flags promise.
            .initial_window_size(limits.initial_stream_window_size)
            .initial_connection_window_size(limits.initial_connection_window_size)
            .max_pending_accept_reset_streams(limits.max_pending_reset_streams);
        if websockets {
            // RFC 8441: WebSockets over HTTP/2 streams (extended CONNECT).
            builder.enable_connect_protocol();
        }
        H2Server {
            state: State::Handshaking(builder.handshake(io)),
            service,
            streams: FuturesUnordered::new(),
            date_header,
            closing: false,
            keep_alive: limits.keep_alive_interval.map(|interval| KeepAlive {
                interval,
                pings: None,
                timer: Box::pin(tokio::time::sleep(interval)),
                awaiting_pong: false,
            }),
        }
    }

    /// GOAWAY: no new streams; those in flight finish, then the connection closes.
    pub(in crate::engine) fn graceful_shutdown(&mut self) {
        self.closing = true;
        if let State::Serving(conn) = &mut self.state {
            conn.graceful_shutdown();
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Future for H2Server<I> {
    type Output = Result<(), h2::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let State::Handshaking(handshake) = &mut this.state {
            let mut conn = std::task::ready!(Pin::new(handshake).poll(cx))?;
            if this.closing {
                conn.graceful_shutdown();
            }
            if let Some(keep_alive) = &mut this.keep_alive {
                keep_alive.pings = conn.ping_pong();
            }
            this.state = State::Serving(conn);
        }
        let State::Serving(conn) = &mut this.state else {
            unreachable!("the handshake is over")
        };
        if let Some(keep_alive) = &mut this.keep_alive {
            if keep_alive.poll_overdue(cx) {
                this.service.log(
                    LogLevel::Debug,
                    format!(
                        "closing an HTTP/2 connection: its client answered no PING within {}s",
                        PONG_TIMEOUT.as_secs()
                    ),
                );
                conn.abrupt_shutdown(Reason::NO_ERROR);
            }
        }
        if let Err(over) = this.accept(cx) {
            return Poll::Ready(over);
        }
        loop {
            while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
            // The streams just polled may have queued frames: accepting again writes them in
            // this turn, not on the wakeup their sends left. Streams it opens are polled
            // next; the loop ends when a turn opens none.
            match this.accept(cx) {
                Ok(true) => continue,
                Ok(false) => return Poll::Pending,
                Err(over) => return Poll::Ready(over),
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> H2Server<I> {
    /// Drives the socket (reads frames, writes what the streams queued) and takes the
    /// streams that opened: whether any did, or how the connection ended.
    fn accept(&mut self, cx: &mut Context<'_>) -> Result<bool, Result<(), h2::Error>> {
        let State::Serving(conn) = &mut self.state else {
            unreachable!("the handshake is over")
        };
        let mut opened = false;
        loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, reply)))) => {
                    let work = super::stream::serve(
                        self.service.clone(),
                        request,
                        reply,
                        self.date_header,
                    );
                    self.streams.push(Box::pin(work));
                    opened = true;
                }
                Poll::Ready(Some(Err(e))) => return Err(Err(e)),
                // Closed: after GOAWAY with no stream left, or the client went away.
                Poll::Ready(None) => return Err(Ok(())),
                Poll::Pending => return Ok(opened),
            }
        }
    }
}

impl KeepAlive {
    /// Sends a PING each interval; true when one went unanswered for `PONG_TIMEOUT`.
    fn poll_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(pings) = &mut self.pings else {
            return false;
        };
        loop {
            if self.awaiting_pong {
                if let Poll::Ready(answered) = pings.poll_pong(cx) {
                    self.awaiting_pong = false;
                    if answered.is_err() {
                        return false;
                    }
                    let next = tokio::time::Instant::now() + self.interval;
                    self.timer.as_mut().reset(next);
                    continue;
                }
                return self.timer.as_mut().poll(cx).is_ready();
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if pings.send_ping(Ping::opaque()).is_err() {
                return false;
            }
            self.awaiting_pong = true;
            let due = tokio::time::Instant::now() + PONG_TIMEOUT;
            self.timer.as_mut().reset(due);
        }
    }
}
