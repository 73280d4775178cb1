//! The WSGI adapter (PEP 3333): WSGI apps served on the same engine as ASGI ones.
//!
//! Requests reach a pool of Python threads ([`pool::WsgiPool`]) instead of the event loop;
//! each thread runs [`WsgiHost::run`]: take a request (GIL released while waiting), build
//! the environ, call the app, stream its iterable into the request's `Exchange`, call
//! `close()`. Every blocking point (waiting for a request, for request body, for room in the
//! response buffer) releases the GIL; engine threads never take it.
//!
//! Owns the environ, `wsgi.input`, `start_response`/`write` and the response's framing. Must
//! not: import hyper or reach into `engine`, run on the event loop thread, or hold a lock
//! across a call into Python.

pub mod environ;
pub mod input;
pub mod pool;
pub mod response;

use std::sync::Arc;

use bytes::Bytes;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::access_log::request_extra;
use crate::handoff::access_record::RequestFields;
use crate::handoff::{IncomingRequest, RequestHead};
use environ::{EnvironBuilder, EnvironTemplate};
use input::WsgiInput;
use pool::{RequestLabel, WsgiPool};
use response::WsgiResponse;

/// What the WSGI threads share: the app, the pool, the loggers.
#[pyclass(frozen, module = "ferricorn._ferricorn")]
pub struct WsgiHost {
    pool: Arc<WsgiPool>,
    app: Py<PyAny>,
    template: EnvironTemplate,
    error_log: Py<PyAny>,
}

impl WsgiHost {
    pub fn pool(&self) -> Arc<WsgiPool> {
        self.pool.clone()
    }
}

#[pymethods]
impl WsgiHost {
    /// `errors` is `wsgi.errors`, `file_wrapper` is `wsgi.file_wrapper`.
    #[new]
    #[pyo3(signature = (app, root_path, multiprocess, errors, file_wrapper, error_log))]
    fn new(
        app: Py<PyAny>,
        root_path: String,
        multiprocess: bool,
        errors: Py<PyAny>,
        file_wrapper: Py<PyAny>,
        error_log: Py<PyAny>,
    ) -> Self {
        keep_large_blocks();
        WsgiHost {
            pool: Arc::new(WsgiPool::default()),
            app,
            template: EnvironTemplate {
                root_path,
                multiprocess,
                errors,
                file_wrapper,
            },
            error_log,
        }
    }

    /// A WSGI thread's whole life: serve requests until the pool closes.
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        pool::yield_to_running_threads();
        let mut builder = EnvironBuilder::new(py, &self.template)?;
        loop {
            // A thread that just finished takes queued work before it gives up the GIL.
            let request = match self.pool.try_next() {
                Some(r) => r,
                None => {
                    if !py.detach(|| self.pool.wait_for_work()) {
                        return Ok(());
                    }
                    match self.pool.take() {
                        Some(r) => r,
                        None => continue,
                    }
                }
            };
            self.serve(py, &mut builder, request);
        }
    }

    /// No more requests: the threads return once the queue is empty.
    fn close(&self) {
        self.pool.close();
    }

    /// Requests a WSGI thread is serving now.
    fn running(&self) -> usize {
        self.pool.running()
    }
}

impl WsgiHost {
    /// Serves one request to its end; errors are the app's and are logged, never raised.
    fn serve(&self, py: Python<'_>, builder: &mut EnvironBuilder, req: IncomingRequest) {
        let exchange = req.exchange.clone();
        let label = RequestLabel::of(&req);
        let fields = RequestFields::of(&req);
        let claim = self.pool.begin(&exchange, label.clone(), fields);
        let is_head = req.method == http::Method::HEAD;
        let response = WsgiResponse::new(exchange.clone(), claim.clone(), is_head, label);
        match Bound::new(py, response) {
            Ok(response) => {
                let failure = self.call_app(py, builder, &req, &response).err();
                if let Some(error) = failure {
                    response.borrow_mut().fail();
                    let abandoned = exchange.is_client_gone() || claim.lost_to_deadline();
                    self.report(py, error, abandoned, &req);
                }
            }
            Err(error) => self.report(py, error, false, &req),
        }
        self.pool.end(exchange.id);
        exchange.release();
    }

