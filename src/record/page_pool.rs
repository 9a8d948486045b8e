//! Whole pages for small sampled blocks.
//!
//! A block sampled by the Poisson process is handed out page-aligned (docs/architecture.md, "Recognising the free of a sampled block"), so
//! that the free of any other block is told apart by its address alone. Asking the inner
//! allocator for that alignment disturbs it: glibc's `memalign` carves the block out of a larger
//! one and leaves the fragments in its bins, and the *unsampled* allocations that follow pay for
//! it (a 4 KiB alloc+free loop: +1–2 ns a pair with `memalign`, +8 ns with a block padded by a
//! page, ~0.5 ns with this pool; see BENCHMARKS.md). So, as tcmalloc and jemalloc give a sampled
//! object pages of its own, blocks of up to [`MAX_POOLED`] bytes take whole pages from here;
//! larger ones still come from the inner allocator, page-aligned.
//!
//! The pool's pages lie in one region of address space reserved at its first use
//! ([`REGION_PAGES`] pages, 64 MiB, as much as glibc reserves for each of its malloc arenas; made
//! readable and writable a chunk at a time as the pool grows, so only what is used counts
//! against the system's commit limit), preceded by one [`Cell`] — a cache line — per page. A pooled block's live record
//! sits in the cell of its first page (`pooled`), so recording a sample and recognising its free
//! need no hash table and no lock, and [`in_region`] tells a pooled block from any other by one
//! subtraction. A free block's cell holds the link to the next free block of its class.
//!
//! Blocks come in classes of 1, 2, 4, 8 and 16 pages. Each class keeps a stack of free blocks,
//! carves [`CHUNK_BYTES`] more from the region when it has none, and keeps at most
//! [`MAX_IDLE_BYTES`] idle: the memory of a block freed beyond that goes back to the system
//! (`MADV_DONTNEED`) and the block waits, costing nothing, on a second stack for reuse. So the
//! pool holds the live sampled blocks plus a bounded reserve, never more. When the region is used
//! up (16,384 live single-page samples), or could not be reserved, or the page size is not 4 KiB,
//! sampled blocks come from the inner allocator, page-aligned, as larger ones always do.
//!
//! Each thread keeps one spare single-page block, the last one it freed, for its next sample:
//! a thread that samples and frees in turn then never takes the pool lock (two lock round trips,
//! ~20 ns of a ~200 ns sample). A spare sits in the thread's entry of [`SPARES`] (indexed by its
//! `thread_slot`), so [`own_bytes`] counts it, and the thread hands it back when it exits.

use crate::sys::fork_mutex::ForkMutex;
use crate::sys::single_writer::SingleWriter;
use crate::sys::thread_slot::{self, MAX_THREAD_SLOTS};
use core::alloc::Layout;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// The page size the pool works in (and the alignment of every block it hands out).
use crate::record::budget::PAGE;
const CLASSES: usize = 5;
/// The largest block the pool serves: 16 pages.
pub(crate) const MAX_POOLED: usize = PAGE << (CLASSES - 1);
/// Bytes carved from the region at once when a class has no free block.
const CHUNK_BYTES: usize = 256 * 1024;
const CHUNK_PAGES: usize = CHUNK_BYTES / PAGE;
/// Idle bytes a class keeps resident for reuse; the memory of blocks freed beyond this goes back
/// to the system.
const MAX_IDLE_BYTES: usize = 1024 * 1024;
/// The most [`own_bytes`] can reach: every class's idle bytes and a freshly carved chunk, every
/// thread's spare, and the cells of the whole region.
pub(crate) const MAX_OWN_BYTES: u64 =
    (CLASSES * (MAX_IDLE_BYTES + CHUNK_BYTES) + MAX_THREAD_SLOTS * PAGE + CELLS_BYTES) as u64;
/// Pages in the pool's region: 64 MiB.
pub(crate) const REGION_PAGES: usize = 1 << 14;
const REGION_BYTES: usize = REGION_PAGES * PAGE;
const CELLS_BYTES: usize = REGION_PAGES * core::mem::size_of::<Cell>();
/// The cells of one chunk's pages fill exactly one page: a chunk and its cells are made
/// accessible together.
const _: () = assert!(
    CHUNK_PAGES * core::mem::size_of::<Cell>() == PAGE && REGION_PAGES.is_multiple_of(CHUNK_PAGES)
);
/// `BASE` until the region exists: no user pointer `p` has `p - NO_REGION < REGION_BYTES`
/// (that would take an address in the top 64 MiB of the address space, the kernel's).
const NO_REGION: usize = usize::MAX - REGION_BYTES + 1;

