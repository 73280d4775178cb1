//! `start_response` and `write()`, and the response's way to the engine (PEP 3333).
//!
//! Owns the order a WSGI response must keep: `start_response` first (again only with
//! `exc_info`), the head out with the first non-empty chunk, the body measured against the
//! Content-Length the app declared (bytes past it cut and the connection closed after them;
//! a body that ends short is cut so the client sees it incomplete). Chunks go into the
//! exchange's bounded buffer; a full buffer blocks the WSGI thread, GIL released, until the
//! client reads: that is the backpressure a slow reader puts on a generator.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::pool::{Claim, RequestLabel, WsgiPool};
use crate::handoff::body_length::{BodyLength, Length};
use crate::handoff::exchange::{
    Capacity, Exchange, FileSource, PushResult, Response, ResponseHead,
};
use crate::handoff::fields::{self, DeclaredLengthError};

/// Headers PEP 3333 forbids an app to send (hop-by-hop, RFC 9110 7.6.1): the server owns
/// the connection and the framing.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The `start_response` callable of one request; its `write` method is PEP 3333's `write()`.
#[pyclass(module = "ferricorn._ferricorn")]
pub struct WsgiResponse {
    exchange: Arc<Exchange>,
    claim: Arc<Claim>,
    /// Set by `start_response`, taken when the head goes out.
    head: Option<ResponseHead>,
    pub status: u16,
    called: bool,
    head_sent: bool,
    /// The response is over (completed, cut, or answered by someone else): later body is
    /// dropped.
    complete: bool,
    is_head: bool,
    /// The Content-Length the body must match, and the bytes counted against it.
    length: BodyLength,
    /// The request, for error messages.
    label: RequestLabel,
}

impl WsgiResponse {
    pub fn new(
        exchange: Arc<Exchange>,
        claim: Arc<Claim>,
        is_head: bool,
        label: RequestLabel,
    ) -> Self {
        WsgiResponse {
            exchange,
            claim,
            head: None,
            status: 0,
            called: false,
            head_sent: false,
            complete: false,
            is_head,
            length: BodyLength::default(),
            label,
        }
    }

    pub fn head_sent(&self) -> bool {
        self.head_sent
    }

    fn length_error(&self, length: Length) -> PyErr {
        let declared = self.length.declared.unwrap_or_default();
        let label = &self.label;
        PyRuntimeError::new_err(match length {
            Length::Over => format!(
                "Response content longer than Content-Length: {label} declared {declared} bytes and produced more. Only the declared bytes went out and the connection is closed after them; produce exactly the declared length, or leave Content-Length out."
            ),
            _ => format!(
                "Response content shorter than Content-Length: {label} declared {declared} bytes and ended after {}. The connection was closed so the client sees an incomplete response; produce exactly the declared length, or leave Content-Length out.",
                self.length.sent
            ),
        })
    }

