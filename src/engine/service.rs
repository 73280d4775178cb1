//! From a parsed request to a response: admission, body prefetch, dispatch, and the wait
//! for the app's answer.
//!
//! One `RequestService` per connection; hyper calls it once per request, in order (HTTP/1.1
//! pipelining is serialised by hyper). This module decides which request reaches the app and
//! turns the app's [`Response`] into a hyper response; the wire format is hyper's.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST, RETRY_AFTER, TRANSFER_ENCODING,
};
use http::{HeaderValue, Request, Response as HttpResponse, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::activity::{Activity, Busy};
use super::body::{pump_request_body, RequestBody, ResponseBody, StreamRecord};
use super::h2::Informational;
use super::interim::{early_hints_h1, Interim};
use super::refusals::Refusal;
use super::request_id;
use super::sendfile::{FileHandoff, SENDFILE_MIN};
use super::ws;
use super::RequestLimits;
use super::{Error, Shared};
use crate::handoff::access_record::Pending;
use crate::handoff::detach;
use crate::handoff::exchange::{Awaited, Exchange, FileSource, Response, ResponseHead};
use crate::handoff::{Dispatcher, IncomingRequest, LogLevel, Peer, RequestHead, TlsInfo};
use crate::metrics::Rejected;

/// Request bodies up to this size, with a Content-Length and no `Expect: 100-continue`, are
/// read whole before the app is called: one handoff instead of a round trip per chunk.
const PREFETCH_LIMIT: u64 = 64 * 1024;

/// `http.response.early_hint` messages one request may send; an app that loops on them
/// must not make the server queue 103s without end.
const MAX_EARLY_HINTS: usize = 16;

#[derive(Clone)]
pub(super) struct RequestService {
    shared: Arc<Shared>,
    client: Peer,
    server: Peer,
    link: Link,
    activity: Arc<Activity>,
    /// HTTP/1.1: where a 103 waits for its moment on the socket.
    interim: Option<Arc<Interim>>,
    /// Plain-text HTTP/1.1: where a file response waits for the socket to `sendfile` it.
    handoff: Option<Arc<FileHandoff>>,
}

/// How a connection reached us: its scheme, and on TLS what the `tls` extension reports.
#[derive(Clone)]
pub(in crate::engine) struct Link {
    pub(super) scheme: &'static str,
    pub(super) tls: Option<Arc<TlsInfo>>,
    /// HTTP/2 (by ALPN on TLS, by prior knowledge on plain text) rather than HTTP/1.1.
    pub(super) http2: bool,
}

impl RequestService {
    /// A line for the server's log (the `ferricorn.error` logger).
    pub(super) fn log(&self, level: LogLevel, message: String) {
        self.shared.dispatcher.log(level, message);
    }

    pub(super) fn new(
        shared: Arc<Shared>,
        client: Peer,
        server: Peer,
        link: Link,
        activity: Arc<Activity>,
        interim: Option<Arc<Interim>>,
        handoff: Option<Arc<FileHandoff>>,
    ) -> Self {
        RequestService {
            shared,
            client,
            server,
            link,
            activity,
            interim,
            handoff,
        }
    }
}

/// Marks a response to a client that already left (mid-body): not logged as an answer.
#[derive(Clone, Copy)]
struct Unanswered;

/// For a client that left mid-body: a 400 that closes the connection, which nobody reads
/// and no access line reports.
fn unanswered() -> HttpResponse<ResponseBody> {
    let mut gone = bad_request();
    gone.extensions_mut().insert(Unanswered);
    gone
}

/// The service's one error: a request pipelined behind a response that broke its framing is
/// not answered; hyper closes the connection instead.
#[derive(Debug)]
pub(super) struct ConnectionClosing;

impl std::fmt::Display for ConnectionClosing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connection is closing after a response that broke its framing")
    }
}

impl std::error::Error for ConnectionClosing {}

/// What serving one request resolves to.
pub(super) type Responding =
    Pin<Box<dyn Future<Output = Result<HttpResponse<ResponseBody>, ConnectionClosing>> + Send>>;

/// HTTP/1.1, through hyper.
impl hyper::service::Service<Request<Incoming>> for RequestService {
    type Response = HttpResponse<ResponseBody>;
    type Error = ConnectionClosing;
    type Future = Responding;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.respond(req.map(RequestBody::Http1))
    }
}

