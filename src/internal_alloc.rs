//! The allocator behind the profiler's own tables.
//!
//! Tables allocate straight from `std::alloc::System`, never through the global allocator, so a
//! table that grows inside the allocator's cold path cannot re-enter it. Every byte is counted
//! as profiler overhead, which reports show apart from the user's call sites.

use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use std::alloc::System;

/// Bytes currently held by the profiler's tables.
static TABLE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes the profiler's tables hold right now.
pub(crate) fn table_bytes() -> u64 {
    TABLE_BYTES.load(Ordering::Relaxed)
}

/// `allocator_api2` allocator for internal tables: `System`, counted.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct TableAlloc;

// SAFETY: every block comes from `System` with the layout it is later freed with, and the
// counter is only arithmetic; `System` satisfies the `Allocator` contract for these calls.
unsafe impl Allocator for TableAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let dangling = layout.align() as *mut u8;
            // SAFETY: an alignment is never zero, so the pointer is non-null.
            let ptr = unsafe { NonNull::new_unchecked(dangling) };
            return Ok(NonNull::slice_from_raw_parts(ptr, 0));
        }
        // SAFETY: the layout has a non-zero size, as `GlobalAlloc::alloc` requires.
        let ptr = unsafe { System.alloc(layout) };
        let ptr = NonNull::new(ptr).ok_or(AllocError)?;
        TABLE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        TABLE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller returns a block this allocator handed out with this layout.
        unsafe { System.dealloc(ptr.as_ptr(), layout) }
    }
}

/// A hash map whose storage is profiler overhead.
pub(crate) type Map<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState, TableAlloc>;
/// A vector whose storage is profiler overhead.
pub(crate) type TableVec<T> = allocator_api2::vec::Vec<T, TableAlloc>;

/// An empty [`Map`]; allocates nothing until first insert.
pub(crate) fn new_map<K, V>() -> Map<K, V> {
    hashbrown::HashMap::with_hasher_in(
        foldhash::fast::FixedState::with_seed(0x5eed_4ea9),
        TableAlloc,
    )
}
