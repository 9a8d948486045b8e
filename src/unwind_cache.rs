//! A caching stack walker: DWARF unwinding once per call site, then a table lookup per frame.
//!
//! libgcc's `_Unwind_Backtrace` interprets DWARF call-frame information for every frame of
//! every sample: ~130 ns a frame, 4 µs for a stack of 30. But for a given return address the
//! distance between the stack pointer of that frame (at its call) and the stack pointer of its
//! caller is almost always a constant: the frame's size at that call site. So each walk done by
//! libgcc teaches a table `return address → frame size`, and later walks follow the stack by
//! themselves (x86_64: a return address sits just below its caller's stack pointer):
//!
//! ```text
//! sp[0] = stack pointer read in `capture`        size[0] = learned size of `capture`
//! sp[i] = sp[i-1] + size[i-1]
//! ra[i] = *(sp[i] - 8)                            size[i] = table[ra[i]]
//! ```
//!
//! Any doubt sends the sample back to libgcc (which also teaches the table): a return address
//! never seen, one seen with two different sizes (alloca, stack realignment), a stack pointer
//! outside the thread's stack or not increasing. Memory is read only inside the calling
//! thread's stack, between the current stack pointer and the stack's top, so a wrong size can
//! give a wrong frame but never a fault.

use crate::stacks::{FrameSink, MAX_STACK_DEPTH, OwnFunctions};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Direct-mapped cache: each slot holds `(return address << 16) | delta` in one word, so it can
/// never be read torn. User-space addresses on x86_64 fit in 47 bits.
static DELTAS: [AtomicU64; 1 << 13] = [const { AtomicU64::new(0) }; 1 << 13];
/// Delta value meaning "the walk ends here" (the outermost frame libgcc reported).
const END: u64 = 1;
/// Delta value meaning "not a constant: always ask libgcc".
const VARIABLE: u64 = 2;
/// Size of `capture`'s own frame (from the stack pointer read in its body); 0 until learned.
static CAPTURE_DELTA: AtomicUsize = AtomicUsize::new(0);

/// Frames walked at most: the deepest stack kept plus the allocator's own frames.
const MAX_WALK: usize = MAX_STACK_DEPTH + 16;

fn slot(ra: usize) -> &'static AtomicU64 {
    &DELTAS[((ra as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - 13)) as usize]
}

fn lookup(ra: usize) -> Option<u64> {
    let v = slot(ra).load(Ordering::Relaxed);
    (v >> 16 == ra as u64 && v != 0).then_some(v & 0xffff)
}

fn learn(ra: usize, delta: u64) {
    if ra == 0 || (ra as u64) >> 47 != 0 {
        return;
    }
    let delta = match lookup(ra) {
        // The outermost frame stays the outermost frame.
        Some(END) => END,
        Some(old) if old != delta => VARIABLE,
        _ if delta >= 1 << 16 || (delta != END && delta % 8 != 0) => VARIABLE,
        _ => delta,
    };
    slot(ra).store(((ra as u64) << 16) | delta, Ordering::Relaxed);
}

fn mark_end(ra: usize) {
    if ra != 0 && (ra as u64) >> 47 == 0 {
        slot(ra).store(((ra as u64) << 16) | END, Ordering::Relaxed);
    }
}

/// The stack pointer of the caller (an `#[inline(always)]` read in `capture`'s own frame).
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads the stack pointer register into a general register; no memory access.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Walks the stack from `capture`'s frame using learned frame sizes. `None` when any frame is
/// in doubt: the caller then walks with libgcc and a [`Learner`].
pub(crate) fn walk(sp: usize, buf: &mut [usize; MAX_STACK_DEPTH], own: &OwnFunctions) -> Option<usize> {
    let mut size = CAPTURE_DELTA.load(Ordering::Relaxed);
    if size == 0 {
        return None;
    }
    let (lo, hi) = crate::thread_stack::bounds()?;
    if sp < lo || sp >= hi {
        return None;
    }
    let mut sink = FrameSink::new(buf, own);
    let mut sp = sp;
    for _ in 0..MAX_WALK {
        let next = sp.checked_add(size)?;
        if next <= sp || next > hi || next % 8 != 0 {
            return None;
        }
        // SAFETY: `sp < next - 8 < hi`: the word lies inside this thread's mapped stack, between
        // the current stack pointer and the stack's top, and is 8-byte aligned.
        let ra = unsafe { ((next - 8) as *const usize).read() };
        if ra == 0 {
            break;
        }
        match lookup(ra)? {
            END => {
                sink.push(ra);
                break;
            }
            VARIABLE => return None,
            s => {
                if !sink.push(ra) {
                    break;
                }
                size = s as usize;
                sp = next;
            }
        }
    }
    Some(sink.finish())
}

/// Watches a libgcc walk and teaches the frame-size table.
pub(crate) struct Learner {
    sp: usize,
    capture_entry: usize,
    /// The previous frame's return address and stack pointer, once `capture`'s frame is seen.
    prev: Option<(usize, usize)>,
    in_capture: bool,
    frames: usize,
}

impl Learner {
    /// `sp` is the stack pointer read in `capture`, `capture_entry` its entry address.
    pub(crate) fn new(sp: usize, capture_entry: usize) -> Self {
        Learner { sp, capture_entry, prev: None, in_capture: false, frames: 0 }
    }

    /// One frame of the libgcc walk: its instruction pointer and stack pointer.
    pub(crate) fn observe(&mut self, ip: usize, sp: usize) {
        self.frames += 1;
        match self.prev {
            None => {
                // Frames inside the unwinder come first; the walk starts at `capture`'s frame.
                if sp == self.sp && crate::stacks::function_entry(ip) == self.capture_entry {
                    self.prev = Some((ip, sp));
                    self.in_capture = true;
                }
            }
            Some((prev_ip, _)) if ip == 0 => {
                // libgcc's end marker: the previous frame is the outermost one.
                mark_end(prev_ip);
                self.prev = None;
                self.frames = MAX_WALK;
            }
            Some((prev_ip, prev_sp)) => {
                let size = if sp > prev_sp { (sp - prev_sp) as u64 } else { VARIABLE };
                if self.in_capture {
                    // `capture` has a fixed frame; a different value means something is off.
                    let old = CAPTURE_DELTA.load(Ordering::Relaxed);
                    if size != VARIABLE && (old == 0 || old == size as usize) {
                        CAPTURE_DELTA.store(size as usize, Ordering::Relaxed);
                    }
                    self.in_capture = false;
                } else {
                    learn(prev_ip, size);
                }
                self.prev = Some((ip, sp));
            }
        }
    }

    /// The walk ended by itself (not cut short): its last frame is the outermost one.
    pub(crate) fn finish(self, complete: bool) {
        let Some((ra, _)) = self.prev else { return };
        if complete && self.frames < MAX_WALK {
            mark_end(ra);
        }
    }
}
