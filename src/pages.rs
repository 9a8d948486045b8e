//! Whole pages for small sampled blocks.
//!
//! A block sampled by the Poisson process is handed out page-aligned (DESIGN.md section 5), so
//! that the free of any other block is told apart by its address alone. Asking the inner
//! allocator for that alignment disturbs it: glibc's `memalign` carves the block out of a larger
//! one and leaves the fragments in its bins, and the *unsampled* allocations that follow pay for
//! it (a 4 KiB alloc+free loop: +1–2 ns a pair with `memalign`, +8 ns with a block padded by a
//! page, ~0.5 ns with this pool; see BENCHMARKS.md). So, as tcmalloc and jemalloc give a sampled
//! object pages of its own, blocks of up to [`MAX_POOLED`] bytes take whole pages from here;
//! larger ones still come from the inner allocator, page-aligned.
//!
//! Blocks come in classes of 1, 2, 4, 8 and 16 pages. Each class keeps a stack of free blocks
//! linked through their first word, refills by mapping [`CHUNK_BYTES`] at once, and keeps at
//! most [`MAX_IDLE_BYTES`] idle: a block freed beyond that is unmapped. So the pool holds the
//! live sampled blocks plus a bounded reserve, never more. The pool is used only where the page
//! size is 4 KiB (so any block can be unmapped on its own); elsewhere everything goes through the
//! inner allocator as before.
//!
//! Each thread keeps one spare single-page block, the last one it freed, for its next sample:
//! a thread that samples and frees in turn then never takes the pool lock (two lock round trips,
//! ~20 ns of a ~200 ns sample). A spare sits in the thread's entry of [`SPARES`] (indexed by its
//! `thread_slot`), so [`idle_bytes`] counts it, and the thread hands it back when it exits.

use crate::lock::ForkMutex;
use crate::single_writer::SingleWriter;
use crate::thread_slot::{self, MAX_THREAD_SLOTS};
use core::alloc::Layout;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The page size the pool works in (and the alignment of every block it hands out).
const PAGE: usize = crate::live::PAGE;
const CLASSES: usize = 5;
/// The largest block the pool serves: 16 pages.
pub(crate) const MAX_POOLED: usize = PAGE << (CLASSES - 1);
/// Bytes mapped at once when a class has no free block.
const CHUNK_BYTES: usize = 256 * 1024;
/// Idle bytes a class keeps for reuse; frees beyond this go back to the system.
const MAX_IDLE_BYTES: usize = 1024 * 1024;

struct Pool {
    /// Top of each class's stack of free blocks (0 = empty).
    free: [usize; CLASSES],
    idle: [usize; CLASSES],
}

static POOL: ForkMutex<Pool> = ForkMutex::new(Pool {
    free: [0; CLASSES],
    idle: [0; CLASSES],
});

/// A thread's spare class-0 block (0 = none), on a line of its own: its owner writes it on
/// every sample it frees. Atomic only so that `idle_bytes` may read it; the owner updates it
/// with plain loads and stores.
#[repr(align(64))]
struct Spare(AtomicUsize);

/// The spare of the thread holding each `thread_slot`.
static SPARES: [Spare; MAX_THREAD_SLOTS] = [const { Spare(AtomicUsize::new(0)) }; MAX_THREAD_SLOTS];

fn own_spare() -> Option<&'static AtomicUsize> {
    SPARES.get(thread_slot::current()?).map(|s| &s.0)
}

/// 0 = not asked yet, 1 = 4 KiB pages (pool on), 2 = other (pool off).
static PAGES_FIT: AtomicU8 = AtomicU8::new(0);

fn pool_enabled() -> bool {
    match PAGES_FIT.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // SAFETY: `sysconf` has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let fits = page == PAGE as libc::c_long;
            PAGES_FIT.store(if fits { 1 } else { 2 }, Ordering::Relaxed);
            fits
        }
    }
}

