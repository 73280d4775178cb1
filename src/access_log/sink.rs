//! Where access records go: a queue the engine appends to and one writer thread that
//! formats and writes them in batches, so that a request costs its connection a push and
//! nothing else.
//!
//! Two outputs: the file descriptor of the default access handler (written directly, when
//! Python found the `ferricorn.access` logger configured as shipped), or Python's `logging`
//! (any other configuration: JSON, a user's dictConfig, filters), called from the writer
//! thread with the GIL taken once per batch. Must not: block the engine (the queue is a
//! mutex held for a push), or take the GIL on an engine thread.

use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use super::format::{escape_control, push_full_path, version_text, LineFormat, StatusPhrases};
use crate::handoff::access_record::{AccessRecord, AccessSink, RequestFields};
use crate::handoff::{percent_decode_bytes, Peer, RequestHead};

/// How long the writer gathers records after a write before the next one: at a high
/// request rate one write (and one GIL acquisition) serves a batch of lines.
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Records handed to Python's logging between two releases of the GIL, so that the event
/// loop thread is not kept waiting for a whole batch.
const GIL_SLICE: usize = 64;

/// How often a failing direct output reports lines it lost.
const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Where the writer thread puts lines.
pub enum Output {
    /// The access handler's stream, written directly; each line starts with `prefix`
    /// (uvicorn's "INFO:     ", or nothing for `--access-log-format`).
    Direct { file: File, prefix: String },
    /// Python's `logging`: `info` is the `ferricorn.access` logger's `info` method.
    Logging { info: Py<PyAny> },
}