    /// Calls the app and sends what it returns; `close()` is called on every path once the
    /// iterable exists. The first error wins.
    fn call_app(
        &self,
        py: Python<'_>,
        builder: &mut EnvironBuilder,
        req: &IncomingRequest,
        response: &Bound<'_, WsgiResponse>,
    ) -> PyResult<()> {
        let environ = builder.build(py, req)?;
        environ.set_item(
            intern!(py, "wsgi.input"),
            Py::new(py, WsgiInput::new(req.exchange.clone()))?,
        )?;
        let iterable = self.app.bind(py).call1((environ, response))?;
        let file_wrapper = self.template.file_wrapper.bind(py);
        let sent = send_iterable(py, &iterable, response, file_wrapper)
            .and_then(|()| response.borrow_mut().finish(py));
        let closed = match iterable.getattr_opt(intern!(py, "close")) {
            Ok(Some(close)) => close.call0().map(drop),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        sent.and(closed)
    }

    /// Logs an app failure: with its traceback, unless the client had left (or the request
    /// had been answered 504) and the error only says so.
    fn report(&self, py: Python<'_>, error: PyErr, abandoned: bool, req: &RequestHead) {
        let log = self.error_log.bind(py);
        let result = request_extra(py, req).and_then(|extra| {
            let kwargs = PyDict::new(py);
            kwargs.set_item(intern!(py, "extra"), extra)?;
            if abandoned && caused_by_os_error(py, &error) {
                log.call_method(
                    intern!(py, "debug"),
                    (format!("WSGI request ended early: {error}"),),
                    Some(&kwargs),
                )
            } else {
                // `into_value` puts the traceback on the exception, where logging finds it.
                kwargs.set_item(intern!(py, "exc_info"), error.into_value(py))?;
                log.call_method(
                    intern!(py, "error"),
                    ("Exception in WSGI application\n",),
                    Some(&kwargs),
                )
            }
        });
        if let Err(e) = result {
            e.print(py);
        }
    }
}

/// Large blocks from the heap, kept for reuse: glibc's default gives each allocation past
/// its (moving) mmap threshold fresh pages and hands them back on free, so a WSGI app that
/// moves megabyte bodies (`wsgi.input` read whole, the body joined, the response copied out
/// of Python) page-faults on every byte of each. Measured on wsgi-echo-1m (1 MiB up and
/// back, 8 threads): 628-852 requests/s at 1,505-1,904 us of CPU each, against 1,166-1,367
/// at 796-931 us with blocks up to 8 MiB from the heap and up to 32 MiB of free heap kept
/// before it is trimmed; RSS 167 MiB against 152-156. Process-wide, so only where a WSGI app
/// is served: on ASGI hello it measured a few percent slower, and ASGI bodies come in
/// chunks. Once per process.
fn keep_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes glibc's allocation parameters; both values are
            // within its accepted ranges (the mmap threshold at most 32 MiB on 64-bit).
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 8 * 1024 * 1024);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 32 * 1024 * 1024);
            }
        });
    }
}

/// Sends the app's iterable. A list or tuple is the whole body at once (one response with a
/// Content-Length); anything else is streamed chunk by chunk as the app produces it.
fn send_iterable(
    py: Python<'_>,
    iterable: &Bound<'_, PyAny>,
    response: &Bound<'_, WsgiResponse>,
    file_wrapper: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if iterable.is_instance(file_wrapper)? {
        if let Some(file) = file_of(iterable) {
            if response.borrow_mut().emit_file(file)? {
                return Ok(());
            }
        }
    }
    let whole = if let Ok(list) = iterable.cast::<PyList>() {
        Some(list.iter().collect::<Vec<_>>())
    } else if let Ok(tuple) = iterable.cast::<PyTuple>() {
        Some(tuple.iter().collect::<Vec<_>>())
    } else {
        None
    };
    if let Some(items) = whole {
        if !response.borrow().head_sent() {
            let body = join_chunks(&items)?;
            return response.borrow_mut().emit(py, body, true);
        }
    }
    for item in iterable.try_iter()? {
        let chunk = body_chunk(&item?)?;
        let mut r = response.borrow_mut();
        r.emit(py, chunk, false)?;
        if r.complete() {
            break;
        }
    }
    Ok(())
}

/// The file behind a `wsgi.file_wrapper`, when it is a real one: a duplicate of its
/// descriptor, at the position the app's file object reports (its buffer may have read
/// ahead of it). `None` sends the wrapper by iterating it (a `BytesIO`, a socket...).
fn file_of(wrapper: &Bound<'_, PyAny>) -> Option<std::fs::File> {
    use std::io::{Seek, SeekFrom};
    use std::os::fd::BorrowedFd;

    let py = wrapper.py();
    let filelike = wrapper.getattr(intern!(py, "filelike")).ok()?;
    let fd: i32 = filelike
        .call_method0(intern!(py, "fileno"))
        .ok()?
        .extract()
        .ok()?;
    let position: u64 = filelike
        .call_method0(intern!(py, "tell"))
        .ok()?
        .extract()
        .ok()?;
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is open for the duration of this call (the app's file object owns it and
    // is alive: we hold a reference to it); the borrow ends before we return, and what we
    // keep is our own duplicate.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned = borrowed.try_clone_to_owned().ok()?;
    let mut file = std::fs::File::from(owned);
    // Checked again by the engine; a pipe or socket fails here and is iterated instead.
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    file.seek(SeekFrom::Start(position)).ok()?;
    Some(file)
}

fn join_chunks(items: &[Bound<'_, PyAny>]) -> PyResult<Bytes> {
    if let [one] = items {
        return body_chunk(one);
    }
    let mut body = Vec::new();
    for item in items {
        body.extend_from_slice(&body_chunk(item)?);
    }
    Ok(Bytes::from(body))
}

/// A body chunk from the app: `bytes`, or any bytes-like object (bytearray, memoryview).
pub(crate) fn body_chunk(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    crate::asgi::messages::bytes_like(obj)
        .map(Bytes::from)
        .ok_or_else(|| {
            PyTypeError::new_err(format!(
                "a WSGI response body must be an iterable of bytes, got an item of type {}",
                obj.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })
}

/// Whether `error`, or an exception it was raised from, is an OSError (a client that left,
/// as seen by `write()` or `wsgi.input`).
fn caused_by_os_error(py: Python<'_>, error: &PyErr) -> bool {
    let mut cause = Some(error.clone_ref(py));
    for _ in 0..8 {
        let Some(e) = cause else { return false };
        if e.is_instance_of::<pyo3::exceptions::PyOSError>(py) {
            return true;
        }
        cause = e.cause(py).or_else(|| {
            e.value(py)
                .getattr(intern!(py, "__context__"))
                .ok()
                .filter(|c| !c.is_none())
                .map(PyErr::from_value)
        });
    }
    false
}
