//! [`PostgresStore`]: the store many app instances share (feature `postgres`).

use std::str::FromStr;
use std::sync::{Arc, RwLock};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::filter::passes;
use crate::in_memory::recent;
use crate::pushdown::{Arg, Dialect, append};
use crate::record::{now_millis, role_from_str};
use crate::search::{TopK, cosine, finish, fuse_rrf, hybrid_candidates, words};
use crate::{
    BoxFuture, Filter, HnswParams, ListQuery, MemoryError, MemoryId, MemoryRecord, MemoryStore,
    MemoryUpdate, NewMemory, Result, Retrieval, Scope, Scored, SearchQuery,
};

/// The schema, version by version; `any_memory_schema.version` says how many are applied.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE any_memory_records (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     TEXT,
    agent_id    TEXT,
    session_id  TEXT,
    role        TEXT   NOT NULL,
    text        TEXT   NOT NULL,
    metadata    JSONB  NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    embedding   REAL[],
    text_tsv    TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX any_memory_records_session ON any_memory_records (session_id, created_at);
CREATE INDEX any_memory_records_user ON any_memory_records (user_id, created_at);
CREATE INDEX any_memory_records_agent ON any_memory_records (agent_id, created_at);
CREATE INDEX any_memory_records_tsv ON any_memory_records USING GIN (text_tsv);
"#];

const COLUMNS: &str = "m.id, m.user_id, m.agent_id, m.session_id, m.role, m.text, m.metadata, \
                       m.created_at, m.updated_at, m.embedding";

/// How [`PostgresStore::connect_with`] connects.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The most connections the pool opens (default 16).
    pub pool_size: usize,
    /// Use pgvector for vector search when the extension is installed (default `true`); the
    /// store tries `CREATE EXTENSION IF NOT EXISTS vector` on open. `false` forces the
    /// fallback: an exact cosine scan in the client.
    pub pgvector: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            pgvector: true,
        }
    }
}

/// A store in a PostgreSQL database, shared by every app instance that connects to it.
///
/// - **Open:** a connection pool (deadpool); migrations applied on open under an advisory
///   lock, so instances starting together do not race. Tables are prefixed `any_memory_`.
/// - **Keyword search:** a generated `tsvector` column (the `english` configuration: stemming
///   and stop words) with a GIN index, ranked by `ts_rank`; the query's words are OR-ed.
/// - **Vector search:** embeddings are `real[]`. With the pgvector extension, the database
///   ranks by cosine distance (`<=>`); without it (or with [`PostgresOptions::pgvector`]
///   off), the store scans the scope's embeddings in the client: exact and correct, slower.
/// - **Writes:** `add_many` is one transaction.
///
/// Connections are unencrypted (`NoTls`): use it on a private network or a local socket.
/// Metadata filters are written into the SQL as far as PostgreSQL can say them (so the engine
/// leaves out what they refuse), and every row read is checked in Rust as well, exactly as
/// [`Filter::matches`](crate::Filter::matches) defines them.
///
/// ```no_run
/// use any_memory::{MemoryStore, PostgresStore, Scope, SearchQuery};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_memory::Result<()> {
/// let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
/// let hits = store.search(SearchQuery::text(Scope::user("ada"), "allergies")).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    pgvector: bool,
    /// pgvector 0.8 or later: HNSW scans continue past `ef_search` when a scope filters
    /// out candidates.
    iterative: bool,
    /// Embedding lengths with an HNSW index, as found on open or made by this store.
    indexed: Arc<RwLock<Vec<usize>>>,
    ef_search: usize,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .field("pgvector", &self.pgvector)
            .field("indexed", &self.indexed)
            .finish()
    }
}

