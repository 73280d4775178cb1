//! `Server`: the Python-facing handle that owns an engine and drains its events on the loop
//! thread.
//!
//! Python creates it with a listening socket, the app and the loop, registers `fileno()`
//! with `loop.add_reader(fd, server.on_readable)` and from then on every request arrives
//! here as an event, becomes a scope and a cycle, and starts an asyncio Task running the app.

use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::assist::{AssistPolicy, Thresholds, Verdict};
use super::engine_config::{engine_config, engine_error};
use super::tasks::TaskStarter;
use super::{seconds, Event, EventQueue, MAX_STARTS_PER_BATCH};
use crate::access_log::{AccessLog, AccessTarget};
use crate::asgi::{Context, HttpCycle, ScopeBuilder, TrackingConfig, WebSocketCycle};
use crate::engine::{Engine, Listener};
use crate::handoff::ws_session::Decision;
use crate::handoff::{IncomingRequest, IncomingWebSocket, LogLevel};
use crate::metrics::MetricsBlock;
use crate::settings::EngineSettings;
use crate::wsgi::WsgiHost;

#[pyclass(module = "ferricorn._ferricorn")]
pub struct Server {
    engine: Option<Engine>,
    queue: Arc<EventQueue>,
    ctx: Py<Context>,
    scope: ScopeBuilder,
    app: Py<PyAny>,
    /// `_run_app`: the coroutine each request's and WebSocket session's Task runs.
    runner: Py<PyAny>,
    tasks: TaskStarter,
    call_soon: Py<PyAny>,
    /// `self._poll`, bound once.
    poll_again: Option<Py<PyAny>>,
    poll_scheduled: bool,
    error_log: Py<PyAny>,
    /// The worker's access log, closed (its queue written out) at shutdown.
    access_log: Option<Arc<AccessLog>>,
    batch: Vec<Event>,
    /// Events of a burst left for the next loop iteration (see `MAX_STARTS_PER_BATCH`).
    deferred: Vec<Event>,
    /// Requests are tracked for cancellation or deadlines.
    tracking: bool,
    metrics: &'static MetricsBlock,
    /// Local mode: the engine runs on this thread and `fileno` is its poll fd.
    local_fd: Option<i32>,
    /// WSGI mode: the threads' host; requests never reach this thread.
    wsgi: Option<Py<WsgiHost>>,
    /// `--timeout-request`.
    request_timeout: Option<Duration>,
    /// Local mode with a spare core: when to hand the engine to its assistant thread.
    assist: Option<AssistPolicy>,
}

