//! One WebSocket session, as shared between the engine and the app side.
//!
//! The WebSocket counterpart of `exchange.rs`: the engine delivers the app's decision on the
//! handshake, incoming messages and the end of the session; the app side takes messages and
//! queues outgoing ones. One short-held mutex, no blocking, no Python objects, no GIL. The
//! engine wakes the app through the [`AppWaker`] with the session id; the app wakes the
//! engine task through a stored [`Waker`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;

use super::exchange::{AppWaker, Capacity, InFlight, InFlightSlot, ResponseHead};

/// The app's answer to `websocket.connect`.
pub enum Decision {
    Accept {
        subprotocol: Option<String>,
        headers: HeaderMap,
    },
    /// `websocket.close` before accepting: 403.
    Reject,
    /// `websocket.http.response.*`: this response instead of a WebSocket.
    Deny(ResponseHead, Bytes),
    /// The app failed or returned before deciding: 500.
    Failed,
}

/// A message the app sends.
pub enum Outgoing {
    Text(Bytes),
    Binary(Bytes),
    Close(u16, String),
}

/// What `receive()` finds after `websocket.connect`.
pub enum Incoming {
    Text(Bytes),
    Binary(Bytes),
    /// The session is over: the close code and reason the app sees.
    Closed(u16, String),
    /// Nothing yet: the app is now registered as waiting.
    Wait,
}

#[derive(Default)]
struct State {
    decision: Option<Decision>,
    decided: bool,
    inbox: VecDeque<(bool, Bytes)>,
    /// Set once the socket is done; delivered after the inbox drains.
    closed: Option<(u16, String)>,
    outbox: VecDeque<Outgoing>,
    out_bytes: usize,
    /// The app sent a close frame (or returned): nothing more may be sent.
    app_closed: bool,
    app_waiting: bool,
    engine_waker: Option<Waker>,
}

pub struct Session {
    pub id: u64,
    state: Mutex<State>,
    app_waker: Arc<dyn AppWaker>,
    slot: InFlightSlot,
    /// `--ws-max-queue`: messages read ahead of the app before the engine stops reading.
    max_queue: usize,
    /// Outgoing bytes buffered before `send()` waits for the client.
    high_water: usize,
}

