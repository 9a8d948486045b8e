//! The loaded objects: their unwind tables, listed with `dl_iterate_phdr`, and the loader's unload count.

use super::native::{MAX_REBUILDS, Native, Section};
use super::rules::RuleTable;
use crate::sys::fork_mutex::ForkMutex;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};
/// The loaded objects' unwind tables, the rules learnt for them, and the loader's unload count
/// when they were listed.
pub(super) struct Objects {
    pub(super) unwinder: Native,
    pub(super) rules: RuleTable,
    pub(super) subs: u64,
}

/// The current object list. Never freed while the process runs: readers hold no lock.
pub(super) static CURRENT: AtomicPtr<Objects> = AtomicPtr::new(core::ptr::null_mut());
pub(super) static REBUILDS: AtomicUsize = AtomicUsize::new(0);
pub(super) static STALE: AtomicBool = AtomicBool::new(false);

/// Whether `address` lies in an object the unwinder knows.
pub(super) fn knows(unwinder: &Native, address: u64) -> bool {
    address < unwinder.max_known_code_address()
}

/// The object list, built on first use and rebuilt when a walk met an unknown address.
/// Called under the reentrancy guard: building allocates.
pub(super) fn current() -> Option<&'static Objects> {
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
            rules: RuleTable::new(),
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
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// Held around every call into the loader's object list (`dl_iterate_phdr` takes the loader's
/// lock). The `pthread_atfork` prepare handler takes this gate too, so no thread of ours is
/// inside the loader's lock at `fork()` — a child would inherit it locked and hang.
pub(super) static LOADER_GATE: ForkMutex<()> = ForkMutex::new(());

/// When the loader was last asked, in coarse monotonic milliseconds, and what it said.
pub(super) static LAST_ASKED_MS: AtomicU64 = AtomicU64::new(0);
pub(super) static LAST_UNLOADS: AtomicU64 = AtomicU64::new(0);

/// The loader's unload count, asked at most once per millisecond process-wide: asking costs
/// about a microsecond (the loader walks its object list under its lock), a walk ~0.5 µs. An
/// object unloaded and another mapped at the same address within that millisecond is the
/// residual window in which a walk could read the old object's tables.
pub(super) fn recent_unloads() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the coarse monotonic clock needs no privileges.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    let now = (ts.tv_sec as u64).wrapping_mul(1000) + ts.tv_nsec as u64 / 1_000_000 + 1;
    // Loaded first: the swap is a locked instruction, and all threads share the line.
    if LAST_ASKED_MS.load(Ordering::Relaxed) != now
        && LAST_ASKED_MS.swap(now, Ordering::Relaxed) != now
    {
        LAST_UNLOADS.store(unloads(), Ordering::Relaxed);
    }
    LAST_UNLOADS.load(Ordering::Relaxed)
}

/// How many objects the dynamic loader has unloaded since the process started.
pub(super) fn unloads() -> u64 {
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

pub(super) fn build() -> Native {
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

pub(super) fn module_of(info: &libc::dl_phdr_info) -> Option<Module<Section>> {
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
pub(super) fn eh_frame_address(hdr: &[u8], hdr_avma: u64) -> Option<u64> {
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