/// The class of blocks serving `layout`, if the pool serves it.
pub(crate) fn class_for(layout: Layout) -> Option<u8> {
    if layout.size() > MAX_POOLED || layout.align() > PAGE || !pool_enabled() {
        return None;
    }
    let pages = layout.size().div_ceil(PAGE).max(1);
    Some(pages.next_power_of_two().trailing_zeros() as u8)
}

fn block_bytes(class: u8) -> usize {
    PAGE << class
}

/// A page-aligned block of `class`, or null if no memory could be mapped. Its contents are
/// whatever its last user left, except for a freshly mapped one, which is zero.
pub(crate) fn alloc(class: u8) -> *mut u8 {
    let c = class as usize;
    if c >= CLASSES {
        return core::ptr::null_mut();
    }
    if c == 0 {
        let spare = own_spare().map_or(0, |s| s.update_unshared(|_| 0));
        if spare != 0 {
            return spare as *mut u8;
        }
    }
    let size = block_bytes(class);
    {
        let mut pool = POOL.lock();
        let top = pool.free[c];
        if top != 0 {
            // SAFETY: `top` is a free block of this class; its first word holds the next free
            // block (written by `push` below); nothing else touches a free block.
            let next = unsafe { (top as *const usize).read() };
            pool.free[c] = next;
            pool.idle[c] -= size;
            return top as *mut u8;
        }
    }
    let chunk = CHUNK_BYTES.max(size);
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let mapped = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            chunk,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    let first = mapped as usize;
    let mut pool = POOL.lock();
    for i in 1..chunk / size {
        // SAFETY: each block lies inside the mapping just made, which no one else knows of.
        unsafe { push(&mut pool, c, first + i * size, size) };
    }
    first as *mut u8
}

/// Pushes `block` on the free stack of class `c`.
///
/// # Safety
/// `block` is a block of `size` bytes of class `c`, mapped, and no longer in use.
unsafe fn push(pool: &mut Pool, c: usize, block: usize, size: usize) {
    // SAFETY: the caller gives us the block: it is mapped, writable, aligned, unused.
    unsafe { (block as *mut usize).write(pool.free[c]) };
    pool.free[c] = block;
    pool.idle[c] += size;
}

/// Returns a block from [`alloc`] with the same `class`.
///
/// # Safety
/// `block` came from `alloc(class)` and is not used after this call.
pub(crate) unsafe fn free(block: *mut u8, class: u8) {
    let c = class as usize;
    if c >= CLASSES {
        return;
    }
    if c == 0
        && let Some(spare) = own_spare()
        && spare.load(Ordering::Relaxed) == 0
    {
        spare.store(block as usize, Ordering::Relaxed);
        return;
    }
    // SAFETY: passed on from the caller.
    unsafe { give_back(block, class) }
}

/// [`free`] without the spare: the block goes to its class's free stack or back to the system.
///
/// # Safety
/// As for [`free`].
unsafe fn give_back(block: *mut u8, class: u8) {
    let c = class as usize;
    let size = block_bytes(class);
    {
        let mut pool = POOL.lock();
        if pool.idle[c] + size <= MAX_IDLE_BYTES {
            // SAFETY: the caller hands the block back; it came from this class.
            unsafe { push(&mut pool, c, block as usize, size) };
            return;
        }
    }
    // SAFETY: the block is a page-aligned, page-multiple range of one of our mappings that no
    // one uses any more; unmapping part of a mapping is allowed.
    unsafe { libc::munmap(block.cast(), size) };
}

/// Gives the spare of the thread that held `slot` back to the pool: called as the thread exits
/// and releases its slot (it no longer keeps spares by then).
pub(crate) fn close_slot(slot: usize) {
    let spare = SPARES
        .get(slot)
        .map_or(0, |s| s.0.swap(0, Ordering::Relaxed));
    if spare != 0 {
        // SAFETY: the spare is a free class-0 block from `alloc`, now no one's.
        unsafe { give_back(spare as *mut u8, 0) };
    }
}

