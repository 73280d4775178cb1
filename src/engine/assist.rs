//! The assistant: a thread that drives the local runtime while the loop thread is busy with
//! streams.
//!
//! In local mode the loop thread runs the app and the engine in turns, so every byte the
//! engine writes costs the app that much time: on a saturated loop with many token streams
//! the kernel's send path alone was a fifth to a half of the thread. When the bridge decides
//! streams are busy and a core is spare, it hands the runtime to this thread, which drives
//! it with `block_on` (blocking in epoll, timers included) as a one-thread engine would, and
//! takes it back once streams calm down. Only one thread drives a current-thread runtime at
//! a time: the loop thread does not turn while the assistant runs, and `stop` returns only
//! once the assistant has let go.
//!
//! Owns the thread and the hand-over. Must not decide when to assist (the bridge does) nor
//! touch the loop thread's poll fd (the runtime does).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::runtime::Runtime;
use tokio::sync::Notify;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// The loop thread drives the runtime; the assistant sleeps.
    Idle,
    /// Asked to drive; the assistant has not taken the runtime yet.
    Asked,
    /// The assistant drives the runtime.
    Driving,
    /// The thread ends.
    Exit,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Ends the assistant's `block_on` (a stored permit if it has not started waiting).
    release: Notify,
}

pub(super) struct Assistant {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Assistant {
    pub(super) fn spawn(runtime: Arc<Runtime>) -> std::io::Result<Assistant> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::Idle),
            changed: Condvar::new(),
            release: Notify::new(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ferricorn-assist".into())
            .spawn(move || run(&thread_shared, &runtime))?;
        Ok(Assistant {
            shared,
            thread: Some(thread),
        })
    }

    /// Loop thread, between turns: the assistant takes the runtime from now on.
    pub(super) fn start(&self) {
        let mut state = self.lock();
        if *state == State::Idle {
            *state = State::Asked;
            self.shared.changed.notify_all();
        }
    }

    /// Loop thread: waits until the assistant has let go of the runtime (it finishes the
    /// task it is polling first). Call without the GIL.
    pub(super) fn stop(&self) {
        let mut state = self.lock();
        if matches!(*state, State::Asked | State::Driving) {
            self.shared.release.notify_one();
            while matches!(*state, State::Asked | State::Driving) {
                state = self
                    .shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Assistant {
    fn drop(&mut self) {
        self.stop();
        *self.lock() = State::Exit;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, runtime: &Runtime) {
    loop {
        {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            while *state == State::Idle {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            match *state {
                State::Exit => return,
                _ => *state = State::Driving,
            }
        }
        runtime.block_on(shared.release.notified());
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if *state != State::Exit {
            *state = State::Idle;
        }
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn drives_the_runtime_while_started_and_lets_go_on_stop() {
        let rt = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        );
        let assistant = Assistant::spawn(rt.clone()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(std::thread::current().name().map(str::to_owned))
                .unwrap();
        });
        // Nobody drives the runtime: the task's timer cannot fire.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        assistant.start();
        let driver = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(driver.as_deref(), Some("ferricorn-assist"));
        assistant.stop();
        // The runtime is free again: this thread can drive it.
        let here = rt.block_on(async { 7 });
        assert_eq!(here, 7);
        // Started and stopped again, then dropped while driving: no hang.
        assistant.start();
        assistant.stop();
        assistant.start();
        drop(assistant);
    }
}
