//! The allocator behind the profiler's own tables.
//!
//! Tables never allocate through the global allocator, so a table that grows inside the
//! allocator's cold path cannot re-enter it. Every byte is counted as profiler overhead, which
//! reports show apart from the user's call sites.
//!
//! Their memory is a heap of the profiler's own (dlmalloc over anonymous mappings), not the
//! program's malloc: a table is created or grows when a thread samples, often at the program's
//! peak, and lives on. Taken from glibc, it would sit in that thread's arena above the
//! program's blocks, and when the program freed them glibc could not hand the space below it
//! back (an arena only shrinks from its top): a thread storm ended with everything freed and
//! RSS far above plain `System`'s (the storm test, `stress/tests/storm.rs`). Here the tables share pages only with each
//! other, and the heap gives back what they free (dlmalloc trims its top and unmaps free
//! segments).

use crate::sys::fork_mutex::ForkMutex;
use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use dlmalloc::Dlmalloc;

/// Bytes currently held by the profiler's tables.
static TABLE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes the profiler's tables hold right now.
pub(crate) fn table_bytes() -> u64 {
    TABLE_BYTES.load(Ordering::Relaxed)
}

/// The tables' heap. Its lock is the innermost of the profiler's: taken while a table's is
/// held, never the other way round, and it takes none itself (dlmalloc calls only `mmap`,
/// `mremap` and `munmap`).
static HEAP: ForkMutex<Dlmalloc> = ForkMutex::new(Dlmalloc::new());

/// `allocator_api2` allocator for internal tables: the profiler's own heap, counted.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct TableAlloc;

// SAFETY: every block comes from `HEAP` with the layout it is later freed with, under its lock;
// the counter is only arithmetic. dlmalloc hands out distinct blocks of at least the size asked,
// aligned as asked, and valid until freed.
unsafe impl Allocator for TableAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let dangling = layout.align() as *mut u8;
            // SAFETY: an alignment is never zero, so the pointer is non-null.
            let ptr = unsafe { NonNull::new_unchecked(dangling) };
            return Ok(NonNull::slice_from_raw_parts(ptr, 0));
        }
        // The lock may allocate when contended (parking_lot, off Linux): that allocation is the
        // profiler's, and must not be sampled into a table while this lock is held.
        let _guard = crate::sys::guard::enter_guard();
        // SAFETY: the size is non-zero and the alignment a power of two, as dlmalloc requires.
        let ptr = unsafe { HEAP.lock().malloc(layout.size(), layout.align()) };
        let ptr = NonNull::new(ptr).ok_or(AllocError)?;
        TABLE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        TABLE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // As in `allocate`.
        let _guard = crate::sys::guard::enter_guard();
        // SAFETY: the caller returns a block this allocator handed out with this layout.
        unsafe {
            HEAP.lock()
                .free(ptr.as_ptr(), layout.size(), layout.align())
        }
    }
}

/// Hands the heap's lock to the `pthread_atfork` handlers (last: it is the innermost lock).
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::fork_mutex::ForkLock)) {
    f(&HEAP);
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
