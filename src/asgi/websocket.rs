//! One WebSocket session as the app sees it: `receive()` and `send()` for the `websocket.*`
//! messages of the ASGI spec (www.rst, WebSocket part, 2.5).
//!
//! Owns the order of the handshake messages (connect, then accept, close, or a denial
//! response), message validation with errors that name the problem, and what happens when
//! the app ends without closing (1000) or raises (1011, or 500 before the handshake).
//! Runs on the loop thread only; the frames themselves are the engine's (`engine::ws`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::awaitable::Waiting;
use super::context::{receive, Context, Cycle, WaitFor};
use super::messages::{
    body_bytes, bytes_like, message_and_type, more_body, parse_headers, repr, response_head,
    type_name,
};
use crate::handoff::exchange::Capacity;
use crate::handoff::exchange::ResponseHead;
use crate::handoff::ws_session::{Decision, Incoming, Outgoing, Session};

enum Handshake {
    /// `websocket.connect` not yet received by the app.
    Connecting,
    /// Connect delivered; waiting for accept, close or a denial.
    Connected,
    /// A denial response is being sent: its head, and the body so far.
    Denying(ResponseHead, BytesMut),
    Accepted,
    /// Rejected, denied, or the app is done with it.
    Over,
}

#[pyclass(module = "ferricorn._ferricorn")]
pub struct WebSocketCycle {
    session: Arc<Session>,
    ctx: Py<Context>,
    handshake: Handshake,
}

impl WebSocketCycle {
    pub fn new(session: Arc<Session>, ctx: Py<Context>) -> Self {
        WebSocketCycle {
            session,
            ctx,
            handshake: Handshake::Connecting,
        }
    }

