//! [`EvalError`].

use std::path::PathBuf;

/// What went wrong in an evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A dataset line (or CSV record) that cannot be read as a case.
    #[error("{}:{line}: {}{message}", file.display(), field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Dataset {
        /// The file (or the name the text was given).
        file: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The field at fault, when one is.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A file that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A metric name, pattern or setting that makes no sense.
    #[error("{0}")]
    InvalidInput(String),
    /// A metric that failed to score a case (an LLM judge whose call failed, say).
    #[error("metric `{metric}`: {message}")]
    Metric {
        /// The metric.
        metric: String,
        /// What went wrong.
        message: String,
    },
}

/// `Result` with [`EvalError`].
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
