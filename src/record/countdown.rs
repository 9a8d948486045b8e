//! Per-thread sampling state: the byte countdown, exponential gaps, the reentrancy guard.
//!
//! Every thread walks a Poisson process over the bytes it allocates (docs/architecture.md, "Sampling"). The
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

use crate::record::totals;
pub(crate) use crate::record::weights::{Decision, SampleInfo, WEIGHT_ONE};
use crate::record::weights::{NEVER, draw_gap, exact_sample, memo_weights};
use crate::sys::thread_state::{
    COUNT_FIELD, GUARDED_ALLOC_BYTES, GUARDED_ALLOC_OBJECTS, HUGE, Hot, add_free, armed_word,
    charge_frees, packed_of, unpack, with_hot,
};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use rand::SeedableRng;
use rand::rngs::SmallRng;

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
const _: () = assert!(BATCH < COUNT_FIELD, "a batch must fit the call-count field");

static INTERVAL: AtomicU64 = AtomicU64::new(DEFAULT_SAMPLE_INTERVAL);
/// Set once the program chose the interval itself.
static INTERVAL_EXPLICIT: AtomicBool = AtomicBool::new(false);
static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
/// Bumped by every configuration change; threads compare it on their cold path.
static CONFIG_GEN: AtomicU64 = AtomicU64::new(1);
static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);

/// The thread's last flush, from its exit hook (`record::lifecycle`): publishes everything,
/// and from here on every call flushes (an exiting thread's batch is zero).
pub(crate) fn flush_at_exit() {
    with_hot(|h| {
        h.exiting.set(true);
        rebase(h);
        // Publishes everything: an exiting thread's batch is zero.
        arm(h);
    });
}

/// What one call of `size` bytes takes off a packed countdown (see the module docs).
#[cfg(test)]
fn packed(size: usize) -> i64 {
    ((size as i64) << crate::sys::thread_state::COUNT_BITS) | 1
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
        add_free(h, size as u64, 1);
    } else if batch_budget(h) == 0 {
        // Every free publishes (exact mode, an exiting or unregistered thread), and so does
        // every allocation: with no batch the allocation side is armed to zero, so its cold
        // path has charged and published each one already. Only the frees are left.
        publish(h, false);
        return;
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
    let (alloc_bytes, alloc_objects) = if allocs {
        (
            h.alloc_pending_bytes.replace(0),
            h.alloc_pending_objects.replace(0),
        )
    } else {
        (0, 0)
    };
    totals::publish(
        [
            alloc_bytes,
            alloc_objects,
            h.free_pending_bytes.replace(0),
            h.free_pending_objects.replace(0),
        ],
        live_hold(h),
    );
    let budget = batch_budget(h);
    h.free_armed.set(armed_word(budget));
    h.free_budget.set(armed_word(budget));
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
            add_alloc(h, (size as u64).wrapping_neg(), 1u64.wrapping_neg());
        }
        let before = if huge {
            since_arm
        } else {
            since_arm.saturating_sub(size).max(0)
        };
        if h.guard.get() > 0 {
            arm_charged(h);
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
        arm_charged(h);
        decision
    })
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
    // A thread not registered yet has no exit hook to publish what it holds back: until it
    // registers (its first allocation's cold path), it publishes as it goes. (A thread that
    // only frees, or enters a leak check's scope first, may never allocate.)
    let exact = h.gap_interval.get() == 1;
    if h.exiting.get() || exact || !h.registered.get() {
        0
    } else {
        BATCH
    }
}

/// Moves the bytes allocated since the last arm point into the pending totals and makes
/// "now" the arm point; returns those bytes. Charging twice never counts a byte twice.
fn charge(h: &Hot) -> i64 {
    // Every path that arms a countdown comes through here first: from now on a guard's
    // release may have something to settle.
    crate::sys::guard::on_release(release_guard);
    let (bytes, calls) = unpack(h.armed.get(), h.countdown.get());
    add_alloc(h, bytes, calls);
    charge_frees(h);
    h.armed.set(0);
    h.countdown.set(0);
    bytes as i64
}

