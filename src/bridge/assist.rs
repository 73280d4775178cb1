//! When the local engine is handed to its assistant thread, and when it comes back.
//!
//! The engine on the loop thread is the cheapest way to serve while the loop thread has time
//! to spare: no thread switch per request (hello costs 18% more with an engine thread). Once
//! that thread is saturated and most of what it does for the engine is writing stream
//! chunks, a spare core is worth more: the assistant (`engine::assist`) then writes while the
//! loop runs the app. Looked at every tick (50 ms) on the loop thread:
//!
//! - hand over when, for two ticks in a row, streams sent at least `assist_chunks` mid-body
//!   chunks a second and the loop thread was busy at least `assist_load` of the time;
//! - take back when streams sent fewer than `resume_chunks` a second for `RESUME_TICKS`
//!   ticks in a row (a second).
//!
//! `Thresholds::default()` holds the values the benchmark chose; the end-to-end tests lower
//! them, since how busy a shared test machine lets the loop thread get is not theirs to say.
//!
//! Only where a core is spare (the bridge is told so by Python: fewer workers than usable
//! cores) and never for WSGI apps, whose threads share the engine differently.
//!
//! Owns the decision only; the hand-over itself is `Engine::set_assisted`.

use std::time::{Duration, Instant};

const ASSIST_TICKS: u32 = 2;
const RESUME_TICKS: u32 = 20;
/// Shorter measurements than this are too noisy to act on.
const MIN_SPAN: Duration = Duration::from_millis(40);

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Stay,
    Assist,
    Resume,
}

/// The rates and load the policy acts on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Thresholds {
    /// Mid-body chunks a second, with `assist_load`, that hand the engine over.
    pub(super) assist_chunks: f64,
    /// The loop thread's busy fraction (0 to 1), with `assist_chunks`, that hands it over.
    pub(super) assist_load: f64,
    /// Below this many chunks a second for `RESUME_TICKS` ticks, the engine comes back.
    pub(super) resume_chunks: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            assist_chunks: 10_000.0,
            assist_load: 0.85,
            resume_chunks: 4_000.0,
        }
    }
}

pub(super) struct AssistPolicy {
    thresholds: Thresholds,
    since: Instant,
    chunks_then: u64,
    cpu_then: Duration,
    busy_ticks: u32,
    calm_ticks: u32,
}

impl AssistPolicy {
    pub(super) fn new(chunks: u64, thresholds: Thresholds) -> AssistPolicy {
        AssistPolicy {
            thresholds,
            since: Instant::now(),
            chunks_then: chunks,
            cpu_then: thread_cpu(),
            busy_ticks: 0,
            calm_ticks: 0,
        }
    }

    /// Loop thread, every tick: `chunks` is the count of mid-body chunk wakes so far.
    pub(super) fn tick(&mut self, chunks: u64, assisted: bool) -> Verdict {
        let now = Instant::now();
        let span = now.duration_since(self.since);
        if span < MIN_SPAN {
            return Verdict::Stay;
        }
        let cpu = thread_cpu();
        let rate = chunks.saturating_sub(self.chunks_then) as f64 / span.as_secs_f64();
        let load = cpu.saturating_sub(self.cpu_then).as_secs_f64() / span.as_secs_f64();
        self.since = now;
        self.chunks_then = chunks;
        self.cpu_then = cpu;
        self.judge(rate, load, assisted)
    }

    fn judge(&mut self, rate: f64, load: f64, assisted: bool) -> Verdict {
        if assisted {
            self.busy_ticks = 0;
            self.calm_ticks = if rate < self.thresholds.resume_chunks {
                self.calm_ticks + 1
            } else {
                0
            };
            if self.calm_ticks >= RESUME_TICKS {
                self.calm_ticks = 0;
                return Verdict::Resume;
            }
        } else {
            self.calm_ticks = 0;
            self.busy_ticks =
                if rate >= self.thresholds.assist_chunks && load >= self.thresholds.assist_load {
                    self.busy_ticks + 1
                } else {
                    0
                };
            if self.busy_ticks >= ASSIST_TICKS {
                self.busy_ticks = 0;
                return Verdict::Assist;
            }
        }
        Verdict::Stay
    }
}

/// CPU time of the calling thread (the loop thread: the app and, in local mode, the engine).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; the clock id is a constant.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assists_only_when_streams_are_busy_and_the_loop_saturated() {
        let mut p = AssistPolicy::new(0, Thresholds::default());
        // Busy streams on an idle loop, or a saturated loop without streams: no.
        assert_eq!(p.judge(50_000.0, 0.3, false), Verdict::Stay);
        assert_eq!(p.judge(50_000.0, 0.3, false), Verdict::Stay);
        assert_eq!(p.judge(100.0, 1.0, false), Verdict::Stay);
        assert_eq!(p.judge(100.0, 1.0, false), Verdict::Stay);
        // Both, twice in a row.
        assert_eq!(p.judge(50_000.0, 0.95, false), Verdict::Stay);
        assert_eq!(p.judge(50_000.0, 0.95, false), Verdict::Assist);
    }

    #[test]
    fn resumes_after_a_calm_second() {
        let mut p = AssistPolicy::new(0, Thresholds::default());
        for _ in 0..RESUME_TICKS - 1 {
            assert_eq!(p.judge(1_000.0, 0.1, true), Verdict::Stay);
        }
        // One busy tick starts the count again.
        assert_eq!(p.judge(20_000.0, 0.1, true), Verdict::Stay);
        for _ in 0..RESUME_TICKS - 1 {
            assert_eq!(p.judge(1_000.0, 0.1, true), Verdict::Stay);
        }
        assert_eq!(p.judge(1_000.0, 0.1, true), Verdict::Resume);
    }

    #[test]
    fn thread_cpu_advances() {
        let before = thread_cpu();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(thread_cpu() > before);
    }
}
