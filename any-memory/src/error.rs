//! The errors a memory store returns.

/// `Result` with [`MemoryError`].
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;

/// What went wrong in a memory store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// No record has this id (in `update`).
    #[error("no memory record with id `{0}`")]
    NotFound(String),

    /// The call itself is wrong: a record without a scope, a search without the query its
    /// mode needs, embeddings of different lengths, ... The message names the problem.
    #[error("invalid memory request: {0}")]
    InvalidInput(String),

    /// The storage engine failed (SQLite, PostgreSQL, a file). `message` says what was being
    /// done and what the engine said; `source` keeps the engine's typed error.
    #[error("{store} store: {message}")]
    Backend {
        /// Which store (`"sqlite"`, `"postgres"`, ...).
        store: &'static str,
        /// What failed, in words (including what the engine said).
        message: String,
        /// The engine's own error.
        #[source]
        source: Option<any_core::BoxError>,
    },

    /// The embedding service failed while embedding records or a query.
    #[error("embedding failed: {0}")]
    Embedding(#[source] any_core::Error),
}

impl MemoryError {
    /// A [`MemoryError::Backend`] of `store` saying `message` (which should already include
    /// what `source` says), caused by `source`.
    pub fn backend(
        store: &'static str,
        message: impl Into<String>,
        source: impl Into<any_core::BoxError>,
    ) -> Self {
        MemoryError::Backend {
            store,
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl From<MemoryError> for any_core::Error {
    /// Invalid input stays an invalid request, an embedding failure stays the embedding
    /// service's error; everything else is [`any_core::Error::Other`] carrying the memory
    /// error.
    fn from(err: MemoryError) -> Self {
        match err {
            MemoryError::InvalidInput(m) => any_core::Error::InvalidRequest(m),
            MemoryError::Embedding(e) => e,
            other => any_core::Error::Other(Box::new(other)),
        }
    }
}
