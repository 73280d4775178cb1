//! One worker process as the supervisor sees it: the child, its status pipe ("R" when it
//! serves, "H" as a heartbeat) and, with several workers, its output, forwarded line by line
//! with a `[worker N]` prefix.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use super::signals::unblock_all_in_child;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Spawned; lifespan startup and app import still running.
    Starting,
    Serving,
    /// Asked to drain (SIGTERM); its exit is expected.
    Stopping,
}

pub struct Worker {
    pub id: usize,
    pub child: Child,
    pub state: State,
    pub last_beat: Instant,
    /// During a rolling restart: the worker this one replaces once it serves.
    pub replaces: Option<usize>,
    status: OwnedFd,
    outputs: Vec<Output>,
}

struct Output {
    pipe: OwnedFd,
    partial: Vec<u8>,
    to_stderr: bool,
}

pub struct Spawn<'a> {
    pub command: &'a [String],
    pub env: &'a [(String, String)],
    /// Prefix and forward the worker's output (several workers) or let it inherit ours.
    pub prefix_output: bool,
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe to fill; the result is checked.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&r, &w] {
        // SAFETY: fcntl on fds we own. Set before any child is spawned, so no race with
        // another fork (the supervisor has one thread that spawns).
        unsafe {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    Ok((r, w))
}

impl Worker {
    pub fn spawn(id: usize, how: &Spawn<'_>) -> io::Result<Worker> {
        let (status_read, status_write) = pipe_cloexec()?;
        let status_fd = status_write.as_raw_fd();
        let mut cmd = Command::new(&how.command[0]);
        cmd.args(&how.command[1..])
            .envs(how.env.iter().map(|(k, v)| (k, v)))
            .env("FERRICORN_SUPERVISOR_FD", status_fd.to_string())
            .env("FERRICORN_WORKER_ID", id.to_string())
            .stdin(Stdio::null());
        let mut outputs_wanted = false;
        if how.prefix_output {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            outputs_wanted = true;
        }
        // SAFETY: runs in the child between fork and exec and calls only async-signal-safe
        // functions (sigprocmask, fcntl, prctl, getppid).
        let supervisor = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                unblock_all_in_child()?;
                // A worker must not outlive a supervisor that was killed: it would keep
                // serving the inherited socket with nobody watching it.
                #[cfg(target_os = "linux")]
                {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    if libc::getppid() != supervisor {
                        libc::_exit(1);
                    }
                }
                // The status pipe's write end is this child's to keep.
                if libc::fcntl(status_fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        drop(status_write);
        let mut outputs = Vec::new();
        if outputs_wanted {
            if let Some(out) = child.stdout.take() {
                outputs.push(Output::new(OwnedFd::from(out), false)?);
            }
            if let Some(err) = child.stderr.take() {
                outputs.push(Output::new(OwnedFd::from(err), true)?);
            }
        }
        Ok(Worker {
            id,
            child,
            state: State::Starting,
            last_beat: Instant::now(),
            replaces: None,
            status: status_read,
            outputs,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The fds to poll for this worker.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.status.as_raw_fd()];
        fds.extend(self.outputs.iter().map(|o| o.pipe.as_raw_fd()));
        fds
    }

    /// Reads what the worker said on its status pipe and forwards its output.
    pub fn read(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            match read_fd(self.status.as_raw_fd(), &mut buf) {
                Some(n) if n > 0 => {
                    for &b in &buf[..n] {
                        if b == b'R' && self.state == State::Starting {
                            self.state = State::Serving;
                        }
                    }
                    self.last_beat = Instant::now();
                }
                _ => break,
            }
        }
        let id = self.id;
        for out in &mut self.outputs {
            out.forward(id);
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill() with our own child's pid; a stale pid only gives ESRCH.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        if status.is_some() {
            // Whatever it printed last.
            self.read();
            for out in &mut self.outputs {
                out.flush_partial(self.id);
            }
        }
        status
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: reads at most buf.len() bytes into a live buffer from an fd we own.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then_some(n as usize)
}

impl Output {
    fn new(pipe: OwnedFd, to_stderr: bool) -> io::Result<Output> {
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let flags = libc::fcntl(pipe.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(pipe.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok(Output {
            pipe,
            partial: Vec::new(),
            to_stderr,
        })
    }

    fn forward(&mut self, id: usize) {
        let mut buf = [0u8; 8192];
        while let Some(n) = read_fd(self.pipe.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            self.partial.extend_from_slice(&buf[..n]);
        }
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.emit(id, &line);
        }
    }

    fn flush_partial(&mut self, id: usize) {
        if !self.partial.is_empty() {
            let mut line = std::mem::take(&mut self.partial);
            line.push(b'\n');
            self.emit(id, &line);
        }
    }

    fn emit(&self, id: usize, line: &[u8]) {
        let prefix = format!("[worker {id}] ");
        let _ = if self.to_stderr {
            let mut e = io::stderr().lock();
            e.write_all(prefix.as_bytes())
                .and_then(|_| e.write_all(line))
        } else {
            let mut o = io::stdout().lock();
            o.write_all(prefix.as_bytes())
                .and_then(|_| o.write_all(line))
                .and_then(|_| o.flush())
        };
    }
}
