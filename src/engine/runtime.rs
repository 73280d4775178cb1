//! How the engine's tokio runtime runs: on threads of its own, or on the caller's thread.
//!
//! On a machine where the server gets one core (the benchmark box: 2 cores, the load
//! generator on the other), an engine thread beside the Python thread costs more than it
//! gives: every request makes both threads wake and switch (measured: 0.2-0.3 context
//! switches per request per thread, 12 µs of CPU per hello request against 9.4 µs with
//! everything on one thread). The local mode runs a current-thread runtime on the Python
//! loop thread instead:
//!
//! - `poll_fd()` is an epoll fd that nests the runtime's own epoll instances; the event loop
//!   watches it with `add_reader`, so socket readiness and remote wakeups (the app's
//!   responses) wake the loop like any other fd.
//! - `turn()` runs the runtime without blocking: ready tasks, one zero-timeout I/O poll, and
//!   again while that poll delivered events (tasks woken by the last poll would otherwise
//!   wait for the next event). Timers are serviced by the caller's periodic tick.
//!
//! tokio does not expose its epoll fd; we find it as the `eventpoll` fds the runtime's
//! construction created. That is Linux-only, so elsewhere `local()` fails and the caller
//! falls back to threads.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::Runtime;

use super::assist::Assistant;
use super::turn_time::TurnTime;

/// Turns run at most this many rounds before handing back to the event loop.
const MAX_ROUNDS_PER_TURN: usize = 8;

/// ... and start no new round after this long: a burst of TLS handshakes (about 1.3 ms of
/// CPU each) would otherwise hold the loop thread for seconds, and the app's callbacks and
/// the blocked-loop watchdog with it. The rest runs in the next turn, a loop iteration later.
const MAX_TURN_TIME: Duration = Duration::from_millis(10);

pub(super) struct EngineRuntime {
    /// Shared with the assistant, which drives it while the loop thread is busy.
    tokio: Arc<Runtime>,
    local: Option<LocalPoll>,
    /// Local mode: the thread that may drive the runtime instead of the loop thread,
    /// started the first time it is needed (most workers never need it).
    assistant: OnceLock<Assistant>,
    /// The assistant drives the runtime: the loop thread must not turn it.
    assisted: AtomicBool,
    /// How long heavy steps (TLS handshakes) may still start in the current turn.
    turn_time: Arc<TurnTime>,
}

impl EngineRuntime {
    pub(super) fn threaded(threads: usize) -> io::Result<Self> {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("ferricorn-engine")
            .enable_all()
            .build()?;
        Ok(EngineRuntime {
            tokio: Arc::new(tokio),
            local: None,
            assistant: OnceLock::new(),
            assisted: AtomicBool::new(false),
            turn_time: Arc::new(TurnTime::unlimited()),
        })
    }

    pub(super) fn local() -> io::Result<Self> {
        let before = LocalPoll::eventpoll_fds();
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            // Run every ready task before polling sockets again within a round.
            .event_interval(1024)
            .build()?;
        let created: Vec<RawFd> = LocalPoll::eventpoll_fds()
            .into_iter()
            .filter(|fd| !before.contains(fd))
            .collect();
        let local = LocalPoll::nest(created)?;
        let tokio = Arc::new(tokio);
        Ok(EngineRuntime {
            assistant: OnceLock::new(),
            tokio,
            local: Some(local),
            assisted: AtomicBool::new(false),
            turn_time: Arc::new(TurnTime::unlimited()),
        })
    }

