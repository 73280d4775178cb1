//! One HTTP request/response cycle as the app sees it: `receive()` and `send()`.
//!
//! Owns the order of the HTTP messages (start, then body chunks), the response's framing
//! against its declared Content-Length, and turns them into operations on the request's
//! `Exchange`. Each message's form is checked by `messages`. Malformed messages raise
//! `RuntimeError` in the app with a message naming the problem; the runner then answers 500
//! if nothing was sent. Runs on the loop thread only; holds no hyper types.
//!
//! Why it is one long file: `send_body` is the one state machine of a response (pending,
//! started, streaming, HEAD, complete) crossed with its framing (fits, over, short), and
//! splitting it would scatter the transitions a reader must see side by side.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::awaitable::Waiting;
use super::context::{receive, Context, Cycle, WaitFor};
use super::messages::{
    body_bytes, declared_length, early_hint_links, message_and_type, more_body, parse_headers,
    response_head,
};
use crate::handoff::body_length::{BodyLength, Length};
use crate::handoff::exchange::{
    BodyRead, Capacity, Exchange, FileSource, PushResult, Response, ResponseHead,
};

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

#[pyclass(module = "ferricorn._ferricorn")]
pub struct HttpCycle {
    exchange: Arc<Exchange>,
    ctx: Py<Context>,
    response: ResponseState,
    status: u16,
    request_done: bool,
    is_head: bool,
    /// HEAD, 204 or 304: the body the app sends is not sent.
    bodyless: bool,
    /// `--timeout-request` cancelled the task: answer 504 rather than 500.
    timed_out: bool,
    /// The response's Content-Length, when it has one the body must match (not for HEAD,
    /// 204 or 304), and the body bytes counted against it so far.
    length: BodyLength,
    /// The request, for error messages: method and target.
    method: http::Method,
    target: http::Uri,
    /// `http.response.trailers`: announced by `trailers: True` in the start message.
    trailers: Trailers,
}