impl RequestService {
    /// Serves one request of either protocol (HTTP/2 streams come from `h2::stream`).
    pub(super) fn respond(&self, mut req: Request<RequestBody>) -> Responding {
        let this = self.clone();
        // The target outlives the head (the access record, the app's cycle): copied, so
        // that it does not hold the connection's read buffer for the whole response.
        let target = std::mem::take(req.uri_mut());
        *req.uri_mut() = detach::uri(target);
        Box::pin(async move {
            if let Some(handoff) = &this.handoff {
                // The last response's file is still going out (engine/sendfile.rs): this
                // one's head, or its 100 Continue or 103, must not come before its end.
                poll_fn(|cx| handoff.poll_idle(cx)).await;
            }
            if this.activity.closing() {
                return Err(ConnectionClosing);
            }
            let shared = this.shared.clone();
            let config = &shared.config;
            let (client, scheme) = this.resolve_client(req.headers());
            let request_id = config
                .request_id_header
                .as_ref()
                .map(|name| request_id::take_or_make(name, req.headers()));
            let access = config.access_log.as_ref().map(|sink| {
                Pending::begin(
                    sink.as_ref(),
                    req.method(),
                    req.uri(),
                    req.version(),
                    req.headers(),
                    &client,
                    request_id.clone(),
                )
            });
            let is_head = req.method() == http::Method::HEAD;
            let mut response = this.handle(req, client, scheme, request_id.clone()).await;
            if is_head {
                response.body_mut().drop_full_body();
            }
            // On every response, the app's and the engine's own (400, 408, 413, 503...).
            let headers = response.headers_mut();
            for (name, value) in &config.default_headers {
                if !headers.contains_key(name) {
                    headers.insert(name.clone(), value.clone());
                }
            }
            if let (Some(name), Some(id)) = (&config.request_id_header, request_id) {
                headers.entry(name).or_insert(id);
            }
            // A WebSocket session is logged by the adapter ("WebSocket /path" [accepted]).
            if let (Some(mut pending), Some(sink)) = (access, &config.access_log) {
                let logged = response.status() != StatusCode::SWITCHING_PROTOCOLS
                    && response.extensions().get::<Unanswered>().is_none();
                if logged {
                    let status = response.status().as_u16();
                    pending.responded(status, response.headers(), sink.response_headers());
                    response.body_mut().log_when_done(pending, sink.clone());
                }
            }
            Ok(response)
        })
    }
}

/// Marks the request finished on the connection whatever way the handling future ends, and
/// tells the app when the client left before the response was handed to hyper.
struct InFlightGuard {
    activity: Arc<Activity>,
    exchange: Option<Arc<Exchange>>,
    answered: bool,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(ex) = &self.exchange {
            if !self.answered {
                ex.client_gone();
            }
        }
        self.activity.request_ended();
    }
}

impl RequestService {
    /// Who the client is and which scheme it used, after trusted proxies' headers.
    fn resolve_client(&self, headers: &http::HeaderMap) -> (Peer, &'static str) {
        let config = &self.shared.config;
        if config.proxy_headers {
            config
                .trusted_proxies
                .resolve(&self.client, self.link.scheme, headers)
        } else {
            (self.client.clone(), self.link.scheme)
        }
    }

