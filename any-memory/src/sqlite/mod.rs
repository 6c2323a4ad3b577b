//! [`SqliteStore`]: one SQLite file, the embedded default (feature `sqlite`).

mod vector;

pub use vector::VectorSearch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use serde_json::{Map, Value};

use crate::filter::passes;
use crate::in_memory::recent;
use crate::pushdown::{Arg, Dialect, append};
use crate::record::{now_millis, role_from_str};
use crate::search::{finish, fuse_rrf, hybrid_candidates, words};
use crate::{
    BoxFuture, Filter, ListQuery, MemoryError, MemoryId, MemoryRecord, MemoryStore, MemoryUpdate,
    NewMemory, Result, Retrieval, Scope, Scored, SearchQuery,
};

/// The schema, version by version: `PRAGMA user_version` says how many have been applied.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE memories (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT,
    agent_id    TEXT,
    session_id  TEXT,
    role        TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    embedding   BLOB
);
CREATE INDEX memories_session ON memories (session_id, created_at);
CREATE INDEX memories_user ON memories (user_id, created_at);
CREATE INDEX memories_agent ON memories (agent_id, created_at);
CREATE VIRTUAL TABLE memories_fts USING fts5 (
    text, content = 'memories', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE OF text ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO memories_fts (rowid, text) VALUES (new.id, new.text);
END;
"#];

const COLUMNS: &str = "m.id, m.user_id, m.agent_id, m.session_id, m.role, m.text, m.metadata, \
                       m.created_at, m.updated_at, m.embedding";

/// A store in one SQLite file: the embedded default.
///
/// - **Durable:** write-ahead logging with `synchronous = FULL`; `add_many` is one
///   transaction. A process killed mid-write loses no committed record and leaves the file
///   consistent (the tests kill a writer mid-batch and check).
/// - **Keyword search:** an FTS5 index kept beside the rows by triggers (Porter stemming,
///   Unicode folding), ranked by BM25; the query's words are OR-ed, so a record sharing any
///   word is a candidate.
/// - **Vector search:** embeddings stored as little-endian `f32` blobs in the row. Small
///   stores are scanned exactly (cosine over the scope's embeddings); from 20,000 embeddings
///   on, an HNSW index kept in memory answers ([`VectorSearch`] says when and how; the index
///   is rebuilt from the file, never stored in it).
/// - **Concurrency:** one connection behind a mutex; calls run on tokio's blocking pool. Other
///   processes may open the same file (a 5 s busy timeout waits for their writes).
///
/// Metadata filters are written into the SQL as far as SQLite can say them (so the engine
/// leaves out what they refuse), and every row read is checked in Rust as well, exactly as
/// [`Filter::matches`](crate::Filter::matches) defines them.
///
/// ```
/// use any_core::Role;
/// use any_memory::{MemoryStore, NewMemory, Scope, SearchQuery, SqliteStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_memory::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("memory.db"))?;
/// store.add(NewMemory::new(Scope::user("ada"), Role::User, "I'm learning the cello")).await?;
/// let hits = store.search(SearchQuery::text(Scope::user("ada"), "which instrument? cellos")).await?;
/// assert_eq!(hits[0].record.text, "I'm learning the cello");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
    vectors: VectorSearch,
    ann: Arc<Mutex<vector::Ann>>,
}

fn engine(what: &str, e: rusqlite::Error) -> MemoryError {
    MemoryError::backend("sqlite", format!("{what}: {e}"), e)
}

