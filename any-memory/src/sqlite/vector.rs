//! Vector search in the SQLite store: an exact scan over the scope's embeddings, and an
//! in-memory HNSW index that answers once the store is large enough for it to pay.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{Connection, ToSql};

use super::{each_record, engine, get_row, scope_sql};
use crate::filter::passes;
use crate::hnsw::{Hnsw, HnswParams, dot};
use crate::search::{TopK, cosine};
use crate::{MemoryError, MemoryRecord, Result, Scope, Scored, SearchQuery};

/// How a [`SqliteStore`](super::SqliteStore) answers vector searches.
///
/// ```
/// use any_memory::{HnswParams, SqliteStore, VectorSearch};
///
/// # fn main() -> any_memory::Result<()> {
/// // Exact answers only, however large the store grows:
/// let exact = SqliteStore::open_in_memory()?.with_vector_search(VectorSearch::Exact);
/// // An index from 50,000 embeddings on, with a wider search than the default:
/// let wide = SqliteStore::open_in_memory()?.with_vector_search(VectorSearch::Approximate {
///     params: HnswParams { ef_search: 128, ..HnswParams::default() },
///     min_records: 50_000,
/// });
/// # let _ = (exact, wide);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VectorSearch {
    /// Scan every embedding in the query's scope: exact, and linear in the scope's size.
    Exact,
    /// Answer from an HNSW index kept in memory once the store holds `min_records`
    /// embeddings, and the exact scan below that.
    ///
    /// The index is built on the first vector search that finds the store that large (or by
    /// [`SqliteStore::build_vector_index`](super::SqliteStore::build_vector_index)), then kept
    /// in step with this store's own writes. A write by another connection to the same file
    /// (another process) is noticed on the next search, which rebuilds the index. A query
    /// scope holding fewer than `min_records` embeddings, or a small fraction of the store,
    /// is scanned exactly; so is a filtered search the index cannot fill. Embeddings of mixed
    /// lengths in one file are only ever scanned (so the scan can name the odd record).
    Approximate {
        /// The graph's build and search parameters.
        params: HnswParams,
        /// The store size (embeddings) from which the index answers.
        min_records: usize,
    },
}

impl Default for VectorSearch {
    /// The index from 20,000 embeddings on: there the exact scan of 384-dimension
    /// embeddings passes ~10 ms on one core (the book's Performance chapter has the figures).
    fn default() -> Self {
        VectorSearch::Approximate {
            params: HnswParams::default(),
            min_records: 20_000,
        }
    }
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Unbuilt,
    Built(Box<Hnsw>),
    /// Embeddings of several lengths: only the scan can answer.
    Mixed,
}

/// The index and what it needs to filter by scope.
#[derive(Debug, Default)]
pub(super) struct Ann {
    state: State,
    /// `PRAGMA data_version` when the index was last in step with the file: it changes when
    /// another connection commits.
    version: i64,
    /// Interned user, agent and session of each indexed key (0 for none).
    scopes: HashMap<i64, [u32; 3]>,
    names: [HashMap<String, u32>; 3],
    counts: [HashMap<u32, usize>; 3],
}

pub(super) fn lock(ann: &Mutex<Ann>) -> std::sync::MutexGuard<'_, Ann> {
    // The index is rebuilt from the file when in doubt, so a poisoned lock is only reset.
    ann.lock().unwrap_or_else(|e| {
        let mut guard = e.into_inner();
        *guard = Ann::default();
        guard
    })
}

fn fields(scope: &Scope) -> [Option<&str>; 3] {
    [
        scope.user.as_deref(),
        scope.agent.as_deref(),
        scope.session.as_deref(),
    ]
}