/// Where the response is with its trailers (the `http.response.trailers` extension).
#[derive(Default)]
enum Trailers {
    /// The start message did not announce any.
    #[default]
    None,
    /// Announced; the body is still being sent.
    Announced,
    /// The last body message went out; trailer messages follow, gathered here.
    Collecting(HeaderMap),
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
    ) -> Self {
        HttpCycle {
            exchange,
            ctx,
            response: ResponseState::Pending,
            status: 0,
            request_done: false,
            is_head: method == http::Method::HEAD,
            bodyless: method == http::Method::HEAD,
            timed_out: false,
            length: BodyLength::default(),
            trailers: Trailers::None,
            method,
            target,
        }
    }

    /// The `RuntimeError` for a body that broke its declared length; `send()` raises it (as
    /// uvicorn does) so the failure is logged with the request it belongs to.
    fn length_error(&self, length: Length) -> PyErr {
        let declared = self.length.declared.unwrap_or_default();
        let (method, target) = (&self.method, &self.target);
        PyRuntimeError::new_err(match length {
            Length::Over => format!(
                "Response content longer than Content-Length: {method} {target} declared {declared} bytes and sent more. Only the declared bytes went out and the connection is closed after them; send exactly the declared length, or leave Content-Length out."
            ),
            _ => format!(
                "Response content shorter than Content-Length: {method} {target} declared {declared} bytes and ended after {}. The connection was closed so the client sees an incomplete response; send exactly the declared length, or leave Content-Length out.",
                self.length.sent
            ),
        })
    }

    fn disconnect(py: Python<'_>) -> PyResult<Py<PyAny>> {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
        Ok(d.into_any().unbind())
    }

    fn parse_start(&mut self, msg: &Bound<'_, PyDict>) -> PyResult<()> {
        if !matches!(self.response, ResponseState::Pending) {
            return Err(PyRuntimeError::new_err(
                "Unexpected ASGI message 'http.response.start' sent, after response already started.",
            ));
        }
        let (code, mut head) = response_head(msg, "http.response.start")?;
        // A HEAD answer, 204 and 304 have no body: what the app sends as body is dropped
        // here.
        let no_content = matches!(code, 204 | 304);
        if no_content {
            // RFC 9110 8.6 and 15.3.5: a 204 has no Content-Length; a 304's is optional and
            // an app's could be anything: neither reaches the wire, nor a Transfer-Encoding.
            head.headers.remove(http::header::CONTENT_LENGTH);
            head.headers.remove(http::header::TRANSFER_ENCODING);
            self.bodyless = true;
        }
        // A HEAD answer's Content-Length describes the GET response: not held to a body,
        // but checked all the same (a number; several fields agree; no Transfer-Encoding
        // beside it), and said once, since hyper refuses a head that repeats it.
        let declared = if no_content {
            None
        } else {
            declared_length(&head.headers)?
        };
        if let Some(length) = declared {
            head.headers
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        self.length.declared = if self.bodyless { None } else { declared };
        self.status = code;
        self.response = ResponseState::Started(head);
        if let Some(t) = msg.get_item(intern!(msg.py(), "trailers"))? {
            if t.is_truthy()? {
                self.trailers = Trailers::Announced;
            }
        }
        Ok(())
    }

    /// `http.response.trailers`: gathered until `more_trailers` is false, then sent after
    /// the body (HTTP/2 always; HTTP/1.1 when the request said `TE: trailers` and the
    /// response lists them in `Trailer`, chunked).
    fn send_trailers(slf: &Bound<'_, Self>, msg: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let fields = parse_headers(msg, "http.response.trailers")?;
        let more = match msg.get_item(intern!(py, "more_trailers"))? {
            Some(v) => v.is_truthy()?,
            None => false,
        };
        let mut this = slf.borrow_mut();
        let mut gathered = match std::mem::take(&mut this.trailers) {
            Trailers::Collecting(map) => map,
            other => {
                let why = if matches!(other, Trailers::None) {
                    "without 'trailers': True in 'http.response.start'"
                } else {
                    "before the last 'http.response.body' (more_body=False)"
                };
                this.trailers = other;
                return Err(PyRuntimeError::new_err(format!(
                    "Unexpected ASGI message 'http.response.trailers' sent {why}."
                )));
            }
        };
        // A header map's iterator names a field once, then gives its further values with
        // `None`: each of them belongs to the last name seen.
        let mut current: Option<http::HeaderName> = None;
        for (name, value) in fields {
            if name.is_some() {
                current = name;
            }
            if let Some(name) = &current {
                gathered.append(name.clone(), value);
            }
        }
        let done = Context::done(this.ctx.bind(py));
        if more {
            this.trailers = Trailers::Collecting(gathered);
            return Ok(done);
        }
        this.trailers = Trailers::None;
        // A HEAD answer already ended: nobody reads trailers of a body not sent.
        if matches!(this.response, ResponseState::Streaming) {
            this.response = ResponseState::Complete;
            if !this.exchange.push_trailers(gathered) {
                return Err(client_gone_error());
            }
        }
        this.response = ResponseState::Complete;
        drop(this);
        Self::finished(slf)?;
        Ok(done)
    }

    /// `http.response.early_hint`: a 103 with these `Link` fields, sent before the response
    /// while its head has not gone to the engine (after the start message too: the head
    /// leaves with the first body message). Later a 103 would follow the final head, so the
    /// hint is dropped, as the extension allows.
    fn send_early_hint(slf: &Bound<'_, Self>, msg: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let links = early_hint_links(msg)?;
        let this = slf.borrow();
        let before_head = matches!(
            this.response,
            ResponseState::Pending | ResponseState::Started(_)
        );
        if before_head && !links.is_empty() && !this.exchange.push_early_hint(links) {
            return Err(client_gone_error());
        }
        Ok(Context::done(this.ctx.bind(slf.py())))
    }

    /// `http.response.pathsend`: the engine sends the file as the whole body, with its
    /// length as Content-Length unless the app gave one.
    fn send_path(slf: &Bound<'_, Self>, msg: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let path: std::path::PathBuf = match msg.get_item(intern!(py, "path"))? {
            Some(p) => p.extract().map_err(|_| {
                PyRuntimeError::new_err("'http.response.pathsend' needs 'path' as a str")
            })?,
            None => {
                return Err(PyRuntimeError::new_err(
                    "'http.response.pathsend' has no 'path'",
                ))
            }
        };
        if !path.is_absolute() {
            return Err(PyRuntimeError::new_err(format!(
                "'http.response.pathsend' needs an absolute path, got {}",
                path.display()
            )));
        }
        let mut this = slf.borrow_mut();
        let head = match std::mem::replace(&mut this.response, ResponseState::Complete) {
            ResponseState::Started(head) => head,
            ResponseState::Pending => {
                this.response = ResponseState::Pending;
                return Err(PyRuntimeError::new_err(
                    "Expected ASGI message 'http.response.start', but got 'http.response.pathsend'.",
                ));
            }
            other => {
                this.response = other;
                return Err(PyRuntimeError::new_err(
                    "Unexpected ASGI message 'http.response.pathsend' sent, after the body started.",
                ));
            }
        };
        let done = Context::done(this.ctx.bind(py));
        if !this
            .exchange
            .respond(Response::File(head, FileSource::Path(path)), true)
        {
            return Err(client_gone_error());
        }
        drop(this);
        Self::finished(slf)?;
        Ok(done)
    }

    fn send_body(slf: &Bound<'_, Self>, msg: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut body = body_bytes(msg, "http.response.body")?.unwrap_or_default();
        let mut more = more_body(msg)?;
        let mut this = slf.borrow_mut();
        match this.trailers {
            Trailers::None => {}
            Trailers::Announced => {
                // A last body short of the declared length ends the response here, cut as
                // without trailers; otherwise the body's end is the trailers' to say.
                let short = this
                    .length
                    .declared
                    .is_some_and(|d| this.length.sent + (body.len() as u64) < d);
                if !more && !short {
                    this.trailers = Trailers::Collecting(HeaderMap::new());
                    more = true;
                }
            }
            Trailers::Collecting(_) => {
                return Err(PyRuntimeError::new_err(
                    "Unexpected ASGI message 'http.response.body' sent after the last one; expected 'http.response.trailers'.",
                ))
            }
        }
        let state = std::mem::replace(&mut this.response, ResponseState::Complete);
        let done = Context::done(this.ctx.bind(py));
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
                if this.bodyless {
                    let length_unsaid = !head.headers.contains_key(http::header::CONTENT_LENGTH);
                    // A HEAD answer says how long the GET body would be; a 204 or 304 has
                    // none to describe (RFC 9110 8.6).
                    let describes_a_body = !matches!(this.status, 204 | 304);
                    if this.is_head && describes_a_body && !more && length_unsaid {
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
                match this.length.measure(&mut body, !more) {
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
            ResponseState::Streaming => match this.length.measure(&mut body, !more) {
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
                    // HEAD: the client asked for no body, so an endless stream is stopped;
                    // a 204 or 304 body is just not sent (RFC 9110 15.3.5, 15.4.5).
                    if this.is_head {
                        return Err(head_body_error());
                    }
                    return Ok(done);
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

    /// The response is complete: wake a `receive()` waiting for disconnect.
    fn finished(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let ctx = this.ctx.bind(py).clone();
        let id = this.exchange.id;
        drop(this);
        if ctx.borrow().has_waiters(id) {
            Context::wake(&ctx, id)?;
        }
        Ok(())
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
                this.exchange.respond(Response::gateway_timeout(), true);
                "ASGI callable did not finish within --timeout-request."
            }
            ResponseState::Pending | ResponseState::Started(_) => {
                this.status = 500;
                this.exchange.respond(Response::server_error(), true);
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

impl Cycle for HttpCycle {
    fn waiter_key(&self) -> (u64, &Py<Context>) {
        (self.exchange.id, &self.ctx)
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

    fn poll_capacity(&self) -> Capacity {
        self.exchange.poll_capacity()
    }

    fn gone_error() -> PyErr {
        client_gone_error()
    }

    fn waiting(cycle: Py<Self>, what: WaitFor) -> Waiting {
        Waiting::http(cycle, what)
    }
}

#[pymethods]
impl HttpCycle {
    /// `await receive()`: the next `http.request` chunk, or `http.disconnect`.
    fn receive(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        receive(slf)
    }

    /// `await send(message)`: `http.response.start` or `http.response.body`.
    fn send(slf: &Bound<'_, Self>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let (msg, kind) = message_and_type(message)?;
        let msg = &msg;
        match super::messages::utf8(&kind, "message 'type'")? {
            "http.response.body" => Self::send_body(slf, msg),
            "http.response.pathsend" => Self::send_path(slf, msg),
            "http.response.trailers" => Self::send_trailers(slf, msg),
            "http.response.early_hint" => Self::send_early_hint(slf, msg),
            "http.response.start" => {
                let mut this = slf.borrow_mut();
                this.parse_start(msg)?;
                Ok(Context::done(this.ctx.bind(py)))
            }
            other => Err(PyRuntimeError::new_err(format!(
                "Unexpected ASGI message type '{other}' sent on an HTTP connection; expected 'http.response.start', 'http.response.body', or an extension's message ('http.response.pathsend', 'http.response.trailers', 'http.response.early_hint')."
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

fn head_body_error() -> PyErr {
    PyOSError::new_err("the response to this HEAD request is complete; its body is not sent")
}

fn client_gone_error() -> PyErr {
    PyOSError::new_err("the client disconnected; the response can no longer be sent")
}
