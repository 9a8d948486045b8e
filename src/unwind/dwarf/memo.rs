//! Per-thread memos of the last walks: what each depended on, for replay and join.

use super::native::MAX_WALK;
use super::rules::{Regs, Rule, Step};
use crate::unwind::capture::{MAX_STACK_DEPTH, OwnFunctions};
/// Stack words one walk may depend on and still be remembered for replay.
pub(super) const MEMO_READS: usize = 2 * MAX_WALK;

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
pub(super) struct Memo {
    pub(super) valid: bool,
    /// Starting pc, sp, bp (compared only if `bp_live`), stack bounds, object list.
    pub(super) key: [u64; 6],
    pub(super) bp_live: bool,
    /// The first of the own functions the walk skipped (see [`Memo::replay`]).
    pub(super) own: usize,
    pub(super) reads: [(u64, u64); MEMO_READS],
    pub(super) n_reads: usize,
    /// The walk's result: the frames the sink kept.
    pub(super) frames: [usize; MAX_STACK_DEPTH],
    pub(super) n_frames: usize,
    /// Where each frame of the walk started, innermost first: what lets a later walk from
    /// another starting point join this one (see [`Memo::joinable_at`]).
    pub(super) bounds: [Boundary; MAX_WALK],
    pub(super) n_bounds: usize,
    /// The walk reached the end of the stack, so `bounds` covers every frame outward of any of
    /// its frames (a walk cut short by a failure, a full sink or the frame limit cannot be
    /// joined: its outer part is missing).
    pub(super) ended: bool,
}

/// Where one frame of a remembered walk started, and what the walk from there depended on.
#[derive(Clone, Copy)]
pub(super) struct Boundary {
    pub(super) ip: u64,
    pub(super) sp: u64,
    pub(super) bp: u64,
    /// Whether the walk from here depends on `bp` (as [`Memo::bp_live`] for the start).
    pub(super) bp_live: bool,
    /// Index in [`Memo::reads`] of the first word that this frame or an outer one depended on.
    pub(super) reads_from: u16,
    /// The lowest address this frame or an outer one read, words that decided nothing
    /// included: a walk from here reads it too, so it must be inside the joining walk's stack.
    pub(super) low: u64,
}

impl Boundary {
    pub(super) const EMPTY: Boundary = Boundary {
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
    pub(super) fn new() -> Self {
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
    pub(super) fn joinable_at(&self, cursor: &mut usize, regs: Regs) -> Option<usize> {
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
    pub(super) fn holds_from(
        &self,
        k: usize,
        read: impl Fn(u64) -> Option<u64>,
    ) -> Result<(), usize> {
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
    pub(super) fn replay(
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
pub(super) enum BpUse {
    /// Passed the frame's bp on to the caller untouched (and used it for nothing).
    Pass,
    /// Gave the caller a bp read from the stack, without using its own.
    Restore,
    /// Used its bp (frame-pointer rule, or evaluated by framehop).
    Uses,
}

/// Where rules come from and how a frame no rule covers is unwound: the object list and
/// framehop in a real walk, a fixed map in tests.
pub(super) trait Rules {
    fn rule(&mut self, ip: u64, first: bool) -> Rule;
    fn general(
        &mut self,
        regs: &mut Regs,
        first: bool,
        read: &mut dyn FnMut(u64) -> Result<u64, ()>,
    ) -> Step;
}
