//! The workloads. Each is deterministic (a fixed-seed generator), so every build makes the same
//! allocator calls, and returns a checksum of its results.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;

/// xorshift64*: a fixed sequence, no allocation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

fn count(base: f64, scale: f64) -> usize {
    ((base * scale).round() as usize).max(1)
}

/// Small-object churn: a `Vec` grown by `push` from empty (its reallocations), a formatted
/// `String`, and a block of 8–511 bytes replacing one of 1024 kept blocks, every round.
pub fn churn(scale: f64) -> u64 {
    churn_rounds(count(600_000.0, scale), 1)
}

fn churn_rounds(rounds: usize, seed: u64) -> u64 {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    let mut ring: Vec<Vec<u8>> = (0..1024).map(|_| Vec::new()).collect();
    let mut sum = 0u64;
    for i in 0..rounds {
        let n = 1 + rng.below(48);
        let mut v: Vec<u32> = Vec::new();
        for j in 0..n {
            v.push(j as u32 ^ i as u32);
        }
        sum = sum.wrapping_add(u64::from(black_box(&v)[n / 2]));
        let s = format!("item-{i}-{n}");
        sum = sum.wrapping_add(black_box(&s).len() as u64);
        let size = 8 + rng.below(504);
        let slot = rng.below(ring.len());
        ring[slot] = vec![i as u8; size];
    }
    sum.wrapping_add(ring.iter().map(|b| b.len() as u64).sum::<u64>())
}

/// The churn of [`churn`] on two threads at once, each doing the full amount.
pub fn threads(scale: f64) -> u64 {
    let rounds = count(600_000.0, scale);
    let other = std::thread::spawn(move || churn_rounds(rounds, 2));
    let mine = churn_rounds(rounds, 1);
    mine.wrapping_add(other.join().unwrap())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    customer: String,
    email: String,
    tags: Vec<String>,
    lines: Vec<Line>,
    note: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
    price: f64,
}

/// A large JSON document (~7 MB at scale 1): built as a `serde_json::Value`, serialised,
/// parsed back both as a `Value` and as typed structs.
pub fn json(scale: f64) -> u64 {
    let orders = count(20_000.0, scale);
    let mut rng = Rng(7);
    let mut doc = Vec::with_capacity(0);
    for id in 0..orders as u64 {
        let lines: Vec<serde_json::Value> = (0..1 + rng.below(6))
            .map(|k| {
                serde_json::json!({
                    "sku": format!("SKU-{:06}-{k}", rng.below(1_000_000)),
                    "quantity": rng.below(20) as u32 + 1,
                    "price": rng.below(100_000) as f64 / 100.0,
                })
            })
            .collect();
        let tags: Vec<String> = (0..rng.below(5))
            .map(|t| format!("tag{}", t * 7 + rng.below(7)))
            .collect();
        doc.push(serde_json::json!({
            "id": id,
            "customer": format!("Customer number {}", rng.below(50_000)),
            "email": format!("user{}@example.com", rng.below(50_000)),
            "tags": tags,
            "lines": lines,
            "note": if rng.below(3) == 0 { Some("leave at the door, please".to_string()) } else { None },
        }));
    }
    let doc = serde_json::Value::Array(doc);
    let text = serde_json::to_string(&doc).unwrap();
    drop(doc);
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let typed: Vec<Order> = serde_json::from_str(&text).unwrap();
    let again = serde_json::to_string_pretty(&typed).unwrap();
    let items: usize = typed.iter().map(|o| o.lines.len() + o.tags.len()).sum();
    let first = parsed[0]["customer"].as_str().map_or(0, str::len);
    (text.len() + again.len() + items + first) as u64
}