fn engine(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> MemoryError {
    MemoryError::backend("postgres", format!("{what}: {e}"), e)
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) with the
    /// default options, applying migrations.
    ///
    /// # Errors
    /// [`MemoryError::InvalidInput`] for a malformed URL; [`MemoryError::Backend`] when the
    /// server cannot be reached or the migrations fail.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with `options`.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            MemoryError::InvalidInput(format!("`{url}` is not a PostgreSQL URL: {e}"))
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| engine("building the connection pool", e))?;
        let mut store = PostgresStore {
            pool,
            pgvector: false,
            iterative: false,
            indexed: Arc::default(),
            ef_search: HnswParams::default().ef_search,
        };
        store.pgvector = store.migrate(options.pgvector).await?;
        if store.pgvector {
            store.find_vector_indexes().await?;
        }
        Ok(store)
    }

    /// Reads which HNSW indexes exist, and the pgvector version.
    async fn find_vector_indexes(&mut self) -> Result<()> {
        let conn = self.conn().await?;
        let version: String = conn
            .query_one(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
                &[],
            )
            .await
            .map_err(|e| engine("reading the pgvector version", e))?
            .get(0);
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        self.iterative = (major, minor) >= (0, 8);
        let rows = conn
            .query(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'any_memory_records' \
                 AND indexname LIKE 'any_memory_records_hnsw_%'",
                &[],
            )
            .await
            .map_err(|e| engine("listing vector indexes", e))?;
        let dims = rows
            .iter()
            .filter_map(|r| {
                r.get::<_, String>(0)
                    .strip_prefix("any_memory_records_hnsw_")?
                    .parse()
                    .ok()
            })
            .collect();
        *self.indexed.write().unwrap_or_else(|e| e.into_inner()) = dims;
        Ok(())
    }

    /// Creates pgvector's HNSW index for embeddings of `dims` dimensions (if it does not
    /// exist), with `params`' graph settings; vector searches of that length use it from
    /// then on, in this store and in any store connected afterwards. Searches run with
    /// `params.ef_search`.
    ///
    /// The index is built by the server, over every record at once; it is approximate:
    /// the book's Performance chapter has its recall against the exact search. Without an
    /// index (the default) vector search is exact. A scope that filters out most of the
    /// index's candidates is answered exactly; so is a metadata filter the index cannot
    /// fill.
    ///
    /// # Errors
    /// [`MemoryError::InvalidInput`] without pgvector, or for `dims` outside 1–2000 (the
    /// most pgvector indexes); [`MemoryError::Backend`] when the server fails to build it.
    pub async fn create_vector_index(&self, dims: usize, params: HnswParams) -> Result<()> {
        if !self.pgvector {
            return Err(MemoryError::InvalidInput(
                "a vector index needs the pgvector extension, which this database lacks".to_owned(),
            ));
        }
        if !(1..=2000).contains(&dims) {
            return Err(MemoryError::InvalidInput(format!(
                "pgvector indexes vectors of 1 to 2000 dimensions, not {dims}"
            )));
        }
        let (m, ef) = (
            params.m.clamp(2, 100),
            params.ef_construction.clamp(4, 1000),
        );
        let conn = self.conn().await?;
        conn.batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS any_memory_records_hnsw_{dims} ON any_memory_records \
             USING hnsw ((embedding::vector({dims})) vector_cosine_ops) \
             WITH (m = {m}, ef_construction = {ef}) WHERE cardinality(embedding) = {dims}"
        ))
        .await
        .map_err(|e| engine("creating the vector index", e))?;
        let mut indexed = self.indexed.write().unwrap_or_else(|e| e.into_inner());
        if !indexed.contains(&dims) {
            indexed.push(dims);
        }
        Ok(())
    }

    /// Sets the candidate list of index searches (pgvector's `hnsw.ef_search`, default 64).
    #[must_use]
    pub fn with_ef_search(mut self, ef_search: usize) -> Self {
        self.ef_search = ef_search.clamp(1, 1000);
        self
    }

    /// Whether vector search runs in the database on pgvector.
    pub fn uses_pgvector(&self) -> bool {
        self.pgvector
    }

    async fn conn(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| engine("getting a connection from the pool", e))
    }

    /// Applies migrations; returns whether pgvector is usable.
    async fn migrate(&self, want_pgvector: bool) -> Result<bool> {
        let mut conn = self.conn().await?;
        let mut tx = conn
            .transaction()
            .await
            .map_err(|e| engine("starting the migration", e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('any_memory_schema'))",
            &[],
        )
        .await
        .map_err(|e| engine("locking for migration", e))?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS any_memory_schema (version INT NOT NULL)")
            .await
            .map_err(|e| engine("creating any_memory_schema", e))?;
        let version: i32 = tx
            .query_opt("SELECT version FROM any_memory_schema", &[])
            .await
            .map_err(|e| engine("reading the schema version", e))?
            .map_or(0, |r| r.get(0));
        let known = MIGRATIONS.len() as i32;
        if version > known {
            return Err(MemoryError::Backend {
                store: "postgres",
                message: format!(
                    "the database has schema version {version}; this version of any-memory \
                     knows up to {known}: upgrade any-memory"
                ),
                source: None,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql)
                .await
                .map_err(|e| engine(&format!("applying migration {}", i + 1), e))?;
        }
        if version < known {
            tx.execute("DELETE FROM any_memory_schema", &[])
                .await
                .and(
                    tx.execute(
                        "INSERT INTO any_memory_schema (version) VALUES ($1)",
                        &[&known],
                    )
                    .await,
                )
                .map_err(|e| engine("recording the schema version", e))?;
        }
        let mut pgvector = false;
        if want_pgvector {
            // A savepoint: without the extension (or the right to create it) the error must
            // not abort the migration.
            let sp = tx
                .savepoint("pgvector")
                .await
                .map_err(|e| engine("starting a savepoint", e))?;
            match sp
                .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
                .await
            {
                Ok(()) => {
                    sp.commit()
                        .await
                        .map_err(|e| engine("creating the vector extension", e))?;
                    pgvector = true;
                }
                Err(e) => {
                    tracing::info!(
                        error = %e,
                        "pgvector is not available; vector search scans embeddings in the client"
                    );
                }
            }
        }
        tx.commit()
            .await
            .map_err(|e| engine("committing the migration", e))?;
        Ok(pgvector)
    }
}

