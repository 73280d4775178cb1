//! The protocol engine: sockets, TLS, HTTP/1.1 and HTTP/2, limits, timeouts and
//! backpressure, on tokio.
//!
//! The engine owns everything between the listening socket and a parsed request, and hands
//! each request to a [`Dispatcher`](crate::handoff::Dispatcher) (the bridge) as an
//! [`IncomingRequest`](crate::handoff::IncomingRequest) carrying an
//! [`Exchange`](crate::handoff::Exchange). It never imports pyo3 and never takes the GIL: whatever the app must know
//! travels through the dispatcher, including the engine's log lines.
//!
//! Threads: either a tokio runtime with `threads` workers, or (`threads == 0`) a
//! current-thread runtime that the bridge drives from the Python loop thread with the GIL
//! released (see `runtime`). Started by [`Engine::start`], stopped by [`Engine::shutdown`].

mod accept;
mod activity;
mod admission;
mod assist;
mod body;
mod conn;
mod error;
mod framing;
mod h2;
mod interim;
mod proxy;
mod refusals;
mod request_id;
mod runtime;
mod sendfile;
mod service;
mod tls;
mod turn_time;
mod watched_io;
mod ws;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio::sync::watch;

pub use admission::{AdmissionConfig, Rejection};
pub use error::Error;
pub use proxy::TrustedProxies;
pub use tls::{Tls, TlsSettings};
pub use ws::WsConfig;

use crate::handoff::access_record::AccessSink;
use crate::handoff::{Dispatcher, LogLevel};
use crate::metrics;

/// Settings the engine runs with, resolved and validated by the Python config layer.
#[derive(Clone)]
pub struct EngineConfig {
    pub threads: usize,
    pub keep_alive: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// `--limit-concurrency`, `--limit-queue`, `--timeout-queue`.
    pub admission: AdmissionConfig,
    /// `Retry-After` seconds on a 503 for overload.
    pub retry_after: u64,
    /// Tell the app side about every disconnect before the response ended.
    pub cancel_on_disconnect: bool,
    /// Where this process counts requests (its own, or its slot in the workers' file).
    pub metrics: &'static metrics::MetricsBlock,
    /// Serve `/metrics` here (single-process mode; the supervisor serves it otherwise).
    pub metrics_addr: Option<SocketAddr>,
    /// Headers added to every response unless the app set them (server, custom `--header`).
    pub default_headers: Vec<(HeaderName, HeaderValue)>,
    pub date_header: bool,
    pub proxy_headers: bool,
    pub trusted_proxies: TrustedProxies,
    /// Bytes of response body buffered before `send()` waits for the client.
    pub response_high_water: usize,
    /// Bytes of request body read ahead of the app's `receive()`.
    pub request_read_ahead: usize,
    /// WebSocket settings; `None` with `--ws none` (upgrade requests then reach the app as
    /// plain HTTP).
    pub websocket: Option<ws::WsConfig>,
    /// TLS on every connection (`--ssl-certfile`/`--ssl-keyfile`), or plain text.
    pub tls: Option<Arc<Tls>>,
    /// Which HTTP versions are served (`--http`): HTTP/1.1, HTTP/2, or both.
    pub http1: bool,
    pub http2: bool,
    /// HTTP/2 limits (`--h2-*`).
    pub h2: H2Limits,
    /// What one request may be: body size, line length, fields, body stalls.
    pub limits: RequestLimits,
    /// Where finished access records go; `None` with the access log off.
    pub access_log: Option<Arc<dyn AccessSink>>,
    /// `--request-id-header`.
    pub request_id_header: Option<HeaderName>,
}

/// The limits a request must keep (`--limit-request-*`, `--timeout-request-body`).
#[derive(Clone, Debug)]
pub struct RequestLimits {
    /// Largest body, in bytes (413); `None`: no limit.
    pub body: Option<u64>,
    /// Longest request line, in bytes (414).
    pub line: usize,
    /// Most header fields (431).
    pub fields: usize,
    /// Largest header field, name and value, in bytes (431).
    pub field_size: usize,
    /// Longest a body may send nothing while the app waits for it (408).
    pub body_timeout: Duration,
    /// The slowest a client may take response bytes, in bytes a second, while it is behind,
    /// measured over `slow_send_grace`; slower ones are dropped. `None`: no floor.
    pub min_send_rate: Option<u64>,
    pub slow_send_grace: Duration,
}

