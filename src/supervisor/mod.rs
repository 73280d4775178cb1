//! The supervisor: worker processes, their restarts, signals and reload.
//!
//! Why it is one long file: one loop on one thread decides everything (spawn, replace,
//! roll, drain), and its state transitions are easiest to check in one place; the pieces
//! with their own seams (signals, reload, worker processes) are in the modules beside it.
//!
//! It runs in the process the user started, after Python bound the listening socket and
//! before any app import or tokio runtime (a process that ran tokio must not fork). Each
//! worker is `python -m ferricorn APP --fd N`, an ordinary single-process server that
//! inherits the socket; the kernel spreads connections across them.
//!
//! What it does, all from one loop on one thread (no async, no signal handlers):
//! - keeps `workers` workers serving; a worker that dies is logged and replaced at once;
//!   a worker that fails during startup stops everything (exit with its code), except under
//!   `--reload`, where the supervisor waits for the next change;
//! - SIGTERM/SIGINT: every worker drains (its own graceful shutdown), then exit 0; a second
//!   SIGINT kills them;
//! - SIGHUP (and a file change under `--reload`): rolling restart, each new worker serving
//!   before the old one is asked to drain; SIGTTIN/SIGTTOU: one worker more or less;
//! - SIGUSR1: passed to every worker, which loads its TLS certificate and key again in place
//!   (open connections go on);
//! - a worker whose heartbeat stops for `--timeout-worker-healthcheck` (blocked event loop)
//!   is killed and replaced.
//!
//! It holds no Python objects and never touches the GIL (the bridge releases it around
//! [`run`]). Log lines go to stderr in the same `LEVEL:    message` shape as Python's.

mod reload;

mod signals;
mod worker;

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub use reload::ReloadConfig;
use worker::{Spawn, State, Worker};

pub struct SupervisorConfig {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workers: usize,
    pub reload: Option<ReloadConfig>,
    pub healthcheck: Option<Duration>,
    /// Serve the workers' summed metrics on this listener.
    pub metrics: Option<std::net::TcpListener>,
    /// The listening socket the workers share, when the server bound it itself (Python
    /// keeps it open and closes it): taken out of service at SIGTERM/SIGINT, so that new
    /// connections are refused at once while the workers drain (a proxy in front fails
    /// over) instead of waiting in the backlog to be reset. Not one handed over with
    /// `--fd`: its owner (systemd) keeps it listening across restarts.
    pub listener: Option<SharedListener>,
}

/// See [`SupervisorConfig::listener`].
pub enum SharedListener {
    /// A TCP socket: `shutdown()` ends its listening state in every process that holds it.
    Tcp(std::os::fd::RawFd),
    /// A Unix socket: its path is removed (a shut-down Unix listener would still look
    /// readable to the workers' pollers until they drain).
    Unix(std::path::PathBuf),
}

/// Takes the shared listening socket out of service for every process that holds it: a
/// connection attempt fails from now on. Connections queued that no worker accepted yet
/// are reset, as they would be when the last worker exits.
fn stop_listening(listener: &SharedListener) {
    let done = match listener {
        SharedListener::Tcp(fd) => {
            // SAFETY: `fd` is the listening socket Python bound and keeps open until `run`
            // returns; shutdown() only changes the socket's state and touches no memory.
            if unsafe { libc::shutdown(*fd, libc::SHUT_RD) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        SharedListener::Unix(path) => std::fs::remove_file(path),
    };
    if let Err(e) = done {
        log(
            "WARNING",
            &format!("could not stop listening ({e}); new connections wait for the drain"),
        );
    }
}

fn log(level: &str, message: &str) {
    eprintln!("{:<9} {message}", format!("{level}:"));
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}{}", if sig == 9 { " (SIGKILL)" } else { "" }),
        _ => "unknown status".to_string(),
    }
}

struct Supervisor {
    config: SupervisorConfig,
    workers: Vec<Worker>,
    next_id: usize,
    target: usize,
    shutting_down: bool,
    interrupts: u32,
    /// Old workers still to replace in a rolling restart.
    to_replace: VecDeque<usize>,
    /// Under --reload, the last start failed: wait for a change before trying again.
    waiting_for_change: bool,
    exit_code: i32,
    metrics: Option<crate::metrics::shared::SharedMetrics>,
}