    fn message<'py>(py: Python<'py>, kind: &Bound<'_, PyString>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "type"), kind)?;
        Ok(d)
    }

    fn disconnect(py: Python<'_>, code: u16, reason: &str) -> PyResult<Py<PyAny>> {
        let d = Self::message(py, intern!(py, "websocket.disconnect"))?;
        d.set_item(intern!(py, "code"), code)?;
        d.set_item(intern!(py, "reason"), reason)?;
        Ok(d.into_any().unbind())
    }

    fn done(&self, py: Python<'_>) -> Py<PyAny> {
        Context::done(self.ctx.bind(py))
    }

    fn accept(&mut self, msg: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = msg.py();
        self.expect_handshake("websocket.accept")?;
        let subprotocol = match msg.get_item(intern!(py, "subprotocol"))? {
            None => None,
            Some(p) if p.is_none() => None,
            Some(p) => Some(p.extract::<String>().map_err(|_| {
                PyRuntimeError::new_err(format!(
                    "ASGI 'websocket.accept' subprotocol must be a str or None, got {}.",
                    type_name(&p)
                ))
            })?),
        };
        let headers = parse_headers(msg, "websocket.accept")?;
        self.handshake = Handshake::Accepted;
        if !self.session.decide(Decision::Accept {
            subprotocol,
            headers,
        }) {
            return Err(gone_error());
        }
        Ok(())
    }

    fn expect_handshake(&self, kind: &str) -> PyResult<()> {
        match self.handshake {
            Handshake::Connected | Handshake::Connecting => Ok(()),
            Handshake::Accepted => Err(PyRuntimeError::new_err(format!(
                "Unexpected ASGI message '{kind}' sent, after the WebSocket was already accepted."
            ))),
            Handshake::Denying(..) => Err(PyRuntimeError::new_err(format!(
                "Unexpected ASGI message '{kind}' sent, during the denial response; expected 'websocket.http.response.body'."
            ))),
            Handshake::Over => Err(gone_error()),
        }
    }

    fn send_data(&mut self, msg: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = msg.py();
        match self.handshake {
            Handshake::Accepted => {}
            Handshake::Over => return Err(gone_error()),
            _ => {
                return Err(PyRuntimeError::new_err(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or 'websocket.http.response.start', but got 'websocket.send'.",
                ))
            }
        }
        let bytes = msg.get_item(intern!(py, "bytes"))?.filter(|b| !b.is_none());
        let text = msg.get_item(intern!(py, "text"))?.filter(|t| !t.is_none());
        let message = match (bytes, text) {
            (Some(b), None) => match b.cast::<PyBytes>() {
                Ok(b) => Outgoing::Binary(Bytes::copy_from_slice(b.as_bytes())),
                Err(_) => match bytes_like(&b) {
                    Some(copy) => Outgoing::Binary(Bytes::from(copy)),
                    None => {
                        return Err(PyRuntimeError::new_err(format!(
                            "ASGI 'websocket.send' bytes must be bytes, got {}.",
                            type_name(&b)
                        )))
                    }
                },
            },
            (None, Some(t)) => match t.cast::<PyString>() {
                Ok(t) => Outgoing::Text(Bytes::copy_from_slice(
                    super::messages::utf8(t, "'websocket.send' text")?.as_bytes(),
                )),
                Err(_) => {
                    return Err(PyRuntimeError::new_err(format!(
                        "ASGI 'websocket.send' text must be a str, got {}.",
                        type_name(&t)
                    )))
                }
            },
            _ => {
                return Err(PyRuntimeError::new_err(format!(
                    "ASGI 'websocket.send' needs exactly one of 'bytes' or 'text': {}.",
                    repr(msg.as_any())
                )))
            }
        };
        self.queue(message)
    }

    /// Hands a message to the engine; `OSError` once the socket is closed.
    fn queue(&self, message: Outgoing) -> PyResult<()> {
        if self.session.send(message) {
            Ok(())
        } else {
            Err(gone_error())
        }
    }

    fn close(&mut self, msg: &Bound<'_, PyDict>) -> PyResult<()> {
        match self.handshake {
            Handshake::Connecting | Handshake::Connected => {
                // RFC 6455 has no way to refuse a socket but an HTTP answer: 403. Code and
                // reason have nowhere to go (FastAPI sends a list of errors as the reason).
                self.handshake = Handshake::Over;
                self.session.decide(Decision::Reject);
                Ok(())
            }
            Handshake::Accepted => {
                let (code, reason) = close_code_and_reason(msg)?;
                self.handshake = Handshake::Over;
                self.queue(Outgoing::Close(code, reason))
            }
            Handshake::Denying(..) => self.expect_handshake("websocket.close"),
            Handshake::Over => Err(gone_error()),
        }
    }

    fn deny_start(&mut self, msg: &Bound<'_, PyDict>) -> PyResult<()> {
        self.expect_handshake("websocket.http.response.start")?;
        let (_, head) = response_head(msg, "websocket.http.response.start")?;
        self.handshake = Handshake::Denying(head, BytesMut::new());
        Ok(())
    }

    fn deny_body(&mut self, msg: &Bound<'_, PyDict>) -> PyResult<()> {
        let Handshake::Denying(_, body) = &mut self.handshake else {
            return Err(PyRuntimeError::new_err(
                "Expected ASGI message 'websocket.http.response.start' before 'websocket.http.response.body'.",
            ));
        };
        if let Some(b) = body_bytes(msg, "websocket.http.response.body")? {
            body.extend_from_slice(&b);
        }
        let more = more_body(msg)?;
        if !more {
            if let Handshake::Denying(head, body) =
                std::mem::replace(&mut self.handshake, Handshake::Over)
            {
                self.session.decide(Decision::Deny(head, body.freeze()));
            }
        }
        Ok(())
    }

    /// Ends the session after the app's task stopped.
    fn conclude(&mut self, failed: bool) -> Option<&'static str> {
        let state = std::mem::replace(&mut self.handshake, Handshake::Over);
        let problem = match state {
            Handshake::Connecting | Handshake::Connected | Handshake::Denying(..) => {
                self.session.decide(Decision::Failed);
                (!failed)
                    .then_some("ASGI callable returned without completing the WebSocket handshake.")
            }
            Handshake::Accepted => {
                let code = if failed { 1011 } else { 1000 };
                self.session.send(Outgoing::Close(code, String::new()));
                None
            }
            Handshake::Over => None,
        };
        self.session.release();
        problem
    }
}

fn close_code_and_reason(msg: &Bound<'_, PyDict>) -> PyResult<(u16, String)> {
    let py = msg.py();
    let code: u16 = match msg.get_item(intern!(py, "code"))? {
        None => 1000,
        Some(c) if c.is_none() => 1000,
        Some(c) => c.extract().map_err(|_| {
            PyRuntimeError::new_err(format!(
                "ASGI 'websocket.close' code must be an int, got {}.",
                repr(&c)
            ))
        })?,
    };
    let reason: String = match msg.get_item(intern!(py, "reason"))? {
        None => String::new(),
        Some(r) if r.is_none() => String::new(),
        Some(r) => r.extract().map_err(|_| {
            PyRuntimeError::new_err(format!(
                "ASGI 'websocket.close' reason must be a str, got {}.",
                type_name(&r)
            ))
        })?,
    };
    if !sendable_close_code(code) {
        return Err(PyRuntimeError::new_err(format!(
            "ASGI 'websocket.close' code must be 1000-1003, 1007-1014 or 3000-4999, got {code}."
        )));
    }
    Ok((code, truncate_reason(reason)))
}

