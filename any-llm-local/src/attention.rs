//! Causal grouped-query attention over the f16 KV cache, and the element-wise functions whose
//! rounding must follow llama.cpp's.
//!
//! A small model like the default one carries activations in the tens of thousands; quantizing
//! those to 8 bits before each matrix multiplication turns a one-ulp difference anywhere into a
//! flipped rounding tie, and a flipped tie into a visible change of the logits. So the
//! arithmetic here reproduces llama.cpp's CPU build (its prompt path) operation for operation:
//! the polynomial `exp` (`kernels::exp`), the order in which dot products are summed (16
//! lanes, reduced by halving), and where values are rounded to f16. With it, our logits on
//! the reference prompts equal llama.cpp's to every printed digit.
//!
//! llama.cpp sums a single token's attention (a decode step) in another order than a batch's
//! — 4 × 16 lanes over steps of 64, folded 0+2, 1+3, 0+1 before the halving — and so do we:
//! greedy continuations then equal its own token for token. The engine keeps track of which
//! cached positions were computed one token at a time and never reuses those for a prompt, so
//! prefix reuse cannot change an answer.

use half::f16;

use crate::kernels::{self, KvRows, Tier};
use crate::quant::{Q8_0_BYTES, QK};

mod layer;
#[cfg(test)]
mod tests;

pub(crate) use layer::{AttnBuffers, attend_layer};

/// Sums 16 lanes by halving: lanes `i` and `i + 8`, then `i` and `i + 4`, and so on.
pub(crate) fn reduce16(mut v: [f32; 16]) -> f32 {
    let mut m = 8;
    while m >= 1 {
        for i in 0..m {
            v[i] += v[i + m];
        }
        m /= 2;
    }
    v[0]
}

/// How a forward pass sums its dot products: a batch of several tokens in 16 lanes (lane `L`
/// takes the indices `≡ L mod 16`), a single token in 4 × 16 lanes over steps of 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SumOrder {
    /// A batch of several tokens.
    Lanes16,
    /// A single-token step.
    Lanes64,
}

impl SumOrder {
    pub(crate) fn for_batch(n_tokens: usize) -> Self {
        if n_tokens == 1 {
            SumOrder::Lanes64
        } else {
            SumOrder::Lanes16
        }
    }

    /// Partial sums a sum keeps: index `x` goes to slot `x mod period` (for a single token:
    /// 4 groups of 16 lanes over steps of 64).
    pub(crate) fn period(self) -> usize {
        match self {
            SumOrder::Lanes16 => 16,
            SumOrder::Lanes64 => 64,
        }
    }

    /// Which partial sum index `x` goes to.
    fn slot(self, x: usize) -> usize {
        x % self.period()
    }

    /// Folds the partial sums (rows `width` wide) into row 0 by halving: for a single token
    /// 0..32 += 32..64 (groups 0 + 2, 1 + 3), then 0..16 += 16..32 (0 + 1), then the 16 lanes.
    fn fold(self, acc: &mut [f32], width: usize) {
        kernels::halve_rows(self.period(), acc, width);
    }
}

/// A dot product of a key row (as f32) with f32 queries summed in `order`, with fused
/// multiply-adds.
fn dot(order: SumOrder, k: &[f32], q: &[f32]) -> f32 {
    let mut acc = [0f32; 64];
    for (x, (&kv, &qv)) in k.iter().zip(q).enumerate() {
        let s = order.slot(x);
        acc[s] = kv.mul_add(qv, acc[s]);
    }
    order.fold(&mut acc, 1);
    acc[0]
}

/// [`dot`] of key row `j` of `keys` with `q`, through the f16 vector kernel where there is
/// one; `row` is scratch for the row (`q.len()` long).
fn key_dot(order: SumOrder, keys: KvRows<'_>, j: usize, q: &[f32], row: &mut [f32]) -> f32 {
    let hd = q.len();
    if let KvRows::F16(k) = keys
        && let Some(v) =
            kernels::dot_f16_lanes(order == SumOrder::Lanes64, &k[j * hd..(j + 1) * hd], q)
    {
        return v;
    }
    keys.row_f32(j, row);
    kernels::dot_f32_lanes(order == SumOrder::Lanes64, row, q).unwrap_or_else(|| dot(order, row, q))
}

/// What a layer does to a query's scores between scaling and the softmax: soft-capping
/// (Gemma 2) and a sliding window (Gemma's local layers), as llama.cpp applies them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ScoreMask {
    /// Positions a query sees: its own and the `window - 1` before it.
    pub(crate) window: Option<usize>,
    /// Scores become `cap * tanh(score / cap)`.
    pub(crate) softcap: Option<f32>,
}

