//! The default unwinder for exact recording (leak checks, interval 1) and for samples: DWARF
//! CFI unwinding with the unwind rules of the program's frames learnt once per address
//! (through the `framehop` crate) and kept in a table shared by all threads, plus per-thread
//! memos of the last two walks, either replayed when none of the words that decided it
//! changed (a loop may allocate from two places in turn): a few
//! nanoseconds a frame against ~100 ns for `_Unwind_Backtrace`, which searches and interprets
//! the unwind tables again for every frame of every stack (feature `fast-unwind`, on by
//! default).
//!
//! The loaded objects and their `.eh_frame_hdr`/`.eh_frame` (already mapped in memory) are
//! enumerated once with `dl_iterate_phdr`; when a walk reaches an address outside every known
//! object (a library loaded later) the list is rebuilt for the next walk. Stack memory is read
//! only inside the calling thread's live stack, so a wrong rule ends the walk, never faults.
//! Unloading is watched for: the loader counts the objects it ever removed (`dlpi_subs`), and
//! every walk compares that count with the one the object list was built at, so a list that may
//! point into an unloaded object's tables is never used (it is rebuilt, or after
//! [`MAX_REBUILDS`] the system unwinder takes over). Learnt rules belong to one object list.
//!
//! A walk that cannot be replayed whole may still join the previous one: programs sample many
//! stacks that differ only in their inner frames, so when a walk reaches a frame where the
//! previous walk stood (same return address, stack address, and bp where it matters), every
//! word that decided the previous walk from there outward still holds and the lowest word it
//! read is inside this walk's stack, it takes the previous walk's outer frames as they are
//! (~0.42 µs instead of ~0.78 µs a sample at depth 30, see
//! `one_sample_depth_30/sampled_new_stack_x3`).
//!
//! Memory: 64 KiB of rules per object list, framehop's cache (~37 KiB) once per process, and
//! ~12.5 KiB per sampling thread (two memos: the last two walks; a new walk replaces the older).

use crate::record::stack_table::{FrameSink, MAX_STACK_DEPTH, OwnFunctions};
use crate::sys::internal_alloc::TableAlloc;
use crate::sys::lock::ForkMutex;
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
const MAX_WALK: usize = MAX_STACK_DEPTH + 16;
/// Rebuilds of the object list at most (each leaks the previous list, which other threads may
/// still be reading); past this, walks through unknown objects just stop early.
const MAX_REBUILDS: usize = 16;

/// The loaded objects' unwind tables, the rules learnt for them, and the loader's unload count
/// when they were listed.
struct Objects {
    unwinder: Native,
    rules: RuleTable,
    subs: u64,
}

/// The current object list. Never freed while the process runs: readers hold no lock.
static CURRENT: AtomicPtr<Objects> = AtomicPtr::new(core::ptr::null_mut());
static REBUILDS: AtomicUsize = AtomicUsize::new(0);
static STALE: AtomicBool = AtomicBool::new(false);

/// How one frame is unwound, as framehop's cached rule for its address does it (x86-64 DWARF
/// CFI reduces to these for nearly every function; see [`classify`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rule {
    /// No caller: the walk ends here.
    End,
    /// The caller's sp is `sp + 8 * sp_by_8` and its return address the word below that; its
    /// bp is this frame's bp (`bp_at_by_8` = `None`) or the word at `sp + 8 * bp_at_by_8`.
    Sp {
        sp_by_8: u16,
        bp_at_by_8: Option<i16>,
    },
    /// Frame-pointer chain: the caller's sp is `bp + 16`, its bp `[bp]`, its return address
    /// `[bp + 8]`.
    Fp,
    /// Anything else: framehop evaluates the frame every time.
    General,
}

/// Largest `sp_by_8` and `|bp_at_by_8|` a table entry holds (12 bits each); frames outside
/// this are left to framehop.
const SP_BY_8_MAX: u16 = (1 << 12) - 1;
const BP_AT_BY_8_MAX: i16 = (1 << 11) - 1;

/// The bits of a table entry that hold the rule: kind in bits 0..3 (0 = empty), a bp-restore
/// flag in bit 3, `sp_by_8` in bits 4..16, `bp_at_by_8` in bits 16..28.
const RULE_BITS: u64 = (1 << 28) - 1;

impl Rule {
    fn pack(self) -> u64 {
        match self {
            Rule::End => 1,
            Rule::Fp => 3,
            Rule::General => 4,
            Rule::Sp {
                sp_by_8,
                bp_at_by_8,
            } => {
                let bp = bp_at_by_8.map_or(0, |o| (1 << 3) | ((o as u64 & 0xfff) << 16));
                2 | bp | ((sp_by_8 as u64 & 0xfff) << 4)
            }
        }
    }

    fn unpack(bits: u64) -> Option<Rule> {
        Some(match bits & 7 {
            1 => Rule::End,
            2 => Rule::Sp {
                sp_by_8: ((bits >> 4) & 0xfff) as u16,
                // Sign-extends the 12-bit field.
                bp_at_by_8: (bits & (1 << 3) != 0)
                    .then_some(((((bits >> 16) & 0xfff) as i16) << 4) >> 4),
            },
            3 => Rule::Fp,
            4 => Rule::General,
            _ => return None,
        })
    }

    /// Whether a table entry can hold the rule exactly.
    fn fits(self) -> bool {
        match self {
            Rule::Sp {
                sp_by_8,
                bp_at_by_8,
            } => {
                sp_by_8 <= SP_BY_8_MAX
                    && bp_at_by_8.is_none_or(|o| (-BP_AT_BY_8_MAX..=BP_AT_BY_8_MAX).contains(&o))
            }
            _ => true,
        }
    }
}

/// Rules by frame address, shared by all threads (one table per object list, so a rule never
/// outlives the objects it was read from). 2-way set-associative, indexed by the address's low
/// 12 bits, so two hot frames whose addresses collide both stay (framehop's own per-thread
/// cache is direct-mapped: with ~25 frames a walk, two often evicted each other on every walk).
/// 64 KiB per process.
///
/// An entry is one word — the rule, a first-frame flag (bit 28) and the address's bits 12..47
/// (bits 29..64) — so a reader never sees half an entry.
struct RuleTable {
    entries: Box<[AtomicU64]>,
}

const RULE_SETS: usize = 1 << 12;
/// Addresses below this fit an entry (35 tag bits above the 12 index bits).
const RULE_ADDRESS_LIMIT: u64 = 1 << 47;

impl RuleTable {
    fn new() -> Self {
        RuleTable {
            entries: (0..2 * RULE_SETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn tag(lookup: u64, first: bool) -> u64 {
        ((lookup >> 12) << 29) | ((first as u64) << 28)
    }

    fn set(&self, lookup: u64) -> &[AtomicU64] {
        let i = (lookup as usize % RULE_SETS) * 2;
        self.entries.get(i..i + 2).unwrap_or(&[])
    }

    #[inline(always)]
    fn get(&self, lookup: u64, first: bool) -> Option<Rule> {
        if lookup >= RULE_ADDRESS_LIMIT {
            return None;
        }
        let tag = Self::tag(lookup, first);
        self.set(lookup).iter().find_map(|e| {
            let bits = e.load(Ordering::Relaxed);
            (bits & !RULE_BITS == tag)
                .then(|| Rule::unpack(bits & RULE_BITS))
                .flatten()
        })
    }

    /// Stores a rule, moving the set's newest entry to the other way. Racy by design: entries
    /// are whole words, and a lost one is only learnt again.
    fn put(&self, lookup: u64, first: bool, rule: Rule) {
        if lookup >= RULE_ADDRESS_LIMIT || !rule.fits() {
            return;
        }
        let entry = Self::tag(lookup, first) | rule.pack();
        if let [newest, older] = self.set(lookup) {
            let previous = newest.load(Ordering::Relaxed);
            if previous != 0 && previous & !RULE_BITS != entry & !RULE_BITS {
                older.store(previous, Ordering::Relaxed);
            }
            newest.store(entry, Ordering::Relaxed);
        }
    }
}

/// The registers a walk follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Regs {
    ip: u64,
    sp: u64,
    bp: u64,
}

/// What unwinding one frame gave: the caller's return address, the end of the stack, or a
/// failure (unreadable stack, a rule that does not advance).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Caller(u64),
    End,
    Fail,
}

/// What a stack read fed, for deciding which words a replay must check (see [`Memo`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// A return address: always decides the stack.
    Ret,
    /// The caller's bp: matters only if a later frame uses bp before another restores it.
    Bp,
    /// Read by framehop's general evaluation: anything may depend on it.
    Any,
}

