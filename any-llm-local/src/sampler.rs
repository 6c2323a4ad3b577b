//! Picking the next token from logits: greedy, or sampled after penalties, top-k, top-p,
//! min-p and temperature — the order llama.cpp applies them in.
//!
//! ```
//! use any_llm_local::sampler::{Sampler, SamplerConfig};
//!
//! let mut logits = vec![0.1, 2.0, 0.3, -1.0];
//! let mut greedy = Sampler::new(SamplerConfig::greedy());
//! assert_eq!(greedy.sample(&mut logits), 1);
//!
//! // The same seed gives the same tokens.
//! let config = SamplerConfig { temperature: 1.5, seed: Some(7), ..SamplerConfig::default() };
//! let (mut a, mut b) = (Sampler::new(config.clone()), Sampler::new(config));
//! let logits = vec![0.5f32; 100];
//! for _ in 0..20 {
//!     assert_eq!(a.sample(&mut logits.clone()), b.sample(&mut logits.clone()));
//! }
//! ```

use any_core::Sampling;

/// How the [`Sampler`] picks tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `0.0` (or below) picks the most likely token.
    pub temperature: f32,
    /// Keep only this many most likely tokens (`0`: no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (`1.0`: no limit).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely (`0.0`: none dropped).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens by this (`1.0`: none).
    pub repetition_penalty: f32,
    /// Subtract this times a recent token's count from its logit.
    pub frequency_penalty: f32,
    /// Subtract this from the logit of any recent token.
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Seed of the random generator; `None` takes one from the clock.
    pub seed: Option<u64>,
}

impl Default for SamplerConfig {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalties.
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: None,
        }
    }
}

impl SamplerConfig {
    /// Always the most likely token.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// The configuration a request's [`Sampling`] asks for, defaults where it is silent.
    pub fn from_sampling(s: &Sampling) -> Self {
        let d = Self::default();
        SamplerConfig {
            temperature: s.temperature.unwrap_or(d.temperature),
            top_k: s.top_k.map_or(d.top_k, |k| k as usize),
            top_p: s.top_p.unwrap_or(d.top_p),
            min_p: s.min_p.unwrap_or(d.min_p),
            repetition_penalty: s.repetition_penalty.unwrap_or(d.repetition_penalty),
            frequency_penalty: s.frequency_penalty.unwrap_or(d.frequency_penalty),
            presence_penalty: s.presence_penalty.unwrap_or(d.presence_penalty),
            penalty_last_n: d.penalty_last_n,
            seed: s.seed,
        }
    }
}

/// A seeded xoshiro256++ generator: small, fast, and the same stream for the same seed on
/// every platform.
#[derive(Debug, Clone)]
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 spreads the seed over the state so that nearby seeds diverge at once.
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Picks tokens one at a time, remembering recent ones for the penalties.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
    recent: Vec<u32>,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler with `config`.
    pub fn new(config: SamplerConfig) -> Self {
        let seed = config.seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ u64::from(std::process::id()).rotate_left(32)
        });
        Sampler {
            config,
            rng: Rng::new(seed),
            recent: Vec::new(),
            candidates: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Records a token as generated (or as part of the prompt), for the penalties.
    pub fn accept(&mut self, token: u32) {
        self.recent.push(token);
        let keep = self.config.penalty_last_n;
        if self.recent.len() > keep * 2 + 16 {
            self.recent.drain(..self.recent.len() - keep);
        }
    }

    /// Picks the next token. `logits` is modified (penalties are applied in place).
    ///
    /// # Panics
    /// If `logits` is empty.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        assert!(!logits.is_empty(), "sampling needs at least one logit");
        self.apply_penalties(logits);
        let c = &self.config;
        if c.temperature <= 0.0 {
            return argmax(logits);
        }
        let cand = &mut self.candidates;
        cand.clear();
        cand.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        // Most likely first; top-k first so the sort is over k items, not the vocabulary.
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if c.top_k > 0 && c.top_k < cand.len() {
            cand.select_nth_unstable_by(c.top_k - 1, by_logit);
            cand.truncate(c.top_k);
        }
        cand.sort_unstable_by(by_logit);
        // Probabilities at temperature 1 for top-p and min-p, as llama.cpp computes them.
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|&(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
            probs.truncate(keep);
        }
        if c.min_p > 0.0 {
            let floor = probs[0] * c.min_p;
            let keep = probs.iter().take_while(|&&p| p >= floor).count().max(1);
            cand.truncate(keep);
        }
        // Temperature, then a draw from the renormalised distribution.
        let max = cand[0].1 / c.temperature;
        let weights: Vec<f64> = cand
            .iter()
            .map(|&(_, l)| f64::from((l / c.temperature - max).exp()))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (w, &(id, _)) in weights.iter().zip(cand.iter()) {
            if r < *w {
                return id;
            }
            r -= w;
        }
        cand[cand.len() - 1].0
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let c = &self.config;
        if c.repetition_penalty == 1.0 && c.frequency_penalty == 0.0 && c.presence_penalty == 0.0 {
            return;
        }
        let start = self.recent.len().saturating_sub(c.penalty_last_n);
        let mut counts: Vec<(u32, u32)> = Vec::new();
        for &t in &self.recent[start..] {
            match counts.iter_mut().find(|(id, _)| *id == t) {
                Some((_, n)) => *n += 1,
                None => counts.push((t, 1)),
            }
        }
        for (id, n) in counts {
            let Some(l) = logits.get_mut(id as usize) else {
                continue;
            };
            if c.repetition_penalty != 1.0 {
                *l = if *l > 0.0 {
                    *l / c.repetition_penalty
                } else {
                    *l * c.repetition_penalty
                };
            }
            *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }
}

