//! When the local engine is handed to its assistant thread, and when it comes back.
//!
//! The engine on the loop thread is the cheapest way to serve while the loop thread has time
//! to spare: no thread switch per request (hello costs 18% more with an engine thread). Once
//! that thread is saturated and most of what it does for the engine is writing stream
//! chunks, a spare core is worth more: the assistant (`engine::assist`) then writes while the
//! loop runs the app. The same holds whatever the load once the machine has a core idle
//! beside the saturated loop thread: HTTP/2 clients, many requests per connection, leave one
//! (measured with h2load, 10 connections of 100 streams: 0.83 cores idle, and 1.7x the
//! requests/s assisted), where wrk's 100 HTTP/1.1 connections do not (0.36 cores idle, and
//! 0.8x assisted: the hand-off per request costs more than the second core gives). Looked at
//! every tick (50 ms) on the loop thread:
//!
//! - hand over when, for two ticks in a row, the loop thread was busy at least
//!   `assist_load` of the time and either streams sent at least `assist_chunks` mid-body
//!   chunks a second or the machine had at least `assist_idle_cores` cores idle;
//! - take back when streams sent fewer than `resume_chunks` a second for `RESUME_TICKS`
//!   ticks in a row (a second), and, if idle cores were the reason, the loop thread was
//!   busy less than `RESUME_LOAD` of the time meanwhile.
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
/// The loop thread's load below which an engine handed over for an idle core comes back.
const RESUME_LOAD: f64 = 0.3;

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
    /// Idle cores of the machine, with `assist_load`, that hand the engine over.
    pub(super) assist_idle_cores: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            assist_chunks: 10_000.0,
            assist_load: 0.85,
            resume_chunks: 4_000.0,
            assist_idle_cores: 0.6,
        }
    }
}

pub(super) struct AssistPolicy {
    thresholds: Thresholds,
    since: Instant,
    chunks_then: u64,
    cpu_then: Duration,
    /// The machine's CPU time at the last tick, read only while the loop thread is busy
    /// enough for it to matter (`/proc/stat` is long on a many-core machine).
    machine_then: Option<MachineTime>,
    busy_ticks: u32,
    calm_ticks: u32,
    /// The engine was handed over for an idle core rather than for busy streams.
    for_idle_core: bool,
}

impl AssistPolicy {
    pub(super) fn new(chunks: u64, thresholds: Thresholds) -> AssistPolicy {
        AssistPolicy {
            thresholds,
            since: Instant::now(),
            chunks_then: chunks,
            cpu_then: thread_cpu(),
            machine_then: None,
            busy_ticks: 0,
            calm_ticks: 0,
            for_idle_core: false,
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
        // Idle cores count only for a saturated loop that is not assisted yet; the first such
        // tick reads the baseline, the next one the figure.
        let machine = (!assisted && load >= self.thresholds.assist_load)
            .then(MachineTime::now)
            .flatten();
        let idle_cores = match (&self.machine_then, &machine) {
            (Some(then), Some(now)) => now.idle_cores_since(then),
            _ => 0.0,
        };
        self.since = now;
        self.chunks_then = chunks;
        self.cpu_then = cpu;
        self.machine_then = machine;
        self.judge(rate, load, idle_cores, assisted)
    }

    fn judge(&mut self, rate: f64, load: f64, idle_cores: f64, assisted: bool) -> Verdict {
        let t = &self.thresholds;
        if assisted {
            self.busy_ticks = 0;
            let calm = rate < t.resume_chunks && (!self.for_idle_core || load < RESUME_LOAD);
            self.calm_ticks = if calm { self.calm_ticks + 1 } else { 0 };
            if self.calm_ticks >= RESUME_TICKS {
                self.calm_ticks = 0;
                return Verdict::Resume;
            }
        } else {
            self.calm_ticks = 0;
            let streams = rate >= t.assist_chunks;
            let idle_core = idle_cores >= t.assist_idle_cores;
            self.busy_ticks = if load >= t.assist_load && (streams || idle_core) {
                self.busy_ticks + 1
            } else {
                0
            };
            if self.busy_ticks >= ASSIST_TICKS {
                self.busy_ticks = 0;
                self.for_idle_core = !streams;
                return Verdict::Assist;
            }
        }
        Verdict::Stay
    }
}

/// The machine's CPU time so far, all cores together (`/proc/stat`'s first line, in clock
/// ticks): how much of it was idle, out of how much, over how many cores.
struct MachineTime {
    idle: u64,
    total: u64,
    cores: usize,
}

impl MachineTime {
    fn now() -> Option<MachineTime> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut lines = stat.lines();
        let fields: Vec<u64> = lines
            .next()?
            .strip_prefix("cpu ")?
            .split_ascii_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal; guests are inside user and nice.
        let total = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        let cores = lines
            .take_while(|l| l.starts_with("cpu"))
            .filter(|l| l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count();
        Some(MachineTime { idle, total, cores })
    }