/// Runs the workers until SIGINT/SIGTERM; returns the process exit code.
pub fn run(config: SupervisorConfig) -> i32 {
    let blocked = match signals::BlockedSignals::block() {
        Ok(b) => b,
        Err(e) => {
            log("ERROR", &format!("cannot take over signals: {e}"));
            return 1;
        }
    };
    let mut reloader = match &config.reload {
        Some(rc) => match reload::Reloader::new(rc) {
            Ok(r) => Some(r),
            Err(e) => {
                log("ERROR", &e);
                return 1;
            }
        },
        None => None,
    };
    if let Some(rc) = &config.reload {
        let dirs: Vec<_> = rc.dirs.iter().map(|d| d.display().to_string()).collect();
        log(
            "INFO",
            &format!("Will watch for changes in these directories: {dirs:?}"),
        );
    }
    let metrics = match config.metrics.as_ref().map(|l| l.try_clone()) {
        Some(Ok(l)) => match crate::metrics::shared::SharedMetrics::new(l) {
            Ok(m) => Some(m),
            Err(e) => {
                log("ERROR", &format!("cannot set up the shared metrics: {e}"));
                return 1;
            }
        },
        Some(Err(e)) => {
            log("ERROR", &format!("metrics listener: {e}"));
            return 1;
        }
        None => None,
    };
    let mut sup = Supervisor {
        metrics,
        target: config.workers.max(1),
        config,
        workers: Vec::new(),
        next_id: 1,
        shutting_down: false,
        interrupts: 0,
        to_replace: VecDeque::new(),
        waiting_for_change: false,
        exit_code: 0,
    };
    sup.reconcile();
    loop {
        sup.wait_for_io(Duration::from_millis(100));
        while let Some(sig) = blocked.take() {
            sup.on_signal(sig);
        }
        sup.reap();
        if let Some(r) = reloader.as_mut() {
            if let Some(changed) = r.poll() {
                if !sup.shutting_down {
                    sup.on_change(&changed);
                }
            }
        }
        sup.check_health();
        sup.advance_rolling_restart();
        if sup.shutting_down {
            if sup.workers.is_empty() {
                break;
            }
        } else {
            sup.reconcile();
        }
    }
    log("INFO", "Stopping supervisor");
    sup.exit_code
}

impl Supervisor {
    fn spawn(&mut self, replaces: Option<usize>) {
        let id = self.next_id;
        self.next_id += 1;
        let mut env = self.config.env.clone();
        if let Some(m) = self.metrics.as_mut() {
            match m.assign(id) {
                Some(vars) => env.extend(vars),
                None => log(
                    "WARNING",
                    "more workers than metrics slots: this one is not counted",
                ),
            }
        }
        let how = Spawn {
            command: &self.config.command,
            env: &env,
            prefix_output: self.target > 1 || self.config.workers > 1,
        };
        match Worker::spawn(id, &how) {
            Ok(mut w) => {
                w.replaces = replaces;
                log("INFO", &format!("Started worker {id} [{}]", w.pid()));
                self.workers.push(w);
            }
            Err(e) => {
                log(
                    "ERROR",
                    &format!("could not start a worker ({}): {e}", self.config.command[0]),
                );
                self.shutting_down = true;
                self.exit_code = 1;
            }
        }
    }

