//! The bounds on what the profiler holds ([`Limits`]), and the most memory they allow.

use crate::record::budget::{
    DEFAULT_EXACT_MAX_LIVE_SAMPLES, DEFAULT_EXACT_MAX_STACKS, DEFAULT_MAX_PADDING_BYTES,
};
use crate::record::live_table::{self, DEFAULT_MAX_LIVE_SAMPLES, RECORD_BYTES};
use crate::record::page_pool;
use crate::record::stack_table::{self, DEFAULT_MAX_STACKS};

/// Bounds on the profiler's own memory. When one is reached, new samples are dropped (counted
/// in [`ProfilerStats::samples_dropped`](crate::ProfilerStats::samples_dropped)) or, past the padding bound, recorded without page
/// alignment (counted in [`ProfilerStats::samples_unaligned`](crate::ProfilerStats::samples_unaligned)); memory never grows past them.
///
/// Together they bound everything the profiler holds, whatever the sampling interval:
/// [`Limits::budget_bytes`] is that bound, and every profile reports it
/// ([`ProfilerStats::own_bytes_budget`](crate::ProfilerStats::own_bytes_budget)) beside what is held now
/// ([`ProfilerStats::own_bytes`](crate::ProfilerStats::own_bytes)). With the defaults: 290 MiB while sampling, 3.5 GiB in
/// exact mode (interval 1, where every live object of the program is a record, ~150 bytes at
/// most, and deep recursive code can make a distinct stack of most samples, ~1 KiB each). The
/// symbol cache, used only when a report is written, is bounded apart (2^18 addresses) and
/// counted in the totals' `overhead_*` figures.
///
/// ```
/// let limits = heapsampler::Limits::default();
/// assert!(limits.budget_bytes(false) < limits.budget_bytes(true));
/// heapsampler::set_limits(limits);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Distinct call stacks held at once (default 65,536).
    pub max_stacks: usize,
    /// Live sampled objects held at once in the live table (default 1,048,576). The bound is
    /// split evenly over the table's 64 shards, so a shard can fill up before the total reaches it (objects hash evenly, so only slightly
    /// before). Sampled objects of up to 64 KiB served by the profiler's page pool keep their
    /// records beside their pages instead, in a fixed area bounded by the pool itself (16,384
    /// pages); past it they come from the inner allocator and count against this bound.
    pub max_live_samples: usize,
    /// Distinct call stacks held at once by samples taken in exact mode (interval 1; default
    /// 1,048,576). A `LeakCheck`'s records use `max_stacks`.
    pub exact_max_stacks: usize,
    /// Live records held at once in exact mode (interval 1; default 16,777,216): one per live
    /// object allocated since exact mode started. A `LeakCheck`'s records use
    /// `max_live_samples`.
    pub exact_max_live_samples: usize,
    /// Bytes of page padding held by live sampled objects (default 64 MiB). A sampled object
    /// is page-aligned so that its free is
    /// recognised by its address alone; a small one costs a page. Past this bound a sample is
    /// recorded at its natural alignment instead, as exact records are; while such records are
    /// live, every free of the program is checked against the live table's filter (measured:
    /// +13 instructions a free, +200 where the filter bucket is occupied, as most are past
    /// ~65,000 such records).
    pub max_padding_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stacks: DEFAULT_MAX_STACKS,
            max_live_samples: DEFAULT_MAX_LIVE_SAMPLES,
            exact_max_stacks: DEFAULT_EXACT_MAX_STACKS,
            exact_max_live_samples: DEFAULT_EXACT_MAX_LIVE_SAMPLES,
            max_padding_bytes: DEFAULT_MAX_PADDING_BYTES,
        }
    }
}

impl Limits {
    /// The most memory the profiler can hold under these limits, in bytes: its stack table,
    /// its live table, its page pool's idle pages and cells, and the padding bound; with the
    /// exact-mode bounds if `exact`.
    ///
    /// ```
    /// let sampling = heapsampler::Limits::default().budget_bytes(false);
    /// assert!(sampling < 512 << 20);
    /// ```
    pub fn budget_bytes(&self, exact: bool) -> u64 {
        let (stacks, records) = if exact {
            (self.exact_max_stacks, self.exact_max_live_samples)
        } else {
            (self.max_stacks, self.max_live_samples)
        };
        budget_bytes(stacks, records, self.max_padding_bytes)
    }

    /// The limits in force.
    ///
    /// ```
    /// assert_eq!(heapsampler::Limits::current(), heapsampler::Limits::default());
    /// ```
    pub fn current() -> Limits {
        let stacks = stack_table::stats();
        Limits {
            max_stacks: stacks.max_stacks as usize,
            max_live_samples: live_table::max_len(),
            exact_max_stacks: stacks.exact_max_stacks as usize,
            exact_max_live_samples: live_table::exact_max_len(),
            max_padding_bytes: crate::record::budget::max_padding(),
        }
    }
}

/// Sets the bounds. Lowering a bound below what is held now keeps what is held and
/// refuses new entries until the count falls below it.
///
/// ```
/// heapsampler::set_limits(heapsampler::Limits { max_stacks: 10_000, ..Default::default() });
/// # heapsampler::set_limits(heapsampler::Limits::default());
/// ```
pub fn set_limits(limits: Limits) {
    stack_table::set_max_stacks(limits.max_stacks, limits.exact_max_stacks);
    live_table::set_max_len(limits.max_live_samples, limits.exact_max_live_samples);
    crate::record::budget::set_max_padding(limits.max_padding_bytes);
}

/// The most the profiler's own memory can reach with `stacks` stacks and `records` live
/// records at most: the stack table (`STACK_BYTES` each), the live table, the page pool's idle
/// pages and cells, and the padding bound.
fn budget_bytes(stacks: usize, records: usize, padding: usize) -> u64 {
    (stacks as u64)
        .saturating_mul(stack_table::STACK_BYTES)
        .saturating_add((records as u64).saturating_mul(RECORD_BYTES))
        .saturating_add(page_pool::MAX_OWN_BYTES)
        .saturating_add(padding as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_adds_up_every_bound() {
        let l = Limits::default();
        let stack = stack_table::STACK_BYTES;
        assert!((512..2048).contains(&stack), "{stack}");
        assert!((64..256).contains(&RECORD_BYTES), "{RECORD_BYTES}");
        assert_eq!(
            l.budget_bytes(false),
            (1 << 16) * stack + (1 << 20) * RECORD_BYTES + page_pool::MAX_OWN_BYTES + (64 << 20)
        );
        // 290 MiB while sampling, 3.5 GiB in exact mode (docs/report-format.md).
        assert_eq!(l.budget_bytes(false) >> 20, 290);
        assert_eq!(l.budget_bytes(true) >> 20, 3548);
    }
}
