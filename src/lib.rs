//! ferricorn's Rust core: an ASGI server engine exposed to Python as `ferricorn._ferricorn`.
//!
//! The layers, in the order a request meets them (see `docs/architecture.md`):
//! - [`engine`]: sockets, HTTP/1.1 (hyper), limits, timeouts; tokio threads, never the GIL.
//! - [`handoff`]: the types the engine and the ASGI adapter share (the exchange, the
//!   WebSocket session, the request head); neither side reaches into the other.
//! - [`bridge`]: the event queue and doorbell between engine threads and the Python loop
//!   thread; the only module that takes or releases the GIL.
//! - [`asgi`]: scopes, `receive`/`send` and their awaitables, run on the loop thread.
//! - [`wsgi`]: PEP 3333 environ, `wsgi.input`, `start_response`, run on a pool of Python
//!   threads instead of the loop.
//! - [`access_log`]: the access log: line formats and the writer thread.
//!
//! - [`supervisor`]: worker processes, restarts, signals, reload; no tokio, no Python.
//! - [`metrics`]: request counters and histograms, per process or in the workers' shared
//!   file, and their Prometheus text; used by the engine, the adapter and the supervisor.
//!
//! Configuration is resolved in Python (`ferricorn/config.py`) and handed over as the typed
//! structs of [`settings`].

pub mod access_log;
pub mod asgi;
pub mod bridge;
pub mod engine;
#[cfg(test)]
pub mod fuzzing;
pub mod handoff;
pub mod metrics;
pub mod page_pool;
pub mod settings;
pub mod supervisor;
pub mod wsgi;

use pyo3::prelude::*;

/// Rust's allocations (not Python's): the system allocator, with hyper's 8 KiB buffers
/// page-aligned in a pool of their own so that their unwritten pages stay out of the
/// resident set (see `page_pool`).
#[global_allocator]
static ALLOCATOR: page_pool::PagePoolAllocator = page_pool::PagePoolAllocator;

#[pymodule]
fn _ferricorn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    page_pool::register_fork_handler();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("ENGINE_SETTINGS", settings::EngineSettings::FIELDS.to_vec())?;
    m.add(
        "SUPERVISOR_SETTINGS",
        settings::SupervisorSettings::FIELDS.to_vec(),
    )?;
    m.add_class::<bridge::Server>()?;
    m.add_function(wrap_pyfunction!(bridge::processes::supervise, m)?)?;
    m.add_function(wrap_pyfunction!(access_log::check_access_log_format, m)?)?;
    m.add_class::<asgi::HttpCycle>()?;
    m.add_class::<asgi::WebSocketCycle>()?;
    m.add_class::<asgi::Context>()?;
    m.add_class::<asgi::awaitable::Done>()?;
    m.add_class::<asgi::awaitable::Ready>()?;
    m.add_class::<asgi::awaitable::Waiting>()?;
    m.add_class::<wsgi::WsgiHost>()?;
    m.add_class::<wsgi::input::WsgiInput>()?;
    m.add_class::<wsgi::response::WsgiResponse>()?;
    Ok(())
}