/// Maps filled and dropped: a `HashMap<u64, String>` and a `BTreeMap<String, Vec<u32>>`, in
/// rounds.
pub fn maps(scale: f64) -> u64 {
    let rounds = count(4.0, scale);
    let per_round = count(100_000.0, scale * 4.0).min(100_000);
    let mut rng = Rng(11);
    let mut sum = 0u64;
    for _ in 0..rounds {
        let mut hash: HashMap<u64, String> = HashMap::new();
        for _ in 0..per_round {
            let k = rng.next() % (per_round as u64 * 2);
            hash.insert(k, format!("value {k}"));
        }
        let mut tree: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (k, v) in &hash {
            tree.entry(format!("{:x}", k % 40_000))
                .or_default()
                .push(v.len() as u32);
        }
        sum = sum.wrapping_add(hash.len() as u64 + tree.len() as u64);
        sum = sum.wrapping_add(tree.values().map(|v| v.len() as u64).sum::<u64>());
        drop(black_box(hash));
        drop(black_box(tree));
    }
    sum
}

/// A heap held at ~260 MB (blocks of 64 B–4 KiB, written to) while churning: every round
/// replaces one held block with one of a new size and grows a small `Vec`. The held heap
/// shrinks with SCALE only below 0.5 (to 26 MB at 0.05: under valgrind a large heap is slow to
/// fill).
pub fn grow(scale: f64) -> u64 {
    let held_bytes = ((260 << 20) as f64 * (scale * 2.0).min(1.0)) as usize;
    let mut rng = Rng(13);
    let mut held: Vec<Box<[u8]>> = Vec::new();
    let mut bytes = 0;
    while bytes < held_bytes {
        let size = 64 + rng.below(4096 - 64);
        held.push(vec![held.len() as u8; size].into_boxed_slice());
        bytes += size;
    }
    let mut sum = 0u64;
    for i in 0..count(300_000.0, scale) {
        let slot = rng.below(held.len());
        let size = 64 + rng.below(4096 - 64);
        held[slot] = vec![i as u8; size].into_boxed_slice();
        let n = 1 + rng.below(24);
        let v: Vec<u64> = (0..n as u64).collect();
        sum = sum.wrapping_add(black_box(&v)[n - 1]);
    }
    sum.wrapping_add(held.iter().map(|b| b.len() as u64).sum::<u64>())
}

/// A real program: parses every `.rs` file under the cargo registry's sources
/// (`$CARGO_HOME/registry/src`, or `$COMPARE_SYN_DIR`) with `syn`, keeping every fifth parsed
/// tree alive to the end. At SCALE < 1, every (1/SCALE)-th file of the sorted list.
pub fn syn(scale: f64) -> u64 {
    let dir = match std::env::var_os("COMPARE_SYN_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let home = std::env::var_os("CARGO_HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME or CARGO_HOME"))
                        .join(".cargo")
                });
            home.join("registry").join("src")
        }
    };
    let mut files = Vec::new();
    walk(&dir, &mut files);
    files.sort();
    let step = if scale < 1.0 {
        (1.0 / scale).round() as usize
    } else {
        1
    };
    let passes = if scale > 1.0 {
        scale.round() as usize
    } else {
        1
    };
    let (mut parsed, mut failed, mut bytes) = (0usize, 0usize, 0usize);
    let mut kept = Vec::new();
    let mut items = 0u64;
    for _ in 0..passes {
        for path in files.iter().step_by(step) {
            let Ok(text) = std::fs::read_to_string(path) else {
                failed += 1;
                continue;
            };
            bytes += text.len();
            match syn::parse_file(&text) {
                Ok(tree) => {
                    items += tree.items.len() as u64;
                    if parsed % 5 == 0 {
                        kept.push(tree);
                    }
                    parsed += 1;
                }
                Err(_) => failed += 1,
            }
        }
    }
    eprintln!(
        "syn: {} files under {}: {parsed} parsed ({bytes} bytes), {failed} not parsed, {} trees kept",
        files.len().div_ceil(step) * passes,
        dir.display(),
        kept.len()
    );
    items + kept.iter().map(|t| t.items.len() as u64).sum::<u64>()
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            walk(&path, out);
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
