//! The default unwinder for exact recording (leak checks, interval 1): DWARF CFI unwinding
//! with a per-thread cache of unwind rules keyed by address (the `framehop` crate): about
//! 10 ns a frame against ~100 ns for `_Unwind_Backtrace`, which searches and interprets the
//! unwind tables again for every frame of every stack (feature `fast-unwind`, on by default).
//!
//! The loaded objects and their `.eh_frame_hdr`/`.eh_frame` (already mapped in memory) are
//! enumerated once with `dl_iterate_phdr`; when a walk reaches an address outside every known
//! object (a library loaded later) the list is rebuilt for the next walk. Stack memory is read
//! only inside the calling thread's live stack, so a wrong rule ends the walk, never faults.
//! Unloading is watched for: the loader counts the objects it ever removed (`dlpi_subs`), and
//! every walk compares that count with the one the object list was built at, so a list that may
//! point into an unloaded object's tables is never used (it is rebuilt, or after
//! [`MAX_REBUILDS`] the system unwinder takes over).

use crate::lock::ForkMutex;
use crate::stacks::FrameSink;
use core::cell::RefCell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, MustNotAllocateDuringUnwind, Unwinder,
};

type Section = &'static [u8];
type Native = UnwinderX86_64<Section, MustNotAllocateDuringUnwind>;
type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

/// Frames followed at most: the deepest stack kept plus the allocator's own frames.
const MAX_WALK: usize = crate::stacks::MAX_STACK_DEPTH + 16;
/// Rebuilds of the object list at most (each leaks the previous list, which other threads may
/// still be reading); past this, walks through unknown objects just stop early.
const MAX_REBUILDS: usize = 16;

/// The loaded objects' unwind tables, and the loader's unload count when they were listed.
struct Objects {
    unwinder: Native,
    subs: u64,
}

/// The current object list. Never freed while the process runs: readers hold no lock.
static CURRENT: AtomicPtr<Objects> = AtomicPtr::new(core::ptr::null_mut());
static REBUILDS: AtomicUsize = AtomicUsize::new(0);
static STALE: AtomicBool = AtomicBool::new(false);

/// Stack words one walk may read and still be remembered for replay.
const MEMO_READS: usize = 2 * MAX_WALK;

/// The previous walk of this thread, to be replayed when nothing it depended on changed.
///
/// A walk is a pure function of its starting registers, the object list, and the stack words
/// it read. A program allocating in a loop walks the same stack again and again: when the
/// registers and object list are the same and every word the last walk read still holds the
/// value it read then, the walk would yield the same return addresses, so they are replayed
/// after checking those words (~40 loads) instead of re-running the unwind rules.
struct Memo {
    valid: bool,
    sp: u64,
    bp: u64,
    objects: usize,
    reads: [(u64, u64); MEMO_READS],
    n_reads: usize,
    frames: [usize; MAX_WALK],
    n_frames: usize,
}

/// Per-thread unwinding state: framehop's rule cache and the replay memo (~20 KiB, boxed).
struct ThreadState {
    cache: Cache,
    memo: Memo,
}

impl ThreadState {
    fn new() -> Self {
        ThreadState {
            cache: Cache::new_in(),
            memo: Memo {
                valid: false,
                sp: 0,
                bp: 0,
                objects: 0,
                reads: [(0, 0); MEMO_READS],
                n_reads: 0,
                frames: [0; MAX_WALK],
                n_frames: 0,
            },
        }
    }
}

thread_local! {
    /// This thread's rule cache and memo, created on its first capture.
    static CACHE: RefCell<Option<Box<ThreadState>>> = const { RefCell::new(None) };
}