/// Executes `rule` for the frame at `regs` exactly as framehop 0.16's `UnwindRuleX86_64::exec`
/// does (same checks, same reads); `None` where framehop must decide (a general rule, or a
/// frame-pointer rule at bp = 0, where framehop's two frame-pointer rules differ).
fn exec(
    rule: Rule,
    regs: &mut Regs,
    first: bool,
    read: &mut impl FnMut(u64, Role) -> Result<u64, ()>,
) -> Option<Step> {
    let (new_sp, new_bp) = match rule {
        Rule::End => return Some(Step::End),
        Rule::General => return None,
        Rule::Sp {
            sp_by_8,
            bp_at_by_8,
        } => {
            let Some(new_sp) = regs.sp.checked_add(8 * sp_by_8 as u64) else {
                return Some(Step::Fail);
            };
            let new_bp = match bp_at_by_8 {
                None => regs.bp,
                Some(o) => {
                    let Some(at) = regs.sp.checked_add_signed(8 * o as i64) else {
                        return Some(Step::Fail);
                    };
                    match read(at, Role::Bp) {
                        Ok(v) => v,
                        // framehop tolerates this in the first frame (epilogues).
                        Err(()) if first && at < regs.sp => regs.bp,
                        Err(()) => return Some(Step::Fail),
                    }
                }
            };
            (new_sp, new_bp)
        }
        Rule::Fp => {
            if regs.bp == 0 {
                return None;
            }
            let Some(new_sp) = regs.bp.checked_add(16) else {
                return Some(Step::Fail);
            };
            if new_sp <= regs.sp {
                return Some(Step::Fail);
            }
            let Ok(new_bp) = read(regs.bp, Role::Bp) else {
                return Some(Step::Fail);
            };
            (new_sp, new_bp)
        }
    };
    let Ok(ra) = read(new_sp.wrapping_sub(8), Role::Ret) else {
        return Some(Step::Fail);
    };
    if ra == 0 {
        return Some(Step::End);
    }
    if new_sp == regs.sp && ra == regs.ip {
        return Some(Step::Fail);
    }
    *regs = Regs {
        ip: ra,
        sp: new_sp,
        bp: new_bp,
    };
    Some(Step::Caller(ra))
}

/// The framehop address of a frame: the first frame's pc, or a return address.
fn frame_address(ip: u64, first: bool) -> Option<FrameAddress> {
    if first {
        Some(FrameAddress::from_instruction_pointer(ip))
    } else {
        FrameAddress::from_return_address(ip)
    }
}

