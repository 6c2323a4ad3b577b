//! Perplexity over documents, as lm-evaluation-harness's perplexity tasks compute it: each
//! document's log-likelihood with every token scored (in rolling windows), then word
//! perplexity, byte perplexity and bits per byte as weighted means over the whole set.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::report::{Aggregate, CaseResult, ServiceReport, bootstrap_ci};
use crate::{BoxFuture, Case, Dataset, EvalError, Input, Output, Result, Score};

/// The log-likelihood of a whole text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextLogLikelihood {
    /// Sum of the natural-log probabilities of the scored tokens.
    pub logprob: f64,
    /// How many tokens were scored.
    pub tokens: usize,
}

/// A model that can score a whole text, every token given the ones before it (raw text, no
/// chat template): lm-evaluation-harness's `loglikelihood_rolling`. The local backend has it
/// (through [`rolling_windows`] over its token log-probabilities); most chat APIs do not.
pub trait RollingLogLikelihood: Send + Sync {
    /// `log P(text)`, summed over its tokens, and how many tokens were scored.
    fn rolling_log_likelihood<'a>(
        &'a self,
        text: &'a str,
    ) -> BoxFuture<'a, Result<TextLogLikelihood>>;
}

/// One window of a rolling evaluation over a token sequence: the model reads
/// `seq[start..end]` and the last `scored` of those tokens are scored, each given the tokens
/// before it in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The first token the model reads.
    pub start: usize,
    /// One past the last token (the last one is only predicted, never read).
    pub end: usize,
    /// How many tokens at the end of the window are scored.
    pub scored: usize,
}

/// The windows that score every token of a sequence of `len` tokens but the first, the model
/// reading at most `max_len` tokens at a time: lm-evaluation-harness's rolling windows
/// (`get_rolling_token_windows` with a context of one token, made disjoint).
///
/// `seq[0]` is the conditioning token: BOS for a model that starts texts with it; for one
/// that does not, the text's own first token, which is then context and not scored. The
/// first window scores up to `max_len` tokens after it; each later window scores the next
/// `max_len` tokens given only the token before them, and the last, shorter one reads as far
/// back as `max_len` allows. No token is scored twice.
///
/// ```
/// use any_eval::{Window, rolling_windows};
///
/// let w = rolling_windows(12, 5)?;
/// assert_eq!(w[0], Window { start: 0, end: 6, scored: 5 });
/// assert_eq!(w[1], Window { start: 5, end: 11, scored: 5 });
/// assert_eq!(w[2], Window { start: 6, end: 12, scored: 1 });
/// assert_eq!(w.iter().map(|w| w.scored).sum::<usize>(), 11);
/// # Ok::<(), any_eval::EvalError>(())
/// ```
///
/// # Errors
/// [`EvalError::InvalidInput`] when `max_len` is 0: a model that reads nothing scores nothing.
pub fn rolling_windows(len: usize, max_len: usize) -> Result<Vec<Window>> {
    if max_len == 0 {
        return Err(EvalError::InvalidInput(
            "a rolling window must read at least one token".into(),
        ));
    }
    let mut windows = Vec::new();
    if len < 2 {
        return Ok(windows);
    }
    let first = max_len.min(len - 1);
    windows.push(Window {
        start: 0,
        end: first + 1,
        scored: first,
    });
    let mut done = first + 1;
    while done < len {
        let scored = max_len.min(len - done);
        let end = done + scored;
        windows.push(Window {
            start: end - max_len - 1,
            end,
            scored,
        });
        done = end;
    }
    Ok(windows)
}

/// Words as lm-evaluation-harness counts them: the pieces of the text split at runs of
/// whitespace (Python's `len(re.split(r"\s+", text))`), so leading or trailing whitespace
/// adds an empty piece and an empty text is one piece.
///
/// ```
/// assert_eq!(any_eval::word_count("The cat sat."), 3);
/// assert_eq!(any_eval::word_count(" two  words\n"), 4);
/// assert_eq!(any_eval::word_count(""), 1);
/// ```
pub fn word_count(text: &str) -> usize {
    // Python's `\s` (str.isspace) is Unicode White_Space plus the four separators U+001C–F.
    let space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    let mut pieces = 1;
    let mut in_space = false;
    for c in text.chars() {
        let s = space(c);
        if s && !in_space {
            pieces += 1;
        }
        in_space = s;
    }
    pieces
}

/// The metrics [`perplexity`] reports, with their definitions (what `any eval --perplexity`
/// prints under its table). `LL` is a document's log-likelihood in nats, every token scored;
/// sums run over the documents scored.
pub const PERPLEXITY_METRICS: [(&str, &str); 4] = [
    (
        "token_perplexity",
        "exp(−ΣLL / Σtokens): the model's own perplexity, per token of its tokenizer \
         (every token of a document scored, the first given BOS or, for a model without one, \
         the document's first token as context)",
    ),
    (
        "word_perplexity",
        "exp(−ΣLL / Σwords), words being the pieces between runs of whitespace \
         (lm-evaluation-harness's word_perplexity)",
    ),
    (
        "byte_perplexity",
        "exp(−ΣLL / Σbytes), bytes of UTF-8 (lm-evaluation-harness's byte_perplexity)",
    ),
    (
        "bits_per_byte",
        "−ΣLL / Σbytes / ln 2 (lm-evaluation-harness's bits_per_byte); comparable across \
         tokenizers, as word and byte perplexity are",
    ),
];

