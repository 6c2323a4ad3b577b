//! Reports: per-case results and aggregates, as JSON and Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::{Dataset, Metric, Output, Score};

/// One case's result for one service.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CaseResult {
    /// The case's id.
    pub id: String,
    /// The input, as text (the last message of a conversation).
    pub input: String,
    /// The expected answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<String>,
    /// What the service produced.
    pub output: Output,
    /// Each metric's score (none when the service failed).
    pub scores: BTreeMap<String, Score>,
    /// Metrics that could not score this case, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metric_errors: BTreeMap<String, String>,
}

/// A metric over a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Aggregate {
    /// The mean over the scored cases (or the metric's own aggregate, as corpus BLEU).
    pub value: f64,
    /// A 95% bootstrap confidence interval of the mean (1000 resamples, seeded), when the
    /// value is a mean of at least two cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<(f64, f64)>,
    /// Cases scored.
    pub n: usize,
}

/// One service over one dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceReport {
    /// The service's name in the report.
    pub label: String,
    /// Each case, in dataset order.
    pub cases: Vec<CaseResult>,
    /// Each metric over the dataset.
    pub aggregates: BTreeMap<String, Aggregate>,
    /// Cases whose service call failed.
    pub errors: usize,
    /// Wall time of the run, in seconds.
    pub elapsed_s: f64,
    /// Whether the run was stopped before every case finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl ServiceReport {
    /// A finished run of `cases` that began at `started`, counting the failed ones.
    pub(crate) fn finished(
        label: &str,
        cases: Vec<CaseResult>,
        aggregates: BTreeMap<String, Aggregate>,
        started: std::time::Instant,
    ) -> Self {
        ServiceReport {
            label: label.to_owned(),
            errors: cases.iter().filter(|c| c.output.error.is_some()).count(),
            elapsed_s: started.elapsed().as_secs_f64(),
            stopped: false,
            cases,
            aggregates,
        }
    }
}

/// Several services over one dataset: what `any eval` writes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The dataset's name.
    pub dataset: String,
    /// The metrics, in the order asked.
    pub metrics: Vec<String>,
    /// One entry per service, in the order run.
    pub services: Vec<ServiceReport>,
    /// What metrics mean, where a report states it (metric, definition): the reports print
    /// them under the table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub definitions: BTreeMap<String, String>,
}

/// A seeded generator for the bootstrap (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The mean of `values` with a 95% percentile-bootstrap interval.
pub fn mean_with_ci(values: &[f64]) -> Aggregate {
    let mean = |picked: &mut dyn Iterator<Item = usize>| {
        let (s, c) = picked.fold((0.0, 0usize), |(s, c), i| (s + values[i], c + 1));
        s / c.max(1) as f64
    };
    Aggregate {
        value: mean(&mut (0..values.len())),
        ci95: bootstrap_ci(values.len(), mean),
        n: values.len(),
    }
}

/// A 95% percentile-bootstrap interval of `statistic` over `n` cases (1000 resamples,
/// seeded): `statistic` gets the indexes of one resample. `None` for fewer than two cases.
pub(crate) fn bootstrap_ci(
    n: usize,
    statistic: impl Fn(&mut dyn Iterator<Item = usize>) -> f64,
) -> Option<(f64, f64)> {
    (n >= 2).then(|| {
        let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
        let mut stats: Vec<f64> = (0..1000)
            .map(|_| statistic(&mut (0..n).map(|_| rng.below(n))))
            .collect();
        stats.sort_by(f64::total_cmp);
        (stats[25], stats[974])
    })
}

