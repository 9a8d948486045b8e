//! The allocator side: `Sampler<A>` fast paths, countdown and weights, totals, the stack and
//! live tables, the page pool, their limits, LeakCheck scopes, thread names and lifecycle (fork,
//! thread exit).

pub(crate) mod budget;
pub(crate) mod countdown;
pub(crate) mod heap_stats;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub(crate) mod live_record;
pub(crate) mod live_table;
pub(crate) mod page_pool;
pub(crate) mod pooled;
pub(crate) mod sampler;
pub(crate) mod scopes;
pub(crate) mod stack_cache;
pub(crate) mod stack_table;
pub(crate) mod thread_names;
pub(crate) mod totals;
pub(crate) mod weights;
