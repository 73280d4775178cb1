//! One HTTP request/response cycle as the app sees it: `receive()` and `send()`.
//!
//! Owns the ASGI message rules (order of messages, required keys, types) and turns them into
//! operations on the engine's `Exchange`. Malformed messages raise `RuntimeError` in the app
//! with a message naming the problem; the runner then answers 500 if nothing was sent.
//! Runs on the loop thread only; holds no hyper types.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyInt, PyList, PyMemoryView, PyString, PyTuple};

use super::awaitable::{Done, Ready, Waiting};
use super::tracking::{Tracker, TrackingConfig};
use crate::engine::exchange::{BodyRead, Capacity, Exchange, PushResult, Response, ResponseHead};

/// State shared by every cycle of one server: created once, referenced by each cycle.
#[pyclass(module = "ferricorn._ferricorn")]
pub struct Context {
    create_future: Py<PyAny>,
    /// Loop futures of app tasks waiting on an exchange, resolved by the bridge's wake.
    waiters: HashMap<u64, Vec<Py<PyAny>>>,
    done: Py<Done>,
    /// `logger.info` of `ferricorn.access` when access logging is on.
    access_log: Option<Py<PyAny>>,
    /// Running requests, when cancellation or deadlines need them.
    pub(crate) tracker: Option<Tracker>,
}

impl Context {
    pub fn new(
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        access_log: Option<Py<PyAny>>,
        tracking: TrackingConfig,
    ) -> PyResult<Self> {
        Ok(Context {
            create_future: event_loop.getattr("create_future")?.unbind(),
            waiters: HashMap::new(),
            done: Py::new(py, Done)?,
            access_log,
            tracker: tracking.enabled().then(|| Tracker::new(tracking)),
        })
    }

    /// Resolves every future waiting on `exchange_id`; each waiter then looks again.
    pub fn wake(ctx: &Bound<'_, Context>, exchange_id: u64) -> PyResult<()> {
        let futures = ctx.borrow_mut().waiters.remove(&exchange_id);
        for fut in futures.into_iter().flatten() {
            let fut = fut.bind(ctx.py());
            if !fut.call_method0(intern!(ctx.py(), "done"))?.is_truthy()? {
                fut.call_method1(intern!(ctx.py(), "set_result"), (ctx.py().None(),))?;
            }
        }
        Ok(())
    }

    /// A loop future that `wake(id)` will resolve; the awaitable yields it.
    pub fn register_waiter(ctx: &Bound<'_, Context>, id: u64) -> PyResult<Py<PyAny>> {
        let py = ctx.py();
        let fut = ctx.borrow().create_future.call0(py)?;
        // asyncio.Task accepts a yielded future only with this flag set (as `Future.__await__`
        // sets it).
        fut.setattr(py, intern!(py, "_asyncio_future_blocking"), true)?;
        ctx.borrow_mut()
            .waiters
            .entry(id)
            .or_default()
            .push(fut.clone_ref(py));
        Ok(fut)
    }

    /// The shared awaitable that completes at once with `None`.
    pub fn done(ctx: &Bound<'_, Context>) -> Py<PyAny> {
        ctx.borrow().done.clone_ref(ctx.py()).into_any()
    }

    pub fn access_logging(&self) -> bool {
        self.access_log.is_some()
    }
}

/// What a `Waiting` awaitable waits for.
#[derive(Clone, Copy)]
pub enum WaitFor {
    /// The next `receive()` message.
    Receive,
    /// Room in the response buffer.
    Capacity,
}

enum ResponseState {
    Pending,
    Started(ResponseHead),
    Streaming,
    /// HEAD: the head went out and the response is over; a further body message gets the
    /// client-gone `OSError` (nobody will read it: an endless stream stops, as it would for a
    /// client that left), the final `more_body=False` one is accepted.
    DiscardingBody,
    Complete,
}

/// What the access log line needs, kept only when access logging is on.
pub struct AccessInfo {
    pub client: String,
    pub method: String,
    pub path: String,
    pub version: &'static str,
}

