//! Bodies in both directions: the pump that reads a request body as the app asks for it, and
//! the response body hyper pulls from the exchange.
//!
//! Both are bounded: the pump stops reading while the app has `request_read_ahead` bytes
//! unread, and the app's `send()` waits while `response_high_water` bytes are unwritten.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::activity::{Activity, Busy};
use super::h2::H2Body;
use super::sendfile::FileHandoff;
use super::service::drop_connection_fields;
use crate::handoff::access_record::{AccessSink, Pending};
use crate::handoff::exchange::{Aborted, BodyFailure, Exchange};
use crate::handoff::Dispatcher;
use crate::metrics::MetricsBlock;

/// A request's body as the service reads it, from either protocol's connection.
pub(super) enum RequestBody {
    Http1(Incoming),
    Http2(H2Body),
    /// An HTTP/2 CONNECT: its stream is the tunnel, not a body.
    Empty,
}

/// Why a request body could not be read to its end.
#[derive(Debug)]
pub(super) enum BodyError {
    Http1(hyper::Error),
    Http2(h2::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Http1(e) => e.fmt(f),
            BodyError::Http2(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BodyError {}

impl BodyError {
    /// Whether the client went away (end of stream or a reset before the declared length),
    /// rather than sending something malformed.
    pub(super) fn client_left(&self) -> bool {
        let io = match self {
            BodyError::Http1(e) => {
                if e.is_incomplete_message() {
                    return true;
                }
                let mut cause = std::error::Error::source(e);
                loop {
                    match cause {
                        None => return false,
                        Some(c) => match c.downcast_ref::<std::io::Error>() {
                            Some(io) => break io,
                            None => cause = c.source(),
                        },
                    }
                }
            }
            BodyError::Http2(e) => match e.get_io() {
                Some(io) => io,
                // The client reset the stream or closed the connection mid-body.
                None => return e.is_remote() && (e.is_reset() || e.is_go_away()),
            },
        };
        matches!(
            io.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        )
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Http1(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::Http1),
            RequestBody::Http2(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::Http2),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Http1(b) => b.is_end_stream(),
            RequestBody::Http2(b) => b.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Http1(b) => b.size_hint(),
            RequestBody::Http2(b) => b.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Reads the request body into the exchange, starting only when the app first calls
/// `receive()` (that first read is what makes hyper send `100 Continue`). A client that
/// sends nothing for `stall` while the app waits for its body gets 408 (RFC 9110 15.5.9);
/// a body past `limit` bytes gets 413 (RFC 9110 15.5.14) and none of its excess reaches
/// the app.
pub(super) async fn pump_request_body(
    mut body: RequestBody,
    exchange: Arc<Exchange>,
    stall: std::time::Duration,
    limit: Option<u64>,
) {
    let mut received: u64 = 0;
    loop {
        let go = std::future::poll_fn(|cx| exchange.poll_pump_ready(cx)).await;
        if !go {
            return;
        }
        let Ok(frame) = tokio::time::timeout(stall, body.frame()).await else {
            exchange.body_failed(BodyFailure::TimedOut);
            return;
        };
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    received += data.len() as u64;
                    if limit.is_some_and(|l| received > l) {
                        // Nothing past the limit reaches the app.
                        exchange.body_failed(BodyFailure::TooLarge);
                        return;
                    }
                    exchange.deliver_body(Some(data));
                }
            }
            None => {
                exchange.deliver_body(None);
                return;
            }
            Some(Err(e)) if e.client_left() => {
                // The client left mid-body: nobody to answer (and nothing to log), the app
                // hears `http.disconnect`.
                exchange.body_failed(BodyFailure::ClientLeft);
                return;
            }
            Some(Err(_)) => {
                // A broken chunk (or a reset stream): the request is over for the app too;
                // hyper closes the connection after our 400.
                exchange.body_failed(BodyFailure::Malformed);
                return;
            }
        }
    }
}

/// The body of a response, as hyper polls it, and the access record it completes when it
/// ends (its `Drop`: hyper drops a body once written, or when the client left).
pub struct ResponseBody {
    kind: BodyKind,
    /// Body bytes handed to hyper so far.
    sent: u64,
    access: Option<(Box<Pending>, Arc<dyn AccessSink>)>,
}

enum BodyKind {
    Full(Option<Bytes>),
    Streaming(StreamingBody),
    File(FileBody),
    Handoff(HandoffBody),
}

/// A file the socket sends itself (`sendfile`): to hyper a body of exact length 0, which it
/// drops at once (the head's Content-Length is written as the app's); what a body does when
/// it ends (metrics, access log, the busy mark) waits for the file instead.
pub struct HandoffBody {
    handoff: Arc<FileHandoff>,
    /// The connection stays busy until the last byte is out.
    busy: Busy,
    record: StreamRecord,
}

/// Bytes read from a file at a time for `http.response.pathsend`: large enough that a big
/// file costs few reads (measured on `pathsend-100m`: 256 KiB through `tokio::fs`, copied
/// twice more, cost 1.2x Granian's CPU), small enough that a slow client holds little.
const FILE_CHUNK: usize = 1024 * 1024;

/// The read of the next chunk, on the blocking pool: the file comes back with the bytes.
type ChunkRead = tokio::task::JoinHandle<(std::fs::File, std::io::Result<Bytes>)>;

/// A file sent as the body (`http.response.pathsend`). Each chunk is read straight into the
/// buffer hyper then writes (one copy), and the next read starts as soon as a chunk is
/// handed over, so reading overlaps with writing; a slow client holds two chunks at most.
pub struct FileBody {
    file: Option<std::fs::File>,
    reading: Option<ChunkRead>,
    /// Bytes not yet asked of the file.
    unread: u64,
    /// Bytes not yet handed to hyper.
    remaining: u64,
    /// The connection stays busy until the last byte is out.
    _busy: Busy,
    record: StreamRecord,
}
pub struct StreamingBody {
    exchange: Arc<Exchange>,
    activity: Arc<Activity>,
    finished: bool,
    /// Body bytes the head's Content-Length still owes, when it has one: hyper stops pulling
    /// the body once they are written, and that is a complete response, not a lost client.
    owed: Option<u64>,
    close_requested: bool,
    record: StreamRecord,
    /// Over HTTP/2, where the trailers' connection-specific fields are dropped and logged.
    h2_dispatcher: Option<Arc<dyn Dispatcher>>,
}

/// What the metrics need when a streamed response ends.
pub(super) struct StreamRecord {
    pub metrics: &'static MetricsBlock,
    pub method: http::Method,
    pub status: u16,
    pub started: std::time::Instant,
}

impl ResponseBody {
    fn of(kind: BodyKind) -> Self {
        ResponseBody {
            kind,
            sent: 0,
            access: None,
        }
    }

    pub(super) fn full(bytes: Bytes) -> Self {
        Self::of(BodyKind::Full(Some(bytes)))
    }

    /// A HEAD request's answer made by the engine itself (500, 503...): the head alone.
    /// (hyper leaves the body out of HTTP/1.1 answers to HEAD, not of HTTP/2 ones.)
    pub(super) fn drop_full_body(&mut self) {
        if let BodyKind::Full(bytes) = &mut self.kind {
            *bytes = None;
        }
    }

    /// Completes `pending` with this body's length and duration when it ends.
    pub(super) fn log_when_done(&mut self, pending: Box<Pending>, sink: Arc<dyn AccessSink>) {
        self.access = Some((pending, sink));
    }

    pub(super) fn file(
        file: std::fs::File,
        len: u64,
        activity: Arc<Activity>,
        record: StreamRecord,
    ) -> Self {
        Self::of(BodyKind::File(FileBody {
            file: Some(file),
            reading: None,
            unread: len,
            remaining: len,
            _busy: Busy::new(activity),
            record,
        }))
    }

    /// The file `handoff` was armed with: sent by the socket after the head.
    pub(super) fn handoff(
        handoff: Arc<FileHandoff>,
        activity: Arc<Activity>,
        record: StreamRecord,
    ) -> Self {
        Self::of(BodyKind::Handoff(HandoffBody {
            handoff,
            busy: Busy::new(activity),
            record,
        }))
    }

    pub(super) fn streaming(
        exchange: Arc<Exchange>,
        activity: Arc<Activity>,
        owed: Option<u64>,
        record: StreamRecord,
        h2_dispatcher: Option<Arc<dyn Dispatcher>>,
    ) -> Self {
        Self::of(BodyKind::Streaming(StreamingBody {
            exchange,
            activity,
            finished: false,
            owed,
            close_requested: false,
            record,
            h2_dispatcher,
        }))
    }
}

impl FileBody {
    /// Starts reading the next chunk, if any is left.
    fn start_read(&mut self) {
        let Some(mut file) = self.file.take() else {
            return;
        };
        let want = FILE_CHUNK.min(usize::try_from(self.unread).unwrap_or(FILE_CHUNK));
        if want == 0 {
            self.file = Some(file);
            return;
        }
        self.unread -= want as u64;
        self.reading = Some(tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = Vec::with_capacity(want);
            let read = (&mut file).take(want as u64).read_to_end(&mut buf);
            (file, read.map(|_| Bytes::from(buf)))
        }));
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.reading.is_none() {
            self.start_read();
        }
        let Some(reading) = self.reading.as_mut() else {
            return Poll::Ready(Some(Err(Aborted)));
        };
        let (file, read) = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(done)) => done,
            Poll::Ready(Err(_)) => return Poll::Ready(Some(Err(Aborted))),
        };
        self.reading = None;
        self.file = Some(file);
        match read {
            // The file shrank under us (or cannot be read): cut the response, as for an app
            // that sends fewer bytes than its Content-Length.
            Ok(chunk) if chunk.is_empty() => Poll::Ready(Some(Err(Aborted))),
            Err(_) => Poll::Ready(Some(Err(Aborted))),
            Ok(chunk) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                self.start_read();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }
}

