//! [`InMemoryStore`]: records in a vector behind a lock, for tests and short-lived apps.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::filter::passes;
use crate::record::now_millis;
use crate::search::{TopK, cosine, finish, fuse_rrf, hybrid_candidates, words};
use crate::{
    BoxFuture, ListQuery, MemoryError, MemoryId, MemoryRecord, MemoryStore, MemoryUpdate,
    NewMemory, Result, Retrieval, Scope, Scored, SearchQuery,
};

/// A store in the process's memory: nothing survives the process. Keyword search is BM25
/// over lowercase words, vector search an exact cosine scan.
///
/// Cheap to clone: clones share the records.
///
/// ```
/// use any_core::Role;
/// use any_memory::{InMemoryStore, MemoryStore, NewMemory, Scope, SearchQuery};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_memory::Result<()> {
/// let store = InMemoryStore::new();
/// store.add(NewMemory::new(Scope::user("ada"), Role::User, "My cat is called Turing")).await?;
/// let hits = store.search(SearchQuery::text(Scope::user("ada"), "cat name")).await?;
/// assert_eq!(hits[0].record.text, "My cat is called Turing");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemoryStore {
    inner: Arc<RwLock<Records>>,
}

#[derive(Debug, Default)]
struct Records {
    /// In the order added.
    rows: Vec<MemoryRecord>,
    next_id: u64,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Records> {
        // A panic while holding the lock cannot leave records half-written (every write
        // builds its values first), so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Records> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn keyword(&self, query: &SearchQuery) -> Vec<Scored> {
        let records = self.read();
        let terms: Vec<String> = {
            let mut t: Vec<String> = words(query.text.as_deref().unwrap_or("")).collect();
            t.sort();
            t.dedup();
            t
        };
        let docs: Vec<(&MemoryRecord, HashMap<String, u32>, usize)> = records
            .rows
            .iter()
            .filter(|r| query.scope.contains(&r.scope))
            .map(|r| {
                let mut tf = HashMap::new();
                let mut len = 0;
                for w in words(&r.text) {
                    *tf.entry(w).or_insert(0) += 1;
                    len += 1;
                }
                (r, tf, len)
            })
            .collect();
        let n = docs.len() as f32;
        let avg_len = docs.iter().map(|d| d.2).sum::<usize>() as f32 / n.max(1.0);
        let idf: Vec<f32> = terms
            .iter()
            .map(|t| {
                let df = docs.iter().filter(|d| d.1.contains_key(t)).count() as f32;
                ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
            })
            .collect();
        // BM25 with the usual k1 = 1.2, b = 0.75.
        let (k1, b) = (1.2f32, 0.75f32);
        let mut top = TopK::new(query.top_k);
        for (record, tf, len) in &docs {
            let mut score = 0.0;
            let mut hit = false;
            for (t, idf) in terms.iter().zip(&idf) {
                if let Some(&f) = tf.get(t) {
                    hit = true;
                    let f = f as f32;
                    score += idf * f * (k1 + 1.0)
                        / (f + k1 * (1.0 - b + b * *len as f32 / avg_len.max(1.0)));
                }
            }
            if hit && passes(query.filter.as_ref(), record) {
                top.push(score, *record);
            }
        }
        scored(top)
    }

    fn vector(&self, query: &SearchQuery) -> Result<Vec<Scored>> {
        let records = self.read();
        let q = query.vector.as_deref().unwrap_or_default();
        let mut top = TopK::new(query.top_k);
        for r in &records.rows {
            if let Some(e) = &r.embedding
                && query.scope.contains(&r.scope)
                && passes(query.filter.as_ref(), r)
            {
                top.push(cosine(q, r, e)?, r);
            }
        }
        Ok(scored(top))
    }
}

fn scored(top: TopK<&MemoryRecord>) -> Vec<Scored> {
    top.into_sorted()
        .into_iter()
        .map(|(score, r)| Scored {
            record: r.clone(),
            score,
        })
        .collect()
}

/// Records of `query` in time order, ties in insertion order (the rows' order).
fn list_rows<'r>(rows: &'r [MemoryRecord], query: &ListQuery) -> Vec<&'r MemoryRecord> {
    let mut out: Vec<(usize, &MemoryRecord)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| query.scope.contains(&r.scope) && passes(query.filter.as_ref(), r))
        .collect();
    out.sort_by_key(|(i, r)| (r.created_at, *i));
    if query.newest_first {
        out.reverse();
    }
    let mut out: Vec<&MemoryRecord> = out.into_iter().map(|(_, r)| r).collect();
    if let Some(n) = query.limit {
        out.truncate(n);
    }
    out
}

impl MemoryStore for InMemoryStore {
    fn add_many(&self, memories: Vec<NewMemory>) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
        Box::pin(async move {
            for m in &memories {
                m.validate()?;
            }
            let now = now_millis();
            let mut records = self.write();
            let mut added = Vec::with_capacity(memories.len());
            for m in memories {
                records.next_id += 1;
                let id = MemoryId(records.next_id.to_string());
                let record = m.into_record(id, now);
                records.rows.push(record.clone());
                added.push(record);
            }
            Ok(added)
        })
    }

    fn get<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<Option<MemoryRecord>>> {
        Box::pin(async move { Ok(self.read().rows.iter().find(|r| &r.id == id).cloned()) })
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
        Box::pin(async move {
            let records = self.read();
            Ok(list_rows(&records.rows, &query)
                .into_iter()
                .cloned()
                .collect())
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a MemoryId,
        update: MemoryUpdate,
    ) -> BoxFuture<'a, Result<MemoryRecord>> {
        Box::pin(async move {
            let mut records = self.write();
            let record = records
                .rows
                .iter_mut()
                .find(|r| &r.id == id)
                .ok_or_else(|| MemoryError::NotFound(id.0.clone()))?;
            let mut changed = record.clone();
            update.apply(&mut changed, now_millis())?;
            *record = changed.clone();
            Ok(changed)
        })
    }

    fn delete<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut records = self.write();
            let before = records.rows.len();
            records.rows.retain(|r| &r.id != id);
            Ok(records.rows.len() < before)
        })
    }

    fn clear<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            scope.require_some("clear")?;
            let mut records = self.write();
            let before = records.rows.len();
            records.rows.retain(|r| !scope.contains(&r.scope));
            Ok((before - records.rows.len()) as u64)
        })
    }

    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Vec<Scored>>> {
        Box::pin(async move {
            query.validate()?;
            let hits = match query.mode {
                Retrieval::Recent => recent(self, &query).await?,
                Retrieval::Keyword => self.keyword(&query),
                Retrieval::Vector => self.vector(&query)?,
                Retrieval::Hybrid => {
                    let wide = hybrid_candidates(&query);
                    fuse_rrf(&[self.keyword(&wide), self.vector(&wide)?])
                }
            };
            Ok(finish(hits, &query))
        })
    }
}

/// A recency "search": the newest `top_k` records passing the filter, scored `1 / (1 + rank)`.
/// Shared by the stores, which all answer it through their `list`.
pub(crate) async fn recent(store: &dyn MemoryStore, query: &SearchQuery) -> Result<Vec<Scored>> {
    let mut list = ListQuery::new(query.scope.clone())
        .newest_first()
        .limit(query.top_k);
    list.filter = query.filter.clone();
    Ok(store
        .list(list)
        .await?
        .into_iter()
        .enumerate()
        .map(|(rank, record)| Scored {
            record,
            score: 1.0 / (1.0 + rank as f32),
        })
        .collect())
}
