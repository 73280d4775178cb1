//! `sendfile(2)` beneath hyper: a file response (`http.response.pathsend`, WSGI's
//! `wsgi.file_wrapper`) on plain-text HTTP/1.1 goes from the page cache to the socket in
//! the kernel, and no byte of it passes through the engine.
//!
//! hyper has no way to let the socket write a body itself, so the engine arranges it around
//! hyper. The service gives hyper the head with the file's Content-Length and a body whose
//! exact length is 0: hyper then writes the app's Content-Length as it is, no body bytes of
//! its own, and drops the body at once; and the service arms the connection's
//! `FileHandoff` with the file. hyper flushes the socket only with its own buffer empty, so
//! at the next flush the head is out: there the socket (`watched_io`) sends the file, and
//! the flush completes once the last byte is out. Until then hyper stays quiet (its
//! connection turns idle only after that flush), the connection's next request waits
//! (`poll_idle`), and any read or write of the socket first finishes the file.
//!
//! Only for requests with no body (hyper turns idle when a request body ends, and could
//! then answer a next request into the middle of the file) and not for CONNECT (hyper
//! writes no Content-Length into a 2xx to it). Not for TLS (the bytes must be encrypted),
//! HTTP/2 (DATA frames) or debug builds (hyper asserts that a body's length matches its
//! Content-Length).
//!
//! Must not: send a byte of the file before the head it follows has gone out, or let any
//! byte of hyper's in before the file's last. A file not in the page cache is read by the
//! kernel on the engine thread as it is sent (`read_ahead` asks for it early).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Files from this size on are sent with `sendfile(2)`; smaller ones are one read and go
/// out with their head in one write.
pub(super) const SENDFILE_MIN: u64 = 64 * 1024;

/// At most this much per `sendfile(2)` call, and per turn of the connection's task, so that
/// a fast reader of a large file does not keep the engine thread from its other sockets.
const CALL_MAX: usize = 1024 * 1024;
const TURN_MAX: u64 = 4 * 1024 * 1024;

/// What the kernel is asked to read ahead of a file response at once.
const READ_AHEAD: u64 = 8 * 1024 * 1024;

/// Asks the kernel to read the start of a file response into the page cache now, and the
/// rest ahead as it goes (called on the blocking pool), so that sending it waits less on
/// the disk.
pub(super) fn read_ahead(file: &File, start: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(start), Ok(len), Ok(first)) = (
            libc::off_t::try_from(start),
            libc::off_t::try_from(len),
            libc::off_t::try_from(len.min(READ_AHEAD)),
        ) else {
            return;
        };
        // Advice only: a failure changes nothing but speed.
        // SAFETY: `file` is an open descriptor for the whole call; the call reads no memory
        // of ours.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_SEQUENTIAL);
            libc::posix_fadvise(file.as_raw_fd(), start, first, libc::POSIX_FADV_WILLNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, start, len);
}

/// Whether file responses on sockets of type `S` can be sent with `sendfile(2)`.
pub(super) fn possible<S: SendfileSocket>() -> bool {
    S::CAN_SENDFILE && !cfg!(debug_assertions)
}

/// A socket the kernel can write a file into: plain TCP or a Unix socket, not TLS.
pub(super) trait SendfileSocket {
    const CAN_SENDFILE: bool = false;

