//! The life of an accepted socket: one task that moves messages between the wire and the
//! session, answers pings, sends keepalive pings, enforces the size limit, and closes (1001
//! on shutdown, the app's code, or the code an error calls for). Must not: hold a message
//! the app has not asked for beyond `--ws-max-queue`.

use std::future::{poll_fn, Future};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use yawc::close::CloseCode;
use yawc::frame::{Frame, OpCode};
use yawc::streaming::Streaming;
use yawc::{Role, UpgradeFut, WebSocket};

use super::reassembly::{Reassembly, Violation};
use super::{WsConfig, CLOSE_TIMEOUT};
use crate::engine::{Phase, Shared};
use crate::handoff::ws_session::{Outgoing, Session};
use crate::handoff::LogLevel;

/// The life of an accepted socket.
pub(super) async fn run(
    shared: Arc<Shared>,
    config: WsConfig,
    socket: Socket,
    session: Arc<Session>,
) {
    let failed = |why: String| {
        session.finish(1006, "");
        shared
            .dispatcher
            .log(LogLevel::Debug, format!("WebSocket upgrade failed: {why}"));
        shared
            .stats
            .websocket_sessions
            .fetch_sub(1, Ordering::Relaxed);
    };
    match socket {
        Socket::Http1(upgrade) => match upgrade.await {
            Ok(ws) => serve(&shared, &config, ws.into_streaming(), &session).await,
            Err(e) => failed(e.to_string()),
        },
        Socket::Http2 { tunnel, extensions } => {
            let Ok(tunnel) = tunnel.await else {
                return failed("the stream ended before the handshake's answer".to_string());
            };
            let options = super::options(&config);
            match WebSocket::from_stream_with_extensions(
                tunnel,
                Role::Server,
                extensions.as_deref(),
                options,
            ) {
                Ok(ws) => serve(&shared, &config, ws.into_streaming(), &session).await,
                Err(e) => failed(e.to_string()),
            }
        }
    }
}

/// Where an accepted session's frames travel.
pub(in crate::engine) enum Socket {
    /// The HTTP/1.1 connection itself, once hyper hands it over after the 101.
    Http1(UpgradeFut),
    /// An HTTP/2 stream (RFC 8441), once its 200 went out; `extensions` is the
    /// `Sec-WebSocket-Extensions` the handshake agreed.
    Http2 {
        tunnel: tokio::sync::oneshot::Receiver<crate::engine::h2::Tunnel>,
        extensions: Option<String>,
    },
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    config: &WsConfig,
    ws: Streaming<S>,
    session: &Arc<Session>,
) {
    let mut pump = Pump {
        ws,
        reassembly: Reassembly::new(config.max_size),
        session: session.clone(),
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        next_ping: config
            .ping_interval
            .map(|i| tokio::time::Instant::now() + i),
        pong_due: None,
        closing_since: None,
        timer: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
        flushed: true,
        ending: None,
    };
    let mut phase = shared.phase.clone();
    let mut watching = true;
    let (code, reason) = loop {
        if *phase.borrow_and_update() == Phase::Draining {
            // Server shutdown: the app hears of it at once; the pump sends the 1001.
            session.finish(1001, "");
        }
        tokio::select! {
            ended = poll_fn(|cx| pump.poll(cx)) => break ended,
            changed = phase.changed(), if watching => {
                if changed.is_err() {
                    session.finish(1001, "");
                    watching = false;
                }
            }
        }
    };
    session.finish(code, &reason);
    shared
        .stats
        .websocket_sessions
        .fetch_sub(1, Ordering::Relaxed);
}

struct Pump<S> {
    /// The frame layer: control frames, masking, inflate/deflate. Messages are ours.
    ws: Streaming<S>,
    /// Messages from frames: the fragmented one in progress, the size limit.
    reassembly: Reassembly,
    session: Arc<Session>,
    ping_interval: Option<Duration>,
    ping_timeout: Option<Duration>,
    next_ping: Option<tokio::time::Instant>,
    /// A keepalive ping is out; the session ends if nothing comes back by then.
    pong_due: Option<tokio::time::Instant>,
    /// We sent a close frame and wait for the peer's.
    closing_since: Option<Instant>,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    flushed: bool,
    /// The session is over: what the app will hear, and how far the last flush got.
    ending: Option<Ending>,
}

