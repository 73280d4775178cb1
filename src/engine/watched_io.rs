//! The connection's socket as hyper sees it: every read and write is noted for the
//! watchdog (`Activity`) and the bytes read are followed by `FramingWatch`; the two answers
//! hyper cannot give (408 for a stalled head, 414 for a request line past the limit) are
//! written here, on the socket itself, and so are HTTP/1.1's interim responses (`interim`)
//! and the files sent with `sendfile(2)` (`sendfile`).
//!
//! Must not: buffer, delay or reorder hyper's bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;
use super::framing::{FramingWatch, Verdict};
use super::interim::Interim;
use super::refusals::Refusal;
use super::sendfile::{FileHandoff, SendfileSocket};
use super::Shared;
use crate::handoff::LogLevel;

/// The answer to a request head that did not arrive within the header-read timeout.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: 16\r\n\r\nRequest Timeout\n";

/// The answer to a request line longer than the head limit.
const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: 13\r\n\r\nURI Too Long\n";

/// The connection's socket, noting reads so the idle watchdog knows the client is active,
/// and following request framing for the checks hyper leaves out (see `framing`).
pub(super) struct WatchedIo<S> {
    pub(super) inner: S,
    pub(super) activity: Arc<Activity>,
    pub(super) framing: FramingWatch,
    pub(super) shared: Arc<Shared>,
    /// HTTP/1.1: the 103s the connection's requests queue.
    pub(super) interim: Option<Arc<Interim>>,
    /// Plain-text HTTP/1.1: the file a response sends with `sendfile(2)` after its head.
    pub(super) handoff: Option<Arc<FileHandoff>>,
}

impl<S: AsyncWrite + SendfileSocket + Unpin> WatchedIo<S> {
    /// Sends the file a response armed, if any: its head is out, as hyper flushes only with
    /// its own buffer empty, and hyper writes nothing more until the file's body ends.
    fn poll_handoff(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.handoff {
            None => Poll::Ready(Ok(())),
            Some(handoff) => {
                let activity = &self.activity;
                handoff.poll_send(&self.inner, cx, |r| activity.note_write(r))
            }
        }
    }

    /// Writes the interim responses that have begun (and at a message boundary, those
    /// queued) before anything else.
    fn poll_interim(&mut self, cx: &mut Context<'_>, at_boundary: bool) -> Poll<io::Result<()>> {
        match &self.interim {
            None => Poll::Ready(Ok(())),
            Some(interim) => {
                let activity = &self.activity;
                interim.poll_write_out(&mut self.inner, cx, at_boundary, |r| activity.note_write(r))
            }
        }
    }
}

impl<S: AsyncWrite + SendfileSocket + Unpin> WatchedIo<S> {
    /// A file going out comes before any other byte, and before any read (nothing read now
    /// may be answered in its middle).
    fn poll_file_first(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.handoff.as_ref().is_some_and(|h| h.sending()) {
            return self.poll_handoff(cx);
        }
        Poll::Ready(Ok(()))
    }

    /// Tells an armed file that hyper wrote (its head is on the way).
    fn after_write(&self, written: &Poll<io::Result<usize>>) {
        if let (Some(handoff), Poll::Ready(Ok(n))) = (&self.handoff, written) {
            handoff.wrote(*n);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + SendfileSocket + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        std::task::ready!(this.poll_file_first(cx))?;
        if this.activity.head_timed_out() {
            // Best effort: the socket is idle in both directions, so the short answer fits
            // its send buffer; then the end of input makes hyper drop the connection.
            let _ = Pin::new(&mut this.inner).poll_write(cx, REQUEST_TIMEOUT);
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
            match this.framing.observe(&mut buf.filled_mut()[before..]) {
                Verdict::Pass => {}
                Verdict::Spoiled => this.shared.dispatcher.log(
                    LogLevel::Debug,
                    "rejected a request with both Content-Length and Transfer-Encoding (400)"
                        .to_string(),
                ),
                Verdict::TargetTooLong => {
                    this.shared.refused(Refusal::LineTooLong);
                    // As for 408: the socket answers, and the end of input ends hyper's turn.
                    buf.set_filled(before);
                    let _ = Pin::new(&mut this.inner).poll_write(cx, URI_TOO_LONG);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        r
    }
}

impl<S: AsyncWrite + SendfileSocket + Unpin> AsyncWrite for WatchedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_file_first(cx))?;
        std::task::ready!(self.poll_interim(cx, false))?;
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.note_write(&r);
        self.after_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_file_first(cx))?;
        std::task::ready!(self.poll_interim(cx, false))?;
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.note_write(&r);
        self.after_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes the socket only with its own buffer empty: after a head whose file
        // goes next, or at a message boundary.
        std::task::ready!(self.poll_handoff(cx))?;
        std::task::ready!(self.poll_interim(cx, true))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_handoff(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
