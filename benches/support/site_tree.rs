//! 10,000 distinct live call sites: a recursion taking one of two call sites per level,
//! 14 levels deep, gives every allocation its own stack (`benches/http_pprof.rs`,
//! `examples/pprof_cost.rs`).

use std::hint::black_box;

pub const SITES: u32 = 10_000;
pub const LEVELS: u32 = 14; // 2^14 > SITES distinct paths

#[inline(never)]
fn left(i: u32, level: u32, out: &mut Vec<Box<[u8]>>) {
    descend(i, level, out);
    // Not a tail call: this frame's return address stays on the stack. The two sides differ
    // (1 and 2) so that the compiler cannot merge them into one function.
    black_box(1u8);
}

#[inline(never)]
fn right(i: u32, level: u32, out: &mut Vec<Box<[u8]>>) {
    descend(i, level, out);
    black_box(2u8);
}

#[inline(never)]
pub fn descend(i: u32, level: u32, out: &mut Vec<Box<[u8]>>) {
    if level == 0 {
        out.push(vec![i as u8; 64].into_boxed_slice());
    } else if (black_box(i) >> (level - 1)) & 1 == 1 {
        left(i, level - 1, out);
    } else {
        right(i, level - 1, out);
    }
}
