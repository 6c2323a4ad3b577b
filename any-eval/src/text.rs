//! Text-overlap metrics as functions: exact match, token F1, ROUGE, BLEU, edit similarity.
//!
//! ROUGE follows Google's `rouge-score` package (its tokenizer: lowercase, every run of
//! characters outside `a-z0-9` a separator; no stemming) and BLEU follows `sacrebleu` (the
//! `13a` tokenizer, exponential smoothing, effective order for single sentences). The tests
//! check both against those packages' own output on committed examples.

use std::collections::HashMap;

/// Precision, recall and their harmonic mean.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prf {
    /// Matched units over the prediction's units.
    pub precision: f64,
    /// Matched units over the reference's units.
    pub recall: f64,
    /// `2PR / (P + R)`, 0 when both are 0.
    pub f1: f64,
}

impl Prf {
    fn new(matched: f64, predicted: f64, reference: f64) -> Self {
        let precision = matched / predicted.max(1.0);
        let recall = matched / reference.max(1.0);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Prf {
            precision,
            recall,
            f1,
        }
    }
}

/// Lowercases, drops punctuation and the articles `a`, `an`, `the`, and joins the words with
/// single spaces: the normalisation of SQuAD's evaluation, used by exact match and token F1.
///
/// ```
/// assert_eq!(any_eval::text::normalize("  The Eiffel-Tower, in Paris! "), "eiffeltower in paris");
/// ```
pub fn normalize(text: &str) -> String {
    let lowered: String = text
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation() && !is_unicode_punctuation(*c))
        .collect();
    lowered
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_unicode_punctuation(c: char) -> bool {
    matches!(c, '\u{2018}'..='\u{201F}' | '\u{2010}'..='\u{2015}' | '\u{2026}' | '\u{00A1}' | '\u{00BF}' | '\u{00AB}' | '\u{00BB}')
}

/// Whether `prediction` equals one of `references` after [`normalize`].
pub fn exact_match(prediction: &str, references: &[String]) -> bool {
    let p = normalize(prediction);
    references.iter().any(|r| normalize(r) == p)
}

fn counts<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut map = HashMap::new();
    for item in items {
        *map.entry(item).or_insert(0) += 1;
    }
    map
}

fn overlap<T: std::hash::Hash + Eq>(a: &HashMap<T, usize>, b: &HashMap<T, usize>) -> usize {
    a.iter()
        .map(|(k, n)| (*n).min(b.get(k).copied().unwrap_or(0)))
        .sum()
}

/// Token F1 over [`normalize`]d words (SQuAD's), the best over `references`.
///
/// ```
/// let f1 = any_eval::text::token_f1("the cat sat", &["a cat sat down".into()]);
/// assert!((f1.f1 - 0.8).abs() < 1e-9);
/// ```
pub fn token_f1(prediction: &str, references: &[String]) -> Prf {
    let p = normalize(prediction);
    let pw = counts(p.split_whitespace());
    best(references, |r| {
        let r = normalize(r);
        let rw = counts(r.split_whitespace());
        let (np, nr) = (pw.values().sum::<usize>(), rw.values().sum::<usize>());
        if np == 0 || nr == 0 {
            // Both empty is a match; one empty is not.
            let same = f64::from(u8::from(np == nr));
            return Prf {
                precision: same,
                recall: same,
                f1: same,
            };
        }
        Prf::new(overlap(&pw, &rw) as f64, np as f64, nr as f64)
    })
}

fn best(references: &[String], score: impl Fn(&str) -> Prf) -> Prf {
    // The first of equal F1s, as `rouge-score` (numpy's argmax) picks.
    references.iter().map(|r| score(r)).fold(
        Prf {
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
        },
        |best, s| if s.f1 > best.f1 { s } else { best },
    )
}