/// Feeds the calling thread's return addresses, innermost first, to `sink`. `false` (nothing
/// fed) when this path does not apply: not recording exactly, unknown stack bounds, running
/// on another stack, or the thread's cache is unavailable (thread teardown).
#[inline(never)]
pub(crate) fn walk(sink: &mut FrameSink<'_>) -> bool {
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: copies three registers into locals; reads and writes no memory.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    let Some((lo, hi)) = crate::thread_stack::live_region() else {
        return false;
    };
    if (sp as usize) < lo.saturating_sub(4096) || sp as usize >= hi {
        return false;
    }
    let lo = (sp as usize).min(lo);
    let Some(unwinder) = current() else {
        return false;
    };
    let in_stack = |a: usize| a >= lo && a <= hi - 8 && a.is_multiple_of(8);
    let objects = unwinder as *const Native as usize;
    let walked = CACHE.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return false;
        };
        let state = slot.get_or_insert_with(|| Box::new(ThreadState::new()));
        let ThreadState { cache, memo } = &mut **state;
        if memo.valid && memo.sp == sp && memo.bp == bp && memo.objects == objects {
            let unchanged = memo.reads[..memo.n_reads].iter().all(|&(a, v)| {
                // SAFETY: as in `read_stack` below: aligned, inside this thread's live stack.
                in_stack(a as usize) && unsafe { (a as *const u64).read() } == v
            });
            if unchanged {
                for &ra in &memo.frames[..memo.n_frames] {
                    if !sink.push(ra) {
                        break;
                    }
                }
                return true;
            }
        }
        memo.valid = true;
        memo.n_reads = 0;
        memo.n_frames = 0;
        let (reads, n_reads, memo_valid) = (&mut memo.reads, &mut memo.n_reads, &mut memo.valid);
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let a = addr as usize;
            if in_stack(a) {
                // SAFETY: `a` is 8-byte aligned and inside the calling thread's stack between
                // its current stack pointer and its top, which is mapped and readable.
                let v = unsafe { (a as *const u64).read() };
                if *n_reads < MEMO_READS {
                    reads[*n_reads] = (addr, v);
                    *n_reads += 1;
                } else {
                    *memo_valid = false;
                }
                Ok(v)
            } else {
                Err(())
            }
        };
        let mut frames = unwinder.iter_frames(
            pc,
            UnwindRegsX86_64::new(pc, sp, bp),
            cache,
            &mut read_stack,
        );
        let mut last = 0;
        let mut complete = false;
        let mut yielded = [0usize; MAX_WALK];
        let mut n_yielded = 0;
        for _ in 0..MAX_WALK {
            match frames.next() {
                Ok(Some(FrameAddress::InstructionPointer(_))) => {}
                Ok(Some(FrameAddress::ReturnAddress(ra))) => {
                    last = ra.get();
                    if n_yielded < MAX_WALK {
                        yielded[n_yielded] = last as usize;
                        n_yielded += 1;
                    }
                    if !sink.push(last as usize) {
                        complete = true;
                        break;
                    }
                }
                Ok(None) => {
                    complete = true;
                    break;
                }
                Err(_) => break,
            }
        }
        memo.frames = yielded;
        memo.n_frames = n_yielded;
        memo.sp = sp;
        memo.bp = bp;
        memo.objects = objects;
        if !complete && last != 0 && !knows(unwinder, last) {
            STALE.store(true, Ordering::Relaxed);
            memo.valid = false;
        }
        true
    });
    walked.unwrap_or(false)
}

/// Whether `address` lies in an object the unwinder knows.
fn knows(unwinder: &Native, address: u64) -> bool {
    address < unwinder.max_known_code_address()
}

