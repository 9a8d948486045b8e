//! The profiler's own memory: its bounds, what they cost at most, and the page padding of
//! sampled blocks.
//!
//! A sampled block is handed out page-aligned so that a free is recognised by its address alone
//! (`live`), and a small one takes whole pages: a 48-byte sample costs a page. Unbounded, that
//! padding grows with the number of live samples, i.e. without limit at small intervals. So the
//! padding of live page-aligned samples is counted here and held under
//! [`DEFAULT_MAX_PADDING_BYTES`]; a sample that would exceed it is recorded at its natural
//! alignment instead, as exact records are (counted in `samples_unaligned`). Every other part
//! of the profiler's memory is bounded by a count ([`crate::Limits`]), so the whole has a
//! bound (`Limits::budget_bytes`), reported in every profile beside what is held now.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Page size assumed for the alignment trick (`live_table`) and the padding counted here. A
/// larger real page only makes the trick stricter.
pub(crate) const PAGE: usize = 4096;

/// Default bound on the page padding of live sampled blocks: 64 MiB, the size of the page
/// pool's region (16,384 single-page samples).
pub const DEFAULT_MAX_PADDING_BYTES: usize = 64 << 20;
/// Default bound on distinct stacks held at once in exact mode (interval 1).
pub const DEFAULT_EXACT_MAX_STACKS: usize = 1 << 20;
/// Default bound on live records held at once in exact mode (interval 1): every live block of
/// the program is one.
pub const DEFAULT_EXACT_MAX_LIVE_SAMPLES: usize = 1 << 24;

static MAX_PADDING: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_PADDING_BYTES);
/// Padding of the live page-aligned samples now.
static PADDING: AtomicUsize = AtomicUsize::new(0);
/// Samples recorded unaligned because the padding bound was reached.
static UNALIGNED: AtomicU64 = AtomicU64::new(0);

/// Padding charged for a sampled block of `size` bytes from the page pool's class `pool - 1`,
/// or (`pool` 0) asked of the inner allocator with page alignment: a page, what glibc's
/// `memalign` is measured to cost a small block (3.1 M samples of 48 B: +6.5 GB).
pub(crate) fn padding_of(size: usize, pool: u8) -> usize {
    match pool {
        0 => PAGE,
        p => (PAGE << (p - 1)).saturating_sub(size),
    }
}

/// Reserves `padding` bytes for a page-aligned sample; `false` (counted) if the bound would be
/// passed, and the sample is to be recorded unaligned.
pub(crate) fn try_reserve_padding(padding: usize) -> bool {
    let max = MAX_PADDING.load(Ordering::Relaxed);
    let reserved = PADDING
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            held.checked_add(padding).filter(|&n| n <= max)
        })
        .is_ok();
    if !reserved {
        UNALIGNED.fetch_add(1, Ordering::Relaxed);
    }
    reserved
}

/// Gives back the padding [`try_reserve_padding`] reserved for a sample.
pub(crate) fn release_padding(padding: usize) {
    PADDING.fetch_sub(padding, Ordering::Relaxed);
}

/// Padding of the live page-aligned samples now.
pub(crate) fn padding_bytes() -> u64 {
    PADDING.load(Ordering::Relaxed) as u64
}

/// Samples recorded unaligned since the process started.
pub(crate) fn unaligned_samples() -> u64 {
    UNALIGNED.load(Ordering::Relaxed)
}

pub(crate) fn max_padding() -> usize {
    MAX_PADDING.load(Ordering::Relaxed)
}

pub(crate) fn set_max_padding(n: usize) {
    MAX_PADDING.store(n, Ordering::Relaxed);
}

/// Whether `sample` was taken in exact mode (interval 1), where the exact-mode bounds apply.
/// A `LeakCheck`'s records (tagged) stay under the usual bounds.
pub(crate) fn exact_mode_sample(sample: &crate::record::weights::SampleInfo) -> bool {
    sample.exact && sample.tag == 0
}

/// Reserves `padding` bytes whatever the bound: a sample whose own layout asks for page
/// alignment is page-aligned however it is served.
pub(crate) fn force_padding(padding: usize) {
    PADDING.fetch_add(padding, Ordering::Relaxed);
}

/// Gives back the padding held by a sampled block of `layout` from `pool` (see
/// [`padding_of`]): a sample (not an exact record) served from the pool or page-aligned by the
/// inner allocator holds it; one recorded unaligned holds none.
pub(crate) fn release_held(pool: u8, layout: core::alloc::Layout, exact: bool) {
    if !exact && (pool != 0 || layout.align() >= PAGE) {
        release_padding(padding_of(layout.size(), pool));
    }
}
