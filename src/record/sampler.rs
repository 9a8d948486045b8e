//! [`Sampler`]: the `GlobalAlloc` wrapper. Fast paths only; everything rare is `#[cold]`.

use crate::record::budget;
use crate::record::budget::PAGE;
use crate::record::countdown::{self, Decision, SampleInfo};
use crate::record::lifecycle;
use crate::record::live_record::LiveRecord;
use crate::record::live_table;
use crate::record::page_pool;
use crate::record::scopes;
use crate::record::stack_table;
use crate::unwind::capture::{MAX_STACK_DEPTH, OwnFunctions};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

/// A global allocator that samples the allocations it passes to `A`.
///
/// Install it with `#[global_allocator]`; it works from the first allocation before `main` to
/// the last one at exit. Unsampled allocations cost a thread-local subtraction on `alloc` and a
/// pointer test on `dealloc`; a sampled one captures its stack and is recorded.
///
/// A sampled block of up to 64 KiB (about one allocation in `T / size`) is served from whole
/// pages of the profiler's own rather than by `A`, so `A`'s own statistics do not include it;
/// every other block, and every larger sampled one, comes from `A`.
///
/// ```
/// use heapsampler::Sampler;
/// use std::alloc::System;
///
/// #[global_allocator]
/// static GLOBAL: Sampler<System> = Sampler::new(System);
///
/// fn main() {
///     let v = vec![0u8; 1 << 20];
///     let profile = heapsampler::snapshot();
///     assert!(profile.totals.live_bytes >= v.len() as u64);
/// }
/// ```
#[derive(Debug, Default)]
pub struct Sampler<A> {
    inner: A,
}

impl<A> Sampler<A> {
    /// Wraps `inner`, the allocator that does the real work (`System`, jemalloc, mimalloc…).
    ///
    /// ```
    /// static GLOBAL: heapsampler::Sampler<std::alloc::System> =
    ///     heapsampler::Sampler::new(std::alloc::System);
    /// ```
    pub const fn new(inner: A) -> Self {
        Sampler { inner }
    }