#[pymethods]
impl Server {
    /// Takes ownership of the listening socket `fd` (a Unix socket when `unix_path` is set).
    #[new]
    #[pyo3(signature = (fd, unix_path, config, event_loop, app, runner, state, error_log, access_log, wsgi=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        fd: i32,
        unix_path: Option<String>,
        config: EngineSettings,
        event_loop: &Bound<'_, PyAny>,
        app: Py<PyAny>,
        runner: Py<PyAny>,
        state: Option<Py<PyDict>>,
        error_log: Py<PyAny>,
        access_log: Option<AccessTarget>,
        wsgi: Option<Py<WsgiHost>>,
    ) -> PyResult<Self> {
        let settings = config;
        let mut config = engine_config(&settings)?;
        let access_log = access_log
            .map(|target| {
                AccessLog::from_target(
                    target,
                    settings.access_log_format.as_deref(),
                    error_log.clone_ref(py),
                )
                .map(Arc::new)
            })
            .transpose()?;
        if let Some(log) = &access_log {
            config.access_log = Some(log.clone());
        }
        let metrics = config.metrics;
        // SAFETY: the caller hands over a listening socket it no longer uses (it detached
        // it), so this is the only owner of the fd.
        let listener = unsafe {
            match unix_path {
                Some(_) => Listener::Unix(std::os::unix::net::UnixListener::from_raw_fd(fd)),
                None => Listener::Tcp(std::net::TcpListener::from_raw_fd(fd)),
            }
        };
        let queue = Arc::new(EventQueue::new()?);
        let tracking = TrackingConfig {
            cancel_on_disconnect: settings.cancel_on_disconnect,
            timeout: settings
                .timeout_request
                .map(|v| seconds(v, "--timeout-request"))
                .transpose()?,
        };
        let request_timeout = tracking.timeout;
        let tracked = tracking.enabled() && wsgi.is_none();
        if let Some(host) = &wsgi {
            queue.route_to_wsgi(host.get().pool());
        }
        let ctx = Py::new(py, Context::new(py, event_loop, tracking)?)?;
        let scope = ScopeBuilder::new(py, &settings.root_path, state, unix_path.as_deref())?;
        let engine = py
            .detach(|| Engine::start(listener, config, queue.clone()))
            .map_err(engine_error)?;
        let local_fd = engine.poll_fd();
        if local_fd.is_some() {
            // The loop thread drives the engine itself: nobody needs to ring it.
            queue.set_local();
            if let Some(alarm) = queue.gather_fd() {
                engine.watch_fd(alarm).map_err(engine_error)?;
            }
            // While an assistant thread drives the engine, events ring the doorbell.
            engine
                .watch_fd(queue.doorbell.fileno())
                .map_err(engine_error)?;
        }
        Ok(Server {
            engine: Some(engine),
            queue,
            ctx,
            scope,
            app,
            runner,
            tasks: TaskStarter::new(py, event_loop)?,
            call_soon: event_loop.getattr("call_soon")?.unbind(),
            poll_again: None,
            poll_scheduled: false,
            error_log,
            access_log,
            batch: Vec::with_capacity(256),
            deferred: Vec::new(),
            local_fd,
            tracking: tracked,
            metrics,
            wsgi,
            request_timeout,
            assist: None,
        })
    }

    /// The doorbell fd to register with `loop.add_reader`.
    fn fileno(&self) -> i32 {
        self.local_fd
            .unwrap_or_else(|| self.queue.doorbell.fileno())
    }

    /// `add_reader` callback: the engine rang.
    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        {
            let this = slf.borrow();
            if this.local_fd.is_some() && !this.assisted() {
                this.queue.clear_doorbell_if_rung();
                drop(this);
                return Self::turn(slf);
            }
            this.queue.doorbell.clear();
        }
        Self::_poll(slf)
    }

    /// Local mode, where a core is spare for it: lets the engine move to an assistant
    /// thread while streams or an idle core beside it keep the loop thread saturated (see
    /// `bridge/assist.rs`). Python calls it when there are fewer workers than usable cores.
    /// No effect otherwise. The thresholds default to the benchmark's choice; tests lower
    /// them.
    #[pyo3(signature = (assist_chunks=None, assist_load=None, resume_chunks=None, assist_idle_cores=None))]
    fn enable_assist(
        &mut self,
        assist_chunks: Option<f64>,
        assist_load: Option<f64>,
        resume_chunks: Option<f64>,
        assist_idle_cores: Option<f64>,
    ) {
        if self.local_fd.is_some() && self.wsgi.is_none() {
            let default = Thresholds::default();
            let thresholds = Thresholds {
                assist_chunks: assist_chunks.unwrap_or(default.assist_chunks),
                assist_load: assist_load.unwrap_or(default.assist_load),
                resume_chunks: resume_chunks.unwrap_or(default.resume_chunks),
                assist_idle_cores: assist_idle_cores.unwrap_or(default.assist_idle_cores),
            };
            self.assist = Some(AssistPolicy::new(self.queue.chunk_wakes(), thresholds));
        }
    }

    /// Whether an assistant thread drives the engine now.
    #[getter]
    fn assisted(&self) -> bool {
        self.engine.as_ref().is_some_and(Engine::assisted)
    }

    /// The periodic tick (every 50 ms): the engine's timers in local mode, and whether it
    /// should move to or from its assistant thread.
    fn tick(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let verdict = {
            let mut this = slf.borrow_mut();
            let chunks = this.queue.chunk_wakes();
            let assisted = this.assisted();
            match this.assist.as_mut() {
                Some(policy) => policy.tick(chunks, assisted),
                None => Verdict::Stay,
            }
        };
        match verdict {
            Verdict::Stay => {}
            Verdict::Assist => return Self::hand_to_assistant(slf),
            Verdict::Resume => {
                let this = slf.borrow();
                if let Some(engine) = &this.engine {
                    py.detach(|| engine.set_assisted(false))
                        .map_err(engine_error)?;
                }
                this.queue.set_local();
                this.log(
                    py,
                    LogLevel::Debug,
                    "engine back on the loop thread: the load is calm",
                )?;
            }
        }
        Self::turn(slf)
    }

    /// Local mode: run the engine until it is idle (GIL released), then start the requests
    /// it produced. Also called by a periodic tick so the engine's timers fire. Does
    /// nothing while the assistant thread drives the engine.
    fn turn(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.borrow().assisted() {
            return Ok(());
        }
        let more = {
            let this = slf.borrow();
            let wakes = this.queue.begin_turn();
            match &this.engine {
                Some(engine) => py.detach(|| engine.turn(wakes)),
                None => false,
            }
        };
        let mut this = slf.borrow_mut();
        let batch = this.next_batch();
        let handled = this.handle_batch(py, batch);
        if (more || !this.deferred.is_empty()) && !this.poll_scheduled {
            this.poll_scheduled = true;
            let again = slf.getattr(intern!(py, "_turn_again"))?;
            this.call_soon.call1(py, (again,))?;
        }
        handled
    }

    fn _turn_again(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.borrow_mut().poll_scheduled = false;
        Self::turn(slf)
    }

    /// Cancels requests past `--timeout-request`; called a few times a second.
    fn check_deadlines(&self, py: Python<'_>) -> PyResult<()> {
        if let (Some(host), Some(timeout)) = (&self.wsgi, self.request_timeout) {
            for expired in host.get().pool().expire(timeout) {
                self.metrics.rejected(crate::metrics::Rejected::Deadline);
                let what = if expired.answered {
                    "answered 504"
                } else {
                    "its response had started, so the connection was cut"
                };
                let kwargs = PyDict::new(py);
                kwargs.set_item(
                    intern!(py, "extra"),
                    crate::access_log::fields_extra(py, &expired.fields)?,
                )?;
                self.error_log.call_method(
                    py,
                    intern!(py, "warning"),
                    (format!(
                        "Request timed out after {:.1} s (--timeout-request): {}; {what}. A WSGI thread cannot be stopped: it goes on, and what it sends is dropped",
                        timeout.as_secs_f64(),
                        expired.label
                    ),),
                    Some(&kwargs),
                )?;
            }
        }
        if let Some(tracker) = self.ctx.bind(py).borrow_mut().tracker.as_mut() {
            tracker.expire(py, &self.error_log, self.metrics)?;
        }
        Ok(())
    }

    /// Whether the engine runs on this thread (see `--engine-threads 0`).
    #[getter]
    fn local(&self) -> bool {
        self.local_fd.is_some()
    }

    /// Drains the queue; while there was work, polls again on the next loop iteration
    /// rather than going to sleep on the doorbell.
    fn _poll(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.borrow().local_fd.is_some() && !slf.borrow().assisted() {
            // Scheduled while the assistant drove the engine, which is back on this thread:
            // turns drain the queue now.
            slf.borrow_mut().poll_scheduled = false;
            return Self::turn(slf);
        }
        let mut this = slf.borrow_mut();
        this.poll_scheduled = false;
        let batch = if this.deferred.is_empty() {
            let mut batch = std::mem::take(&mut this.batch);
            this.queue.take_or_sleep(&mut batch);
            batch
        } else {
            this.next_batch()
        };
        if batch.is_empty() {
            this.batch = batch;
            return Ok(());
        }
        let handled = this.handle_batch(py, batch);
        if !this.poll_scheduled {
            this.poll_scheduled = true;
            if this.poll_again.is_none() {
                this.poll_again = Some(slf.getattr(intern!(py, "_poll"))?.unbind());
            }
            let again = this.poll_again.as_ref().map(|p| p.clone_ref(py));
            this.call_soon.call1(py, (again,))?;
        }
        handled
    }

    /// Stop accepting (the listening socket closes) and close connections once idle.
    fn drain(&self) {
        if let Some(e) = &self.engine {
            e.drain();
        }
    }

    /// Loads the TLS certificate and key again; returns their paths, or None without TLS.
    /// Raises (ValueError/OSError naming the file) when they cannot be loaded; the previous
    /// ones stay in use then. Reads the files without the GIL.
    fn reload_tls(&self, py: Python<'_>) -> PyResult<Option<(String, String)>> {
        match &self.engine {
            Some(engine) => py
                .detach(|| engine.reload_tls())
                .map_err(super::engine_config::engine_error),
            None => Ok(None),
        }
    }

    fn connections_open(&self) -> usize {
        self.engine.as_ref().map_or(0, |e| e.connections_open())
    }

    /// Copies gauges into the metrics block; called a few times a second.
    fn publish_gauges(&self) {
        if let Some(e) = &self.engine {
            e.publish_gauges(self.metrics);
        }
    }

    /// The blocked-loop watchdog reports a stall.
    fn add_loop_blocked(&self, seconds: f64) {
        self.metrics.loop_blocked(seconds);
    }

    /// Requests received since the start (for `--limit-max-requests`).
    fn requests_total(&self) -> u64 {
        self.engine.as_ref().map_or(0, |e| e.requests_total())
    }

    fn requests_in_flight(&self) -> usize {
        self.engine.as_ref().map_or(0, |e| e.requests_in_flight())
    }

    /// Stops the engine's threads; waits up to `timeout` seconds, without the GIL.
    fn shutdown(&mut self, py: Python<'_>, timeout: f64) {
        if let Some(mut engine) = self.engine.take() {
            py.detach(|| engine.shutdown(Duration::from_secs_f64(timeout.max(0.0))));
        }
        if let Some(log) = &self.access_log {
            // The last lines may go through Python's logging: the writer needs the GIL.
            py.detach(|| log.close());
        }
        // Events left behind hold exchanges only; dropping them here is safe.
        let mut rest = Vec::new();
        self.queue.take(&mut rest);
    }
}