/// One cache line of the region's head per page: the live record of the pooled block starting
/// at that page (see `pooled`), or the free-list link of the free block starting there.
#[repr(C, align(64))]
pub(crate) struct Cell {
    /// Laid out by `pooled`; word [`LINK`] doubles as the free-list link while the block is free.
    pub(crate) words: [AtomicU64; 8],
}

/// The word of a free block's cell that holds the next free block's page index + 1 (0 = none).
/// `pooled` keeps a block's size there while it is live, never while it is free.
pub(crate) const LINK: usize = 2;

/// Address of the first block page; [`NO_REGION`] until the region is reserved.
static BASE: AtomicUsize = AtomicUsize::new(NO_REGION);
/// Pages carved from the region so far: cells beyond this were never used.
static CARVED: AtomicUsize = AtomicUsize::new(0);

struct Pool {
    /// Top of each class's stack of free blocks whose memory is resident (page index + 1; 0 =
    /// empty), and of those whose memory went back to the system.
    free: [u32; CLASSES],
    released: [u32; CLASSES],
    /// Resident bytes on each class's free stack.
    idle: [usize; CLASSES],
}

static POOL: ForkMutex<Pool> = ForkMutex::new(Pool {
    free: [0; CLASSES],
    released: [0; CLASSES],
    idle: [0; CLASSES],
});

/// A thread's spare class-0 block (0 = none), on a line of its own: its owner writes it on
/// every sample it frees. Atomic only so that `own_bytes` may read it; the owner updates it
/// with plain loads and stores.
#[repr(align(64))]
struct Spare(AtomicUsize);

/// The spare of the thread holding each `thread_slot`.
static SPARES: [Spare; MAX_THREAD_SLOTS] = [const { Spare(AtomicUsize::new(0)) }; MAX_THREAD_SLOTS];

fn own_spare() -> Option<&'static AtomicUsize> {
    SPARES.get(thread_slot::current()?).map(|s| &s.0)
}

/// 0 = not set up yet, 1 = region reserved (pool on), 2 = pool off (other page size, or the
/// region could not be reserved).
static PAGES_FIT: AtomicU8 = AtomicU8::new(0);

fn pool_enabled() -> bool {
    match PAGES_FIT.load(Ordering::Acquire) {
        1 => true,
        2 => false,
        _ => set_up(),
    }
}

/// Reserves the region, once (under the pool's lock, so two first samples do not both map it).
#[cold]
fn set_up() -> bool {
    let _pool = POOL.lock();
    match PAGES_FIT.load(Ordering::Acquire) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let mapped = if page == PAGE as libc::c_long {
        // Address space only: no access, so nothing counts against the commit limit until a
        // chunk is carved.
        // SAFETY: an anonymous private mapping with no address hint has no preconditions.
        unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                CELLS_BYTES + REGION_BYTES,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        }
    } else {
        libc::MAP_FAILED
    };
    let on = mapped != libc::MAP_FAILED;
    if on {
        BASE.store(mapped as usize + CELLS_BYTES, Ordering::Release);
    }
    PAGES_FIT.store(if on { 1 } else { 2 }, Ordering::Release);
    on
}

/// Whether `ptr` lies in the pool's region (so it is a pooled block, if the program hands it
/// to `dealloc`). One subtraction and compare; false for every pointer before the region exists.
#[inline(always)]
pub(crate) fn in_region(ptr: usize) -> bool {
    ptr.wrapping_sub(BASE.load(Ordering::Relaxed)) < REGION_BYTES
}

/// The cell of the page at `ptr`, if `ptr` is in the carved part of the region.
pub(crate) fn cell_of(ptr: usize) -> Option<&'static Cell> {
    let base = BASE.load(Ordering::Acquire);
    let index = ptr.wrapping_sub(base) / PAGE;
    (index < CARVED.load(Ordering::Acquire)).then(|| cell_at(base, index))
}

/// The cell of page `index` of the region at `base`.
fn cell_at(base: usize, index: usize) -> &'static Cell {
    let cells = (base - CELLS_BYTES) as *const Cell;
    // SAFETY: every caller has `index < CARVED`, so the cell lies in the part of the region's
    // head made accessible when its chunk was carved; the mapping is never unmapped, and a
    // `Cell` is all atomics, valid for any bytes (zero when fresh).
    unsafe { &*cells.add(index) }
}