/// Close codes an endpoint may send (RFC 6455 7.4, IANA registry): 1004-1006 and 1015 are
/// reserved for reporting, never sent; below 1000 and from 5000 on are not codes.
fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close frame's payload is at most 125 bytes: 2 for the code, 123 for the reason, which
/// is cut at a character boundary rather than making the frame invalid.
fn truncate_reason(mut reason: String) -> String {
    const MAX: usize = 123;
    if reason.len() > MAX {
        let mut end = MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

fn gone_error() -> PyErr {
    PyOSError::new_err("the WebSocket is closed; the message can no longer be sent")
}

impl Cycle for WebSocketCycle {
    fn waiter_key(&self) -> (u64, &Py<Context>) {
        (self.session.id, &self.ctx)
    }

    fn waiting(cycle: Py<Self>, what: WaitFor) -> Waiting {
        Waiting::websocket(cycle, what)
    }

    fn gone_error() -> PyErr {
        gone_error()
    }

    fn poll_capacity(&self) -> Capacity {
        self.session.poll_capacity()
    }

    /// The next message if one is ready, `None` if the app must wait.
    fn try_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if let Handshake::Connecting = self.handshake {
            self.handshake = Handshake::Connected;
            let d = Self::message(py, intern!(py, "websocket.connect"))?;
            return Ok(Some(d.into_any().unbind()));
        }
        let accepted = matches!(self.handshake, Handshake::Accepted);
        loop {
            let message = match self.session.receive() {
                Incoming::Wait => return Ok(None),
                Incoming::Closed(code, reason) => {
                    return Self::disconnect(py, code, &reason).map(Some)
                }
                // After the app closed, what the peer still sent is dropped.
                Incoming::Text(_) | Incoming::Binary(_) if !accepted => continue,
                Incoming::Text(data) => {
                    let d = Self::message(py, intern!(py, "websocket.receive"))?;
                    let text = std::str::from_utf8(&data).map_err(|_| {
                        PyRuntimeError::new_err("received a text message that is not UTF-8")
                    })?;
                    d.set_item(intern!(py, "text"), PyString::new(py, text))?;
                    d
                }
                Incoming::Binary(data) => {
                    let d = Self::message(py, intern!(py, "websocket.receive"))?;
                    d.set_item(intern!(py, "bytes"), PyBytes::new(py, &data))?;
                    d
                }
            };
            return Ok(Some(message.into_any().unbind()));
        }
    }
}

#[pymethods]
impl WebSocketCycle {
    /// `await send(message)`.
    fn send(slf: &Bound<'_, Self>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let (msg, kind) = message_and_type(message)?;
        let (msg, py) = (&msg, slf.py());
        let mut this = slf.borrow_mut();
        match super::messages::utf8(&kind, "message 'type'")? {
            "websocket.send" => {
                this.send_data(msg)?;
                if let Capacity::Wait = this.session.poll_capacity() {
                    drop(this);
                    return Ok(Py::new(
                        py,
                        Waiting::websocket(slf.clone().unbind(), WaitFor::Capacity),
                    )?
                    .into_any());
                }
            }
            "websocket.accept" => this.accept(msg)?,
            "websocket.close" => this.close(msg)?,
            "websocket.http.response.start" => this.deny_start(msg)?,
            "websocket.http.response.body" => this.deny_body(msg)?,
            other => {
                return Err(PyRuntimeError::new_err(format!(
                    "Unexpected ASGI message type '{other}' sent on a WebSocket connection."
                )))
            }
        }
        Ok(this.done(py))
    }

    /// `await receive()`: `websocket.connect`, `websocket.receive` or `websocket.disconnect`.
    fn receive(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        receive(slf)
    }

    /// Called by the runner when the app returned; returns a problem to log, if any.
    fn app_returned(&mut self) -> Option<&'static str> {
        self.conclude(false)
    }

    /// Called by the runner when the app raised; returns whether the peer had already gone
    /// (then an `OSError` from `send()` is expected and not worth a traceback).
    fn app_failed(&mut self) -> bool {
        let gone = self.session.is_finished();
        self.conclude(true);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::{sendable_close_code, truncate_reason};

    #[test]
    fn only_sendable_close_codes_pass() {
        for ok in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999] {
            assert!(sendable_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!sendable_close_code(bad), "{bad}");
        }
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        assert_eq!(truncate_reason("bye".into()), "bye");
        let long = "\u{e9}".repeat(100); // 200 bytes, 2 per character
        let cut = truncate_reason(long);
        assert_eq!(cut.len(), 122);
        assert!(cut.chars().all(|c| c == '\u{e9}'));
    }
}
