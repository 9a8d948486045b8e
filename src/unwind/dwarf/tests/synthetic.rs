//! Walks over synthetic stacks and rules: replay, join and their checks.

use super::*;

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
