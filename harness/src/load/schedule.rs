//! The interleaved schedule: baseline and authenticated paths take turns in short slices, all
//! users switching together, so each ratio compares two measurements taken a second apart
//! rather than two phases run minutes apart. Slow drift of the machine (other processes, CPU
//! frequency, garbage collectors, caches) then cancels out of every round's ratio, and the
//! median over rounds shrugs off the odd disturbed slice.
//!
//! Time is cut into rounds; a round gives each path one slice, in a fixed order. A slice's
//! first part (`guard`) is not counted, so requests of the previous path still in flight do not
//! leak into it; its measurement window is the rest of the slice, when every user is on it.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::TransactionKind;

/// What a user should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Not every user is ready yet: requests warm the path up and are not measured.
    WarmUp(TransactionKind),
    Measure(TransactionKind),
    /// Every round is over; users idle until goose stops them.
    Done,
}

pub struct Schedule {
    kinds: Vec<TransactionKind>,
    slice: Duration,
    guard: Duration,
    rounds: usize,
    /// Successful completions inside each slice's window; index `round * kinds + position`.
    window_ok: Box<[AtomicU64]>,
    /// Stop once every ratio's 95% confidence interval is within this fraction of its median.
    precision: Option<f64>,
    /// Whole rounds already judged against `precision`.
    judged_rounds: AtomicUsize,
    /// The round count at which `precision` was reached.
    precise_after: OnceLock<usize>,
}

/// Rounds before the precision is first judged: fewer give confidence intervals too coarse
/// to trust.
pub const MIN_ROUNDS_FOR_PRECISION: usize = 10;

/// One round's throughput per path, in successful requests per second of window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Round {
    pub round: usize,
    pub requests_per_second: BTreeMap<TransactionKind, f64>,
}

impl Schedule {
    /// `rounds` rounds of one `slice` per kind, in the order given. The guard is a fifth of a
    /// slice, at most 200 ms.
    pub fn new(kinds: Vec<TransactionKind>, slice: Duration, rounds: usize) -> Self {
        let guard = (slice / 5).min(Duration::from_millis(200));
        let slots = rounds * kinds.len();
        Self {
            kinds,
            slice,
            guard,
            rounds,
            window_ok: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            precision: None,
            judged_rounds: AtomicUsize::new(0),
            precise_after: OnceLock::new(),
        }
    }

    /// Ends the schedule early, at a round boundary, once every overhead ratio's 95%
    /// confidence interval lies within `fraction` of its median (`rounds` stays the cap).
    pub fn stop_when_precise(mut self, fraction: f64) -> Self {
        self.precision = Some(fraction);
        self
    }

    /// The rounds after which the precision was reached, if it was.
    pub fn precise_after(&self) -> Option<usize> {
        self.precise_after.get().copied()
    }

    fn last_round(&self) -> usize {
        self.precise_after().unwrap_or(self.rounds)
    }

    pub fn kinds(&self) -> &[TransactionKind] {
        &self.kinds
    }

    pub fn rounds(&self) -> usize {
        self.rounds
    }

    pub fn slice(&self) -> Duration {
        self.slice
    }

    /// Wall time of all rounds.
    pub fn length(&self) -> Duration {
        self.slice * (self.rounds * self.kinds.len()) as u32
    }

    /// Length of one slice's measurement window.
    pub fn window(&self) -> Duration {
        self.slice - self.guard
    }

    fn slot_at(&self, since_epoch: Duration) -> Option<(usize, Duration)> {
        let slice = self.slice.as_nanos();
        let slot = (since_epoch.as_nanos() / slice) as usize;
        let into = Duration::from_nanos((since_epoch.as_nanos() % slice) as u64);
        (slot < self.window_ok.len()).then_some((slot, into))
    }

    /// The turn at `now`, for a schedule that started at `epoch` (`None`: not started).
    pub fn turn(&self, epoch: Option<Instant>, now: Instant) -> Turn {
        let Some(epoch) = epoch else {
            return Turn::WarmUp(self.kinds[0]);
        };
        let Some((slot, _)) = self.slot_at(now.saturating_duration_since(epoch)) else {
            return Turn::Done;
        };
        let round = slot / self.kinds.len();
        self.judge_precision(round);
        if round >= self.last_round() {
            return Turn::Done;
        }
        Turn::Measure(self.kinds[slot % self.kinds.len()])
    }

