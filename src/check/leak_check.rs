//! [`LeakCheck`]: a check's scope from start to verdict.

use super::CheckHandle;
use super::leak_report::{LeakReport, LeakSite};
use super::library_frames::*;
use crate::read::profile::Frame;
use crate::read::symbolize;
use crate::record::heap_stats::HeapStats;
use crate::record::live_record::StackId;
use crate::record::scopes;
use crate::record::{countdown, live_table, stack_table};
use crate::sys::table_alloc::{TableAlloc, TableVec};
use core::marker::PhantomData;
use scopes::MAX_NEST;

/// An exact leak check over a scope of a test: fails with the stacks of whatever was allocated
/// in it and not freed.
///
/// [`start`](Self::start) puts the calling thread in the check's scope; every allocation the
/// thread makes from then on is recorded exactly, with its stack, until the check finishes.
/// Other threads are not recorded unless they join explicitly (see
/// [`handle`](Self::handle) and [`spawn`](Self::spawn)), so tests running in parallel in one
/// process (libtest) or one per process (nextest) do not disturb each other.
///
/// Finish with [`assert_no_leaks`](Self::assert_no_leaks),
/// [`assert_leaked_at_most`](Self::assert_leaked_at_most) or [`finish`](Self::finish). A check
/// dropped without finishing (say, the test panicked) just ends its scope.
///
/// # Nesting
/// A check started inside another on the same thread (or on a thread that joined one) is
/// *nested*: the inner check sees only what is allocated while it is active; the outer one
/// sees everything, including what the inner check allocated. Blocks still live when the inner
/// check finishes are handed to the outer check, which reports them if they are still live
/// when it finishes (unless its own allow-list matches them). Heap counters of the outer check
/// include the inner check's allocations as they happen. Finish checks in reverse order of
/// starting; a check finished out of order stops counting at once, and its inner checks then
/// hand their objects to the nearest enclosing check still active.
///
/// # What counts
/// An object belongs to the check when a thread in its scope allocated it. Its membership
/// follows it through `realloc`, on any thread: an object of the check grown elsewhere is still
/// the check's, and an object that existed before the check (a fixture's vector, libtest's output
/// buffer) is not the check's when grown inside it. Frees count on whichever thread makes them.
/// The runtime's own memory is allowed in every check when the runtime allocated it with no
/// frame of the code under test inside: libtest's output capture and stdout's buffer
/// (`std::io::stdio`), a thread's handle and result packet (`std::thread`, released as the
/// thread exits, which for a scoped thread is after `thread::scope` returned). The check's own
/// work (allow-list, counters, symbolization, the report) is never recorded.
///
/// # Limits
/// Up to 256 checks can be active at once with heap counters; a check started beyond that
/// still finds its thread's leaks, but [`stats`](Self::stats) returns `None` and it cannot be
/// shared with other threads ([`handle`](Self::handle) panics and says so). Tags are unique
/// for 2^24 checks per process.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
/// let check = heapsampler::LeakCheck::start();
/// let mut v: Vec<u64> = (0..1000).collect();
/// v.retain(|x| x % 2 == 0);
/// drop(v);
/// assert!(check.peak_live_bytes() >= 8000);
/// check.assert_no_leaks();
/// ```
#[derive(Debug)]
pub struct LeakCheck {
    tag: u32,
    owns_slot: bool,
    /// Enclosing checks when this one started, innermost first, 0-terminated.
    ancestors: [u32; MAX_NEST],
    /// Allowed function-name substrings; allocated under the reentrancy guard, so never in scope.
    allow: Vec<String>,
    done: bool,
    /// The scope belongs to the thread that started it.
    _not_send: PhantomData<*const ()>,
}