impl StreamRecord {
    /// The request's metrics, now that its response has ended.
    fn record_end(&self) {
        self.metrics
            .record(&self.method, self.status, self.started.elapsed());
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        self.record.record_end();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = this.kind.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame {
            if let Some(data) = frame.data_ref() {
                this.sent += data.len() as u64;
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            BodyKind::Streaming(s) => s.finished,
            BodyKind::File(f) => f.remaining == 0,
            // Not ended: hyper then takes the length from size_hint and the head's
            // Content-Length as the app's (an ended body would make it "0").
            BodyKind::Handoff(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Streaming(_) => SizeHint::default(),
            BodyKind::File(f) => SizeHint::with_exact(f.remaining),
            // hyper writes none of it: the socket sends the file (see `sendfile`).
            BodyKind::Handoff(_) => SizeHint::with_exact(0),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let BodyKind::Handoff(_) = &self.kind {
            let BodyKind::Handoff(body) = std::mem::replace(&mut self.kind, BodyKind::Full(None))
            else {
                unreachable!("matched above")
            };
            let access = self.access.take();
            let HandoffBody {
                handoff,
                busy,
                record,
            } = body;
            handoff.when_sent(Box::new(move |sent| {
                record.record_end();
                if let Some((pending, sink)) = access {
                    sink.submit(pending.finish(sent));
                }
                drop(busy);
            }));
            return;
        }
        if let Some((pending, sink)) = self.access.take() {
            sink.submit(pending.finish(self.sent));
        }
    }
}

impl BodyKind {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        match self {
            BodyKind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::File(f) => f.poll_chunk(cx),
            // hyper takes no byte of it: the socket sends the file.
            BodyKind::Handoff(_) => Poll::Ready(None),
            BodyKind::Streaming(s) => match s.exchange.poll_chunk(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(owed) = &mut s.owed {
                        *owed = owed.saturating_sub(chunk.len() as u64);
                    }
                    // HTTP/2 frames each stream on its own: a response over its length
                    // ends at its declared bytes and the connection goes on.
                    if !s.close_requested && s.h2_dispatcher.is_none() && s.exchange.wants_close() {
                        // Asked before these last bytes are written, so that hyper reads no
                        // further request on this connection.
                        s.close_requested = true;
                        s.activity.close_after_response();
                    }
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => match s.exchange.take_trailers() {
                    Some(mut trailers) => {
                        if let Some(dispatcher) = &s.h2_dispatcher {
                            drop_connection_fields(&mut trailers, "trailer field", &**dispatcher);
                        }
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    None => {
                        s.finished = true;
                        Poll::Ready(None)
                    }
                },
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for StreamingBody {
    fn drop(&mut self) {
        self.record.record_end();
        if self.finished || self.owed == Some(0) {
            self.exchange.engine_done();
        } else {
            // hyper dropped the body before its end: the connection is gone.
            self.exchange.client_gone();
        }
        self.activity.request_ended();
    }
}