impl Server {
    /// Moves the local engine to its assistant thread: the wakes held or deferred for the
    /// next turn go to the engine now, and the loop drains the queue as in threaded mode.
    fn hand_to_assistant(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        {
            let this = slf.borrow();
            let wakes = this.queue.set_assisted();
            if let Some(engine) = &this.engine {
                py.detach(|| engine.set_assisted(true))
                    .map_err(engine_error)?;
            }
            wakes.into_iter().for_each(std::task::Waker::wake);
            this.log(
                py,
                LogLevel::Debug,
                "engine handed to its assistant thread: the loop thread is saturated",
            )?;
        }
        // The queue may hold events already; from now on the doorbell says when it does.
        Self::_poll(slf)
    }

    /// A line in the error log, through Python's `logging`.
    fn log(&self, py: Python<'_>, level: LogLevel, message: &str) -> PyResult<()> {
        let level = match level {
            LogLevel::Debug => 10,
            LogLevel::Info => 20,
            LogLevel::Warning => 30,
            LogLevel::Error => 40,
        };
        self.error_log
            .call_method1(py, intern!(py, "log"), (level, message))?;
        Ok(())
    }

    /// What the last batch left, then what the engine queued since, in their order.
    fn next_batch(&mut self) -> Vec<Event> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.append(&mut self.deferred);
        self.queue.take_into(&mut batch);
        batch
    }

    /// Handles the events of `batch` in order (an error in one does not stop the others; the
    /// first is returned) until `MAX_STARTS_PER_BATCH` requests and sessions have started;
    /// the rest waits in `deferred` for the next loop iteration. Keeps the emptied vector.
    fn handle_batch(&mut self, py: Python<'_>, mut batch: Vec<Event>) -> PyResult<()> {
        let mut first_error = None;
        let mut starts = 0;
        let mut events = batch.drain(..);
        for event in events.by_ref() {
            if matches!(event, Event::Request(_) | Event::WebSocket(_)) {
                starts += 1;
            }
            if let Err(e) = self.handle(py, event) {
                first_error.get_or_insert(e);
            }
            if starts == MAX_STARTS_PER_BATCH {
                break;
            }
        }
        self.deferred.extend(events);
        self.queue.set_backlog(self.deferred.len());
        self.batch = batch;
        first_error.map_or(Ok(()), Err)
    }

    fn handle(&mut self, py: Python<'_>, event: Event) -> PyResult<()> {
        match event {
            Event::Request(req) => self.start_request(py, *req),
            Event::WebSocket(ws) => self.start_websocket(py, *ws),
            Event::Wake(id) => {
                let ctx = self.ctx.bind(py);
                Context::wake(ctx, id)?;
                if let Some(tracker) = ctx.borrow_mut().tracker.as_mut() {
                    tracker.on_wake(py, id, &self.error_log)?;
                }
                Ok(())
            }
            Event::Log(level, message) => self.log(py, level, &message),
        }
    }

    /// Starts the app on a WebSocket; if that fails (the scope, the task), the engine is told,
    /// so the client gets its 500 instead of waiting for a decision that never comes.
    fn start_websocket(&mut self, py: Python<'_>, ws: IncomingWebSocket) -> PyResult<()> {
        let session = ws.session.clone();
        self.start_websocket_task(py, ws).inspect_err(|_| {
            session.decide(Decision::Failed);
        })
    }

    fn start_websocket_task(&mut self, py: Python<'_>, ws: IncomingWebSocket) -> PyResult<()> {
        let scope = self.scope.build_websocket(py, &ws.head)?;
        let cycle = Py::new(py, WebSocketCycle::new(ws.session, self.ctx.clone_ref(py)))?;
        let coro = self
            .runner
            .bind(py)
            .call1((self.app.clone_ref(py), scope, cycle))?;
        self.tasks.start(py, coro)?;
        Ok(())
    }

    /// Starts the app on a request; if that fails (the scope, the task), the client gets a 500
    /// rather than a response that never comes, and the engine frees the request.
    fn start_request(&mut self, py: Python<'_>, req: IncomingRequest) -> PyResult<()> {
        let exchange = req.exchange.clone();
        self.start_request_task(py, req).inspect_err(|_| {
            exchange.respond(crate::handoff::exchange::Response::server_error(), true);
        })
    }

    fn start_request_task(&mut self, py: Python<'_>, req: IncomingRequest) -> PyResult<()> {
        let scope = self.scope.build(py, &req)?;
        let request = (req.method.clone(), req.uri.clone());
        let id = req.exchange.id;
        let label = self.tracking.then(|| format!("{} {}", req.method, req.uri));
        let cycle = Py::new(
            py,
            HttpCycle::new(req.exchange, self.ctx.clone_ref(py), request),
        )?;
        let tracked_scope = label.is_some().then(|| scope.clone().into_any().unbind());
        let coro =
            self.runner
                .bind(py)
                .call1((self.app.clone_ref(py), scope, cycle.clone_ref(py)))?;
        let task = self.tasks.start(py, coro)?.unbind();
        if let (Some(label), Some(scope)) = (label, tracked_scope) {
            if let Some(tracker) = self.ctx.bind(py).borrow_mut().tracker.as_mut() {
                tracker.start(id, task, cycle, label, scope);
            }
        }
        Ok(())
    }
}