impl SqliteStore {
    /// Opens (or creates) the store in the file at `path`, applying migrations.
    ///
    /// # Errors
    /// [`MemoryError::Backend`] naming the file when it cannot be opened, is not a SQLite
    /// database, or was written by a newer version of this crate.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let conn = Connection::open(path)
            .map_err(|e| engine(&format!("opening {}", path.display()), e))?;
        Self::setup(conn, Some(path.to_path_buf()))
    }

    /// A store in memory, gone when the last clone is dropped (for tests).
    ///
    /// # Errors
    /// [`MemoryError::Backend`] if SQLite cannot start.
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|e| engine("opening in memory", e))?;
        Self::setup(conn, None)
    }

    /// The file, for a store opened with [`SqliteStore::open`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn setup(mut conn: Connection, path: Option<PathBuf>) -> Result<Self> {
        let name = path
            .as_ref()
            .map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
        let at = |what: &str| format!("{what} of {name}");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| engine(&at("setting the busy timeout"), e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| engine(&at("enabling WAL"), e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| engine(&at("setting synchronous = FULL"), e))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| engine(&at("reading the schema version"), e))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(MemoryError::Backend {
                store: "sqlite",
                message: format!(
                    "{name} has schema version {version}; this version of any-memory knows up \
                     to {known}: upgrade any-memory"
                ),
                source: None,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn
                .transaction()
                .map_err(|e| engine(&at("starting a migration"), e))?;
            tx.execute_batch(sql)
                .and_then(|()| tx.pragma_update(None, "user_version", i as i64 + 1))
                .and_then(|()| tx.commit())
                .map_err(|e| engine(&at(&format!("applying migration {}", i + 1)), e))?;
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
            vectors: VectorSearch::default(),
            ann: Arc::default(),
        })
    }

    /// Sets how vector searches are answered (by default, [`VectorSearch::default`]: an
    /// HNSW index from 20,000 embeddings on).
    #[must_use]
    pub fn with_vector_search(mut self, how: VectorSearch) -> Self {
        self.vectors = how;
        self.ann = Arc::default();
        self
    }

    /// How many embeddings the vector index answers for: `Some` once it is built and in
    /// step with the file (a search picks up a build that finished in the background),
    /// `None` while searches scan exactly.
    pub fn vector_index_len(&self) -> Option<usize> {
        vector::lock(&self.ann).len()
    }

    /// Builds the vector index now, whatever the store's size, and waits for it (about
    /// 100 s for 100,000 384-dimension embeddings on one busy core), rather than in the
    /// background after the first search that needs it. Returns how many embeddings it holds; 0 with
    /// [`VectorSearch::Exact`], or when the file holds embeddings of several lengths (which
    /// only the exact scan searches).
    ///
    /// # Errors
    /// [`MemoryError::Backend`] when the rows cannot be read.
    pub async fn build_vector_index(&self) -> Result<usize> {
        let VectorSearch::Approximate { params, .. } = self.vectors else {
            return Ok(0);
        };
        let ann = Arc::clone(&self.ann);
        self.with(move |conn| vector::lock(&ann).build(conn, params))
            .await
    }

    /// Checks the file: SQLite's `PRAGMA integrity_check` on the tables and indexes, and
    /// FTS5's own check that the full-text index matches the rows.
    ///
    /// # Errors
    /// [`MemoryError::Backend`] quoting what SQLite found wrong.
    pub async fn integrity_check(&self) -> Result<()> {
        self.with(|conn| {
            let report: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(|e| engine("running the integrity check", e))?;
            if report != "ok" {
                return Err(MemoryError::Backend {
                    store: "sqlite",
                    message: format!("the integrity check failed: {report}"),
                    source: None,
                });
            }
            conn.execute(
                "INSERT INTO memories_fts (memories_fts) VALUES ('integrity-check')",
                [],
            )
            .map_err(|e| engine("checking the full-text index", e))?;
            Ok(())
        })
        .await
    }

    /// Runs `f` on the connection, on tokio's blocking pool when there is a runtime.
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let run = move || {
            // A panic inside `f` rolls back its open transaction when the statement handles
            // drop, so a poisoned lock still guards a consistent connection.
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(run)
                .await
                .map_err(|e| MemoryError::Backend {
                    store: "sqlite",
                    message: format!("the blocking task failed: {e}"),
                    source: None,
                })?,
            Err(_) => run(),
        }
    }
}

/// `AND`-ed conditions selecting a scope, with their parameters.
fn scope_sql(scope: &Scope, out: &mut String, args: &mut Vec<Box<dyn ToSql + Send>>) {
    for (column, value) in scope.sql_conditions() {
        args.push(Box::new(value.clone()));
        out.push_str(&format!(" AND {column} = ?{}", args.len()));
    }
}

/// The filter, as far as SQL can say it, `AND`-ed onto `out` (see [`crate::pushdown`]);
/// whether the SQL says all of it (true without a filter).
fn filter_sql(
    filter: Option<&Filter>,
    out: &mut String,
    args: &mut Vec<Box<dyn ToSql + Send>>,
) -> bool {
    let bound = args.len();
    append(filter, Dialect::Sqlite, bound, out, |arg| {
        args.push(match arg {
            Arg::Text(s) => Box::new(s),
            Arg::Real(x) => Box::new(x),
            Arg::Int(n) => Box::new(n),
        })
    })
}

fn blob(e: &[f32]) -> Vec<u8> {
    e.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A row's columns, in `COLUMNS` order, before decoding.
fn read_row(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        row.get(0)?,
        [row.get(1)?, row.get(2)?, row.get(3)?],
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ))
}

type RawRow = (
    i64,
    [Option<String>; 3],
    String,
    String,
    String,
    i64,
    i64,
    Option<Vec<u8>>,
);