    async fn handle(
        self,
        req: Request<RequestBody>,
        client: Peer,
        scheme: &'static str,
        request_id: Option<HeaderValue>,
    ) -> HttpResponse<ResponseBody> {
        let shared = &self.shared;
        self.activity.request_started();
        let started = std::time::Instant::now();
        let metrics = shared.config.metrics;
        let method = req.method().clone();
        // Only a request whose body is all in (none, here) may have its file sent beneath
        // hyper: hyper turns idle when a request body ends, and an idle hyper could write
        // an answer of its own into the middle of the file (engine/sendfile.rs).
        let no_request_body = req.body().is_end_stream();
        let mut guard = InFlightGuard {
            activity: self.activity.clone(),
            exchange: None,
            answered: false,
        };
        let stats = &shared.stats;
        if let Some(problem) = host_problem(&req) {
            guard.answered = true;
            metrics.record(&method, 400, started.elapsed());
            shared
                .dispatcher
                .log(LogLevel::Debug, format!("{problem}: answered 400"));
            return bad_request();
        }
        if let Some((why, status)) = refuse_head(&req, &shared.config.limits) {
            guard.answered = true;
            metrics.record(&method, status.as_u16(), started.elapsed());
            shared.refused(why);
            return refusal(status);
        }
        let permit = match shared.admission.admit().await {
            Ok(permit) => permit,
            Err(why) => {
                guard.answered = true;
                metrics.rejected(match why {
                    super::Rejection::Limit => Rejected::Limit,
                    super::Rejection::QueueTimeout => Rejected::QueueTimeout,
                });
                metrics.record(&method, 503, started.elapsed());
                if let Some(line) = shared.admission.note_rejection(why) {
                    shared.dispatcher.log(LogLevel::Warning, line);
                }
                let mut response = service_unavailable(shared.config.retry_after);
                if stats.draining.load(Ordering::Relaxed) {
                    // As every answer while draining: the client reconnects elsewhere.
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                return response;
            }
        };
        if let Some(ws_config) = &shared.config.websocket {
            if ws::is_upgrade(&req) {
                guard.answered = true;
                let mut head = ws::request_head(&req, client, self.server.clone(), scheme);
                head.tls = self.link.tls.clone();
                head.request_id = request_id;
                // Over HTTP/2 the session is a stream of a connection that goes on serving:
                // it stays busy while the session lives (over HTTP/1.1 hyper hands the
                // socket over and the connection's watchdog is done).
                let busy =
                    (req.version() == Version::HTTP_2).then(|| Busy::new(self.activity.clone()));
                return ws::handshake(shared, ws_config, req, head, permit, busy).await;
            }
        }
        let id = stats.next_exchange_id.fetch_add(1, Ordering::Relaxed);
        let exchange = Arc::new(Exchange::new(
            id,
            shared.dispatcher.clone(),
            stats.requests_in_flight.clone(),
            shared.config.response_high_water,
            shared.config.request_read_ahead,
        ));
        exchange.hold(permit);
        if shared.config.cancel_on_disconnect {
            exchange.announce_disconnect();
        }
        guard.exchange = Some(exchange.clone());

        let (mut parts, body) = req.into_parts();
        target_host_wins(&mut parts);
        if body.is_end_stream() {
            exchange.set_full_body(Bytes::new());
        } else if prefetchable(&parts.headers, body.size_hint().exact()) {
            match read_whole(body, shared.config.limits.body_timeout).await {
                Ok(bytes) => exchange.set_full_body(bytes),
                Err(e) => {
                    shared.dispatcher.log(LogLevel::Debug, e.to_string());
                    guard.answered = true;
                    exchange.client_gone();
                    return match e {
                        // RFC 9110 15.5.9: the client did not send the whole request in time.
                        Error::RequestBodyTimeout => {
                            shared.refused(Refusal::BodyStalled);
                            request_timeout()
                        }
                        Error::ClientLeftMidBody => unanswered(),
                        _ => bad_request(),
                    };
                }
            }
        } else {
            let limits = &shared.config.limits;
            tokio::spawn(pump_request_body(
                body,
                exchange.clone(),
                limits.body_timeout,
                limits.body,
            ));
        }

        let http2 = parts.version == Version::HTTP_2;
        let version = parts.version;
        let informational = parts.extensions.remove::<Informational>();
        shared.dispatcher.dispatch(IncomingRequest {
            exchange: exchange.clone(),
            head: RequestHead {
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                headers: parts.headers,
                client,
                server: self.server.clone(),
                scheme,
                tls: self.link.tls.clone(),
                request_id,
            },
        });

        let mut hints_left = MAX_EARLY_HINTS;
        let response = loop {
            match poll_fn(|cx| exchange.poll_response(cx)).await {
                Awaited::Response(response) => break response,
                Awaited::EarlyHints(mut hints) => {
                    if hints.len() > hints_left {
                        shared.dispatcher.log(
                            LogLevel::Debug,
                            format!(
                                "early hints past {MAX_EARLY_HINTS} for one request dropped: {}",
                                hints.len() - hints_left
                            ),
                        );
                        hints.truncate(hints_left);
                    }
                    hints_left -= hints.len();
                    if !hints.is_empty() {
                        self.send_early_hints(&hints, version, informational.as_ref())
                            .await
                    }
                }
            }
        };
        guard.answered = true;
        // HTTP/2 ends connections with GOAWAY, never with a header.
        let draining = stats.draining.load(Ordering::Relaxed) && !http2;
        let response = if http2 {
            response.map_head(|head| drop_connection_headers(head, shared))
        } else {
            response
        };
        match response {
            Response::Full(head, body) => {
                exchange.engine_done();
                metrics.record(&method, head.status.as_u16(), started.elapsed());
                build(head, ResponseBody::full(body), draining)
            }
            Response::BodyTimedOut => {
                shared.refused(Refusal::BodyStalled);
                request_timeout()
            }
            Response::BodyTooLarge => {
                shared.refused(Refusal::BodyTooLarge);
                refusal(StatusCode::PAYLOAD_TOO_LARGE)
            }
            Response::BadRequestBody => {
                shared.dispatcher.log(
                    LogLevel::Debug,
                    "malformed request body: answered 400".to_string(),
                );
                bad_request()
            }
            Response::ClientLeft => unanswered(),
            Response::File(head, source) => {
                exchange.engine_done();
                let record = StreamRecord {
                    metrics,
                    method: method.clone(),
                    status: head.status.as_u16(),
                    started,
                };
                let described = source.to_string();
                match open_for_sending(source).await {
                    Ok((file, start, len)) => {
                        let mut head = head;
                        // The app's own Content-Length is held to: a file shorter than it
                        // ends the body early, which cuts the connection (as for an app
                        // that sends fewer bytes than it declared).
                        // An app that chose chunked framing (Transfer-Encoding, HTTP/1.1
                        // only: HTTP/2 heads lost it above) keeps it; a Content-Length beside
                        // it would make the head invalid (RFC 9112 6.2).
                        let bodyless = matches!(head.status.as_u16(), 204 | 304);
                        let len = match content_length(&head.headers) {
                            Some(declared) => declared,
                            // A 204 or 304 has no body for a length to describe (RFC 9110
                            // 8.6); the adapter already took the app's framing fields away.
                            None if bodyless => 0,
                            None if head.headers.contains_key(TRANSFER_ENCODING) => len,
                            None => {
                                head.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                                len
                            }
                        };
                        let chunked = head.headers.contains_key(TRANSFER_ENCODING);
                        let body = if method == http::Method::HEAD || bodyless {
                            metrics.record(&method, record.status, started.elapsed());
                            ResponseBody::full(Bytes::new())
                        } else if let Some(handoff) = self.handoff.as_ref().filter(|_| {
                            len >= SENDFILE_MIN
                                && !chunked
                                && no_request_body
                                // hyper writes no Content-Length into a 2xx to CONNECT.
                                && method != http::Method::CONNECT
                        }) {
                            // Zero copy: the socket sends the file after the head hyper
                            // writes (engine/sendfile.rs).
                            shared.dispatcher.log(
                                LogLevel::Debug,
                                format!("a file response: {len} bytes go out with sendfile(2)"),
                            );
                            handoff.arm(file, start, len);
                            ResponseBody::handoff(handoff.clone(), self.activity.clone(), record)
                        } else {
                            ResponseBody::file(file, len, self.activity.clone(), record)
                        };
                        build(head, body, draining)
                    }
                    Err(e) => {
                        metrics.record(&method, 500, started.elapsed());
                        shared
                            .dispatcher
                            .log(LogLevel::Error, format!("{described}: {e}"));
                        simple_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Internal Server Error\n",
                        )
                    }
                }
            }
            Response::Streaming(head) => {
                // The guard's job passes to the body: the request stays busy until it ends.
                self.activity.busy.fetch_add(1, Ordering::Relaxed);
                let finish = StreamRecord {
                    metrics,
                    method,
                    status: head.status.as_u16(),
                    started,
                };
                let owed = if matches!(head.status.as_u16(), 204 | 304) {
                    Some(0)
                } else {
                    content_length(&head.headers)
                };
                let trailers_for_h2 = http2.then(|| shared.dispatcher.clone());
                let body = ResponseBody::streaming(
                    exchange.clone(),
                    self.activity.clone(),
                    owed,
                    finish,
                    trailers_for_h2,
                );
                build(head, body, draining)
            }
        }
    }
}