/// Adds allocations to the pending totals, and to the profiler's own when the guard is held.
fn add_alloc(h: &Hot, bytes: u64, calls: u64) {
    h.alloc_pending_bytes
        .set(h.alloc_pending_bytes.get().wrapping_add(bytes));
    h.alloc_pending_objects
        .set(h.alloc_pending_objects.get().wrapping_add(calls));
    // Only when there is something to add: an unconditional shared add per guard exit would
    // bounce these lines between cores on every sample.
    if h.guard.get() > 0 && calls > 0 {
        GUARDED_ALLOC_BYTES.fetch_add(bytes, Ordering::Relaxed);
        GUARDED_ALLOC_OBJECTS.fetch_add(calls, Ordering::Relaxed);
    }
}

fn flush_allocs(h: &Hot) {
    totals::publish(
        [
            h.alloc_pending_bytes.replace(0),
            h.alloc_pending_objects.replace(0),
            0,
            0,
        ],
        live_hold(h),
    );
}

/// Sets the countdowns from the current gap and mode; the arm point is "now".
fn arm(h: &Hot) {
    charge(h);
    arm_charged(h);
}

/// [`arm`] right after a [`charge`], with nothing allocated or freed since (in exact mode
/// every allocation comes through [`decide`], which charges first).
fn arm_charged(h: &Hot) {
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
    h.alloc_pending_bytes
        .set(h.alloc_pending_bytes.get().wrapping_add(bytes));
    h.alloc_pending_objects
        .set(h.alloc_pending_objects.get().wrapping_add(calls));
    if h.scope.get() == 0 {
        h.gap.set(h.gap.get().saturating_sub(bytes as i64).max(0));
    }
    h.saved_countdown.set((countdown, countdown, generation));
}

/// Brings the thread up to date with the global configuration (and initialises it first time).
fn refresh(h: &Hot) {
    // Registration (`record::lifecycle`) gives the thread its index before its first cold
    // path; a thread that reaches here first (a leak check's scope) takes one now.
    assign_index(h);
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
    INTERVAL_EXPLICIT.store(true, Ordering::Relaxed);
    store_interval(bytes);
}

/// Whether the program chose the interval itself ([`set_sample_interval`]), so that the
/// environment's configuration must not override it.
pub(crate) fn interval_is_explicit() -> bool {
    INTERVAL_EXPLICIT.load(Ordering::Relaxed)
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
        add_alloc(h, size as u64, 1);
        // A request can be larger than a batch by itself: the bound holds from here.
        if h.alloc_pending_bytes.get() >= batch_budget(h) as u64 {
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

/// Gives the calling thread its index if it has none yet; returns it.
pub(crate) fn assign_thread_index() -> u32 {
    with_hot(assign_index)
}

fn assign_index(h: &Hot) -> u32 {
    if h.thread.get() == 0 {
        h.thread.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
    }
    h.thread.get()
}

/// Index of the calling thread (0 before its first cold path).
pub(crate) fn current_thread() -> u32 {
    with_hot(|h| h.thread.get())
}

/// The release of an outermost guard that allocated or freed, or outlived a configuration
/// change (`sys::guard`): settles what the guard used as the profiler's and gives the program
/// its countdown back.
fn release_guard(h: &Hot, untouched: bool) {
    if !untouched {
        // What the guard's own allocations and frees used is the profiler's. Under the guard,
        // `rebase` also settles the program's bytes held in the saved countdown (and moves its
        // arm point): read the pair only after it, or those bytes would be given back to the
        // program's countdown and charged a second time.
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
    // The program's countdown is back with up to a batch still to spend: whatever the guard
    // left pending is published now, or the thread could hold more than a batch.
    if h.alloc_pending_bytes.get() > 0 {
        flush_allocs(h);
    }
    if h.free_pending_bytes.get() >= TOTALS_BATCH_BYTES {
        flush_frees(h);
    }
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
mod tests;