impl ScoreMask {
    pub(crate) fn is_none(&self) -> bool {
        self.window.is_none() && self.softcap.is_none()
    }

    /// Applies the mask to one head's scores over positions `0..scores.len()`, the query
    /// being at the last: masked positions become -inf, so the softmax gives them exactly 0
    /// and every other sum keeps its order.
    fn apply(&self, scores: &mut [f32]) {
        if let Some(cap) = self.softcap {
            crate::arch::soft_cap(scores, cap);
        }
        if let Some(window) = self.window {
            let seen = scores.len().saturating_sub(window);
            scores[..seen].fill(f32::NEG_INFINITY);
        }
    }
}

/// Reusable buffers of one thread's attention work.
#[derive(Debug, Default)]
pub(crate) struct AttentionScratch {
    /// Queries rounded to f16, as the keys are.
    pub(crate) q: Vec<f32>,
    /// Scores, then probabilities, head-major.
    pub(crate) scores: Vec<f32>,
    acc: Vec<f32>,
}

impl AttentionScratch {
    /// Rounds the queries `q` to f16 (the keys' precision) into `self.q`.
    pub(crate) fn round_queries(&mut self, q: &[f32]) {
        self.q.clear();
        self.q.extend_from_slice(q);
        kernels::round_to_f16(&mut self.q);
    }
}

/// Scores of the query heads `q` (rounded, `hd` each) sharing one key head, over the key rows
/// `keys`: `out[h * len + j] = dot(k_j, q_h) * scale` with `len = out.len() / heads`.
pub(crate) fn group_scores(
    order: SumOrder,
    q: &[f32],
    keys: KvRows<'_>,
    hd: usize,
    scale: f32,
    out: &mut [f32],
) {
    if kernels::attn_scores(
        Tier::Best,
        order == SumOrder::Lanes64,
        keys,
        q,
        hd,
        scale,
        out,
    ) {
        return;
    }
    let len = out.len() / (q.len() / hd);
    let (mut stack, mut heap) = ([0f32; ROW_ON_STACK], Vec::new());
    let row = row_buffer(hd, &mut stack, &mut heap);
    for (qh, oh) in q.chunks_exact(hd).zip(out.chunks_exact_mut(len)) {
        for (j, o) in oh.iter_mut().enumerate() {
            *o = key_dot(order, keys, j, qh, row) * scale;
        }
    }
}

/// Softmax of one head's scores in place, each probability then rounded to f16 (as llama.cpp
/// stores them before the weighted sum): exponentials summed 16 at a time in f32, the
/// sixteens in f64.
pub(crate) fn softmax_rounded(scores: &mut [f32]) {
    // The maximum, 16 lanes at a time (the order does not change a maximum).
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = scores.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = l.max(v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for v in scores.iter_mut() {
        *v -= max;
    }
    kernels::exp_in_place(scores);
    let mut sum = 0.0f64;
    for chunk in scores.chunks(16) {
        let mut lanes = [0f32; 16];
        lanes[..chunk.len()].copy_from_slice(chunk);
        sum += f64::from(reduce16(lanes));
    }
    let inv = (1.0 / sum) as f32;
    for p in scores.iter_mut() {
        *p *= inv;
    }
    kernels::round_to_f16(scores);
}

/// Partial sums of the weighted value rows for heads sharing them (`p` holding each head's
/// probabilities, `len` each): each probability scales its value row into slot
/// `j mod period`, in increasing position, for the slots in `slots` only. Head `h`'s slot `s`
/// is `acc[(h * (slots.len() + 1) + s - slots.start) * hd..][..hd]`.
pub(crate) fn group_value_slots(
    order: SumOrder,
    p: &[f32],
    values: KvRows<'_>,
    hd: usize,
    heads: usize,
    slots: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    let lanes64 = order == SumOrder::Lanes64;
    if !kernels::attn_value_slots(
        Tier::Best,
        lanes64,
        p,
        values,
        hd,
        heads,
        slots.clone(),
        acc,
    ) {
        value_slots_portable(order, p, values, hd, heads, slots, acc);
    }
}

/// Head widths whose row buffer lives on the stack (every llama-family model's).
const ROW_ON_STACK: usize = 256;

/// A scratch row of `hd` floats for the portable paths: on the stack up to [`ROW_ON_STACK`]
/// (no allocation in the token loop), else in `heap`.
fn row_buffer<'a>(
    hd: usize,
    stack: &'a mut [f32; ROW_ON_STACK],
    heap: &'a mut Vec<f32>,
) -> &'a mut [f32] {
    if hd <= ROW_ON_STACK {
        &mut stack[..hd]
    } else {
        heap.resize(hd, 0.0);
        heap
    }
}