/// The object list, built on first use and rebuilt when a walk met an unknown address.
/// Called under the reentrancy guard: building allocates.
fn current() -> Option<&'static Native> {
    let mut ptr = CURRENT.load(Ordering::Acquire);
    let subs = recent_unloads();
    // SAFETY: a published list is never freed (see `CURRENT`).
    let unloaded = !ptr.is_null() && unsafe { (*ptr).subs } != subs;
    if unloaded && REBUILDS.load(Ordering::Relaxed) >= MAX_REBUILDS {
        // The list may describe an unloaded object and may not be rebuilt again.
        return None;
    }
    let stale = unloaded
        || (STALE.load(Ordering::Relaxed) && REBUILDS.load(Ordering::Relaxed) < MAX_REBUILDS);
    if ptr.is_null() || stale {
        STALE.store(false, Ordering::Relaxed);
        let subs = unloads();
        let fresh = Box::into_raw(Box::new(Objects {
            unwinder: build(),
            subs,
        }));
        match CURRENT.compare_exchange(ptr, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                REBUILDS.fetch_add(1, Ordering::Relaxed);
                ptr = fresh;
            }
            Err(other) => {
                // Another thread installed a list first; ours was never shared.
                // SAFETY: `fresh` came from `Box::into_raw` just above and was not published.
                drop(unsafe { Box::from_raw(fresh) });
                ptr = other;
            }
        }
    }
    // SAFETY: a published list is never freed (see `CURRENT`), so it lives for 'static.
    (!ptr.is_null()).then(|| unsafe { &(*ptr).unwinder })
}

/// Held around every call into the loader's object list (`dl_iterate_phdr` takes the loader's
/// lock). The `pthread_atfork` prepare handler takes this gate too, so no thread of ours is
/// inside the loader's lock at `fork()` — a child would inherit it locked and hang.
static LOADER_GATE: ForkMutex<()> = ForkMutex::new(());

/// When the loader was last asked, in coarse monotonic milliseconds, and what it said.
static LAST_ASKED_MS: AtomicU64 = AtomicU64::new(0);
static LAST_UNLOADS: AtomicU64 = AtomicU64::new(0);

/// The loader's unload count, asked at most once per millisecond process-wide: asking costs
/// about a microsecond (the loader walks its object list under its lock), a walk ~0.5 µs. An
/// object unloaded and another mapped at the same address within that millisecond is the
/// residual window in which a walk could read the old object's tables.
fn recent_unloads() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the coarse monotonic clock needs no privileges.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    let now = (ts.tv_sec as u64).wrapping_mul(1000) + ts.tv_nsec as u64 / 1_000_000 + 1;
    if LAST_ASKED_MS.swap(now, Ordering::Relaxed) != now {
        LAST_UNLOADS.store(unloads(), Ordering::Relaxed);
    }
    LAST_UNLOADS.load(Ordering::Relaxed)
}