    /// The wrapped allocator.
    ///
    /// ```
    /// let s = heapsampler::Sampler::new(std::alloc::System);
    /// let _system: &std::alloc::System = s.inner();
    /// ```
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A: GlobalAlloc> Sampler<A> {
    /// Entry addresses of the functions that can be on the stack between the program and the
    /// stack walker, so captured stacks start at the program's frame.
    fn own_functions() -> OwnFunctions {
        [
            Self::alloc_cold as unsafe fn(usize, usize, bool, &Self) -> *mut u8 as usize,
            Self::alloc_sampled as unsafe fn(&Self, Layout, bool, SampleInfo) -> *mut u8 as usize,
            Self::realloc_cold as unsafe fn(*mut u8, usize, usize, usize, &Self, bool) -> *mut u8
                as usize,
            crate::unwind::capture_stack
                as fn(&mut [usize; MAX_STACK_DEPTH], &OwnFunctions) -> usize as usize,
        ]
    }

    #[inline(always)]
    unsafe fn inner_alloc(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        // SAFETY: the caller passes a layout valid for `GlobalAlloc::alloc` (non-zero size).
        unsafe {
            if zeroed {
                self.inner.alloc_zeroed(layout)
            } else {
                self.inner.alloc(layout)
            }
        }
    }

    /// The cold half of `alloc`. Like every cold entry point here it takes the layout as size
    /// and alignment and the allocator last, in the order of `__rust_alloc`'s own arguments:
    /// the fast path then moves none of them (a `Layout` argument is passed alignment first,
    /// and the shuffles cost one to five instructions a call).
    #[cold]
    #[inline(never)]
    unsafe fn alloc_cold(size: usize, align: usize, zeroed: bool, this: &Self) -> *mut u8 {
        // SAFETY: the caller took both apart from a valid `Layout`.
        let layout = unsafe { Layout::from_size_align_unchecked(size, align) };
        lifecycle::register_thread();
        let block = match countdown::decide(layout.size()) {
            // SAFETY: forwarded from `GlobalAlloc::alloc`'s caller.
            Decision::Skip => unsafe { this.inner_alloc(layout, zeroed) },
            // SAFETY: forwarded from `GlobalAlloc::alloc`'s caller.
            Decision::Sample(info) => unsafe { this.alloc_sampled(layout, zeroed, info) },
        };
        if !block.is_null() {
            countdown::granted(layout.size());
        }
        block
    }

    /// Allocates and records a sampled block. Any failure to record degrades to a plain,
    /// counted-as-dropped allocation; nothing here can fail the program.
    #[inline(never)]
    unsafe fn alloc_sampled(&self, layout: Layout, zeroed: bool, info: SampleInfo) -> *mut u8 {
        let _guard = crate::sys::guard::enter_guard();
        let mut frames = [0usize; MAX_STACK_DEPTH];
        let depth = crate::unwind::capture_stack(&mut frames, &Self::own_functions());
        let plain = |this: &Self| {
            stack_table::count_dropped();
            if info.tag != 0 {
                scopes::on_unrecorded(info.tag);
            }
            // SAFETY: forwarded from `GlobalAlloc::alloc`'s caller.
            unsafe { this.inner_alloc(layout, zeroed) }
        };
        // A sampled block is handed out page-aligned: small ones take whole pages from the
        // profiler's pool (the inner allocator is left undisturbed, see `pages`), larger ones
        // are asked of the inner allocator with page alignment. Exact records keep their
        // layout: a page each would be ruinous. So does a sample whose padding would pass the
        // padding bound: the profiler's memory stays bounded at any interval (`budget`).
        let class = page_pool::class_for(layout);
        let padding = class.map_or(PAGE, |c| budget::padding_of(layout.size(), c + 1));
        let aligned = if info.exact {
            false
        } else if layout.align() >= PAGE {
            // Page-aligned by its own layout, however it is served.
            budget::force_padding(padding);
            true
        } else {
            budget::try_reserve_padding(padding)
        };
        let pooled = if aligned {
            class
                .map(|class| (page_pool::alloc(class), class))
                .filter(|(block, _)| !block.is_null())
        } else {
            None
        };
        if aligned && pooled.is_none() && class.is_some() {
            // The pool is used up or absent: a page-aligned block of the inner allocator's
            // padding is held instead.
            budget::release_padding(padding);
            budget::force_padding(budget::padding_of(layout.size(), 0));
        }
        let (block, pool, block_layout) = match pooled {
            Some((block, class)) => {
                if zeroed {
                    // SAFETY: the block is at least `layout.size()` bytes, mapped and ours.
                    unsafe { block.write_bytes(0, layout.size()) };
                }
                (block, class + 1, layout)
            }
            None => {
                // Larger than the pool serves, the pool is used up or absent, or unaligned.
                let block_layout = if aligned {
                    match layout.align_to(PAGE) {
                        Ok(l) => l,
                        Err(_) => {
                            budget::release_padding(budget::padding_of(layout.size(), 0));
                            return plain(self);
                        }
                    }
                } else {
                    layout
                };
                // SAFETY: `block_layout` has the caller's non-zero size and a valid alignment.
                let block = unsafe { self.inner_alloc(block_layout, zeroed) };
                if block.is_null() {
                    budget::release_held(0, block_layout, info.exact);
                    return block;
                }
                (block, 0, block_layout)
            }
        };
        let give_back = |this: &Self| {
            budget::release_held(pool, block_layout, info.exact);
            // SAFETY: the block came from `pool` with `block_layout` and was never handed out.
            unsafe { this.free_block(block, pool, block_layout) }
        };
        let Some((stack, slot)) = stack_table::record(&frames[..depth.min(MAX_STACK_DEPTH)], &info)
        else {
            give_back(self);
            return plain(self);
        };
        let record = LiveRecord {
            size: block_layout.size(),
            align: block_layout.align(),
            pool,
            stack,
            slot,
            sample: info,
        };
        if !live_table::insert(block, record) {
            give_back(self);
            return plain(self);
        }
        if info.tag != 0 {
            scopes::on_alloc(info.tag, block_layout.size());
        }
        block
    }

    /// A free whose block may be a recorded one: frees it as one if it is, as any other if not.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_cold(ptr: *mut u8, size: usize, align: usize, this: &Self) {
        // SAFETY: the caller took both apart from a valid `Layout`.
        let layout = unsafe { Layout::from_size_align_unchecked(size, align) };
        // SAFETY: forwarded from `GlobalAlloc::dealloc`'s caller.
        if unsafe { this.dealloc_tracked(ptr, layout) } {
            return;
        }
        countdown::free_fast(layout.size());
        // SAFETY: forwarded from `GlobalAlloc::dealloc`'s caller; the block is untracked.
        unsafe { this.inner.dealloc(ptr, layout) }
    }

