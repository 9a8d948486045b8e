//! Per-thread sampling state: the byte countdown, exponential gaps, the reentrancy guard.
//!
//! Every thread walks a Poisson process over the bytes it allocates (DESIGN.md section 4). The
//! fast path only subtracts the allocation size from a thread-local countdown. The countdown is
//! armed to the nearer of two events: the next sample point, or the point where the thread's
//! batched totals must be flushed. Only when it goes negative does [`decide`] run.
//!
//! The countdowns are packed words: bytes above [`COUNT_BITS`], calls below. One subtraction of
//! `size << COUNT_BITS | 1` counts both the bytes and the call, so the fast path does one
//! thread-local read-modify-write where it would otherwise do two (measured: ~0.3 ns a pair).
//! The low field starts at its maximum and cannot borrow before the cold path runs: every call
//! is at least a byte, and no countdown is armed to more than [`TOTALS_BATCH_BYTES`] bytes,
//! which is far below 2^[`COUNT_BITS`] calls. Sizes of [`HUGE`] (2^43) or more, whose packed
//! value would overflow, go to the cold path uncounted and are counted there by their real size.
//!
//! Bytes allocated while the reentrancy guard is held (the profiler's own work) or inside an
//! exact-recording scope (a `LeakCheck`) do not advance the Poisson process, so they can never
//! bias which user allocation is sampled next.

use crate::totals;
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The default mean sampling interval: 512 KiB, as in tcmalloc, Go and jemalloc.
pub const DEFAULT_SAMPLE_INTERVAL: u64 = 512 * 1024;
/// The largest accepted interval; larger requests are clamped (weights stay in fixed point).
pub(crate) const MAX_SAMPLE_INTERVAL: u64 = 1 << 40;
/// At most this many allocated (or freed) bytes of a running thread are missing from the
/// process-wide totals at any moment.
///
/// As large as the default sampling interval: a thread's countdown is armed to the nearer of
/// its next sample point and the end of its batch, so at the default interval a thread makes
/// 1.6 cold visits per sample (with half this batch, 2.5; the extra visits cost ~0.3 ns a pair
/// at 4 KiB, BENCHMARKS.md).
pub const TOTALS_BATCH_BYTES: u64 = 512 * 1024;
const BATCH: i64 = TOTALS_BATCH_BYTES as i64;
/// Width of the call-count field at the bottom of a packed countdown word.
const COUNT_BITS: u32 = 20;
/// The call-count field of a freshly armed countdown: all ones, so it never borrows first.
const COUNT_FIELD: i64 = (1 << COUNT_BITS) - 1;
/// Allocation sizes from here up skip the packed arithmetic (their packed value would
/// overflow) and are counted on the cold path: exactly the sizes whose multiply by
/// [`Hot::unit`] overflows (a valid `Layout`'s size is at most `isize::MAX`).
const HUGE: usize = 1 << (63 - COUNT_BITS);
const _: () = assert!(BATCH < COUNT_FIELD, "a batch must fit the call-count field");
/// Fixed-point scale of the stored Horvitz–Thompson weights.
pub(crate) const WEIGHT_ONE: u64 = 1 << 16;
const NEVER: i64 = i64::MAX / 2;

static INTERVAL: AtomicU64 = AtomicU64::new(DEFAULT_SAMPLE_INTERVAL);
static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
/// Bumped by every configuration change; threads compare it on their cold path.
static CONFIG_GEN: AtomicU64 = AtomicU64::new(1);
static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);
/// Bytes allocated while the reentrancy guard was held: the profiler's own transient work.
static GUARDED_BYTES: AtomicU64 = AtomicU64::new(0);
static GUARDED_OBJECTS: AtomicU64 = AtomicU64::new(0);
static GUARDED_FREED_BYTES: AtomicU64 = AtomicU64::new(0);
static GUARDED_FREED_OBJECTS: AtomicU64 = AtomicU64::new(0);