/// One frame unwound by framehop itself, reading through `read`.
fn framehop_step(
    unwinder: &Native,
    cache: &mut Cache,
    regs: &mut Regs,
    first: bool,
    read: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Step {
    let Some(address) = frame_address(regs.ip, first) else {
        return Step::Fail;
    };
    let mut r = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
    let step = match unwinder.unwind_frame(address, &mut r, cache, read) {
        Ok(Some(0)) | Err(_) => return Step::Fail,
        Ok(Some(ra)) => Step::Caller(ra),
        Ok(None) => return Step::End,
    };
    *regs = Regs {
        ip: r.ip(),
        sp: r.sp(),
        bp: r.bp(),
    };
    step
}

/// Probe registers: a stack and a frame pointer far apart, so every read tells which register
/// it came from, and a second pair at other alignments.
const PROBES: [(u64, u64); 2] = [
    (0x1000_0000_0000, 0x3000_0000_0000),
    (0x1000_0000_1008, 0x3000_0000_2018),
];

/// The word a probe's stack holds at `a`: distinct per address, never 0.
fn probe_word(a: u64) -> u64 {
    !a
}

/// Learns the rule framehop applies at a frame, without touching the real stack: framehop
/// unwinds the frame over a synthetic stack. Its cache hit counter tells whether the frame has
/// a cached rule (the second probe hits only if the first stored one); a cached rule is one of
/// `UnwindRuleX86_64`'s variants, whose reads are at fixed offsets from sp or bp, so the reads
/// and the resulting registers identify it. The result is then checked against framehop at
/// two probe points; anything that does not match exactly is [`Rule::General`].
fn classify(unwinder: &Native, cache: &mut Cache, ip: u64, first: bool) -> Rule {
    /// One frame unwound by framehop over a synthetic stack at `(sp, bp)`: the step, the
    /// registers after it, the addresses read (up to 3) and their count, and whether
    /// framehop's rule cache answered.
    fn probe(
        unwinder: &Native,
        cache: &mut Cache,
        ip: u64,
        first: bool,
        (sp, bp): (u64, u64),
    ) -> (Step, Regs, [u64; 3], usize, bool) {
        let mut reads = [0u64; 3];
        let mut n = 0;
        let mut regs = Regs { ip, sp, bp };
        let hits = cache.stats().hit_count;
        let step = framehop_step(unwinder, cache, &mut regs, first, &mut |a| {
            if let Some(slot) = reads.get_mut(n) {
                *slot = a;
            }
            n += 1;
            Ok(probe_word(a))
        });
        let hit = cache.stats().hit_count == hits + 1;
        (step, regs, reads, n, hit)
    }
    let [at, other] = PROBES;
    // The first probe makes framehop cache the frame's rule, if it has one.
    probe(unwinder, cache, ip, first, at);
    let (step, after, reads, n, hit) = probe(unwinder, cache, ip, first, at);
    if !hit {
        return Rule::General;
    }
    let (sp, bp) = at;
    let rule = match (step, n) {
        (Step::End, 0) => Rule::End,
        (Step::Caller(ra), 1 | 2) => {
            let ret_at = after.sp.wrapping_sub(8);
            let last = reads.get(n - 1).copied();
            if ra != probe_word(ret_at) || last != Some(ret_at) {
                return Rule::General;
            }
            let sp_by_8 = after.sp.wrapping_sub(sp) / 8;
            if n == 2 && reads[0] == bp && after.sp == bp + 16 && after.bp == probe_word(bp) {
                Rule::Fp
            } else if after.sp <= sp || (after.sp - sp) % 8 != 0 || sp_by_8 > SP_BY_8_MAX as u64 {
                return Rule::General;
            } else if n == 1 && after.bp == bp {
                Rule::Sp {
                    sp_by_8: sp_by_8 as u16,
                    bp_at_by_8: None,
                }
            } else if n == 2 && after.bp == probe_word(reads[0]) {
                let offset = reads[0].wrapping_sub(sp) as i64;
                if offset % 8 != 0 || (offset / 8).unsigned_abs() > BP_AT_BY_8_MAX as u64 {
                    return Rule::General;
                }
                Rule::Sp {
                    sp_by_8: sp_by_8 as u16,
                    bp_at_by_8: Some((offset / 8) as i16),
                }
            } else {
                return Rule::General;
            }
        }
        _ => return Rule::General,
    };
    // The rule must reproduce framehop exactly, here and at the other probe point.
    for point in [at, other] {
        let (step, after, reads, n, _) = probe(unwinder, cache, ip, first, point);
        let mut mine = Regs {
            ip,
            sp: point.0,
            bp: point.1,
        };
        let mut my_reads = [0u64; 3];
        let mut m = 0;
        let my_step = exec(rule, &mut mine, first, &mut |a, _| {
            if let Some(slot) = my_reads.get_mut(m) {
                *slot = a;
            }
            m += 1;
            Ok(probe_word(a))
        });
        if my_step != Some(step) || mine != after || m != n || my_reads != reads {
            return Rule::General;
        }
    }
    rule
}

/// framehop's rule cache and DWARF evaluation context (~37 KiB), shared by all threads and
/// used only to learn a new address's rule or to unwind a [`Rule::General`] frame. Created on
/// first use, outside the lock (allocating under it could re-enter the profiler).
static FRAMEHOP: ForkMutex<Option<Box<Cache>>> = ForkMutex::new(None);

/// Runs `f` with framehop's cache; `None` if it could not be created.
fn with_framehop<R>(f: impl FnOnce(&mut Cache) -> R) -> Option<R> {
    let mut guard = FRAMEHOP.lock();
    if guard.is_none() {
        drop(guard);
        let fresh = Box::new(Cache::new_in());
        guard = FRAMEHOP.lock();
        if guard.is_none() {
            *guard = Some(fresh);
        }
    }
    guard.as_deref_mut().map(f)
}

/// Stack words one walk may depend on and still be remembered for replay.
const MEMO_READS: usize = 2 * MAX_WALK;

/// The previous walk of this thread, to be replayed when nothing it depended on changed.
///
/// A walk is a pure function of its starting registers, the object list, the stack bounds and
/// the stack words it read; the frames kept are a function of the walk and of the allocator's
/// own functions. A program allocating in a loop walks the same stack again and again, so the
/// result is replayed after checking the words that decided it, instead of unwinding again.
///
/// Only words that decided the walk are checked. A return address always does. A restored bp
/// (a saved rbp, which code without frame pointers uses as a general register: a loop counter
/// in it changes on every call) decides the walk only if a later frame's rule uses bp before
/// another frame restores it; otherwise the walk gives the same frames whatever its value (the
/// rules of [`exec`] use bp for nothing else). Likewise the starting bp. Frames framehop
/// evaluates itself ([`Rule::General`]) count as using bp and every word they read.
struct Memo {
    valid: bool,
    /// Starting pc, sp, bp (compared only if `bp_live`), stack bounds, object list.
    key: [u64; 6],
    bp_live: bool,
    /// The first of the own functions the walk skipped (see [`Memo::replay`]).
    own: usize,
    reads: [(u64, u64); MEMO_READS],
    n_reads: usize,
    /// The walk's result: the frames the sink kept.
    frames: [usize; MAX_STACK_DEPTH],
    n_frames: usize,
    /// Where each frame of the walk started, innermost first: what lets a later walk from
    /// another starting point join this one (see [`Memo::joinable_at`]).
    bounds: [Boundary; MAX_WALK],
    n_bounds: usize,
    /// The walk reached the end of the stack, so `bounds` covers every frame outward of any of
    /// its frames (a walk cut short by a failure, a full sink or the frame limit cannot be
    /// joined: its outer part is missing).
    ended: bool,
}

/// Where one frame of a remembered walk started, and what the walk from there depended on.
#[derive(Clone, Copy)]
struct Boundary {
    ip: u64,
    sp: u64,
    bp: u64,
    /// Whether the walk from here depends on `bp` (as [`Memo::bp_live`] for the start).
    bp_live: bool,
    /// Index in [`Memo::reads`] of the first word that this frame or an outer one depended on.
    reads_from: u16,
    /// The lowest address this frame or an outer one read, words that decided nothing
    /// included: a walk from here reads it too, so it must be inside the joining walk's stack.
    low: u64,
}

impl Boundary {
    const EMPTY: Boundary = Boundary {
        ip: 0,
        sp: 0,
        bp: 0,
        bp_live: false,
        reads_from: 0,
        low: u64::MAX,
    };
}

impl Memo {
    #[cfg(test)]
    fn new() -> Self {
        Memo {
            valid: false,
            key: [0; 6],
            bp_live: false,
            own: 0,
            reads: [(0, 0); MEMO_READS],
            n_reads: 0,
            frames: [0; MAX_STACK_DEPTH],
            n_frames: 0,
            bounds: [Boundary::EMPTY; MAX_WALK],
            n_bounds: 0,
            ended: false,
        }
    }

    /// The frame of this walk (not its first) at which a walk now at `regs` could join it:
    /// the same return address at the same stack address, and the same bp if the rest of this
    /// walk depends on bp. `cursor` moves outward across calls (a walk's sp grows, frame to
    /// frame, wherever exec decides; should a frame framehop evaluates not grow it, a join is
    /// missed, nothing worse), so a whole walk costs one pass over `bounds`. Whether the words
    /// that decided the rest of this walk still hold is [`Memo::holds_from`]'s to say.
    fn joinable_at(&self, cursor: &mut usize, regs: Regs) -> Option<usize> {
        let bounds = self.bounds.get(..self.n_bounds).unwrap_or(&[]);
        while bounds.get(*cursor).is_some_and(|b| b.sp < regs.sp) {
            *cursor += 1;
        }
        let b = bounds.get(*cursor)?;
        (*cursor > 0 && b.sp == regs.sp && b.ip == regs.ip && (!b.bp_live || b.bp == regs.bp))
            .then_some(*cursor)
    }

    /// Whether every word that decided the walk from frame `k` outward still holds its value,
    /// and the lowest word it read is readable with `read`; if not, the first frame at which a
    /// later attempt may still succeed (no walk can join this one before the frame after the
    /// one that read a changed word, so across a walk's attempts every word is read at most
    /// once).
    ///
    /// `read` must be the joining walk's bounds-checked read: every word a join copies is
    /// read here through it, which is what lets a later replay of the joined memo read them
    /// unchecked (`checked_once` in [`walked`]).
    fn holds_from(&self, k: usize, read: impl Fn(u64) -> Option<u64>) -> Result<(), usize> {
        let Some(at) = self.bounds.get(k) else {
            return Err(usize::MAX);
        };
        if at.low != u64::MAX && read(at.low & !7).is_none() {
            // Below this walk's stack: a walk from here would fail where the previous did not.
            // An outer frame may read higher up only.
            return Err(k + 1);
        }
        let from = at.reads_from as usize;
        let reads = self.reads.get(from..self.n_reads).ok_or(usize::MAX)?;
        let Some(changed) = reads.iter().position(|&(a, v)| read(a) != Some(v)) else {
            return Ok(());
        };
        let changed = from + changed;
        let bounds = self.bounds.get(..self.n_bounds).unwrap_or(&[]);
        Err(bounds
            .iter()
            .position(|b| b.reads_from as usize > changed)
            .unwrap_or(usize::MAX))
    }

    /// The remembered frames, if the walk from `key` would give them again. `read` is called
    /// only with addresses this memo recorded, and only once `key` matched the memo's.
    fn replay(
        &self,
        key: &[u64; 6],
        own: &OwnFunctions,
        read: impl Fn(u64) -> Option<u64>,
    ) -> Option<&[usize]> {
        // Word by word: `key` and `own` were stored just before this call, and wide loads
        // (what an array or slice comparison compiles to) cannot take their values from
        // those stores while they wait to be written, behind the program's own (measured:
        // a third of a replay's time with glibc's split-and-merge 4 KiB frees in flight).
        // The first own function is the sampler's entry for one inner allocator type, which
        // fixes the other three.
        let same_key = self.key[0] == key[0]
            && self.key[1] == key[1]
            && (!self.bp_live || self.key[2] == key[2])
            && self.key[3] == key[3]
            && self.key[4] == key[4]
            && self.key[5] == key[5];
        if !self.valid || !same_key || self.own != own[0] {
            return None;
        }
        for &(a, v) in self.reads.get(..self.n_reads).unwrap_or(&[]) {
            if read(a) != Some(v) {
                return None;
            }
        }
        self.frames.get(..self.n_frames)
    }
}

/// What one frame did with bp, for the memo's liveness pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BpUse {
    /// Passed the frame's bp on to the caller untouched (and used it for nothing).
    Pass,
    /// Gave the caller a bp read from the stack, without using its own.
    Restore,
    /// Used its bp (frame-pointer rule, or evaluated by framehop).
    Uses,
}

/// Where rules come from and how a frame no rule covers is unwound: the object list and
/// framehop in a real walk, a fixed map in tests.
trait Rules {
    fn rule(&mut self, ip: u64, first: bool) -> Rule;
    fn general(
        &mut self,
        regs: &mut Regs,
        first: bool,
        read: &mut dyn FnMut(u64) -> Result<u64, ()>,
    ) -> Step;
}

/// The rules of the current object list.
struct LiveRules<'a> {
    objects: &'a Objects,
}

