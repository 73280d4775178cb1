//! One HTTP/2 stream: its request through the `RequestService`, then the response head, the
//! body within the stream's flow control, and the trailers. A client's RST_STREAM ends the
//! stream's work at once (the request's future and body are dropped, which tells the app).
//!
//! Must not: hold more of a response than one body chunk beyond what the `h2` crate buffers
//! (`max_send_buffer_size`): a chunk is pulled, then waits until the stream has room for it.

use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::FutureExt;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{CONTENT_LENGTH, DATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;

use super::body::H2Body;
use super::tunnel::Tunnel;
use crate::engine::body::{RequestBody, ResponseBody};
use crate::engine::service::RequestService;
use crate::handoff::LogLevel;

/// The stream's reply handle, shared by the request (for 103s) and the stream's task.
type Reply = Arc<Mutex<ReplyState>>;

struct ReplyState {
    send: SendResponse<Bytes>,
    /// The final head is out (or the stream given up): no 1xx may follow it.
    final_sent: bool,
}

fn lock(reply: &Reply) -> std::sync::MutexGuard<'_, ReplyState> {
    reply.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends the final head, marking it sent under the same lock a 103 takes.
fn send_final(
    reply: &Reply,
    head: Response<()>,
    end_of_stream: bool,
) -> Result<SendStream<Bytes>, h2::Error> {
    let mut state = lock(reply);
    state.final_sent = true;
    state.send.send_response(head, end_of_stream)
}

fn reset(reply: &Reply, reason: Reason) {
    let mut state = lock(reply);
    state.final_sent = true;
    state.send.send_reset(reason);
}

/// How a request's service sends an interim response on its stream (request extension).
#[derive(Clone)]
pub(in crate::engine) struct Informational(Reply);

impl Informational {
    /// A 103 Early Hints with these `Link` fields; false if the stream cannot take one.
    pub(in crate::engine) fn early_hints(&self, links: &HeaderMap) -> bool {
        let mut hint = Response::new(());
        *hint.status_mut() = StatusCode::EARLY_HINTS;
        *hint.headers_mut() = links.clone();
        let mut state = lock(&self.0);
        !state.final_sent && state.send.send_informational(hint).is_ok()
    }
}

/// Where a WebSocket handshake over HTTP/2 (extended CONNECT) finds its stream once the
/// 200 is out (request extension).
#[derive(Clone)]
pub(in crate::engine) struct TunnelSlot(Arc<Mutex<Option<tokio::sync::oneshot::Receiver<Tunnel>>>>);

impl TunnelSlot {
    pub(in crate::engine) fn take(&self) -> Option<tokio::sync::oneshot::Receiver<Tunnel>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Serves one stream to its end. A panic while serving it costs that stream only: it is
/// reset and logged, and the connection's other streams go on.
pub(super) async fn serve(
    service: RequestService,
    request: Request<RecvStream>,
    reply: SendResponse<Bytes>,
    date_header: bool,
) {
    let reply: Reply = Arc::new(Mutex::new(ReplyState {
        send: reply,
        final_sent: false,
    }));
    let serving = serve_stream(service.clone(), request, reply.clone(), date_header);
    if let Err(panic) = AssertUnwindSafe(serving).catch_unwind().await {
        let what = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        service.log(
            LogLevel::Error,
            format!(
                "a bug in ferricorn: serving an HTTP/2 stream panicked ({what}); the stream \
                 was reset and the connection goes on. Please report it."
            ),
        );
        reset(&reply, Reason::INTERNAL_ERROR);
    }
}

async fn serve_stream(
    service: RequestService,
    request: Request<RecvStream>,
    reply: Reply,
    date_header: bool,
) {
    let (mut parts, recv) = request.into_parts();
    let mut tunnel = None;
    let body = if parts.method == Method::CONNECT {
        // RFC 9110 9.3.6: a CONNECT carries no content; its DATA belongs to the tunnel.
        if crate::engine::service::content_length(&parts.headers).is_some_and(|n| n > 0) {
            reset(&reply, Reason::PROTOCOL_ERROR);
            return;
        }
        // RFC 8441: the `:protocol` the WebSocket handshake looks for, and the stream kept
        // for the socket.
        if let Some(protocol) = parts.extensions.remove::<h2::ext::Protocol>() {
            if protocol.as_str().eq_ignore_ascii_case("websocket") {
                parts
                    .extensions
                    .insert(hyper::ext::Protocol::from_static("websocket"));
            }
        }
        let (give, slot) = tokio::sync::oneshot::channel();
        parts
            .extensions
            .insert(TunnelSlot(Arc::new(Mutex::new(Some(slot)))));
        tunnel = Some((give, recv));
        RequestBody::Empty
    } else {
        let length = crate::engine::service::content_length(&parts.headers);
        RequestBody::Http2(H2Body::new(recv, length))
    };
    parts.extensions.insert(Informational(reply.clone()));
    let responding = service.respond(Request::from_parts(parts, body));
    let cancelled = poll_fn(|cx| lock(&reply).send.poll_reset(cx));
    let response = tokio::select! {
        biased;
        // The client cancelled the stream: dropping the request's future tells the app.
        _ = cancelled => return,
        response = responding => response,
    };
    let Ok(response) = response else {
        reset(&reply, Reason::INTERNAL_ERROR);
        return;
    };
    let (head, body) = response.into_parts();
    let mut head = Response::from_parts(head, ());
    // The engine's own answers may say `connection: close` (HTTP/1.1's way); the app's
    // connection fields were already dropped with a debug line.
    for name in crate::engine::service::CONNECTION_HEADERS {
        head.headers_mut().remove(name);
    }
    if date_header {
        head.headers_mut().entry(DATE).or_insert_with(date_now);
    }
    if let Some((give, recv)) = tunnel {
        if head.status().is_success() {
            // RFC 9110 9.3.6: a 2xx to CONNECT has no Content-Length and no content; what
            // follows on the stream is the tunnel's.
            head.headers_mut().remove(CONTENT_LENGTH);
            if give.is_closed() {
                // No WebSocket holds the other end (an HTTP app said 2xx): the tunnel opens
                // and closes at once, as on HTTP/1.1, and the app's body goes nowhere.
                service.log(
                    LogLevel::Debug,
                    "a 2xx answer to a CONNECT that is no WebSocket: the tunnel was closed \
                     at once, the body dropped"
                        .to_string(),
                );
                let _ = send_final(&reply, head, true);
            } else if let Ok(send) = send_final(&reply, head, false) {
                let _ = give.send(Tunnel::new(send, recv));
            }
            return;
        }
    }
    if body.is_end_stream() {
        let _ = send_final(&reply, head, true);
        return;
    }
    if let Some(length) = body.size_hint().exact() {
        head.headers_mut()
            .entry(CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(length));
    }
    let sent = send_final(&reply, head, false);
    match sent {
        Ok(send) => send_body(body, send).await,
        Err(_) => reset(&reply, Reason::INTERNAL_ERROR),
    }
}

/// The body as DATA frames, then its trailers, pulling a chunk only when the stream has
/// room for it; a reset by the client or a failed body ends it.
async fn send_body(mut body: ResponseBody, mut send: SendStream<Bytes>) {
    loop {
        let frame = tokio::select! {
            biased;
            _ = poll_fn(|cx| send.poll_reset(cx)) => return,
            frame = body.frame() => frame,
        };
        let frame = match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(_)) => {
                // The app broke its response: the client must not take it as whole.
                send.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(mut trailers) = frame.into_trailers() {
                    for name in crate::engine::service::CONNECTION_HEADERS {
                        trailers.remove(name);
                    }
                    let _ = send.send_trailers(trailers);
                } else {
                    let _ = send.send_data(Bytes::new(), true);
                }
                return;
            }
        };
        let end = body.is_end_stream();
        if !data.is_empty() {
            // Wait for room before handing the chunk over: the h2 crate would buffer it
            // whole, and a client that reads nothing must cost a bounded buffer. A claim of
            // one byte, not the chunk's length, so a waiting stream holds no window other
            // streams need.
            send.reserve_capacity(1);
            if !poll_fn(|cx| poll_room(&mut send, cx)).await {
                return;
            }
        }
        if send.send_data(data, end).is_err() || end {
            return;
        }
    }
}

/// Ready(true) once the stream can take data; Ready(false) if it closed or the client
/// reset it.
fn poll_room(send: &mut SendStream<Bytes>, cx: &mut Context<'_>) -> Poll<bool> {
    if send.poll_reset(cx).is_ready() {
        return Poll::Ready(false);
    }
    while send.capacity() == 0 {
        match std::task::ready!(send.poll_capacity(cx)) {
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Poll::Ready(false),
        }
    }
    Poll::Ready(true)
}

/// The `Date` field, formatted once a second.
fn date_now() -> HeaderValue {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, HeaderValue)> =
            const { std::cell::RefCell::new((0, HeaderValue::from_static(""))) };
    }
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            let text = httpdate::fmt_http_date(now);
            *cache = (
                second,
                HeaderValue::from_str(&text).expect("an HTTP date is ASCII"),
            );
        }
        cache.1.clone()
    })
}