impl RequestService {
    /// `http.response.early_hint`: each a 103 before the final response, where the client
    /// can take one.
    async fn send_early_hints(
        &self,
        hints: &[http::HeaderMap],
        version: Version,
        stream: Option<&Informational>,
    ) {
        if let Some(stream) = stream {
            for links in hints {
                // A stream that can take no more is ending anyway.
                stream.early_hints(links);
            }
            return;
        }
        match &self.interim {
            Some(interim) if version == Version::HTTP_11 => {
                for links in hints {
                    interim.queue(&early_hints_h1(links));
                }
                // The final head may reach hyper only once the 103s have begun.
                poll_fn(|cx| interim.poll_begun(cx)).await;
            }
            // RFC 9110 15.2: no 1xx to an HTTP/1.0 client.
            _ => self.shared.dispatcher.log(
                LogLevel::Debug,
                format!("early hints not sent: not possible over {version:?}"),
            ),
        }
    }
}

/// Why a request's Host header breaks RFC 9112 3.2 (HTTP/1.1 needs exactly one, no request
/// may carry two, and its value must be `host[:port]`), or `None` when it does not. Such a
/// request gets 400 and never reaches the app.
fn host_problem<B>(req: &Request<B>) -> Option<&'static str> {
    if req.version() > Version::HTTP_11 {
        return None; // HTTP/2 carries the authority in its own pseudo-header
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version() == Version::HTTP_11 => {
            Some("an HTTP/1.1 request without a Host header")
        }
        (None, _) => None,
        (Some(_), Some(_)) => Some("a request with more than one Host header"),
        (Some(host), None) if !valid_host(host.as_bytes()) => {
            Some("a request with an invalid Host header")
        }
        (Some(_), None) => None,
    }
}

