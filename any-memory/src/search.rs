//! Queries: [`ListQuery`] (records in time order) and [`SearchQuery`] (records ranked by a
//! [`Retrieval`] mode), with the ranking pieces every store shares.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Filter, MemoryError, MemoryId, MemoryRecord, Result, Scope};

/// How a search ranks records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retrieval {
    /// The newest records first (no query needed); score `1 / (1 + rank)`.
    Recent,
    /// Full-text relevance of the query text (BM25 or the engine's equivalent); higher is
    /// better, the scale is the engine's. Records sharing no term with the query are not
    /// returned.
    #[default]
    Keyword,
    /// Cosine similarity of the query vector and each record's embedding (records without
    /// one are not returned).
    Vector,
    /// Keyword and vector rankings fused by reciprocal rank fusion (each list contributes
    /// `1 / (60 + rank)`); needs both the text and the vector.
    Hybrid,
}

impl Retrieval {
    /// Every mode, in declaration order.
    pub const ALL: [Retrieval; 4] = [
        Retrieval::Recent,
        Retrieval::Keyword,
        Retrieval::Vector,
        Retrieval::Hybrid,
    ];

    /// The mode's name (`"recent"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Retrieval::Recent => "recent",
            Retrieval::Keyword => "keyword",
            Retrieval::Vector => "vector",
            Retrieval::Hybrid => "hybrid",
        }
    }

    /// Whether the mode needs a query vector.
    pub fn needs_vector(self) -> bool {
        matches!(self, Retrieval::Vector | Retrieval::Hybrid)
    }
}

/// Records in time order: what [`MemoryStore::list`](crate::MemoryStore::list) takes.
///
/// ```
/// use any_memory::{ListQuery, Scope};
/// // The last 8 records of a session, newest first.
/// let q = ListQuery::new(Scope::session("s1")).newest_first().limit(8);
/// assert_eq!(q.limit, Some(8));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Whose records.
    pub scope: Scope,
    /// Only records that pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Newest first instead of oldest first. Records created at the same millisecond keep
    /// the order they were added in.
    #[serde(default)]
    pub newest_first: bool,
    /// At most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl ListQuery {
    /// All records of `scope`, oldest first.
    pub fn new(scope: Scope) -> Self {
        ListQuery {
            scope,
            ..Default::default()
        }
    }

    /// Only records passing `filter`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Newest first.
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    /// At most `n` records.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
}

/// A ranked search: what [`MemoryStore::search`](crate::MemoryStore::search) takes.
///
/// ```
/// use any_memory::{Filter, Retrieval, Scope, SearchQuery};
/// let q = SearchQuery::text(Scope::user("ada"), "peanut allergy")
///     .top_k(3)
///     .filter(Filter::eq("kind", "fact"));
/// assert_eq!(q.mode, Retrieval::Keyword);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Whose records.
    pub scope: Scope,
    /// The query text (keyword and hybrid modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The query vector (vector and hybrid modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// How to rank.
    #[serde(default)]
    pub mode: Retrieval,
    /// At most this many results (default 5).
    pub top_k: usize,
    /// Drop results scoring below this (on the mode's scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    /// Only records that pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

impl SearchQuery {
    /// A search of `scope` in `mode`, with no query yet.
    pub fn new(scope: Scope, mode: Retrieval) -> Self {
        SearchQuery {
            scope,
            text: None,
            vector: None,
            mode,
            top_k: 5,
            min_score: None,
            filter: None,
        }
    }

    /// A keyword search for `text`.
    pub fn text(scope: Scope, text: impl Into<String>) -> Self {
        SearchQuery::new(scope, Retrieval::Keyword).with_text(text)
    }

    /// A vector search near `vector`.
    pub fn vector(scope: Scope, vector: Vec<f32>) -> Self {
        SearchQuery::new(scope, Retrieval::Vector).with_vector(vector)
    }

    /// Sets the query text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Sets the query vector.
    pub fn with_vector(mut self, vector: Vec<f32>) -> Self {
        self.vector = Some(vector);
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Retrieval) -> Self {
        self.mode = mode;
        self
    }

    /// At most `k` results.
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Drops results scoring below `score`.
    pub fn min_score(mut self, score: f32) -> Self {
        self.min_score = Some(score);
        self
    }

    /// Only records passing `filter`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Checks that the mode has the query it needs.
    ///
    /// # Errors
    /// [`MemoryError::InvalidInput`] naming what is missing.
    pub fn validate(&self) -> Result<()> {
        let needs_text = matches!(self.mode, Retrieval::Keyword | Retrieval::Hybrid);
        if needs_text && self.text.as_deref().is_none_or(|t| t.trim().is_empty()) {
            return Err(MemoryError::InvalidInput(format!(
                "a {} search needs a query text",
                self.mode.as_str()
            )));
        }
        if self.mode.needs_vector() {
            match &self.vector {
                None => {
                    return Err(MemoryError::InvalidInput(format!(
                        "a {} search needs a query vector (wrap the store in `Embedded` to \
                         compute one from the text)",
                        self.mode.as_str()
                    )));
                }
                Some(v) => crate::record::check_embedding(v)?,
            }
        }
        Ok(())
    }
}