impl Rules for LiveRules<'_> {
    #[inline(always)]
    fn rule(&mut self, ip: u64, first: bool) -> Rule {
        let lookup = if first { ip } else { ip.wrapping_sub(1) };
        match self.objects.rules.get(lookup, first) {
            Some(rule) => rule,
            None => learn(self.objects, ip, lookup, first),
        }
    }

    fn general(
        &mut self,
        regs: &mut Regs,
        first: bool,
        read: &mut dyn FnMut(u64) -> Result<u64, ()>,
    ) -> Step {
        let unwinder = &self.objects.unwinder;
        with_framehop(|cache| framehop_step(unwinder, cache, regs, first, &mut |a| read(a)))
            .unwrap_or(Step::Fail)
    }
}

/// Learns the rule of a frame not in the table yet, and stores it there.
#[cold]
#[inline(never)]
fn learn(objects: &Objects, ip: u64, lookup: u64, first: bool) -> Rule {
    let unwinder = &objects.unwinder;
    let rule = with_framehop(|cache| classify(unwinder, cache, ip, first)).unwrap_or(Rule::General);
    objects.rules.put(lookup, first, rule);
    rule
}

/// Walks from `start`, feeding return addresses to `sink` until it is full or the stack ends,
/// and records in `memo` the words the walk depended on. Returns how (`complete` unless the
/// walk failed or reached the frame limit: the stack ended or the sink is full) and the last
/// return address.
///
/// `previous` is the thread's previous walk, if any. Programs sample many stacks that share
/// their outer frames (main, an event loop, a request handler) and differ only inside: when
/// this walk reaches a frame where `previous` stood too (same return address, stack address,
/// and bp if the rest depended on it), every word that decided `previous` from there outward
/// still holds and its lowest read is inside this walk's stack, the rest of this walk would read the same words through the same rules, so it is
/// `previous`'s: its outer frames are taken as they are, unwound no further.
fn unwind(
    start: Regs,
    rules: &mut impl Rules,
    read: &impl Fn(u64) -> Option<u64>,
    sink: &mut FrameSink<'_>,
    memo: &mut Memo,
    previous: Option<&Memo>,
) -> Walked {
    let mut roles = [Role::Ret; MEMO_READS];
    let mut frame_of = [0u8; MEMO_READS];
    let mut uses = [BpUse::Pass; MAX_WALK];
    let mut n_frames = 0;
    memo.n_reads = 0;
    memo.valid = true;
    memo.ended = false;
    // A walk to join must cover the same stack and object list, and its outer part.
    let previous = previous
        .filter(|p| p.valid && p.ended && p.key[4] == memo.key[4] && p.key[5] == memo.key[5]);
    let mut cursor = 0;
    // The previous walk's first frame this one may still join at.
    let mut joinable_from = 1;
    let mut joined = None;
    let mut regs = start;
    let mut last = 0;
    let mut complete = false;
    for (frame, bp_use) in uses.iter_mut().enumerate() {
        let first = frame == 0;
        if let Some(b) = memo.bounds.get_mut(frame) {
            *b = Boundary {
                ip: regs.ip,
                sp: regs.sp,
                bp: regs.bp,
                ..Boundary::EMPTY
            };
        }
        // Never at the first frame: its rule is looked up, and evaluated, as a first frame's.
        if let Some(p) = previous
            && !first
            && let Some(k) = p.joinable_at(&mut cursor, regs)
            && k >= joinable_from
            && frame + (p.n_bounds - k) <= MAX_WALK
        {
            match p.holds_from(k, read) {
                Ok(()) => {
                    joined = Some((p, k));
                    n_frames = frame;
                    break;
                }
                Err(next) => joinable_from = next,
            }
        }
        n_frames = frame + 1;
        let before = memo.n_reads;
        let mut low = u64::MAX;
        let mut log = |a: u64, role: Role| -> Result<u64, ()> {
            low = low.min(a);
            let v = read(a).ok_or(())?;
            let i = memo.n_reads;
            match (memo.reads.get_mut(i), roles.get_mut(i), frame_of.get_mut(i)) {
                (Some(r), Some(ro), Some(f)) => {
                    *r = (a, v);
                    *ro = role;
                    *f = frame as u8;
                    memo.n_reads += 1;
                }
                _ => memo.valid = false,
            }
            Ok(v)
        };
        let rule = rules.rule(regs.ip, first);
        let (step, general) = match exec(rule, &mut regs, first, &mut log) {
            Some(step) => (step, false),
            None => (
                rules.general(&mut regs, first, &mut |a| log(a, Role::Any)),
                true,
            ),
        };
        // The lowest address this frame read (kept or not); made "this frame or an outer one"
        // below.
        if let Some(b) = memo.bounds.get_mut(frame) {
            b.low = low;
        }
        *bp_use = match rule {
            _ if general => BpUse::Uses,
            Rule::Fp => BpUse::Uses,
            // framehop keeps the frame's bp when the first frame's saved bp is unreadable.
            Rule::Sp {
                bp_at_by_8: Some(_),
                ..
            } if roles
                .get(before..memo.n_reads)
                .is_some_and(|r| r.contains(&Role::Bp)) =>
            {
                BpUse::Restore
            }
            _ => BpUse::Pass,
        };
        match step {
            Step::Caller(ra) => {
                last = ra;
                if !sink.push(ra as usize) {
                    complete = true;
                    break;
                }
            }
            Step::End => {
                complete = true;
                memo.ended = true;
                break;
            }
            Step::Fail => break,
        }
    }
    // Liveness of bp, from the outermost frame walked inwards: which restored bp words a
    // later frame used, and whether each frame's bp (the starting one last) was used. A joined
    // walk starts from what the previous walk knew of the frame where they met.
    let at_join = joined.and_then(|(p, k): (&Memo, usize)| p.bounds.get(k));
    let mut live = at_join.is_some_and(|b| b.bp_live);
    let mut low = at_join.map_or(u64::MAX, |b| b.low);
    let mut keep = [false; MEMO_READS];
    let mut i = memo.n_reads;
    for frame in (0..n_frames).rev() {
        let bp_use = uses.get(frame).copied().unwrap_or(BpUse::Uses);
        while i > 0 && frame_of.get(i - 1).is_some_and(|&f| f as usize == frame) {
            i -= 1;
            let role = roles.get(i).copied().unwrap_or(Role::Any);
            if let Some(k) = keep.get_mut(i) {
                *k = role != Role::Bp || live;
            }
        }
        match bp_use {
            BpUse::Pass => {}
            BpUse::Restore => live = false,
            BpUse::Uses => live = true,
        }
        if let Some(b) = memo.bounds.get_mut(frame) {
            low = low.min(b.low);
            b.bp_live = live;
            b.low = low;
        }
    }
    memo.bp_live = live;
    // The words that decided the walk, frame by frame, and where each frame's words begin.
    let mut n = 0;
    let mut j = 0;
    for frame in 0..n_frames {
        if let Some(b) = memo.bounds.get_mut(frame) {
            b.reads_from = n as u16;
        }
        while j < memo.n_reads && frame_of.get(j).is_some_and(|&f| f as usize == frame) {
            if keep.get(j).copied().unwrap_or(true)
                && let Some(&r) = memo.reads.get(j)
                && let Some(slot) = memo.reads.get_mut(n)
            {
                *slot = r;
                n += 1;
            }
            j += 1;
        }
    }
    memo.n_reads = n;
    memo.n_bounds = n_frames.min(MAX_WALK);
    if let Some((p, k)) = joined {
        (complete, last) = join(memo, n_frames, p, k, sink, last);
    }
    let frames = sink.settle();
    memo.n_frames = frames.len().min(MAX_STACK_DEPTH);
    memo.frames[..memo.n_frames].copy_from_slice(&frames[..memo.n_frames]);
    Walked::Unwound {
        complete,
        last,
        joined: joined.is_some(),
    }
}