/// `AND`-ed conditions selecting a scope; parameters are appended to `args`.
fn scope_sql(scope: &Scope, out: &mut String, args: &mut Vec<Box<dyn ToSql + Sync + Send>>) {
    for (column, value) in scope.sql_conditions() {
        args.push(Box::new(value.clone()));
        out.push_str(&format!(" AND {column} = ${}", args.len()));
    }
}

fn to_record(row: &Row) -> Result<MemoryRecord> {
    let get = |e: tokio_postgres::Error| engine("reading a row", e);
    let id: i64 = row.try_get(0).map_err(get)?;
    let metadata = match row.try_get::<_, Value>(6).map_err(get)? {
        Value::Object(m) => m,
        other => {
            return Err(MemoryError::Backend {
                store: "postgres",
                message: format!("record {id}: metadata is not a JSON object but {other}"),
                source: None,
            });
        }
    };
    let role: String = row.try_get(4).map_err(get)?;
    Ok(MemoryRecord {
        id: MemoryId(id.to_string()),
        scope: Scope {
            user: row.try_get(1).map_err(get)?,
            agent: row.try_get(2).map_err(get)?,
            session: row.try_get(3).map_err(get)?,
        },
        role: role_from_str(&role)?,
        text: row.try_get(5).map_err(get)?,
        metadata,
        created_at: row.try_get(7).map_err(get)?,
        updated_at: row.try_get(8).map_err(get)?,
        embedding: row.try_get(9).map_err(get)?,
    })
}

/// Rows fetched per round trip while `visit` reads them.
const PAGE: i32 = 256;

/// The rows of a scored query (the record's columns, then the score), as hits that pass the
/// query's filter, until `top_k` are found.
async fn scored_rows(
    conn: &mut Object,
    sql: &str,
    args: &[Box<dyn ToSql + Sync + Send>],
    query: &SearchQuery,
) -> Result<Vec<Scored>> {
    scored_rows_after(conn, "", sql, args, query).await
}

/// [`scored_rows`] after `setup`, as [`each_row_after`].
async fn scored_rows_after(
    conn: &mut Object,
    setup: &str,
    sql: &str,
    args: &[Box<dyn ToSql + Sync + Send>],
    query: &SearchQuery,
) -> Result<Vec<Scored>> {
    let mut hits = Vec::new();
    each_row_after(conn, setup, sql, args, |row| {
        let record = to_record(row)?;
        if passes(query.filter.as_ref(), &record) {
            let score: f64 = row.try_get(10).map_err(|e| engine("reading a score", e))?;
            hits.push(Scored {
                record,
                score: score as f32,
            });
        }
        Ok(hits.len() < query.top_k)
    })
    .await?;
    Ok(hits)
}

/// Runs `sql`, handing rows to `visit` until it says stop. Rows come through a portal a page
/// at a time, so stopping early leaves the rest on the server (a plain row stream dropped
/// half-read is drained to its end by the client).
async fn each_row(
    conn: &mut Object,
    sql: &str,
    args: &[Box<dyn ToSql + Sync + Send>],
    visit: impl FnMut(&Row) -> Result<bool>,
) -> Result<()> {
    each_row_after(conn, "", sql, args, visit).await
}