/// The index of the largest logit (the first, on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Natural-log softmax of `logits`, in place.
pub fn log_softmax(logits: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_sum = sum.ln() as f32 + max;
    logits.iter_mut().for_each(|l| *l -= log_sum);
}

/// The `n` largest entries as `(index, value)`, largest first.
pub fn top_n(values: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<(u32, f32)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, v))
        .collect();
    let n = n.min(idx.len());
    if n == 0 {
        return Vec::new();
    }
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    idx.select_nth_unstable_by(n - 1, cmp);
    idx.truncate(n);
    idx.sort_unstable_by(cmp);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(config: SamplerConfig, logits: &[f32], draws: usize) -> Vec<usize> {
        let mut s = Sampler::new(config);
        let mut h = vec![0; logits.len()];
        for _ in 0..draws {
            h[s.sample(&mut logits.to_vec()) as usize] += 1;
        }
        h
    }

    #[test]
    fn top_k_keeps_only_k_tokens() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(1),
            ..Default::default()
        };
        let h = histogram(cfg, &[1.0, 3.0, 2.0, 0.0], 2000);
        assert_eq!((h[0], h[3]), (0, 0));
        assert!(h[1] > h[2] && h[2] > 0, "{h:?}");
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // Probabilities ~ [0.665, 0.245, 0.090]: top-p 0.8 keeps the first two.
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.8,
            min_p: 0.0,
            seed: Some(2),
            ..Default::default()
        };
        let h = histogram(cfg, &[2.0, 1.0, 0.0], 3000);
        assert_eq!(h[2], 0);
        assert!(h[1] > 0);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.3,
            seed: Some(3),
            ..Default::default()
        };
        // exp(-2) ~ 0.135 of the best: dropped at min-p 0.3; exp(-1) ~ 0.37: kept.
        let h = histogram(cfg, &[0.0, -1.0, -2.0], 3000);
        assert_eq!(h[2], 0);
        assert!(h[1] > 0);
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let base = SamplerConfig {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(4),
            ..Default::default()
        };
        let cold = histogram(
            SamplerConfig {
                temperature: 0.2,
                ..base.clone()
            },
            &[1.0, 0.0],
            4000,
        );
        let hot = histogram(
            SamplerConfig {
                temperature: 5.0,
                ..base
            },
            &[1.0, 0.0],
            4000,
        );
        assert!(cold[1] < 100, "{cold:?}");
        assert!(hot[1] > 1500, "{hot:?}");
    }

    #[test]
    fn penalties_move_recent_tokens_down() {
        let mut s = Sampler::new(SamplerConfig {
            repetition_penalty: 2.0,
            ..SamplerConfig::greedy()
        });
        s.accept(0);
        let mut logits = vec![3.0, 2.0];
        assert_eq!(s.sample(&mut logits), 1);
        assert_eq!(logits[0], 1.5);

        let mut s = Sampler::new(SamplerConfig {
            frequency_penalty: 0.5,
            presence_penalty: 0.25,
            ..SamplerConfig::greedy()
        });
        s.accept(1);
        s.accept(1);
        let mut logits = vec![0.0, 1.0];
        assert_eq!(s.sample(&mut logits), 0);
        assert_eq!(logits[1], 1.0 - 2.0 * 0.5 - 0.25);
    }

    #[test]
    fn log_softmax_and_top_n() {
        let mut l = vec![1.0f32, 2.0, 3.0];
        log_softmax(&mut l);
        let total: f32 = l.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(
            top_n(&l, 2).iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(argmax(&[0.0, 5.0, 5.0]), 1);
    }
}
