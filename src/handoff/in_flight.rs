//! What a request or a WebSocket session holds while it counts as in flight: its place in
//! the count the engine's admission control and shutdown read, and its admission permit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counts exchanges alive; shared with the engine for admission control and shutdown.
pub type InFlight = Arc<AtomicUsize>;

/// What an exchange or a WebSocket session holds while it counts as in flight: its place in
/// the `InFlight` count and its admission permit (`--limit-concurrency`), both given back
/// once, by `release`, when the app's task ends: the owner itself may live on in garbage
/// that only Python's cycle collector frees (an exception traceback that holds `receive`),
/// which must not hold a slot.
pub struct InFlightSlot {
    in_flight: InFlight,
    released: AtomicBool,
    permit: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl InFlightSlot {
    pub fn new(in_flight: InFlight) -> Self {
        in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightSlot {
            in_flight,
            released: AtomicBool::new(false),
            permit: Mutex::new(None),
        }
    }

    /// Keeps the admission permit until release.
    pub fn hold(&self, permit: Option<tokio::sync::OwnedSemaphorePermit>) {
        *self.permit.lock().unwrap_or_else(|e| e.into_inner()) = permit;
    }

    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}