#[pyclass(module = "ferricorn._ferricorn")]
pub struct HttpCycle {
    exchange: Arc<Exchange>,
    ctx: Py<Context>,
    response: ResponseState,
    status: u16,
    request_done: bool,
    is_head: bool,
    access: Option<Box<AccessInfo>>,
    /// `--timeout-request` cancelled the task: answer 504 rather than 500.
    timed_out: bool,
    /// The response's Content-Length, when it has one the body must match (not for HEAD,
    /// 204 or 304), and the body bytes counted against it so far.
    declared_length: Option<u64>,
    sent: u64,
    /// The request, for error messages: method and target.
    method: http::Method,
    target: http::Uri,
}

/// How a body message measures against the declared Content-Length.
enum Length {
    Fits,
    /// More than declared: the body was cut to the declared length.
    Over,
    /// The response ends short of the declared length.
    Short,
}

impl HttpCycle {
    pub fn id(&self) -> u64 {
        self.exchange.id
    }

    /// The client left before the response was complete.
    pub fn abandoned(&self) -> bool {
        !matches!(self.response, ResponseState::Complete) && self.exchange.is_client_gone()
    }

    pub fn mark_timed_out(&mut self) {
        self.timed_out = true;
    }

    pub fn new(
        exchange: Arc<Exchange>,
        ctx: Py<Context>,
        (method, target): (http::Method, http::Uri),
        access: Option<Box<AccessInfo>>,
    ) -> Self {
        HttpCycle {
            exchange,
            ctx,
            response: ResponseState::Pending,
            status: 0,
            request_done: false,
            is_head: method == http::Method::HEAD,
            access,
            timed_out: false,
            declared_length: None,
            sent: 0,
            method,
            target,
        }
    }

    /// Counts `body` against the declared Content-Length, cutting what goes past it.
    fn measure(&mut self, body: &mut Bytes, more: bool) -> Length {
        let Some(declared) = self.declared_length else {
            return Length::Fits;
        };
        let room = declared - self.sent;
        if body.len() as u64 > room {
            body.truncate(room as usize);
            self.sent = declared;
            return Length::Over;
        }
        self.sent += body.len() as u64;
        if !more && self.sent < declared {
            return Length::Short;
        }
        Length::Fits
    }

    /// The `RuntimeError` for a body that broke its declared length; `send()` raises it (as
    /// uvicorn does) so the failure is logged with the request it belongs to.
    fn length_error(&self, length: Length) -> PyErr {
        let declared = self.declared_length.unwrap_or_default();
        let (method, target) = (&self.method, &self.target);
        PyRuntimeError::new_err(match length {
            Length::Over => format!(
                "Response content longer than Content-Length: {method} {target} declared {declared} bytes and sent more. Only the declared bytes went out and the connection is closed after them; send exactly the declared length, or leave Content-Length out."
            ),
            _ => format!(
                "Response content shorter than Content-Length: {method} {target} declared {declared} bytes and ended after {}. The connection was closed so the client sees an incomplete response; send exactly the declared length, or leave Content-Length out.",
                self.sent
            ),
        })
    }

    fn disconnect(py: Python<'_>) -> PyResult<Py<PyAny>> {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
        Ok(d.into_any().unbind())
    }

