impl Walked {
    fn joined(self) -> bool {
        matches!(self, Walked::Unwound { joined: true, .. })
    }
}

use super::memo::Rules;
use super::objects::{Objects, build, eh_frame_address, knows};
use super::rules::{
    BP_AT_BY_8_MAX, Regs, Rule, RuleTable, SP_BY_8_MAX, Step, classify, with_framehop,
};
use super::walk::{STATE, ThreadState, Walked, walk, walked};
use crate::unwind::capture::{FrameSink, MAX_STACK_DEPTH};
use core::cell::RefCell;

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
        crate::unwind::capture::walker_check::agrees_with_the_system_unwinder(walk, 14);
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
    let _guard = crate::sys::guard::enter_guard();
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

mod synthetic;

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