/// Hot per-thread state. `const`-initialised and without `Drop`, so it is reachable from the
/// very first allocation before `main` until the last one during thread teardown.
struct Hot {
    /// Packed: bytes the thread may still allocate before the cold path must run, and calls.
    countdown: Cell<i64>,
    /// Always `1 << COUNT_BITS`. Read from here rather than written as a constant so that the
    /// compiler keeps the multiply and its overflow flag (`imul`, `jo`) for the size test: a
    /// constant power of two is turned into a range test of the size and a shift, which take
    /// a copy of the size, and three more instructions on every call.
    unit: Cell<i64>,
    /// What `countdown` was set to at the last arm point.
    armed: Cell<i64>,
    /// Allocated bytes consumed at earlier arm points, not yet flushed.
    alloc_pending: Cell<u64>,
    /// Allocations counted at earlier arm points, not yet flushed.
    alloc_pending_count: Cell<u64>,
    /// Packed: bytes the thread may still free before its free totals must be flushed, and calls.
    free_budget: Cell<i64>,
    /// `free_budget` at the last arm point.
    free_armed: Cell<i64>,
    /// Freed bytes charged at earlier arm points, not yet flushed.
    free_pending: Cell<u64>,
    free_pending_count: Cell<u64>,
    /// Bytes from the arm point to the next sample point.
    gap: Cell<i64>,
    /// The interval that was in force when `gap` was drawn (1 = exact, 0 = off).
    gap_interval: Cell<u64>,
    /// Last configuration generation seen; 0 = thread not initialised yet.
    config_gen: Cell<u64>,
    /// Reentrancy depth: non-zero while the profiler itself runs on this thread.
    guard: Cell<u32>,
    /// Tag of the active exact-recording scope (a `LeakCheck`), 0 when none.
    scope: Cell<u32>,
    /// Set once the thread-exit hook ran: flush on every call from then on.
    exiting: Cell<bool>,
    /// Set between the `pthread_atfork` prepare handler and the parent or child handler: this
    /// thread holds every table lock, so nothing it does may wait for one.
    forking: Cell<bool>,
    thread: Cell<u32>,
    rng: Cell<Option<SmallRng>>,
    /// The last sampled (size, interval) and its weights (w_count, w_bytes); size 0 = none.
    last_weights: Cell<(u64, u64, u64, u64)>,
    /// The program's countdown and its arm point (packed) and configuration generation when the
    /// outermost guard was entered, given back when it is dropped (see [`enter_guard`]).
    saved_countdown: Cell<(i64, i64, u64)>,
}

thread_local! {
    static HOT: Hot = const {
        Hot {
            countdown: Cell::new(0),
            unit: Cell::new(1 << COUNT_BITS),
            armed: Cell::new(0),
            alloc_pending: Cell::new(0),
            alloc_pending_count: Cell::new(0),
            free_budget: Cell::new(0),
            free_armed: Cell::new(0),
            free_pending: Cell::new(0),
            free_pending_count: Cell::new(0),
            gap: Cell::new(0),
            gap_interval: Cell::new(0),
            config_gen: Cell::new(0),
            guard: Cell::new(0),
            scope: Cell::new(0),
            exiting: Cell::new(false),
            forking: Cell::new(false),
            thread: Cell::new(0),
            rng: Cell::new(None),
            last_weights: Cell::new((0, 0, 0, 0)),
            saved_countdown: Cell::new((0, 0, 0)),
        }
    };
    /// Flushes the thread's batched totals when the thread exits.
    static EXIT_HOOK: ExitHook = const { ExitHook };
}

struct ExitHook;

impl Drop for ExitHook {
    fn drop(&mut self) {
        with_hot(|h| {
            h.exiting.set(true);
            rebase(h);
            // Publishes everything: an exiting thread's batch is zero.
            arm(h);
        });
        // The slot is given up first (no spare kept, no repeat cached from here on), then its
        // spare and pending sums are handed back.
        crate::thread_slot::release(|slot| {
            crate::pages::close_slot(slot);
            crate::stacks::close_slot(slot);
            // Last: the thread published its final batch above, into the slot.
            crate::totals::fold_slot(slot);
        });
        crate::threads::mark_exited(current_thread());
    }
}

#[inline(always)]
fn with_hot<R>(f: impl FnOnce(&Hot) -> R) -> R {
    HOT.with(f)
}

/// What one call of `size` bytes takes off a packed countdown (see the module docs).
#[cfg(test)]
fn packed(size: usize) -> i64 {
    ((size as i64) << COUNT_BITS) | 1
}

/// What one call of `size` bytes takes off a packed countdown; `None` from [`HUGE`] up.
#[inline(always)]
fn packed_of(h: &Hot, size: usize) -> Option<i64> {
    (size as i64)
        .checked_mul(h.unit.get())
        .map(|bytes| bytes | 1)
}

/// A packed countdown armed for `bytes` bytes.
fn armed_word(bytes: i64) -> i64 {
    (bytes << COUNT_BITS) | COUNT_FIELD
}

/// Bytes and calls taken off a packed countdown between `armed` and `now`.
fn unpack(armed: i64, now: i64) -> (u64, u64) {
    // Unsigned: one call just under `HUGE` takes almost 2^63 off, which with the calls before
    // it can pass `i64::MAX`.
    let used = if now > armed {
        0
    } else {
        armed.wrapping_sub(now) as u64
    };
    (used >> COUNT_BITS, used & COUNT_FIELD as u64)
}

/// Fast path of every allocation: returns `true` when nothing else has to run.
#[inline(always)]
pub(crate) fn alloc_fast(size: usize) -> bool {
    // The overflow test is a branch that is never taken, off the countdown's dependency chain
    // (a clamp, or a choice between two formulas, put three more instructions on it).
    with_hot(|h| {
        let Some(packed) = packed_of(h, size) else {
            return false;
        };
        let left = h.countdown.get().wrapping_sub(packed);
        h.countdown.set(left);
        left >= 0
    })
}

/// Fast path of every free: batches the freed bytes into the thread's totals.
#[inline(always)]
pub(crate) fn free_fast(size: usize) {
    if !free_counted(size) {
        flush_free_batch(size);
    }
}