impl LeakCheck {
    /// Starts a check: every allocation this thread makes from now on is recorded exactly until
    /// the check finishes (or is dropped).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// let s = String::from("freed before the end");
    /// drop(s);
    /// check.assert_no_leaks();
    /// ```
    pub fn start() -> LeakCheck {
        let mut ancestors = [0u32; MAX_NEST];
        let enclosing = countdown::current_scope();
        if scopes::is_active(enclosing) {
            let mut above = [0u32; MAX_NEST];
            scopes::ancestors_of(enclosing, &mut above);
            ancestors[0] = enclosing;
            ancestors[1..].copy_from_slice(&above[..MAX_NEST - 1]);
        }
        let (tag, owns_slot) = scopes::claim(&ancestors);
        // Last: nothing above is allocated in the scope.
        countdown::enter_scope(tag);
        scopes::set_owner(tag);
        LeakCheck {
            tag,
            owns_slot,
            ancestors,
            allow: Vec::new(),
            done: false,
            _not_send: PhantomData,
        }
    }

    /// Allows memory retained on purpose: a live site whose symbolized stack has a function
    /// containing `pattern` is not a leak (it is listed in [`LeakReport::allowed`]). Lazy
    /// statics, thread-locals and caches are the usual candidates.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// static CACHE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    /// let check = heapsampler::LeakCheck::start().allow("OnceLock");
    /// CACHE.get_or_init(|| vec![1, 2, 3]);
    /// check.assert_no_leaks();
    /// ```
    pub fn allow(mut self, pattern: &str) -> Self {
        // The list is the check's own bookkeeping: keep it out of the scope.
        let _guard = crate::sys::guard::enter_guard();
        self.allow.push(pattern.to_owned());
        self
    }

    /// A handle other threads can use to join this check's scope: it is `Send + Clone`, and
    /// [`CheckHandle::enter`] records the entering thread's allocations in this check until
    /// the returned guard drops.
    ///
    /// There is no hook into `std::thread::spawn`, so threads join explicitly: through this
    /// handle (for thread pools and channels), [`LeakCheck::spawn`], or
    /// [`CheckHandle::wrap`]. Threads that do not join are not part of the check — their
    /// allocations are neither recorded nor reported, though their frees of objects allocated
    /// in scope always count.
    ///
    /// # Panics
    /// If this check runs without a slot (more than 256 checks active at once).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// let handle = check.handle();
    /// std::thread::spawn(move || {
    ///     let _in_check = handle.enter();
    ///     std::mem::forget(vec![0u8; 100]); // recorded in the check
    /// })
    /// .join()
    /// .unwrap();
    /// assert_eq!(check.finish().leaked_bytes, 100);
    /// ```
    #[track_caller]
    pub fn handle(&self) -> CheckHandle {
        assert!(
            self.owns_slot,
            "heapsampler: this LeakCheck cannot be shared with other threads: more than 256 \
             leak checks were active at once when it started"
        );
        CheckHandle { tag: self.tag }
    }

