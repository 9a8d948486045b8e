//! Stack capture: raw return addresses of the program's frames, innermost first, without the
//! unwinder's and the allocator's own frames. Any stack walker feeds a [`FrameSink`].

use core::sync::atomic::{AtomicUsize, Ordering};

/// The deepest stack recorded; deeper stacks keep their innermost frames.
pub const MAX_STACK_DEPTH: usize = 64;

/// Entry addresses of the allocator's own cold functions (those on the stack when a stack is
/// captured), supplied by the allocator since they are generic over the inner allocator.
pub(crate) type OwnFunctions = [usize; 4];

/// Frames that were classified: direct-mapped caches of return addresses known to lie inside
/// (`OWN_IPS`) or outside (`FOREIGN_IPS`) the allocator's own functions. Racy by design: each
/// slot holds a whole address or 0, and a stale or lost entry only costs one lookup again.
static OWN_IPS: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
static FOREIGN_IPS: [AtomicUsize; 1024] = [const { AtomicUsize::new(0) }; 1024];

unsafe extern "C" {
    /// From the unwinder runtime Rust links on Linux: the entry address of the function that
    /// contains `pc`, or null. Allocation-free (it searches `.eh_frame_hdr`).
    fn _Unwind_FindEnclosingFunction(pc: *mut core::ffi::c_void) -> *mut core::ffi::c_void;
}

fn slot(ip: usize, n: usize) -> usize {
    (ip.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % n
}

/// Whether the return address `ip` lies in one of `own` (the allocator's cold functions).
///
/// Frame addresses are no guide here: with optimisation the allocator's entry points are
/// tail calls and locals can sit anywhere, so frames are told apart by the function they are in.
pub(crate) fn is_own_frame(ip: usize, own: &OwnFunctions) -> bool {
    let o = &OWN_IPS[slot(ip, OWN_IPS.len())];
    if o.load(Ordering::Relaxed) == ip {
        return true;
    }
    let f = &FOREIGN_IPS[slot(ip, FOREIGN_IPS.len())];
    if f.load(Ordering::Relaxed) == ip {
        return false;
    }
    let entry = function_entry(ip);
    let own_frame = entry != 0 && own.contains(&entry);
    if own_frame {
        o.store(ip, Ordering::Relaxed)
    } else {
        f.store(ip, Ordering::Relaxed)
    }
    own_frame
}

/// How many innermost frames may belong to the unwinder and the allocator before the
/// program's own frames start; past this, nothing is skipped.
const MAX_SKIPPED: usize = 12;

/// Collects the program's frames from a stream of return addresses, innermost first: skips the
/// unwinder's and allocator's frames (everything up to the last frame in `own` among the first
/// [`MAX_SKIPPED`]), then keeps up to [`MAX_STACK_DEPTH`] addresses. Any stack walker feeds it.
pub(crate) struct FrameSink<'a> {
    buf: &'a mut [usize; MAX_STACK_DEPTH],
    own: &'a OwnFunctions,
    head: [usize; MAX_SKIPPED],
    seen: usize,
    depth: usize,
    started: bool,
    /// Index in `head` of the last own frame seen.
    last_own: Option<usize>,
}

impl<'a> FrameSink<'a> {
    pub(crate) fn new(buf: &'a mut [usize; MAX_STACK_DEPTH], own: &'a OwnFunctions) -> Self {
        FrameSink {
            buf,
            own,
            head: [0; MAX_SKIPPED],
            seen: 0,
            depth: 0,
            started: false,
            last_own: None,
        }
    }

    /// Offers the next (outer) frame's return address; `false` once the buffer is full.
    ///
    /// Inlined into the walkers: past the allocator's frames a push is a store and a compare
    /// (a deep stack pushes 64 of them at every capture in exact mode).
    #[inline(always)]
    pub(crate) fn push(&mut self, ip: usize) -> bool {
        if self.started && ip != 0 {
            return self.keep(ip);
        }
        self.push_head(ip)
    }

