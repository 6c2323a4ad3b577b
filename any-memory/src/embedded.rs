//! [`Embedded`]: a store that computes embeddings with an [`EmbedService`].

use any_core::{BoxEmbedService, EmbedService, EmbedServiceExt};

use crate::{
    BoxFuture, ListQuery, MemoryError, MemoryId, MemoryRecord, MemoryStore, MemoryUpdate,
    NewMemory, Result, Scope, Scored, SearchQuery,
};

/// Wraps a store so records get embeddings and searches get query vectors from an embedding
/// service: the local model's, or a provider's.
///
/// On `add` / `add_many`, records without an embedding are embedded (one request for the
/// batch); on `update`, a changed text is embedded again; on `search`, a vector or hybrid
/// query without a vector gets its text embedded.
///
/// ```
/// use any_core::{EmbedRequest, EmbedResponse, Error, Role};
/// use any_memory::{Embedded, InMemoryStore, MemoryStore, NewMemory, Retrieval, Scope, SearchQuery};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_memory::Result<()> {
/// // A toy embedding: counts of a few letters. Any EmbedService works.
/// let embed = tower::service_fn(|req: EmbedRequest| async move {
///     let v = |t: &str| ['a', 'e', 'o', 'z'].map(|c| t.matches(c).count() as f32 + 0.1).to_vec();
///     Ok::<_, Error>(EmbedResponse { embeddings: req.inputs.iter().map(|t| v(t)).collect(), ..Default::default() })
/// });
/// let store = Embedded::new(InMemoryStore::new(), embed);
/// store.add(NewMemory::new(Scope::user("u"), Role::User, "zzz zoo")).await?;
/// store.add(NewMemory::new(Scope::user("u"), Role::User, "banana")).await?;
/// let q = SearchQuery::new(Scope::user("u"), Retrieval::Vector).with_text("pizza buzz").top_k(1);
/// assert_eq!(store.search(q).await?[0].record.text, "zzz zoo");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Embedded<S> {
    store: S,
    embed: BoxEmbedService,
}

impl<S: MemoryStore> Embedded<S> {
    /// `store`, with embeddings from `embed`.
    pub fn new<E>(store: S, embed: E) -> Self
    where
        E: EmbedService + Sync,
    {
        Embedded {
            store,
            embed: embed.boxed_embed(),
        }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.store
    }

    /// The wrapped store, unwrapped.
    pub fn into_inner(self) -> S {
        self.store
    }

    async fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let n = texts.len();
        let vectors = self
            .embed
            .embed(texts)
            .await
            .map_err(MemoryError::Embedding)?;
        if vectors.len() != n {
            return Err(MemoryError::Embedding(any_core::Error::InvalidResponse(
                format!(
                    "asked for {n} embeddings, the service returned {}",
                    vectors.len()
                ),
            )));
        }
        Ok(vectors)
    }
}

impl<S: MemoryStore> MemoryStore for Embedded<S> {
    fn add_many(&self, mut memories: Vec<NewMemory>) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
        Box::pin(async move {
            let missing: Vec<usize> = (0..memories.len())
                .filter(|&i| memories[i].embedding.is_none())
                .collect();
            if !missing.is_empty() {
                let texts = missing.iter().map(|&i| memories[i].text.clone()).collect();
                for (i, v) in missing.into_iter().zip(self.embed_texts(texts).await?) {
                    memories[i].embedding = Some(v);
                }
            }
            self.store.add_many(memories).await
        })
    }

    fn get<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<Option<MemoryRecord>>> {
        self.store.get(id)
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
        self.store.list(query)
    }

    fn update<'a>(
        &'a self,
        id: &'a MemoryId,
        mut update: MemoryUpdate,
    ) -> BoxFuture<'a, Result<MemoryRecord>> {
        Box::pin(async move {
            if let (Some(text), None) = (&update.text, &update.embedding) {
                let mut v = self.embed_texts(vec![text.clone()]).await?;
                update.embedding = Some(v.pop());
            }
            self.store.update(id, update).await
        })
    }

    fn delete<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<bool>> {
        self.store.delete(id)
    }

    fn clear<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<u64>> {
        self.store.clear(scope)
    }

    fn search(&self, mut query: SearchQuery) -> BoxFuture<'_, Result<Vec<Scored>>> {
        Box::pin(async move {
            if query.mode.needs_vector()
                && query.vector.is_none()
                && let Some(text) = query.text.clone().filter(|t| !t.trim().is_empty())
            {
                query.vector = self.embed_texts(vec![text]).await?.pop();
            }
            self.store.search(query).await
        })
    }
}