/// [`group_value_slots`] without vector kernels.
fn value_slots_portable(
    order: SumOrder,
    p: &[f32],
    values: KvRows<'_>,
    hd: usize,
    heads: usize,
    slots: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    let len = p.len() / heads;
    let stride = slots.len() + 1;
    acc[..heads * stride * hd].fill(0.0);
    let (mut stack, mut heap) = ([0f32; ROW_ON_STACK], Vec::new());
    let row = row_buffer(hd, &mut stack, &mut heap);
    for (h, ph) in p.chunks_exact(len).enumerate() {
        for (j, &pj) in ph.iter().enumerate() {
            let slot = order.slot(j);
            if slots.contains(&slot) {
                let acc = &mut acc[(h * stride + slot - slots.start) * hd..][..hd];
                match values {
                    KvRows::F16(v) => kernels::fma_f16_row(acc, pj, &v[j * hd..(j + 1) * hd]),
                    KvRows::Q8_0(_) => {
                        values.row_f32(j, row);
                        kernels::fma_f32_row(acc, pj, row);
                    }
                }
            }
        }
    }
}

/// Scratch floats [`attend_group`] needs for `heads` heads of width `hd`.
fn slots_len(heads: usize, hd: usize) -> usize {
    heads * 65 * hd
}

/// Attention of the query heads `q` (`hd` each, not yet rounded) sharing one key/value head,
/// over its first `len` cached positions, into `out` (`hd` per head).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_group(
    order: SumOrder,
    q: &[f32],
    keys: KvRows<'_>,
    values: KvRows<'_>,
    len: usize,
    hd: usize,
    scale: f32,
    mask: ScoreMask,
    s: &mut AttentionScratch,
    out: &mut [f32],
) {
    let heads = q.len() / hd;
    s.round_queries(q);
    s.scores.clear();
    s.scores.resize(heads * len, 0.0);
    group_scores(
        order,
        &s.q,
        keys.range(0, len, hd),
        hd,
        scale,
        &mut s.scores,
    );
    for ph in s.scores.chunks_exact_mut(len) {
        mask.apply(ph);
        softmax_rounded(ph);
    }
    let period = order.period();
    s.acc.resize(slots_len(heads, hd), 0.0);
    group_value_slots(
        order,
        &s.scores,
        values.range(0, len, hd),
        hd,
        heads,
        0..period,
        &mut s.acc,
    );
    for (h, o) in out.chunks_exact_mut(hd).enumerate() {
        let at = h * (period + 1) * hd;
        kernels::fold_slots(period, &mut s.acc[at..at + period * hd], o);
    }
}

/// Positions per task of a decode step's attention over a Q8_0 cache. Fixed, so the result
/// does not depend on the number of threads.
pub(crate) const Q8_BLOCK: usize = 256;

/// A decode step's queries for a Q8_0 cache, quantized as llama.cpp quantizes activations
/// for Q8_0 weights: per 32 values a scale `max|x| / 127` (kept in f32) and the values
/// divided by it, rounded to the nearest integer (ties to even), into `qs` and `qd`.
pub(crate) fn quantize_queries(q: &[f32], qs: &mut Vec<i8>, qd: &mut Vec<f32>) {
    qs.clear();
    qd.clear();
    for block in q.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        qd.push(amax / 127.0);
        // `as` saturates, and a NaN becomes 0: the result stays in -127..=127.
        qs.extend(block.iter().map(|&x| (x * inv).round_ties_even() as i8));
    }
}

/// Bytes of a Q8_0 row of `hd` values.
fn q8_row_bytes(hd: usize) -> usize {
    hd / QK * Q8_0_BYTES
}

