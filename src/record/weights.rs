//! What a sample weighs: the probability of sampling an allocation, its Horvitz–Thompson
//! weights (docs/architecture.md, "Sampling"), and the exponential gaps between sample points.

use crate::sys::thread_state::Hot;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Fixed-point scale of the stored Horvitz–Thompson weights.
pub(crate) const WEIGHT_ONE: u64 = 1 << 16;
/// A gap that never runs out (sampling off).
pub(crate) const NEVER: i64 = i64::MAX / 2;

/// What the cold path decided about one allocation.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Decision {
    /// Not sampled: allocate from the inner allocator and go.
    Skip,
    /// Sampled: record it with these weights.
    Sample(SampleInfo),
}

/// A sampled allocation's Horvitz–Thompson weights and attribution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SampleInfo {
    /// 1/p, in units of [`WEIGHT_ONE`].
    pub w_objects: u64,
    /// size/p, in units of [`WEIGHT_ONE`].
    pub w_bytes: u64,
    /// Recorded with probability 1 (exact mode or a scope): no page alignment is used.
    pub exact: bool,
    /// The exact-recording scope, 0 if none.
    pub tag: u32,
    /// Index of the allocating thread.
    pub thread: u32,
}

pub(crate) fn exact_sample(size: i64, tag: u32, thread: u32) -> SampleInfo {
    SampleInfo {
        w_objects: WEIGHT_ONE,
        w_bytes: (size as u64).saturating_mul(WEIGHT_ONE),
        exact: true,
        tag,
        thread,
    }
}

/// [`weights`], remembered for the thread's last sampled (size, interval): programs sample
/// the same sizes over and over, and `expm1` and two divisions are ~10 % of a sample.
pub(crate) fn memo_weights(h: &Hot, size: u64, t: u64, thread: u32) -> SampleInfo {
    let (msize, mt, w_objects, w_bytes) = h.last_weights.get();
    if msize == size && mt == t {
        return SampleInfo {
            w_objects,
            w_bytes,
            exact: false,
            tag: 0,
            thread,
        };
    }
    let info = weights(size, t, thread);
    h.last_weights.set((size, t, info.w_objects, info.w_bytes));
    info
}

/// Horvitz–Thompson weights of an allocation of `size` bytes sampled at mean interval `t`.
pub(crate) fn weights(size: u64, t: u64, thread: u32) -> SampleInfo {
    let p = sample_probability(size, t);
    let one = WEIGHT_ONE as f64;
    SampleInfo {
        w_objects: (one / p).min(u64::MAX as f64 / 2.0) as u64,
        w_bytes: (size as f64 * one / p).min(u64::MAX as f64 / 2.0) as u64,
        exact: false,
        tag: 0,
        thread,
    }
}

/// Probability that an allocation of `size` bytes is sampled at mean interval `t`: 1 − e^(−s/T).
pub fn sample_probability(size: u64, t: u64) -> f64 {
    if t <= 1 {
        return 1.0;
    }
    // -expm1 keeps precision for s ≪ T, where 1 - exp(-x) would cancel. (The `libm` crate's,
    // not libm.so's: see Cargo.toml.)
    -libm::expm1(-(size as f64) / t as f64)
}

/// Draws the next gap from Exp(mean = t) by inverse CDF; `u` is uniform in (0, 1].
pub(crate) fn draw_gap(h: &Hot, t: u64) -> i64 {
    let mut rng = h.rng.take().unwrap_or_else(|| SmallRng::seed_from_u64(0));
    let gap = exponential_gap(rng.next_u64(), t);
    h.rng.set(Some(rng));
    gap
}

/// Maps 64 random bits to an exponential gap of mean `t` bytes (inverse CDF, `-t ln u`).
pub(crate) fn exponential_gap(bits: u64, t: u64) -> i64 {
    let u = ((bits >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let gap = -(t as f64) * libm::log(u);
    if gap >= NEVER as f64 {
        NEVER
    } else {
        gap as i64
    }
}