    /// An untracked free, already counted, whose thread must flush its free totals first.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_flush(ptr: *mut u8, size: usize, align: usize, this: &Self) {
        // SAFETY: the caller took both apart from a valid `Layout`.
        let layout = unsafe { Layout::from_size_align_unchecked(size, align) };
        countdown::flush_free_batch(layout.size());
        // SAFETY: forwarded from `GlobalAlloc::dealloc`'s caller; the block is untracked.
        unsafe { this.inner.dealloc(ptr, layout) }
    }

    /// An unsampled realloc of an untracked block, both sides already counted, whose thread
    /// must flush its free totals first.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_flush(
        ptr: *mut u8,
        size: usize,
        align: usize,
        new_size: usize,
        this: &Self,
    ) -> *mut u8 {
        // SAFETY: the caller took both apart from a valid `Layout`.
        let layout = unsafe { Layout::from_size_align_unchecked(size, align) };
        countdown::flush_free_batch(layout.size());
        // SAFETY: forwarded from `GlobalAlloc::realloc`'s caller; the old block is untracked.
        unsafe { this.inner.realloc(ptr, layout, new_size) }
    }

    /// Frees `ptr` if it is a recorded block; `false` if it is not one.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_tracked(&self, ptr: *mut u8, layout: Layout) -> bool {
        if crate::sys::guard::forking() {
            // This thread holds every table lock (inside `fork()`): the block may be tracked and
            // cannot be looked up, so it is left allocated. Only a free inside the fork
            // handlers' window can land here.
            return true;
        }
        let record = {
            // A pooled block's record is removed without a lock (`pooled`), so without the
            // guard that keeps a contended lock's own allocations out of the program's.
            let _guard = (!page_pool::in_region(ptr as usize)).then(crate::sys::guard::enter_guard);
            let Some(record) = live_table::remove(ptr) else {
                return false;
            };
            budget::release_held(record.pool, record.layout(), record.sample.exact);
            if record.sample.tag != 0 {
                scopes::on_free(record.sample.tag, record.size);
            }
            record
        };
        // Outside the guard: this free is the program's, not the profiler's.
        countdown::free_fast(layout.size());
        // SAFETY: the record holds where this block came from and the layout it was given.
        unsafe { self.free_block(ptr, record.pool, record.layout()) };
        true
    }

    /// Gives a sampled block back where it came from: the inner allocator (`pool` 0) or the
    /// page pool's class `pool - 1`.
    ///
    /// # Safety
    /// `block` came from that source with `layout` and is not used after this call.
    unsafe fn free_block(&self, block: *mut u8, pool: u8, layout: Layout) {
        match pool {
            // SAFETY: forwarded from the caller: an inner block of `layout`.
            0 => unsafe { self.inner.dealloc(block, layout) },
            // SAFETY: forwarded from the caller: a block of the pool's class `pool - 1`.
            pool => unsafe { page_pool::free(block, pool - 1) },
        }
    }

    #[cold]
    #[inline(never)]
    unsafe fn realloc_cold(
        ptr: *mut u8,
        size: usize,
        align: usize,
        new_size: usize,
        this: &Self,
        old_may_be_tracked: bool,
    ) -> *mut u8 {
        // SAFETY: the caller took both apart from a valid `Layout`.
        let layout = unsafe { Layout::from_size_align_unchecked(size, align) };
        if old_may_be_tracked && crate::sys::guard::forking() {
            // Inside `fork()` the tables are locked by this thread (see `dealloc_tracked`): the
            // old block is copied into a new, unsampled one and left allocated.
            // SAFETY: as below, `GlobalAlloc::realloc`'s contract makes this a valid layout.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: `new_layout` has a non-zero size.
            let new = unsafe { this.inner.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are live, distinct, and at least this many bytes long.
                unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            }
            return new;
        }
        // When the old block may be tracked the fast path did not count the new size yet.
        let counted_fast = old_may_be_tracked && countdown::alloc_fast(new_size);
        let decision = if counted_fast {
            Decision::Skip
        } else {
            lifecycle::register_thread();
            countdown::decide(new_size)
        };
        let old_record = if old_may_be_tracked {
            let _guard = crate::sys::guard::enter_guard();
            live_table::get(ptr)
        } else {
            None
        };
        let decision = if crate::sys::guard::in_guard() {
            decision
        } else {
            scopes::follow_realloc(decision, old_record.as_ref(), new_size)
        };
        // A large request `decide` left uncounted is counted once granted; a refused one
        // leaves the old block in place, neither freed nor replaced.
        if old_record.is_none() && matches!(decision, Decision::Skip) {
            // SAFETY: forwarded from `GlobalAlloc::realloc`'s caller; `ptr` is untracked.
            let new = unsafe { this.inner.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                countdown::free_fast(layout.size());
                countdown::granted(new_size);
            }
            return new;
        }
        // SAFETY: `GlobalAlloc::realloc` requires `new_size`, rounded up to `layout.align()`,
        // not to overflow `isize`, which makes this a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = match decision {
            // SAFETY: `new_layout` has a non-zero size (a realloc target size must be non-zero).
            Decision::Skip => unsafe { this.inner.alloc(new_layout) },
            // SAFETY: as above.
            Decision::Sample(info) => unsafe { this.alloc_sampled(new_layout, false, info) },
        };
        if new.is_null() {
            return new;
        }
        countdown::granted(new_size);
        // SAFETY: both blocks are live, distinct, and at least this many bytes long.
        unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        // SAFETY: `ptr` is the caller's live block of `layout`, now copied and not used again.
        unsafe { this.dealloc(ptr, layout) };
        new
    }
}