    /// Spawns a thread that runs `f` inside this check's scope: a leak in `f` is this check's
    /// leak. Shorthand for `std::thread::spawn` with [`CheckHandle::wrap`].
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// let sum = check.spawn(|| (0..100u64).collect::<Vec<_>>().iter().sum::<u64>()).join().unwrap();
    /// assert_eq!(sum, 4950);
    /// check.assert_no_leaks();
    /// ```
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> std::thread::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle().spawn(f)
    }

    /// The scope's heap usage so far; `None` when the check has no counters (more than 256
    /// checks were active at once when it started).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// let a = vec![0u8; 300];
    /// let b = vec![0u8; 200];
    /// drop(a);
    /// let stats = check.stats().unwrap();
    /// assert_eq!((stats.alloc_objects, stats.live_bytes, stats.peak_live_bytes), (2, 200, 500));
    /// drop(b);
    /// # check.assert_no_leaks();
    /// ```
    pub fn stats(&self) -> Option<HeapStats> {
        if !self.owns_slot {
            return None;
        }
        scopes::read(self.tag)
    }

    #[track_caller]
    fn counted(&self) -> HeapStats {
        match self.stats() {
            Some(s) => s,
            None => panic!(
                "heapsampler: this LeakCheck has no heap counters: more than 256 leak checks \
                 were active at once when it started"
            ),
        }
    }

    /// The most bytes allocated in scope that were live at once, so far.
    ///
    /// # Panics
    /// When the check has no counters (see [`stats`](Self::stats)).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// drop(vec![0u8; 4096]);
    /// assert_eq!(check.peak_live_bytes(), 4096);
    /// # check.assert_no_leaks();
    /// ```
    #[track_caller]
    pub fn peak_live_bytes(&self) -> u64 {
        self.counted().peak_live_bytes
    }

    /// Objects allocated in scope so far (a `realloc` counts as one).
    ///
    /// # Panics
    /// When the check has no counters (see [`stats`](Self::stats)).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// for _ in 0..3 {
    ///     drop(Box::new(1u32));
    /// }
    /// assert_eq!(check.alloc_objects(), 3);
    /// # check.assert_no_leaks();
    /// ```
    #[track_caller]
    pub fn alloc_objects(&self) -> u64 {
        self.counted().alloc_objects
    }

    /// Bytes allocated in scope so far.
    ///
    /// # Panics
    /// When the check has no counters (see [`stats`](Self::stats)).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// drop(vec![0u8; 10]);
    /// drop(vec![0u8; 20]);
    /// assert_eq!(check.alloc_bytes(), 30);
    /// # check.assert_no_leaks();
    /// ```
    #[track_caller]
    pub fn alloc_bytes(&self) -> u64 {
        self.counted().alloc_bytes
    }

    /// Bytes allocated in scope and live now.
    ///
    /// # Panics
    /// When the check has no counters (see [`stats`](Self::stats)).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// let v = vec![0u8; 64];
    /// assert_eq!(check.live_bytes(), 64);
    /// drop(v);
    /// # check.assert_no_leaks();
    /// ```
    #[track_caller]
    pub fn live_bytes(&self) -> u64 {
        self.counted().live_bytes
    }

    /// Ends the check and reports the objects allocated in scope that are still live, grouped
    /// by call site with symbolized stacks.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// let keep = vec![0u8; 32];
    /// let report = check.finish();
    /// assert_eq!((report.leaked_bytes, report.leaked_objects), (32, 1));
    /// drop(keep); // freeing it later is fine: the record leaves the profile
    /// ```
    pub fn finish(mut self) -> LeakReport {
        self.end_scope();
        // Everything below is the check's own work: never recorded, never in any scope.
        let _guard = crate::sys::guard::enter_guard();
        let mut records = collect_records(self.tag);
        records.sort_unstable_by_key(|r| r.0);
        prefetch_stacks(&records);
        let mut report = LeakReport::default();
        let mut start = 0;
        while start < records.len() {
            let stack = records[start].0;
            let end = start + records[start..].iter().take_while(|r| r.0 == stack).count();
            let bytes = records[start..end].iter().map(|r| r.1 as u64).sum();
            let site = site_of(stack, bytes, (end - start) as u64);
            let allowed = self
                .allow
                .iter()
                .any(|p| site.1.iter().any(|f| function_contains(f, p)))
                || allocated_by_runtime(&site.1);
            if allowed {
                report.allowed.push(site.0);
            } else {
                report.leaked_bytes += bytes;
                report.leaked_objects += (end - start) as u64;
                report.sites.push(site.0);
            }
            start = end;
        }
        report.sites = merge_same_source(std::mem::take(&mut report.sites));
        report.allowed = merge_same_source(std::mem::take(&mut report.allowed));
        report.stats = self.retire();
        report
    }

    /// Ends the check and panics if anything allocated in scope is still live (and not
    /// allowed), with a message that gives the total leaked and, per site, the bytes, the
    /// object count and the stack — the code under test first.
    ///
    /// # Panics
    /// On a leak, or when allocations in scope could not be recorded (tables full).
    ///
    /// ```should_panic
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// std::mem::forget(vec![1u8; 10]);
    /// check.assert_no_leaks(); // panics: "leak check: 10 bytes leaked in 1 object at 1 site ..."
    /// ```
    #[track_caller]
    pub fn assert_no_leaks(self) {
        let report = self.finish();
        if !report.is_clean() {
            panic!("{report}");
        }
    }

    /// Ends the check and panics if more than `bytes` bytes allocated in scope are still live
    /// (and not allowed), with the same message as [`assert_no_leaks`](Self::assert_no_leaks).
    ///
    /// # Panics
    /// Above the budget, or when allocations in scope could not be recorded (tables full).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// let kept = Box::leak(Box::new(0u64));
    /// check.assert_leaked_at_most(8);
    /// # let _ = kept;
    /// ```
    #[track_caller]
    pub fn assert_leaked_at_most(self, bytes: u64) {
        let report = self.finish();
        let unrecorded = report.stats.map_or(0, |s| s.unrecorded);
        if report.leaked_bytes > bytes || unrecorded > 0 {
            panic!("leak budget of {bytes} bytes exceeded\n{report}");
        }
    }

    /// Leaves the thread's scope, returning it to the nearest enclosing check still active.
    fn end_scope(&mut self) {
        if countdown::current_scope() == self.tag {
            countdown::leave_scope(self.nearest_active_ancestor());
        }
    }

    fn nearest_active_ancestor(&self) -> u32 {
        self.ancestors
            .iter()
            .copied()
            .find(|&a| scopes::is_active(a))
            .unwrap_or(0)
    }

    /// Hands the scope's live objects to the enclosing check and frees the slot.
    fn retire(&mut self) -> Option<HeapStats> {
        self.done = true;
        let parent = self.nearest_active_ancestor();
        if parent != 0 {
            live_table::retag(self.tag, parent);
        }
        scopes::release(self.tag, self.owns_slot)
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        if !self.done {
            self.end_scope();
            self.retire();
        }
    }
}

