//! Unwind rules: framehop's cached rules classified into a compact encoding, the shared rule table, and one frame's execution.

use super::native::{Cache, Native};
use crate::sys::fork_mutex::ForkMutex;
use core::sync::atomic::{AtomicU64, Ordering};
use framehop::x86_64::UnwindRegsX86_64;
use framehop::{FrameAddress, Unwinder};
/// How one frame is unwound, as framehop's cached rule for its address does it (x86-64 DWARF
/// CFI reduces to these for nearly every function; see [`classify`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Rule {
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
pub(super) const SP_BY_8_MAX: u16 = (1 << 12) - 1;
pub(super) const BP_AT_BY_8_MAX: i16 = (1 << 11) - 1;

/// The bits of a table entry that hold the rule: kind in bits 0..3 (0 = empty), a bp-restore
/// flag in bit 3, `sp_by_8` in bits 4..16, `bp_at_by_8` in bits 16..28.
pub(super) const RULE_BITS: u64 = (1 << 28) - 1;

impl Rule {
    pub(super) fn pack(self) -> u64 {
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

    pub(super) fn unpack(bits: u64) -> Option<Rule> {
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
    pub(super) fn fits(self) -> bool {
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
pub(super) struct RuleTable {
    pub(super) entries: Box<[AtomicU64]>,
}

pub(super) const RULE_SETS: usize = 1 << 12;
/// Addresses below this fit an entry (35 tag bits above the 12 index bits).
pub(super) const RULE_ADDRESS_LIMIT: u64 = 1 << 47;

impl RuleTable {
    pub(super) fn new() -> Self {
        RuleTable {
            entries: (0..2 * RULE_SETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(super) fn tag(lookup: u64, first: bool) -> u64 {
        ((lookup >> 12) << 29) | ((first as u64) << 28)
    }

    pub(super) fn set(&self, lookup: u64) -> &[AtomicU64] {
        let i = (lookup as usize % RULE_SETS) * 2;
        self.entries.get(i..i + 2).unwrap_or(&[])
    }

    #[inline(always)]
    pub(super) fn get(&self, lookup: u64, first: bool) -> Option<Rule> {
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
    pub(super) fn put(&self, lookup: u64, first: bool, rule: Rule) {
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
pub(super) struct Regs {
    pub(super) ip: u64,
    pub(super) sp: u64,
    pub(super) bp: u64,
}

/// What unwinding one frame gave: the caller's return address, the end of the stack, or a
/// failure (unreadable stack, a rule that does not advance).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Step {
    Caller(u64),
    End,
    Fail,
}

/// What a stack read fed, for deciding which words a replay must check (see [`Memo`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Role {
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
pub(super) fn exec(
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
pub(super) fn frame_address(ip: u64, first: bool) -> Option<FrameAddress> {
    if first {
        Some(FrameAddress::from_instruction_pointer(ip))
    } else {
        FrameAddress::from_return_address(ip)
    }
}

/// One frame unwound by framehop itself, reading through `read`.
pub(super) fn framehop_step(
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
pub(super) const PROBES: [(u64, u64); 2] = [
    (0x1000_0000_0000, 0x3000_0000_0000),
    (0x1000_0000_1008, 0x3000_0000_2018),
];

/// The word a probe's stack holds at `a`: distinct per address, never 0.
pub(super) fn probe_word(a: u64) -> u64 {
    !a
}

/// Learns the rule framehop applies at a frame, without touching the real stack: framehop
/// unwinds the frame over a synthetic stack. Its cache hit counter tells whether the frame has
/// a cached rule (the second probe hits only if the first stored one); a cached rule is one of
/// `UnwindRuleX86_64`'s variants, whose reads are at fixed offsets from sp or bp, so the reads
/// and the resulting registers identify it. The result is then checked against framehop at
/// two probe points; anything that does not match exactly is [`Rule::General`].
pub(super) fn classify(unwinder: &Native, cache: &mut Cache, ip: u64, first: bool) -> Rule {
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
pub(super) static FRAMEHOP: ForkMutex<Option<Box<Cache>>> = ForkMutex::new(None);

/// Runs `f` with framehop's cache; `None` if it could not be created.
pub(super) fn with_framehop<R>(f: impl FnOnce(&mut Cache) -> R) -> Option<R> {
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
