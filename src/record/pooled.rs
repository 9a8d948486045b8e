//! Live records of sampled blocks that came from the page pool, kept beside their pages.
//!
//! A pooled block owns the cell of its first page (`page_pool::Cell`, one cache line), so its
//! record needs no hash table and no lock: only one thread at a time can hold the block — the
//! one that allocated it until it hands the pointer out, then whichever frees it — and that
//! thread is the cell's only writer. Recording and removing a sample each cost one cache line
//! and no locked instruction, where the shared table takes a shard lock (two locked
//! read-modify-writes) and a hash probe.
//!
//! Readers on other threads (snapshots, through [`for_each`]) read a cell under a sequence
//! lock: the writer makes the sequence odd, writes, and makes it even again, and a reader
//! retries until it sees the same even sequence on both sides of its read.

use crate::record::live_record::LiveRecord;
use crate::record::page_pool::{self, Cell, LINK};
use crate::record::weights::SampleInfo;
use crate::sys::single_writer::{seq_read, seq_write};
use core::sync::atomic::Ordering;

const SEQ: usize = 0;
const STATE: usize = 1;
const SIZE: usize = LINK;
const LAYOUT: usize = 3;
const SITE: usize = 4;
const W_COUNT: usize = 5;
const W_BYTES: usize = 6;
const TAG: usize = 7;
const LIVE: u64 = 1;

/// Writes `words` into `cell` under its sequence lock. The caller is the cell's only writer.
fn publish(cell: &Cell, state: u64, words: Option<&[u64; 6]>) {
    seq_write(&cell.words[SEQ], || {
        if let Some(words) = words {
            for (dst, &w) in cell.words[SIZE..].iter().zip(words) {
                dst.store(w, Ordering::Relaxed);
            }
        }
        cell.words[STATE].store(state, Ordering::Relaxed);
    })
}

/// Records the live block at `ptr`, which the pool handed out and the program does not have
/// yet. `false` if `ptr` is not a pooled block.
pub(crate) fn insert(ptr: usize, record: &LiveRecord) -> bool {
    let Some(cell) = page_pool::cell_of(ptr) else {
        return false;
    };
    let s = &record.sample;
    let words = [
        record.size as u64,
        (record.align as u32 as u64)
            | (record.pool as u64) << 32
            | (record.slot as u64) << 40
            | (s.exact as u64) << 48,
        record.stack as u64 | (s.thread as u64) << 32,
        s.w_objects,
        s.w_bytes,
        s.tag as u64,
    ];
    publish(cell, LIVE, Some(&words));
    true
}

/// Removes and returns the record of the pooled block `ptr`, which the caller is freeing.
pub(crate) fn remove(ptr: usize) -> Option<LiveRecord> {
    let cell = page_pool::cell_of(ptr)?;
    // The caller is the cell's writer: no sequence lock is needed to read it.
    let record = decode(cell)?;
    publish(cell, 0, None);
    Some(record)
}

/// The record of the pooled block `ptr`, left in place.
pub(crate) fn get(ptr: usize) -> Option<LiveRecord> {
    read(page_pool::cell_of(ptr)?)
}

/// Calls `f` with every live pooled block and its record.
pub(crate) fn for_each(mut f: impl FnMut(usize, &LiveRecord)) {
    page_pool::for_each_cell(|ptr, cell| {
        if let Some(record) = read(cell) {
            f(ptr, &record);
        }
    });
}

/// A consistent read of `cell` from any thread: its record if it is live. Gives up (reporting
/// nothing) after a bounded number of tries: a cell whose writer was mid-write at `fork()`
/// stays odd for ever in the child.
fn read(cell: &Cell) -> Option<LiveRecord> {
    seq_read(&cell.words[SEQ], || decode(cell)).flatten()
}

fn decode(cell: &Cell) -> Option<LiveRecord> {
    let w = |i: usize| cell.words[i].load(Ordering::Relaxed);
    if w(STATE) != LIVE {
        return None;
    }
    let layout = w(LAYOUT);
    let site = w(SITE);
    Some(LiveRecord {
        size: w(SIZE) as usize,
        align: layout as u32 as usize,
        pool: (layout >> 32) as u8,
        stack: site as u32,
        slot: (layout >> 40) as u8,
        sample: SampleInfo {
            w_objects: w(W_COUNT),
            w_bytes: w(W_BYTES),
            exact: (layout >> 48) & 1 == 1,
            tag: w(TAG) as u32,
            thread: (site >> 32) as u32,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_is_gone_after_removal() {
        let block = page_pool::alloc(0);
        if block.is_null() {
            return; // No pool on this machine (page size other than 4 KiB).
        }
        let ptr = block as usize;
        let record = LiveRecord {
            size: 4000,
            align: 64,
            pool: 1,
            stack: 0xdead_beef,
            slot: 7,
            sample: SampleInfo {
                w_objects: 1 << 20,
                w_bytes: 3 << 30,
                exact: false,
                tag: 0,
                thread: 42,
            },
        };
        assert!(insert(ptr, &record));
        let got = get(ptr).expect("live");
        assert_eq!(format!("{got:?}"), format!("{record:?}"));
        let mut seen = 0;
        for_each(|p, r| {
            if p == ptr {
                seen += 1;
                assert_eq!(r.stack, record.stack);
            }
        });
        assert_eq!(seen, 1, "listed once while live");
        assert_eq!(remove(ptr).map(|r| r.sample.thread), Some(42));
        assert!(get(ptr).is_none() && remove(ptr).is_none(), "gone");
        for_each(|p, _| assert_ne!(p, ptr, "not listed once removed"));
        assert!(!insert(0x1000, &record), "not a pooled block");
        // SAFETY: `block` came from `alloc(0)` and is not used again.
        unsafe { page_pool::free(block, 0) };
    }
}