    /// One `sendfile(2)` of up to `count` bytes of `file` from `offset`, once the socket is
    /// writable; the bytes sent, 0 at the file's end.
    fn poll_sendfile(
        &self,
        _cx: &mut Context<'_>,
        _file: &File,
        _offset: u64,
        _count: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

#[cfg(target_os = "linux")]
fn sendfile_once(
    socket: std::os::fd::RawFd,
    file: &File,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut at = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    // SAFETY: both descriptors are open for the whole call (the socket is borrowed by the
    // caller, the file by `file`), `at` is a valid off_t the kernel may update, and no
    // memory of ours is written but `at`.
    let sent = unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut at, count) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

macro_rules! sendfile_socket {
    ($socket:ty) => {
        #[cfg(target_os = "linux")]
        impl SendfileSocket for $socket {
            const CAN_SENDFILE: bool = true;

            fn poll_sendfile(
                &self,
                cx: &mut Context<'_>,
                file: &File,
                offset: u64,
                count: usize,
            ) -> Poll<io::Result<usize>> {
                use std::os::fd::AsRawFd;
                loop {
                    std::task::ready!(self.poll_write_ready(cx))?;
                    let fd = self.as_raw_fd();
                    match self.try_io(tokio::io::Interest::WRITABLE, || {
                        sendfile_once(fd, file, offset, count)
                    }) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        done => return Poll::Ready(done),
                    }
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        impl SendfileSocket for $socket {}
    };
}

sendfile_socket!(tokio::net::TcpStream);
sendfile_socket!(tokio::net::UnixStream);

impl<S> SendfileSocket for tokio_rustls::server::TlsStream<S> {}

/// One connection's file in flight, between the request's service (which arms it) and the
/// socket (which sends it); the connection's next request waits until it is out.
#[derive(Default)]
pub(super) struct FileHandoff {
    /// Where the job is (`IDLE`...`SENDING`), readable without the lock: the socket looks
    /// at it on every read and write.
    phase: AtomicU8,
    state: Mutex<State>,
}

/// No file.
const IDLE: u8 = 0;
/// A file waits for its head, which hyper has not written yet.
const ARMED: u8 = 1;
/// hyper has written since the file was armed: at its next flush the head is out.
const HEAD_WRITTEN: u8 = 2;
/// The file is going out: nothing else may be written or read until it is all out.
const SENDING: u8 = 3;

#[derive(Default)]
struct State {
    job: Option<Job>,
    /// The connection's next request, waiting for the file to be out.
    next: Option<Waker>,
    /// The bytes the last job sent, for a completion that comes after it ended.
    last_sent: u64,
}

/// What ends with the file: the metrics, the access log line and the connection's busy mark.
pub(super) type Completion = Box<dyn FnOnce(u64) + Send>;

struct Job {
    file: File,
    offset: u64,
    left: u64,
    sent: u64,
    completion: Option<Completion>,
}

impl Drop for Job {
    /// However the job ends (all sent, an error, the connection gone), its completion runs
    /// with the bytes that went out.
    fn drop(&mut self) {
        if let Some(completion) = self.completion.take() {
            completion(self.sent);
        }
    }
}

impl FileHandoff {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next flush sends `len` bytes of `file` from `offset`, after the head hyper is
    /// about to write. The caller hands that head to hyper without waiting in between.
    pub(super) fn arm(&self, file: File, offset: u64, len: u64) {
        ignore_sigpipe();
        let mut state = self.state();
        debug_assert!(
            state.job.is_none(),
            "a file armed while another is in flight"
        );
        state.job = Some(Job {
            file,
            offset,
            left: len,
            sent: 0,
            completion: None,
        });
        self.phase.store(ARMED, Ordering::Release);
    }

    /// Runs `completion` when the file is out (at once if it already is).
    pub(super) fn when_sent(&self, completion: Completion) {
        let mut state = self.state();
        match state.job.as_mut() {
            Some(job) => job.completion = Some(completion),
            None => {
                let sent = state.last_sent;
                drop(state);
                completion(sent);
            }
        }
    }

    /// The next request's side: ready once no file is waiting or going out.
    pub(super) fn poll_idle(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if state.job.is_none() {
            return Poll::Ready(());
        }
        state.next = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The socket took `written` bytes of hyper's: if a file is armed, its head is on its
    /// way (hyper writes its whole buffer before it flushes).
    pub(super) fn wrote(&self, written: usize) {
        if written > 0 && self.phase.load(Ordering::Acquire) == ARMED {
            self.phase.store(HEAD_WRITTEN, Ordering::Release);
        }
    }

    /// Whether a file is going out, so that a read or write of the socket must first finish
    /// it (`poll_send`).
    pub(super) fn sending(&self) -> bool {
        self.phase.load(Ordering::Acquire) == SENDING
    }

    /// The socket's side, at hyper's flush (or before any other use of the socket while a
    /// file goes): sends the armed file, if any, to its end. `note` sees each call's result
    /// (for the watchdog). An error ends the job, and the connection with it.
    pub(super) fn poll_send<S: SendfileSocket>(
        &self,
        socket: &S,
        cx: &mut Context<'_>,
        mut note: impl FnMut(&Poll<io::Result<usize>>),
    ) -> Poll<io::Result<()>> {
        if self.phase.load(Ordering::Acquire) == IDLE {
            return Poll::Ready(Ok(()));
        }
        let mut state = self.state();
        let Some(job) = state.job.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let failure = match self.phase.load(Ordering::Acquire) {
            // hyper flushed without writing a head for the file (it refused the head):
            // the file must not go out bare.
            ARMED => Some(io::Error::other(
                "a file response's head was not written; the file was not sent",
            )),
            _ => {
                self.phase.store(SENDING, Ordering::Release);
                let mut this_turn = 0u64;
                loop {
                    if job.left == 0 {
                        break None;
                    }
                    if this_turn >= TURN_MAX {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    let count =
                        usize::try_from(job.left).map_or(CALL_MAX, |left| left.min(CALL_MAX));
                    let result = socket.poll_sendfile(cx, &job.file, job.offset, count);
                    note(&result);
                    match result {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(0)) => {
                            // The file is shorter than the head said: the response cannot
                            // be whole.
                            break Some(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the file ended before its Content-Length (did it shrink?)",
                            ));
                        }
                        Poll::Ready(Ok(n)) => {
                            job.offset += n as u64;
                            job.left -= n as u64;
                            job.sent += n as u64;
                            this_turn += n as u64;
                        }
                        Poll::Ready(Err(e)) => break Some(e),
                    }
                }
            }
        };
        let job = state.job.take();
        state.last_sent = job.as_ref().map_or(0, |j| j.sent);
        let next = state.next.take();
        self.phase.store(IDLE, Ordering::Release);
        drop(state);
        // Outside the lock: the completion may log.
        drop(job);
        if let Some(next) = next {
            next.wake();
        }
        match failure {
            None => Poll::Ready(Ok(())),
            Some(e) => Poll::Ready(Err(e)),
        }
    }
}

/// A client that resets the connection mid-file must cost an error from sendfile(2)
/// (EPIPE), never the process: sendfile has no MSG_NOSIGNAL. CPython ignores SIGPIPE
/// already; this holds for an embedding that does not.
fn ignore_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code and
        // touches no memory of ours.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    });
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    /// A file of `len` bytes counting 0..=250 over and over, in the temp directory.
    fn numbered_file(name: &str, len: usize) -> (std::path::PathBuf, Vec<u8>) {
        let path = std::env::temp_dir().join(format!("ferricorn-{}-{name}", std::process::id()));
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&bytes))
            .expect("write the test file");
        (path, bytes)
    }

    /// Sends what `handoff` holds into one end of a socket pair while the other end reads it
    /// all (slowly enough to make the sender wait for room); returns what arrived, the
    /// send's result and what the completion saw.
    async fn send_through_a_socket(
        handoff: Arc<FileHandoff>,
    ) -> (Vec<u8>, io::Result<()>, Option<u64>) {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().expect("a socket pair");
        let seen = Arc::new(AtomicU64::new(u64::MAX));
        let completion_saw = seen.clone();
        handoff.when_sent(Box::new(move |sent| {
            completion_saw.store(sent, Ordering::SeqCst)
        }));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 7919];
            loop {
                match theirs.read(&mut buf).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        handoff.wrote(120); // the head hyper would write first
        let mut writes = 0;
        let result = std::future::poll_fn(|cx| handoff.poll_send(&ours, cx, |_| writes += 1)).await;
        drop(ours);
        let got = reader.await.expect("the reader");
        let sent = seen.load(Ordering::SeqCst);
        assert!(writes > 0);
        (got, result, (sent != u64::MAX).then_some(sent))
    }

    #[tokio::test]
    async fn sends_the_armed_range_then_lets_the_next_request_in() {
        let (path, bytes) = numbered_file("range", 3 * 1024 * 1024 + 17);
        let handoff = Arc::new(FileHandoff::default());
        handoff.arm(
            std::fs::File::open(&path).unwrap(),
            1000,
            2 * 1024 * 1024 + 5,
        );
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(handoff.poll_idle(&mut cx).is_pending());
        let (got, result, completed) = send_through_a_socket(handoff.clone()).await;
        assert!(result.is_ok());
        assert_eq!(got, bytes[1000..1000 + 2 * 1024 * 1024 + 5]);
        assert_eq!(completed, Some(2 * 1024 * 1024 + 5));
        assert!(handoff.poll_idle(&mut cx).is_ready());
        // Nothing armed: a flush sends nothing.
        let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
        assert!(handoff
            .poll_send(&ours, &mut cx, |_| panic!("no write"))
            .is_ready());
        std::fs::remove_file(path).ok();
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_length_is_an_error_with_what_was_sent() {
        let (path, bytes) = numbered_file("short", 100_000);
        let handoff = Arc::new(FileHandoff::default());
        handoff.arm(std::fs::File::open(&path).unwrap(), 0, 100_010);
        let (got, result, completed) = send_through_a_socket(handoff.clone()).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(got, bytes);
        assert_eq!(completed, Some(100_000));
        std::fs::remove_file(path).ok();
    }

    #[tokio::test]
    async fn a_flush_with_no_head_written_fails_and_sends_nothing() {
        let (path, _) = numbered_file("headless", 100_000);
        let handoff = FileHandoff::default();
        handoff.arm(std::fs::File::open(&path).unwrap(), 0, 100_000);
        let seen = Arc::new(AtomicU64::new(u64::MAX));
        let completion_saw = seen.clone();
        handoff.when_sent(Box::new(move |sent| {
            completion_saw.store(sent, Ordering::SeqCst)
        }));
        let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let sent = handoff.poll_send(&ours, &mut cx, |_| panic!("nothing may be sent"));
        assert!(matches!(sent, Poll::Ready(Err(_))));
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        assert!(handoff.poll_idle(&mut cx).is_ready());
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn a_completion_after_the_end_gets_the_bytes_sent() {
        let handoff = FileHandoff::default();
        handoff.state().last_sent = 4242;
        let seen = Arc::new(AtomicU64::new(u64::MAX));
        let completion_saw = seen.clone();
        handoff.when_sent(Box::new(move |sent| {
            completion_saw.store(sent, Ordering::SeqCst)
        }));
        assert_eq!(seen.load(Ordering::SeqCst), 4242);
    }

    #[test]
    fn a_connection_that_ends_with_the_file_armed_still_completes() {
        let (path, _) = numbered_file("dropped", 10);
        let handoff = FileHandoff::default();
        handoff.arm(std::fs::File::open(&path).unwrap(), 0, 10);
        let seen = Arc::new(AtomicU64::new(u64::MAX));
        let completion_saw = seen.clone();
        handoff.when_sent(Box::new(move |sent| {
            completion_saw.store(sent, Ordering::SeqCst)
        }));
        drop(handoff);
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        std::fs::remove_file(path).ok();
    }

    // Checked at compile time: TLS must encrypt, so the kernel cannot send its files.
    const _: () = assert!(
        !<tokio_rustls::server::TlsStream<tokio::net::TcpStream> as SendfileSocket>::CAN_SENDFILE
    );
    const _: () = assert!(<tokio::net::TcpStream as SendfileSocket>::CAN_SENDFILE);
}