fn to_record(raw: RawRow) -> Result<MemoryRecord> {
    let (id, [user, agent, session], role, text, metadata, created_at, updated_at, emb) = raw;
    let corrupt = |what: String| MemoryError::Backend {
        store: "sqlite",
        message: format!("record {id}: {what}"),
        source: None,
    };
    let metadata: Map<String, Value> = serde_json::from_str(&metadata)
        .map_err(|e| corrupt(format!("metadata is not a JSON object: {e}")))?;
    let embedding = match emb {
        None => None,
        Some(b) if b.len() % 4 == 0 => Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Some(b) => {
            return Err(corrupt(format!(
                "the embedding blob has {} bytes, not a multiple of 4",
                b.len()
            )));
        }
    };
    Ok(MemoryRecord {
        id: MemoryId(id.to_string()),
        scope: Scope {
            user,
            agent,
            session,
        },
        role: role_from_str(&role).map_err(|e| corrupt(e.to_string()))?,
        text,
        metadata,
        created_at,
        updated_at,
        embedding,
    })
}

/// Runs `sql` and hands each decoded record to `visit` until it says stop.
fn each_record(
    conn: &Connection,
    sql: &str,
    args: &[Box<dyn ToSql + Send>],
    mut visit: impl FnMut(MemoryRecord, Option<f64>) -> Result<bool>,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(|e| engine("preparing a query", e))?;
    let params: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref() as &dyn ToSql).collect();
    let mut rows = stmt
        .query(params.as_slice())
        .map_err(|e| engine("running a query", e))?;
    while let Some(row) = rows.next().map_err(|e| engine("reading a row", e))? {
        let raw = read_row(row).map_err(|e| engine("reading a row", e))?;
        let extra: Option<f64> = row.get(10).ok();
        if !visit(to_record(raw)?, extra)? {
            break;
        }
    }
    Ok(())
}

fn get_row(conn: &Connection, id: i64) -> Result<Option<MemoryRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM memories m WHERE m.id = ?1");
    let raw = conn
        .query_row(&sql, [id], read_row)
        .optional()
        .map_err(|e| engine("reading a record", e))?;
    raw.map(to_record).transpose()
}

fn keyword(conn: &Connection, query: &SearchQuery) -> Result<Vec<Scored>> {
    // Every word quoted, OR-ed: FTS5 syntax in the user's text is never interpreted.
    let terms: Vec<String> = words(query.text.as_deref().unwrap_or(""))
        .map(|w| format!("\"{w}\""))
        .collect();
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let mut args: Vec<Box<dyn ToSql + Send>> = vec![Box::new(terms.join(" OR "))];
    let mut sql = format!(
        "SELECT {COLUMNS}, bm25(memories_fts) AS rank FROM memories_fts \
         JOIN memories m ON m.id = memories_fts.rowid WHERE memories_fts MATCH ?1"
    );
    scope_sql(&query.scope, &mut sql, &mut args);
    filter_sql(query.filter.as_ref(), &mut sql, &mut args);
    sql.push_str(" ORDER BY rank, m.id");
    let mut hits = Vec::new();
    each_record(conn, &sql, &args, |record, rank| {
        if passes(query.filter.as_ref(), &record) {
            // FTS5's bm25() is negated so that better is lower; flip it back.
            hits.push(Scored {
                record,
                score: -(rank.unwrap_or(0.0) as f32),
            });
        }
        Ok(hits.len() < query.top_k)
    })?;
    Ok(hits)
}

fn parse_id(id: &MemoryId) -> Option<i64> {
    id.0.parse().ok()
}