    fn live(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.state != State::Stopping)
            .count()
    }

    /// Starts workers until `target` are live (not during shutdown or a failed reload).
    fn reconcile(&mut self) {
        if self.waiting_for_change || self.shutting_down {
            return;
        }
        let replacing = self.workers.iter().filter(|w| w.replaces.is_some()).count();
        while self.live() < self.target + replacing && !self.shutting_down {
            self.spawn(None);
        }
    }

    fn wait_for_io(&mut self, timeout: Duration) {
        let metrics_fd = self.metrics.as_ref().map(|m| m.listener_fd());
        let mut fds: Vec<libc::pollfd> = self
            .workers
            .iter()
            .flat_map(|w| w.fds())
            .chain(metrics_fd)
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid, initialised array of pollfd of the given length.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_millis() as i32,
            );
        }
        for w in &mut self.workers {
            w.read();
        }
        if let Some(m) = &self.metrics {
            let mut pids = vec![std::process::id()];
            pids.extend(self.workers.iter().map(|w| w.pid()));
            m.serve(&pids);
        }
    }

    fn on_signal(&mut self, sig: libc::c_int) {
        match sig {
            libc::SIGINT | libc::SIGTERM => {
                self.interrupts += 1;
                if self.interrupts > 1 && sig == libc::SIGINT {
                    log("WARNING", "Second interrupt: killing the workers");
                    self.workers.iter().for_each(|w| w.signal(libc::SIGKILL));
                    return;
                }
                if !self.shutting_down {
                    log("INFO", "Shutting down: waiting for the workers to drain");
                    self.shutting_down = true;
                    self.to_replace.clear();
                    for w in &mut self.workers {
                        w.signal(libc::SIGTERM);
                        w.state = State::Stopping;
                    }
                    if let Some(listener) = &self.config.listener {
                        stop_listening(listener);
                    }
                }
            }
            libc::SIGHUP if !self.shutting_down => {
                log("INFO", "SIGHUP: replacing the workers one by one");
                self.start_rolling_restart();
            }
            libc::SIGUSR1 if !self.shutting_down => {
                // Each worker loads the TLS certificate and key again, in place.
                log(
                    "INFO",
                    "SIGUSR1: asking the workers to reload the TLS certificate",
                );
                // Only serving workers: one still starting has not set its handler yet.
                self.workers
                    .iter()
                    .filter(|w| w.state == State::Serving)
                    .for_each(|w| w.signal(libc::SIGUSR1));
            }
            libc::SIGTTIN if !self.shutting_down => {
                self.target += 1;
                log("INFO", &format!("SIGTTIN: now {} workers", self.target));
            }
            libc::SIGTTOU if !self.shutting_down => {
                if self.target > 1 {
                    self.target -= 1;
                    if let Some(w) = self
                        .workers
                        .iter_mut()
                        .rev()
                        .find(|w| w.state == State::Serving)
                    {
                        w.signal(libc::SIGTERM);
                        w.state = State::Stopping;
                    }
                    log("INFO", &format!("SIGTTOU: now {} workers", self.target));
                } else {
                    log("INFO", "SIGTTOU ignored: one worker is the minimum");
                }
            }
            _ => {}
        }
    }

    fn start_rolling_restart(&mut self) {
        self.to_replace = self
            .workers
            .iter()
            .filter(|w| w.state == State::Serving && w.replaces.is_none())
            .map(|w| w.id)
            .collect();
    }

    /// One replacement at a time: start it, and when it serves, drain the old one.
    fn advance_rolling_restart(&mut self) {
        if self.shutting_down {
            return;
        }
        let in_progress = self.workers.iter().any(|w| w.replaces.is_some());
        if in_progress {
            let mut old_to_stop = None;
            for w in &mut self.workers {
                if w.state == State::Serving {
                    if let Some(old) = w.replaces.take() {
                        old_to_stop = Some(old);
                    }
                }
            }
            if let Some(old) = old_to_stop {
                if let Some(o) = self.workers.iter_mut().find(|w| w.id == old) {
                    o.signal(libc::SIGTERM);
                    o.state = State::Stopping;
                }
            }
            return;
        }
        while let Some(old) = self.to_replace.pop_front() {
            if self
                .workers
                .iter()
                .any(|w| w.id == old && w.state == State::Serving)
            {
                self.spawn(Some(old));
                return;
            }
        }
    }

    fn on_change(&mut self, changed: &[std::path::PathBuf]) {
        let names: Vec<_> = changed.iter().map(|p| p.display().to_string()).collect();
        log(
            "WARNING",
            &format!("Detected changes in {names:?}. Reloading..."),
        );
        if self.waiting_for_change {
            self.waiting_for_change = false;
            self.reconcile();
        } else {
            self.start_rolling_restart();
        }
    }

    fn check_health(&mut self) {
        let Some(limit) = self.config.healthcheck else {
            return;
        };
        for w in &mut self.workers {
            if w.state == State::Serving && w.last_beat.elapsed() > limit {
                log(
                    "WARNING",
                    &format!(
                        "Worker {} [{}] has not answered for {:.1} s (a blocked event loop?): killing and replacing it",
                        w.id,
                        w.pid(),
                        w.last_beat.elapsed().as_secs_f64()
                    ),
                );
                w.signal(libc::SIGKILL);
                w.last_beat = Instant::now();
            }
        }
    }

    fn reap(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            let Some(status) = self.workers[i].try_exit() else {
                i += 1;
                continue;
            };
            let w = self.workers.remove(i);
            if let Some(m) = self.metrics.as_mut() {
                m.release(w.id);
            }
            match w.state {
                State::Stopping => {
                    log(
                        "INFO",
                        &format!(
                            "Worker {} [{}] stopped ({})",
                            w.id,
                            w.pid(),
                            describe(status)
                        ),
                    );
                    // A worker that failed its own shutdown (lifespan shutdown) makes the
                    // server's exit code say so.
                    let failed = status.code().filter(|&c| c != 0);
                    if let (true, 0, Some(code)) = (self.shutting_down, self.exit_code, failed) {
                        self.exit_code = code;
                    }
                }
                State::Serving if status.success() => {
                    log(
                        "INFO",
                        &format!(
                            "Worker {} [{}] finished its work; replacing it",
                            w.id,
                            w.pid()
                        ),
                    );
                }
                State::Serving => {
                    log(
                        "WARNING",
                        &format!(
                            "Worker {} [{}] died ({}); replacing it",
                            w.id,
                            w.pid(),
                            describe(status)
                        ),
                    );
                }
                State::Starting if self.shutting_down => {}
                State::Starting => self.on_start_failure(&w, status),
            }
        }
    }

    fn on_start_failure(&mut self, w: &Worker, status: ExitStatus) {
        if let Some(old) = w.replaces {
            // A replacement failed: keep the old worker serving.
            self.to_replace.clear();
            let _ = old;
        }
        if self.config.reload.is_some() {
            log(
                "ERROR",
                &format!(
                    "Worker {} failed to start ({}); fix the error, the next change reloads it",
                    w.id,
                    describe(status)
                ),
            );
            self.waiting_for_change = self.live() == 0;
            return;
        }
        log(
            "ERROR",
            &format!(
                "Worker {} failed to start ({}); stopping the server",
                w.id,
                describe(status)
            ),
        );
        self.exit_code = status.code().filter(|&c| c != 0).unwrap_or(1);
        self.shutting_down = true;
        self.to_replace.clear();
        for other in &mut self.workers {
            other.signal(libc::SIGTERM);
            other.state = State::Stopping;
        }
    }
}