/// [`each_row`], with `setup` (`SET LOCAL` statements) run first in the same transaction.
async fn each_row_after(
    conn: &mut Object,
    setup: &str,
    sql: &str,
    args: &[Box<dyn ToSql + Sync + Send>],
    mut visit: impl FnMut(&Row) -> Result<bool>,
) -> Result<()> {
    let tx = conn
        .transaction()
        .await
        .map_err(|e| engine("starting a read", e))?;
    if !setup.is_empty() {
        tx.batch_execute(setup)
            .await
            .map_err(|e| engine("setting up a read", e))?;
    }
    let stmt = tx
        .prepare_cached(sql)
        .await
        .map_err(|e| engine("preparing a query", e))?;
    let params: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let portal = tx
        .bind(&stmt, &params)
        .await
        .map_err(|e| engine("running a query", e))?;
    loop {
        let rows = tx
            .query_portal(&portal, PAGE)
            .await
            .map_err(|e| engine("reading rows", e))?;
        for row in &rows {
            if !visit(row)? {
                return Ok(());
            }
        }
        if rows.len() < PAGE as usize {
            return Ok(());
        }
    }
}

/// The filter, as far as SQL can say it, `AND`-ed onto `out` (see [`crate::pushdown`]);
/// whether the SQL says all of it (true without a filter).
fn filter_sql(
    filter: Option<&Filter>,
    out: &mut String,
    args: &mut Vec<Box<dyn ToSql + Sync + Send>>,
) -> bool {
    let bound = args.len();
    append(filter, Dialect::Postgres, bound, out, |arg| {
        args.push(match arg {
            Arg::Text(s) => Box::new(s),
            Arg::Real(x) => Box::new(x),
            Arg::Int(n) => Box::new(n),
        })
    })
}

/// When SQL says the whole filter (or there is none), the first `n` rows are the answer: say
/// so to the server, whose planner can then pick a top-N plan instead of ordering every row.
fn push_limit(sql: &mut String, whole_filter_in_sql: bool, n: usize) {
    if whole_filter_in_sql && n < i64::MAX as usize {
        sql.push_str(&format!(" LIMIT {n}"));
    }
}

fn parse_id(id: &MemoryId) -> Option<i64> {
    id.0.parse().ok()
}

impl PostgresStore {
    async fn keyword(&self, query: &SearchQuery) -> Result<Vec<Scored>> {
        // Words only (letters and digits), OR-ed: tsquery syntax in the text is never read.
        let terms: Vec<String> = words(query.text.as_deref().unwrap_or("")).collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(terms.join(" | "))];
        let mut sql = format!(
            "SELECT {COLUMNS}, ts_rank(m.text_tsv, q)::float8 AS score \
             FROM any_memory_records m, to_tsquery('english', $1) q WHERE m.text_tsv @@ q"
        );
        scope_sql(&query.scope, &mut sql, &mut args);
        let exact = filter_sql(query.filter.as_ref(), &mut sql, &mut args);
        sql.push_str(" ORDER BY score DESC, m.id");
        push_limit(&mut sql, exact, query.top_k);
        let mut conn = self.conn().await?;
        scored_rows(&mut conn, &sql, &args, query).await
    }

    async fn vector(&self, query: &SearchQuery) -> Result<Vec<Scored>> {
        let q = query.vector.clone().unwrap_or_default();
        let mut conn = self.conn().await?;
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if !self.pgvector {
            let mut sql =
                format!("SELECT {COLUMNS} FROM any_memory_records m WHERE m.embedding IS NOT NULL");
            scope_sql(&query.scope, &mut sql, &mut args);
            filter_sql(query.filter.as_ref(), &mut sql, &mut args);
            let mut top = TopK::new(query.top_k);
            each_row(&mut conn, &sql, &args, |row| {
                let record = to_record(row)?;
                if passes(query.filter.as_ref(), &record)
                    && let Some(e) = &record.embedding
                {
                    top.push(cosine(&q, &record, e)?, record);
                }
                Ok(true)
            })
            .await?;
            return Ok(top
                .into_sorted()
                .into_iter()
                .map(|(score, record)| Scored { record, score })
                .collect());
        }
        let indexed = self
            .indexed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&q.len());
        if indexed && let Some(hits) = self.indexed_vector(&mut conn, query).await? {
            return Ok(hits);
        }
        // pgvector refuses vectors of different lengths with a bare error: find one first,
        // to say which record it is.
        args.push(Box::new(q.len() as i32));
        let mut sql = String::from(
            "SELECT m.id, cardinality(m.embedding) FROM any_memory_records m \
             WHERE m.embedding IS NOT NULL AND cardinality(m.embedding) <> $1",
        );
        scope_sql(&query.scope, &mut sql, &mut args);
        sql.push_str(" LIMIT 1");
        let mut odd = None;
        each_row(&mut conn, &sql, &args, |row| {
            odd = Some((row.get::<_, i64>(0), row.get::<_, i32>(1)));
            Ok(false)
        })
        .await?;
        if let Some((id, dims)) = odd {
            return Err(MemoryError::InvalidInput(format!(
                "the query vector has {} dimensions, record {id}'s embedding {dims}: embeddings \
                 from different models cannot be compared",
                q.len()
            )));
        }
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(q)];
        let mut sql = format!(
            "SELECT {COLUMNS}, 1 - (m.embedding::vector <=> $1::real[]::vector) AS score \
             FROM any_memory_records m WHERE m.embedding IS NOT NULL"
        );
        scope_sql(&query.scope, &mut sql, &mut args);
        let exact = filter_sql(query.filter.as_ref(), &mut sql, &mut args);
        sql.push_str(" ORDER BY m.embedding::vector <=> $1::real[]::vector, m.id");
        push_limit(&mut sql, exact, query.top_k);
        scored_rows(&mut conn, &sql, &args, query).await
    }
}

