//! Property-based fuzzing for the parsers we own, on the stable toolchain (cargo-fuzz needs
//! nightly): a small seeded generator, and how many cases a run tries.
//!
//! `make test` runs every `fuzz_*` test with the default count (a few seconds in all);
//! `make fuzz` runs them with `FERRICORN_FUZZ_ITERATIONS` raised and a seed from the clock.
//! A failure prints its seed; `FERRICORN_FUZZ_SEED=<seed>` replays it. Every input that
//! ever failed stays in its module as a fixed regression case.

/// Cases per fuzz test unless `FERRICORN_FUZZ_ITERATIONS` says otherwise.
const DEFAULT_ITERATIONS: usize = 20_000;

pub fn iterations() -> usize {
    std::env::var("FERRICORN_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS)
}

/// The seed of this run: `FERRICORN_FUZZ_SEED`, else a fixed one (so `make test` is
/// repeatable), else, with `FERRICORN_FUZZ_SEED=clock`, the time.
pub fn seed() -> u64 {
    match std::env::var("FERRICORN_FUZZ_SEED").ok().as_deref() {
        Some("clock") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 | 1),
        Some(v) => v.parse().unwrap_or(1),
        None => 0x5eed_f00d_1234_5678,
    }
}

/// xorshift64*: fast, and the same sequence for the same seed everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Runs `case` for every iteration with its own generator; a panic names the seed and the
/// iteration that replays it.
pub fn run(name: &str, mut case: impl FnMut(&mut Rng)) {
    let seed = seed();
    for i in 0..iterations() {
        let case_seed = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = Rng::new(case_seed);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&mut rng)));
        if let Err(panic) = result {
            eprintln!("{name}: case {i} failed; replay with FERRICORN_FUZZ_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}
