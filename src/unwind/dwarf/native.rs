//! framehop's x86_64 unwinder and cache as this unwinder uses them (over sections already
//! mapped in memory, never allocating during a walk), and the bounds of a walk.

use crate::unwind::capture::MAX_STACK_DEPTH;
use framehop::MustNotAllocateDuringUnwind;
use framehop::x86_64::{CacheX86_64, UnwinderX86_64};

pub(super) type Section = &'static [u8];
pub(super) type Native = UnwinderX86_64<Section, MustNotAllocateDuringUnwind>;
pub(super) type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

/// Frames followed at most: the deepest stack kept plus the allocator's own frames.
pub(super) const MAX_WALK: usize = MAX_STACK_DEPTH + 16;
/// Rebuilds of the object list at most (each leaks the previous list, which other threads may
/// still be reading); past this, walks through unknown objects just stop early.
pub(super) const MAX_REBUILDS: usize = 16;
