//! Per-phase measurements, recorded by the transactions themselves: a latency histogram,
//! per-second completion counts and errors by kind for each transaction. Goose's own request
//! metrics are switched off (each request's record goes through a channel to goose's
//! aggregator, see docs/load.md); recording here is a handful of relaxed atomic adds.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::TransactionKind;
use super::schedule::{Round, Schedule, Turn};

/// Sub-buckets per power of two: latencies are kept to within 1/32 (~3%).
const SUB_BUCKET_BITS: u32 = 5;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Values below this are kept exactly (one bucket per microsecond).
const LINEAR_LIMIT: u64 = 2 * SUB_BUCKETS;
/// Latencies are clamped to 2^36 µs (about 19 hours), far above any request timeout.
const MAX_MAGNITUDE: u32 = 36;
const BUCKETS: usize =
    LINEAR_LIMIT as usize + ((MAX_MAGNITUDE - SUB_BUCKET_BITS) as usize) * SUB_BUCKETS as usize;

/// A log-linear latency histogram in microseconds, safe to update from many tasks at once.
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    max_us: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    let us = us.min((1 << MAX_MAGNITUDE) - 1);
    if us < LINEAR_LIMIT {
        return us as usize;
    }
    let magnitude = 63 - us.leading_zeros();
    let shift = magnitude - SUB_BUCKET_BITS;
    let top = us >> shift; // in [SUB_BUCKETS, 2 * SUB_BUCKETS)
    LINEAR_LIMIT as usize
        + (magnitude - SUB_BUCKET_BITS - 1) as usize * SUB_BUCKETS as usize
        + (top - SUB_BUCKETS) as usize
}

/// The middle of a bucket's range, in microseconds.
fn bucket_value(index: usize) -> f64 {
    let index = index as u64;
    if index < LINEAR_LIMIT {
        return index as f64;
    }
    let rest = index - LINEAR_LIMIT;
    let shift = rest / SUB_BUCKETS + 1;
    let top = rest % SUB_BUCKETS + SUB_BUCKETS;
    let low = top << shift;
    low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
}

impl Histogram {
    pub fn record(&self, latency: Duration) {
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        self.counts[bucket_of(us)].fetch_add(1, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The latency at quantile `q` (0..=1) in milliseconds, `None` when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count.load(Relaxed);
            if seen >= rank {
                let max = self.max_us.load(Relaxed) as f64;
                return Some(bucket_value(index).min(max) / 1000.0);
            }
        }
        None
    }

    pub fn max_ms(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.max_us.load(Relaxed) as f64 / 1000.0)
    }

    pub fn mean_ms(&self) -> Option<f64> {
        let total = self.count();
        (total > 0).then(|| self.sum_us.load(Relaxed) as f64 / total as f64 / 1000.0)
    }
}

/// What one transaction recorded during a phase.
pub struct TransactionRecorder {
    pub latency: Histogram,
    /// Successful completions per wall-clock second since the phase started.
    pub ok_per_second: Box<[AtomicU64]>,
    pub errors_per_second: Box<[AtomicU64]>,
    /// Successful completions after every user was ready (the steady window).
    pub steady_ok: AtomicU64,
    pub errors: Mutex<BTreeMap<String, u64>>,
}