/// Completes `memo`, a walk of `n_frames` frames that met `previous` at its frame `k`, with
/// `previous`'s frames from `k` outward: their return addresses go to `sink`, and the words
/// they depended on and where they started to `memo`. Returns `(complete, last)` as
/// [`unwind`] does (`last`: the last return address so far, fed or not).
fn join(
    memo: &mut Memo,
    n_frames: usize,
    previous: &Memo,
    k: usize,
    sink: &mut FrameSink<'_>,
    mut last: u64,
) -> (bool, u64) {
    let outer = previous.bounds.get(k..previous.n_bounds).unwrap_or(&[]);
    let from = outer.first().map_or(0, |b| b.reads_from as usize);
    let words = previous.reads.get(from..previous.n_reads).unwrap_or(&[]);
    let n = memo.n_reads;
    match memo.reads.get_mut(n..n + words.len()) {
        Some(dst) => {
            dst.copy_from_slice(words);
            memo.n_reads = n + words.len();
        }
        None => memo.valid = false,
    }
    let mut full = false;
    for (i, b) in outer.iter().enumerate() {
        if let Some(slot) = memo.bounds.get_mut(n_frames + i) {
            *slot = Boundary {
                reads_from: ((b.reads_from as usize).saturating_sub(from) + n) as u16,
                ..*b
            };
        }
        // The first is where this walk stands: its return address was fed already.
        if i > 0 {
            last = b.ip;
            full = full || !sink.push(b.ip as usize);
        }
    }
    // `unwind` joins only within `MAX_WALK` frames; were the end cut off, no walk could join
    // this one.
    memo.n_bounds = (n_frames + outer.len()).min(MAX_WALK);
    memo.ended = n_frames + outer.len() <= MAX_WALK;
    (true, last)
}

/// What [`unwind`] and [`ThreadState::capture`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Walked {
    /// The previous walk, replayed whole.
    Replayed,
    /// A walk; `joined` if it took its outer frames from the previous walk.
    Unwound {
        complete: bool,
        last: u64,
        joined: bool,
    },
}

/// Per-thread unwinding state (~12.5 KiB, boxed in the tables' heap, not in the thread's malloc
/// arena where it would sit among the program's blocks: `internal_alloc`): the last two walks,
/// to replay, the last one also to join, and the one before it is the room for the next walk.
struct ThreadState {
    memos: [Memo; 2],
    /// Index in `memos` of the last walk.
    last: usize,
}

impl ThreadState {
    /// A new state, built in place on the heap: it is ~12.5 KiB, too much to build on the stack
    /// of an allocating thread first (a thread may have as little as 16 KiB).
    fn boxed() -> Option<StateBox> {
        let zeroed = StateBox::try_new_zeroed_in(TableAlloc).ok()?;
        // SAFETY: all-zero bytes are a valid `ThreadState`: it holds only integers, bools and
        // arrays of them; zeroed, no memo is `valid`, so no walk is remembered.
        Some(unsafe { zeroed.assume_init() })
    }

    #[cfg(test)]
    fn new() -> Self {
        ThreadState {
            memos: [Memo::new(), Memo::new()],
            last: 0,
        }
    }

    /// Feeds the walk from `start` (`key` as in [`Memo`]) to `sink`: the last walk, or the one
    /// before it, replayed if nothing it depended on changed (a loop may allocate from two
    /// places in turn: two calls in one body, or the two copies of an unrolled loop), else a
    /// new walk (joining the last one where it can) in place of the one before, which becomes
    /// the last. `checked_once` reads without bounds checks and is given only addresses a memo
    /// read with the same key; `read` checks bounds.
    fn capture(
        &mut self,
        key: [u64; 6],
        rules: &mut impl Rules,
        read: &impl Fn(u64) -> Option<u64>,
        checked_once: impl Fn(u64) -> Option<u64>,
        sink: &mut FrameSink<'_>,
    ) -> (Walked, &mut Memo) {
        let last = self.last & 1;
        for m in [last, last ^ 1] {
            if let Some(frames) = self.memos[m].replay(&key, sink.own(), &checked_once) {
                sink.replay(frames);
                self.last = m;
                return (Walked::Replayed, &mut self.memos[m]);
            }
        }
        let [a, b] = &mut self.memos;
        let (previous, next) = if last == 0 { (&*a, b) } else { (&*b, a) };
        next.key = key;
        next.own = sink.own()[0];
        let start = Regs {
            ip: key[0],
            sp: key[1],
            bp: key[2],
        };
        let walked = unwind(start, rules, read, sink, next, Some(previous));
        self.last = last ^ 1;
        (walked, &mut self.memos[last ^ 1])
    }
}

type StateBox = allocator_api2::boxed::Box<ThreadState, TableAlloc>;

thread_local! {
    /// This thread's memo, created on its first capture.
    static STATE: RefCell<Option<StateBox>> = const { RefCell::new(None) };
}

/// Feeds the calling thread's return addresses, innermost first, to `sink`. `false` (nothing
/// fed) when this path does not apply: unknown stack bounds, running on another stack, or the
/// thread's state is unavailable (thread teardown).
#[inline(always)]
pub(crate) fn walk(sink: &mut FrameSink<'_>) -> bool {
    walked(sink).is_some()
}

/// [`walk`], saying how the frames were found; `None` when nothing was fed.
#[inline(never)]
fn walked(sink: &mut FrameSink<'_>) -> Option<Walked> {
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
    let (lo, hi) = crate::unwind::stack_bounds::live_region()?;
    if (sp as usize) < lo.saturating_sub(4096) || sp as usize >= hi {
        return None;
    }
    let lo = (sp as usize).min(lo);
    let objects = current()?;
    let read = |a: u64| -> Option<u64> {
        let a = a as usize;
        // SAFETY: `a` is 8-byte aligned and inside the calling thread's stack between its
        // current stack pointer and its top, which is mapped and readable.
        (a >= lo && a <= hi - 8 && a.is_multiple_of(8)).then(|| unsafe { (a as *const u64).read() })
    };
    let key = [
        pc,
        sp,
        bp,
        lo as u64,
        hi as u64,
        objects as *const Objects as u64,
    ];
    let walked = STATE.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return None;
        };
        if slot.is_none() {
            *slot = ThreadState::boxed();
        }
        let state = slot.as_mut()?;
        // Every address a memo holds was read in bounds by a walk with the same key (the same
        // sp and stack bounds; a joined memo's outer words by `holds_from`, through `read`),
        // and `replay` reads only once the key matched: those reads need no bounds checks
        // (~40 fewer compares and branches a sample at depth 30).
        let checked_once = |a: u64| -> Option<u64> {
            debug_assert!(a as usize >= lo && a as usize <= hi - 8 && a.is_multiple_of(8));
            // SAFETY: as above, `a` is 8-byte aligned and between the current stack pointer and
            // the top of this thread's stack, which is mapped and readable.
            Some(unsafe { (a as usize as *const u64).read() })
        };
        let mut rules = LiveRules { objects };
        let (walked, memo) = state.capture(key, &mut rules, &read, checked_once, sink);
        if let Walked::Unwound {
            complete: false,
            last,
            ..
        } = walked
            && last != 0
            && !knows(&objects.unwinder, last)
        {
            STALE.store(true, Ordering::Relaxed);
            memo.valid = false;
        }
        Some(walked)
    });
    walked.ok().flatten()
}

/// Whether `address` lies in an object the unwinder knows.
fn knows(unwinder: &Native, address: u64) -> bool {
    address < unwinder.max_known_code_address()
}

/// The object list, built on first use and rebuilt when a walk met an unknown address.
/// Called under the reentrancy guard: building allocates.
fn current() -> Option<&'static Objects> {
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
    // Loaded first: the swap is a locked instruction, and all threads share the line.
    if LAST_ASKED_MS.load(Ordering::Relaxed) != now
        && LAST_ASKED_MS.swap(now, Ordering::Relaxed) != now
    {
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

/// Hands the loader gate and framehop's lock to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::lock::ForkLock)) {
    f(&LOADER_GATE);
    f(&FRAMEHOP);
}