    /// Hands body to the engine: the head with the first non-empty chunk, `last` ends the
    /// response. Blocks (GIL released) while the client is slower than the app.
    pub fn emit(&mut self, py: Python<'_>, mut data: Bytes, last: bool) -> PyResult<()> {
        if self.complete {
            return Ok(());
        }
        if !self.called {
            return Err(PyRuntimeError::new_err(format!(
                "{}: the WSGI app produced body before it called start_response()",
                self.label
            )));
        }
        if data.is_empty() && !last {
            return Ok(());
        }
        if self.head_sent {
            if self.is_head {
                self.complete = last;
                return Ok(());
            }
            return match self.length.measure(&mut data, last) {
                Length::Fits => {
                    self.complete = last;
                    self.push(py, data, last)
                }
                Length::Over => {
                    self.complete = true;
                    self.exchange.close_after_response();
                    self.exchange.push_chunk(data, true);
                    Err(self.length_error(Length::Over))
                }
                Length::Short => {
                    self.complete = true;
                    self.exchange.push_chunk(data, false);
                    self.exchange.abort();
                    Err(self.length_error(Length::Short))
                }
            };
        }
        if !self.claim.take_for_app() {
            self.complete = true;
            return Err(deadline_error(&self.label));
        }
        let Some(mut head) = self.head.take() else {
            return Err(PyRuntimeError::new_err(
                "the response head went out already",
            ));
        };
        self.head_sent = true;
        if self.is_head {
            if last && !head.headers.contains_key(http::header::CONTENT_LENGTH) {
                head.headers
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(data.len()));
            }
            self.complete = last;
            return self.respond(Response::Full(head, Bytes::new()));
        }
        match self.length.measure(&mut data, last) {
            Length::Fits if last => {
                self.complete = true;
                self.respond(Response::Full(head, data))
            }
            Length::Fits => {
                if !self.exchange.respond(Response::Streaming(head), false) {
                    self.complete = true;
                    return Err(gone_error());
                }
                self.push(py, data, false)
            }
            Length::Over => {
                self.complete = true;
                head.headers
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                self.exchange.respond(Response::Full(head, data), true);
                Err(self.length_error(Length::Over))
            }
            Length::Short => {
                self.complete = true;
                if self.exchange.respond(Response::Streaming(head), false) {
                    self.exchange.push_chunk(data, false);
                    self.exchange.abort();
                }
                Err(self.length_error(Length::Short))
            }
        }
    }

    fn respond(&mut self, response: Response) -> PyResult<()> {
        if self.exchange.respond(response, true) {
            Ok(())
        } else {
            self.complete = true;
            Err(gone_error())
        }
    }

    fn push(&mut self, py: Python<'_>, data: Bytes, last: bool) -> PyResult<()> {
        match self.exchange.push_chunk(data, last) {
            PushResult::Accepted => Ok(()),
            PushResult::Full => {
                let exchange = &self.exchange;
                let room = py.detach(|| {
                    WsgiPool::wait_for(|| match exchange.poll_capacity() {
                        Capacity::Available => Some(true),
                        Capacity::Disconnected => Some(false),
                        Capacity::Wait => None,
                    })
                });
                if room {
                    Ok(())
                } else {
                    self.complete = true;
                    Err(gone_error())
                }
            }
            PushResult::Disconnected => {
                self.complete = true;
                Err(gone_error())
            }
        }
    }

    /// The app raised, or broke the protocol: a 500 if nothing went out yet, else the
    /// connection is cut so the client sees the response incomplete.
    pub fn fail(&mut self) {
        if self.complete {
            return;
        }
        self.complete = true;
        if self.head_sent {
            self.exchange.abort();
        } else if self.claim.take_for_app() {
            self.status = 500;
            self.exchange.respond(Response::server_error(), true);
        }
    }

    /// `wsgi.file_wrapper` of a real file: the engine sends the file itself (read on its
    /// blocking pool, not through Python). False when the response cannot go that way (the
    /// head is out, HEAD, a bodyless status): the caller iterates the wrapper instead.
    pub fn emit_file(&mut self, file: std::fs::File) -> PyResult<bool> {
        let bodyless = self
            .head
            .as_ref()
            .is_none_or(|h| matches!(h.status.as_u16(), 204 | 304));
        if self.complete || self.head_sent || self.is_head || bodyless {
            return Ok(false);
        }
        if !self.claim.take_for_app() {
            self.complete = true;
            return Err(deadline_error(&self.label));
        }
        let Some(head) = self.head.take() else {
            return Ok(false);
        };
        self.head_sent = true;
        self.complete = true;
        self.respond(Response::File(head, FileSource::Open(file)))
            .map(|()| true)
    }

    /// The iterable is exhausted: the response ends here.
    pub fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        if !self.called && !self.complete {
            return Err(PyRuntimeError::new_err(format!(
                "{}: the WSGI app returned without calling start_response()",
                self.label
            )));
        }
        self.emit(py, Bytes::new(), true)
    }

    /// Whether the response went out whole (for the access log: a cut one is not logged).
    pub fn complete(&self) -> bool {
        self.complete
    }
}

fn deadline_error(label: &RequestLabel) -> PyErr {
    PyOSError::new_err(format!(
        "{label}: --timeout-request already answered this request with 504"
    ))
}

fn gone_error() -> PyErr {
    PyOSError::new_err("the client disconnected")
}

/// A `str` whose characters all fit latin-1, as its bytes; `what` names it in the error.
fn latin1_bytes(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    let s = obj.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a str (PEP 3333 native string), got {}",
            obj.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    let text = s.to_str()?;
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{what} {text:?} has characters outside latin-1; encode the value (RFC 8187 \
                 for header parameters, percent-encoding for URLs)"
            ))
        })
}