impl TransactionRecorder {
    fn new(seconds: usize) -> Self {
        Self {
            latency: Histogram::default(),
            ok_per_second: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
            errors_per_second: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
            steady_ok: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn ok(&self) -> u64 {
        self.latency.count()
    }

    pub fn error_count(&self) -> u64 {
        self.errors
            .lock()
            .map(|e| e.values().sum())
            .unwrap_or_default()
    }
}

/// Everything one phase records. Shared by every goose user of the phase.
pub struct Recorder {
    started: Instant,
    users: usize,
    ready_users: AtomicUsize,
    steady_since: OnceLock<Instant>,
    max_requests: u64,
    requests: AtomicU64,
    cap_reached: OnceLock<Instant>,
    transactions: [TransactionRecorder; TransactionKind::ALL.len()],
    /// Set for the interleaved phase; its epoch is the moment every user is ready.
    schedule: Option<Schedule>,
}

impl Recorder {
    /// `seconds` bounds the per-second series (later completions land in the last slot).
    pub fn new(
        users: usize,
        seconds: usize,
        max_requests: u64,
        schedule: Option<Schedule>,
    ) -> Self {
        let seconds = seconds.max(1);
        Self {
            started: Instant::now(),
            users,
            ready_users: AtomicUsize::new(0),
            steady_since: OnceLock::new(),
            max_requests,
            requests: AtomicU64::new(0),
            cap_reached: OnceLock::new(),
            transactions: std::array::from_fn(|_| TransactionRecorder::new(seconds)),
            schedule,
        }
    }

    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// What an interleaved user does now (`None` outside the interleaved phase).
    pub fn turn(&self) -> Option<Turn> {
        let schedule = self.schedule.as_ref()?;
        Some(schedule.turn(self.steady_since(), Instant::now()))
    }

    /// The interleaved phase's rounds that were whole by `ended`.
    pub fn rounds(&self, ended: Instant) -> Vec<Round> {
        self.schedule
            .as_ref()
            .map(|s| s.completed_rounds(self.steady_since(), ended))
            .unwrap_or_default()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn transaction(&self, kind: TransactionKind) -> &TransactionRecorder {
        &self.transactions[kind as usize]
    }

    /// A user has its credential (or needs none) and starts its hot loop.
    pub fn user_ready(&self) {
        if self.ready_users.fetch_add(1, Relaxed) + 1 >= self.users {
            let _ = self.steady_since.set(Instant::now());
        }
    }

    pub fn steady_since(&self) -> Option<Instant> {
        self.steady_since.get().copied()
    }

    pub fn cap_reached(&self) -> bool {
        self.cap_reached.get().is_some()
    }

    fn second(&self, at: Instant) -> usize {
        at.duration_since(self.started).as_secs() as usize
    }

    /// Counts a request against the phase's cap; returns false (once the cap is hit) when the
    /// phase must stop.
    fn count_request(&self) -> bool {
        let n = self.requests.fetch_add(1, Relaxed) + 1;
        if n >= self.max_requests && self.cap_reached.set(Instant::now()).is_ok() {
            goose::trigger_killswitch("meshauth: the phase's request cap was reached");
        }
        n < self.max_requests
    }

    pub fn ok(&self, kind: TransactionKind, latency: Duration) {
        let now = Instant::now();
        let recorder = self.transaction(kind);
        recorder.latency.record(latency);
        if let Some(schedule) = &self.schedule {
            schedule.completed(self.steady_since(), kind, now);
        }
        let slots = &recorder.ok_per_second;
        slots[self.second(now).min(slots.len() - 1)].fetch_add(1, Relaxed);
        if self.steady_since.get().is_some() {
            recorder.steady_ok.fetch_add(1, Relaxed);
        }
        self.count_request();
    }

    pub fn error(&self, kind: TransactionKind, what: impl Into<String>) {
        let recorder = self.transaction(kind);
        if let Ok(mut errors) = recorder.errors.lock() {
            *errors.entry(what.into()).or_default() += 1;
        }
        let slots = &recorder.errors_per_second;
        slots[self.second(Instant::now()).min(slots.len() - 1)].fetch_add(1, Relaxed);
        self.count_request();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_within_three_percent() {
        let mut last = 0;
        for us in [0u64, 1, 63, 64, 65, 100, 1_000, 12_345, 999_999, 50_000_000] {
            let b = bucket_of(us);
            assert!(b >= last, "bucket of {us} went backwards");
            last = b;
            let mid = bucket_value(b);
            assert!(
                (mid - us as f64).abs() <= (us as f64 / 32.0).max(0.5),
                "{us} µs lands in a bucket centred on {mid}"
            );
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_follow_the_recorded_distribution() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((p50 - 50.0).abs() < 2.0, "p50 {p50}");
        assert!((p99 - 99.0).abs() < 3.5, "p99 {p99}");
        assert_eq!(h.max_ms(), Some(100.0));
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
    }
}