fn decode(blob: &[u8]) -> Option<Vec<f32>> {
    blob.len().is_multiple_of(4).then(|| {
        blob.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

fn data_version(conn: &Connection) -> Result<i64> {
    conn.pragma_query_value(None, "data_version", |r| r.get(0))
        .map_err(|e| engine("reading the data version", e))
}

impl Ann {
    fn reset(&mut self) {
        *self = Ann::default();
    }

    fn intern(&mut self, scope: &Scope) -> [u32; 3] {
        let mut ids = [0; 3];
        for (i, value) in fields(scope).into_iter().enumerate() {
            if let Some(v) = value {
                let next = self.names[i].len() as u32 + 1;
                let id = *self.names[i].entry(v.to_owned()).or_insert(next);
                *self.counts[i].entry(id).or_default() += 1;
                ids[i] = id;
            }
        }
        ids
    }

    fn forget(&mut self, key: i64) {
        if let Some(ids) = self.scopes.remove(&key) {
            for (i, id) in ids.into_iter().enumerate() {
                if id != 0
                    && let Some(n) = self.counts[i].get_mut(&id)
                {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    fn index(&mut self, key: i64, scope: &Scope, embedding: &[f32]) {
        let State::Built(index) = &mut self.state else {
            return;
        };
        if embedding.len() != index.dims() {
            self.state = State::Mixed;
            return;
        }
        index.insert(key, embedding);
        self.forget(key);
        let ids = self.intern(scope);
        self.scopes.insert(key, ids);
    }

    /// Records this store's own committed writes (`None`: the key was deleted or lost its
    /// embedding).
    pub(super) fn wrote(&mut self, key: i64, now: Option<&MemoryRecord>) {
        match (
            &mut self.state,
            now.and_then(|r| r.embedding.as_deref().map(|e| (r, e))),
        ) {
            (State::Unbuilt, _) => {}
            (State::Mixed, _) => self.reset(),
            (State::Built(_), Some((record, embedding))) => {
                self.index(key, &record.scope, embedding);
            }
            (State::Built(index), None) => {
                index.remove(key);
                // Mostly tombstones: searches route through dead nodes, so start again.
                if index.dead() > index.live() {
                    self.reset();
                } else {
                    self.forget(key);
                }
            }
        }
    }

    /// Forgets everything: after a write this store cannot follow key by key (`clear`).
    pub(super) fn invalidate(&mut self) {
        self.reset();
    }

    /// Builds the index from every embedding in the file; returns how many it holds.
    pub(super) fn build(&mut self, conn: &Connection, params: HnswParams) -> Result<usize> {
        self.reset();
        self.version = data_version(conn)?;
        let mut stmt = conn
            .prepare(
                "SELECT id, user_id, agent_id, session_id, embedding FROM memories \
                 WHERE embedding IS NOT NULL ORDER BY id",
            )
            .map_err(|e| engine("preparing the index build", e))?;
        let mut rows = stmt
            .query([])
            .map_err(|e| engine("reading embeddings for the index", e))?;
        let mut index: Option<Hnsw> = None;
        while let Some(row) = rows.next().map_err(|e| engine("reading a row", e))? {
            let key: i64 = row.get(0).map_err(|e| engine("reading a row", e))?;
            let scope = Scope {
                user: row.get(1).map_err(|e| engine("reading a row", e))?,
                agent: row.get(2).map_err(|e| engine("reading a row", e))?,
                session: row.get(3).map_err(|e| engine("reading a row", e))?,
            };
            let blob = row
                .get_ref(4)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(|e| engine("reading a row", e))?;
            let Some(embedding) = decode(blob) else {
                // A corrupt blob: the scan reports it by record.
                self.state = State::Mixed;
                return Ok(0);
            };
            let index = index.get_or_insert_with(|| Hnsw::new(embedding.len(), params));
            if embedding.len() != index.dims() {
                self.state = State::Mixed;
                return Ok(0);
            }
            index.insert(key, &embedding);
            let ids = self.intern(&scope);
            self.scopes.insert(key, ids);
        }
        let n = index.as_ref().map_or(0, Hnsw::live);
        if let Some(index) = index {
            self.state = State::Built(Box::new(index));
        }
        Ok(n)
    }

    /// Answers `query` from the index, or `None` when the exact scan should.
    fn search(
        &mut self,
        conn: &Connection,
        params: HnswParams,
        min_records: usize,
        query: &SearchQuery,
    ) -> Result<Option<Vec<Scored>>> {
        if data_version(conn)? != self.version {
            self.reset();
        }
        if matches!(self.state, State::Unbuilt) {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM memories WHERE embedding IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| engine("counting embeddings", e))?;
            if (n as usize) < min_records.max(1) {
                return Ok(None);
            }
            let started = std::time::Instant::now();
            let n = self.build(conn, params)?;
            tracing::info!(records = n, took = ?started.elapsed(), "built the vector index");
        }
        let State::Built(index) = &self.state else {
            return Ok(None);
        };
        let q = query.vector.as_deref().unwrap_or_default();
        if q.len() != index.dims() {
            return Ok(None);
        }
        // The scope's interned ids; a value the index has never seen selects nothing.
        let mut want = [None; 3];
        let mut size = index.live();
        for (i, value) in fields(&query.scope).into_iter().enumerate() {
            if let Some(v) = value {
                let Some(&id) = self.names[i].get(v) else {
                    return Ok(Some(Vec::new()));
                };
                want[i] = Some(id);
                size = size.min(self.counts[i].get(&id).copied().unwrap_or(0));
            }
        }
        // A small scope, or a small share of the store, is scanned faster than the graph
        // can be walked around everything else.
        let ratio = index.live().div_ceil(size.max(1));
        if size < min_records || ratio > 64 {
            return Ok(None);
        }
        let k = if query.filter.is_some() {
            query.top_k.saturating_mul(4)
        } else {
            query.top_k
        };
        let ef = params.ef_search.saturating_mul(ratio).max(k);
        let scopes = &self.scopes;
        let hits = index.search(q, k, ef, |key| {
            scopes.get(&key).is_some_and(|ids| {
                want.iter()
                    .zip(ids)
                    .all(|(w, id)| w.is_none_or(|w| w == *id))
            })
        });
        let found = hits.len();
        let mut out = Vec::with_capacity(query.top_k);
        for (key, score) in hits {
            if out.len() == query.top_k {
                break;
            }
            if let Some(record) = get_row(conn, key)?
                && passes(query.filter.as_ref(), &record)
            {
                out.push(Scored { record, score });
            }
        }
        // A filter that refused too many of the candidates: only the scan can be sure.
        if query.filter.is_some() && out.len() < query.top_k && found == k {
            return Ok(None);
        }
        Ok(Some(out))
    }
}

/// Vector search as `how` says.
pub(super) fn search(
    conn: &Connection,
    ann: &Mutex<Ann>,
    how: VectorSearch,
    query: &SearchQuery,
) -> Result<Vec<Scored>> {
    if let VectorSearch::Approximate {
        params,
        min_records,
    } = how
        && let Some(hits) = lock(ann).search(conn, params, min_records, query)?
    {
        return Ok(hits);
    }
    exact(conn, query)
}

/// The exact scan. Without a metadata filter it reads only ids and embeddings, then the
/// winners' rows.
fn exact(conn: &Connection, query: &SearchQuery) -> Result<Vec<Scored>> {
    let q = query.vector.as_deref().unwrap_or_default();
    let mut args: Vec<Box<dyn ToSql + Send>> = Vec::new();
    if query.filter.is_some() {
        let mut sql = format!(
            "SELECT {} FROM memories m WHERE m.embedding IS NOT NULL",
            super::COLUMNS
        );
        scope_sql(&query.scope, &mut sql, &mut args);
        let mut top = TopK::new(query.top_k);
        each_record(conn, &sql, &args, |record, _| {
            if passes(query.filter.as_ref(), &record)
                && let Some(e) = &record.embedding
            {
                top.push(cosine(q, &record, e)?, record);
            }
            Ok(true)
        })?;
        return Ok(top
            .into_sorted()
            .into_iter()
            .map(|(score, record)| Scored { record, score })
            .collect());
    }
    let mut sql =
        String::from("SELECT m.id, m.embedding FROM memories m WHERE m.embedding IS NOT NULL");
    scope_sql(&query.scope, &mut sql, &mut args);
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(|e| engine("preparing a query", e))?;
    let params: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref() as &dyn ToSql).collect();
    let mut rows = stmt
        .query(params.as_slice())
        .map_err(|e| engine("running a query", e))?;
    let q_norm = dot(q, q).sqrt();
    let mut buf = Vec::with_capacity(q.len());
    let mut top = TopK::new(query.top_k);
    while let Some(row) = rows.next().map_err(|e| engine("reading a row", e))? {
        let key: i64 = row.get(0).map_err(|e| engine("reading a row", e))?;
        let blob = row
            .get_ref(1)
            .and_then(|v| v.as_blob().map_err(Into::into))
            .map_err(|e| engine("reading a row", e))?;
        if blob.len() != q.len() * 4 {
            return Err(if blob.len().is_multiple_of(4) {
                MemoryError::InvalidInput(format!(
                    "the query vector has {} dimensions, record {key}'s embedding {}: \
                     embeddings from different models cannot be compared",
                    q.len(),
                    blob.len() / 4
                ))
            } else {
                MemoryError::Backend {
                    store: "sqlite",
                    message: format!(
                        "record {key}: the embedding blob has {} bytes, not a multiple of 4",
                        blob.len()
                    ),
                    source: None,
                }
            });
        }
        buf.clear();
        buf.extend(
            blob.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        let norm = dot(&buf, &buf).sqrt();
        let score = if norm == 0.0 || q_norm == 0.0 {
            0.0
        } else {
            dot(&buf, q) / (norm * q_norm)
        };
        top.push(score, key);
    }
    let mut out = Vec::new();
    for (score, key) in top.into_sorted() {
        if let Some(record) = get_row(conn, key)? {
            out.push(Scored { record, score });
        }
    }
    Ok(out)
}