/// The access log of one worker: the format, the queue, the writer thread.
pub struct AccessLog {
    format: Arc<LineFormat>,
    /// The headers the format shows, which the engine keeps with each record.
    request_headers: Vec<http::HeaderName>,
    response_headers: Vec<http::HeaderName>,
    wants_start_time: bool,
    shared: Arc<Queue>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Queue {
    records: Mutex<Vec<AccessRecord>>,
    /// The writer is parked waiting for a record (and must be unparked by the next push).
    idle: AtomicBool,
    stop: AtomicBool,
    writer: std::thread::Thread,
}

impl AccessLog {
    /// Starts the writer thread. `error_log` (the `ferricorn.error` logger) hears about
    /// lines a direct output could not write.
    pub fn start(
        format: LineFormat,
        output: Output,
        phrases: StatusPhrases,
        error_log: Py<PyAny>,
    ) -> std::io::Result<AccessLog> {
        let format = Arc::new(format);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Arc<Queue>>();
        let writer_format = format.clone();
        let writer = std::thread::Builder::new()
            .name("ferricorn-access-log".into())
            .spawn(move || {
                let queue = Arc::new(Queue {
                    records: Mutex::new(Vec::with_capacity(1024)),
                    idle: AtomicBool::new(false),
                    stop: AtomicBool::new(false),
                    writer: std::thread::current(),
                });
                if ready_tx.send(queue.clone()).is_err() {
                    return;
                }
                Writer {
                    queue,
                    format: writer_format,
                    output,
                    phrases,
                    error_log,
                    lost: 0,
                    last_loss_report: None,
                }
                .run();
            })?;
        let shared = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the access log writer thread did not start"))?;
        Ok(AccessLog {
            request_headers: format.request_headers(),
            wants_start_time: format.shows_start_time(),
            response_headers: format.response_headers(),
            format,
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn format(&self) -> &LineFormat {
        &self.format
    }

    /// Writes what is queued and stops the writer. Call without the GIL held: the writer
    /// may need it for a last batch.
    pub fn close(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.writer.unpark();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl AccessSink for AccessLog {
    /// Queues a record; called on engine threads.
    fn submit(&self, record: AccessRecord) {
        let first = {
            let mut records = self
                .shared
                .records
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            records.push(record);
            records.len() == 1
        };
        if first && self.shared.idle.load(Ordering::Acquire) {
            self.shared.writer.unpark();
        }
    }

    fn request_headers(&self) -> &[http::HeaderName] {
        &self.request_headers
    }

    fn response_headers(&self) -> &[http::HeaderName] {
        &self.response_headers
    }

    fn wants_start_time(&self) -> bool {
        self.wants_start_time
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // Without a join: the last owner may hold the GIL, which the writer could need.
        self.shared.stop.store(true, Ordering::Release);
        self.shared.writer.unpark();
    }
}

struct Writer {
    queue: Arc<Queue>,
    format: Arc<LineFormat>,
    output: Output,
    phrases: StatusPhrases,
    error_log: Py<PyAny>,
    /// Lines a direct output failed to write since the last report.
    lost: u64,
    last_loss_report: Option<Instant>,
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<AccessRecord> = Vec::with_capacity(1024);
        let mut text = String::with_capacity(64 * 1024);
        loop {
            {
                let mut records = self.queue.records.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::swap(&mut *records, &mut batch);
            }
            if batch.is_empty() {
                if self.queue.stop.load(Ordering::Acquire) {
                    return;
                }
                self.queue.idle.store(true, Ordering::Release);
                // A record pushed before `idle` was set saw no sleeper: look once more.
                let queued = !self
                    .queue
                    .records
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
                if !queued && !self.queue.stop.load(Ordering::Acquire) {
                    std::thread::park();
                }
                self.queue.idle.store(false, Ordering::Release);
                continue;
            }
            self.write(&batch, &mut text);
            batch.clear();
            if !self.queue.stop.load(Ordering::Acquire) {
                std::thread::sleep(BATCH_WINDOW);
            }
        }
    }

    fn write(&mut self, batch: &[AccessRecord], text: &mut String) {
        let failure = match &self.output {
            Output::Direct { file, prefix } => {
                text.clear();
                for record in batch {
                    text.push_str(prefix);
                    self.format.render(record, &self.phrases, text);
                    text.push('\n');
                }
                let mut file: &File = file;
                file.write_all(text.as_bytes()).err()
            }
            Output::Logging { info } => {
                for slice in batch.chunks(GIL_SLICE) {
                    Python::attach(|py| {
                        for record in slice {
                            if let Err(e) = self.log_record(py, info, record) {
                                e.print(py);
                            }
                        }
                    });
                }
                None
            }
        };
        if let Some(error) = failure {
            self.lost += batch.len() as u64;
            self.report_loss(&error);
        }
    }

    fn log_record(&self, py: Python<'_>, info: &Py<PyAny>, r: &AccessRecord) -> PyResult<()> {
        let extra = record_extra(py, r)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "extra"), extra)?;
        let args = match self.format.as_ref() {
            LineFormat::Uvicorn => PyTuple::new(
                py,
                [
                    intern!(py, "%s - \"%s %s HTTP/%s\" %d").clone().into_any(),
                    r.client
                        .address()
                        .map(|a| escape_control(&a))
                        .unwrap_or_default()
                        .into_bound_py_any(py)?,
                    escape_control(r.method.as_str()).into_bound_py_any(py)?,
                    {
                        let mut full_path = String::new();
                        push_full_path(&mut full_path, r);
                        full_path.into_bound_py_any(py)?
                    },
                    version_text(r.version).into_bound_py_any(py)?,
                    r.status.into_bound_py_any(py)?,
                ],
            )?,
            LineFormat::Atoms(_) => {
                let mut line = String::new();
                self.format.render(r, &self.phrases, &mut line);
                PyTuple::new(
                    py,
                    [
                        intern!(py, "%s").clone().into_any(),
                        line.into_bound_py_any(py)?,
                    ],
                )?
            }
        };
        info.bind(py).call(args, Some(&kwargs))?;
        Ok(())
    }

    fn report_loss(&mut self, error: &std::io::Error) {
        let due = self
            .last_loss_report
            .is_none_or(|at| at.elapsed() >= LOSS_REPORT_INTERVAL);
        if !due {
            return;
        }
        self.last_loss_report = Some(Instant::now());
        let lost = std::mem::take(&mut self.lost);
        Python::attach(|py| {
            let message = format!(
                "The access log could not be written ({error}): {lost} line(s) lost; requests are served as before. Free the disk or fix the log's destination."
            );
            if let Err(e) = self
                .error_log
                .call_method1(py, intern!(py, "warning"), (message,))
            {
                e.print(py);
            }
        });
    }
}

/// The `LogRecord` extras of a finished response: what a JSON formatter shows without
/// parsing the message.
pub fn record_extra<'py>(py: Python<'py>, r: &AccessRecord) -> PyResult<Bound<'py, PyDict>> {
    let extra = request_fields(py, &r.client, &r.method, &r.uri, r.version, &r.request_id)?;
    extra.set_item(intern!(py, "status_code"), r.status)?;
    extra.set_item(intern!(py, "response_bytes"), r.body_bytes)?;
    extra.set_item(
        intern!(py, "duration_ms"),
        (r.duration_ms() * 1000.0).round() / 1000.0,
    )?;
    Ok(extra)
}

/// The extras of an error record about a request that has not ended: the request's fields
/// without status, size and duration. The same keys as `ferricorn.logging.request_extra`,
/// which adds them to an ASGI app's error records from its scope.
pub fn request_extra<'py>(py: Python<'py>, head: &RequestHead) -> PyResult<Bound<'py, PyDict>> {
    request_fields(
        py,
        &head.client,
        &head.method,
        &head.uri,
        head.version,
        &head.request_id,
    )
}

/// [`request_extra`] from fields kept after the request was handed on.
pub fn fields_extra<'py>(py: Python<'py>, f: &RequestFields) -> PyResult<Bound<'py, PyDict>> {
    request_fields(py, &f.client, &f.method, &f.uri, f.version, &f.request_id)
}

fn request_fields<'py>(
    py: Python<'py>,
    client: &Peer,
    method: &http::Method,
    uri: &http::Uri,
    version: http::Version,
    request_id: &Option<http::HeaderValue>,
) -> PyResult<Bound<'py, PyDict>> {
    let extra = PyDict::new(py);
    extra.set_item(intern!(py, "client_addr"), client.address())?;
    extra.set_item(intern!(py, "method"), method.as_str())?;
    extra.set_item(
        intern!(py, "path"),
        String::from_utf8_lossy(&percent_decode_bytes(uri.path().as_bytes())),
    )?;
    extra.set_item(intern!(py, "query"), uri.query().unwrap_or(""))?;
    extra.set_item(intern!(py, "http_version"), version_text(version))?;
    extra.set_item(
        intern!(py, "request_id"),
        request_id
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    )?;
    extra.set_item(intern!(py, "worker_pid"), std::process::id())?;
    Ok(extra)
}
