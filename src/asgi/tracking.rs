//! Request supervision: cancelling the work of clients that left, and request deadlines.
//!
//! Only active with `--cancel-on-disconnect` or `--timeout-request`; otherwise no request is
//! tracked and this costs nothing. Deadlines all have the same length, so they expire in
//! arrival order and a FIFO queue, checked a few times a second, is enough.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use pyo3::intern;
use pyo3::prelude::*;

use super::http::HttpCycle;
use crate::metrics::{MetricsBlock, Rejected};

#[derive(Clone, Copy, Debug, Default)]
pub struct TrackingConfig {
    pub cancel_on_disconnect: bool,
    pub timeout: Option<Duration>,
}

impl TrackingConfig {
    pub fn enabled(&self) -> bool {
        self.cancel_on_disconnect || self.timeout.is_some()
    }
}

struct Running {
    task: Py<PyAny>,
    cycle: Py<HttpCycle>,
    /// "GET /path", for the log lines.
    label: String,
    /// The request's scope, for the fields of the log records about it.
    scope: Py<PyAny>,
}

pub struct Tracker {
    config: TrackingConfig,
    running: HashMap<u64, Running>,
    deadlines: VecDeque<(Instant, u64)>,
}

impl Tracker {
    pub fn new(config: TrackingConfig) -> Self {
        Tracker {
            config,
            running: HashMap::new(),
            deadlines: VecDeque::new(),
        }
    }

    pub fn start(
        &mut self,
        id: u64,
        task: Py<PyAny>,
        cycle: Py<HttpCycle>,
        label: String,
        scope: Py<PyAny>,
    ) {
        if let Some(t) = self.config.timeout {
            self.deadlines.push_back((Instant::now() + t, id));
        }
        let running = Running {
            task,
            cycle,
            label,
            scope,
        };
        self.running.insert(id, running);
    }

    /// The app's task ended; its deadline entry is skipped when it comes up.
    pub fn finish(&mut self, id: u64) -> Option<(Py<PyAny>, Py<HttpCycle>)> {
        self.running.remove(&id).map(|r| (r.task, r.cycle))
    }

    /// Something changed for `id`; if the client left before the response was complete and
    /// `--cancel-on-disconnect` is on, cancels the task.
    pub fn on_wake(&mut self, py: Python<'_>, id: u64, log: &Py<PyAny>) -> PyResult<()> {
        if !self.config.cancel_on_disconnect {
            return Ok(());
        }
        let abandoned = match self.running.get(&id) {
            Some(r) => r.cycle.bind(py).borrow().abandoned(),
            None => return Ok(()),
        };
        if abandoned {
            let r = self.running.remove(&id).expect("checked above");
            r.task.call_method0(py, intern!(py, "cancel"))?;
            log_about(
                py,
                log,
                "debug",
                format!("Client disconnected: cancelled {}", r.label),
                &r.scope,
            )?;
        }
        Ok(())
    }

    /// Cancels the tasks whose deadline passed; the cycle then answers 504 if it can.
    pub fn expire(
        &mut self,
        py: Python<'_>,
        log: &Py<PyAny>,
        metrics: &MetricsBlock,
    ) -> PyResult<()> {
        let Some(timeout) = self.config.timeout else {
            return Ok(());
        };
        let now = Instant::now();
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(r) = self.running.remove(&id) {
                r.cycle.bind(py).borrow_mut().mark_timed_out();
                metrics.rejected(Rejected::Deadline);
                r.task.call_method0(py, intern!(py, "cancel"))?;
                let message = format!(
                    "Request timed out after {:.1} s (--timeout-request): cancelled {}",
                    timeout.as_secs_f64(),
                    r.label
                );
                log_about(py, log, "warning", message, &r.scope)?;
            }
        }
        Ok(())
    }
}

/// Logs `message` at `level` with the request's fields as `LogRecord` extras
/// (`ferricorn.logging.request_extra`), as the app's error records have them.
fn log_about(
    py: Python<'_>,
    log: &Py<PyAny>,
    level: &str,
    message: String,
    scope: &Py<PyAny>,
) -> PyResult<()> {
    let extra = py
        .import(intern!(py, "ferricorn.logging"))?
        .call_method1(intern!(py, "request_extra"), (scope,))?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item(intern!(py, "extra"), extra)?;
    log.call_method(py, level, (message,), Some(&kwargs))?;
    Ok(())
}
