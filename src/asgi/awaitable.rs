//! The awaitables `receive()` and `send()` return.
//!
//! When the answer is already known (the common case: body prefetched, response buffered)
//! the awaitable completes on its first step without creating any asyncio object. Otherwise
//! it yields a loop future, registered so that the bridge resolves it when the engine says
//! something changed; on the next step it looks again.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

use super::context::{poll_wait, WaitFor};
use super::http::HttpCycle;
use super::websocket::WebSocketCycle;

/// An awaitable pyclass is its own iterator: `__await__` and `__iter__` return itself, and
/// `__next__` (given) is its one step.
macro_rules! awaitable {
    ($name:ident; $($next:tt)*) => {
        #[pymethods]
        impl $name {
            fn __await__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            fn __iter__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            $($next)*
        }
    };
}

/// Completes at once with `None`. Stateless, so one instance serves every `send()`.
#[pyclass(module = "ferricorn._ferricorn", frozen, freelist = 8)]
pub struct Done;

awaitable! {
    Done;
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

awaitable! {
    Ready;
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

awaitable! {
    Waiting;
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let step = match &self.cycle {
            Cycle::Http(c) => poll_wait(c.bind(py), self.what)?,
            Cycle::WebSocket(c) => poll_wait(c.bind(py), self.what)?,
        };
        match step {
            Ok(Some(message)) => Err(PyStopIteration::new_err((message,))),
            Ok(None) => Ok(None),
            Err(future) => Ok(Some(future)),
        }
    }
}