/// Calls `f` with the address and cell of every page carved so far.
pub(crate) fn for_each_cell(mut f: impl FnMut(usize, &Cell)) {
    let base = BASE.load(Ordering::Acquire);
    if base == NO_REGION {
        return;
    }
    let carved = CARVED.load(Ordering::Acquire).min(REGION_PAGES);
    for index in 0..carved {
        f(base + index * PAGE, cell_at(base, index));
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

/// A page-aligned block of `class`, or null if the region is used up (or absent). Its
/// contents are whatever its last user left, except for a fresh or released one, which is zero.
pub(crate) fn alloc(class: u8) -> *mut u8 {
    let c = class as usize;
    if c >= CLASSES || !pool_enabled() {
        return core::ptr::null_mut();
    }
    if c == 0 {
        let spare = own_spare().map_or(0, |s| s.update_unshared(|_| 0));
        if spare != 0 {
            return spare as *mut u8;
        }
    }
    let base = BASE.load(Ordering::Acquire);
    let size = block_bytes(class);
    let pages = size / PAGE;
    let mut pool = POOL.lock();
    let index = if let Some(index) = pop(&mut pool.free[c], base) {
        pool.idle[c] -= size;
        index
    } else if let Some(index) = pop(&mut pool.released[c], base) {
        index
    } else {
        // Carve a chunk: the first block is handed out, the rest go on the free stack.
        let first = CARVED.load(Ordering::Relaxed);
        if first + CHUNK_PAGES > REGION_PAGES || !open_chunk(base, first) {
            return core::ptr::null_mut();
        }
        // Published only once the chunk and its cells are accessible (`for_each_cell`).
        CARVED.store(first + CHUNK_PAGES, Ordering::Release);
        for block in (first + pages..first + CHUNK_PAGES).step_by(pages).rev() {
            push(&mut pool.free[c], base, block);
            pool.idle[c] += size;
        }
        first
    };
    (base + index * PAGE) as *mut u8
}

/// Makes the chunk starting at page `first` and its cells readable and writable.
fn open_chunk(base: usize, first: usize) -> bool {
    let cells = base - CELLS_BYTES + first * core::mem::size_of::<Cell>();
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: both ranges are page-aligned parts of the region's mapping, which only the pool
    // uses; changing their protection touches no memory in use.
    unsafe {
        libc::mprotect((base + first * PAGE) as *mut libc::c_void, CHUNK_BYTES, rw) == 0
            && libc::mprotect(cells as *mut libc::c_void, PAGE, rw) == 0
    }
}

/// Pops the top of a free stack: a block's page index.
fn pop(top: &mut u32, base: usize) -> Option<usize> {
    let index = (*top as usize).checked_sub(1)?;
    *top = cell_at(base, index).words[LINK].load(Ordering::Relaxed) as u32;
    Some(index)
}

/// Pushes the block at page `index` on a free stack.
fn push(top: &mut u32, base: usize, index: usize) {
    cell_at(base, index).words[LINK].store(*top as u64, Ordering::Relaxed);
    *top = index as u32 + 1;
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

/// [`free`] without the spare: the block goes on its class's free stack, resident while the
/// class's idle bytes allow, else with its memory handed back to the system first.
///
/// # Safety
/// As for [`free`].
unsafe fn give_back(block: *mut u8, class: u8) {
    let c = class as usize;
    let base = BASE.load(Ordering::Acquire);
    let Some(index) = (block as usize).checked_sub(base).map(|o| o / PAGE) else {
        return;
    };
    let size = block_bytes(class);
    // A sampled free runs outside the guard (it is the program's free), but parking_lot may
    // allocate when the lock is contended: that allocation is the profiler's.
    let _guard = crate::sys::guard::enter_guard();
    {
        let mut pool = POOL.lock();
        if pool.idle[c] + size <= MAX_IDLE_BYTES {
            push(&mut pool.free[c], base, index);
            pool.idle[c] += size;
            return;
        }
    }
    // SAFETY: the block is a page-aligned, page-multiple range of the region that no one uses
    // any more; dropping its pages leaves the mapping in place, reading as zero.
    unsafe { libc::madvise(block.cast(), size, libc::MADV_DONTNEED) };
    push(&mut POOL.lock().released[c], base, index);
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

/// The profiler's own memory in the pool: blocks held for reuse (threads' spares included) and
/// the cells of the pages carved so far (the live records of pooled blocks among them).
pub(crate) fn own_bytes() -> u64 {
    let mut spares = 0;
    thread_slot::for_each_claimed(|slot| {
        if SPARES
            .get(slot)
            .is_some_and(|s| s.0.load(Ordering::Relaxed) != 0)
        {
            spares += 1;
        }
    });
    let cells = CARVED.load(Ordering::Relaxed) * core::mem::size_of::<Cell>();
    let pool = POOL.lock();
    (pool.idle.iter().sum::<usize>() + spares * PAGE + cells) as u64
}

/// Hands this module's lock to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::fork_mutex::ForkLock)) {
    f(&POOL);
}

#[cfg(test)]
mod tests;