/// What one document adds to the sums.
#[derive(Debug, Clone, Copy)]
struct Counts {
    logprob: f64,
    tokens: f64,
    words: f64,
    bytes: f64,
}

/// The four metrics of [`PERPLEXITY_METRICS`] from summed counts, in that order.
fn metrics(c: Counts) -> [f64; 4] {
    [
        (-c.logprob / c.tokens).exp(),
        (-c.logprob / c.words).exp(),
        (-c.logprob / c.bytes).exp(),
        -c.logprob / c.bytes / std::f64::consts::LN_2,
    ]
}

/// Scores every document of `dataset` (each case's text `input`) by its log-likelihood under
/// `model` and reports the metrics of [`PERPLEXITY_METRICS`]: per case, that document's own;
/// over the set, lm-evaluation-harness's aggregation — `exp` of the summed negative
/// log-likelihood over the summed words (bytes, tokens), a mean weighted by each document's
/// length, not a mean of the documents' perplexities — with a 95% bootstrap interval over
/// documents. Each case's log-likelihood and counts are in its scores' `reason` and
/// `detail`. A document the model fails to score is recorded as that case's error and left
/// out of the sums.
///
/// # Errors
/// [`EvalError::InvalidInput`] for a case whose input is a conversation or empty text.
pub async fn perplexity(
    label: &str,
    model: &dyn RollingLogLikelihood,
    dataset: &Dataset,
) -> Result<ServiceReport> {
    let started = Instant::now();
    let mut cases = Vec::with_capacity(dataset.cases.len());
    let mut counts = Vec::with_capacity(dataset.cases.len());
    for case in &dataset.cases {
        let (result, c) = score_document(model, case).await?;
        cases.push(result);
        counts.extend(c);
    }
    let mut aggregates = BTreeMap::new();
    if !counts.is_empty() {
        let total = |picked: &mut dyn Iterator<Item = usize>| {
            picked.map(|i| counts[i]).fold(
                Counts {
                    logprob: 0.0,
                    tokens: 0.0,
                    words: 0.0,
                    bytes: 0.0,
                },
                |a, c| Counts {
                    logprob: a.logprob + c.logprob,
                    tokens: a.tokens + c.tokens,
                    words: a.words + c.words,
                    bytes: a.bytes + c.bytes,
                },
            )
        };
        let value = metrics(total(&mut (0..counts.len())));
        for (i, (name, _)) in PERPLEXITY_METRICS.iter().enumerate() {
            let ci95 = bootstrap_ci(counts.len(), |picked| metrics(total(picked))[i]);
            aggregates.insert(
                (*name).to_owned(),
                Aggregate {
                    value: value[i],
                    ci95,
                    n: counts.len(),
                },
            );
        }
    }
    Ok(ServiceReport::finished(label, cases, aggregates, started))
}

async fn score_document(
    model: &dyn RollingLogLikelihood,
    case: &Case,
) -> Result<(CaseResult, Option<Counts>)> {
    let bad = |what: &str| EvalError::InvalidInput(format!("case `{}`: {what}", case.id));
    let Input::Text(text) = &case.input else {
        return Err(bad(
            "a perplexity evaluation needs a text document, not a conversation",
        ));
    };
    if text.is_empty() {
        return Err(bad("the document is empty"));
    }
    let started = Instant::now();
    let (mut scores, mut error, mut counts) = (BTreeMap::new(), None, None);
    match model.rolling_log_likelihood(text).await {
        Ok(ll) if ll.tokens == 0 => {
            error = Some("the model scored no token of the document".to_owned());
        }
        Ok(ll) => {
            let c = Counts {
                logprob: ll.logprob,
                tokens: ll.tokens as f64,
                words: word_count(text) as f64,
                bytes: text.len() as f64,
            };
            let why = format!(
                "log-likelihood {} nats over {} tokens, {} words, {} bytes",
                ll.logprob,
                ll.tokens,
                word_count(text),
                text.len()
            );
            let detail = json!({
                "log_likelihood": ll.logprob,
                "tokens": ll.tokens,
                "words": word_count(text),
                "bytes": text.len(),
            });
            for ((name, _), value) in PERPLEXITY_METRICS.iter().zip(metrics(c)) {
                scores.insert(
                    (*name).to_owned(),
                    Score::value(value)
                        .because(why.clone())
                        .with_detail(detail.clone()),
                );
            }
            counts = Some(c);
        }
        Err(e) => error = Some(e.to_string()),
    }
    let result = CaseResult {
        id: case.id.clone(),
        input: text.clone(),
        expected: case.expected.clone(),
        output: Output {
            latency: started.elapsed(),
            error,
            ..Output::default()
        },
        scores,
        metric_errors: BTreeMap::new(),
    };
    Ok((result, counts))
}
