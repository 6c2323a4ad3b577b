//! Vector search in the SQLite store: an exact scan over the scope's embeddings, and an
//! in-memory HNSW index that answers once the store is large enough for it to pay.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, mpsc};

use rusqlite::{Connection, OpenFlags, ToSql};

use super::{each_record, engine, filter_sql, get_row, scope_sql};
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
    /// The first vector search that finds the store that large starts building the index on
    /// a thread of its own, from its own connection to the file; searches scan exactly until
    /// it is ready ([`SqliteStore::build_vector_index`](super::SqliteStore::build_vector_index)
    /// builds it at once instead). It then follows this store's own writes, including those
    /// made while it was built. A write by another connection to the same file (another
    /// process) is noticed on the next search, which starts a new build. A query
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
    /// embeddings takes about 40 ms on one busy core, the index about half a millisecond
    /// (the book's Performance chapter has the figures).
    fn default() -> Self {
        VectorSearch::Approximate {
            params: HnswParams::default(),
            min_records: 20_000,
        }
    }
}

/// A built index, and the scopes it filters by.
#[derive(Debug)]
struct Built {
    index: Hnsw,
    /// Interned user, agent and session of each indexed key (0 for none).
    scopes: HashMap<i64, [u32; 3]>,
    names: [HashMap<String, u32>; 3],
    counts: [HashMap<u32, usize>; 3],
}

/// A write to follow: the key's scope and embedding now, or `None` when it has none.
type Write = (i64, Option<(Scope, Vec<f32>)>);

#[derive(Debug, Default)]
enum State {
    #[default]
    Unbuilt,
    /// Being built on another thread, from its own connection to the file; searches scan
    /// meanwhile, and this store's writes wait in `pending`.
    Building {
        from_version: i64,
        pending: Vec<Write>,
        done: mpsc::Receiver<Result<Option<Built>>>,
    },
    Built(Box<Built>),
    /// Embeddings of several lengths (or a damaged one): only the scan can answer.
    Mixed,
}