    /// The next message if one is ready, `None` if the app must wait.
    fn try_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        // A HEAD response is complete once its head is out: as for any sent response, the
        // app learns it from `receive()` (an endless stream would otherwise never stop).
        if matches!(
            self.response,
            ResponseState::Complete | ResponseState::DiscardingBody
        ) {
            return Self::disconnect(py).map(Some);
        }
        if self.request_done {
            return if self.exchange.wait_disconnect() {
                Self::disconnect(py).map(Some)
            } else {
                Ok(None)
            };
        }
        match self.exchange.read_body() {
            BodyRead::Chunk(body, more) => {
                self.request_done = !more;
                let d = PyDict::new(py);
                d.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
                let bytes = PyBytes::new_with(py, body.len(), |out| {
                    body.copy_into(out);
                    Ok(())
                })?;
                d.set_item(intern!(py, "body"), bytes)?;
                d.set_item(intern!(py, "more_body"), more)?;
                Ok(Some(d.into_any().unbind()))
            }
            BodyRead::Wait => Ok(None),
            BodyRead::Disconnected => Self::disconnect(py).map(Some),
        }
    }

    fn register_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.borrow();
        Context::register_waiter(this.ctx.bind(slf.py()), this.exchange.id)
    }

    /// One step of a `Waiting` awaitable: `Ok(Ok(value))` when done, `Ok(Err(future))` to
    /// yield, `Err` to raise.
    pub fn poll_wait(
        slf: &Bound<'_, Self>,
        what: WaitFor,
    ) -> PyResult<Result<Option<Py<PyAny>>, Py<PyAny>>> {
        let py = slf.py();
        let ready = match what {
            WaitFor::Receive => slf.borrow_mut().try_receive(py)?.map(Some),
            WaitFor::Capacity => match slf.borrow().exchange.poll_capacity() {
                Capacity::Disconnected => return Err(client_gone_error()),
                Capacity::Available => Some(None),
                Capacity::Wait => None,
            },
        };
        match ready {
            Some(value) => Ok(Ok(value)),
            None => Ok(Err(Self::register_waiter(slf)?)),
        }
    }

    fn parse_start(&mut self, msg: &Bound<'_, PyDict>) -> PyResult<()> {
        if !matches!(self.response, ResponseState::Pending) {
            return Err(PyRuntimeError::new_err(
                "Unexpected ASGI message 'http.response.start' sent, after response already started.",
            ));
        }
        let (code, head) = response_head(msg, "http.response.start")?;
        // A HEAD answer, 204 and 304 have no body: their Content-Length describes another
        // response (RFC 9110 8.6).
        self.declared_length = if self.is_head || matches!(code, 204 | 304) {
            None
        } else {
            declared_length(&head.headers)?
        };
        self.status = code;
        self.response = ResponseState::Started(head);
        Ok(())
    }

    fn send_body(slf: &Bound<'_, Self>, msg: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut body = body_bytes(msg, "http.response.body")?.unwrap_or_default();
        let more = more_body(msg)?;
        let mut this = slf.borrow_mut();
        let state = std::mem::replace(&mut this.response, ResponseState::Complete);
        let done = this.ctx.bind(py).borrow().done.clone_ref(py).into_any();
        match state {
            ResponseState::Pending => {
                this.response = ResponseState::Pending;
                Err(PyRuntimeError::new_err(
                    "Expected ASGI message 'http.response.start', but got 'http.response.body'.",
                ))
            }
            ResponseState::Complete => Err(PyRuntimeError::new_err(
                "Unexpected ASGI message 'http.response.body' sent, after response already completed.",
            )),
            ResponseState::Started(mut head) => {
                if this.is_head {
                    if !more && !head.headers.contains_key(http::header::CONTENT_LENGTH) {
                        head.headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                    }
                    this.response = if more { ResponseState::DiscardingBody } else { ResponseState::Complete };
                    if !this.exchange.respond(Response::Full(head, Bytes::new()), true) {
                        return Err(client_gone_error());
                    }
                    if !more {
                        drop(this);
                        Self::finished(slf)?;
                    }
                    return Ok(done);
                }
                match this.measure(&mut body, more) {
                    Length::Fits if !more => {
                        if !this.exchange.respond(Response::Full(head, body), true) {
                            return Err(client_gone_error());
                        }
                        drop(this);
                        Self::finished(slf)?;
                        Ok(done)
                    }
                    Length::Fits => {
                        if !this.exchange.respond(Response::Streaming(head), false) {
                            return Err(client_gone_error());
                        }
                        this.response = ResponseState::Streaming;
                        this.push(slf, body, false, done)
                    }
                    Length::Over => {
                        // The head has not gone out yet: it can still say the connection
                        // ends after this response.
                        head.headers
                            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                        this.exchange.respond(Response::Full(head, body), true);
                        let error = this.length_error(Length::Over);
                        drop(this);
                        Self::finished(slf)?;
                        Err(error)
                    }
                    Length::Short => {
                        // Sent as a stream that is then cut: the client sees the response
                        // end early instead of waiting for bytes that never come.
                        if this.exchange.respond(Response::Streaming(head), false) {
                            this.exchange.push_chunk(body, false);
                            this.exchange.abort();
                        }
                        let error = this.length_error(Length::Short);
                        drop(this);
                        Self::finished(slf)?;
                        Err(error)
                    }
                }
            }
            ResponseState::Streaming => match this.measure(&mut body, more) {
                Length::Fits => {
                    this.response = ResponseState::Streaming;
                    let r = this.push(slf, body, !more, done);
                    if !more && r.is_ok() {
                        this.response = ResponseState::Complete;
                        drop(this);
                        Self::finished(slf)?;
                    }
                    r
                }
                length => {
                    match length {
                        Length::Over => {
                            // The declared bytes complete the response; the head already
                            // went out, so the engine closes the connection after it.
                            this.exchange.close_after_response();
                            this.exchange.push_chunk(body, true);
                        }
                        _ => {
                            this.exchange.push_chunk(body, false);
                            this.exchange.abort();
                        }
                    }
                    let error = this.length_error(length);
                    drop(this);
                    Self::finished(slf)?;
                    Err(error)
                }
            },
            ResponseState::DiscardingBody => {
                if more {
                    this.response = ResponseState::DiscardingBody;
                    return Err(head_body_error());
                }
                drop(this);
                Self::finished(slf)?;
                Ok(done)
            }
        }
    }

    fn push(
        &self,
        slf: &Bound<'_, Self>,
        body: Bytes,
        end: bool,
        done: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        match self.exchange.push_chunk(body, end) {
            PushResult::Accepted => Ok(done),
            PushResult::Full => Ok(Py::new(
                slf.py(),
                Waiting::http(slf.clone().unbind(), WaitFor::Capacity),
            )?
            .into_any()),
            PushResult::Disconnected => Err(client_gone_error()),
        }
    }

    /// The response is complete: wake a `receive()` waiting for disconnect, log the access.
    fn finished(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let ctx = this.ctx.bind(py).clone();
        let id = this.exchange.id;
        if let (Some(info), Some(log)) = (&this.access, &ctx.borrow().access_log) {
            log.call1(
                py,
                (
                    intern!(py, "%s - \"%s %s HTTP/%s\" %d"),
                    escape_control(&info.client),
                    escape_control(&info.method),
                    escape_control(&info.path),
                    info.version,
                    this.status,
                ),
            )?;
        }
        drop(this);
        if ctx.borrow().waiters.contains_key(&id) {
            Context::wake(&ctx, id)?;
        }
        Ok(())
    }

    /// The 500 a request gets when the app fails before answering.
    pub(crate) fn error_response() -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        Response::Full(
            ResponseHead {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                headers,
            },
            Bytes::from_static(b"Internal Server Error"),
        )
    }

    fn timeout_response() -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Response::Full(
            ResponseHead {
                status: StatusCode::GATEWAY_TIMEOUT,
                headers,
            },
            Bytes::from_static(b"Gateway Timeout: the request took too long"),
        )
    }

    /// The app's task is over: free its admission slot and stop tracking it.
    fn ended(slf: &Bound<'_, Self>) {
        let this = slf.borrow();
        this.exchange.release();
        if let Some(tracker) = this.ctx.bind(slf.py()).borrow_mut().tracker.as_mut() {
            // Dropped after the borrows end: the task and cycle references go with it.
            let _finished = tracker.finish(this.exchange.id);
        }
    }

    /// Ends the cycle after the app's task stopped; `failed` when it raised.
    fn conclude(slf: &Bound<'_, Self>, failed: bool) -> PyResult<Option<&'static str>> {
        let mut this = slf.borrow_mut();
        let state = std::mem::replace(&mut this.response, ResponseState::Complete);
        if !matches!(state, ResponseState::Complete) && this.exchange.is_client_gone() {
            // Nobody is listening: no error response, no complaint, no access line.
            this.exchange.abort();
            return Ok(None);
        }
        let problem = match state {
            // A HEAD response is complete once its head is out.
            ResponseState::Complete | ResponseState::DiscardingBody => return Ok(None),
            ResponseState::Pending | ResponseState::Started(_) if this.timed_out => {
                this.status = 504;
                this.exchange.respond(Self::timeout_response(), true);
                "ASGI callable did not finish within --timeout-request."
            }
            ResponseState::Pending | ResponseState::Started(_) => {
                this.status = 500;
                this.exchange.respond(Self::error_response(), true);
                "ASGI callable returned without sending a response."
            }
            ResponseState::Streaming => {
                this.exchange.abort();
                "ASGI callable returned without completing the response."
            }
        };
        drop(this);
        Self::finished(slf)?;
        Ok(if failed { None } else { Some(problem) })
    }
}