    /// Once per round boundary (whichever user crosses it first): has every ratio become
    /// precise enough over the `whole` rounds so far?
    fn judge_precision(&self, whole: usize) {
        let Some(fraction) = self.precision else {
            return;
        };
        let judged = self.judged_rounds.load(Relaxed);
        if whole <= judged
            || whole < MIN_ROUNDS_FOR_PRECISION
            || self
                .judged_rounds
                .compare_exchange(judged, whole, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let rounds = self.rounds_until(whole);
        let precise = AUTHENTICATED.iter().all(|&kind| {
            !self.kinds.contains(&kind)
                || Spread::of(&round_ratios(&rounds, kind))
                    .is_some_and(|spread| spread.relative_ci95_half_width() <= fraction)
        });
        if precise {
            let _ = self.precise_after.set(whole);
        }
    }

    /// The slot (round × path) whose measurement window holds `at`, and its path: what the
    /// machine was busy with then. `None` in a guard, after the last round, or before `epoch`.
    pub fn window_at(&self, epoch: Instant, at: Instant) -> Option<(usize, TransactionKind)> {
        let since = at.checked_duration_since(epoch)?;
        let (slot, into) = self.slot_at(since)?;
        (into >= self.guard && slot / self.kinds.len() < self.last_round())
            .then(|| (slot, self.kinds[slot % self.kinds.len()]))
    }

    /// Counts a success of `kind` completed at `now` if it falls in one of `kind`'s windows.
    pub fn completed(&self, epoch: Option<Instant>, kind: TransactionKind, now: Instant) {
        let Some(epoch) = epoch else { return };
        if let Some((slot, into)) = self.slot_at(now.saturating_duration_since(epoch))
            && self.kinds[slot % self.kinds.len()] == kind
            && into >= self.guard
        {
            self.window_ok[slot].fetch_add(1, Relaxed);
        }
    }

    /// The rounds that ended by `ended` (a run cut short keeps only its whole rounds).
    pub fn completed_rounds(&self, epoch: Option<Instant>, ended: Instant) -> Vec<Round> {
        let Some(epoch) = epoch else {
            return Vec::new();
        };
        let round_length = self.slice * self.kinds.len() as u32;
        let elapsed = ended.saturating_duration_since(epoch);
        let whole = (elapsed.as_nanos() / round_length.as_nanos()) as usize;
        self.rounds_until(whole.min(self.last_round()))
    }

    fn rounds_until(&self, whole: usize) -> Vec<Round> {
        let window = self.window().as_secs_f64();
        (0..whole.min(self.rounds))
            .map(|round| Round {
                round,
                requests_per_second: self
                    .kinds
                    .iter()
                    .enumerate()
                    .map(|(position, &kind)| {
                        let ok = self.window_ok[round * self.kinds.len() + position].load(Relaxed);
                        (kind, ok as f64 / window)
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The paths compared with the baseline.
pub const AUTHENTICATED: [TransactionKind; 2] = [TransactionKind::Cookie, TransactionKind::Bearer];

/// Each round's throughput of `kind` ÷ the baseline's in the same round (rounds where the
/// baseline completed nothing are left out: they have no ratio).
pub fn round_ratios(rounds: &[Round], kind: TransactionKind) -> Vec<f64> {
    rounds
        .iter()
        .filter_map(|r| {
            let base = *r.requests_per_second.get(&TransactionKind::Baseline)?;
            let auth = *r.requests_per_second.get(&kind)?;
            (base > 0.0).then(|| auth / base)
        })
        .collect()
}

/// A distribution's summary: the median, the spread around it, and a distribution-free 95%
/// confidence interval for the median (order statistics; the whole range below 6 values).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
    pub max: f64,
    pub median_ci95_low: f64,
    pub median_ci95_high: f64,
}

impl Spread {
    /// `None` for no values; quantiles by linear interpolation between closest ranks.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = q * (sorted.len() - 1) as f64;
            let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
            sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
        };
        let n = sorted.len();
        // 1-based ranks ⌊n/2 − 1.96·√n/2⌋ and n + 1 minus it: the binomial(n, ½) bounds on
        // how many values lie below the true median, by the normal approximation.
        let lower = if n < 6 {
            0
        } else {
            (((n as f64 - 1.96 * (n as f64).sqrt()) / 2.0).floor() as usize).saturating_sub(1)
        };
        Some(Self {
            min: sorted[0],
            p25: at(0.25),
            median: at(0.5),
            p75: at(0.75),
            max: sorted[n - 1],
            median_ci95_low: sorted[lower],
            median_ci95_high: sorted[n - 1 - lower],
        })
    }

    /// The confidence interval's larger half-width, relative to the median.
    pub fn relative_ci95_half_width(&self) -> f64 {
        let half = (self.median - self.median_ci95_low).max(self.median_ci95_high - self.median);
        if self.median > 0.0 {
            half / self.median
        } else {
            f64::INFINITY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransactionKind::{Baseline, Bearer, Cookie};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn turns_follow_the_slices_and_end() {
        let schedule = Schedule::new(vec![Baseline, Cookie, Bearer], ms(1000), 2);
        let epoch = Instant::now();
        assert_eq!(schedule.turn(None, epoch), Turn::WarmUp(Baseline));
        let at = |t| schedule.turn(Some(epoch), epoch + ms(t));
        assert_eq!(at(0), Turn::Measure(Baseline));
        assert_eq!(at(999), Turn::Measure(Baseline));
        assert_eq!(at(1000), Turn::Measure(Cookie));
        assert_eq!(at(2500), Turn::Measure(Bearer));
        assert_eq!(at(3000), Turn::Measure(Baseline));
        assert_eq!(at(5999), Turn::Measure(Bearer));
        assert_eq!(at(6000), Turn::Done);
        assert_eq!(schedule.length(), ms(6000));
    }

    #[test]
    fn only_completions_inside_their_own_window_count() {
        let schedule = Schedule::new(vec![Baseline, Cookie], ms(1000), 2);
        let epoch = Instant::now();
        let done = |kind, t| schedule.completed(Some(epoch), kind, epoch + ms(t));
        done(Baseline, 100); // in the guard: a leftover of the warm-up
        done(Baseline, 300);
        done(Baseline, 900);
        done(Baseline, 1_100); // in flight across the switch: not cookie's, not baseline's window
        done(Cookie, 1_150); // cookie's guard
        done(Cookie, 1_500);
        done(Cookie, 2_500); // baseline's slice
        done(Baseline, 2_400);
        done(Cookie, 3_999);
        done(Cookie, 4_100); // after the last round
        let rounds = schedule.completed_rounds(Some(epoch), epoch + ms(4_000));
        let rps = |r: &Round, k| r.requests_per_second[&k];
        assert_eq!(rounds.len(), 2);
        assert!((rps(&rounds[0], Baseline) - 2.0 / 0.8).abs() < 1e-9);
        assert!((rps(&rounds[0], Cookie) - 1.0 / 0.8).abs() < 1e-9);
        assert!((rps(&rounds[1], Baseline) - 1.0 / 0.8).abs() < 1e-9);
        assert!((rps(&rounds[1], Cookie) - 1.0 / 0.8).abs() < 1e-9);
    }

    #[test]
    fn a_run_cut_short_keeps_only_whole_rounds() {
        let schedule = Schedule::new(vec![Baseline, Cookie], ms(500), 10);
        let epoch = Instant::now();
        assert_eq!(
            schedule
                .completed_rounds(Some(epoch), epoch + ms(2_600))
                .len(),
            2
        );
        assert!(schedule.completed_rounds(None, epoch).is_empty());
    }

    #[test]
    fn precision_ends_the_schedule_at_a_round_boundary() {
        let kinds = vec![Baseline, Cookie];
        let schedule = Schedule::new(kinds, ms(1000), 100).stop_when_precise(0.05);
        let epoch = Instant::now();
        // Every round: baseline 100 in its window, cookie 25: a ratio of exactly 0.25.
        for round in 0..12u64 {
            for _ in 0..100 {
                schedule.completed(Some(epoch), Baseline, epoch + ms(round * 2000 + 500));
            }
            for _ in 0..25 {
                schedule.completed(Some(epoch), Cookie, epoch + ms(round * 2000 + 1500));
            }
        }
        let at = |t| schedule.turn(Some(epoch), epoch + ms(t));
        assert_eq!(
            at(9 * 2000 + 1),
            Turn::Measure(Baseline),
            "too few rounds to judge"
        );
        assert_eq!(schedule.precise_after(), None);
        assert_eq!(
            at(10 * 2000 + 1),
            Turn::Done,
            "10 identical rounds are precise"
        );
        assert_eq!(schedule.precise_after(), Some(10));
        assert_eq!(at(11 * 2000 + 1), Turn::Done);
        let rounds = schedule.completed_rounds(Some(epoch), epoch + ms(30_000));
        assert_eq!(
            rounds.len(),
            10,
            "rounds after the precise point are not reported"
        );
    }

    #[test]
    fn noisy_rounds_do_not_stop_the_schedule() {
        let schedule = Schedule::new(vec![Baseline, Cookie], ms(1000), 100).stop_when_precise(0.01);
        let epoch = Instant::now();
        for round in 0..12u64 {
            for _ in 0..100 {
                schedule.completed(Some(epoch), Baseline, epoch + ms(round * 2000 + 500));
            }
            for _ in 0..(10 + 5 * round) {
                schedule.completed(Some(epoch), Cookie, epoch + ms(round * 2000 + 1500));
            }
        }
        assert_eq!(
            schedule.turn(Some(epoch), epoch + ms(11 * 2000 + 1)),
            Turn::Measure(Baseline)
        );
        assert_eq!(schedule.precise_after(), None);
    }

    #[test]
    fn median_confidence_interval_narrows_with_more_values() {
        let few = Spread::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!((few.median_ci95_low, few.median_ci95_high), (1.0, 5.0));
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let many = Spread::of(&values).unwrap();
        // n = 100: ranks 40 and 61 (1-based), the textbook interval.
        assert_eq!((many.median_ci95_low, many.median_ci95_high), (40.0, 61.0));
        assert!(many.relative_ci95_half_width() < few.relative_ci95_half_width());
    }

    #[test]
    fn spread_quantiles() {
        let spread = Spread::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(
            (
                spread.min,
                spread.p25,
                spread.median,
                spread.p75,
                spread.max
            ),
            (1.0, 2.0, 3.0, 4.0, 5.0)
        );
        assert_eq!(Spread::of(&[2.0, 4.0]).unwrap().median, 3.0);
        assert_eq!(Spread::of(&[f64::NAN]), None);
        assert_eq!(Spread::of(&[]), None);
    }
}