impl Session {
    pub fn new(
        id: u64,
        app_waker: Arc<dyn AppWaker>,
        in_flight: InFlight,
        max_queue: usize,
        high_water: usize,
    ) -> Self {
        Session {
            id,
            state: Mutex::new(State::default()),
            app_waker,
            slot: InFlightSlot::new(in_flight),
            max_queue: max_queue.max(1),
            high_water,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data behind the lock stays consistent enough to finish the session.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_app_if(&self, waiting: bool) {
        if waiting {
            self.app_waker.wake_app(self.id);
        }
    }

    fn wake_engine(&self, waker: Option<Waker>) {
        if let Some(w) = waker {
            self.app_waker.wake_engine(w);
        }
    }

    /// Keeps the session's admission slot until it is released.
    pub fn hold(&self, permit: Option<tokio::sync::OwnedSemaphorePermit>) {
        self.slot.hold(permit);
    }

    /// Stops counting the session as in flight (the app's task ended).
    pub fn release(&self) {
        self.slot.release();
    }

    // ----- engine side -----------------------------------------------------------------

    pub fn poll_decision(&self, cx: &mut Context<'_>) -> Poll<Decision> {
        let mut s = self.lock();
        match s.decision.take() {
            Some(d) => Poll::Ready(d),
            None => {
                s.engine_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Room for another incoming message; registers the engine task when full.
    pub fn poll_inbox_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.lock();
        if s.inbox.len() < self.max_queue {
            Poll::Ready(())
        } else {
            s.engine_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    pub fn deliver(&self, text: bool, data: Bytes) {
        let waiting = {
            let mut s = self.lock();
            s.inbox.push_back((text, data));
            std::mem::take(&mut s.app_waiting)
        };
        self.wake_app_if(waiting);
    }

    /// The next message for the wire; registers the engine task when there is none.
    pub fn poll_outgoing(&self, cx: &mut Context<'_>) -> Poll<Outgoing> {
        let mut s = self.lock();
        if let Some(m) = s.outbox.pop_front() {
            let was_full = s.out_bytes >= self.high_water;
            s.out_bytes -= outgoing_len(&m);
            let wake = was_full && s.out_bytes < self.high_water && s.app_waiting;
            if wake {
                s.app_waiting = false;
            }
            drop(s);
            self.wake_app_if(wake);
            return Poll::Ready(m);
        }
        s.engine_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The session is over (the peer closed, the socket failed, or the server shuts down):
    /// the app gets `websocket.disconnect` with this code once it has read what came before.
    pub fn finish(&self, code: u16, reason: &str) {
        let waiting = {
            let mut s = self.lock();
            if s.closed.is_none() {
                s.closed = Some((code, reason.to_string()));
            }
            // `out_bytes` stays: a `send()` waiting for room must learn whether its message
            // went out (room) or was dropped here (still over the mark: disconnected).
            s.outbox.clear();
            std::mem::take(&mut s.app_waiting)
        };
        self.wake_app_if(waiting);
    }

    pub fn is_finished(&self) -> bool {
        self.lock().closed.is_some()
    }

    // ----- app side --------------------------------------------------------------------

    /// Hands the app's handshake decision to the engine; false if one was already made.
    pub fn decide(&self, decision: Decision) -> bool {
        let waker = {
            let mut s = self.lock();
            if s.decided {
                return false;
            }
            s.decided = true;
            if !matches!(decision, Decision::Accept { .. }) {
                s.app_closed = true;
            }
            s.decision = Some(decision);
            s.engine_waker.take()
        };
        self.wake_engine(waker);
        true
    }

    pub fn receive(&self) -> Incoming {
        let (message, waker) = {
            let mut s = self.lock();
            match s.inbox.pop_front() {
                Some((text, data)) => {
                    let waker = (s.inbox.len() + 1 == self.max_queue)
                        .then(|| s.engine_waker.take())
                        .flatten();
                    let m = if text {
                        Incoming::Text(data)
                    } else {
                        Incoming::Binary(data)
                    };
                    (m, waker)
                }
                None => match &s.closed {
                    Some((code, reason)) => (Incoming::Closed(*code, reason.clone()), None),
                    None => {
                        s.app_waiting = true;
                        (Incoming::Wait, None)
                    }
                },
            }
        };
        self.wake_engine(waker);
        message
    }

    /// Queues a message for the peer; false (nothing queued) when the session is over or the
    /// app already closed it.
    pub fn send(&self, message: Outgoing) -> bool {
        let waker = {
            let mut s = self.lock();
            if s.closed.is_some() || s.app_closed {
                return false;
            }
            if matches!(message, Outgoing::Close(..)) {
                s.app_closed = true;
            }
            s.out_bytes += outgoing_len(&message);
            s.outbox.push_back(message);
            s.engine_waker.take()
        };
        self.wake_engine(waker);
        true
    }

    /// Whether another `send()` may go ahead now; registers the app as waiting if not.
    pub fn poll_capacity(&self) -> Capacity {
        let mut s = self.lock();
        // Room first: a message the engine took before the session ended was sent, and its
        // `send()` succeeds even if the peer's close came in before the app looked again.
        if s.out_bytes < self.high_water {
            Capacity::Available
        } else if s.closed.is_some() {
            Capacity::Disconnected
        } else {
            s.app_waiting = true;
            Capacity::Wait
        }
    }
}

fn outgoing_len(m: &Outgoing) -> usize {
    match m {
        Outgoing::Text(b) | Outgoing::Binary(b) => b.len(),
        Outgoing::Close(_, r) => r.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct CountWakes(AtomicUsize);
    impl AppWaker for CountWakes {
        fn wake_app(&self, _id: u64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn session(max_queue: usize) -> (Session, Arc<CountWakes>) {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let s = Session::new(
            1,
            wakes.clone(),
            Arc::new(AtomicUsize::new(0)),
            max_queue,
            8,
        );
        (s, wakes)
    }

    #[test]
    fn messages_come_in_order_then_the_close() {
        let (s, wakes) = session(4);
        assert!(matches!(s.receive(), Incoming::Wait));
        s.deliver(true, Bytes::from_static(b"a"));
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "a waiting app is woken");
        s.deliver(false, Bytes::from_static(b"b"));
        s.finish(1001, "going away");
        assert!(matches!(s.receive(), Incoming::Text(b) if &b[..] == b"a"));
        assert!(matches!(s.receive(), Incoming::Binary(b) if &b[..] == b"b"));
        assert!(matches!(s.receive(), Incoming::Closed(1001, r) if r == "going away"));
        assert!(!s.send(Outgoing::Text(Bytes::new())));
    }

    #[test]
    fn a_full_inbox_holds_the_reader_back() {
        let (s, _) = session(1);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(s.poll_inbox_room(&mut cx).is_ready());
        s.deliver(true, Bytes::from_static(b"x"));
        assert!(s.poll_inbox_room(&mut cx).is_pending());
        let _ = s.receive();
        assert!(s.poll_inbox_room(&mut cx).is_ready());
    }

    #[test]
    fn nothing_is_sent_after_the_app_closed() {
        let (s, _) = session(1);
        assert!(s.send(Outgoing::Close(1000, String::new())));
        assert!(!s.send(Outgoing::Text(Bytes::new())));
    }

    #[test]
    fn a_message_sent_before_the_close_completes_its_send() {
        let (s, _) = session(1);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(s.send(Outgoing::Binary(Bytes::from(vec![0; 16]))));
        assert!(matches!(s.poll_capacity(), Capacity::Wait));
        assert!(s.poll_outgoing(&mut cx).is_ready());
        // The peer closes before the app's waiting send() looks again: it was sent.
        s.finish(4321, "");
        assert!(matches!(s.poll_capacity(), Capacity::Available));
        assert!(!s.send(Outgoing::Text(Bytes::new())), "later sends fail");
    }

    #[test]
    fn a_message_dropped_by_the_close_fails_its_send() {
        let (s, _) = session(1);
        assert!(s.send(Outgoing::Binary(Bytes::from(vec![0; 16]))));
        assert!(matches!(s.poll_capacity(), Capacity::Wait));
        s.finish(1006, "");
        assert!(matches!(s.poll_capacity(), Capacity::Disconnected));
    }

    #[test]
    fn the_sender_waits_over_the_high_water_mark() {
        let (s, _) = session(1);
        assert!(matches!(s.poll_capacity(), Capacity::Available));
        assert!(s.send(Outgoing::Binary(Bytes::from(vec![0; 16]))));
        assert!(matches!(s.poll_capacity(), Capacity::Wait));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(s.poll_outgoing(&mut cx).is_ready());
        assert!(matches!(s.poll_capacity(), Capacity::Available));
    }
}
