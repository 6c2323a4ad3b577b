//! [`MemoryStore`]: the trait every store implements.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{
    ListQuery, MemoryError, MemoryId, MemoryRecord, MemoryUpdate, NewMemory, Result, Scope, Scored,
    SearchQuery,
};

/// The boxed future a [`MemoryStore`] method returns (the trait stays object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A place memories are kept: the trait adapter authors implement.
///
/// Object safe (`Arc<dyn MemoryStore>` is how the [`MemoryLayer`](crate::MemoryLayer) holds
/// one) and async; every method returns a [`BoxFuture`]. The contract, which
/// [`conformance::run`](crate::conformance::run) checks:
///
/// - `add_many` is atomic: every record is stored, or none is (and the call fails). Records
///   get distinct ids; a record's times are `created_at` (given or now) and `updated_at`.
/// - A record needs a scope naming someone ([`Scope::require_some`]); queries select by
///   [`Scope::contains`].
/// - `list` orders by `created_at`, ties in the order records were added.
/// - `search` ranks as its [`Retrieval`](crate::Retrieval) mode says, applies the filter
///   before `top_k`, and drops results below `min_score`.
/// - A committed write survives a crash of the process (for stores that persist).
/// - Concurrent calls from many tasks lose and duplicate nothing.
// ANCHOR: trait
pub trait MemoryStore: Send + Sync + std::fmt::Debug {
    /// Adds one record and returns it as stored.
    ///
    /// # Errors
    /// [`MemoryError::InvalidInput`] for a record without scope or with a bad embedding;
    /// [`MemoryError::Backend`] when the engine fails.
    fn add(&self, memory: NewMemory) -> BoxFuture<'_, Result<MemoryRecord>> {
        Box::pin(async move {
            let mut added = self.add_many(vec![memory]).await?;
            added.pop().ok_or_else(|| MemoryError::Backend {
                store: "store",
                message: "add_many of one record returned none".into(),
                source: None,
            })
        })
    }

    /// Adds several records in one transaction: all or none. Returns them as stored, in
    /// order.
    ///
    /// # Errors
    /// As [`MemoryStore::add`], for any of the records (then none is stored).
    fn add_many(&self, memories: Vec<NewMemory>) -> BoxFuture<'_, Result<Vec<MemoryRecord>>>;

    /// The record with this id, if there is one.
    ///
    /// # Errors
    /// [`MemoryError::Backend`] when the engine fails.
    fn get<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<Option<MemoryRecord>>>;

    /// Records of a scope in time order.
    ///
    /// # Errors
    /// [`MemoryError::Backend`] when the engine fails.
    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Vec<MemoryRecord>>>;

    /// Changes a record and returns it as stored.
    ///
    /// # Errors
    /// [`MemoryError::NotFound`] when there is no such record.
    fn update<'a>(
        &'a self,
        id: &'a MemoryId,
        update: MemoryUpdate,
    ) -> BoxFuture<'a, Result<MemoryRecord>>;

    /// Deletes a record; `false` when there was none.
    ///
    /// # Errors
    /// [`MemoryError::Backend`] when the engine fails.
    fn delete<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<bool>>;

    /// Deletes every record the scope selects and returns how many. The scope must name
    /// someone.
    ///
    /// # Errors
    /// [`MemoryError::InvalidInput`] for an empty scope.
    fn clear<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<u64>>;

    /// Ranked records.
    ///
    /// # Errors
    /// [`MemoryError::InvalidInput`] when the mode lacks its query
    /// ([`SearchQuery::validate`]) or the query vector's length differs from an embedding's.
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Vec<Scored>>>;
}
// ANCHOR_END: trait

macro_rules! forward_store {
    ($($ptr:ty),*) => {$(
        impl<S: MemoryStore + ?Sized> MemoryStore for $ptr {
            fn add(&self, memory: NewMemory) -> BoxFuture<'_, Result<MemoryRecord>> {
                (**self).add(memory)
            }
            fn add_many(&self, memories: Vec<NewMemory>) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
                (**self).add_many(memories)
            }
            fn get<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<Option<MemoryRecord>>> {
                (**self).get(id)
            }
            fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
                (**self).list(query)
            }
            fn update<'a>(&'a self, id: &'a MemoryId, update: MemoryUpdate) -> BoxFuture<'a, Result<MemoryRecord>> {
                (**self).update(id, update)
            }
            fn delete<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<bool>> {
                (**self).delete(id)
            }
            fn clear<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<u64>> {
                (**self).clear(scope)
            }
            fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Vec<Scored>>> {
                (**self).search(query)
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>, &S);
