//! Moments: snapshots with an id, kept a little while so that two requests (a
//! pprof and a JSON report, say) can be served from the very same snapshot.

use crate::read::profile::{Profile, snapshot};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many moments are kept for `?snapshot=<id>`: enough for a client to fetch a few views
/// of one moment, bounded so that the server's memory is too.
pub(crate) const KEPT: usize = 8;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One snapshot.
pub(crate) struct Moment {
    pub id: u64,
    pub profile: Profile,
}

impl Moment {
    /// Takes a snapshot now (under the caller's reentrancy guard). Not symbolized: the
    /// renderers symbolize each distinct address once, through the process-wide cache,
    /// instead of copying every frame of every site.
    pub fn take() -> Moment {
        let profile = snapshot();
        Moment {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            profile,
        }
    }
}

/// The last [`KEPT`] moments, newest last.
#[derive(Default)]
pub(crate) struct Moments {
    kept: Mutex<VecDeque<Arc<Moment>>>,
}

impl Moments {
    /// A new moment, kept.
    pub fn fresh(&self) -> Arc<Moment> {
        let moment = Arc::new(Moment::take());
        let mut kept = self.kept.lock();
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(moment.clone());
        moment
    }

    /// A kept moment by id.
    pub fn get(&self, id: u64) -> Option<Arc<Moment>> {
        self.kept.lock().iter().find(|m| m.id == id).cloned()
    }
}

/// `newer − older` site by site (sites matched by stack id and addresses; a site only in
/// `older` gets its negated live values), for `?seconds=N`: Go's delta heap profile.
pub(crate) fn delta(newer: &Profile, older: &Profile) -> Profile {
    let mut by_id = std::collections::HashMap::new();
    for s in &older.sites {
        by_id.insert(s.stack_id, s);
    }
    let mut sites = Vec::with_capacity(newer.sites.len());
    for s in &newer.sites {
        let mut d = s.clone();
        let same = by_id
            .get(&s.stack_id)
            .is_some_and(|o| o.addresses == s.addresses);
        if let Some(o) = same.then(|| by_id.remove(&s.stack_id)).flatten() {
            d.live_bytes -= o.live_bytes;
            d.live_objects -= o.live_objects;
            d.alloc_bytes -= o.alloc_bytes;
            d.alloc_objects -= o.alloc_objects;
        }
        // Thread shares are cumulative too; a delta has none to split by.
        d.threads.clear();
        sites.push(d);
    }
    for o in by_id.into_values() {
        let mut d = o.clone();
        d.live_bytes = -o.live_bytes;
        d.live_objects = -o.live_objects;
        d.alloc_bytes = 0.0;
        d.alloc_objects = 0.0;
        d.threads.clear();
        sites.push(d);
    }
    sites.retain(|s| s.live_bytes != 0.0 || s.alloc_bytes != 0.0);
    Profile {
        pid: newer.pid,
        timestamp_ms: newer.timestamp_ms,
        sample_interval: newer.sample_interval,
        totals: newer.totals,
        profiler: newer.profiler.clone(),
        sites,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::profile::Site;

    fn site(id: u32, live: f64, alloc: f64) -> Site {
        Site {
            stack_id: id,
            addresses: vec![u64::from(id) * 16],
            live_bytes: live,
            live_objects: live / 8.0,
            alloc_bytes: alloc,
            alloc_objects: alloc / 8.0,
            ..Site::default()
        }
    }

    #[test]
    fn delta_subtracts_matched_sites_and_negates_vanished_ones() {
        let older = Profile {
            sites: vec![
                site(1, 800.0, 1600.0),
                site(2, 80.0, 80.0),
                site(3, 8.0, 8.0),
            ],
            ..Profile::default()
        };
        let mut moved = site(3, 16.0, 16.0);
        moved.addresses = vec![999]; // id reused by another stack: a new site
        let newer = Profile {
            sites: vec![site(1, 1600.0, 4000.0), site(2, 80.0, 80.0), moved],
            ..Profile::default()
        };
        let d = delta(&newer, &older);
        let find = |id: u32, addr: u64| {
            d.sites
                .iter()
                .find(|s| s.stack_id == id && s.addresses == [addr])
                .map(|s| (s.live_bytes, s.alloc_bytes))
        };
        assert_eq!(find(1, 16), Some((800.0, 2400.0)));
        assert_eq!(find(2, 32), None, "unchanged sites are left out");
        assert_eq!(find(3, 999), Some((16.0, 16.0)));
        assert_eq!(find(3, 48), Some((-8.0, 0.0)));
        assert_eq!(d.sites.len(), 3);
    }

    #[test]
    fn moments_keep_the_last_few() {
        let _guard = crate::sys::guard::enter_guard();
        let moments = Moments::default();
        let first = moments.fresh();
        assert!(moments.get(first.id).is_some());
        for _ in 0..KEPT {
            moments.fresh();
        }
        assert!(moments.get(first.id).is_none());
    }
}