/// `rouge-score`'s tokens: lowercased, split at every character outside `a-z0-9`.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// ROUGE-N (`n`-gram overlap), the best F1 over `references` (as `rouge-score`'s
/// `score_multi`).
///
/// ```
/// let r = any_eval::text::rouge_n("the cat was found under the bed", &["the cat was under the bed".into()], 1);
/// assert!((r.recall - 1.0).abs() < 1e-9);
/// ```
pub fn rouge_n(prediction: &str, references: &[String], n: usize) -> Prf {
    let grams = |t: &[String]| {
        counts(
            t.windows(n.max(1))
                .map(<[String]>::to_vec)
                .collect::<Vec<_>>(),
        )
    };
    let p = grams(&rouge_tokens(prediction));
    best(references, |r| {
        let r = grams(&rouge_tokens(r));
        Prf::new(
            overlap(&r, &p) as f64,
            p.values().sum::<usize>() as f64,
            r.values().sum::<usize>() as f64,
        )
    })
}

/// ROUGE-L (longest common subsequence of tokens), the best F1 over `references`.
pub fn rouge_l(prediction: &str, references: &[String]) -> Prf {
    let p = rouge_tokens(prediction);
    best(references, |r| {
        let r = rouge_tokens(r);
        if p.is_empty() || r.is_empty() {
            return Prf::new(0.0, 1.0, 1.0);
        }
        Prf::new(lcs(&r, &p) as f64, p.len() as f64, r.len() as f64)
    })
}