/// How many objects the dynamic loader has unloaded since the process started.
fn unloads() -> u64 {
    let _gate = LOADER_GATE.lock();
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info`; `data` is the `u64` below.
        unsafe { *data.cast::<u64>() = (*info).dlpi_subs };
        1
    }
    let mut subs = 0u64;
    // SAFETY: `first` matches the callback type and writes only the `u64` passed as `data`.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut subs as *mut u64).cast()) };
    subs
}

fn build() -> Native {
    let _gate = LOADER_GATE.lock();
    let mut unwinder = Native::new();
    // SAFETY: `add_object` matches the callback type and only uses `data` as the
    // `&mut Native` passed here, for the duration of this call.
    unsafe { libc::dl_iterate_phdr(Some(add_object), (&mut unwinder as *mut Native).cast()) };
    unwinder
}

unsafe extern "C" fn add_object(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of the callback, and
    // `data` is the unwinder `build` passed (see there).
    let (info, unwinder) = unsafe { (&*info, &mut *data.cast::<Native>()) };
    if let Some(module) = module_of(info) {
        unwinder.add_module(module);
    }
    0
}

fn module_of(info: &libc::dl_phdr_info) -> Option<Module<Section>> {
    if info.dlpi_phdr.is_null() || info.dlpi_phnum == 0 {
        return None;
    }
    // SAFETY: the loader guarantees `dlpi_phnum` program headers at `dlpi_phdr`.
    let headers = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let bias = info.dlpi_addr;
    let loads = || headers.iter().filter(|h| h.p_type == libc::PT_LOAD);
    let start = loads().map(|h| bias + h.p_vaddr).min()?;
    let end = loads().map(|h| bias + h.p_vaddr + h.p_memsz).max()?;
    let text = loads()
        .find(|h| h.p_flags & libc::PF_X != 0)
        .map(|h| h.p_vaddr..h.p_vaddr + h.p_memsz);
    let hdr = headers.iter().find(|h| h.p_type == libc::PT_GNU_EH_FRAME)?;
    let hdr_avma = bias + hdr.p_vaddr;
    // SAFETY: the PT_GNU_EH_FRAME segment is mapped, readable, and stays mapped while the
    // object is loaded (see the module docs on unloading).
    let hdr_data: Section =
        unsafe { core::slice::from_raw_parts(hdr_avma as *const u8, hdr.p_memsz as usize) };
    let eh_frame_avma = eh_frame_address(hdr_data, hdr_avma)?;
    // `.eh_frame` runs to at most the end of the loaded segment that holds it.
    let segment_end = loads()
        .map(|h| (bias + h.p_vaddr, bias + h.p_vaddr + h.p_filesz))
        .find(|&(s, e)| s <= eh_frame_avma && eh_frame_avma < e)?
        .1;
    // SAFETY: as above: inside a mapped, readable, loaded segment of the object.
    let eh_frame: Section = unsafe {
        core::slice::from_raw_parts(
            eh_frame_avma as *const u8,
            (segment_end - eh_frame_avma) as usize,
        )
    };
    let svma = |avma: u64| avma - bias;
    let sections = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: text,
        eh_frame_svma: Some(svma(eh_frame_avma)..svma(segment_end)),
        eh_frame: Some(eh_frame),
        eh_frame_hdr_svma: Some(hdr.p_vaddr..hdr.p_vaddr + hdr.p_memsz),
        eh_frame_hdr: Some(hdr_data),
        ..Default::default()
    };
    Some(Module::new(String::new(), start..end, bias, sections))
}

/// Decodes `eh_frame_ptr` from an `.eh_frame_hdr` (version 1) mapped at `hdr_avma`.
fn eh_frame_address(hdr: &[u8], hdr_avma: u64) -> Option<u64> {
    if hdr.len() < 8 || hdr[0] != 1 {
        return None;
    }
    let encoding = hdr[1];
    let field = &hdr[4..];
    let value: i64 = match encoding & 0x0f {
        0x03 => u32::from_le_bytes(field.get(..4)?.try_into().ok()?) as i64,
        0x0b => i32::from_le_bytes(field.get(..4)?.try_into().ok()?) as i64,
        0x04 | 0x0c => i64::from_le_bytes(field.get(..8)?.try_into().ok()?),
        _ => return None,
    };
    let base = match encoding & 0x70 {
        0x00 => 0,
        0x10 => hdr_avma + 4,
        0x30 => hdr_avma,
        _ => return None,
    };
    Some(base.wrapping_add(value as u64))
}

/// Hands the loader gate to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::lock::ForkLock)) {
    f(&LOADER_GATE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_list_covers_this_code() {
        let unwinder = build();
        let here = the_object_list_covers_this_code as *const () as usize as u64;
        assert!(knows(&unwinder, here));
    }

    #[test]
    fn same_stack_as_the_system_unwinder() {
        // Three times: the later walks are served from the rule cache and the replay memo.
        for _ in 0..3 {
            crate::stacks::walker_check::agrees_with_the_system_unwinder(walk, 14);
        }
    }

    #[test]
    fn eh_frame_pointer_encodings() {
        let mut hdr = [1u8, 0x1b, 0x03, 0x3b, 0, 0, 0, 0];
        hdr[4..].copy_from_slice(&(-100i32).to_le_bytes());
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x1000 + 4 - 100));
        hdr[1] = 0x03;
        hdr[4..].copy_from_slice(&0x5000u32.to_le_bytes());
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x5000));
        hdr[0] = 2;
        assert_eq!(eh_frame_address(&hdr, 0x1000), None);
    }
}