impl PostgresStore {
    /// A vector search through the HNSW index, or `None` when it cannot be sure of the
    /// answer (too few candidates survived the scope or the filter: the exact query then
    /// runs, and names any embedding of another length).
    async fn indexed_vector(
        &self,
        conn: &mut Object,
        query: &SearchQuery,
    ) -> Result<Option<Vec<Scored>>> {
        let q = query.vector.clone().unwrap_or_default();
        let d = q.len();
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(q)];
        // The inner query is what the index answers (ordered by distance alone, limited);
        // the outer one restores the exact order a relaxed iterative scan may not keep.
        let mut sql = format!(
            "SELECT * FROM (SELECT {COLUMNS}, \
             1 - (m.embedding::vector({d}) <=> $1::real[]::vector({d}))::float8 AS score \
             FROM any_memory_records m WHERE cardinality(m.embedding) = {d}"
        );
        scope_sql(&query.scope, &mut sql, &mut args);
        // A filter SQL says whole is applied during the scan; otherwise the index is asked for
        // more candidates than `top_k`, for the filter to choose from.
        let k = if filter_sql(query.filter.as_ref(), &mut sql, &mut args) {
            query.top_k
        } else {
            query.top_k.saturating_mul(4)
        };
        if k > 1000 {
            return Ok(None);
        }
        let mut setup = format!("SET LOCAL hnsw.ef_search = {};", self.ef_search.max(k));
        if self.iterative {
            setup.push_str(" SET LOCAL hnsw.iterative_scan = relaxed_order;");
        }
        sql.push_str(&format!(
            " ORDER BY m.embedding::vector({d}) <=> $1::real[]::vector({d}) LIMIT {k}) r \
             ORDER BY r.score DESC, r.id"
        ));
        let hits = scored_rows_after(conn, &setup, &sql, &args, query).await?;
        Ok((hits.len() == query.top_k).then_some(hits))
    }
}

