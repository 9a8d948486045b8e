//! How a user's test suite uses `LeakCheck`: the code under test is a tiny string interner
//! with a lazily built global table and a background indexer thread. Copy the pattern:
//!
//! ```text
//! #[global_allocator]
//! static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
//!
//! #[test]
//! fn my_code_does_not_leak() {
//!     let check = heapsampler::LeakCheck::start();
//!     my_code();
//!     check.assert_no_leaks();
//! }
//! ```
//!
//! Tests run in parallel threads (libtest) or in their own processes (nextest): each check
//! only sees the thread that started it, plus the threads it hands work to explicitly.

use allocator_test as _;
use heapsampler::LeakCheck;
use std::collections::HashMap;
use std::sync::{OnceLock, mpsc};

/// The code under test.
mod interner {
    use super::*;

    /// Interns strings; `intern` returns a stable id.
    #[derive(Default)]
    pub struct Interner {
        ids: HashMap<String, u32>,
        names: Vec<String>,
    }

    impl Interner {
        pub fn intern(&mut self, s: &str) -> u32 {
            if let Some(&id) = self.ids.get(s) {
                return id;
            }
            let id = self.names.len() as u32;
            self.names.push(s.to_owned());
            self.ids.insert(s.to_owned(), id);
            id
        }

        /// A bug: hands out a leaked copy "to avoid a lifetime".
        // Named in a leak report by its frame: not inlined, or a release build without debug
        // info would have no frame to name (with debug info, inlined frames are named too).
        #[inline(never)]
        pub fn name_leaky(&self, id: u32) -> &'static str {
            Box::leak(self.names[id as usize].clone().into_boxed_str())
        }
    }

    /// Keywords, built once per process on first use and kept on purpose.
    // Allowed by name in a leak check, so its frame must be on the allocating stack in every
    // build: not inlined, and `black_box` keeps the table's construction from being a tail
    // call (which an optimised build makes of the last call, leaving no frame).
    #[inline(never)]
    pub fn keywords() -> &'static HashMap<&'static str, u32> {
        static KEYWORDS: OnceLock<HashMap<&'static str, u32>> = OnceLock::new();
        std::hint::black_box(
            KEYWORDS.get_or_init(|| ["fn", "let", "match"].into_iter().zip(0..).collect()),
        )
    }

    /// Interns on a background thread and sends back the ids.
    pub fn intern_in_background(words: Vec<String>) -> Vec<u32> {
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            let mut interner = Interner::default();
            for w in &words {
                tx.send(interner.intern(w)).unwrap();
            }
        });
        let ids = rx.iter().collect();
        worker.join().unwrap();
        ids
    }
}

use interner::*;

fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("word{}", i % 50)).collect()
}

#[test]
fn interning_frees_everything() {
    let check = LeakCheck::start();
    let mut interner = Interner::default();
    for w in words(1000) {
        interner.intern(&w);
    }
    drop(interner);
    check.assert_no_leaks();
}

#[test]
fn interning_stays_within_a_heap_budget() {
    let check = LeakCheck::start();
    let mut interner = Interner::default();
    let words = words(1000);
    for w in &words {
        interner.intern(w);
    }
    // dhat-style assertions, but for this scope only.
    assert!(
        check.peak_live_bytes() < 64 * 1024,
        "peak {} bytes",
        check.peak_live_bytes()
    );
    assert!(
        check.alloc_objects() < 1200,
        "{} allocations",
        check.alloc_objects()
    );
    drop((interner, words));
    check.assert_no_leaks();
}

#[test]
#[should_panic(expected = "Interner::name_leaky")]
fn a_leak_fails_the_test_and_names_where_it_was_allocated() {
    let check = LeakCheck::start();
    let mut interner = Interner::default();
    let id = interner.intern("hello");
    assert_eq!(interner.name_leaky(id), "hello");
    drop(interner);
    check.assert_no_leaks(); // panics: "leak check: 5 bytes leaked in 1 object at 1 site ..."
}

#[test]
fn memory_kept_on_purpose_is_allowed_by_name() {
    // The keyword table is built on first use and lives for the whole process.
    let check = LeakCheck::start().allow("keywords");
    assert_eq!(keywords()["let"], 1);
    check.assert_no_leaks();
}

#[test]
fn work_handed_to_a_thread_is_checked_when_the_thread_joins_the_check() {
    // `intern_in_background` spawns its own thread, which is not in the check: to include it,
    // run the code through a thread that joined the check (or pass `check.handle()` to it).
    let check = LeakCheck::start();
    let ids = check
        .spawn(|| intern_in_background(words(100)))
        .join()
        .unwrap();
    assert_eq!(ids.len(), 100);
    // The result was allocated in the check: still live here, it would be reported.
    drop(ids);
    check.assert_no_leaks();
}

#[test]
fn a_small_known_leak_can_be_budgeted() {
    let check = LeakCheck::start();
    let interner = {
        let mut i = Interner::default();
        i.intern("abc");
        i
    };
    let _name: &'static str = interner.name_leaky(0);
    drop(interner);
    check.assert_leaked_at_most(3);
}
