//! Conversation memory for any-suite: stores, retrieval, and a tower layer that recalls and
//! records.
//!
//! Part of [any-suite](https://docs.rs/any-core): small crates that each define one trait,
//! composed as `tower` layers over any model. Every crate of the family speaks the types of
//! [`any_core`].
//!
//! - [`MemoryStore`] is the trait: add, add_many (one transaction), get, list, update,
//!   delete, clear, search — scoped by user, agent and session ([`Scope`]). A
//!   [`MemoryRecord`] carries text, role, JSON metadata, times and an optional embedding.
//!   [`Filter`]s select on metadata (equality, sets, ranges), role and time, with and/or/not.
//! - Stores: [`InMemoryStore`] (tests, short-lived apps), [`SqliteStore`] (one file, WAL,
//!   FTS5 full-text search, vectors beside the rows; feature `sqlite`) and [`PostgresStore`]
//!   (shared by many app instances: a pool, `tsvector`, pgvector; feature `postgres`).
//! - [`MemoryLayer`] (and [`ServiceBuilderExt::memory`]): recalls the session's last turns,
//!   relevant older memories and a summary within a token budget before each call, and
//!   records the turn after the answer has streamed to its end.
//! - Retrieval ([`Retrieval`]): recency, keyword (BM25), vector (cosine over embeddings
//!   from any `EmbedService`, added by [`Embedded`]), and hybrid by reciprocal rank fusion
//!   ([`fuse_rrf`]).
//! - [`conformance::run`] checks any store against the trait's contract: run it on yours.
//!
//! Feature flags: `sqlite` (default) — `SqliteStore`, on `rusqlite` with SQLite compiled in
//! (no system library needed); `postgres` (default) — `PostgresStore`, on `tokio-postgres`
//! and `deadpool-postgres`. Without them (`default-features = false`) the crate is the trait,
//! the in-memory store, the layer and the conformance suite, on tower, serde and tokio's
//! runtime only.
//!
//! ```
//! use any_core::Role;
//! use any_memory::{Filter, InMemoryStore, ListQuery, MemoryStore, NewMemory, Scope, SearchQuery};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> any_memory::Result<()> {
//! let store = InMemoryStore::new();
//! let ada = Scope::user("ada").with_session("monday");
//! store.add_many(vec![
//!     NewMemory::new(ada.clone(), Role::User, "I moved to Lisbon last year").metadata("kind", "fact"),
//!     NewMemory::new(ada.clone(), Role::Assistant, "Lisbon is lovely in spring."),
//! ]).await?;
//!
//! // The session in order, and a keyword search across all of Ada's sessions.
//! assert_eq!(store.list(ListQuery::new(Scope::session("monday"))).await?.len(), 2);
//! let facts = SearchQuery::text(Scope::user("ada"), "where does she live Lisbon")
//!     .filter(Filter::eq("kind", "fact"));
//! assert_eq!(store.search(facts).await?[0].record.text, "I moved to Lisbon last year");
//! # Ok(())
//! # }
//! ```
// Unsafe only where the vector index calls its AVX2 dot product, after checking the CPU.
#![deny(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod conformance;
mod embedded;
mod error;
mod filter;
mod hnsw;
mod in_memory;
pub mod layer;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod pushdown;
mod record;
mod search;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;

pub use embedded::Embedded;
pub use error::{MemoryError, Result};
pub use filter::Filter;
pub use hnsw::HnswParams;
pub use in_memory::InMemoryStore;
pub use layer::{Memory, MemoryLayer, MemoryPolicy, ResponseFuture, ServiceBuilderExt};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use record::{MemoryId, MemoryRecord, MemoryUpdate, NewMemory, Scope, now_millis};
pub use search::{ListQuery, RRF_K, Retrieval, Scored, SearchQuery, fuse_rrf};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, VectorSearch};
pub use store::{BoxFuture, MemoryStore};
