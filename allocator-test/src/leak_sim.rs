//! A simulated call site under the sampler's own rule, for the leak-detection tests: an
//! allocation of `s` bytes is sampled with probability `heapsampler::sample_probability(s, T)`
//! and then stands for `s/p` bytes. Seeded, so every series is reproducible.

use heapsampler::{Profile, Site, sample_probability};
use std::collections::VecDeque;

/// Simulated sample interval.
pub const T: u64 = 64 * 1024;
/// The stack id of a [`SimSite`] unless given another.
pub const STACK: u32 = 1;

/// splitmix64: a seeded, dependency-free RNG for the scripts.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Object sizes: mostly tiny, some about T (so most bytes are in ~T objects).
#[derive(Clone, Copy)]
pub enum Sizes {
    Mixed,
    Tiny,
}

impl Sizes {
    pub fn draw(self, rng: &mut Rng) -> u64 {
        match self {
            Sizes::Tiny => rng.range(16, 1024),
            Sizes::Mixed if rng.unit() < 0.8 => rng.range(16, 1024),
            Sizes::Mixed => rng.range(T / 4, 2 * T),
        }
    }
}

/// A live block of the simulated site: its size and its Horvitz–Thompson weight (0 when
/// not sampled).
#[derive(Clone, Copy)]
pub struct Block {
    pub size: u64,
    pub weight: f64,
}

/// One call site under the simulated sampler. Estimates are kept in integer bytes·2^16, as
/// the real profiler does, so adding and removing the same weights returns the same value.
pub struct SimSite {
    pub rng: Rng,
    pub sizes: Sizes,
    pub live: VecDeque<Block>,
    pub true_live: u64,
    pub est_live: i128,
    pub est_alloc: i128,
    pub stack: u32,
}

pub const ONE: f64 = 65536.0;

impl SimSite {
    pub fn new(seed: u64, sizes: Sizes) -> Self {
        SimSite {
            rng: Rng(seed),
            sizes,
            live: VecDeque::new(),
            true_live: 0,
            est_live: 0,
            est_alloc: 0,
            stack: STACK,
        }
    }

    /// Allocates one block: sampled with p = 1 − e^(−s/T), weight s/p.
    pub fn alloc(&mut self) -> Block {
        let size = self.sizes.draw(&mut self.rng);
        let p = sample_probability(size, T);
        let weight = if self.rng.unit() < p {
            size as f64 / p
        } else {
            0.0
        };
        let fixed = (weight * ONE) as i128;
        self.est_alloc += fixed;
        Block {
            size,
            weight: fixed as f64,
        }
    }

    pub fn keep(&mut self, b: Block) {
        self.true_live += b.size;
        self.est_live += b.weight as i128;
        self.live.push_back(b);
    }

    pub fn free(&mut self, b: Block) {
        self.true_live -= b.size;
        self.est_live -= b.weight as i128;
    }

    /// Allocates and keeps blocks until `bytes` more are live.
    pub fn retain(&mut self, bytes: u64) {
        let target = self.true_live + bytes;
        while self.true_live < target {
            let b = self.alloc();
            self.keep(b);
        }
    }

    /// Frees the oldest blocks until at most `bytes` are live.
    pub fn shrink_to(&mut self, bytes: u64) {
        while self.true_live > bytes {
            let b = self.live.pop_front().expect("live bytes without blocks");
            self.free(b);
        }
    }

    /// Frees a random block.
    pub fn free_random(&mut self) {
        if self.live.is_empty() {
            return;
        }
        let i = (self.rng.next_u64() % self.live.len() as u64) as usize;
        let b = self.live.swap_remove_back(i).expect("index in range");
        self.free(b);
    }

    pub fn site(&self) -> Site {
        Site {
            stack_id: self.stack,
            live_bytes: self.est_live as f64 / ONE,
            alloc_bytes: self.est_alloc as f64 / ONE,
            ..Default::default()
        }
    }
}

pub fn profile(report: u64, t: u64, sites: Vec<Site>) -> Profile {
    Profile {
        pid: 1,
        timestamp_ms: report * 1000,
        sample_interval: t,
        sites,
        ..Default::default()
    }
}