/// [`free_fast`] without its cold call: counts the free; `false` when the caller must call
/// [`flush_free_batch`] (so that the caller's own fast path can end in a tail call).
#[inline(always)]
pub(crate) fn free_counted(size: usize) -> bool {
    with_hot(|h| {
        let Some(packed) = packed_of(h, size) else {
            return false;
        };
        let left = h.free_budget.get().wrapping_sub(packed);
        h.free_budget.set(left);
        left >= 0
    })
}

/// The cold half of a free counted by [`free_counted`].
#[cold]
#[inline(never)]
pub(crate) fn flush_free_batch(size: usize) {
    with_hot(|h| free_cold(h, size))
}

#[cold]
#[inline(never)]
fn free_cold(h: &Hot, size: usize) {
    if size >= HUGE {
        // The fast path left it uncounted: count it directly.
        add_freed(h, size as u64, 1);
    }
    // A full arm point, not only the free side's flush: the allocation side is published and
    // re-armed too. A program that frees what it allocates runs both budgets down together,
    // the free side a block ahead (a block is freed after it is allocated); re-arming only the
    // free side here would leave the allocation side to run out one pair later, two cold
    // visits per batch where one does.
    rebase(h);
    arm(h);
}

fn flush_frees(h: &Hot) {
    publish(h, false);
}

/// Publishes the thread's pending frees — and its pending allocations too if `allocs` — in one
/// batch, and re-arms the free side with a fresh budget.
fn publish(h: &Hot, allocs: bool) {
    charge_frees(h);
    let (alloc_bytes, alloc_calls) = if allocs {
        (h.alloc_pending.replace(0), h.alloc_pending_count.replace(0))
    } else {
        (0, 0)
    };
    totals::publish(
        [
            alloc_bytes,
            alloc_calls,
            h.free_pending.replace(0),
            h.free_pending_count.replace(0),
        ],
        live_hold(h),
    );
    let budget = batch_budget(h);
    h.free_armed.set(armed_word(budget));
    h.free_budget.set(armed_word(budget));
}

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
    pub w_count: u64,
    /// size/p, in units of [`WEIGHT_ONE`].
    pub w_bytes: u64,
    /// Recorded with probability 1 (exact mode or a scope): no page alignment is used.
    pub exact: bool,
    /// The exact-recording scope, 0 if none.
    pub tag: u32,
    /// Index of the allocating thread.
    pub thread: u32,
}

/// Cold path of an allocation whose size drove the countdown below zero (already subtracted).
///
/// A request larger than a batch ([`counted_once_granted`]) is left out of the thread's totals:
/// the caller counts it with [`granted`] once the inner allocator has granted it, so a refused
/// one (a null, e.g. a fallible reservation of an absurd size) is never counted, nor raises
/// the peak. Every such request comes here (no countdown is armed to more). A smaller request
/// is counted when made, and stays counted if refused (the process is out of memory then, and
/// checking every result on the fast path would cost every allocation).
#[cold]
#[inline(never)]
pub(crate) fn decide(size: usize) -> Decision {
    with_hot(|h| {
        // The fast path does not count a huge allocation; a large one was charged with the
        // bytes before it and is taken back out, until `granted`.
        let huge = size >= HUGE;
        let later = counted_once_granted(size);
        let size = size.max(1) as i64;
        let since_arm = charge(h);
        if later && !huge {
            add_allocated(h, (size as u64).wrapping_neg(), 1u64.wrapping_neg());
        }
        let before = if huge {
            since_arm
        } else {
            since_arm.saturating_sub(size).max(0)
        };
        if h.guard.get() > 0 {
            arm(h);
            return Decision::Skip;
        }
        if h.config_gen.get() != CONFIG_GEN.load(Ordering::Relaxed) {
            // The bytes before this allocation belong to the old configuration's gap; the gap
            // is redrawn anyway, and the draw is memoryless.
            refresh(h);
        }
        let mut decision = Decision::Skip;
        let scope = h.scope.get();
        let thread = h.thread.get();
        if scope != 0 {
            decision = Decision::Sample(exact_sample(size, scope, thread));
        } else {
            let interval = h.gap_interval.get();
            let gap = h.gap.get().saturating_sub(before);
            if interval == 1 {
                decision = Decision::Sample(exact_sample(size, 0, thread));
                h.gap.set(0);
            } else if interval == 0 {
                h.gap.set(NEVER);
            } else if gap < size {
                decision = Decision::Sample(memo_weights(h, size as u64, interval, thread));
                h.gap.set(draw_gap(h, interval));
            } else {
                h.gap.set(gap - size);
            }
        }
        arm(h);
        decision
    })
}

fn exact_sample(size: i64, tag: u32, thread: u32) -> SampleInfo {
    SampleInfo {
        w_count: WEIGHT_ONE,
        w_bytes: (size as u64).saturating_mul(WEIGHT_ONE),
        exact: true,
        tag,
        thread,
    }
}