    /// Cores idle on average since `then`.
    fn idle_cores_since(&self, then: &MachineTime) -> f64 {
        let total = self.total.saturating_sub(then.total);
        if total == 0 {
            return 0.0;
        }
        self.idle.saturating_sub(then.idle) as f64 / total as f64 * self.cores as f64
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
        // Busy streams on an idle loop, or a saturated loop without streams or idle core: no.
        assert_eq!(p.judge(50_000.0, 0.3, 1.0, false), Verdict::Stay);
        assert_eq!(p.judge(50_000.0, 0.3, 1.0, false), Verdict::Stay);
        assert_eq!(p.judge(100.0, 1.0, 0.36, false), Verdict::Stay);
        assert_eq!(p.judge(100.0, 1.0, 0.36, false), Verdict::Stay);
        // Busy streams on a saturated loop, twice in a row.
        assert_eq!(p.judge(50_000.0, 0.95, 0.0, false), Verdict::Stay);
        assert_eq!(p.judge(50_000.0, 0.95, 0.0, false), Verdict::Assist);
    }

    #[test]
    fn assists_a_saturated_loop_beside_an_idle_core_until_the_loop_calms() {
        let mut p = AssistPolicy::new(0, Thresholds::default());
        assert_eq!(p.judge(0.0, 1.0, 0.83, false), Verdict::Stay);
        assert_eq!(p.judge(0.0, 1.0, 0.83, false), Verdict::Assist);
        // Still busy with requests (no stream chunks at all): it stays.
        for _ in 0..2 * RESUME_TICKS {
            assert_eq!(p.judge(0.0, 0.7, 0.1, true), Verdict::Stay);
        }
        // The load is gone for a second: it comes back.
        for _ in 0..RESUME_TICKS - 1 {
            assert_eq!(p.judge(0.0, 0.05, 1.9, true), Verdict::Stay);
        }
        assert_eq!(p.judge(0.0, 0.05, 1.9, true), Verdict::Resume);
    }

    #[test]
    fn the_machine_time_reads_and_counts_cores() {
        let then = MachineTime::now().expect("/proc/stat");
        assert!(then.cores >= 1 && then.total > 0 && then.idle <= then.total);
        let now = MachineTime::now().unwrap();
        let idle = now.idle_cores_since(&then);
        assert!((0.0..=now.cores as f64).contains(&idle), "{idle}");
    }

    #[test]
    fn resumes_after_a_calm_second() {
        let mut p = AssistPolicy::new(0, Thresholds::default());
        for _ in 0..RESUME_TICKS - 1 {
            assert_eq!(p.judge(1_000.0, 0.1, 0.0, true), Verdict::Stay);
        }
        // One busy tick starts the count again.
        assert_eq!(p.judge(20_000.0, 0.1, 0.0, true), Verdict::Stay);
        for _ in 0..RESUME_TICKS - 1 {
            assert_eq!(p.judge(1_000.0, 0.1, 0.0, true), Verdict::Stay);
        }
        assert_eq!(p.judge(1_000.0, 0.1, 0.0, true), Verdict::Resume);
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