/// The vector index of one store handle.
#[derive(Debug, Default)]
pub(super) struct Ann {
    state: State,
    /// `PRAGMA data_version` when the index was last in step with the file: it changes when
    /// another connection commits.
    version: i64,
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

impl Built {
    /// Every embedding in the file; `None` when their lengths differ or one is damaged.
    fn from_file(conn: &Connection, params: HnswParams) -> Result<Option<Built>> {
        let mut stmt = conn
            .prepare(
                "SELECT id, user_id, agent_id, session_id, embedding FROM memories \
                 WHERE embedding IS NOT NULL ORDER BY id",
            )
            .map_err(|e| engine("preparing the index build", e))?;
        let mut rows = stmt
            .query([])
            .map_err(|e| engine("reading embeddings for the index", e))?;
        let mut built: Option<Built> = None;
        while let Some(row) = rows.next().map_err(|e| engine("reading a row", e))? {
            let read = |e| engine("reading a row", e);
            let key: i64 = row.get(0).map_err(read)?;
            let scope = Scope {
                user: row.get(1).map_err(read)?,
                agent: row.get(2).map_err(read)?,
                session: row.get(3).map_err(read)?,
            };
            let blob = row
                .get_ref(4)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(read)?;
            let Some(embedding) = decode(blob) else {
                return Ok(None);
            };
            let built = built.get_or_insert_with(|| Built {
                index: Hnsw::new(embedding.len(), params),
                scopes: HashMap::new(),
                names: Default::default(),
                counts: Default::default(),
            });
            if !built.apply(key, Some((&scope, &embedding))) {
                return Ok(None);
            }
        }
        Ok(built)
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

    /// Follows one write; false when the embedding's length is not the index's.
    fn apply(&mut self, key: i64, now: Option<(&Scope, &[f32])>) -> bool {
        self.forget(key);
        match now {
            Some((scope, embedding)) => {
                if embedding.len() != self.index.dims() {
                    return false;
                }
                self.index.insert(key, embedding);
                let ids = self.intern(scope);
                self.scopes.insert(key, ids);
            }
            None => {
                self.index.remove(key);
            }
        }
        true
    }

    /// Answers `query`, or `None` when the exact scan should.
    fn search(
        &self,
        conn: &Connection,
        params: HnswParams,
        min_records: usize,
        query: &SearchQuery,
    ) -> Result<Option<Vec<Scored>>> {
        let index = &self.index;
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
        let hits = index.search(q, k, ef, |key| {
            self.scopes.get(&key).is_some_and(|ids| {
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

impl Ann {
    fn reset(&mut self) {
        *self = Ann::default();
    }

    /// Follows this store's own committed write to `key` (`None`: deleted, or no longer
    /// embedded).
    pub(super) fn wrote(&mut self, key: i64, now: Option<&MemoryRecord>) {
        let now = now.and_then(|r| r.embedding.as_deref().map(|e| (&r.scope, e)));
        match &mut self.state {
            State::Unbuilt => {}
            State::Mixed => self.reset(),
            State::Building { pending, .. } => {
                pending.push((key, now.map(|(s, e)| (s.clone(), e.to_vec()))));
            }
            State::Built(built) => {
                if !built.apply(key, now) {
                    self.state = State::Mixed;
                } else if built.index.dead() > built.index.live() {
                    // Mostly tombstones: searches route through dead nodes, so start again.
                    self.reset();
                }
            }
        }
    }

    /// How many embeddings the index answers for, once built.
    pub(super) fn len(&self) -> Option<usize> {
        match &self.state {
            State::Built(built) => Some(built.index.live()),
            _ => None,
        }
    }

    /// Forgets everything: after a write this store cannot follow key by key (`clear`).
    pub(super) fn invalidate(&mut self) {
        self.reset();
    }

    /// Builds the index now, on this connection; returns how many embeddings it holds.
    pub(super) fn build(&mut self, conn: &Connection, params: HnswParams) -> Result<usize> {
        self.reset();
        self.version = data_version(conn)?;
        match Built::from_file(conn, params)? {
            Some(built) => {
                let n = built.index.live();
                self.state = State::Built(Box::new(built));
                Ok(n)
            }
            None => {
                self.state = State::Mixed;
                Ok(0)
            }
        }
    }

    /// Starts building on another thread (a file's store), or builds now (an in-memory one,
    /// which no other connection can read).
    fn start(&mut self, conn: &Connection, path: Option<&Path>, params: HnswParams) -> Result<()> {
        let Some(path) = path else {
            self.build(conn, params)?;
            return Ok(());
        };
        let from_version = data_version(conn)?;
        let (tx, done) = mpsc::channel();
        let path = path.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("any-memory-index".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let built = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map_err(|e| engine("opening the file to index it", e))
                    .and_then(|c| Built::from_file(&c, params));
                if let Ok(Some(b)) = &built {
                    tracing::info!(records = b.index.live(), took = ?started.elapsed(), "built the vector index");
                }
                let _ = tx.send(built);
            });
        match spawned {
            Ok(_) => {
                self.state = State::Building {
                    from_version,
                    pending: Vec::new(),
                    done,
                };
                Ok(())
            }
            // No thread to be had: build here rather than never.
            Err(_) => self.build(conn, params).map(drop),
        }
    }

    /// Answers `query` from the index, or `None` when the exact scan should.
    fn search(
        &mut self,
        conn: &Connection,
        path: Option<&Path>,
        params: HnswParams,
        min_records: usize,
        query: &SearchQuery,
    ) -> Result<Option<Vec<Scored>>> {
        let version = data_version(conn)?;
        if let State::Building {
            from_version,
            pending,
            done,
        } = &mut self.state
        {
            if *from_version != version {
                // Another connection wrote while the build read: start again.
                self.reset();
            } else {
                match done.try_recv() {
                    Err(mpsc::TryRecvError::Empty) => return Ok(None),
                    Ok(Ok(Some(mut built))) => {
                        let mixed = std::mem::take(pending)
                            .into_iter()
                            .any(|(k, w)| !built.apply(k, w.as_ref().map(|(s, e)| (s, &e[..]))));
                        self.version = version;
                        self.state = if mixed {
                            State::Mixed
                        } else {
                            State::Built(Box::new(built))
                        };
                    }
                    Ok(Ok(None)) => {
                        self.version = version;
                        self.state = State::Mixed;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "building the vector index failed; scanning");
                        self.reset();
                        self.version = version;
                        self.state = State::Mixed;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => self.reset(),
                }
            }
        } else if version != self.version {
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
                self.version = version;
                return Ok(None);
            }
            self.start(conn, path, params)?;
        }
        match &self.state {
            State::Built(built) => built.search(conn, params, min_records, query),
            _ => Ok(None),
        }
    }
}

/// Vector search as `how` says.
pub(super) fn search(
    conn: &Connection,
    path: Option<&Path>,
    ann: &Mutex<Ann>,
    how: VectorSearch,
    query: &SearchQuery,
) -> Result<Vec<Scored>> {
    if let VectorSearch::Approximate {
        params,
        min_records,
    } = how
        && let Some(hits) = lock(ann).search(conn, path, params, min_records, query)?
    {
        return Ok(hits);
    }
    exact(conn, query)
}

/// The exact scan. When SQL can say all of the filter (or there is none) it reads only ids
/// and embeddings, then the winners' rows.
fn exact(conn: &Connection, query: &SearchQuery) -> Result<Vec<Scored>> {
    let q = query.vector.as_deref().unwrap_or_default();
    let mut args: Vec<Box<dyn ToSql + Send>> = Vec::new();
    let mut pushed = String::new();
    if !filter_sql(query.filter.as_ref(), &mut pushed, &mut args) {
        let mut sql = format!(
            "SELECT {} FROM memories m WHERE m.embedding IS NOT NULL{pushed}",
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
        format!("SELECT m.id, m.embedding FROM memories m WHERE m.embedding IS NOT NULL{pushed}");
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