// SAFETY: every block handed out comes from `inner` and is returned to it with the layout it
// was allocated with (the record keeps the page-aligned layout of sampled blocks); the
// profiler's own bookkeeping never hands out or frees user memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Sampler<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if countdown::alloc_fast(layout.size()) {
            // SAFETY: forwarded from our caller.
            return unsafe { self.inner.alloc(layout) };
        }
        // SAFETY: forwarded from our caller.
        unsafe { Self::alloc_cold(layout.size(), layout.align(), false, self) }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if countdown::alloc_fast(layout.size()) {
            // SAFETY: forwarded from our caller.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        // SAFETY: forwarded from our caller.
        unsafe { Self::alloc_cold(layout.size(), layout.align(), true, self) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Every branch ends in a tail call: the fast path needs no stack frame of its own
        // (calling `dealloc_tracked` and carrying on here cost three pushes and pops a free).
        if live_table::may_be_tracked(ptr) {
            // SAFETY: forwarded from our caller.
            return unsafe { Self::dealloc_cold(ptr, layout.size(), layout.align(), self) };
        }
        if countdown::free_counted(layout.size()) {
            // SAFETY: forwarded from our caller; untracked blocks keep the caller's layout.
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        // SAFETY: forwarded from our caller.
        unsafe { Self::dealloc_flush(ptr, layout.size(), layout.align(), self) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_may_be_tracked = live_table::may_be_tracked(ptr);
        if !old_may_be_tracked && countdown::alloc_fast(new_size) {
            // Every branch ends in a tail call, as in `dealloc`: a flush here followed by the
            // inner call cost a stack frame (five pushes and pops) on every realloc.
            if countdown::free_counted(layout.size()) {
                // SAFETY: forwarded from our caller; the old block is untracked.
                return unsafe { self.inner.realloc(ptr, layout, new_size) };
            }
            // SAFETY: forwarded from our caller; the old block is untracked.
            return unsafe {
                Self::realloc_flush(ptr, layout.size(), layout.align(), new_size, self)
            };
        }
        // SAFETY: forwarded from our caller.
        unsafe {
            Self::realloc_cold(
                ptr,
                layout.size(),
                layout.align(),
                new_size,
                self,
                old_may_be_tracked,
            )
        }
    }
}
