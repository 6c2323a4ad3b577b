//! The scale benchmark: insert and search latency of the SQLite and PostgreSQL stores as they
//! grow, exact and through the approximate (HNSW) index, with the index's recall. Run with
//!
//! ```text
//! cargo bench -p any-memory --bench scale -- 10000 100000 1000000
//! ANY_BENCH_POSTGRES_URL=postgres://... cargo bench -p any-memory --bench scale -- 10000 100000
//! ```
//!
//! Records are synthetic: eight words drawn from a 4,096-word vocabulary by a Zipf law (as
//! words in text are), and a 384-dimension embedding near one of 256 centres (embeddings of
//! real text cluster by topic), all seeded. They go into one user scope in batches of 1000.
//! Queries are two words, and a vector near a random record's. For each size it prints, as
//! Markdown rows: the insert rate of the step that grew the store; median latencies (top 10)
//! of keyword, exact vector and recency searches; the same recency and exact vector searches
//! with a selective metadata filter (each record has a `bucket`, one of 100, and the filter
//! asks for one); the index's build time, its median latency and its recall@10 against the
//! exact answers. Sizes are cumulative.

use std::sync::Arc;
use std::time::{Duration, Instant};

use any_core::Role;
use any_memory::{
    Filter, HnswParams, ListQuery, MemoryStore, NewMemory, PostgresOptions, PostgresStore,
    Retrieval, Scope, SearchQuery, SqliteStore, VectorSearch,
};

const DIMS: usize = 384;
const BATCH: usize = 1000;
const VOCABULARY: usize = 4096;
const CENTRES: usize = 256;
const QUERIES: usize = 21;
/// Records carry `bucket`: one of this many, so a filter on one selects 1 in `BUCKETS`.
const BUCKETS: u64 = 100;

/// A small, seeded generator (xorshift): the same records on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn float(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn unit(&mut self) -> f32 {
        self.float() as f32 - 0.5
    }

    /// A word: rank r with probability about 1/r (a Zipf law), spelled from syllables.
    fn word(&mut self) -> String {
        let rank = (VOCABULARY as f64).powf(self.float()) as usize;
        const SYLLABLES: [&str; 16] = [
            "ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "va", "gu", "ze", "ba", "fi",
            "ho", "ju",
        ];
        (0..3).map(|i| SYLLABLES[(rank >> (4 * i)) & 15]).collect()
    }
}

struct Data {
    rng: Rng,
    centres: Vec<Vec<f32>>,
}

impl Data {
    fn new() -> Self {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let centres = (0..CENTRES)
            .map(|_| (0..DIMS).map(|_| rng.unit()).collect())
            .collect();
        Data { rng, centres }
    }

    fn vector(&mut self) -> Vec<f32> {
        let c = self.rng.next() as usize % CENTRES;
        let rng = &mut self.rng;
        self.centres[c]
            .iter()
            .map(|x| x + 0.4 * rng.unit())
            .collect()
    }

    fn record(&mut self, scope: &Scope) -> NewMemory {
        let text: Vec<String> = (0..8).map(|_| self.rng.word()).collect();
        let bucket = format!("b{}", self.rng.next() % BUCKETS);
        let mut m =
            NewMemory::new(scope.clone(), Role::User, text.join(" ")).embedding(self.vector());
        m.metadata.insert("bucket".into(), bucket.into());
        m
    }

    fn query(&mut self, scope: &Scope, mode: Retrieval) -> SearchQuery {
        let text = format!("{} {}", self.rng.word(), self.rng.word());
        SearchQuery::new(scope.clone(), mode)
            .with_text(text)
            .with_vector(self.vector())
            .top_k(10)
    }
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Runs `queries` on `store`: the median latency and the answers' ids.
async fn run(store: &dyn MemoryStore, queries: &[SearchQuery]) -> (Duration, Vec<Vec<String>>) {
    let mut times = Vec::new();
    let mut answers = Vec::new();
    for q in queries {
        let t = Instant::now();
        let hits = store.search(q.clone()).await.expect("search");
        times.push(t.elapsed());
        answers.push(hits.into_iter().map(|h| h.record.id.0).collect());
    }
    (median(times), answers)
}

fn recall(exact: &[Vec<String>], approx: &[Vec<String>]) -> f64 {
    let (mut hit, mut total) = (0, 0);
    for (e, a) in exact.iter().zip(approx) {
        total += e.len();
        hit += e.iter().filter(|id| a.contains(id)).count();
    }
    hit as f64 / total.max(1) as f64
}

/// The index under test: built on `approx` (which may be `exact`'s file or database).
trait Index {
    async fn build(&self) -> Duration;
    async fn drop_index(&self) {}
    /// After a bulk insert: what a database's background maintenance would have done by the
    /// time an app queries (PostgreSQL's statistics).
    async fn settle(&self) {}
}

struct Sqlite(SqliteStore);

impl Index for Sqlite {
    async fn build(&self) -> Duration {
        let t = Instant::now();
        self.0.build_vector_index().await.expect("build the index");
        t.elapsed()
    }
}

struct Postgres {
    url: String,
    store: PostgresStore,
}

impl Index for Postgres {
    async fn build(&self) -> Duration {
        let t = Instant::now();
        self.store
            .create_vector_index(DIMS, HnswParams::default())
            .await
            .expect("build the index");
        t.elapsed()
    }