/// A `send()` argument checked to be a dict with a str `type`: the dict and the type.
pub(crate) fn message_and_type<'py>(
    message: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyString>)> {
    let py = message.py();
    let msg = message.cast::<PyDict>().map_err(|_| {
        PyRuntimeError::new_err(format!(
            "ASGI send() takes a dict message, got {}.",
            type_name(message)
        ))
    })?;
    let kind = msg.get_item(intern!(py, "type"))?.ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "ASGI message has no 'type' key: {}.",
            repr(message)
        ))
    })?;
    let kind = kind.cast_into::<PyString>().map_err(|e| {
        PyRuntimeError::new_err(format!(
            "ASGI message 'type' must be a str, got {}.",
            type_name(e.into_inner().as_any())
        ))
    })?;
    Ok((msg.clone(), kind))
}

/// The status and headers of a response-start message of type `kind`. The status must be a
/// final one, 200-599: a 1xx is interim (RFC 9110 15.2), the rest are not HTTP statuses.
pub(crate) fn response_head(msg: &Bound<'_, PyDict>, kind: &str) -> PyResult<(u16, ResponseHead)> {
    let py = msg.py();
    let status = msg.get_item(intern!(py, "status"))?.ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "ASGI message '{kind}' is missing the required key 'status'."
        ))
    })?;
    if !status.is_instance_of::<PyInt>() {
        return Err(PyRuntimeError::new_err(format!(
            "ASGI '{kind}' status must be an int, got {}.",
            type_name(&status)
        )));
    }
    let status = status
        .extract::<u16>()
        .ok()
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| {
            PyRuntimeError::new_err(format!(
                "ASGI '{kind}' status {} is not a final HTTP status code (200-599).",
                repr(&status)
            ))
        })?;
    let headers = parse_headers(msg, kind)?;
    Ok((status.as_u16(), ResponseHead { status, headers }))
}