/// What one HTTP/2 connection may use: streams, header bytes, flow-control windows (the
/// memory a client can make us buffer), and how dead peers are found.
#[derive(Clone, Debug)]
pub struct H2Limits {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    pub keep_alive_interval: Option<Duration>,
    pub max_pending_reset_streams: usize,
}

/// The listening socket the engine serves, already bound and listening.
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Counters shared by the engine and its owner; plain atomics, no lock.
#[derive(Default)]
pub struct Stats {
    pub connections_open: AtomicUsize,
    pub requests_in_flight: Arc<AtomicUsize>,
    pub next_exchange_id: AtomicU64,
    pub websocket_sessions: AtomicUsize,
    /// Set when draining: responses carry `Connection: close`.
    pub draining: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Serving,
    /// Stop accepting; let connections finish their current request, then close.
    Draining,
}

/// State shared by every task of the engine.
struct Shared {
    config: EngineConfig,
    admission: admission::Admission,
    refusals: refusals::Refusals,
    /// Failed `accept()`s (out of descriptors): reported at most once a second.
    accept_failures: refusals::Throttle,
    dispatcher: Arc<dyn Dispatcher>,
    stats: Arc<Stats>,
    phase: watch::Receiver<Phase>,
    /// Where TLS handshakes wait for a turn with time left (engine on the loop thread).
    turn_time: Arc<turn_time::TurnTime>,
}

impl Shared {
    /// Counts a refused request and logs it when a report is due (once a second per kind).
    fn refused(&self, why: refusals::Refusal) {
        if let Some((level, line)) = self.refusals.note(why, &self.config.limits) {
            self.dispatcher.log(level, line);
        }
    }
}

pub struct Engine {
    runtime: Option<runtime::EngineRuntime>,
    phase: watch::Sender<Phase>,
    stats: Arc<Stats>,
    /// The connections' TLS, kept for `reload_tls`.
    tls: Option<Arc<Tls>>,
}

