//! The scale benchmark: insert and search latency of the SQLite and PostgreSQL stores as they
//! grow. Run with
//!
//! ```text
//! cargo bench -p any-memory --bench scale -- 10000 100000
//! ANY_BENCH_POSTGRES_URL=postgres://... cargo bench -p any-memory --bench scale -- 10000
//! ```
//!
//! Records are synthetic (a few words from a fixed vocabulary, 384-dimension embeddings from a
//! seeded generator) in one user scope, inserted in batches of 1000. For each size it prints
//! the insert rate and the median latency of keyword, vector (exact) and recency searches
//! (top 5) as a Markdown row. Sizes are cumulative: the store grows from one to the next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use any_core::Role;
use any_memory::{
    MemoryStore, NewMemory, PostgresOptions, PostgresStore, Retrieval, Scope, SearchQuery,
    SqliteStore,
};

const DIMS: usize = 384;
const BATCH: usize = 1000;
const WORDS: &[&str] = &[
    "garden",
    "flight",
    "recipe",
    "meeting",
    "doctor",
    "budget",
    "guitar",
    "holiday",
    "sister",
    "report",
    "train",
    "coffee",
    "music",
    "school",
    "rent",
    "paint",
    "hotel",
    "running",
    "tax",
    "cat",
    "dinner",
    "deadline",
    "sleep",
    "bank",
    "chess",
    "window",
    "birthday",
    "airport",
    "pasta",
    "insurance",
    "hiking",
    "email",
];

/// A small, seeded generator (xorshift): the same records on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

fn record(rng: &mut Rng, scope: &Scope) -> NewMemory {
    let text: Vec<&str> = (0..8)
        .map(|_| WORDS[rng.next() as usize % WORDS.len()])
        .collect();
    let embedding = (0..DIMS).map(|_| rng.unit()).collect();
    NewMemory::new(scope.clone(), Role::User, text.join(" ")).embedding(embedding)
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

async fn measure(name: &str, store: Arc<dyn MemoryStore>, sizes: &[usize]) {
    let scope = Scope::user(format!("bench-{}", any_memory::now_millis()));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut have = 0;
    for &size in sizes {
        let started = Instant::now();
        while have < size {
            let n = BATCH.min(size - have);
            let batch = (0..n).map(|_| record(&mut rng, &scope)).collect();
            store.add_many(batch).await.expect("insert");
            have += n;
        }
        let inserted = started.elapsed();
        let times = |mode: Retrieval, runs: usize, rng: &mut Rng| {
            let queries: Vec<SearchQuery> = (0..runs)
                .map(|_| {
                    let text = format!(
                        "{} {}",
                        WORDS[rng.next() as usize % WORDS.len()],
                        WORDS[rng.next() as usize % WORDS.len()]
                    );
                    let vector = (0..DIMS).map(|_| rng.unit()).collect();
                    SearchQuery::new(scope.clone(), mode)
                        .with_text(text)
                        .with_vector(vector)
                        .top_k(5)
                })
                .collect();
            let store = Arc::clone(&store);
            async move {
                let mut d = Vec::new();
                for q in queries {
                    let t = Instant::now();
                    store.search(q).await.expect("search");
                    d.push(t.elapsed());
                }
                median(d)
            }
        };
        let keyword = times(Retrieval::Keyword, 21, &mut rng).await;
        let vector = times(Retrieval::Vector, 5, &mut rng).await;
        let recent = times(Retrieval::Recent, 21, &mut rng).await;
        println!(
            "| {name} | {size} | {:.0} records/s | {:.1} ms | {:.1} ms | {:.1} ms |",
            inserted_rate(size, sizes, inserted),
            keyword.as_secs_f64() * 1e3,
            vector.as_secs_f64() * 1e3,
            recent.as_secs_f64() * 1e3,
        );
    }
    store.clear(&scope).await.expect("clear");
}

/// Records per second of the step that grew the store to `size`.
fn inserted_rate(size: usize, sizes: &[usize], took: Duration) -> f64 {
    let before = sizes
        .iter()
        .copied()
        .filter(|&s| s < size)
        .max()
        .unwrap_or(0);
    (size - before) as f64 / took.as_secs_f64()
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
        "| store | records | insert (batches of {BATCH}) | keyword top 5 | vector top 5 (exact, {DIMS} dims) | recent 5 |"
    );
    println!("|---|---|---|---|---|---|");
    let dir = std::env::temp_dir().join(format!("any-memory-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let sqlite = SqliteStore::open(dir.join("bench.db")).expect("open SQLite");
    measure("SQLite", Arc::new(sqlite), &sizes).await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Ok(url) = std::env::var("ANY_BENCH_POSTGRES_URL") {
        for pgvector in [true, false] {
            let options = PostgresOptions {
                pgvector,
                ..Default::default()
            };
            let store = PostgresStore::connect_with(&url, options)
                .await
                .expect("connect");
            let name = if store.uses_pgvector() {
                "PostgreSQL + pgvector"
            } else {
                "PostgreSQL, client scan"
            };
            measure(name, Arc::new(store), &sizes).await;
        }
    }
}