/// The `body` of a response-body message of type `kind`, if it has one: bytes, or any other
/// bytes-like object (bytearray, memoryview), as uvicorn accepts.
pub(crate) fn body_bytes(msg: &Bound<'_, PyDict>, kind: &str) -> PyResult<Option<Bytes>> {
    match msg.get_item(intern!(msg.py(), "body"))? {
        None => Ok(None),
        Some(b) => match b.cast::<PyBytes>() {
            Ok(bytes) => Ok(Some(Bytes::copy_from_slice(bytes.as_bytes()))),
            Err(_) => bytes_like(&b).map(|v| Some(Bytes::from(v))).ok_or_else(|| {
                PyRuntimeError::new_err(format!(
                    "ASGI '{kind}' body must be bytes, got {}.",
                    type_name(&b)
                ))
            }),
        },
    }
}

/// The bytes of a bytes-like object other than `bytes` (which callers take without a copy);
/// `None` for anything else, str and int included.
pub(crate) fn bytes_like(obj: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    if let Ok(array) = obj.cast::<PyByteArray>() {
        return Some(array.to_vec());
    }
    let view = PyMemoryView::from(obj).ok()?;
    let copy = view.call_method0(intern!(obj.py(), "tobytes")).ok()?;
    Some(copy.cast::<PyBytes>().ok()?.as_bytes().to_vec())
}