    /// [`FrameSink::push`] of the end marker or of a frame among the innermost ones, which
    /// may still be the unwinder's or the allocator's own.
    #[cold]
    #[inline(never)]
    fn push_head(&mut self, ip: usize) -> bool {
        if ip == 0 {
            // The unwinder's end marker, not a frame.
            return true;
        }
        // Here the program's frames have not started: `push` keeps those itself.
        if self.seen < MAX_SKIPPED {
            if is_own_frame(ip, self.own) {
                self.last_own = Some(self.seen);
            } else if self.last_own.is_some() {
                // The first foreign frame after the allocator's: the program starts here.
                self.started = true;
                self.seen += 1;
                return self.keep(ip);
            }
            if let Some(slot) = self.head.get_mut(self.seen) {
                *slot = ip;
            }
            self.seen += 1;
            return true;
        }
        // No own frame among the first ones: keep everything rather than lose the stack.
        self.started = true;
        let head = self.head;
        for &h in &head {
            if !self.keep(h) {
                return false;
            }
        }
        self.keep(ip)
    }

    #[inline(always)]
    fn keep(&mut self, ip: usize) -> bool {
        if let Some(slot) = self.buf.get_mut(self.depth) {
            *slot = ip;
            self.depth += 1;
        }
        self.depth < MAX_STACK_DEPTH
    }

    /// The allocator's own functions this sink skips.
    pub(crate) fn own(&self) -> &OwnFunctions {
        self.own
    }

    /// Stores `frames` as the result, as a walk that kept exactly them would (a replay).
    pub(crate) fn replay(&mut self, frames: &[usize]) {
        let n = frames.len().min(MAX_STACK_DEPTH);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(..n), frames.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.depth = n;
        self.started = true;
    }

    /// Ends the walk and returns the frames kept (a walker's memo stores them). Called after
    /// the last push; calling it again returns the same frames.
    pub(crate) fn settle(&mut self) -> &[usize] {
        if !self.started {
            // A short stack that never left the allocator's frames, or had none of them.
            let from = self.last_own.map_or(0, |i| i + 1);
            let mut depth = 0;
            let head = self.head.iter().take(self.seen).skip(from);
            for (slot, &h) in self.buf.iter_mut().zip(head) {
                *slot = h;
                depth += 1;
            }
            self.depth = depth;
            self.started = true;
        }
        self.buf.get(..self.depth).unwrap_or(&[])
    }

    /// Number of addresses stored. By reference: taking the sink by value copies it (~150
    /// bytes) on every capture.
    pub(crate) fn finish(&mut self) -> usize {
        self.settle().len()
    }
}

/// Entry address of the function containing the return address `ip` (0 if unknown).
pub(crate) fn function_entry(ip: usize) -> usize {
    // `ip` is a return address: look up `ip - 1`, the call instruction, which is always inside
    // the calling function even when the call is its last instruction.
    // SAFETY: the function only reads the unwind tables; any address is acceptable input.
    unsafe { _Unwind_FindEnclosingFunction(ip.wrapping_sub(1) as *mut _) as usize }
}

/// Checks a stack walker against the system unwinder (for the walkers' unit tests).
#[cfg(test)]
pub(crate) mod walker_check {
    use super::{FrameSink, MAX_STACK_DEPTH};

    /// Return addresses from `walk` and from libgcc, taken in one function.
    #[inline(never)]
    fn both_walks(walk: fn(&mut FrameSink<'_>) -> bool) -> (Vec<usize>, Vec<usize>) {
        let mut buf = [0usize; MAX_STACK_DEPTH];
        let own = [0usize; 4];
        let mut sink = FrameSink::new(&mut buf, &own);
        assert!(walk(&mut sink));
        let n = sink.finish();
        let walked = buf[..n].to_vec();
        let mut system = Vec::new();
        backtrace::trace(|f| {
            system.push(f.ip() as usize);
            true
        });
        (walked, system)
    }

    #[inline(never)]
    fn nested(depth: usize, walk: fn(&mut FrameSink<'_>) -> bool) -> (Vec<usize>, Vec<usize>) {
        let r = if depth == 0 {
            both_walks(walk)
        } else {
            nested(depth - 1, walk)
        };
        core::hint::black_box(depth);
        r
    }

    /// Walks 12 frames deep with `walk` and with libgcc; from their first common frame on, at
    /// least `min_common` return addresses must agree.
    pub(crate) fn agrees_with_the_system_unwinder(
        walk: fn(&mut FrameSink<'_>) -> bool,
        min_common: usize,
    ) {
        let (walked, system) = nested(12, walk);
        let start = walked
            .iter()
            .position(|a| system.contains(a))
            .expect("a common frame");
        let common = &walked[start..];
        let at = system.iter().position(|a| *a == common[0]).unwrap();
        let n = common.len().min(system.len() - at);
        assert!(n >= min_common, "{walked:x?}\n{system:x?}");
        assert_eq!(common[..n], system[at..at + n], "{walked:x?}\n{system:x?}");
    }
}