fn lcs<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `sacrebleu`'s `13a` tokenization (mteval-v13a's, as WMT uses).
///
/// ```
/// assert_eq!(any_eval::text::tokenize_13a("Hello, world. It costs $3.50!"), "Hello , world . It costs $ 3.50 !");
/// ```
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let chars: Vec<char> = format!(" {line} ").chars().collect();
    // Symbols: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
    let symbol =
        |c: char| matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/');
    let mut out = Vec::with_capacity(chars.len() * 2);
    for &c in &chars {
        if symbol(c) {
            out.extend([' ', c, ' ']);
        } else {
            out.push(c);
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    let dot_comma = |c: char| c == '.' || c == ',';
    // Period and comma unless preceded by a digit; then unless followed by a digit; then a
    // dash after a digit: three left-to-right, non-overlapping passes, as the regexes run.
    let out = pass(
        &out,
        |a, b| !digit(a) && dot_comma(b),
        |a, b| vec![a, ' ', b, ' '],
    );
    let out = pass(
        &out,
        |a, b| dot_comma(a) && !digit(b),
        |a, b| vec![' ', a, ' ', b],
    );
    let out = pass(
        &out,
        |a, b| digit(a) && b == '-',
        |a, b| vec![a, ' ', b, ' '],
    );
    out.into_iter()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// One left-to-right pass of a two-character pattern, replacing non-overlapping matches.
fn pass(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 4);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            out.extend(replace(chars[i], chars[i + 1]));
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// BLEU's sufficient statistics for one sentence: matched and total n-grams for n = 1..4,
/// the hypothesis length and the closest reference length. Corpus BLEU adds them up.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BleuStats {
    /// Clipped n-gram matches, n = 1..4.
    pub correct: [u64; 4],
    /// Hypothesis n-grams, n = 1..4.
    pub total: [u64; 4],
    /// Hypothesis tokens.
    pub hyp_len: u64,
    /// The reference length closest to the hypothesis's (the shorter on a tie).
    pub ref_len: u64,
}

impl std::ops::AddAssign for BleuStats {
    fn add_assign(&mut self, o: Self) {
        for n in 0..4 {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
        self.hyp_len += o.hyp_len;
        self.ref_len += o.ref_len;
    }
}

fn ngrams(tokens: &[&str]) -> HashMap<Vec<String>, u64> {
    let mut map = HashMap::new();
    for n in 1..=4 {
        for w in tokens.windows(n) {
            *map.entry(w.iter().map(|s| (*s).to_owned()).collect())
                .or_insert(0) += 1;
        }
    }
    map
}

impl BleuStats {
    /// The statistics of `hypothesis` against `references` (tokenized with `13a`).
    pub fn new(hypothesis: &str, references: &[String]) -> Self {
        let hyp = tokenize_13a(hypothesis.trim_end());
        let hyp: Vec<&str> = hyp.split(' ').filter(|t| !t.is_empty()).collect();
        let mut max_ref: HashMap<Vec<String>, u64> = HashMap::new();
        let mut ref_len: Option<u64> = None;
        for r in references {
            let r = tokenize_13a(r.trim_end());
            let r: Vec<&str> = r.split(' ').filter(|t| !t.is_empty()).collect();
            for (g, c) in ngrams(&r) {
                let e = max_ref.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
            let (len, h) = (r.len() as u64, hyp.len() as u64);
            ref_len = Some(match ref_len {
                Some(best) if best.abs_diff(h) < len.abs_diff(h) => best,
                Some(best) if best.abs_diff(h) == len.abs_diff(h) => best.min(len),
                _ => len,
            });
        }
        let mut stats = BleuStats {
            hyp_len: hyp.len() as u64,
            ref_len: ref_len.unwrap_or(0),
            ..BleuStats::default()
        };
        for (g, c) in ngrams(&hyp) {
            let n = g.len() - 1;
            stats.total[n] += c;
            stats.correct[n] += c.min(max_ref.get(&g).copied().unwrap_or(0));
        }
        stats
    }

    /// BLEU (0–100) with exponential smoothing; `effective_order` leaves out the orders the
    /// hypothesis is too short to have (right for one sentence, not for a corpus).
    pub fn score(&self, effective_order: bool) -> f64 {
        let (sys, reference) = (self.hyp_len as f64, self.ref_len as f64);
        let bp = if sys < reference {
            if sys > 0.0 {
                (1.0 - reference / sys).exp()
            } else {
                0.0
            }
        } else {
            1.0
        };
        if self.correct.iter().all(|&c| c == 0) {
            return 0.0;
        }
        let mut precisions = [0.0f64; 4];
        let mut smooth = 1.0;
        let mut order = 4;
        for (n, (p, (&correct, &total))) in precisions
            .iter_mut()
            .zip(self.correct.iter().zip(&self.total))
            .enumerate()
        {
            if total == 0 {
                break;
            }
            if effective_order {
                order = n + 1;
            }
            *p = if correct == 0 {
                smooth *= 2.0;
                100.0 / (smooth * total as f64)
            } else {
                100.0 * correct as f64 / total as f64
            };
        }
        let log = |p: f64| if p > 0.0 { p.ln() } else { -9_999_999_999.0 };
        bp * (precisions[..order].iter().map(|&p| log(p)).sum::<f64>() / order as f64).exp()
    }
}

/// Sentence BLEU (0–100) as `sacrebleu.sentence_bleu` computes it.
pub fn sentence_bleu(hypothesis: &str, references: &[String]) -> f64 {
    BleuStats::new(hypothesis, references).score(true)
}

/// Corpus BLEU (0–100) as `sacrebleu.corpus_bleu` computes it: statistics added over the
/// pairs, then one score.
pub fn corpus_bleu<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [String])>) -> f64 {
    let mut total = BleuStats::default();
    for (h, r) in pairs {
        total += BleuStats::new(h, r);
    }
    total.score(false)
}

/// Levenshtein similarity: `1 - distance / max(len)` over characters, the best over
/// `references` (1 for two empty strings).
///
/// ```
/// assert!((any_eval::text::levenshtein_similarity("kitten", &["sitting".into()]) - (1.0 - 3.0 / 7.0)).abs() < 1e-9);
/// ```
pub fn levenshtein_similarity(prediction: &str, references: &[String]) -> f64 {
    let p: Vec<char> = prediction.chars().collect();
    references
        .iter()
        .map(|r| {
            let r: Vec<char> = r.chars().collect();
            let longest = p.len().max(r.len());
            if longest == 0 {
                return 1.0;
            }
            1.0 - levenshtein(&p, &r) as f64 / longest as f64
        })
        .fold(0.0, f64::max)
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(x != y))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}