/// `(stack, size)` of every live record carrying `tag`. Uses the table allocator: a global
/// allocation while a live-table shard is locked could re-enter that lock through a free.
pub(super) fn collect_records(tag: u32) -> TableVec<(StackId, usize)> {
    let mut out = TableVec::new_in(TableAlloc);
    live_table::for_each(|_, rec| {
        if rec.sample.tag == tag && out.try_reserve(1).is_ok() {
            out.push((rec.stack, rec.size));
        }
    });
    out
}

/// Symbolizes the addresses of every leaked stack in one batch (one load of the debug info).
fn prefetch_stacks(records: &[(StackId, usize)]) {
    let mut addresses: Vec<u64> = Vec::new();
    let mut raw = TableVec::new_in(TableAlloc);
    for run in records.chunk_by(|a, b| a.0 == b.0) {
        raw.clear();
        stack_table::frames_of(run[0].0, &mut raw);
        addresses.extend(raw.iter().map(|&a| a as u64));
    }
    addresses.sort_unstable();
    addresses.dedup();
    symbolize::prefetch(&addresses);
}

/// The reported site (library allocation frames trimmed) and its full symbolized stack.
pub(super) fn site_of(stack: StackId, bytes: u64, objects: u64) -> (LeakSite, Vec<Frame>) {
    let mut raw = TableVec::new_in(TableAlloc);
    stack_table::frames_of(stack, &mut raw);
    let addresses: Vec<u64> = raw.iter().map(|&a| a as u64).collect();
    drop(raw);
    let full = symbolize::frames_of(&addresses);
    let lead = full.iter().take_while(|f| is_library_frame(f)).count();
    let frames = if lead < full.len() {
        full[lead..].to_vec()
    } else {
        full.clone()
    };
    (
        LeakSite {
            stack_id: stack,
            bytes,
            objects,
            addresses,
            frames,
        },
        full,
    )
}

/// Merges sites whose symbolized stacks read the same (function, file, line) all the way
/// down — one source location reached through several return addresses, as an unrolled loop
/// or inlined copies produce — and sorts them, most bytes first.
pub(super) fn merge_same_source(sites: Vec<LeakSite>) -> Vec<LeakSite> {
    type Key = Vec<(Option<String>, Option<String>, Option<u32>)>;
    let mut merged: Vec<LeakSite> = Vec::with_capacity(sites.len());
    let mut index: std::collections::HashMap<Key, usize> = std::collections::HashMap::new();
    for site in sites {
        if site.frames.is_empty() {
            merged.push(site);
            continue;
        }
        let key: Key = site
            .frames
            .iter()
            .map(|f| (f.function.clone(), f.file.clone(), f.line))
            .collect();
        match index.get(&key) {
            Some(&i) => {
                merged[i].bytes += site.bytes;
                merged[i].objects += site.objects;
            }
            None => {
                index.insert(key, merged.len());
                merged.push(site);
            }
        }
    }
    merged.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.objects.cmp(&a.objects)));
    merged
}