/// [`weights`], remembered for the thread's last sampled (size, interval): programs sample
/// the same sizes over and over, and `expm1` and two divisions are ~10 % of a sample.
fn memo_weights(h: &Hot, size: u64, t: u64, thread: u32) -> SampleInfo {
    let (msize, mt, w_count, w_bytes) = h.last_weights.get();
    if msize == size && mt == t {
        return SampleInfo {
            w_count,
            w_bytes,
            exact: false,
            tag: 0,
            thread,
        };
    }
    let info = weights(size, t, thread);
    h.last_weights.set((size, t, info.w_count, info.w_bytes));
    info
}

/// Horvitz–Thompson weights of an allocation of `size` bytes sampled at mean interval `t`.
pub(crate) fn weights(size: u64, t: u64, thread: u32) -> SampleInfo {
    let p = sample_probability(size, t);
    let one = WEIGHT_ONE as f64;
    SampleInfo {
        w_count: (one / p).min(u64::MAX as f64 / 2.0) as u64,
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
    // -expm1 keeps precision for s ≪ T, where 1 - exp(-x) would cancel.
    -(-(size as f64) / t as f64).exp_m1()
}

/// Draws the next gap from Exp(mean = t) by inverse CDF; `u` is uniform in (0, 1].
fn draw_gap(h: &Hot, t: u64) -> i64 {
    let mut rng = h.rng.take().unwrap_or_else(|| SmallRng::seed_from_u64(0));
    let gap = exponential_gap(rng.next_u64(), t);
    h.rng.set(Some(rng));
    gap
}

/// Maps 64 random bits to an exponential gap of mean `t` bytes (inverse CDF, `-t ln u`).
pub(crate) fn exponential_gap(bits: u64, t: u64) -> i64 {
    let u = ((bits >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let gap = -(t as f64) * u.ln();
    if gap >= NEVER as f64 {
        NEVER
    } else {
        gap as i64
    }
}

/// How far a thread's published live bytes may run from the shared live counter (see
/// `totals::publish`): the batch, or nothing in exact mode and at thread exit.
fn live_hold(h: &Hot) -> u64 {
    batch_budget(h) as u64
}

fn batch_budget(h: &Hot) -> i64 {
    // A leak-check scope keeps its own exact counters: its thread batches the process totals
    // like any other (flushing shared counters on every call would bounce their cache lines
    // between the threads of parallel tests).
    let exact = h.gap_interval.get() == 1;
    if h.exiting.get() || exact { 0 } else { BATCH }
}

/// Moves the bytes allocated since the last arm point into the pending totals and makes
/// "now" the arm point; returns those bytes. Charging twice never counts a byte twice.
fn charge(h: &Hot) -> i64 {
    let (bytes, calls) = unpack(h.armed.get(), h.countdown.get());
    add_allocated(h, bytes, calls);
    charge_frees(h);
    h.armed.set(0);
    h.countdown.set(0);
    bytes as i64
}

/// Adds allocations to the pending totals, and to the profiler's own when the guard is held.
fn add_allocated(h: &Hot, bytes: u64, calls: u64) {
    h.alloc_pending
        .set(h.alloc_pending.get().wrapping_add(bytes));
    h.alloc_pending_count
        .set(h.alloc_pending_count.get().wrapping_add(calls));
    // Only when there is something to add: an unconditional shared add per guard exit would
    // bounce these lines between cores on every sample.
    if h.guard.get() > 0 && calls > 0 {
        GUARDED_BYTES.fetch_add(bytes, Ordering::Relaxed);
        GUARDED_OBJECTS.fetch_add(calls, Ordering::Relaxed);
    }
}

/// The free-side half of [`charge`]: frees since the last arm point become pending, and count
/// as the profiler's own when the guard is held.
fn charge_frees(h: &Hot) {
    let (bytes, calls) = unpack(h.free_armed.get(), h.free_budget.get());
    add_freed(h, bytes, calls);
    h.free_armed.set(h.free_budget.get());
}

fn add_freed(h: &Hot, bytes: u64, calls: u64) {
    h.free_pending.set(h.free_pending.get().wrapping_add(bytes));
    h.free_pending_count
        .set(h.free_pending_count.get().wrapping_add(calls));
    if h.guard.get() > 0 && calls > 0 {
        GUARDED_FREED_BYTES.fetch_add(bytes, Ordering::Relaxed);
        GUARDED_FREED_OBJECTS.fetch_add(calls, Ordering::Relaxed);
    }
}

fn flush_allocs(h: &Hot) {
    totals::publish(
        [
            h.alloc_pending.replace(0),
            h.alloc_pending_count.replace(0),
            0,
            0,
        ],
        live_hold(h),
    );
}

/// Sets the countdowns from the current gap and mode; the arm point is "now".
fn arm(h: &Hot) {
    charge(h);
    let budget = batch_budget(h);
    let limit = if h.guard.get() > 0 {
        budget
    } else if h.scope.get() != 0 {
        0
    } else {
        h.gap.get().min(budget).max(0)
    };
    h.armed.set(armed_word(limit));
    h.countdown.set(armed_word(limit));
    // Every arm point publishes both sides (plain stores into the thread's slot) and starts the
    // free budget afresh: a program that frees about as much as it allocates then never runs
    // its free budget out, and pays one cold visit per batch, not two.
    publish(h, true);
}

/// Makes "now" the arm point, charging the bytes since the last one to the current mode: they
/// advance the sampling process only outside the guard and outside exact scopes.
fn rebase(h: &Hot) {
    if h.guard.get() > 0 {
        settle_saved(h);
    }
    let since_arm = charge(h);
    if h.guard.get() == 0 && h.scope.get() == 0 {
        h.gap.set(h.gap.get().saturating_sub(since_arm).max(0));
    }
}

/// Under the guard, charges the program's bytes held in the saved countdown (those since its
/// arm point) as the program's, and advances its sampling process by them, as [`rebase`] would
/// outside the guard; the saved arm point becomes "now". So a flush or a mode change inside the
/// guard (`snapshot()` flushes under it) misses none of the program's allocations.
fn settle_saved(h: &Hot) {
    let (countdown, armed, generation) = h.saved_countdown.get();
    let (bytes, calls) = unpack(armed, countdown);
    if calls == 0 {
        return;
    }
    h.alloc_pending
        .set(h.alloc_pending.get().wrapping_add(bytes));
    h.alloc_pending_count
        .set(h.alloc_pending_count.get().wrapping_add(calls));
    if h.scope.get() == 0 {
        h.gap.set(h.gap.get().saturating_sub(bytes as i64).max(0));
    }
    h.saved_countdown.set((countdown, countdown, generation));
}

/// Brings the thread up to date with the global configuration (and initialises it first time).
fn refresh(h: &Hot) {
    if h.config_gen.get() == 0 {
        // Registering allocates (the registry may grow, parking_lot sets up its parking data
        // under contention, the destructor list may grow). The real guard, not a bare depth
        // bump, so that the allocations which pass the fast path inside it are charged as the
        // profiler's own when it is dropped, not as the program's at the next arm point.
        let _guard = enter_guard();
        let index = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        h.thread.set(index);
        crate::fork::install();
        crate::threads::register(index);
        if EXIT_HOOK.try_with(|_| {}).is_ok() {
            // Only a thread whose exit hook will run may hold a slot: the hook releases it.
            crate::thread_slot::claim();
        }
        #[cfg(test)]
        if let Some(registration_allocates) = tests::ON_REGISTER.with(|c| c.get()) {
            registration_allocates();
        }
    }
    h.config_gen.set(CONFIG_GEN.load(Ordering::Relaxed));
    let interval = INTERVAL.load(Ordering::Relaxed);
    h.gap_interval.set(interval);
    reseed(h, SEED.load(Ordering::Relaxed));
    let gap = match interval {
        0 => NEVER,
        1 => 0,
        t => draw_gap(h, t),
    };
    h.gap.set(gap);
}

fn reseed(h: &Hot, seed: u64) {
    let stream = seed ^ (h.thread.get() as u64).wrapping_mul(0xa076_1d64_78bd_642f);
    h.rng.set(Some(SmallRng::seed_from_u64(stream)));
}

/// Sets the mean sampling interval in bytes for the whole process.
///
/// `1` records every allocation (exact mode); `0` turns sampling off. The calling thread uses
/// the new interval at once; other threads pick it up within [`TOTALS_BATCH_BYTES`] of their
/// own allocation, as do threads started later. Values above 2^40 are clamped.
///
/// ```
/// heapsampler::set_sample_interval(64 * 1024);
/// assert_eq!(heapsampler::sample_interval(), 64 * 1024);
/// heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
/// ```
pub fn set_sample_interval(bytes: u64) {
    crate::config::note_explicit_interval();
    store_interval(bytes);
}

pub(crate) fn store_interval(bytes: u64) {
    INTERVAL.store(bytes.min(MAX_SAMPLE_INTERVAL), Ordering::Relaxed);
    bump_config();
}

/// The mean sampling interval in force, in bytes (1 = exact, 0 = off).
///
/// ```
/// assert!(heapsampler::sample_interval() > 0);
/// ```
pub fn sample_interval() -> u64 {
    INTERVAL.load(Ordering::Relaxed)
}

/// Seeds the sampling RNGs so that a run can be reproduced.
///
/// The calling thread restarts its random stream from `seed` at once; every other thread
/// re-seeds from `seed` and its own thread index at its next cold path.
///
/// ```
/// heapsampler::set_seed(42);
/// ```
pub fn set_seed(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    bump_config();
}

fn bump_config() {
    CONFIG_GEN.fetch_add(1, Ordering::Relaxed);
    with_hot(|h| {
        rebase(h);
        refresh(h);
        arm(h);
    });
}

/// Whether [`decide`] leaves a request of `size` bytes for [`granted`] to count.
#[inline]
fn counted_once_granted(size: usize) -> bool {
    size as u64 > TOTALS_BATCH_BYTES
}

/// After the inner allocator granted a request of `size` bytes that went through [`decide`]:
/// counts it if `decide` left it out ([`counted_once_granted`]). Call at the guard depth
/// `decide` ran at. (A request counted on the fast path is never left out: no countdown is
/// armed to more than a batch.)
#[inline]
pub(crate) fn granted(size: usize) {
    if counted_once_granted(size) {
        count_granted(size);
    }
}

#[cold]
fn count_granted(size: usize) {
    with_hot(|h| {
        add_allocated(h, size as u64, 1);
        // A request can be larger than a batch by itself: the bound holds from here.
        if h.alloc_pending.get() >= batch_budget(h) as u64 {
            flush_allocs(h);
        }
    });
}

/// Flushes the calling thread's batched totals into the process-wide counters.
pub(crate) fn flush_current_thread() {
    with_hot(|h| {
        rebase(h);
        // `arm` publishes both sides.
        arm(h);
    });
}

/// Index of the calling thread (0 before its first cold path).
pub(crate) fn current_thread() -> u32 {
    with_hot(|h| h.thread.get())
}

/// Bytes allocated while the reentrancy guard was held.
pub(crate) fn guarded_bytes() -> u64 {
    GUARDED_BYTES.load(Ordering::Relaxed)
}

/// Allocations made while the reentrancy guard was held.
pub(crate) fn guarded_objects() -> u64 {
    GUARDED_OBJECTS.load(Ordering::Relaxed)
}

/// Bytes and blocks freed while the reentrancy guard was held.
pub(crate) fn guarded_frees() -> (u64, u64) {
    (
        GUARDED_FREED_BYTES.load(Ordering::Relaxed),
        GUARDED_FREED_OBJECTS.load(Ordering::Relaxed),
    )
}

/// While alive, every allocation of this thread passes straight to the inner allocator,
/// unsampled, and does not advance the sampling process.
pub(crate) struct Guard {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Enters the reentrancy guard (nestable).
pub(crate) fn enter_guard() -> Guard {
    with_hot(|h| {
        if h.guard.get() == 0 {
            // The program's countdown is put aside and a zero one put in its place, so the
            // guard's first allocation (rare: a table growing, parking_lot under contention)
            // takes the cold path, which counts it as the profiler's and arms for the guard.
            // Nothing is charged: the program's bytes since its arm point stay in the saved
            // pair, and a guard that allocates nothing gives it back untouched (two cold
            // `charge`s a guard fewer; a sample and its free each take a guard).
            h.saved_countdown
                .set((h.countdown.get(), h.armed.get(), h.config_gen.get()));
            h.countdown.set(0);
            h.armed.set(0);
            // The frees so far are the program's; from here until the drop, the guard's.
            charge_frees(h);
        }
        h.guard.set(h.guard.get() + 1);
    });
    Guard {
        _not_send: core::marker::PhantomData,
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        with_hot(|h| {
            if h.guard.get() != 1 {
                h.guard.set(h.guard.get().saturating_sub(1));
                return;
            }
            let untouched = h.countdown.get() == 0
                && h.armed.get() == 0
                && h.free_budget.get() == h.free_armed.get();
            if !untouched {
                // What the guard's own allocations and frees used is the profiler's. Under the
                // guard, `rebase` also settles the program's bytes held in the saved countdown
                // (and moves its arm point): read the pair only after it, or those bytes would
                // be given back to the program's countdown and charged a second time.
                rebase(h);
            }
            let (countdown, armed, generation) = h.saved_countdown.get();
            h.guard.set(0);
            h.countdown.set(countdown);
            h.armed.set(armed);
            if untouched && generation == h.config_gen.get() {
                return;
            }
            if generation != h.config_gen.get() || batch_budget(h) == 0 {
                // A new configuration, or exact mode (which flushes on every call): arm afresh,
                // which charges the program's bytes since its own arm point.
                arm(h);
                return;
            }
            // The program's countdown is back with up to a batch still to spend: whatever the
            // guard left pending is published now, or the thread could hold more than a batch.
            if h.alloc_pending.get() > 0 {
                flush_allocs(h);
            }
            if h.free_pending.get() >= TOTALS_BATCH_BYTES {
                flush_frees(h);
            }
        });
    }
}

/// Enters the guard for the `fork()` window: from the prepare handler, which is about to take
/// every table lock, to the parent or child handler. Allocations in between (parking_lot may
/// allocate while unlocking a contended lock) go straight to the inner allocator.
pub(crate) fn enter_fork() {
    core::mem::forget(enter_guard());
    with_hot(|h| h.forking.set(true));
}

/// Leaves the window [`enter_fork`] opened (in the parent, or in the child, whose thread-local
/// state is a copy of the parent's).
pub(crate) fn leave_fork() {
    with_hot(|h| h.forking.set(false));
    drop(Guard {
        _not_send: core::marker::PhantomData,
    });
}

/// Whether this thread is inside the `fork()` window and holds every table lock.
pub(crate) fn forking() -> bool {
    with_hot(|h| h.forking.get())
}

/// Whether the calling thread is inside the profiler (the guard is held).
pub(crate) fn in_guard() -> bool {
    with_hot(|h| h.guard.get() > 0)
}

/// Starts recording every allocation of this thread exactly under `tag`; returns the previous
/// tag so scopes nest.
pub(crate) fn enter_scope(tag: u32) -> u32 {
    with_hot(|h| {
        if h.config_gen.get() == 0 {
            refresh(h);
        }
        rebase(h);
        let prev = h.scope.replace(tag);
        arm(h);
        prev
    })
}

/// Restores the scope tag that [`enter_scope`] returned.
pub(crate) fn leave_scope(prev: u32) {
    with_hot(|h| {
        rebase(h);
        h.scope.set(prev);
        arm(h);
    })
}

/// The calling thread's active scope tag, 0 if none.
pub(crate) fn current_scope() -> u32 {
    with_hot(|h| h.scope.get())
}

/// Re-seeds the calling thread in a forked child so parent and child sample differently.
pub(crate) fn reseed_after_fork() {
    with_hot(|h| {
        let pid = std::process::id() as u64;
        reseed(h, SEED.load(Ordering::Relaxed) ^ pid.rotate_left(32));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Stands in for allocations made while a thread registers (in unit tests the
        /// wrapper is not the global allocator, so nothing else would pass through here).
        pub(super) static ON_REGISTER: Cell<Option<fn()>> = const { Cell::new(None) };
    }

    /// What the wrapper does with the counts of one allocation the inner allocator grants:
    /// the fast path, and the cold path if told.
    fn wrapper_alloc(size: usize) {
        if !alloc_fast(size) {
            decide(size);
            granted(size);
        }
    }

    #[test]
    fn registration_traffic_is_the_profilers_own() {
        // Regression: registration ran under a bare depth bump, so the second and later of
        // its allocations (which pass the fast path) and its batched frees were charged to
        // the program at the next arm point (parking_lot's 1 KiB + 32 B table, seen in CI).
        std::thread::spawn(|| {
            ON_REGISTER.with(|c| {
                c.set(Some(|| {
                    wrapper_alloc(1024);
                    wrapper_alloc(32);
                    free_fast(512);
                }))
            });
            // As `totals()` before a thread's first allocation: arms the free side with a
            // batch, so the registration's free passes the fast path.
            flush_current_thread();
            let guarded_before = (guarded_bytes(), guarded_objects(), guarded_frees());
            wrapper_alloc(100);
            free_fast(100);
            // Counted: published into the thread's slot (it claimed one while registering,
            // so every publish after that went there), or still pending.
            let published = totals::own_published();
            let pending = with_hot(|h| {
                rebase(h);
                [
                    h.alloc_pending.get(),
                    h.alloc_pending_count.get(),
                    h.free_pending.get(),
                    h.free_pending_count.get(),
                ]
            });
            let pending: Vec<u64> = pending.iter().zip(published).map(|(p, q)| p + q).collect();
            let guarded = [
                guarded_bytes() - guarded_before.0,
                guarded_objects() - guarded_before.1,
                guarded_frees().0 - guarded_before.2.0,
                guarded_frees().1 - guarded_before.2.1,
            ];
            assert_eq!(guarded, [1056, 2, 512, 1], "the profiler's own");
            let program: Vec<u64> = pending.iter().zip(guarded).map(|(p, g)| p - g).collect();
            assert_eq!(program, [100, 1, 100, 1], "the program's");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_flush_inside_the_guard_takes_the_programs_unflushed_allocations() {
        // Regression: the guard puts the program's countdown aside uncharged, and a flush under
        // it (`snapshot()` flushes under the guard) left those allocations out of the totals.
        std::thread::spawn(|| {
            wrapper_alloc(1); // initialises the thread: draws its first gap
            flush_current_thread();
            let gap_before = with_hot(|h| h.gap.get());
            for _ in 0..3 {
                wrapper_alloc(100);
            }
            let guard = enter_guard();
            let flushed_before = totals::read().allocated_objects;
            flush_current_thread();
            let flushed = totals::read().allocated_objects - flushed_before;
            drop(guard);
            let unflushed = with_hot(|h| {
                rebase(h);
                h.alloc_pending_count.get()
            });
            // Other unit tests may flush at the same time: at least our three went in.
            assert!(flushed >= 3, "flushed {flushed} allocations");
            assert_eq!(unflushed, 0, "none left behind, none counted twice");
            let gap_after = with_hot(|h| h.gap.get());
            assert!(
                gap_before == NEVER || gap_after == (gap_before - 300).max(0),
                "the sampling process advanced by the program's bytes: {gap_before} -> {gap_after}"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn probability_matches_formula() {
        assert_eq!(sample_probability(10, 1), 1.0);
        let p = sample_probability(512 * 1024, 512 * 1024);
        assert!((p - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        let tiny = sample_probability(1, 1 << 20);
        assert!((tiny - 1.0 / (1u64 << 20) as f64).abs() / tiny < 1e-6);
    }

    #[test]
    fn packed_countdowns_count_bytes_and_calls_apart() {
        let armed = armed_word(BATCH);
        let mut now = armed;
        let mut bytes = 0;
        let mut calls = 0;
        // Any mix of sizes until the countdown goes negative, as the fast path would.
        for size in [1usize, 7, 4096, 1, 100_000, 3, 65_536, 200_000] {
            now = now.wrapping_sub(packed(size));
            bytes += size as u64;
            calls += 1;
            assert_eq!(unpack(armed, now), (bytes, calls));
            assert_eq!(
                now >= 0,
                bytes <= BATCH as u64,
                "negative exactly past the batch"
            );
        }
        // One call of a byte each: the call field never borrows before the countdown is spent.
        let mut now = armed;
        for n in 1..=BATCH as u64 {
            now -= packed(1);
            assert!(now >= 0);
            assert_eq!(unpack(armed, now), (n, n));
        }
        assert!(now - packed(1) < 0);
        // One call just under `HUGE` takes almost 2^63 off: still counted exactly.
        let now = armed - 5 * packed(1);
        let now = now.wrapping_sub(packed(HUGE - 1));
        assert!(now < 0);
        assert_eq!(unpack(armed, now), (5 + HUGE as u64 - 1, 6));
        // A huge size never reaches the packed arithmetic.
        assert!(!alloc_fast(HUGE) && !free_counted(HUGE));
    }

    #[test]
    fn a_forked_child_gives_back_the_other_threads_slots() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            wrapper_alloc(1); // registers the thread, which claims a slot
            ready_tx.send(crate::thread_slot::current()).unwrap();
            let _ = stop_rx.recv();
        });
        let theirs = ready_rx
            .recv()
            .unwrap()
            .expect("the other thread holds a slot");
        wrapper_alloc(1); // registers this thread (and installs the fork handlers)
        // SAFETY: the child reads one atomic and leaves with `_exit`, touching nothing else.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let still_held = crate::thread_slot::is_claimed(theirs);
            // SAFETY: ends the child at once, without running the parent's exit handlers.
            unsafe { libc::_exit(i32::from(still_held)) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is a valid out-pointer.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        stop_tx.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(waited, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child still counted the parent's other thread as holding slot {theirs}"
        );
    }

    #[test]
    fn a_guard_publishes_what_it_left_pending() {
        // The guard gives the program its countdown back, with up to a batch still to spend:
        // the guard's own allocations left pending would let the thread hold more than that.
        std::thread::spawn(|| {
            wrapper_alloc(1); // initialises the thread
            flush_current_thread();
            {
                let _guard = enter_guard();
                wrapper_alloc(100); // the guard's first allocation arms its countdown
                wrapper_alloc(1000); // counted on the fast path, charged at the drop
            }
            let pending = with_hot(|h| (h.alloc_pending.get(), h.alloc_pending_count.get()));
            assert_eq!(pending, (0, 0), "published when the guard was dropped");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn huge_sizes_are_counted_by_their_real_size() {
        std::thread::spawn(|| {
            wrapper_alloc(1); // initialises the thread
            for size in [HUGE, (1usize << 50) + 12_345, usize::MAX >> 2] {
                flush_current_thread();
                let before = totals::read();
                wrapper_alloc(size);
                free_fast(size);
                flush_current_thread();
                let after = totals::read();
                // Other unit tests flush small amounts meanwhile; none allocates 8 TiB.
                let allocated = after.allocated_bytes.wrapping_sub(before.allocated_bytes);
                let freed = after.freed_bytes.wrapping_sub(before.freed_bytes);
                for counted in [allocated, freed] {
                    assert!(
                        counted >= size as u64 && counted - (size as u64) < 1 << 32,
                        "{size} bytes counted as {counted}"
                    );
                }
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn remembered_weights_are_the_computed_ones() {
        std::thread::spawn(|| {
            with_hot(|h| {
                for (size, t) in [
                    (4096, 512 * 1024),
                    (4096, 512 * 1024),
                    (100, 4096),
                    (4096, 4096),
                ] {
                    let m = memo_weights(h, size, t, 7);
                    let w = weights(size, t, 7);
                    assert_eq!((m.w_count, m.w_bytes, m.thread), (w.w_count, w.w_bytes, 7));
                    assert!(!m.exact && m.tag == 0);
                }
            })
        })
        .join()
        .unwrap();
    }

    #[test]
    fn exponential_gaps_have_the_right_mean() {
        let mut rng = SmallRng::seed_from_u64(7);
        let n = 200_000;
        let t = 4096;
        let sum: f64 = (0..n)
            .map(|_| exponential_gap(rng.next_u64(), t) as f64)
            .sum();
        let mean = sum / n as f64;
        // The mean of n Exp(t) draws has standard deviation t/sqrt(n) ≈ 0.22 % of t.
        assert!((mean / t as f64 - 1.0).abs() < 0.01, "mean gap {mean}");
    }
}