/// With an absolute-form target the Host header is ignored and the target's host is used
/// (RFC 9112 3.2.2): the app sees it as the `host` header, which is where frameworks look.
fn target_host_wins(parts: &mut http::request::Parts) {
    if parts.method == http::Method::CONNECT {
        return; // authority-form: the target names the tunnel's end, not this server
    }
    let Some(authority) = parts.uri.authority() else {
        return;
    };
    let host = match authority.port() {
        Some(port) => format!("{}:{}", authority.host(), port),
        None => authority.host().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&host) {
        parts.headers.insert(HOST, value);
    }
}

/// `uri-host [":" port]` (RFC 9110 7.2), or empty (allowed when the target has no authority).
fn valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    if value.contains(&b'@') {
        return false; // userinfo is not part of Host
    }
    match http::uri::Authority::try_from(value) {
        Ok(authority) => {
            // `Authority` accepts any bytes after the last colon of a name; a port is digits.
            let host = authority.host();
            let rest = &authority.as_str()[host.len()..];
            rest.is_empty() || rest[1..].bytes().all(|b| b.is_ascii_digit())
        }
        Err(_) => false,
    }
}

/// Connection-specific fields (RFC 9113 8.2.2): HTTP/2 has no place for them, and the h2
/// crate resets a stream whose head or trailers carry one. `te` is among them too; in a
/// response it never means anything.
pub(in crate::engine) const CONNECTION_HEADERS: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

fn drop_connection_headers(mut head: ResponseHead, shared: &Shared) -> ResponseHead {
    drop_connection_fields(&mut head.headers, "response header", &*shared.dispatcher);
    head
}

/// Removes the connection-specific fields from an HTTP/2 head or trailer section, with a
/// debug line for each (`what` names the section).
pub(super) fn drop_connection_fields(
    fields: &mut http::HeaderMap,
    what: &str,
    dispatcher: &dyn Dispatcher,
) {
    for name in CONNECTION_HEADERS {
        if fields.remove(name).is_some() {
            dispatcher.log(
                LogLevel::Debug,
                format!("dropped the app's {name:?} {what}: HTTP/2 does not allow it"),
            );
        }
    }
}