impl Engine {
    /// Starts the runtime and begins accepting on `listener`. With `threads == 0` the
    /// engine runs on the caller's thread, driven through [`Engine::turn`] (see `runtime`).
    pub fn start(
        listener: Listener,
        config: EngineConfig,
        dispatcher: Arc<dyn Dispatcher>,
    ) -> Result<Engine, Error> {
        let runtime = if config.threads == 0 {
            // Where the loop thread cannot drive the engine (not Linux), one engine thread.
            match runtime::EngineRuntime::local() {
                Ok(rt) => rt,
                Err(e) => {
                    dispatcher.log(
                        LogLevel::Info,
                        format!(
                            "engine on the loop thread unavailable ({e}); using one engine thread"
                        ),
                    );
                    runtime::EngineRuntime::threaded(1)?
                }
            }
        } else {
            runtime::EngineRuntime::threaded(config.threads)?
        };
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let stats = Arc::new(Stats::default());
        let tls = config.tls.clone();
        let shared = Arc::new(Shared {
            admission: admission::Admission::new(config.admission.clone()),
            refusals: refusals::Refusals::default(),
            accept_failures: refusals::Throttle::default(),
            config,
            dispatcher,
            stats: stats.clone(),
            phase: phase_rx,
            turn_time: runtime.turn_time(),
        });
        let rt = runtime.tokio();
        if let Some(addr) = shared.config.metrics_addr {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            let l = rt.block_on(async { tokio::net::TcpListener::from_std(l) })?;
            rt.spawn(accept::serve_metrics(l, shared.clone()));
        }
        match listener {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                let l = rt.block_on(async { tokio::net::TcpListener::from_std(l) })?;
                rt.spawn(accept::accept_tcp(l, shared));
            }
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                let l = rt.block_on(async { tokio::net::UnixListener::from_std(l) })?;
                rt.spawn(accept::accept_unix(l, shared));
            }
        }
        Ok(Engine {
            runtime: Some(runtime),
            phase: phase_tx,
            stats,
            tls,
        })
    }

    /// For an engine on the caller's thread: the fd that becomes readable when the engine
    /// has work, to be watched by the event loop.
    pub fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        self.runtime.as_ref().and_then(|r| r.poll_fd())
    }

    /// For an engine on the caller's thread: `poll_fd()` also becomes readable when `fd`
    /// does (the bridge's alarm for chunks it holds).
    pub fn watch_fd(&self, fd: std::os::fd::RawFd) -> Result<(), Error> {
        match &self.runtime {
            Some(r) => Ok(r.watch(fd)?),
            None => Ok(()),
        }
    }

    /// For an engine on the caller's thread: hands it to an assistant thread while the
    /// caller is busy (`true`), or takes it back (`false`). Call between turns, without the
    /// GIL; taking it back waits for the assistant to let go.
    pub fn set_assisted(&self, on: bool) -> Result<(), Error> {
        match &self.runtime {
            Some(r) => Ok(r.set_assisted(on)?),
            None => Ok(()),
        }
    }

    /// Whether an assistant thread drives the engine now (`turn` does nothing then).
    pub fn assisted(&self) -> bool {
        self.runtime.as_ref().is_some_and(|r| r.assisted())
    }

    /// For an engine on the caller's thread: runs it until it has nothing left to do right
    /// now. Returns true if it stopped early and wants another turn soon.
    /// `wakes` are engine wakers the app side deferred; they are woken inside the turn,
    /// where waking is a push onto the local run queue.
    pub fn turn(&self, wakes: Vec<std::task::Waker>) -> bool {
        self.runtime.as_ref().is_some_and(|r| r.turn(wakes))
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Closes the listening socket (new connections are refused from now on) and asks every
    /// connection to close once its current request is answered.
    pub fn drain(&self) {
        self.stats.draining.store(true, Ordering::Relaxed);
        let _ = self.phase.send(Phase::Draining);
    }

    pub fn connections_open(&self) -> usize {
        self.stats.connections_open.load(Ordering::Relaxed)
    }

    /// Loads the TLS certificate and key again (SIGHUP/SIGUSR1): new handshakes use them,
    /// open connections go on. `Ok(None)` without TLS; on error the previous ones stay.
    pub fn reload_tls(&self) -> Result<Option<(String, String)>, Error> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        tls.reload()?;
        let (cert, key) = tls.files();
        Ok(Some((cert.to_string(), key.to_string())))
    }

    /// Copies the gauges into the metrics block (a few times a second, off the hot path).
    pub fn publish_gauges(&self, metrics: &metrics::MetricsBlock) {
        publish_gauges(&self.stats, metrics);
    }

    pub fn requests_total(&self) -> u64 {
        self.stats.next_exchange_id.load(Ordering::Relaxed)
    }

    pub fn requests_in_flight(&self) -> usize {
        self.stats.requests_in_flight.load(Ordering::Relaxed)
    }

    /// Stops the runtime; open connections are dropped. Call with the GIL released.
    pub fn shutdown(&mut self, timeout: Duration) {
        let _ = self.phase.send(Phase::Draining);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown(timeout);
        }
    }
}

fn publish_gauges(stats: &Stats, metrics: &metrics::MetricsBlock) {
    let load = |a: &AtomicUsize| a.load(Ordering::Relaxed) as u64;
    metrics
        .connections_open
        .store(load(&stats.connections_open), Ordering::Relaxed);
    // Open WebSocket sessions hold an admission slot and count in `requests_in_flight` (so
    // shutdown waits for them); the HTTP gauge shows requests only.
    let sessions = load(&stats.websocket_sessions);
    metrics.in_flight.store(
        load(&stats.requests_in_flight).saturating_sub(sessions),
        Ordering::Relaxed,
    );
    metrics
        .websocket_sessions_open
        .store(sessions, Ordering::Relaxed);
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown(Duration::ZERO);
        }
    }
}