struct Ending {
    ended: Ended,
    /// Our own close frame, when the codec did not queue one.
    close: Option<Frame>,
    /// The codec's queued frames (its close answer among them) went out.
    queued_flushed: bool,
    deadline: tokio::time::Instant,
}

type Ended = (u16, String);

impl<S: AsyncRead + AsyncWrite + Unpin> Pump<S> {
    /// Runs until the session ends; yields the code and reason the app should see.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        loop {
            if self.ending.is_some() {
                return self.poll_end(cx);
            }
            if self.closing_since.is_none() && self.session.is_finished() {
                // The server is shutting down (the pump itself only finishes on the way out).
                self.start_close(1001, "");
            }
            if let Poll::Ready(ended) = self.poll_send(cx) {
                self.end(ended, None);
                continue;
            }
            if self.poll_receive(cx).is_ready() {
                continue;
            }
            self.poll_timers(cx);
            if self.ending.is_none() {
                return Poll::Pending;
            }
        }
    }

    /// The session is over; what is left is to flush the close handshake (bounded).
    fn end(&mut self, ended: Ended, close: Option<Frame>) {
        self.end_with(ended, close, false);
    }

    /// `replace_queued`: what the frame layer queued (its close answer) is dropped, for the
    /// cases where its close code is not the one RFC 6455 asks for.
    ///
    /// Once our own close frame went out, nothing more does (RFC 6455 1.4 and 5.5.1): not
    /// the frame layer's answer to the peer's close, nor a close for a protocol error in it.
    fn end_with(&mut self, ended: Ended, close: Option<Frame>, replace_queued: bool) {
        let (close, replace_queued) = if self.closing_since.is_some() {
            (None, true)
        } else {
            (close, replace_queued)
        };
        if self.ending.is_none() {
            self.ending = Some(Ending {
                ended,
                close,
                queued_flushed: replace_queued,
                deadline: tokio::time::Instant::now() + CLOSE_TIMEOUT,
            });
        }
    }

    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        let Some(ending) = self.ending.as_mut() else {
            return Poll::Pending;
        };
        if tokio::time::Instant::now() >= ending.deadline {
            return Poll::Ready(ending.ended.clone());
        }
        let mut ws = std::pin::Pin::new(&mut self.ws);
        if !ending.queued_flushed {
            // `poll_ready` first writes what the codec queued (pongs, its close answer).
            match ws.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => ending.queued_flushed = true,
                Poll::Ready(Err(_)) => return Poll::Ready(ending.ended.clone()),
                Poll::Pending => {
                    self.timer.as_mut().reset(ending.deadline);
                    let _ = self.timer.as_mut().poll(cx);
                    return Poll::Pending;
                }
            }
        }
        if let Some(frame) = ending.close.take() {
            // `poll_close` then flushes it, and sends no close frame of its own.
            let _ = ws.as_mut().start_send(frame);
        }
        match ws.as_mut().poll_close(cx) {
            Poll::Ready(_) => Poll::Ready(ending.ended.clone()),
            Poll::Pending => {
                self.timer.as_mut().reset(ending.deadline);
                let _ = self.timer.as_mut().poll(cx);
                Poll::Pending
            }
        }
    }

    fn start_close(&mut self, code: u16, reason: &str) {
        if self.closing_since.is_some() {
            return;
        }
        self.closing_since = Some(Instant::now());
        let frame = Frame::close(CloseCode::from(code), reason.as_bytes());
        let mut ws = std::pin::Pin::new(&mut self.ws);
        let _ = ws.as_mut().start_send(frame);
        self.flushed = false;
    }

    /// Moves the app's messages to the wire.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        loop {
            let mut ws = std::pin::Pin::new(&mut self.ws);
            match ws.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready((1006, String::new())),
                Poll::Pending => return Poll::Pending,
            }
            if self.closing_since.is_some() {
                break;
            }
            let message = match self.session.poll_outgoing(cx) {
                Poll::Ready(m) => m,
                Poll::Pending => break,
            };
            let frame = match message {
                Outgoing::Text(b) => Frame::text(b),
                Outgoing::Binary(b) => Frame::binary(b),
                Outgoing::Close(code, reason) => {
                    self.start_close(code, &reason);
                    continue;
                }
            };
            if ws.as_mut().start_send(frame).is_err() {
                return Poll::Ready((1006, String::new()));
            }
            self.flushed = false;
        }
        if !self.flushed {
            match std::pin::Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flushed = true,
                Poll::Ready(Err(_)) => return Poll::Ready((1006, String::new())),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    /// Reads one frame if the app has room for it. `Ready`: go round again.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.closing_since.is_none() && self.session.poll_inbox_room(cx).is_pending() {
            return Poll::Pending;
        }
        let frame = match self.ws.poll_next_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(frame)) => frame,
            Poll::Ready(Err(yawc::WebSocketError::InvalidOpCode(_))) => {
                // The frame layer queued 1003 ("unsupported data"); a reserved opcode is a
                // protocol error, 1002 (RFC 6455 5.2 and 7.4.1).
                let close = Frame::close(CloseCode::from(1002), b"reserved opcode");
                self.end_with((1002, String::new()), Some(close), true);
                return Poll::Ready(());
            }
            Poll::Ready(Err(e)) => {
                // The frame layer has queued a close frame with this code for the peer.
                self.end((error_close_code(&e), String::new()), None);
                return Poll::Ready(());
            }
        };
        self.pong_due = None;
        let opcode = frame.opcode();
        match opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let fin = frame.is_fin();
                if let Err((code, reason)) = self.assemble(opcode, fin, frame.into_payload()) {
                    let close = Frame::close(CloseCode::from(code), reason.as_bytes());
                    self.end((code, reason.to_string()), Some(close));
                }
            }
            OpCode::Close if frame.payload().len() > 125 => {
                // Control frames carry at most 125 bytes (RFC 6455 5.5); the frame layer
                // would echo this one.
                let close = Frame::close(CloseCode::from(1002), b"close frame too long");
                self.end_with((1002, String::new()), Some(close), true);
            }
            OpCode::Close => {
                let code = frame.close_code().map_or(1005, u16::from);
                let reason = frame
                    .close_reason()
                    .ok()
                    .flatten()
                    .unwrap_or("")
                    .to_string();
                // The frame layer queued its answer (the same code), even when this is the
                // peer's answer to ours: `end` drops it then.
                self.end((code, reason), None);
            }
            _ => {} // pings are answered by the frame layer; pongs only prove the peer is alive
        }
        Poll::Ready(())
    }

    /// Reassembles messages from frames; a whole one goes to the app (while closing, what
    /// the peer still sends is dropped).
    fn assemble(&mut self, opcode: OpCode, fin: bool, payload: Bytes) -> Result<(), Violation> {
        if let Some((text, data)) = self.reassembly.push(opcode, fin, payload)? {
            if self.closing_since.is_none() {
                self.session.deliver(text, data);
            }
        }
        Ok(())
    }

    fn poll_timers(&mut self, cx: &mut Context<'_>) {
        let now = tokio::time::Instant::now();
        if self.pong_due.is_some_and(|due| now >= due) {
            let reason = "keepalive ping timeout";
            self.end(
                (1011, reason.to_string()),
                Some(Frame::close(CloseCode::from(1011), reason.as_bytes())),
            );
            return;
        }
        let close_deadline = self
            .closing_since
            .map(|s| tokio::time::Instant::from_std(s + CLOSE_TIMEOUT));
        if close_deadline.is_some_and(|d| now >= d) {
            // The peer never answered our close frame.
            self.end((1006, String::new()), None);
            return;
        }
        if let (Some(at), None) = (self.next_ping, self.closing_since) {
            if now >= at {
                let mut ws = std::pin::Pin::new(&mut self.ws);
                if let Poll::Ready(Ok(())) = ws.as_mut().poll_ready(cx) {
                    let _ = ws.as_mut().start_send(Frame::ping(Bytes::new()));
                    self.flushed = ws.as_mut().poll_flush(cx).is_ready();
                    if self.pong_due.is_none() {
                        self.pong_due = self.ping_timeout.map(|t| now + t);
                    }
                }
                self.next_ping = self.ping_interval.map(|i| now + i);
            }
        }
        let next = [self.next_ping, self.pong_due, close_deadline]
            .into_iter()
            .flatten()
            .min();
        if let Some(next) = next {
            self.timer.as_mut().reset(next);
            if self.timer.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
    }
}

fn error_close_code(e: &yawc::WebSocketError) -> u16 {
    use yawc::WebSocketError as E;
    match e {
        E::FrameTooLarge => 1009,
        E::InvalidUTF8 => 1007,
        E::ConnectionClosed | E::IoError(_) => 1006,
        _ => 1002,
    }
}