    /// Local mode: hands the runtime to the assistant thread (`true`) or takes it back to
    /// the loop thread (`false`, waiting until the assistant lets go). While assisted, the
    /// poll fd no longer follows the runtime's sockets and `turn()` does nothing. Loop thread
    /// only, between turns, without the GIL.
    pub(super) fn set_assisted(&self, on: bool) -> io::Result<()> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        if on == self.assisted.load(Ordering::SeqCst) {
            return Ok(());
        }
        let assistant = match self.assistant.get() {
            Some(assistant) => assistant,
            // Only the loop thread gets here: nobody else spawns one meanwhile.
            None => {
                let spawned = Assistant::spawn(self.tokio.clone())?;
                self.assistant.get_or_init(|| spawned)
            }
        };
        if on {
            local.follow_runtime(false)?;
            self.assisted.store(true, Ordering::SeqCst);
            self.turn_time.lift();
            assistant.start();
        } else {
            assistant.stop();
            self.assisted.store(false, Ordering::SeqCst);
            local.follow_runtime(true)?;
        }
        Ok(())
    }

    pub(super) fn assisted(&self) -> bool {
        self.assisted.load(Ordering::SeqCst)
    }

    pub(super) fn tokio(&self) -> &Runtime {
        &self.tokio
    }

    pub(super) fn turn_time(&self) -> Arc<TurnTime> {
        self.turn_time.clone()
    }

    pub(super) fn poll_fd(&self) -> Option<RawFd> {
        self.local.as_ref().map(|l| l.fd.0)
    }

    /// Local mode: makes `poll_fd()` readable also when `fd` is (a timer of the caller's).
    pub(super) fn watch(&self, fd: RawFd) -> io::Result<()> {
        match &self.local {
            Some(local) => local.add(fd),
            None => Ok(()),
        }
    }

    pub(super) fn turn(&self, wakes: Vec<std::task::Waker>) -> bool {
        // Threaded or assisted: another thread drives the runtime, and `block_on` here would
        // wait for it.
        if self.local.is_none() || self.assisted() {
            wakes.into_iter().for_each(std::task::Waker::wake);
            return false;
        }
        let mut wakes = Some(wakes);
        let started = std::time::Instant::now();
        self.turn_time.begin_turn(started + MAX_TURN_TIME);
        for _ in 0..MAX_ROUNDS_PER_TURN {
            if started.elapsed() > MAX_TURN_TIME {
                return true;
            }
            let before = self.io_events();
            let first = wakes.take();
            self.tokio.block_on(async move {
                first.into_iter().flatten().for_each(std::task::Waker::wake);
                tokio::task::yield_now().await
            });
            if self.io_events() == before {
                // Handshakes that found the turn's time spent go on in the next one.
                return self.turn_time.has_waiting();
            }
        }
        true
    }

    /// Socket events the I/O driver has delivered so far.
    #[cfg(tokio_unstable)]
    fn io_events(&self) -> u64 {
        self.tokio.metrics().io_driver_ready_count()
    }

    /// Without tokio's unstable metrics we cannot tell whether the last poll woke tasks, so
    /// every turn runs all its rounds.
    #[cfg(not(tokio_unstable))]
    fn io_events(&self) -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static ROUND: AtomicU64 = AtomicU64::new(0);
        ROUND.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn shutdown(self, timeout: Duration) {
        let EngineRuntime {
            tokio, assistant, ..
        } = self;
        // The assistant lets go and ends first: it holds the runtime.
        drop(assistant);
        let Ok(tokio) = Arc::try_unwrap(tokio) else {
            return;
        };
        if timeout.is_zero() {
            tokio.shutdown_background();
        } else {
            tokio.shutdown_timeout(timeout);
        }
    }
}

/// An epoll fd of our own, readable when any of the runtime's epoll fds is (while the loop
/// thread drives the runtime) or any fd the bridge added is.
struct LocalPoll {
    fd: OwnedRawFd,
    /// The runtime's own epoll fds.
    runtime_fds: Vec<RawFd>,
}

struct OwnedRawFd(RawFd);

impl Drop for OwnedRawFd {
    fn drop(&mut self) {
        // SAFETY: the fd was created by epoll_create1 in `nest` and is closed only here.
        unsafe {
            libc::close(self.0);
        }
    }
}

impl LocalPoll {
    #[cfg(target_os = "linux")]
    fn eventpoll_fds() -> Vec<RawFd> {
        let mut fds = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            for entry in dir.flatten() {
                let target = std::fs::read_link(entry.path()).unwrap_or_default();
                if target.to_string_lossy() == "anon_inode:[eventpoll]" {
                    if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                        fds.push(fd);
                    }
                }
            }
        }
        fds
    }

    #[cfg(not(target_os = "linux"))]
    fn eventpoll_fds() -> Vec<RawFd> {
        Vec::new()
    }

    /// Whether the poll fd becomes readable with the runtime's sockets and wakeups.
    fn follow_runtime(&self, on: bool) -> io::Result<()> {
        for &fd in &self.runtime_fds {
            if on {
                self.add(fd)?;
            } else {
                self.remove(fd)?;
            }
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn remove(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: both fds are open; EPOLL_CTL_DEL ignores the event pointer.
        if unsafe { libc::epoll_ctl(self.fd.0, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn remove(&self, _fd: RawFd) -> io::Result<()> {
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn nest(inner: Vec<RawFd>) -> io::Result<LocalPoll> {
        if inner.is_empty() {
            return Err(io::Error::other(
                "could not find the engine runtime's epoll fd; use --engine-threads 1 or more",
            ));
        }
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let outer = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if outer < 0 {
            return Err(io::Error::last_os_error());
        }
        let poll = LocalPoll {
            fd: OwnedRawFd(outer),
            runtime_fds: inner,
        };
        poll.follow_runtime(true)?;
        Ok(poll)
    }

    #[cfg(target_os = "linux")]
    fn add(&self, fd: RawFd) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: `event` is a valid epoll_event; both fds are open.
        if unsafe { libc::epoll_ctl(self.fd.0, libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn add(&self, _fd: RawFd) -> io::Result<()> {
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn nest(_inner: Vec<RawFd>) -> io::Result<LocalPoll> {
        Err(io::Error::other(
            "running the engine on the event-loop thread needs Linux; use --engine-threads 1",
        ))
    }
}