/// A response-body message's `more_body` (absent: false).
pub(crate) fn more_body(msg: &Bound<'_, PyDict>) -> PyResult<bool> {
    match msg.get_item(intern!(msg.py(), "more_body"))? {
        None => Ok(false),
        Some(m) => m.is_truthy(),
    }
}

/// The `headers` of a response-start message of type `kind`: any iterable of two-item
/// iterables (lists, tuples, ...) of bytes-like name and value (`Iterable[[byte string, byte
/// string]]` in the spec).
pub(crate) fn parse_headers(msg: &Bound<'_, PyDict>, kind: &str) -> PyResult<HeaderMap> {
    let py = msg.py();
    let mut headers = HeaderMap::new();
    let Some(list) = msg.get_item(intern!(py, "headers"))? else {
        return Ok(headers);
    };
    let items = list.try_iter().map_err(|_| {
        PyRuntimeError::new_err(format!(
            "ASGI '{kind}' headers must be an iterable of [name, value] pairs, got {}.",
            type_name(&list)
        ))
    })?;
    for item in items {
        let item = item?;
        let (name, value) = header_pair(&item)?.ok_or_else(|| {
            PyRuntimeError::new_err(format!(
                "ASGI '{kind}' headers must be [name, value] pairs of bytes, got {}.",
                repr(&item)
            ))
        })?;
        let name = with_header_bytes(&name, kind, "name", |bytes| {
            HeaderName::from_bytes(bytes).map_err(|_| {
                PyRuntimeError::new_err(format!(
                    "Invalid HTTP header name {:?} in ASGI '{kind}'.",
                    String::from_utf8_lossy(bytes)
                ))
            })
        })?;
        let value = with_header_bytes(&value, kind, "value", |bytes| {
            HeaderValue::from_bytes(bytes).map_err(|_| {
                PyRuntimeError::new_err(format!(
                    "Invalid value for HTTP header {name:?} in ASGI '{kind}': control characters such as CR, LF or NUL are not allowed."
                ))
            })
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The two items of one header, whatever two-item iterable holds them; `None` when it does
/// not hold exactly two.
fn header_pair<'py>(
    item: &Bound<'py, PyAny>,
) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    if let Ok(pair) = item.cast::<PyTuple>() {
        if pair.len() != 2 {
            return Ok(None);
        }
        return Ok(Some((pair.get_item(0)?, pair.get_item(1)?)));
    }
    if let Ok(pair) = item.cast::<PyList>() {
        if pair.len() != 2 {
            return Ok(None);
        }
        return Ok(Some((pair.get_item(0)?, pair.get_item(1)?)));
    }
    if item.is_instance_of::<PyBytes>() || item.is_instance_of::<PyString>() {
        return Ok(None);
    }
    let Ok(iter) = item.try_iter() else {
        return Ok(None);
    };
    let mut parts = Vec::with_capacity(2);
    for part in iter {
        if parts.len() == 2 {
            return Ok(None);
        }
        parts.push(part?);
    }
    let mut parts = parts.into_iter();
    Ok(match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    })
}

/// Runs `f` on the bytes of a header name or value (bytes without a copy, other bytes-like
/// objects copied); anything else is refused with an error naming the field.
fn with_header_bytes<R>(
    obj: &Bound<'_, PyAny>,
    kind: &str,
    what: &str,
    f: impl FnOnce(&[u8]) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return f(bytes.as_bytes());
    }
    match bytes_like(obj) {
        Some(copy) => f(&copy),
        None => Err(PyRuntimeError::new_err(format!(
            "ASGI '{kind}' header {what} must be bytes, got {}: {}.",
            type_name(obj),
            repr(obj)
        ))),
    }
}

