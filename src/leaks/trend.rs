//! The statistics of a trend: Theil–Sen slope, the Mann–Kendall test's exact null
//! distribution, and the normal tail.

/// Theil–Sen slope of `y`: over the report index, or over `x` when given (pairs with equal
/// `x` are skipped; no usable pair gives 0).
pub(super) fn theil_sen(y: &[f64], x: Option<&[f64]>, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    for i in 0..y.len() {
        for j in i + 1..y.len() {
            let dx = x.map_or((j - i) as f64, |x| x[j] - x[i]);
            if dx > 0.0 {
                scratch.push((y[j] - y[i]) / dx);
            }
        }
    }
    median(scratch)
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let mid = n / 2;
    let (lower, &mut hi, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    if n % 2 == 1 {
        hi
    } else {
        let lo = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

/// For n = 0..=max, the distribution function of the number of inversions of a random
/// permutation of n values (Mahonian numbers, built by adding one value at a time).
pub(super) fn kendall_cdfs(max: usize) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); 2.min(max + 1)];
    let mut counts = vec![1.0f64];
    for n in 2..=max {
        // Inserting the n-th value adds 0..n−1 inversions.
        let len = n * (n - 1) / 2 + 1;
        let mut prefix = vec![0.0; counts.len() + 1];
        for (i, c) in counts.iter().enumerate() {
            prefix[i + 1] = prefix[i] + c;
        }
        counts = (0..len)
            .map(|k| {
                let hi = k.min(counts.len() - 1);
                let lo = k.saturating_sub(n - 1);
                if lo > hi {
                    0.0
                } else {
                    prefix[hi + 1] - prefix[lo]
                }
            })
            .collect();
        let total: f64 = counts.iter().sum();
        let mut acc = 0.0;
        out.push(
            counts
                .iter()
                .map(|c| {
                    acc += c;
                    (acc / total).min(1.0)
                })
                .collect(),
        );
    }
    out
}

/// Standard normal distribution function.
pub(super) fn normal_cdf(z: f64) -> f64 {
    if z.is_infinite() {
        return if z > 0.0 { 1.0 } else { 0.0 };
    }
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * libm::exp(poly);
    if x >= 0.0 { r } else { 2.0 - r }
}
