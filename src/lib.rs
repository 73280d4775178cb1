//! ferricorn's Rust core: an ASGI server engine exposed to Python as `ferricorn._ferricorn`.
//!
//! The layers, in the order a request meets them (see `docs/architecture.md`):
//! - [`engine`]: sockets, HTTP/1.1 (hyper), limits, timeouts; tokio threads, never the GIL.
//! - [`bridge`]: the event queue and doorbell between engine threads and the Python loop
//!   thread; the only module that takes or releases the GIL.
//! - [`asgi`]: scopes, `receive`/`send` and their awaitables, run on the loop thread.
//!
//! - [`supervisor`]: worker processes, restarts, signals, reload; no tokio, no Python.
//!
//! Configuration is resolved in Python (`ferricorn/config.py`) and handed over as plain
//! values.

pub mod asgi;
pub mod bridge;
pub mod engine;
pub mod supervisor;

use pyo3::prelude::*;

#[pymodule]
fn _ferricorn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<bridge::Server>()?;
    m.add_function(wrap_pyfunction!(bridge::processes::supervise, m)?)?;
    m.add_class::<asgi::HttpCycle>()?;
    m.add_class::<asgi::WebSocketCycle>()?;
    m.add_class::<asgi::Context>()?;
    m.add_class::<asgi::awaitable::Done>()?;
    m.add_class::<asgi::awaitable::Ready>()?;
    m.add_class::<asgi::awaitable::Waiting>()?;
    Ok(())
}
