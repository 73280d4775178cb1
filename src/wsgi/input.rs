//! `wsgi.input`: the request body as a file-like object, streamed from the socket.
//!
//! Reads take what the engine has delivered into the exchange (at most the read-ahead
//! bound), and block, with the GIL released, only until more arrives or the body ends. The
//! end of the body is an end of file: `b""`, never a block. A client that leaves mid-body
//! makes the read raise `OSError` rather than hand the app a truncated body as if whole.

use std::sync::Arc;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::pool::WsgiPool;
use crate::handoff::exchange::{BodyRead, Exchange};

#[pyclass(module = "ferricorn._ferricorn")]
pub struct WsgiInput {
    exchange: Arc<Exchange>,
    /// Bytes received and not yet read by the app: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl WsgiInput {
    pub fn new(exchange: Arc<Exchange>) -> Self {
        WsgiInput {
            exchange,
            buf: Vec::new(),
            start: 0,
            eof: false,
        }
    }

    fn available(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Waits for more body; false at its end.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if self.eof {
            return Ok(false);
        }
        let exchange = &self.exchange;
        let read = match exchange.read_body() {
            BodyRead::Wait => py.detach(|| {
                WsgiPool::wait_for(|| match exchange.read_body() {
                    BodyRead::Wait => None,
                    other => Some(other),
                })
            }),
            other => other,
        };
        match read {
            BodyRead::Chunk(chunks, more) => {
                if self.start > 0 && self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                let at = self.buf.len();
                self.buf.resize(at + chunks.len(), 0);
                chunks.copy_into(&mut self.buf[at..]);
                self.eof = !more;
                Ok(true)
            }
            BodyRead::Disconnected => Err(PyOSError::new_err(
                "the client disconnected before the request body was complete",
            )),
            BodyRead::Wait => unreachable!("wait_for returns only a final read"),
        }
    }

    /// Hands the app `n` buffered bytes.
    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let out = PyBytes::new(py, &self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        out
    }

    fn line_end(&self, limit: Option<usize>) -> Option<usize> {
        let window = &self.buf[self.start..];
        let window = match limit {
            Some(l) if l < window.len() => &window[..l],
            _ => window,
        };
        window.iter().position(|&b| b == b'\n').map(|i| i + 1)
    }

    fn read_line<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        loop {
            if let Some(end) = self.line_end(limit) {
                return Ok(self.take(py, end));
            }
            if let Some(l) = limit {
                if self.available() >= l {
                    return Ok(self.take(py, l));
                }
            }
            if !self.fill(py)? {
                let n = self.available();
                return Ok(self.take(py, n));
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
                while self.available() < n && self.fill(py)? {}
                let n = n.min(self.available());
                Ok(self.take(py, n))
            }
            None => {
                while self.fill(py)? {}
                let n = self.available();
                Ok(self.take(py, n))
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