/// [`kernels::attn_q8_scores`] without vector kernels.
fn q8_scores_portable(qs: &[i8], qd: &[f32], keys: &[u8], hd: usize, scale: f32, out: &mut [f32]) {
    let heads = qs.len() / hd;
    let len = out.len() / heads;
    let rb = q8_row_bytes(hd);
    for (h, oh) in out.chunks_exact_mut(len).enumerate() {
        let (qh, dh) = (
            &qs[h * hd..(h + 1) * hd],
            &qd[h * hd / QK..(h + 1) * hd / QK],
        );
        for (j, o) in oh.iter_mut().enumerate() {
            let mut s = 0f32;
            let row = &keys[j * rb..(j + 1) * rb];
            for ((block, qb), &dq) in row
                .chunks_exact(Q8_0_BYTES)
                .zip(qh.chunks_exact(32))
                .zip(dh)
            {
                let dk = f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32();
                let sum: i32 = block[2..]
                    .iter()
                    .zip(qb)
                    .map(|(&k, &q)| i32::from(k as i8) * i32::from(q))
                    .sum();
                s = (dk * dq).mul_add(sum as f32, s);
            }
            *o = s * scale;
        }
    }
}

/// [`kernels::attn_q8_values`] without vector kernels.
fn q8_values_portable(p: &[f32], values: &[u8], hd: usize, heads: usize, acc: &mut [f32]) {
    let len = p.len() / heads;
    let rb = q8_row_bytes(hd);
    acc.fill(0.0);
    for (j, row) in values.chunks_exact(rb).take(len).enumerate() {
        for (ph, ah) in p.chunks_exact(len).zip(acc.chunks_exact_mut(hd)) {
            for (block, ab) in row.chunks_exact(Q8_0_BYTES).zip(ah.chunks_exact_mut(32)) {
                let d = f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32();
                let w = ph[j] * d;
                for (a, &x) in ab.iter_mut().zip(&block[2..]) {
                    *a = w.mul_add(f32::from(x as i8), *a);
                }
            }
        }
    }
}

/// Sums in 16 lanes (lane `L` takes the indices `≡ L mod 16`), then halves them.
fn sum16(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    for chunk in x.chunks(16) {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    reduce16(lanes)
}

/// The largest of `x` (`-inf` for none), 16 lanes at a time.
fn max16(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Floats [`q8_partial`] writes for `heads` heads of width `hd`.
pub(crate) fn q8_partial_len(heads: usize, hd: usize) -> usize {
    heads * (hd + 2)
}

/// One block of positions of a decode step's attention over a Q8_0 cache, for the query heads
/// sharing one key/value head (`qs`, `qd` from [`quantize_queries`], `hd` values a head):
/// `out` = each head's maximum score and sum of `exp(score − maximum)` (`2 * heads` floats),
/// then each head's sum of value rows weighted by those exponentials (`hd` floats a head).
/// [`q8_combine`] joins the blocks. `scores` is scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn q8_partial(
    qs: &[i8],
    qd: &[f32],
    keys: &[u8],
    values: &[u8],
    len: usize,
    hd: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let heads = qs.len() / hd;
    if scores.len() < heads * len {
        scores.resize(heads * len, 0.0);
    }
    let scores = &mut scores[..heads * len];
    if !kernels::attn_q8_scores(Tier::Best, qs, qd, keys, hd, scale, scores) {
        q8_scores_portable(qs, qd, keys, hd, scale, scores);
    }
    let (stats, acc) = out.split_at_mut(2 * heads);
    for (sh, st) in scores.chunks_exact_mut(len).zip(stats.chunks_exact_mut(2)) {
        let max = max16(sh);
        for v in sh.iter_mut() {
            *v -= max;
        }
        kernels::exp_in_place(sh);
        st[0] = max;
        st[1] = sum16(sh);
    }
    let acc = &mut acc[..heads * hd];
    if !kernels::attn_q8_values(Tier::Best, scores, values, hd, heads, acc) {
        q8_values_portable(scores, values, hd, heads, acc);
    }
}

/// Joins one query head's partial attention over consecutive blocks (`parts`: each block's
/// maximum, sum and weighted values, as [`q8_partial`] wrote them) into `out`: each block
/// weighted by `exp(its maximum − the overall maximum)`, in block order, then divided by
/// the weighted sum.
pub(crate) fn q8_combine<'a>(
    parts: impl Iterator<Item = (f32, f32, &'a [f32])> + Clone,
    out: &mut [f32],
) {
    let max = parts
        .clone()
        .fold(f32::NEG_INFINITY, |m, (bm, _, _)| m.max(bm));
    out.fill(0.0);
    let mut sum = 0f32;
    for (bm, bs, acc) in parts {
        // Plain products and sums: a fused multiply-add would be a library call here.
        let w = kernels::exp(bm - max);
        sum += w * bs;
        for (o, &a) in out.iter_mut().zip(acc) {
            *o += w * a;
        }
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}
