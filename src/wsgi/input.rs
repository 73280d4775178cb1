//! `wsgi.input`: the request body as a file-like object, streamed from the socket.
//!
//! Reads take what the engine has delivered into the exchange (at most the read-ahead
//! bound), and block, with the GIL released, only until more arrives or the body ends. The
//! end of the body is an end of file: `b""`, never a block. A client that leaves mid-body
//! makes the read raise `OSError` rather than hand the app a truncated body as if whole.
//! The body's chunks are kept as the engine delivered them and copied once, straight into
//! the `bytes` object a read returns.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::pool::WsgiPool;
use crate::handoff::exchange::{BodyRead, Exchange};

#[pyclass(module = "ferricorn._ferricorn")]
pub struct WsgiInput {
    exchange: Arc<Exchange>,
    /// Body received and not yet read by the app.
    chunks: VecDeque<Bytes>,
    available: usize,
    eof: bool,
}

impl WsgiInput {
    pub fn new(exchange: Arc<Exchange>) -> Self {
        WsgiInput {
            exchange,
            chunks: VecDeque::new(),
            available: 0,
            eof: false,
        }
    }

    /// Waits for more body, `wanted` bytes of it if it has that many (a `read(n)` is woken
    /// once, not for each chunk the client's upload comes in); false at its end.
    fn fill(&mut self, py: Python<'_>, wanted: usize) -> PyResult<bool> {
        if self.eof {
            return Ok(false);
        }
        let exchange = &self.exchange;
        let read = match exchange.read_body_wanting(wanted) {
            BodyRead::Wait => py.detach(|| {
                WsgiPool::wait_for(|| match exchange.read_body_wanting(wanted) {
                    BodyRead::Wait => None,
                    other => Some(other),
                })
            }),
            other => other,
        };
        match read {
            BodyRead::Chunk(chunks, more) => {
                for chunk in chunks.into_chunks() {
                    if !chunk.is_empty() {
                        self.available += chunk.len();
                        self.chunks.push_back(chunk);
                    }
                }
                self.eof = !more;
                Ok(true)
            }
            BodyRead::Disconnected => Err(PyOSError::new_err(
                "the client disconnected before the request body was complete",
            )),
            BodyRead::Wait => unreachable!("wait_for returns only a final read"),
        }
    }

    /// Hands the app the next `n` buffered bytes (at most `available`), copied once.
    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let n = n.min(self.available);
        if let Some(front) = self.chunks.front_mut() {
            if front.len() >= n {
                let out = PyBytes::new(py, &front[..n]);
                front.advance(n);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                self.available -= n;
                return Ok(out);
            }
        }
        let chunks = &mut self.chunks;
        let out = PyBytes::new_with(py, n, |buf| {
            let mut at = 0;
            while at < n {
                let Some(front) = chunks.front_mut() else {
                    break;
                };
                let k = front.len().min(n - at);
                buf[at..at + k].copy_from_slice(&front[..k]);
                front.advance(k);
                if front.is_empty() {
                    chunks.pop_front();
                }
                at += k;
            }
            Ok(())
        })?;
        self.available -= n;
        Ok(out)
    }

    /// The length of the first line in the buffer, newline included, looking at most
    /// `limit` bytes; `None` when no newline is there yet.
    fn line_end(&self, limit: Option<usize>) -> Option<usize> {
        let limit = limit.unwrap_or(usize::MAX);
        let mut seen = 0;
        for chunk in &self.chunks {
            let window = &chunk[..chunk.len().min(limit - seen)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                return Some(seen + i + 1);
            }
            seen += window.len();
            if seen >= limit {
                return None;
            }
        }
        None
    }

    fn read_line<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        loop {
            if let Some(end) = self.line_end(limit) {
                return self.take(py, end);
            }
            if let Some(l) = limit {
                if self.available >= l {
                    return self.take(py, l);
                }
            }
            if !self.fill(py, 1)? {
                let n = self.available;
                return self.take(py, n);
            }
        }
    }
}

/// A size argument: None or a negative number mean "no limit".
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl WsgiInput {
    /// Up to `size` bytes (all that is left without it); fewer only at the end of the body.
    #[pyo3(signature = (size=None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        match limit(size) {
            Some(n) => {
                while self.available < n && self.fill(py, n - self.available)? {}
                self.take(py, n)
            }
            None => {
                while self.fill(py, usize::MAX)? {}
                let n = self.available;
                self.take(py, n)
            }
        }
    }

    /// One line, newline included; at most `size` bytes.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.read_line(py, limit(size))
    }

    /// The remaining lines; stops once `hint` bytes were read, when given.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.read_line(py, None)?;
            let n = line.as_bytes().len();
            if n == 0 {
                return Ok(lines);
            }
            lines.append(line)?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                return Ok(lines);
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}
