//! One layer's attention over the KV cache, as the forward pass runs it: the query heads that
//! share a key/value head computed together (each cached row read once for all of them), the
//! work spread over the thread pool by token and head, or for a single token over a long
//! context by blocks of positions and halves of the head width; a Q8_0 cache's decode step
//! through the integer kernels. The arithmetic is [`super`]'s, in the same order whichever
//! way the work is split.

use std::sync::{Mutex, PoisonError};

use super::{
    AttentionScratch, Q8_BLOCK, ScoreMask, SumOrder, attend_group, group_scores, group_value_slots,
    q8_combine, q8_partial, q8_partial_len, quantize_queries, softmax_rounded,
};
use crate::arch::ModelConfig;
use crate::kernels::{self, KvRows};
use crate::kv_cache::{KvCache, KvCacheType};
use crate::pool::Pool;
use crate::quant::QK;

/// Context length from which a single token's attention is split across threads by
/// positions (scores) and by columns (weighted values) rather than by key/value head: below
/// it the heads are too little work to be worth a second region.
const SPLIT_FROM: usize = 128;

/// Positions per task of the split's scores.
const SCORE_BLOCK: usize = 256;

/// Causal grouped-query attention of `n` new tokens (at `pos0..`) over the cache. The query
/// heads sharing a key/value head are computed together, so each cached row is read once for
/// all of them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_layer(
    cfg: &ModelConfig,
    kv: &KvCache,
    layer: usize,
    pos0: usize,
    n: usize,
    q: &[f32],
    out: &mut [f32],
    pool: &Pool,
    s: &mut AttnBuffers,
) {
    let hd = cfg.head_dim;
    let group = cfg.n_head / cfg.n_head_kv;
    let scale = cfg.score_scale();
    let order = SumOrder::for_batch(n);
    let len = pos0 + 1;
    let mask = ScoreMask {
        window: cfg.window(layer),
        softcap: cfg.attn_softcap,
    };
    // The single-token paths below have no masks: a masked layer (Gemma's) takes the
    // general one.
    if n == 1 && kv.ty == KvCacheType::Q8_0 && mask.is_none() {
        return attention_q8(cfg, kv, layer, len, q, out, pool, s);
    }
    if n == 1 && len >= SPLIT_FROM && pool.threads() > 1 && mask.is_none() {
        return attention_split(cfg, kv, layer, len, q, out, pool, s);
    }
    // One task per token and key/value head: its query heads are contiguous in `q` and `out`.
    pool.for_each_chunk(out, group * hd, |idx, o, thread| {
        // Each thread index is used by one task at a time: the lock is never contended.
        let mut sc = s.per_thread[thread]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (t, g) = (idx / cfg.n_head_kv, idx % cfg.n_head_kv);
        let len = pos0 + t + 1;
        let q = &q[idx * group * hd..(idx + 1) * group * hd];
        attend_group(
            order,
            q,
            kv.keys(layer, g, len),
            kv.values(layer, g, len),
            len,
            hd,
            scale,
            mask,
            &mut sc,
            o,
        );
    });
}

