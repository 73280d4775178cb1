//! The awaitables `receive()` and `send()` return.
//!
//! When the answer is already known (the common case: body prefetched, response buffered)
//! the awaitable completes on its first step without creating any asyncio object. Otherwise
//! it yields a loop future, registered so that the bridge resolves it when the engine says
//! something changed; on the next step it looks again.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

use super::http::{HttpCycle, WaitFor};
use super::websocket::WebSocketCycle;

/// Completes at once with `None`. Stateless, so one instance serves every `send()`.
#[pyclass(module = "ferricorn._ferricorn", frozen, freelist = 8)]
pub struct Done;

#[pymethods]
impl Done {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self) -> Option<()> {
        None
    }
}

/// Completes at once with a value (a received message).
#[pyclass(module = "ferricorn._ferricorn", freelist = 64)]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    pub fn new(value: Py<PyAny>) -> Self {
        Ready { value: Some(value) }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }
}

/// The cycle a `Waiting` awaitable asks.
enum Cycle {
    Http(Py<HttpCycle>),
    WebSocket(Py<WebSocketCycle>),
}

/// Waits for the engine: yields loop futures until the cycle has an answer.
#[pyclass(module = "ferricorn._ferricorn")]
pub struct Waiting {
    cycle: Cycle,
    what: WaitFor,
}

impl Waiting {
    pub fn http(cycle: Py<HttpCycle>, what: WaitFor) -> Self {
        Waiting {
            cycle: Cycle::Http(cycle),
            what,
        }
    }

    pub fn websocket(cycle: Py<WebSocketCycle>, what: WaitFor) -> Self {
        Waiting {
            cycle: Cycle::WebSocket(cycle),
            what,
        }
    }
}

#[pymethods]
impl Waiting {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let step = match &self.cycle {
            Cycle::Http(c) => HttpCycle::poll_wait(c.bind(py), self.what)?,
            Cycle::WebSocket(c) => WebSocketCycle::poll_wait(c.bind(py), self.what)?,
        };
        match step {
            Ok(Some(message)) => Err(PyStopIteration::new_err((message,))),
            Ok(None) => Ok(None),
            Err(future) => Ok(Some(future)),
        }
    }
}
