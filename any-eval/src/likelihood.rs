//! Likelihood evaluations: multiple choice scored by log-likelihood, as
//! lm-evaluation-harness scores it (`acc` and `acc_norm`).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::report::{CaseResult, ServiceReport, mean_with_ci};
use crate::{BoxFuture, Case, Dataset, EvalError, Input, Output, Result, Score};

/// A model that can score a continuation: the log-probability of `continuation`'s tokens
/// following `context` (raw text, no chat template). The local backend has it; most chat
/// APIs do not.
pub trait LogLikelihood: Send + Sync {
    /// `log P(continuation | context)`, summed over the continuation's tokens.
    fn log_likelihood<'a>(
        &'a self,
        context: &'a str,
        continuation: &'a str,
    ) -> BoxFuture<'a, Result<f64>>;
}

/// The separator lm-evaluation-harness puts between a question and its answer.
pub const TARGET_DELIMITER: &str = " ";

/// Scores every multiple-choice case of `dataset` (its `choices`, the right one in
/// `expected`) by log-likelihood: `acc` picks the choice the model finds likeliest, `acc_norm`
/// the likeliest per character of the continuation (lm-evaluation-harness's
/// normalisation). The context is the case's input text; each continuation is
/// [`TARGET_DELIMITER`] and the choice. Each case's log-likelihoods are in its scores'
/// `reason`, its prediction in the output text.
///
/// # Errors
/// [`EvalError::InvalidInput`] for a case without choices, without exactly one expected
/// answer among them, or with a conversation as input.
pub async fn multiple_choice(
    label: &str,
    model: &dyn LogLikelihood,
    dataset: &Dataset,
) -> Result<ServiceReport> {
    let started = Instant::now();
    let mut cases = Vec::with_capacity(dataset.cases.len());
    for case in &dataset.cases {
        cases.push(score_case(model, case).await?);
    }
    let mut aggregates = BTreeMap::new();
    for metric in ["acc", "acc_norm"] {
        let values: Vec<f64> = cases
            .iter()
            .filter_map(|c| c.scores.get(metric).map(|s| s.value))
            .collect();
        if !values.is_empty() {
            aggregates.insert(metric.to_owned(), mean_with_ci(&values));
        }
    }
    Ok(ServiceReport::finished(label, cases, aggregates, started))
}

fn argmax(values: impl Iterator<Item = f64>) -> usize {
    // The first of equal maxima, as numpy's argmax.
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

async fn score_case(model: &dyn LogLikelihood, case: &Case) -> Result<CaseResult> {
    let bad = |what: &str| EvalError::InvalidInput(format!("case `{}`: {what}", case.id));
    let Input::Text(context) = &case.input else {
        return Err(bad(
            "a likelihood evaluation needs a text input, not a conversation",
        ));
    };
    if case.choices.len() < 2 {
        return Err(bad("a multiple-choice case needs at least two `choices`"));
    }
    let [answer] = case.expected.as_slice() else {
        return Err(bad(
            "a multiple-choice case needs exactly one `expected` answer",
        ));
    };
    let gold = case
        .choices
        .iter()
        .position(|c| c == answer)
        .ok_or_else(|| bad("the expected answer is not one of the choices"))?;
    let started = Instant::now();
    let mut lls = Vec::with_capacity(case.choices.len());
    let mut error = None;
    for choice in &case.choices {
        match model
            .log_likelihood(context, &format!("{TARGET_DELIMITER}{choice}"))
            .await
        {
            Ok(ll) => lls.push(ll),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let mut scores = BTreeMap::new();
    let mut text = String::new();
    if error.is_none() {
        let pred = argmax(lls.iter().copied());
        let norm = argmax(
            lls.iter()
                .zip(&case.choices)
                .map(|(ll, c)| ll / (TARGET_DELIMITER.len() + c.len()) as f64),
        );
        let why = format!("log-likelihoods {lls:?}, right choice {gold}");
        scores.insert(
            "acc".to_owned(),
            Score::pass(pred == gold).because(why.clone()),
        );
        scores.insert(
            "acc_norm".to_owned(),
            Score::pass(norm == gold).because(why),
        );
        text = case.choices[pred].clone();
    }
    Ok(CaseResult {
        id: case.id.clone(),
        input: context.clone(),
        expected: case.expected.clone(),
        output: Output {
            text,
            latency: started.elapsed(),
            error,
            ..Output::default()
        },
        scores,
        metric_errors: BTreeMap::new(),
    })
}
