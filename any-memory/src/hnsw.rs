//! An approximate nearest-neighbour index over cosine similarity: a hierarchical navigable
//! small world graph (Malkov and Yashunin, 2016), kept in memory beside a store's rows.
//!
//! Vectors are normalised on insert, so similarity is a dot product. Each node lives on
//! layers `0..=level`, its level drawn from an exponential distribution; a search descends
//! greedily from the top layer's entry point and widens to `ef` candidates on layer 0.
//! Neighbours are chosen with the paper's diversity heuristic (a candidate is kept only when
//! it is closer to the new node than to every neighbour already kept), which keeps the graph
//! navigable on clustered data.
//!
//! Deletion marks a node; marked nodes still route searches but are never returned. The
//! owner rebuilds the index when too much of it is marked.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// How the graph is built and searched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswParams {
    /// Neighbours kept per node on the upper layers (twice as many on layer 0). 16 is the
    /// common default; more raises recall and memory.
    pub m: usize,
    /// The candidate list while inserting: larger builds a better graph, more slowly.
    pub ef_construction: usize,
    /// The candidate list while searching (at least the `top_k` asked for): larger raises
    /// recall and latency.
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 100,
            ef_search: 64,
        }
    }
}

/// A similarity and the node it belongs to, ordered by similarity (then by node, so that
/// equal similarities order deterministically).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Near(f32, u32);

impl Eq for Near {}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

/// The index. Keys are the store's record ids.
#[derive(Debug)]
pub(crate) struct Hnsw {
    dims: usize,
    params: HnswParams,
    level_mult: f64,
    vectors: Vec<f32>,
    keys: Vec<i64>,
    /// `links[node][layer]`: the node's neighbours on that layer.
    links: Vec<Vec<Vec<u32>>>,
    deleted: Vec<bool>,
    dead: usize,
    position: HashMap<i64, u32>,
    entry: Option<u32>,
    top: usize,
    rng: u64,
}

/// A dot product: with AVX2 and FMA where the processor has them (checked once, at run
/// time), else in eight independent lanes the compiler vectorises for the baseline.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the processor has both features, checked just above.
        #[allow(unsafe_code)]
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8 * 8;
    for (x, y) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m256, _mm_add_ps, _mm_cvtss_f32, _mm_hadd_ps, _mm256_add_ps, _mm256_castps256_ps128,
        _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
    };
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
    let chunks = n / 32 * 32;
    for (x, y) in a[..chunks]
        .chunks_exact(32)
        .zip(b[..chunks].chunks_exact(32))
    {
        for (i, acc) in acc.iter_mut().enumerate() {
            let (x, y) = (&x[i * 8..i * 8 + 8], &y[i * 8..i * 8 + 8]);
            // SAFETY: `x` and `y` are 8 floats each; unaligned loads.
            #[allow(unsafe_code)]
            let (vx, vy) = unsafe { (_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr())) };
            *acc = _mm256_fmadd_ps(vx, vy, *acc);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    let quad = _mm_hadd_ps(half, half);
    let total = _mm_cvtss_f32(_mm_hadd_ps(quad, quad));
    total + dot_portable(&a[chunks..], &b[chunks..])
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| x / norm).collect()
    } else {
        vec![0.0; v.len()]
    }
}

/// Nodes already seen by one search: a bitset over the graph.
struct Visited(Vec<u64>);

impl Visited {
    fn new(n: usize) -> Self {
        Visited(vec![0; n.div_ceil(64)])
    }

    /// Marks `node`; true when it was not marked before.
    fn insert(&mut self, node: u32) -> bool {
        let (word, bit) = (node as usize / 64, 1u64 << (node % 64));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }
}

impl Hnsw {
    pub(crate) fn new(dims: usize, params: HnswParams) -> Self {
        let m = params.m.max(2);
        Hnsw {
            dims,
            params: HnswParams { m, ..params },
            level_mult: 1.0 / (m as f64).ln(),
            vectors: Vec::new(),
            keys: Vec::new(),
            links: Vec::new(),
            deleted: Vec::new(),
            dead: 0,
            position: HashMap::new(),
            entry: None,
            top: 0,
            rng: 0x2545_F491_4F6C_DD1D,
        }
    }

    pub(crate) fn dims(&self) -> usize {
        self.dims
    }

    /// Nodes that can be returned.
    pub(crate) fn live(&self) -> usize {
        self.keys.len() - self.dead
    }

    /// Nodes marked deleted, still routing searches.
    pub(crate) fn dead(&self) -> usize {
        self.dead
    }

    fn vector(&self, node: u32) -> &[f32] {
        let at = node as usize * self.dims;
        &self.vectors[at..at + self.dims]
    }

    fn max_links(&self, layer: usize) -> usize {
        if layer == 0 {
            self.params.m * 2
        } else {
            self.params.m
        }
    }

    fn random_level(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = ((self.rng >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-unit.ln() * self.level_mult) as usize).min(16)
    }

