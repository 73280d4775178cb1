//! What every cycle of one server shares on the loop thread: the loop's `create_future`, the
//! futures app tasks wait on (resolved when the engine posts a wake) and the request
//! tracker.
//!
//! Owns the one waiting mechanism of the adapter: an awaitable that cannot complete yet
//! registers a loop future under its exchange or session id ([`Context::register_waiter`]),
//! and [`Context::wake`] resolves them all when the engine says something changed. Must not:
//! touch an exchange or a session itself (the cycles do), or hold Python objects past the
//! loop thread.

use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;

use super::awaitable::{Done, Ready, Waiting};
use super::tracking::{Tracker, TrackingConfig};
use crate::handoff::exchange::Capacity;

/// State shared by every cycle of one server: created once, referenced by each cycle.
#[pyclass(module = "ferricorn._ferricorn")]
pub struct Context {
    create_future: Py<PyAny>,
    /// Loop futures of app tasks waiting on an exchange, resolved by the bridge's wake.
    waiters: HashMap<u64, Vec<Py<PyAny>>>,
    done: Py<Done>,
    /// Running requests, when cancellation or deadlines need them.
    pub(crate) tracker: Option<Tracker>,
}

impl Context {
    pub fn new(
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        tracking: TrackingConfig,
    ) -> PyResult<Self> {
        Ok(Context {
            create_future: event_loop.getattr("create_future")?.unbind(),
            waiters: HashMap::new(),
            done: Py::new(py, Done)?,
            tracker: tracking.enabled().then(|| Tracker::new(tracking)),
        })
    }

    /// Resolves every future waiting on `exchange_id`; each waiter then looks again.
    pub fn wake(ctx: &Bound<'_, Context>, exchange_id: u64) -> PyResult<()> {
        let futures = ctx.borrow_mut().waiters.remove(&exchange_id);
        for fut in futures.into_iter().flatten() {
            let fut = fut.bind(ctx.py());
            if !fut.call_method0(intern!(ctx.py(), "done"))?.is_truthy()? {
                fut.call_method1(intern!(ctx.py(), "set_result"), (ctx.py().None(),))?;
            }
        }
        Ok(())
    }

    /// A loop future that `wake(id)` will resolve; the awaitable yields it.
    pub fn register_waiter(ctx: &Bound<'_, Context>, id: u64) -> PyResult<Py<PyAny>> {
        let py = ctx.py();
        let fut = ctx.borrow().create_future.call0(py)?;
        // asyncio.Task accepts a yielded future only with this flag set (as `Future.__await__`
        // sets it).
        fut.setattr(py, intern!(py, "_asyncio_future_blocking"), true)?;
        ctx.borrow_mut()
            .waiters
            .entry(id)
            .or_default()
            .push(fut.clone_ref(py));
        Ok(fut)
    }

    /// The shared awaitable that completes at once with `None`.
    pub fn done(ctx: &Bound<'_, Context>) -> Py<PyAny> {
        ctx.borrow().done.clone_ref(ctx.py()).into_any()
    }

    /// Whether an app task waits on exchange or session `id`.
    pub fn has_waiters(&self, id: u64) -> bool {
        self.waiters.contains_key(&id)
    }
}

/// What an HTTP or WebSocket cycle tells a `Waiting` awaitable; the waiting itself (a loop
/// future per step, resolved by the engine's wake) is the same for both: [`poll_wait`].
pub trait Cycle: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::False> {
    /// The id waiters register under (the exchange's or the session's) and the context.
    fn waiter_key(&self) -> (u64, &Py<Context>);
    /// The next received message, or `None` to wait.
    fn try_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>>;
    /// Room in the send buffer (registers the app as waiting when there is none).
    fn poll_capacity(&self) -> Capacity;
    /// What a `send()` raises once the client is gone.
    fn gone_error() -> PyErr;
    /// The awaitable that waits on this cycle.
    fn waiting(cycle: Py<Self>, what: WaitFor) -> Waiting;
}

/// `await receive()` on any cycle: completes at once when a message is there.
pub fn receive<C: Cycle>(cycle: &Bound<'_, C>) -> PyResult<Py<PyAny>> {
    let py = cycle.py();
    let ready = cycle.borrow_mut().try_receive(py)?;
    match ready {
        Some(message) => Ok(Py::new(py, Ready::new(message))?.into_any()),
        None => Ok(Py::new(py, C::waiting(cycle.clone().unbind(), WaitFor::Receive))?.into_any()),
    }
}

/// One step of a `Waiting` awaitable on `cycle`: `Ok(Ok(value))` when done, `Ok(Err(future))`
/// to yield a loop future the engine's wake resolves, `Err` to raise.
pub fn poll_wait<C: Cycle>(
    cycle: &Bound<'_, C>,
    what: WaitFor,
) -> PyResult<Result<Option<Py<PyAny>>, Py<PyAny>>> {
    let py = cycle.py();
    let ready = match what {
        WaitFor::Receive => cycle.borrow_mut().try_receive(py)?.map(Some),
        WaitFor::Capacity => match cycle.borrow().poll_capacity() {
            Capacity::Disconnected => return Err(C::gone_error()),
            Capacity::Available => Some(None),
            Capacity::Wait => None,
        },
    };
    match ready {
        Some(value) => Ok(Ok(value)),
        None => {
            let this = cycle.borrow();
            let (id, ctx) = this.waiter_key();
            Ok(Err(Context::register_waiter(ctx.bind(py), id)?))
        }
    }
}

/// What a `Waiting` awaitable waits for.
#[derive(Clone, Copy)]
pub enum WaitFor {
    /// The next `receive()` message.
    Receive,
    /// Room in the response buffer.
    Capacity,
}