/// Bytes the pool holds for reuse, threads' spares included: the profiler's own memory.
pub(crate) fn idle_bytes() -> u64 {
    let mut spares = 0;
    thread_slot::for_each_claimed(|slot| {
        if SPARES
            .get(slot)
            .is_some_and(|s| s.0.load(Ordering::Relaxed) != 0)
        {
            spares += 1;
        }
    });
    let pool = POOL.lock();
    (pool.idle.iter().sum::<usize>() + spares * PAGE) as u64
}

/// Hands this module's lock to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::lock::ForkLock)) {
    f(&POOL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_powers_of_two_pages() {
        let class = |size| class_for(Layout::from_size_align(size, 8).unwrap());
        if !pool_enabled() {
            assert_eq!(class(16), None);
            return;
        }
        assert_eq!(class(1), Some(0));
        assert_eq!(class(4096), Some(0));
        assert_eq!(class(4097), Some(1));
        assert_eq!(class(3 * 4096), Some(2));
        assert_eq!(class(MAX_POOLED), Some(4));
        assert_eq!(class(MAX_POOLED + 1), None);
        assert_eq!(class_for(Layout::from_size_align(64, 8192).unwrap()), None);
    }

    #[test]
    fn a_thread_keeps_one_spare_page_and_hands_it_back_at_exit() {
        if !pool_enabled() {
            return;
        }
        std::thread::spawn(|| {
            // Registers the thread (its exit hook and slot), as its first allocation would.
            crate::sampler::leave_scope(crate::sampler::enter_scope(0));
            let spare = || own_spare().expect("a slot").load(Ordering::Relaxed);
            let a = alloc(0);
            // SAFETY: `a` came from `alloc(0)` and is not used again.
            unsafe { free(a, 0) };
            assert_eq!(spare(), a as usize, "kept as the spare");
            let idle = idle_bytes();
            assert_eq!(alloc(0), a, "the spare serves the next class-0 block");
            assert_eq!(idle_bytes(), idle - PAGE as u64, "counted while kept");
            let b = alloc(0);
            // SAFETY: as above, for both blocks.
            unsafe { free(a, 0) };
            unsafe { free(b, 0) };
            assert_eq!(spare(), a as usize, "one spare only");
            let slot = thread_slot::current().unwrap();
            thread_slot::release(close_slot);
            assert_eq!(SPARES[slot].0.load(Ordering::Relaxed), 0, "handed back");
            let c = alloc(0);
            // SAFETY: as above.
            unsafe { free(c, 0) };
            assert!(own_spare().is_none(), "none after exit");
            assert_eq!(SPARES[slot].0.load(Ordering::Relaxed), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn blocks_are_page_aligned_distinct_and_reused() {
        if !pool_enabled() {
            return;
        }
        let blocks: Vec<*mut u8> = (0..100).map(|_| alloc(1)).collect();
        for &b in &blocks {
            assert!(!b.is_null());
            assert_eq!(b as usize % PAGE, 0);
            // SAFETY: a live block of 2 pages.
            unsafe { b.write_bytes(0xab, 2 * PAGE) };
        }
        let mut sorted = blocks.clone();
        sorted.sort();
        assert!(
            sorted
                .windows(2)
                .all(|w| w[1] as usize - w[0] as usize >= 2 * PAGE)
        );
        for &b in &blocks {
            // SAFETY: each block came from `alloc(1)` and is not used again.
            unsafe { free(b, 1) };
        }
        assert!(idle_bytes() as usize <= CLASSES * (MAX_IDLE_BYTES + CHUNK_BYTES));
        let again = alloc(1);
        assert!(blocks.contains(&again), "a freed block is reused");
        // SAFETY: as above.
        unsafe { free(again, 1) };
    }
}
