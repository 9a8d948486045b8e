//! A thread that frees and never allocates has no exit hook (a thread registers on its first
//! allocation), so nothing would publish frees it held back in its batch when it exits: it
//! must publish them as it goes. The thread is a bare `pthread`, so no runtime code of the
//! standard library allocates on it either.

use allocator_test::program_traffic;
use std::alloc::{Layout, alloc, dealloc};

const BLOCKS: usize = 1000;
const SIZE: usize = 64;

/// Frees every block of the `Vec<usize>` of addresses at `arg`; allocates nothing.
extern "C" fn free_all(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the `&Vec<usize>` the test passed, alive until the thread is joined.
    let blocks = unsafe { &*(arg as *const Vec<usize>) };
    for &p in blocks {
        // SAFETY: each address came from `alloc` with this layout and is freed once, here.
        unsafe { dealloc(p as *mut u8, Layout::from_size_align_unchecked(SIZE, 8)) };
    }
    std::ptr::null_mut()
}

/// One test per binary: libtest's own allocations when another test finishes would land in
/// the measured window.
#[test]
fn frees_of_a_thread_that_never_allocates_reach_the_totals() {
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    let blocks: Vec<usize> = (0..BLOCKS)
        // SAFETY: the layout has a non-zero size.
        .map(|_| unsafe { alloc(layout) } as usize)
        .collect();
    assert!(blocks.iter().all(|&p| p != 0));
    let before = heapsampler::totals();
    let mut thread: libc::pthread_t = 0;
    // SAFETY: `free_all` matches the start routine's signature; `blocks` outlives the join.
    let rc = unsafe {
        libc::pthread_create(
            &mut thread,
            std::ptr::null(),
            free_all,
            &blocks as *const Vec<usize> as *mut libc::c_void,
        )
    };
    assert_eq!(rc, 0, "pthread_create");
    // SAFETY: `thread` was created above and is joined once.
    assert_eq!(
        unsafe { libc::pthread_join(thread, std::ptr::null_mut()) },
        0
    );
    let after = heapsampler::totals();
    let [_, _, free_bytes, free_objects] = program_traffic(&before, &after);
    // 64,000 bytes, far below a batch: before the fix they stayed in the exited thread.
    assert_eq!(
        (free_bytes, free_objects),
        ((BLOCKS * SIZE) as u64, BLOCKS as u64)
    );
}
