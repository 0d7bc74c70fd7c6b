//! The item-to-item co-purchase model of `workloads/shop/recommendations.py`, laid out as flat
//! arrays instead of one object per edge, and scored in the same order so that every float
//! operation (and therefore every score) is bit-for-bit the Python engine's.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use serde::Serialize;

pub const FIRST_HOP: usize = 20;
pub const SECOND_HOP: usize = 40;
pub const SECOND_HOP_DAMPING: f64 = 0.5;
pub const POPULAR_KEPT: usize = 100;

/// Every basket ever seen, in `ORDER BY id` order, without one allocation per basket.
#[derive(Debug, Default, Clone)]
pub struct Baskets {
    items: Vec<i64>,
    ends: Vec<usize>,
}

impl Baskets {
    pub fn push(&mut self, basket: &[i64]) {
        self.items.extend_from_slice(basket);
        self.ends.push(self.items.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Where basket `i`'s items are in the flat item list.
    fn span(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    #[cfg(test)]
    pub fn get(&self, i: usize) -> &[i64] {
        &self.items[self.span(i)]
    }
}

impl FromIterator<Vec<i64>> for Baskets {
    fn from_iter<I: IntoIterator<Item = Vec<i64>>>(iter: I) -> Self {
        let mut baskets = Baskets::default();
        for basket in iter {
            baskets.push(&basket);
        }
        baskets
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredProduct {
    pub product_id: i64,
    pub score: f64,
}

/// Product ids are numbered densely in ascending order, so comparing two indices compares
/// the ids (the tie-breaks of the Python sorts are on ids).
pub struct Model {
    ids: Vec<i64>,
    /// Row `i`'s neighbours are `neighbour[offsets[i]..offsets[i + 1]]`, sorted by
    /// (-weight, id) as in Python.
    offsets: Vec<usize>,
    neighbour: Vec<u32>,
    weight: Vec<f64>,
    popular: Vec<i64>,
    pub baskets: usize,
    pub pairs: usize,
    pub build_seconds: f64,
}

impl Model {
    pub fn build(baskets: &Baskets) -> Model {
        let started = Instant::now();
        let mut ids = baskets.items.clone();
        ids.sort_unstable();
        ids.dedup();
        let n = ids.len();
        let dense: Vec<u32> = baskets
            .items
            .iter()
            .map(|p| ids.binary_search(p).expect("every item is in ids") as u32)
            .collect();

        // Every occurrence counts, duplicates in a basket included, as in Python.
        let mut popularity = vec![0u64; n];
        for &d in &dense {
            popularity[d as usize] += 1;
        }

        // Which baskets each product occurs in, once per occurrence: iterating them for
        // product `a` visits exactly the (a, b) pairs Python's nested loop counts.
        let mut starts = Vec::with_capacity(n + 1);
        starts.push(0usize);
        for &p in &popularity {
            starts.push(starts.last().unwrap() + p as usize);
        }
        let mut cursor = starts[..n].to_vec();
        let mut occurrences = vec![0u32; dense.len()];
        let mut begin = 0;
        for (b, &end) in baskets.ends.iter().enumerate() {
            for &d in &dense[begin..end] {
                occurrences[cursor[d as usize]] = b as u32;
                cursor[d as usize] += 1;
            }
            begin = end;
        }
        drop(cursor);

        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        let mut neighbour = Vec::new();
        let mut weight = Vec::new();
        let mut counts = vec![0u64; n];
        let mut touched: Vec<u32> = Vec::new();
        let mut row: Vec<(f64, u32)> = Vec::new();
        for a in 0..n {
            for &b in &occurrences[starts[a]..starts[a + 1]] {
                for &other in &dense[baskets.span(b as usize)] {
                    if other as usize != a {
                        let c = &mut counts[other as usize];
                        if *c == 0 {
                            touched.push(other);
                        }
                        *c += 1;
                    }
                }
            }
            let pa = popularity[a];
            row.clear();
            for &b in &touched {
                let count = std::mem::replace(&mut counts[b as usize], 0);
                // Python: `edge.count / math.sqrt(pa * popularity[b])`, the product in integers.
                let w = count as f64 / ((pa * popularity[b as usize]) as f64).sqrt();
                row.push((w, b));
            }
            touched.clear();
            row.sort_unstable_by(|x, y| desc(x.0, y.0).then(x.1.cmp(&y.1)));
            neighbour.extend(row.iter().map(|e| e.1));
            weight.extend(row.iter().map(|e| e.0));
            offsets.push(neighbour.len());
        }

        let mut by_popularity: Vec<u32> = (0..n as u32).collect();
        by_popularity.sort_unstable_by(|&x, &y| {
            popularity[y as usize]
                .cmp(&popularity[x as usize])
                .then(x.cmp(&y))
        });
        let popular = by_popularity
            .iter()
            .take(POPULAR_KEPT)
            .map(|&i| ids[i as usize])
            .collect();
        let pairs = neighbour.len();
        Model {
            ids,
            offsets,
            neighbour,
            weight,
            popular,
            baskets: baskets.len(),
            pairs,
            build_seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// Products with at least one basket (Python's `len(model.neighbours)`).
    pub fn products(&self) -> usize {
        self.ids.len()
    }

    fn index(&self, product_id: i128) -> Option<u32> {
        let id = i64::try_from(product_id).ok()?;
        self.ids.binary_search(&id).ok().map(|i| i as u32)
    }

    fn row(&self, i: u32) -> (&[u32], &[f64]) {
        let range = self.offsets[i as usize]..self.offsets[i as usize + 1];
        (&self.neighbour[range.clone()], &self.weight[range])
    }

    /// Python's `Model.related`; ids are Python ints, so any i128 is accepted (an id outside
    /// the store's range is simply unknown, a huge k means "all").
    pub fn related(&self, product_id: i128, k: i128) -> Vec<ScoredProduct> {
        if k <= 0 {
            return Vec::new();
        }
        let k = usize::try_from(k).unwrap_or(usize::MAX);
        let me = self.index(product_id);
        let mut scores: HashMap<u32, f64, BuildFx> = HashMap::default();
        if let Some(p) = me {
            let (first, first_w) = self.row(p);
            scores.reserve(first.len() + FIRST_HOP * SECOND_HOP);
            for (&q, &w) in first.iter().zip(first_w) {
                scores.insert(q, w);
            }
            for (&e, &ew) in first.iter().zip(first_w).take(FIRST_HOP) {
                let (second, second_w) = self.row(e);
                for (&q, &sw) in second.iter().zip(second_w).take(SECOND_HOP) {
                    if q != p {
                        let add = SECOND_HOP_DAMPING * ew * sw;
                        let s = scores.entry(q).or_insert(0.0);
                        *s += add;
                    }
                }
            }
        }
        let mut best: Vec<(u32, f64)> = scores.into_iter().collect();
        let order = |x: &(u32, f64), y: &(u32, f64)| desc(x.1, y.1).then(x.0.cmp(&y.0));
        if k < best.len() {
            best.select_nth_unstable_by(k, order);
            best.truncate(k);
        }
        best.sort_unstable_by(order);
        let mut result: Vec<ScoredProduct> = best
            .iter()
            .map(|&(i, s)| ScoredProduct {
                product_id: self.ids[i as usize],
                score: py_round(s, 6),
            })
            .collect();
        if result.len() < k {
            let seen: HashSet<i64, BuildFx> = result.iter().map(|r| r.product_id).collect();
            for &p in &self.popular {
                if result.len() >= k {
                    break;
                }
                if i128::from(p) != product_id && !seen.contains(&p) {
                    result.push(ScoredProduct {
                        product_id: p,
                        score: 0.0,
                    });
                }
            }
        }
        result
    }
}

/// Descending order of Python floats (no NaN arises here; equal values compare equal).
fn desc(x: f64, y: f64) -> Ordering {
    y.partial_cmp(&x).unwrap_or(Ordering::Equal)
}

/// Python's `round(x, ndigits)`: the exact binary value rounded half-to-even at `ndigits`
/// decimals, then the nearest double to that decimal. Exact integer arithmetic, so it does not
/// depend on how a given Rust release formats ties.
pub fn py_round(x: f64, ndigits: u32) -> f64 {
    if !x.is_finite() || x == 0.0 || ndigits > 15 {
        return x;
    }
    let bits = x.to_bits();
    let negative = bits >> 63 == 1;
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, exp) = if exp_bits == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), exp_bits - 1075)
    };
    if exp >= 0 {
        return x; // an integer: already exact at any number of decimals
    }
    let scale = 10u128.pow(ndigits);
    let shift = (-exp) as u32;
    let n = if shift >= 128 {
        0 // below 2^53 * 10^15 / 2^128 < 0.5
    } else {
        let scaled = u128::from(mantissa) * scale;
        let q = scaled >> shift;
        let r = scaled & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        if r > half || (r == half && q & 1 == 1) {
            q + 1
        } else {
            q
        }
    };
    // Both operands are exact, so IEEE division gives the double nearest to n / 10^ndigits.
    let magnitude = if n < (1u128 << 53) {
        n as f64 / scale as f64
    } else {
        format!("{}e-{}", n, ndigits)
            .parse::<f64>()
            .expect("a decimal literal")
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// FxHash (rustc's): the maps here are keyed by small dense integers.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

pub type BuildFx = BuildHasherDefault<FxHasher>;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(baskets: &[&[i64]]) -> Model {
        Model::build(&baskets.iter().map(|b| b.to_vec()).collect())
    }

    fn ids(result: &[ScoredProduct]) -> Vec<i64> {
        result.iter().map(|r| r.product_id).collect()
    }

    #[test]
    fn counts_pairs_products_and_duplicates() {
        let m = model(&[&[1, 2, 3], &[1, 2], &[2, 2, 4], &[5]]);
        assert_eq!(m.baskets, 4);
        assert_eq!(m.products(), 5);
        // 1:{2,3} 2:{1,3,4} 3:{1,2} 4:{2} 5:{}
        assert_eq!(m.pairs, 8);
        // popularity: 2 occurs 4 times (twice in one basket), then 1, then 3, 4, 5
        assert_eq!(m.popular, vec![2, 1, 3, 4, 5]);
        // edge 4->2 counted twice (2 occurs twice): 2 / sqrt(1 * 4) = 1.0
        let (n4, w4) = m.row(m.index(4).unwrap());
        assert_eq!((m.ids[n4[0] as usize], w4[0]), (2, 1.0));
    }

    #[test]
    fn weights_and_second_hop_follow_python_order() {
        let m = model(&[&[1, 2], &[1, 2], &[2, 3], &[3, 4]]);
        // pop: 1:2 2:3 3:2 4:1. w(1,2) = 2/sqrt(6); w(2,3) = 1/sqrt(6); w(3,4) = 1/sqrt(2)
        let w12 = 2.0 / (6.0f64).sqrt();
        let w23 = 1.0 / (6.0f64).sqrt();
        let r = m.related(1, 5);
        assert_eq!(ids(&r), vec![2, 3, 4]);
        assert_eq!(r[0].score, py_round(w12, 6));
        assert_eq!(r[1].score, py_round(0.0 + 0.5 * w12 * w23, 6));
        assert_eq!(r[2].score, 0.0); // filled from popular
    }

    #[test]
    fn unknown_product_and_k_edges() {
        let m = model(&[&[1, 2], &[3, 2]]);
        assert_eq!(ids(&m.related(99, 2)), vec![2, 1]);
        assert!(m.related(1, 0).is_empty());
        assert!(m.related(1, -3).is_empty());
        assert_eq!(m.related(i128::from(u64::MAX), 1)[0].product_id, 2);
        assert_eq!(m.related(1, i128::MAX).len(), 2);
        let empty = Model::build(&Baskets::default());
        assert!(empty.related(1, 5).is_empty());
        assert_eq!(empty.pairs, 0);
    }

    #[test]
    fn ties_break_on_product_id() {
        let m = model(&[&[1, 5], &[1, 3], &[1, 4]]);
        assert_eq!(ids(&m.related(1, 2)), vec![3, 4]);
    }

    #[test]
    fn rounding_matches_python() {
        // (x, ndigits, CPython's round(x, ndigits))
        let table: &[(f64, u32, f64)] = &[
            (0.5078125, 6, 0.507812), // an exact tie: half to even
            (0.5078135, 6, 0.507814),
            (1.0000005, 6, 1.000001),
            (0.1 + 0.2, 6, 0.3),
            (1e-7, 6, 0.0),
            (5e-7, 6, 0.0), // just below the tie in binary
            (1.5e-6, 6, 2e-6),
            (2.5e-6, 6, 3e-6),
            (3.0000005, 6, 3.000001),
            (0.9999995, 6, 1.0),
            (1.0 / 3.0, 6, 0.333333),
            (2.0 / 3.0, 6, 0.666667),
            (123456.0, 6, 123456.0),
            (12.3456, 3, 12.346),
            (0.5078125, 3, 0.508),
            (2.675, 2, 2.67),
        ];
        for &(x, nd, expected) in table {
            assert_eq!(py_round(x, nd), expected, "round({}, {})", x, nd);
        }
        assert_eq!(py_round(-0.0000001, 6).to_bits(), (-0.0f64).to_bits());
        assert_eq!(py_round(f64::MIN_POSITIVE, 6), 0.0);
        for i in 0..20_000u32 {
            let x = f64::from(i) * 0.000_123_457;
            let expected: f64 = format!("{:.6}", x).parse().unwrap();
            assert_eq!(py_round(x, 6), expected, "{}", x);
        }
    }
}