/// The Content-Length a response head declares, if any. Several fields must agree (RFC 9110
/// 8.6); a response must not carry both Content-Length and Transfer-Encoding (RFC 9112 6.2).
pub(crate) fn declared_length(headers: &HeaderMap) -> PyResult<Option<u64>> {
    let mut declared = None;
    for value in headers.get_all(http::header::CONTENT_LENGTH) {
        let bytes = value.as_bytes();
        let length = std::str::from_utf8(bytes)
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                PyRuntimeError::new_err(format!(
                    "ASGI 'http.response.start' header content-length must be a number of bytes, got {:?}.",
                    String::from_utf8_lossy(bytes)
                ))
            })?;
        if declared.is_some_and(|d| d != length) {
            return Err(PyRuntimeError::new_err(
                "ASGI 'http.response.start' has several content-length headers that disagree.",
            ));
        }
        declared = Some(length);
    }
    if declared.is_some() && headers.contains_key(http::header::TRANSFER_ENCODING) {
        return Err(PyRuntimeError::new_err(
            "ASGI 'http.response.start' has both content-length and transfer-encoding headers; a response may carry only one of them (RFC 9112 6.2).",
        ));
    }
    Ok(declared)
}

fn head_body_error() -> PyErr {
    PyOSError::new_err("the response to this HEAD request is complete; its body is not sent")
}

fn client_gone_error() -> PyErr {
    PyOSError::new_err("the client disconnected; the response can no longer be sent")
}

pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Escapes control characters so a request line cannot forge log lines.
pub fn escape_control(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[pymethods]
impl HttpCycle {
    /// `await receive()`: the next `http.request` chunk, or `http.disconnect`.
    fn receive(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let ready = slf.borrow_mut().try_receive(py)?;
        match ready {
            Some(msg) => Ok(Py::new(py, Ready::new(msg))?.into_any()),
            None => {
                Ok(Py::new(py, Waiting::http(slf.clone().unbind(), WaitFor::Receive))?.into_any())
            }
        }
    }

    /// `await send(message)`: `http.response.start` or `http.response.body`.
    fn send(slf: &Bound<'_, Self>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let (msg, kind) = message_and_type(message)?;
        let msg = &msg;
        match kind.to_str()? {
            "http.response.body" => Self::send_body(slf, msg),
            "http.response.start" => {
                let mut this = slf.borrow_mut();
                this.parse_start(msg)?;
                Ok(this.ctx.bind(py).borrow().done.clone_ref(py).into_any())
            }
            other => Err(PyRuntimeError::new_err(format!(
                "Unexpected ASGI message type '{other}' sent on an HTTP connection; expected 'http.response.start' or 'http.response.body'."
            ))),
        }
    }

    /// Called by the runner when the app returned; returns a problem to log, if any.
    fn app_returned(slf: &Bound<'_, Self>) -> PyResult<Option<&'static str>> {
        let result = Self::conclude(slf, false);
        Self::ended(slf);
        result
    }

    /// Called by the runner when the app raised; returns whether the client had already
    /// gone (then an `OSError` from `send()` is expected and not worth a traceback).
    fn app_failed(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let gone = {
            let this = slf.borrow();
            // After a HEAD response, an app stopped by the OSError of a body send ended as
            // if its client had left.
            this.exchange.is_client_gone() || matches!(this.response, ResponseState::DiscardingBody)
        };
        let result = Self::conclude(slf, true);
        Self::ended(slf);
        result.map(|_| gone)
    }

    /// Whether the response was fully handed to the engine.
    #[getter]
    fn response_complete(&self) -> bool {
        matches!(self.response, ResponseState::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::escape_control;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("/ok"), "/ok");
        assert_eq!(escape_control("/a\r\nINFO: forged"), "/a\\r\\nINFO: forged");
    }
}
