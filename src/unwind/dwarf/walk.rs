//! One walk: replay a memo, join the previous walk, or unwind frame by frame.

use super::memo::{Boundary, BpUse, MEMO_READS, Memo, Rules};
use super::native::MAX_WALK;
use super::objects::{Objects, STALE, current, knows};
use super::rules::{Regs, Role, Rule, Step, classify, exec, framehop_step, with_framehop};
use crate::sys::table_alloc::TableAlloc;
use crate::unwind::capture::{FrameSink, MAX_STACK_DEPTH};
use core::cell::RefCell;
use core::sync::atomic::Ordering;
/// The rules of the current object list.
pub(super) struct LiveRules<'a> {
    pub(super) objects: &'a Objects,
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
pub(super) fn learn(objects: &Objects, ip: u64, lookup: u64, first: bool) -> Rule {
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
pub(super) fn unwind(
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
pub(super) fn join(
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
pub(super) enum Walked {
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
/// arena where it would sit among the program's blocks: `table_alloc`): the last two walks,
/// to replay, the last one also to join, and the one before it is the room for the next walk.
pub(super) struct ThreadState {
    pub(super) memos: [Memo; 2],
    /// Index in `memos` of the last walk.
    pub(super) last: usize,
}

impl ThreadState {
    /// A new state, built in place on the heap: it is ~12.5 KiB, too much to build on the stack
    /// of an allocating thread first (a thread may have as little as 16 KiB).
    pub(super) fn boxed() -> Option<StateBox> {
        let zeroed = StateBox::try_new_zeroed_in(TableAlloc).ok()?;
        // SAFETY: all-zero bytes are a valid `ThreadState`: it holds only integers, bools and
        // arrays of them; zeroed, no memo is `valid`, so no walk is remembered.
        Some(unsafe { zeroed.assume_init() })
    }

    #[cfg(test)]
    pub(super) fn new() -> Self {
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
    pub(super) fn capture(
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

pub(super) type StateBox = allocator_api2::boxed::Box<ThreadState, TableAlloc>;

thread_local! {
    /// This thread's memo, created on its first capture.
    pub(super) static STATE: RefCell<Option<StateBox>> = const { RefCell::new(None) };
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
pub(super) fn walked(sink: &mut FrameSink<'_>) -> Option<Walked> {
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