/// The file of a file response, where its bytes start and how many are left: a regular
/// file only.
async fn open_for_sending(source: FileSource) -> std::io::Result<(std::fs::File, u64, u64)> {
    let opened = tokio::task::spawn_blocking(move || {
        let (mut file, path_given) = match source {
            FileSource::Path(path) => (std::fs::File::open(&path)?, true),
            FileSource::Open(file) => (file, false),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        // A file the app opened is sent from where the app left it.
        let start = if path_given {
            0
        } else {
            std::io::Seek::stream_position(&mut file)?
        };
        let len = meta.len().saturating_sub(start);
        super::sendfile::read_ahead(&file, start, len);
        Ok((file, start, len))
    });
    opened.await.map_err(std::io::Error::other)?
}

/// A response head's Content-Length (the adapter has checked that it is one number).
pub(in crate::engine) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn prefetchable(headers: &http::HeaderMap, exact_len: Option<u64>) -> bool {
    matches!(exact_len, Some(n) if n <= PREFETCH_LIMIT) && !headers.contains_key(EXPECT)
}

async fn read_whole(mut body: RequestBody, timeout: std::time::Duration) -> Result<Bytes, Error> {
    let read = async {
        let mut buf = BytesMut::new();
        let mut first: Option<Bytes> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if e.client_left() {
                    Error::ClientLeftMidBody
                } else {
                    Error::RequestBody(format!("error reading request body: {e}"))
                }
            })?;
            if let Ok(data) = frame.into_data() {
                match first.take() {
                    None if buf.is_empty() => first = Some(data),
                    Some(f) => {
                        buf.extend_from_slice(&f);
                        buf.extend_from_slice(&data);
                    }
                    None => buf.extend_from_slice(&data),
                }
            }
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Error::RequestBodyTimeout)?
}

fn build(head: ResponseHead, body: ResponseBody, draining: bool) -> HttpResponse<ResponseBody> {
    let mut response = HttpResponse::new(body);
    *response.status_mut() = head.status;
    if let Some(reason) = head
        .reason
        .and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok())
    {
        response.extensions_mut().insert(reason);
    }
    let mut headers = head.headers;
    if draining {
        // The last response on this connection: the client reconnects elsewhere.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    *response.headers_mut() = headers;
    response
}

/// 503 for overload: a short body, `Retry-After`, and the connection stays usable.
fn service_unavailable(retry_after: u64) -> HttpResponse<ResponseBody> {
    let mut r = simple_response(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after));
    r
}

/// 408 and close: the rest of the body may still come, and could be read as a next request.
fn request_timeout() -> HttpResponse<ResponseBody> {
    let mut r = simple_response(StatusCode::REQUEST_TIMEOUT, "Request Timeout\n");
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Which limit the head of `req` breaks, and the status that says so; `None` if it keeps
/// them all. The body's size is checked here when Content-Length declares it, and by the
/// body pump as it arrives otherwise.
fn refuse_head<B: http_body::Body>(
    req: &Request<B>,
    limits: &RequestLimits,
) -> Option<(Refusal, StatusCode)> {
    let headers = req.headers();
    if headers.len() > limits.fields {
        return Some((
            Refusal::TooManyFields,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ));
    }
    if headers
        .iter()
        .any(|(name, value)| name.as_str().len() + value.len() > limits.field_size)
    {
        return Some((
            Refusal::FieldTooLarge,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ));
    }
    let declared = content_length(headers).or(req.body().size_hint().exact());
    if let (Some(limit), Some(declared)) = (limits.body, declared) {
        if declared > limit {
            return Some((Refusal::BodyTooLarge, StatusCode::PAYLOAD_TOO_LARGE));
        }
    }
    None
}

/// A refusal for breaking a limit, and close: the rest of the request (its body, or the
/// head hyper has not finished) must not be read as a next one.
fn refusal(status: StatusCode) -> HttpResponse<ResponseBody> {
    let text = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Content Too Large\n",
        StatusCode::URI_TOO_LONG => "URI Too Long\n",
        _ => "Request Header Fields Too Large\n",
    };
    let mut r = simple_response(status, text);
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// 400 and close: after a framing error nothing more on this connection can be trusted.
fn bad_request() -> HttpResponse<ResponseBody> {
    let mut r = simple_response(StatusCode::BAD_REQUEST, "Bad Request\n");
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

pub(super) fn simple_response(
    status: StatusCode,
    text: &'static str,
) -> HttpResponse<ResponseBody> {
    let mut r = HttpResponse::new(ResponseBody::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
    r
}