impl MemoryStore for SqliteStore {
    fn add_many(&self, memories: Vec<NewMemory>) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
        Box::pin(async move {
            for m in &memories {
                m.validate()?;
            }
            let ann = Arc::clone(&self.ann);
            self.with(move |conn| {
                let now = now_millis();
                let tx = conn
                    .transaction()
                    .map_err(|e| engine("starting a transaction", e))?;
                let mut added = Vec::with_capacity(memories.len());
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT INTO memories (user_id, agent_id, session_id, role, text, \
                             metadata, created_at, updated_at, embedding) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                        )
                        .map_err(|e| engine("preparing an insert", e))?;
                    for m in memories {
                        let created = m.created_at.unwrap_or(now);
                        let metadata = Value::Object(m.metadata.clone()).to_string();
                        stmt.execute(params![
                            m.scope.user,
                            m.scope.agent,
                            m.scope.session,
                            m.role.as_str(),
                            m.text,
                            metadata,
                            created,
                            m.embedding.as_deref().map(blob),
                        ])
                        .map_err(|e| engine("inserting a record", e))?;
                        let id = MemoryId(tx.last_insert_rowid().to_string());
                        added.push(m.into_record(id, now));
                    }
                }
                tx.commit().map_err(|e| engine("committing records", e))?;
                let mut ann = vector::lock(&ann);
                for record in &added {
                    if let Some(key) = parse_id(&record.id) {
                        ann.wrote(key, Some(record));
                    }
                }
                Ok(added)
            })
            .await
        })
    }

    fn get<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<Option<MemoryRecord>>> {
        Box::pin(async move {
            let Some(id) = parse_id(id) else {
                return Ok(None);
            };
            self.with(move |conn| get_row(conn, id)).await
        })
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
        Box::pin(async move {
            self.with(move |conn| {
                let mut args = Vec::new();
                let mut sql = format!("SELECT {COLUMNS} FROM memories m WHERE 1 = 1");
                scope_sql(&query.scope, &mut sql, &mut args);
                filter_sql(query.filter.as_ref(), &mut sql, &mut args);
                sql.push_str(if query.newest_first {
                    " ORDER BY m.created_at DESC, m.id DESC"
                } else {
                    " ORDER BY m.created_at, m.id"
                });
                let limit = query.limit.unwrap_or(usize::MAX);
                let mut out = Vec::new();
                if limit > 0 {
                    each_record(conn, &sql, &args, |record, _| {
                        if passes(query.filter.as_ref(), &record) {
                            out.push(record);
                        }
                        Ok(out.len() < limit)
                    })?;
                }
                Ok(out)
            })
            .await
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a MemoryId,
        update: MemoryUpdate,
    ) -> BoxFuture<'a, Result<MemoryRecord>> {
        Box::pin(async move {
            let missing = || MemoryError::NotFound(id.0.clone());
            let rowid = parse_id(id).ok_or_else(missing)?;
            let ann = Arc::clone(&self.ann);
            let changed = self
                .with(move |conn| {
                    let tx = conn
                        .transaction()
                        .map_err(|e| engine("starting a transaction", e))?;
                    let Some(mut record) = get_row(&tx, rowid)? else {
                        return Ok(None);
                    };
                    update.apply(&mut record, now_millis())?;
                    tx.execute(
                        "UPDATE memories SET text = ?1, metadata = ?2, updated_at = ?3, \
                         embedding = ?4 WHERE id = ?5",
                        params![
                            record.text,
                            Value::Object(record.metadata.clone()).to_string(),
                            record.updated_at,
                            record.embedding.as_deref().map(blob),
                            rowid
                        ],
                    )
                    .map_err(|e| engine("updating a record", e))?;
                    tx.commit().map_err(|e| engine("committing an update", e))?;
                    vector::lock(&ann).wrote(rowid, Some(&record));
                    Ok(Some(record))
                })
                .await?;
            changed.ok_or_else(missing)
        })
    }

    fn delete<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some(rowid) = parse_id(id) else {
                return Ok(false);
            };
            let ann = Arc::clone(&self.ann);
            self.with(move |conn| {
                let deleted = conn
                    .execute("DELETE FROM memories WHERE id = ?1", [rowid])
                    .map(|n| n > 0)
                    .map_err(|e| engine("deleting a record", e))?;
                vector::lock(&ann).wrote(rowid, None);
                Ok(deleted)
            })
            .await
        })
    }

    fn clear<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            scope.require_some("clear")?;
            let scope = scope.clone();
            let ann = Arc::clone(&self.ann);
            self.with(move |conn| {
                let mut args = Vec::new();
                let mut sql = String::from("DELETE FROM memories AS m WHERE 1 = 1");
                scope_sql(&scope, &mut sql, &mut args);
                let params: Vec<&dyn ToSql> =
                    args.iter().map(|a| a.as_ref() as &dyn ToSql).collect();
                let n = conn
                    .execute(&sql, params.as_slice())
                    .map(|n| n as u64)
                    .map_err(|e| engine("clearing a scope", e))?;
                vector::lock(&ann).invalidate();
                Ok(n)
            })
            .await
        })
    }

    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Vec<Scored>>> {
        Box::pin(async move {
            query.validate()?;
            let hits = match query.mode {
                Retrieval::Recent => recent(self, &query).await?,
                Retrieval::Keyword => {
                    let q = query.clone();
                    self.with(move |conn| keyword(conn, &q)).await?
                }
                Retrieval::Vector => {
                    let q = query.clone();
                    let (ann, how, path) = (Arc::clone(&self.ann), self.vectors, self.path.clone());
                    self.with(move |conn| vector::search(conn, path.as_deref(), &ann, how, &q))
                        .await?
                }
                Retrieval::Hybrid => {
                    let wide = hybrid_candidates(&query);
                    let (ann, how, path) = (Arc::clone(&self.ann), self.vectors, self.path.clone());
                    self.with(move |conn| {
                        let vector = vector::search(conn, path.as_deref(), &ann, how, &wide)?;
                        Ok(fuse_rrf(&[keyword(conn, &wide)?, vector]))
                    })
                    .await?
                }
            };
            Ok(finish(hits, &query))
        })
    }
}