/// A single token's attention over a long context in two regions: scores by blocks of
/// positions, then softmax and weighted values by halves of the head width. Every number is
/// the one [`attend_group`] computes.
#[allow(clippy::too_many_arguments)]
fn attention_split(
    cfg: &ModelConfig,
    kv: &KvCache,
    layer: usize,
    len: usize,
    q: &[f32],
    out: &mut [f32],
    pool: &Pool,
    s: &mut AttnBuffers,
) {
    let hd = cfg.head_dim;
    let group = cfg.n_head / cfg.n_head_kv;
    let scale = cfg.score_scale();
    let order = SumOrder::Lanes64;
    let blocks = len.div_ceil(SCORE_BLOCK);
    // The queries rounded to f16, as the keys are.
    s.q.clear();
    s.q.extend_from_slice(q);
    kernels::round_to_f16(&mut s.q);
    // Scores: task (g, b) holds its heads' scores of block b, head-major.
    s.scores
        .resize(cfg.n_head_kv * blocks * group * SCORE_BLOCK, 0.0);
    let qr = &s.q;
    pool.for_each_chunk(&mut s.scores, group * SCORE_BLOCK, |idx, o, _| {
        let (g, b) = (idx / blocks, idx % blocks);
        let start = b * SCORE_BLOCK;
        let rows = SCORE_BLOCK.min(len - start);
        let keys = kv.keys(layer, g, len).range(start, rows, hd);
        let qg = &qr[g * group * hd..(g + 1) * group * hd];
        group_scores(order, qg, keys, hd, scale, &mut o[..group * rows]);
    });
    // Probabilities, a task per query head, gathered from the blocks.
    s.probs.resize(cfg.n_head * len, 0.0);
    let scores = &s.scores;
    pool.for_each_chunk(&mut s.probs, len, |head, p, _| {
        let (g, h) = (head / group, head % group);
        for b in 0..blocks {
            let start = b * SCORE_BLOCK;
            let rows = SCORE_BLOCK.min(len - start);
            let at = (g * blocks + b) * group * SCORE_BLOCK + h * rows;
            p[start..start + rows].copy_from_slice(&scores[at..at + rows]);
        }
        softmax_rounded(p);
    });
    // Weighted values: task (g, half) sums its heads' values into half of the slots (half of
    // each run of 64 positions: whole rows, read front to back).
    let half_slots = order.period() / 2;
    let stride = half_slots + 1;
    let part = group * stride * hd;
    s.parts.resize(cfg.n_head_kv * 2 * part, 0.0);
    let probs = &s.probs;
    pool.for_each_chunk(&mut s.parts, part, |idx, acc, _| {
        let (g, half) = (idx / 2, idx % 2);
        let p = &probs[g * group * len..(g + 1) * group * len];
        let slots = half * half_slots..(half + 1) * half_slots;
        group_value_slots(order, p, kv.values(layer, g, len), hd, group, slots, acc);
    });
    // Fold: the first halving adds the second half's slots to the first's, elementwise.
    for (g, parts) in s.parts.chunks_exact_mut(2 * part).enumerate() {
        let (lo, hi) = parts.split_at_mut(part);
        for h in 0..group {
            let at = h * stride * hd;
            let (a, b) = (
                &mut lo[at..at + half_slots * hd],
                &hi[at..at + half_slots * hd],
            );
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
            let o = (g * group + h) * hd;
            kernels::fold_slots(half_slots, a, &mut out[o..o + hd]);
        }
    }
}

/// A single token's attention over a Q8_0 cache in one region: a task per key/value head and
/// block of [`Q8_BLOCK`] positions computes integer scores against the queries quantized to
/// Q8_0 (as llama.cpp scores a quantized cache), their exponentials and the weighted values;
/// the blocks are then joined head by head. The blocks do not depend on the number of
/// threads, so neither does the result.
#[allow(clippy::too_many_arguments)]
fn attention_q8(
    cfg: &ModelConfig,
    kv: &KvCache,
    layer: usize,
    len: usize,
    q: &[f32],
    out: &mut [f32],
    pool: &Pool,
    s: &mut AttnBuffers,
) {
    let hd = cfg.head_dim;
    let group = cfg.n_head / cfg.n_head_kv;
    let scale = cfg.score_scale();
    let blocks = len.div_ceil(Q8_BLOCK);
    quantize_queries(q, &mut s.qs, &mut s.qd);
    let part = q8_partial_len(group, hd);
    s.parts.resize(cfg.n_head_kv * blocks * part, 0.0);
    let (qs, qd) = (&s.qs, &s.qd);
    let per_thread = &s.per_thread;
    pool.for_each_chunk(&mut s.parts, part, |idx, o, thread| {
        let (g, b) = (idx / blocks, idx % blocks);
        let start = b * Q8_BLOCK;
        let rows = Q8_BLOCK.min(len - start);
        let (KvRows::Q8_0(keys), KvRows::Q8_0(values)) = (
            kv.keys(layer, g, len).range(start, rows, hd),
            kv.values(layer, g, len).range(start, rows, hd),
        ) else {
            unreachable!("a Q8_0 cache holds Q8_0 rows")
        };
        // Each thread index is used by one task at a time: the lock is never contended.
        let mut sc = per_thread[thread]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        q8_partial(
            &qs[g * group * hd..(g + 1) * group * hd],
            &qd[g * group * hd / QK..(g + 1) * group * hd / QK],
            keys,
            values,
            rows,
            hd,
            scale,
            &mut sc.scores,
            o,
        );
    });
    for (head, o) in out[..cfg.n_head * hd].chunks_exact_mut(hd).enumerate() {
        let (g, h) = (head / group, head % group);
        let parts = s.parts[g * blocks * part..(g + 1) * blocks * part]
            .chunks_exact(part)
            .map(|p| (p[2 * h], p[2 * h + 1], &p[2 * group + h * hd..][..hd]));
        q8_combine(parts, o);
    }
}

