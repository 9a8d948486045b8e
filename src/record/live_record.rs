//! What the live table remembers of each live recorded block, and the id of the stack it was
//! allocated from: the types the tables (live, pooled, stack, stack cache) share, below all of
//! them.

use crate::record::weights::SampleInfo;
use core::alloc::Layout;

/// Identifies a distinct call stack for the life of the process.
pub type StackId = u32;

/// What is remembered of a live sampled block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveRecord {
    /// Size and alignment the block was allocated with from the inner allocator.
    pub size: usize,
    pub align: usize,
    /// 0: the block came from the inner allocator; otherwise from the page pool's class
    /// `pool - 1` (see `pages`).
    pub pool: u8,
    pub stack: StackId,
    /// The sample's thread-share slot in its site (see `stacks::SiteSums`).
    pub slot: u8,
    pub sample: SampleInfo,
}

impl LiveRecord {
    pub(crate) fn layout(&self) -> Layout {
        // SAFETY: size and align were taken from a valid `Layout` when the block was allocated.
        unsafe { Layout::from_size_align_unchecked(self.size, self.align) }
    }
}