    /// Adds `vector` under `key`, replacing an earlier vector with that key.
    ///
    /// The caller checks `vector.len() == self.dims()`.
    pub(crate) fn insert(&mut self, key: i64, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dims);
        self.remove(key);
        let node = self.keys.len() as u32;
        let level = self.random_level();
        self.vectors.extend(normalised(vector));
        self.keys.push(key);
        self.deleted.push(false);
        self.links.push(vec![Vec::new(); level + 1]);
        self.position.insert(key, node);
        let Some(entry) = self.entry else {
            self.entry = Some(node);
            self.top = level;
            return;
        };
        let q = self.vector(node).to_vec();
        let mut eps = vec![Near(dot(&q, self.vector(entry)), entry)];
        for layer in (level + 1..=self.top).rev() {
            eps = self.search_layer(&q, &eps, 1, layer, |_| true);
        }
        for layer in (0..=level.min(self.top)).rev() {
            let found = self.search_layer(&q, &eps, self.params.ef_construction, layer, |_| true);
            let chosen = self.select(&found, self.max_links(layer), layer == 0);
            self.links[node as usize][layer] = chosen.iter().map(|n| n.1).collect();
            for &Near(_, other) in &chosen {
                self.link(other, node, layer);
            }
            eps = found;
        }
        if level > self.top {
            self.top = level;
            self.entry = Some(node);
        }
    }

    /// Adds `node` to `from`'s neighbours on `layer`, pruning them back to the limit.
    fn link(&mut self, from: u32, node: u32, layer: usize) {
        let limit = self.max_links(layer);
        let list = &mut self.links[from as usize][layer];
        list.push(node);
        if list.len() <= limit {
            return;
        }
        let base = self.vector(from);
        let mut near: Vec<Near> = self.links[from as usize][layer]
            .iter()
            .map(|&n| Near(dot(base, self.vector(n)), n))
            .collect();
        near.sort_unstable_by(|a, b| b.cmp(a));
        let kept = self.select(&near, limit, layer == 0);
        self.links[from as usize][layer] = kept.iter().map(|n| n.1).collect();
    }

    /// The diversity heuristic over `candidates` (best first): a candidate is kept when it
    /// is more similar to the base than to every neighbour kept so far. With `fill`, the
    /// rejected ones top the list up to `limit` (layer 0 keeps its full degree).
    fn select(&self, candidates: &[Near], limit: usize, fill: bool) -> Vec<Near> {
        let mut kept: Vec<Near> = Vec::with_capacity(limit);
        let mut rejected = Vec::new();
        for &c in candidates {
            if kept.len() == limit {
                break;
            }
            let v = self.vector(c.1);
            if kept.iter().all(|k| dot(v, self.vector(k.1)) < c.0) {
                kept.push(c);
            } else {
                rejected.push(c);
            }
        }
        if fill {
            kept.extend(rejected.into_iter().take(limit - kept.len()));
        }
        kept
    }

    /// The `ef` nodes on `layer` most similar to `q` that `accept` takes, best first,
    /// searching from `entries`. Nodes `accept` refuses (and deleted ones, which the caller's
    /// `accept` refuses) still route the search.
    fn search_layer(
        &self,
        q: &[f32],
        entries: &[Near],
        ef: usize,
        layer: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Near> {
        let mut visited = Visited::new(self.keys.len());
        let mut candidates: BinaryHeap<Near> = BinaryHeap::new();
        // A min-heap of the best `ef` accepted so far.
        let mut best: BinaryHeap<std::cmp::Reverse<Near>> = BinaryHeap::new();
        for &e in entries {
            if visited.insert(e.1) {
                candidates.push(e);
                if accept(e.1) {
                    best.push(std::cmp::Reverse(e));
                }
            }
        }
        while best.len() > ef {
            best.pop();
        }
        while let Some(c) = candidates.pop() {
            if best.len() >= ef && best.peek().is_some_and(|w| c.0 < w.0.0) {
                break;
            }
            let Some(links) = self.links[c.1 as usize].get(layer) else {
                continue;
            };
            for &n in links {
                if !visited.insert(n) {
                    continue;
                }
                let near = Near(dot(q, self.vector(n)), n);
                let full = best.len() >= ef;
                if !full || best.peek().is_some_and(|w| near.0 > w.0.0) {
                    candidates.push(near);
                    if accept(n) {
                        best.push(std::cmp::Reverse(near));
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<Near> = best.into_iter().map(|r| r.0).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// The `k` live keys most similar to `query` among those `accept` takes, best first,
    /// with their cosine similarity. `ef` is the candidate list (at least `k`).
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: impl Fn(i64) -> bool,
    ) -> Vec<(i64, f32)> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        if k == 0 || query.len() != self.dims {
            return Vec::new();
        }
        let q = normalised(query);
        let mut eps = vec![Near(dot(&q, self.vector(entry)), entry)];
        for layer in (1..=self.top).rev() {
            eps = self.search_layer(&q, &eps, 1, layer, |_| true);
        }
        let take = |n: u32| !self.deleted[n as usize] && accept(self.keys[n as usize]);
        self.search_layer(&q, &eps, ef.max(k), 0, take)
            .into_iter()
            .take(k)
            .map(|n| (self.keys[n.1 as usize], n.0))
            .collect()
    }

    /// Marks `key` deleted; true when it was in the index.
    pub(crate) fn remove(&mut self, key: i64) -> bool {
        match self.position.remove(&key) {
            Some(node) => {
                self.deleted[node as usize] = true;
                self.dead += 1;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn unit(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }
    }

    fn exact(vectors: &[Vec<f32>], q: &[f32], k: usize, accept: impl Fn(i64) -> bool) -> Vec<i64> {
        let q = normalised(q);
        let mut all: Vec<(f32, i64)> = vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| accept(*i as i64))
            .map(|(i, v)| (dot(&q, &normalised(v)), i as i64))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        all.into_iter().take(k).map(|x| x.1).collect()
    }

    /// Clustered data (as embeddings are): points around 50 random centres.
    fn data(n: usize, dims: usize, rng: &mut Rng) -> Vec<Vec<f32>> {
        let centres: Vec<Vec<f32>> = (0..50)
            .map(|_| (0..dims).map(|_| rng.unit()).collect())
            .collect();
        (0..n)
            .map(|i| {
                centres[i % 50]
                    .iter()
                    .map(|c| c + 0.6 * rng.unit())
                    .collect()
            })
            .collect()
    }

    fn recall(
        index: &Hnsw,
        vectors: &[Vec<f32>],
        rng: &mut Rng,
        accept: impl Fn(i64) -> bool + Copy,
    ) -> f64 {
        let dims = vectors[0].len();
        let (mut hit, mut total) = (0, 0);
        for _ in 0..50 {
            // Queries near the data, as a question's embedding is near its answers'.
            let near = &vectors[((rng.unit() + 0.5) * (vectors.len() - 1) as f32) as usize];
            let q: Vec<f32> = (0..dims).map(|i| near[i] + 0.5 * rng.unit()).collect();
            let truth = exact(vectors, &q, 10, accept);
            let got: Vec<i64> = index
                .search(&q, 10, 64, accept)
                .into_iter()
                .map(|x| x.0)
                .collect();
            hit += truth.iter().filter(|t| got.contains(t)).count();
            total += truth.len();
        }
        hit as f64 / total as f64
    }

    #[test]
    fn finds_the_exact_neighbours_almost_always() {
        let mut rng = Rng(7);
        let vectors = data(2000, 32, &mut rng);
        let mut index = Hnsw::new(32, HnswParams::default());
        for (i, v) in vectors.iter().enumerate() {
            index.insert(i as i64, v);
        }
        let r = recall(&index, &vectors, &mut rng, |_| true);
        assert!(r >= 0.95, "recall@10 {r}");
        // A filter that keeps a third of the keys.
        let r = recall(&index, &vectors, &mut rng, |k| k % 3 == 0);
        assert!(r >= 0.9, "filtered recall@10 {r}");
    }

    #[test]
    fn deleted_and_replaced_keys() {
        let mut rng = Rng(11);
        let vectors = data(500, 16, &mut rng);
        let mut index = Hnsw::new(16, HnswParams::default());
        for (i, v) in vectors.iter().enumerate() {
            index.insert(i as i64, v);
        }
        // The nearest to a stored vector is itself, until it is deleted.
        assert_eq!(index.search(&vectors[42], 1, 32, |_| true)[0].0, 42);
        assert!(index.remove(42));
        assert!(!index.remove(42));
        assert_ne!(index.search(&vectors[42], 1, 32, |_| true)[0].0, 42);
        assert_eq!((index.live(), index.dead()), (499, 1));
        // Re-inserting a key replaces its vector.
        index.insert(7, &vectors[99]);
        let top: Vec<i64> = index
            .search(&vectors[99], 2, 32, |_| true)
            .iter()
            .map(|x| x.0)
            .collect();
        assert!(top.contains(&7) && top.contains(&99), "{top:?}");
        assert_eq!(index.live(), 499);
        // Similarities are cosines.
        let (_, s) = index.search(&vectors[99], 1, 32, |_| true)[0];
        assert!((s - 1.0).abs() < 1e-4, "{s}");
    }

    #[test]
    fn the_dot_product_agrees_with_a_plain_sum() {
        let mut rng = Rng(5);
        for n in [0, 1, 7, 8, 31, 32, 33, 384, 1000] {
            let a: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
            let plain: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-4, "n = {n}");
            assert!(
                (f64::from(dot_portable(&a, &b)) - plain).abs() < 1e-4,
                "n = {n}"
            );
        }
    }

    #[test]
    fn empty_and_degenerate() {
        let mut index = Hnsw::new(4, HnswParams::default());
        assert!(
            index
                .search(&[1.0, 0.0, 0.0, 0.0], 5, 10, |_| true)
                .is_empty()
        );
        index.insert(1, &[0.0; 4]);
        index.insert(2, &[1.0, 0.0, 0.0, 0.0]);
        let hits = index.search(&[1.0, 0.0, 0.0, 0.0], 5, 10, |_| true);
        assert_eq!(hits[0].0, 2);
        assert_eq!(hits.len(), 2);
        assert!(index.search(&[1.0, 0.0], 5, 10, |_| true).is_empty());
    }
}