    async fn drop_index(&self) {
        self.sql(&format!(
            "DROP INDEX IF EXISTS any_memory_records_hnsw_{DIMS}"
        ))
        .await;
    }

    async fn settle(&self) {
        self.sql("ANALYZE any_memory_records").await;
    }
}

impl Postgres {
    async fn sql(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client.batch_execute(sql).await.expect(sql);
    }
}

async fn measure(
    name: &str,
    exact: Arc<dyn MemoryStore>,
    approx: impl AsyncFn() -> Arc<dyn MemoryStore>,
    index: &impl Index,
    sizes: &[usize],
) {
    let scope = Scope::user(format!("bench-{}", any_memory::now_millis()));
    let mut data = Data::new();
    let mut have = 0;
    for &size in sizes {
        index.drop_index().await;
        let started = Instant::now();
        while have < size {
            let n = BATCH.min(size - have);
            let batch = (0..n).map(|_| data.record(&scope)).collect();
            exact.add_many(batch).await.expect("insert");
            have += n;
        }
        let rate = (size
            - sizes
                .iter()
                .copied()
                .filter(|&s| s < size)
                .max()
                .unwrap_or(0)) as f64
            / started.elapsed().as_secs_f64();
        index.settle().await;
        let queries = |mode, data: &mut Data| -> Vec<SearchQuery> {
            (0..QUERIES).map(|_| data.query(&scope, mode)).collect()
        };
        let (keyword, _) = run(exact.as_ref(), &queries(Retrieval::Keyword, &mut data)).await;
        let (recent, _) = run(exact.as_ref(), &queries(Retrieval::Recent, &mut data)).await;
        let vector_queries = queries(Retrieval::Vector, &mut data);
        let (vector, truth) = run(exact.as_ref(), &vector_queries).await;
        let one_bucket = |q: SearchQuery, i: usize| q.filter(Filter::eq("bucket", format!("b{i}")));
        let filtered: Vec<SearchQuery> = (0..QUERIES)
            .map(|i| one_bucket(data.query(&scope, Retrieval::Vector), i))
            .collect();
        let (filtered_vector, _) = run(exact.as_ref(), &filtered).await;
        let mut times = Vec::new();
        for i in 0..QUERIES {
            let list = ListQuery::new(scope.clone())
                .filter(Filter::eq("bucket", format!("b{i}")))
                .newest_first()
                .limit(10);
            let t = Instant::now();
            let got = exact.list(list).await.expect("list");
            times.push(t.elapsed());
            assert_eq!(got.len(), 10.min(size / BUCKETS as usize));
        }
        let filtered_recent = median(times);
        let built = index.build().await;
        let approx = approx().await;
        let (ann, answers) = run(approx.as_ref(), &vector_queries).await;
        println!(
            "| {name} | {size} | {rate:.0} records/s | {} | {} | {} | {} | {} | {:.1} s | {} | {:.3} |",
            ms(keyword),
            ms(recent),
            ms(vector),
            ms(filtered_recent),
            ms(filtered_vector),
            built.as_secs_f64(),
            ms(ann),
            recall(&truth, &answers),
        );
    }
    exact.clear(&scope).await.expect("clear");
    index.drop_index().await;
}

#[tokio::main]
async fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10_000];
    }
    sizes.sort_unstable();
    println!(
        "| store | records | insert (batches of {BATCH}) | keyword top 10 | recent 10 | vector top 10, exact ({DIMS} dims) | recent 10, 1 bucket in {BUCKETS} | vector top 10, exact, 1 bucket in {BUCKETS} | index build | vector top 10, index | recall@10 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let sqlite_only = std::env::var("ANY_BENCH_POSTGRES_URL").is_ok()
        && std::env::var("ANY_BENCH_SKIP_SQLITE").is_ok();
    if !sqlite_only {
        let dir = std::env::temp_dir().join(format!("any-memory-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("bench.db");
        let exact = SqliteStore::open(&path)
            .expect("open SQLite")
            .with_vector_search(VectorSearch::Exact);
        // The indexed handle is opened on the same file; it builds when asked and answers
        // from the index (a store this size is past the default threshold anyway).
        let indexed = SqliteStore::open(&path)
            .expect("open SQLite")
            .with_vector_search(VectorSearch::Approximate {
                params: HnswParams::default(),
                min_records: 1,
            });
        let handle = indexed.clone();
        measure(
            "SQLite",
            Arc::new(exact),
            async || Arc::new(handle.clone()) as Arc<dyn MemoryStore>,
            &Sqlite(indexed),
            &sizes,
        )
        .await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Ok(url) = std::env::var("ANY_BENCH_POSTGRES_URL") {
        let connect = async |pgvector| {
            let options = PostgresOptions {
                pgvector,
                ..Default::default()
            };
            PostgresStore::connect_with(&url, options)
                .await
                .expect("connect")
        };
        let exact = connect(true).await;
        assert!(
            exact.uses_pgvector(),
            "the benchmark's database needs pgvector"
        );
        let index = Postgres {
            url: url.clone(),
            store: exact.clone(),
        };
        index.drop_index().await;
        // The exact handle connected before the index existed, so it scans; a handle
        // connected after the build finds the index.
        let exact = Arc::new(connect(true).await);
        measure(
            "PostgreSQL + pgvector",
            exact,
            async || Arc::new(connect(true).await) as Arc<dyn MemoryStore>,
            &index,
            &sizes,
        )
        .await;
    }
}