impl MemoryStore for PostgresStore {
    fn add_many(&self, memories: Vec<NewMemory>) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
        Box::pin(async move {
            for m in &memories {
                m.validate()?;
            }
            let mut conn = self.conn().await?;
            let tx = conn
                .transaction()
                .await
                .map_err(|e| engine("starting a transaction", e))?;
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO any_memory_records (user_id, agent_id, session_id, role, text, \
                     metadata, created_at, updated_at, embedding) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) RETURNING id",
                )
                .await
                .map_err(|e| engine("preparing an insert", e))?;
            let now = now_millis();
            let mut added = Vec::with_capacity(memories.len());
            for m in memories {
                let created = m.created_at.unwrap_or(now);
                let metadata = Value::Object(m.metadata.clone());
                let row = tx
                    .query_one(
                        &stmt,
                        &[
                            &m.scope.user,
                            &m.scope.agent,
                            &m.scope.session,
                            &m.role.as_str(),
                            &m.text,
                            &metadata,
                            &created,
                            &m.embedding,
                        ],
                    )
                    .await
                    .map_err(|e| engine("inserting a record", e))?;
                let id: i64 = row.get(0);
                added.push(m.into_record(MemoryId(id.to_string()), now));
            }
            tx.commit()
                .await
                .map_err(|e| engine("committing records", e))?;
            Ok(added)
        })
    }

    fn get<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<Option<MemoryRecord>>> {
        Box::pin(async move {
            let Some(id) = parse_id(id) else {
                return Ok(None);
            };
            let conn = self.conn().await?;
            let sql = format!("SELECT {COLUMNS} FROM any_memory_records m WHERE m.id = $1");
            let row = conn
                .query_opt(&sql, &[&id])
                .await
                .map_err(|e| engine("reading a record", e))?;
            row.as_ref().map(to_record).transpose()
        })
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Vec<MemoryRecord>>> {
        Box::pin(async move {
            let limit = query.limit.unwrap_or(usize::MAX);
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut args = Vec::new();
            let mut sql = format!("SELECT {COLUMNS} FROM any_memory_records m WHERE TRUE");
            scope_sql(&query.scope, &mut sql, &mut args);
            let exact = filter_sql(query.filter.as_ref(), &mut sql, &mut args);
            sql.push_str(if query.newest_first {
                " ORDER BY m.created_at DESC, m.id DESC"
            } else {
                " ORDER BY m.created_at, m.id"
            });
            push_limit(&mut sql, exact, limit);
            let mut conn = self.conn().await?;
            let mut out = Vec::new();
            each_row(&mut conn, &sql, &args, |row| {
                let record = to_record(row)?;
                if passes(query.filter.as_ref(), &record) {
                    out.push(record);
                }
                Ok(out.len() < limit)
            })
            .await?;
            Ok(out)
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
            let mut conn = self.conn().await?;
            let tx = conn
                .transaction()
                .await
                .map_err(|e| engine("starting a transaction", e))?;
            let sql =
                format!("SELECT {COLUMNS} FROM any_memory_records m WHERE m.id = $1 FOR UPDATE");
            let row = tx
                .query_opt(&sql, &[&rowid])
                .await
                .map_err(|e| engine("reading a record", e))?
                .ok_or_else(missing)?;
            let mut record = to_record(&row)?;
            update.apply(&mut record, now_millis())?;
            tx.execute(
                "UPDATE any_memory_records SET text = $1, metadata = $2, updated_at = $3, \
                 embedding = $4 WHERE id = $5",
                &[
                    &record.text,
                    &Value::Object(record.metadata.clone()),
                    &record.updated_at,
                    &record.embedding,
                    &rowid,
                ],
            )
            .await
            .map_err(|e| engine("updating a record", e))?;
            tx.commit()
                .await
                .map_err(|e| engine("committing an update", e))?;
            Ok(record)
        })
    }

    fn delete<'a>(&'a self, id: &'a MemoryId) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some(rowid) = parse_id(id) else {
                return Ok(false);
            };
            let conn = self.conn().await?;
            conn.execute("DELETE FROM any_memory_records WHERE id = $1", &[&rowid])
                .await
                .map(|n| n > 0)
                .map_err(|e| engine("deleting a record", e))
        })
    }

    fn clear<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            scope.require_some("clear")?;
            let mut args = Vec::new();
            let mut sql = String::from("DELETE FROM any_memory_records m WHERE TRUE");
            scope_sql(scope, &mut sql, &mut args);
            let conn = self.conn().await?;
            let params: Vec<&(dyn ToSql + Sync)> = args
                .iter()
                .map(|a| a.as_ref() as &(dyn ToSql + Sync))
                .collect();
            conn.execute(&sql, &params)
                .await
                .map_err(|e| engine("clearing a scope", e))
        })
    }

    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Vec<Scored>>> {
        Box::pin(async move {
            query.validate()?;
            let hits = match query.mode {
                Retrieval::Recent => recent(self, &query).await?,
                Retrieval::Keyword => self.keyword(&query).await?,
                Retrieval::Vector => self.vector(&query).await?,
                Retrieval::Hybrid => {
                    let wide = hybrid_candidates(&query);
                    let (k, v) =
                        futures_util::future::join(self.keyword(&wide), self.vector(&wide)).await;
                    fuse_rrf(&[k?, v?])
                }
            };
            Ok(finish(hits, &query))
        })
    }
}