pub(crate) fn aggregate(
    dataset: &Dataset,
    cases: &[CaseResult],
    metrics: &[Arc<dyn Metric>],
) -> BTreeMap<String, Aggregate> {
    let by_id: BTreeMap<&str, &crate::Case> =
        dataset.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut out = BTreeMap::new();
    for m in metrics {
        let name = m.name();
        let scored: Vec<(&crate::Case, &Output, f64)> = cases
            .iter()
            .filter_map(|r| {
                let s = r.scores.get(&name)?;
                Some((*by_id.get(r.id.as_str())?, &r.output, s.value))
            })
            .collect();
        if scored.is_empty() {
            continue;
        }
        let pairs: Vec<(&crate::Case, &Output)> = scored.iter().map(|(c, o, _)| (*c, *o)).collect();
        let agg = match m.aggregate(&pairs) {
            Some(value) => Aggregate {
                value,
                ci95: None,
                n: scored.len(),
            },
            None => mean_with_ci(&scored.iter().map(|s| s.2).collect::<Vec<_>>()),
        };
        out.insert(name, agg);
    }
    out
}

fn cell(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('|', "\\|");
    let mut s: String = one_line.chars().take(max).collect();
    if one_line.chars().count() > max {
        s.push('…');
    }
    s
}

/// A value with three significant figures or so: `0.833`, `123.4`, `4.5e-4`.
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v == 0.0 || v.abs() >= 0.01 && v.abs() < 100.0 {
        format!("{v:.3}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.1e}")
    }
}

impl Report {
    /// The definitions, in the order of the metrics (then any others).
    pub(crate) fn defined(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .metrics
            .iter()
            .filter_map(|m| Some((m.as_str(), self.definitions.get(m)?.as_str())))
            .collect();
        for (m, d) in &self.definitions {
            if !self.metrics.contains(m) {
                out.push((m, d));
            }
        }
        out
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A Markdown summary: one row per service, one column per metric (mean and 95%
    /// interval), then each case's scores side by side.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {}\n", self.dataset);
        let _ = write!(md, "| service | cases | errors |");
        for m in &self.metrics {
            let _ = write!(md, " {} |", cell(m, 40));
        }
        let _ = write!(md, "\n|---|---:|---:|");
        for _ in &self.metrics {
            md.push_str("---:|");
        }
        md.push('\n');
        for s in &self.services {
            let stopped = if s.stopped { " (stopped)" } else { "" };
            let _ = write!(
                md,
                "| {}{stopped} | {} | {} |",
                cell(&s.label, 60),
                s.cases.len(),
                s.errors
            );
            for m in &self.metrics {
                match s.aggregates.get(m) {
                    Some(a) => match a.ci95 {
                        Some((lo, hi)) => {
                            let _ = write!(
                                md,
                                " {} [{}, {}] |",
                                number(a.value),
                                number(lo),
                                number(hi)
                            );
                        }
                        None => {
                            let _ = write!(md, " {} |", number(a.value));
                        }
                    },
                    None => md.push_str(" – |"),
                }
            }
            md.push('\n');
        }
        for (m, definition) in self.defined() {
            let _ = write!(md, "\n- `{m}`: {definition}");
        }
        if !self.definitions.is_empty() {
            md.push('\n');
        }
        let Some(first) = self.services.first() else {
            return md;
        };
        let _ = write!(md, "\n## Cases\n\n| case | input |");
        for s in &self.services {
            let _ = write!(md, " {} |", cell(&s.label, 40));
        }
        let _ = write!(md, "\n|---|---|");
        for _ in &self.services {
            md.push_str("---|");
        }
        md.push('\n');
        for (i, case) in first.cases.iter().enumerate() {
            let _ = write!(md, "| {} | {} |", cell(&case.id, 20), cell(&case.input, 60));
            for s in &self.services {
                let Some(r) = s.cases.get(i).filter(|r| r.id == case.id) else {
                    md.push_str(" – |");
                    continue;
                };
                if let Some(e) = &r.output.error {
                    let _ = write!(md, " error: {} |", cell(e, 60));
                    continue;
                }
                let scores: Vec<String> = self
                    .metrics
                    .iter()
                    .filter_map(|m| r.scores.get(m).map(|s| format!("{m} {}", number(s.value))))
                    .collect();
                let _ = write!(
                    md,
                    " {} — {} |",
                    cell(&r.output.text, 60),
                    scores.join(", ")
                );
            }
            md.push('\n');
        }
        md
    }
}