/// The status code, and the reason phrase when it is not the code's usual one.
fn parse_status(status: &Bound<'_, PyAny>) -> PyResult<(StatusCode, Option<Bytes>)> {
    let bytes = latin1_bytes(status, "the status")?;
    let well_formed = bytes.len() >= 3
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && (bytes.len() == 3 || bytes[3] == b' ');
    let code = well_formed
        .then(|| std::str::from_utf8(&bytes[..3]).ok()?.parse::<u16>().ok())
        .flatten()
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok());
    let code = code.ok_or_else(|| {
        PyValueError::new_err(format!(
            "the status must be a final HTTP status and its reason, like '200 OK', got {:?}",
            String::from_utf8_lossy(&bytes)
        ))
    })?;
    let reason = bytes.get(4..).unwrap_or_default();
    let usual = code.canonical_reason().unwrap_or_default().as_bytes();
    let reason = (!reason.is_empty() && reason != usual).then(|| Bytes::copy_from_slice(reason));
    Ok((code, reason))
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for item in headers.try_iter().map_err(|_| {
        PyTypeError::new_err("response_headers must be a list of (name, value) tuples")
    })? {
        let item = item?;
        let pair = item.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(format!(
                "each response header must be a (name, value) tuple, got {}",
                item.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))
        })?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(
                "each response header must be a (name, value) tuple of two str",
            ));
        }
        let name = latin1_bytes(&pair.get_item(0)?, "a header name")?;
        let value = latin1_bytes(&pair.get_item(1)?, "a header value")?;
        let name = HeaderName::from_bytes(&name).map_err(|_| {
            PyValueError::new_err(format!(
                "not a valid header name: {:?}",
                String::from_utf8_lossy(&name)
            ))
        })?;
        if HOP_BY_HOP.contains(&name.as_str()) {
            return Err(PyValueError::new_err(format!(
                "the WSGI app set the hop-by-hop header {:?}, which PEP 3333 forbids: the \
                 server decides the connection's framing and keep-alive; remove it",
                name.as_str()
            )));
        }
        let value = fields::field_value(&value).map_err(|_| {
            PyValueError::new_err(format!(
                "the value of header {:?} has a control character (CR, LF or NUL)",
                name.as_str()
            ))
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// The Content-Length the app declared, when its body must match it.
fn declared_length(headers: &HeaderMap) -> PyResult<Option<u64>> {
    fields::declared_length(headers).map_err(|e| match e {
        DeclaredLengthError::NotANumber(value) => PyValueError::new_err(format!(
            "Content-Length must be a number of bytes, got {value:?}"
        )),
        DeclaredLengthError::Disagree => {
            PyValueError::new_err("several Content-Length headers that disagree")
        }
    })
}

#[pymethods]
impl WsgiResponse {
    /// `start_response(status, response_headers, exc_info=None)`; returns `write`.
    #[pyo3(signature = (status, response_headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        response_headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let this = slf.borrow();
            if let Some(info) = exc_info {
                if this.head_sent {
                    // PEP 3333: too late to change the response; the app's error goes on.
                    let exc = info.get_item(1)?;
                    return Err(PyErr::from_value(exc));
                }
            } else if this.called {
                return Err(PyRuntimeError::new_err(
                    "start_response() called a second time without exc_info (PEP 3333 allows \
                     that only to replace the response after an error)",
                ));
            }
        }
        let (code, reason) = parse_status(status)?;
        let headers = parse_headers(response_headers)?;
        let mut this = slf.borrow_mut();
        let bodyless = this.is_head || matches!(code.as_u16(), 204 | 304);
        this.length.declared = if bodyless {
            None
        } else {
            declared_length(&headers)?
        };
        this.status = code.as_u16();
        this.head = Some(ResponseHead {
            status: code,
            headers,
            reason,
        });
        this.called = true;
        drop(this);
        slf.getattr(pyo3::intern!(slf.py(), "write"))
    }

    /// PEP 3333's `write(data)`: sends `data` now (the head first), before the iterable's.
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = super::body_chunk(data)?;
        self.emit(py, bytes, false)
    }
}
