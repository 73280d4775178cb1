//! The access log: one line or log record per response, for ASGI and WSGI, HTTP/1.1 and
//! HTTP/2 alike, written off the connection's path.
//!
//! The engine takes a [`Pending`] record when a request arrives and completes it when the
//! response's last byte is handed to the connection; [`AccessLog::submit`] queues it for a
//! writer thread that formats ([`format`]: uvicorn's line, or gunicorn's atoms from
//! `--access-log-format`) and writes it ([`sink`]: straight to the default handler's stream,
//! or through Python's `logging` with the request as `LogRecord` extras).
//! Must not: take the GIL on an engine thread, or decide whether to log (Python passes a
//! target only when the `ferricorn.access` logger would print).

mod clock;
pub mod format;
pub mod sink;

use pyo3::prelude::*;

pub use crate::handoff::access_record::AccessRecord;
pub use format::{AtomFormat, LineFormat, StatusPhrases};
pub use sink::{fields_extra, request_extra, AccessLog, Output};

/// What Python hands over to start a worker's access log (`ferricorn.logging.access_target`).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct AccessTarget {
    /// The `ferricorn.access` logger's `info`.
    pub info: Py<PyAny>,
    /// A duplicate of the default handler's stream's descriptor, when lines may be written
    /// there directly; `None` to go through `logging`.
    pub fd: Option<i32>,
    /// What the default formatter puts before the message ("INFO:     ").
    pub prefix: String,
    /// Python's `http.HTTPStatus` phrases.
    pub phrases: Vec<(u16, String)>,
}

/// Parses `--access-log-format`; the error names the atom or the place that is wrong.
pub fn parse_format(text: Option<&str>) -> Result<LineFormat, String> {
    match text {
        None => Ok(LineFormat::Uvicorn),
        Some(text) => AtomFormat::parse(text).map(LineFormat::Atoms),
    }
}

impl AccessLog {
    /// Starts the worker's access log for `target`.
    /// Starts the worker's access log for `target`, in `format` (`--access-log-format`, or
    /// `None` for uvicorn's line).
    pub fn from_target(
        target: AccessTarget,
        format: Option<&str>,
        error_log: Py<PyAny>,
    ) -> PyResult<AccessLog> {
        use std::os::fd::FromRawFd;

        let format = parse_format(format).map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("--access-log-format: {e}"))
        })?;
        let output = match target.fd {
            Some(fd) => Output::Direct {
                // SAFETY: Python duplicated the descriptor for us and keeps no reference to
                // the duplicate, so this file is its only owner.
                file: unsafe { std::fs::File::from_raw_fd(fd) },
                prefix: target.prefix,
            },
            None => Output::Logging { info: target.info },
        };
        AccessLog::start(
            format,
            output,
            StatusPhrases::new(target.phrases),
            error_log,
        )
        .map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!("cannot start the access log writer: {e}"))
        })
    }
}

/// `_ferricorn.check_access_log_format(text)`: raises `ValueError` naming what is wrong.
#[pyfunction]
pub fn check_access_log_format(text: &str) -> PyResult<()> {
    AtomFormat::parse(text)
        .map(|_| ())
        .map_err(pyo3::exceptions::PyValueError::new_err)
}
