//! Interim (1xx) responses on an HTTP/1.1 connection, written beneath hyper: its server has
//! no API for them, and `http.response.early_hint` needs a 103 before the final response.
//!
//! The request's service queues the encoded 103; the socket (`watched_io`) writes it at the
//! next message boundary, which is where hyper flushes its socket with nothing of its own left
//! to write (hyper calls the socket's `poll_flush` only once its buffer is empty). From then
//! on the socket finishes the 103 before any byte hyper hands it, so a 103 can neither split
//! an earlier response nor follow the final head: the service lets hyper have the final
//! response only after the 103 has begun.
//!
//! Must not: parse or build anything (the service encodes the 103), or write outside a
//! message boundary.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use tokio::io::AsyncWrite;

/// A connection's interim responses in flight.
#[derive(Default)]
pub(super) struct Interim {
    /// Set while bytes are queued or being written: all a write reads otherwise.
    armed: AtomicBool,
    state: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// Interim responses that wait for a message boundary.
    queued: BytesMut,
    /// Begun at a boundary: written before anything hyper writes.
    begun: Bytes,
    /// The service waiting for its queued bytes to begin.
    waiter: Option<Waker>,
}

impl Interim {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Plain bytes behind the lock: a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The service queues an encoded interim response.
    pub(super) fn queue(&self, bytes: &[u8]) {
        self.lock().queued.extend_from_slice(bytes);
        self.armed.store(true, Ordering::Release);
    }

    /// Ready once everything queued has begun (the final response may follow it then).
    pub(super) fn poll_begun(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.lock();
        if q.queued.is_empty() {
            return Poll::Ready(());
        }
        q.waiter = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The socket writes what has begun; at a message boundary it begins what is queued
    /// first. Ready once nothing begun is left unwritten.
    pub(super) fn poll_write_out<W: AsyncWrite + Unpin>(
        &self,
        io: &mut W,
        cx: &mut Context<'_>,
        at_boundary: bool,
        mut noted: impl FnMut(&Poll<io::Result<usize>>),
    ) -> Poll<io::Result<()>> {
        if !self.armed.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let mut q = self.lock();
        if at_boundary && !q.queued.is_empty() {
            let queued = q.queued.split().freeze();
            q.begun = if q.begun.is_empty() {
                queued
            } else {
                [q.begun.as_ref(), queued.as_ref()].concat().into()
            };
            if let Some(waiter) = q.waiter.take() {
                waiter.wake();
            }
        }
        while !q.begun.is_empty() {
            let r = Pin::new(&mut *io).poll_write(cx, &q.begun);
            noted(&r);
            match r {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => q.begun.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if q.queued.is_empty() {
            self.armed.store(false, Ordering::Release);
        }
        Poll::Ready(Ok(()))
    }
}

/// A 103 Early Hints with these `Link` fields, as HTTP/1.1 sends it.
pub(super) fn early_hints_h1(links: &HeaderMap) -> Vec<u8> {
    let mut out = b"HTTP/1.1 103 Early Hints\r\n".to_vec();
    for (name, value) in links {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Sink(Vec<u8>);

    impl AsyncWrite for Sink {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            // A few bytes at a time, as a socket near full takes them.
            let n = buf.len().min(5);
            self.0.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct Noop;
    impl Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    #[test]
    fn queued_bytes_wait_for_a_boundary_then_go_whole() {
        let waker = Waker::from(std::sync::Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let interim = Interim::default();
        let mut sink = Sink(Vec::new());
        interim.queue(b"HTTP/1.1 103 Early Hints\r\n\r\n");
        assert!(interim.poll_begun(&mut cx).is_pending());
        // A write that is not at a boundary (the rest of an earlier response) goes first.
        assert!(interim
            .poll_write_out(&mut sink, &mut cx, false, |_| {})
            .is_ready());
        assert!(sink.0.is_empty());
        assert!(interim
            .poll_write_out(&mut sink, &mut cx, true, |_| {})
            .is_ready());
        assert_eq!(sink.0, b"HTTP/1.1 103 Early Hints\r\n\r\n");
        assert!(interim.poll_begun(&mut cx).is_ready());
        assert!(!interim.armed.load(Ordering::Acquire));
    }

    #[test]
    fn encodes_each_link_as_a_field() {
        let mut links = HeaderMap::new();
        links.append(http::header::LINK, "</a.css>; rel=preload".parse().unwrap());
        links.append(http::header::LINK, "</b.js>; rel=preload".parse().unwrap());
        assert_eq!(
            early_hints_h1(&links),
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\nlink: </b.js>; rel=preload\r\n\r\n"
        );
    }
}