/// A search result: the record and its score on the mode's scale (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The record.
    pub record: MemoryRecord,
    /// How well it matches.
    pub score: f32,
}

/// The constant of reciprocal rank fusion: each ranked list adds `1 / (RRF_K + rank)` (rank
/// from 1), the value of the original paper (Cormack et al., 2009).
pub const RRF_K: f32 = 60.0;

/// Fuses ranked lists by reciprocal rank fusion; the result is ordered by fused score (ties
/// by first appearance) and keeps each record once.
///
/// ```
/// use any_memory::{fuse_rrf, MemoryRecord, Scored};
/// # fn rec(id: &str) -> MemoryRecord {
/// #     serde_json::from_value(serde_json::json!({"id": id, "scope": {"user": "u"},
/// #         "role": "user", "text": id, "created_at": 0, "updated_at": 0})).unwrap()
/// # }
/// let keyword = vec![Scored { record: rec("a"), score: 9.0 }, Scored { record: rec("b"), score: 3.0 }];
/// let vector = vec![Scored { record: rec("b"), score: 0.9 }, Scored { record: rec("c"), score: 0.8 }];
/// let fused = fuse_rrf(&[keyword, vector]);
/// assert_eq!(fused[0].record.id.0, "b"); // in both lists
/// assert_eq!(fused.len(), 3);
/// ```
pub fn fuse_rrf(lists: &[Vec<Scored>]) -> Vec<Scored> {
    let mut fused: Vec<Scored> = Vec::new();
    let mut at: HashMap<MemoryId, usize> = HashMap::new();
    for list in lists {
        for (rank, hit) in list.iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f32 + 1.0);
            match at.get(&hit.record.id) {
                Some(&i) => fused[i].score += add,
                None => {
                    at.insert(hit.record.id.clone(), fused.len());
                    fused.push(Scored {
                        record: hit.record.clone(),
                        score: add,
                    });
                }
            }
        }
    }
    // A stable sort keeps first appearance among equal scores.
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused
}

/// Keeps the best `k` of scored items as they stream past, without sorting them all.
#[derive(Debug)]
pub(crate) struct TopK<T> {
    k: usize,
    items: Vec<(f32, u64, T)>,
    seq: u64,
}

impl<T> TopK<T> {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            items: Vec::with_capacity(k.min(1024) + 1),
            seq: 0,
        }
    }

    /// Offers an item; among equal scores the earlier offered wins.
    pub(crate) fn push(&mut self, score: f32, item: T) {
        if self.k == 0 {
            return;
        }
        self.seq += 1;
        if self.items.len() == self.k {
            let worst = self.items.last().map_or(f32::NEG_INFINITY, |w| w.0);
            if score <= worst {
                return;
            }
            self.items.pop();
        }
        let pos = self.items.partition_point(|(s, _, _)| *s >= score);
        self.items.insert(pos, (score, self.seq, item));
    }

    /// The kept items, best first.
    pub(crate) fn into_sorted(self) -> Vec<(f32, T)> {
        self.items.into_iter().map(|(s, _, t)| (s, t)).collect()
    }
}

/// The lowercase word tokens of `text`, as the in-memory store indexes and queries them.
pub(crate) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The query each ranking of a hybrid search runs: a deeper list than `top_k` (four times,
/// at least 20), so a record ranked modestly by both rankings can still rise by fusion;
/// `min_score` applies to the fused score only.
pub(crate) fn hybrid_candidates(query: &SearchQuery) -> SearchQuery {
    SearchQuery {
        top_k: query.top_k.saturating_mul(4).max(20),
        min_score: None,
        ..query.clone()
    }
}

/// Applies `min_score` and `top_k` to a ranked list.
pub(crate) fn finish(mut hits: Vec<Scored>, query: &SearchQuery) -> Vec<Scored> {
    if let Some(min) = query.min_score {
        hits.retain(|h| h.score >= min);
    }
    hits.truncate(query.top_k);
    hits
}

/// Cosine similarity, failing when the lengths differ.
pub(crate) fn cosine(query: &[f32], record: &MemoryRecord, embedding: &[f32]) -> Result<f32> {
    if query.len() != embedding.len() {
        return Err(MemoryError::InvalidInput(format!(
            "the query vector has {} dimensions, record {}'s embedding {}: embeddings from \
             different models cannot be compared",
            query.len(),
            record.id,
            embedding.len()
        )));
    }
    Ok(any_core::cosine_similarity(query, embedding))
}