#[cfg(test)]
impl Walked {
    fn joined(self) -> bool {
        matches!(self, Walked::Unwound { joined: true, .. })
    }
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
            crate::record::stack_table::walker_check::agrees_with_the_system_unwinder(walk, 14);
        }
    }

    /// This thread's walk from here, checked against a walk from the same frame by a thread
    /// state that remembers nothing (the state is then put back).
    #[inline(never)]
    fn walk_here(site: u8) -> (Vec<usize>, Option<Walked>) {
        let mut buf = [0usize; MAX_STACK_DEPTH];
        let own = [0usize; 4];
        let mut sink = FrameSink::new(&mut buf, &own);
        let how = walked(&mut sink);
        let n = sink.finish();
        let kept = STATE.with(|s| s.borrow_mut().take());
        let mut truth_buf = [0usize; MAX_STACK_DEPTH];
        let mut sink = FrameSink::new(&mut truth_buf, &own);
        let fresh = walked(&mut sink);
        assert!(
            matches!(fresh, Some(Walked::Unwound { joined: false, .. })),
            "{fresh:?}"
        );
        let m = sink.finish();
        STATE.with(|s| *s.borrow_mut() = kept);
        // The first frame is the return address into this function: the two calls differ.
        assert_eq!(buf[1..n], truth_buf[1..m], "site {site}");
        core::hint::black_box(site);
        (buf[..n].to_vec(), how)
    }

    #[inline(never)]
    fn site_a(depth: usize) -> (Vec<usize>, Option<Walked>) {
        let r = if depth == 0 {
            walk_here(1)
        } else {
            site_a(depth - 1)
        };
        core::hint::black_box(depth);
        r
    }

    #[inline(never)]
    fn site_b() -> (Vec<usize>, Option<Walked>) {
        let r = walk_here(2);
        core::hint::black_box(());
        r
    }

    #[inline(never)]
    fn site_c() -> (Vec<usize>, Option<Walked>) {
        let r = walk_here(3);
        core::hint::black_box(());
        r
    }

    #[inline(never)]
    fn outer_frames(depth: usize, f: &mut dyn FnMut()) {
        if depth == 0 {
            return f();
        }
        outer_frames(depth - 1, f);
        core::hint::black_box(depth);
    }

    #[test]
    fn a_walk_from_another_call_site_joins_the_previous_walk() {
        let _guard = crate::record::countdown::enter_guard();
        outer_frames(10, &mut || {
            let kind = |w: &Option<Walked>| match w {
                Some(Walked::Replayed) => 0,
                Some(Walked::Unwound { joined: true, .. }) => 1,
                _ => 2,
            };
            let mut tallies = [0; 3];
            let mut expected: Option<[Vec<usize>; 3]> = None;
            for round in 0..6 {
                let (a, wa) = site_a(3);
                let (b, wb) = site_b();
                let (c, wc) = site_c();
                for w in [wa, wb, wc] {
                    tallies[kind(&w)] += 1;
                }
                // Every round walks the same three stacks; they differ inside, share the rest.
                let e = expected.get_or_insert_with(|| [a.clone(), b.clone(), c.clone()]);
                assert_eq!([&a, &b, &c], [&e[0], &e[1], &e[2]], "round {round}");
                assert_ne!(a, b);
                assert_eq!(a[a.len() - 12..], b[b.len() - 12..]);
            }
            // Three stacks in turn: neither of the last two walks ever holds again, and every
            // walk but the first joins the one before it.
            assert_eq!(tallies, [0, 17, 1]);
        });
    }

    #[test]
    fn rules_pack_and_unpack() {
        for rule in [
            Rule::End,
            Rule::Fp,
            Rule::General,
            Rule::Sp {
                sp_by_8: 1,
                bp_at_by_8: None,
            },
            Rule::Sp {
                sp_by_8: SP_BY_8_MAX,
                bp_at_by_8: Some(-BP_AT_BY_8_MAX),
            },
            Rule::Sp {
                sp_by_8: 7,
                bp_at_by_8: Some(BP_AT_BY_8_MAX),
            },
        ] {
            assert_eq!(Rule::unpack(rule.pack()), Some(rule));
            let table = RuleTable::new();
            table.put(0x5555_1234, false, rule);
            assert_eq!(table.get(0x5555_1234, false), Some(rule));
            assert_eq!(table.get(0x5555_1234, true), None);
            assert_eq!(table.get(0x6555_1234, false), None);
        }
        assert!(
            !Rule::Sp {
                sp_by_8: SP_BY_8_MAX + 1,
                bp_at_by_8: None
            }
            .fits()
        );
    }

    #[test]
    fn two_colliding_addresses_both_stay() {
        let table = RuleTable::new();
        let (a, b, c) = (0x10_0123, 0x20_0123, 0x30_0123);
        table.put(a, false, Rule::Fp);
        table.put(b, false, Rule::End);
        assert_eq!(table.get(a, false), Some(Rule::Fp));
        assert_eq!(table.get(b, false), Some(Rule::End));
        table.put(c, false, Rule::General);
        assert_eq!(table.get(a, false), None, "the oldest goes");
        assert_eq!(table.get(b, false), Some(Rule::End));
        assert_eq!(table.get(c, false), Some(Rule::General));
    }

    #[test]
    fn this_code_has_exact_rules() {
        // The frames of this test are ordinary compiled code: framehop has cached rules for
        // them, which the probes identify (not `General`).
        let objects = Objects {
            unwinder: build(),
            rules: RuleTable::new(),
            subs: 0,
        };
        let ra = this_code_has_exact_rules as *const () as usize as u64 + 1;
        let rule = with_framehop(|cache| classify(&objects.unwinder, cache, ra, false)).unwrap();
        assert!(matches!(rule, Rule::Sp { .. } | Rule::Fp), "{rule:?}");
    }

    /// A synthetic stack: words from `BASE`, a rule per return address.
    struct Synthetic {
        rules: Vec<(u64, Rule)>,
        memory: RefCell<Vec<u64>>,
        /// Rules looked up so far: one per frame unwound (replayed and joined frames need none).
        lookups: core::cell::Cell<usize>,
    }

    const BASE: u64 = 0x7000_0000;

    impl Rules for &Synthetic {
        fn rule(&mut self, ip: u64, first: bool) -> Rule {
            self.lookups.set(self.lookups.get() + 1);
            // A first frame's rule is looked up at its pc, not at a return address: here, one
            // address past it.
            let ip = if first { ip + 1 } else { ip };
            self.rules
                .iter()
                .find(|r| r.0 == ip)
                .map_or(Rule::End, |r| r.1)
        }
        /// A made-up general rule: the return address at sp, the caller's sp 16 above.
        fn general(
            &mut self,
            regs: &mut Regs,
            _: bool,
            read: &mut dyn FnMut(u64) -> Result<u64, ()>,
        ) -> Step {
            let Ok(ra) = read(regs.sp) else {
                return Step::Fail;
            };
            if ra == 0 {
                return Step::End;
            }
            *regs = Regs {
                ip: ra,
                sp: regs.sp + 16,
                bp: regs.bp,
            };
            Step::Caller(ra)
        }
    }

    /// Address of the `i`th word of a synthetic stack.
    fn w(i: u64) -> u64 {
        BASE + 8 * i
    }

    impl Synthetic {
        /// `words` zeroed words of stack, and `rules`.
        fn new(rules: Vec<(u64, Rule)>, words: usize) -> Self {
            Synthetic {
                rules,
                memory: RefCell::new(vec![0; words]),
                lookups: core::cell::Cell::new(0),
            }
        }

        fn read(&self, a: u64) -> Option<u64> {
            let i = a.checked_sub(BASE)? / 8;
            self.memory.borrow().get(i as usize).copied()
        }
        fn set(&self, a: u64, v: u64) {
            self.memory.borrow_mut()[((a - BASE) / 8) as usize] = v;
        }
        /// Walks (or replays) from `start`: the frames kept, and whether it was a replay.
        fn capture(&self, state: &mut ThreadState, start: Regs) -> (Vec<usize>, bool) {
            let (frames, walked) = self.capture_walked(state, start);
            (frames, walked == Walked::Replayed)
        }

        fn capture_walked(&self, state: &mut ThreadState, start: Regs) -> (Vec<usize>, Walked) {
            let own = [0usize; 4];
            let mut buf = [0usize; MAX_STACK_DEPTH];
            // As on a real stack, nothing below the starting sp is readable.
            let key = [start.ip, start.sp, start.bp, start.sp, 0, 0];
            let mut sink = FrameSink::new(&mut buf, &own);
            let mut rules = self;
            let read = |a| (a >= start.sp).then(|| self.read(a)).flatten();
            let (walked, _) = state.capture(key, &mut rules, &read, read, &mut sink);
            (sink.settle().to_vec(), walked)
        }

        /// The frames of a walk from `start` that remembers nothing.
        fn truth(&self, start: Regs) -> Vec<usize> {
            self.capture(&mut ThreadState::new(), start).0
        }
    }

    #[test]
    fn a_replay_checks_exactly_the_words_that_decide_the_walk() {
        // Frames, innermost first. f0 at pc 0x100 (sp BASE): restores bp from [sp], returns
        // through [sp + 8]. f1 (0x200, sp BASE+16): keeps bp, returns through [sp + 8].
        // f2 (0x300, sp BASE+32): restores bp from [sp + 8], returns through [sp + 16].
        // f3 (0x400, sp BASE+56): frame pointer: sp' = bp + 16, bp' = [bp], ra = [bp + 8].
        // f4 (0x500): the end.
        let sp = |o: u64| Some(o as i16);
        let stack = Synthetic::new(
            vec![
                (
                    0x101,
                    Rule::Sp {
                        sp_by_8: 2,
                        bp_at_by_8: sp(0),
                    },
                ),
                (
                    0x200,
                    Rule::Sp {
                        sp_by_8: 2,
                        bp_at_by_8: None,
                    },
                ),
                (
                    0x300,
                    Rule::Sp {
                        sp_by_8: 3,
                        bp_at_by_8: sp(1),
                    },
                ),
                (0x400, Rule::Fp),
                (0x500, Rule::End),
            ],
            16,
        );
        stack.set(w(0), 1234); // f0's saved bp: overwritten by f2 before f3 uses bp
        stack.set(w(1), 0x200);
        stack.set(w(3), 0x300);
        stack.set(w(5), w(9)); // f2's saved bp: f3's frame pointer
        stack.set(w(6), 0x400);
        stack.set(w(9), 77); // f3's caller's bp: nothing after uses it
        stack.set(w(10), 0x500);
        let start = Regs {
            ip: 0x100,
            sp: w(0),
            bp: 999,
        };
        let mut memo = ThreadState::new();
        let expected = vec![0x200, 0x300, 0x400, 0x500];
        assert_eq!(stack.capture(&mut memo, start), (expected.clone(), false));
        assert_eq!(stack.capture(&mut memo, start), (expected.clone(), true));
        // Words that do not decide the walk: the starting bp (f0 restores bp before any use),
        // f0's saved bp, the bp f3 restores, and words no rule reads.
        stack.set(w(0), 4321);
        stack.set(w(9), 78);
        stack.set(w(2), 5);
        let other_bp = Regs { bp: 1000, ..start };
        assert_eq!(stack.capture(&mut memo, other_bp), (expected.clone(), true));
        // A return address decides it.
        stack.set(w(3), 0x301);
        assert!(!stack.capture(&mut memo, start).1);
        stack.set(w(3), 0x300);
        // (The walk before the last one, from the same start, holds again: it is replayed.)
        assert_eq!(stack.capture(&mut memo, start), (expected.clone(), true));
        // So does a saved bp that a later frame-pointer frame follows: f3 now unwinds from
        // w(11), where nothing valid is.
        stack.set(w(5), w(11));
        let (frames, replayed) = stack.capture(&mut memo, start);
        assert!(!replayed);
        assert_eq!(frames, vec![0x200, 0x300, 0x400]);
        // A different starting sp always does.
        stack.set(w(5), w(9));
        assert!(
            stack.capture(&mut memo, start).1,
            "the walk before holds again"
        );
        assert!(!stack.capture(&mut memo, Regs { sp: w(1), ..start }).1);
    }

    #[test]
    fn the_starting_bp_decides_when_a_frame_pointer_frame_uses_it() {
        let stack = Synthetic::new(
            vec![
                (
                    0x101,
                    Rule::Sp {
                        sp_by_8: 2,
                        bp_at_by_8: None,
                    },
                ),
                (0x200, Rule::Fp),
                (0x300, Rule::End),
            ],
            16,
        );
        stack.set(w(1), 0x200);
        stack.set(w(4), 0);
        stack.set(w(5), 0x300);
        let start = Regs {
            ip: 0x100,
            sp: w(0),
            bp: w(4),
        };
        let mut memo = ThreadState::new();
        assert_eq!(stack.capture(&mut memo, start), (vec![0x200, 0x300], false));
        assert!(stack.capture(&mut memo, start).1);
        let (frames, replayed) = stack.capture(&mut memo, Regs { bp: w(6), ..start });
        assert!(!replayed);
        assert_eq!(frames, vec![0x200]);
    }

    /// The two starting frames of the join tests: pc 0x100 and 0x180, at sp `w(0)`.
    fn p_and_q(bp: u64) -> (Regs, Regs) {
        let p = Regs {
            ip: 0x100,
            sp: w(0),
            bp,
        };
        (p, Regs { ip: 0x180, ..p })
    }

    fn sp_rule(sp_by_8: u16, bp_at_by_8: Option<i16>) -> Rule {
        Rule::Sp {
            sp_by_8,
            bp_at_by_8,
        }
    }

    #[test]
    fn a_walk_that_meets_the_previous_one_takes_its_outer_frames() {
        // Two starting frames, p (0x100) and q (0x180), both at sp BASE and returning through
        // [sp + 8] into f1 (0x200); then f2 (0x300, restores bp), f3 (0x400), f4 (0x500), end.
        let stack = Synthetic::new(
            vec![
                (0x101, sp_rule(2, None)),
                (0x181, sp_rule(2, None)),
                (0x1c1, sp_rule(2, None)),
                (0x200, sp_rule(2, None)),
                (0x300, sp_rule(3, Some(1))),
                (0x400, sp_rule(2, None)),
                (0x401, sp_rule(2, None)),
                (0x500, Rule::End),
            ],
            16,
        );
        stack.set(w(1), 0x200);
        stack.set(w(3), 0x300);
        stack.set(w(5), 42);
        stack.set(w(6), 0x400);
        stack.set(w(8), 0x500);
        let (p, q) = p_and_q(7);
        let r = Regs { ip: 0x1c0, ..p };
        let expected = vec![0x200, 0x300, 0x400, 0x500];
        let mut state = ThreadState::new();
        let lookups = |f: &mut dyn FnMut()| {
            let before = stack.lookups.get();
            f();
            stack.lookups.get() - before
        };
        let mut walk = |start, want: Walked| {
            let mut got = None;
            let n = lookups(&mut || got = Some(stack.capture_walked(&mut state, start)));
            let (frames, walked) = got.unwrap();
            assert_eq!(frames, stack.truth(start));
            assert_eq!(walked, want);
            n
        };
        let joined = Walked::Unwound {
            complete: true,
            last: 0x500,
            joined: true,
        };
        let fresh = |last| Walked::Unwound {
            complete: true,
            last,
            joined: false,
        };
        assert_eq!(walk(p, fresh(0x500)), 5);
        assert_eq!(stack.truth(q), expected);
        // q meets p's walk at f1: only its own frame is unwound.
        assert_eq!(walk(q, joined), 1);
        assert_eq!(walk(q, Walked::Replayed), 0);
        // r, a third start, meets q's walk, itself a joined one; p meets r's. (Two starts in
        // turn would replay: the walk before the last one is kept too.)
        assert_eq!(walk(r, joined), 1);
        assert_eq!(walk(p, joined), 1);
        // f2's return address changed: nothing from f2 inward can be joined, and f3 is another
        // frame now (0x401); the walks meet again at the last frame (the end of the stack).
        stack.set(w(6), 0x401);
        assert_eq!(walk(q, joined), 4);
        // A saved bp nothing uses (f2's, restored into f3, which uses no bp) is not checked.
        stack.set(w(5), 43);
        assert_eq!(walk(p, joined), 1);
        // f3 returns into 0x600 now, which has no rule: here, the end of the stack.
        stack.set(w(8), 0x600);
        assert_eq!(walk(q, fresh(0x600)), 5);
        // A walk that failed before the end of the stack (f1 reads past the stack) cannot be
        // joined: its outer frames are not known.
        let failing = Synthetic::new(
            vec![
                (0x101, sp_rule(2, None)),
                (0x181, sp_rule(2, None)),
                (0x200, sp_rule(40, None)),
            ],
            4,
        );
        failing.set(w(1), 0x200);
        let mut state = ThreadState::new();
        let (frames, walked) = failing.capture_walked(&mut state, p);
        assert_eq!((frames, walked), (vec![0x200], fresh_fail(0x200)));
        let (frames, walked) = failing.capture_walked(&mut state, q);
        assert_eq!((frames, walked), (vec![0x200], fresh_fail(0x200)));
    }

    #[test]
    fn a_joined_walk_checks_the_words_that_decide_the_bp_where_it_joined() {
        // p and q (0x100, 0x180 at sp BASE) both restore bp from [sp] and return into f1
        // (0x200), which passes bp on to f2 (0x300), a frame-pointer frame: where the walks
        // join, at f1, bp decides the rest, so q's walk must check the word p's restored it from.
        let stack = Synthetic::new(
            vec![
                (0x101, sp_rule(2, Some(0))),
                (0x181, sp_rule(2, Some(0))),
                (0x200, sp_rule(2, None)),
                (0x300, Rule::Fp),
                (0x400, Rule::End),
                (0x500, Rule::End),
            ],
            16,
        );
        stack.set(w(0), w(6));
        stack.set(w(1), 0x200);
        stack.set(w(3), 0x300);
        stack.set(w(7), 0x400);
        stack.set(w(11), 0x500);
        let (p, q) = p_and_q(1);
        let mut state = ThreadState::new();
        assert!(!stack.capture_walked(&mut state, p).1.joined());
        let (frames, walked) = stack.capture_walked(&mut state, q);
        assert!(walked.joined());
        assert_eq!(frames, vec![0x200, 0x300, 0x400]);
        stack.set(w(0), w(10));
        let (frames, walked) = stack.capture_walked(&mut state, q);
        assert_eq!(frames, vec![0x200, 0x300, 0x500], "{walked:?}");
        assert_eq!(frames, stack.truth(q));
    }

    #[test]
    fn a_join_that_would_pass_the_frame_limit_is_not_made() {
        // One chain of 90 frames (frame i at sp BASE + 8i, returning through [sp] into frame
        // i + 1; frame 85 ends the stack), walked from frames 25 (60 frames: the whole rest),
        // 0 (joining the first walk at its frame 1 would make 86 frames: its memo, cut at
        // `MAX_WALK`, would lack the last ones), then 75 (which, joining such a memo, would
        // miss them).
        let ip = |i: u64| 0x1000 + 16 * i;
        let mut rules: Vec<(u64, Rule)> = (0..85).map(|i| (ip(i), sp_rule(1, None))).collect();
        rules.extend((0..85).map(|i| (ip(i) + 1, sp_rule(1, None))));
        rules.push((ip(85), Rule::End));
        let stack = Synthetic {
            rules,
            memory: RefCell::new((1..=90).map(ip).collect()),
            lookups: core::cell::Cell::new(0),
        };
        let at = |i: u64| Regs {
            ip: ip(i),
            sp: BASE + 8 * i,
            bp: 0,
        };
        let mut state = ThreadState::new();
        for start in [25, 0, 75, 0, 25, 75] {
            let (frames, walked) = stack.capture_walked(&mut state, at(start));
            assert_eq!(
                frames,
                stack.truth(at(start)),
                "from frame {start}: {walked:?}"
            );
        }
    }

    #[test]
    fn a_join_needs_the_lowest_word_the_previous_walk_read() {
        // p (0x100 at w(0)) returns into f1 (0x200 at w(2)), which reads its saved bp two words
        // below its sp, at w(0) (a bp nothing uses), and returns into 0x300, the end. q starts
        // higher, at w(1), and reaches f1 too; but for q, w(0) is below the stack: the walk
        // fails there, so it must not take p's frames.
        let stack = Synthetic::new(
            vec![
                (0x101, sp_rule(2, None)),
                (0x181, sp_rule(1, None)),
                (0x200, sp_rule(2, Some(-2))),
                (0x300, Rule::End),
            ],
            8,
        );
        stack.set(w(1), 0x200);
        stack.set(w(3), 0x300);
        let (p, q) = p_and_q(0);
        let q = Regs { sp: w(1), ..q };
        let mut state = ThreadState::new();
        assert_eq!(stack.capture(&mut state, p), (vec![0x200, 0x300], false));
        assert_eq!(stack.truth(q), vec![0x200]);
        assert_eq!(stack.capture(&mut state, q), (vec![0x200], false));
    }

    #[test]
    fn a_walk_never_joins_at_its_own_first_frame() {
        // p (0x100) returns into f1 (0x200 at w(2)), and f1 into 0x300, the end. q starts at
        // f1's very pc and sp, where a first frame's rule (at 0x201) returns into 0x400.
        let stack = Synthetic::new(
            vec![
                (0x101, sp_rule(2, None)),
                (0x200, sp_rule(2, None)),
                (0x201, sp_rule(1, None)),
                (0x300, Rule::End),
                (0x400, Rule::End),
            ],
            8,
        );
        stack.set(w(1), 0x200);
        stack.set(w(2), 0x400);
        stack.set(w(3), 0x300);
        let (p, _) = p_and_q(0);
        let q = Regs {
            ip: 0x200,
            sp: w(2),
            bp: 0,
        };
        let mut state = ThreadState::new();
        assert_eq!(stack.capture(&mut state, p), (vec![0x200, 0x300], false));
        assert_eq!(stack.truth(q), vec![0x400]);
        assert_eq!(stack.capture(&mut state, q), (vec![0x400], false));
    }

    fn fresh_fail(last: u64) -> Walked {
        Walked::Unwound {
            complete: false,
            last,
            joined: false,
        }
    }

    #[test]
    fn remembered_walks_give_what_a_walk_that_remembers_nothing_gives() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        let mut below = |n: u64| rng.next_u64() % n;
        const WORDS: u64 = 48;
        let mut tallies = [0usize; 3];
        let stacks: u64 = std::env::var("STACKS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        for stack_no in 0..stacks {
            let ips: Vec<u64> = (0..10).map(|i| 0x100 + 0x10 * i).collect();
            let rules = ips
                .iter()
                .map(|&ip| {
                    let rule = match below(11) {
                        0 => Rule::Fp,
                        1 => Rule::End,
                        2 => Rule::General,
                        _ => {
                            let sp_by_8 = 1 + below(4) as u16;
                            // Saved bp below the frame's sp now and then, which only a walk
                            // from deep enough can read.
                            let bp = (below(3) == 0).then(|| below(sp_by_8 as u64 + 2) as i16 - 2);
                            sp_rule(sp_by_8, bp)
                        }
                    };
                    (ip, rule)
                })
                .collect::<Vec<_>>();
            // First-frame rules (looked up one past the pc) differ from the same address's
            // rule as a caller's, half the time.
            let firsts: Vec<(u64, Rule)> = rules
                .iter()
                .map(|&(ip, rule)| match below(2) {
                    0 => (ip + 1, rule),
                    _ => (ip + 1, sp_rule(1 + below(4) as u16, None)),
                })
                .collect();
            let rules = rules.into_iter().chain(firsts).collect();
            let word = |below: &mut dyn FnMut(u64) -> u64| match below(10) {
                0..=5 => ips[below(ips.len() as u64) as usize],
                6..=8 => BASE + 8 * below(WORDS),
                _ => below(4),
            };
            let memory = (0..WORDS).map(|_| word(&mut below)).collect();
            let stack = Synthetic {
                rules,
                memory: RefCell::new(memory),
                lookups: core::cell::Cell::new(0),
            };
            let starts: Vec<Regs> = (0..3)
                .map(|_| Regs {
                    ip: ips[below(ips.len() as u64) as usize],
                    sp: BASE + 8 * below(6),
                    bp: word(&mut below),
                })
                .collect();
            let mut state = ThreadState::new();
            for step in 0..300 {
                if below(4) == 0 {
                    let at = BASE + 8 * below(WORDS);
                    let v = word(&mut below);
                    stack.set(at, v);
                }
                let start = starts[below(3) as usize];
                let (frames, walked) = stack.capture_walked(&mut state, start);
                assert_eq!(
                    frames,
                    stack.truth(start),
                    "stack {stack_no}, step {step}: {walked:?}"
                );
                tallies[match walked {
                    Walked::Replayed => 0,
                    Walked::Unwound { joined: true, .. } => 1,
                    Walked::Unwound { .. } => 2,
                }] += 1;
            }
        }
        // The three ways a walk is found all occurred, often.
        assert!(tallies.iter().all(|&n| n > 500), "{tallies:?}");
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
