//! The calling thread's stack bounds, for stack walkers that must never read outside it.

use core::cell::Cell;

thread_local! {
    /// `(lowest, highest)` address of the thread's stack; `(0, 0)` until first asked, `(1, 1)`
    /// if the system could not say (then no walk that needs it is attempted).
    static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// The calling thread's stack as `(lowest, highest)` address, queried once per thread; `None`
/// when unknown. Call it under the reentrancy guard: glibc may allocate (and reads
/// /proc/self/maps for the main thread).
pub(crate) fn bounds() -> Option<(usize, usize)> {
    let (lo, hi) = BOUNDS
        .try_with(|b| {
            let cached = b.get();
            if cached.1 != 0 {
                return cached;
            }
            let bounds = query().unwrap_or((1, 1));
            b.set(bounds);
            bounds
        })
        .unwrap_or((1, 1));
    (lo < hi && hi > 1).then_some((lo, hi))
}

fn query() -> Option<(usize, usize)> {
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is read and destroyed
    // exactly once; `pthread_self` is always a valid handle; the out-pointers are live locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = core::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 || addr.is_null() || size == 0 {
            return None;
        }
        Some((addr as usize, (addr as usize).checked_add(size)?))
    }
}

/// The readable part of the calling thread's stack, `(sp, highest)`, where `sp` is the
/// address of a local of the caller's caller frame region: everything from there to the top
/// is mapped. `None` if the thread's bounds are unknown or `sp` is not inside them (running on
/// a signal stack, say).
#[cfg_attr(
    not(any(feature = "frame-pointers", feature = "fast-unwind")),
    allow(dead_code)
)]
#[inline(always)]
pub(crate) fn live_region() -> Option<(usize, usize)> {
    let anchor = 0u8;
    let sp = core::hint::black_box(&anchor) as *const u8 as usize;
    let (lo, hi) = bounds()?;
    (lo <= sp && sp < hi).then_some((sp, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_contain_the_current_stack_and_differ_per_thread() {
        let (lo, hi) = bounds().unwrap();
        let here = 0u8;
        let sp = &here as *const u8 as usize;
        assert!(lo <= sp && sp < hi, "{lo:#x} <= {sp:#x} < {hi:#x}");
        let (lo2, hi2) = std::thread::spawn(|| bounds().unwrap()).join().unwrap();
        assert!(hi2 <= lo || lo2 >= hi, "threads have distinct stacks");
        assert!(live_region().is_some());
    }
}