/// Attention buffers: per-thread scratch and the split's shared arrays.
#[derive(Debug)]
pub(crate) struct AttnBuffers {
    per_thread: Vec<Mutex<AttentionScratch>>,
    q: Vec<f32>,
    scores: Vec<f32>,
    probs: Vec<f32>,
    parts: Vec<f32>,
    /// A Q8_0 cache's quantized queries: bytes and a scale per 32.
    qs: Vec<i8>,
    qd: Vec<f32>,
}

impl AttnBuffers {
    pub(crate) fn new(threads: usize) -> Self {
        AttnBuffers {
            per_thread: (0..threads).map(|_| Mutex::default()).collect(),
            q: Vec::new(),
            scores: Vec::new(),
            probs: Vec::new(),
            parts: Vec::new(),
            qs: Vec::new(),
            qd: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::tests::{config, noise};

    #[test]
    fn a_single_tokens_attention_split_across_threads_equals_the_one_thread_result() {
        let cfg = config();
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let one = Pool::new(1).unwrap();
        let two = Pool::new(2).unwrap();
        for (len, ty) in [1, 100, SPLIT_FROM, 300, SCORE_BLOCK * 2 + 17]
            .into_iter()
            .flat_map(|len| [(len, KvCacheType::F16), (len, KvCacheType::Q8_0)])
        {
            let mut kv = KvCache::new(&cfg, len, ty).unwrap();
            kv.store(0, 0, &noise(len * kvd, 1), &noise(len * kvd, 2), &cfg);
            kv.len = len;
            let q = noise(qd, 3);
            let (mut a, mut b) = (vec![0.0; qd], vec![0.0; qd]);
            let mut sa = AttnBuffers::new(1);
            let mut sb = AttnBuffers::new(2);
            attend_layer(&cfg, &kv, 0, len - 1, 1, &q, &mut a, &one, &mut sa);
            attend_layer(&cfg, &kv, 0, len - 1, 1, &q, &mut b, &two, &mut sb);
            assert!(
                a.iter().all(|v| v.is_finite() && *v != 0.0),
                "len {len} {ty}"
            );
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "len {len} {ty}"
            );
        }
    }

    #[test]
    fn a_q8_0_cache_stays_close_to_the_f16_one() {
        let cfg = config();
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let pool = Pool::new(2).unwrap();
        let len = 300;
        let (k, v) = (noise(len * kvd, 1), noise(len * kvd, 2));
        let q = noise(qd, 3);
        let out = |ty| {
            let mut kv = KvCache::new(&cfg, len, ty).unwrap();
            kv.store(0, 0, &k, &v, &cfg);
            kv.len = len;
            let mut o = vec![0.0; qd];
            attend_layer(
                &cfg,
                &kv,
                0,
                len - 1,
                1,
                &q,
                &mut o,
                &pool,
                &mut AttnBuffers::new(2),
            );
            o
        };
        let (f16, q8) = (out(KvCacheType::F16), out(KvCacheType::Q8_0));
        let scale = f16.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = f16
            .iter()
            .zip(&q8)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // 8 bits per value over values up to 3: a step of 3/127 at worst, far less on average.
        assert!(worst < 0.02 * scale, "q8_0 off by {worst} (scale {scale})");
        assert_ne!(f16, q8, "the Q8_0 cache computed nothing of its own");
    }
}
