//! Every store against the conformance suite, and what only a real engine can show:
//! persistence across reopening and a writer killed mid-batch.

use std::sync::Arc;

use any_memory::conformance;

/// Seeded points around a few centres, as embeddings cluster.
fn clustered(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut x = seed;
    let mut unit = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..dims).map(|_| unit()).collect())
        .collect();
    (0..n)
        .map(|i| centres[i % 20].iter().map(|c| c + 0.5 * unit()).collect())
        .collect()
}

/// How many of the exact answers the approximate ones found (checking that each found one
/// has the exact score), and how many there were.
fn agreement(exact: &[any_memory::Scored], approx: &[any_memory::Scored]) -> (usize, usize) {
    let mut found = 0;
    for t in exact {
        if let Some(g) = approx.iter().find(|g| g.record.id == t.record.id) {
            found += 1;
            assert!(
                (g.score - t.score).abs() < 1e-4,
                "{} vs {}",
                g.score,
                t.score
            );
        }
    }
    (found, exact.len())
}

mod in_memory {
    use super::*;
    use any_memory::InMemoryStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance() {
        let r = conformance::run(Arc::new(InMemoryStore::new())).await;
        assert!(r.is_ok(), "{}", r.unwrap_err());
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    use any_core::Role;
    use any_memory::{
        HnswParams, ListQuery, MemoryStore, NewMemory, Scope, SearchQuery, SqliteStore,
        VectorSearch,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_in_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("m.db")).unwrap();
        let r = conformance::run(Arc::new(store)).await;
        assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_in_memory_database() {
        let r = conformance::run(Arc::new(SqliteStore::open_in_memory().unwrap())).await;
        assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// The index answers even the suite's small scopes.
    fn always_indexed(store: SqliteStore) -> SqliteStore {
        store.with_vector_search(VectorSearch::Approximate {
            params: HnswParams::default(),
            min_records: 1,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_with_the_vector_index_always_on() {
        // In memory the index is built on the spot; in a file, in the background.
        let store = always_indexed(SqliteStore::open_in_memory().unwrap());
        let r = conformance::run(Arc::new(store)).await;
        assert!(r.is_ok(), "{}", r.unwrap_err());
        let dir = tempfile::tempdir().unwrap();
        let store = always_indexed(SqliteStore::open(dir.path().join("m.db")).unwrap());
        let r = conformance::run(Arc::new(store)).await;
        assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// The index agrees with the exact scan, follows this store's writes, and notices another
    /// connection's.
    #[tokio::test]
    async fn the_vector_index_agrees_with_the_scan_and_follows_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let indexed = always_indexed(SqliteStore::open(&path).unwrap());
        let exact = SqliteStore::open(&path)
            .unwrap()
            .with_vector_search(VectorSearch::Exact);
        let (ada, bob) = (Scope::user("ada"), Scope::user("bob"));
        let vectors = super::clustered(1500, 24, 3);
        let batch = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let scope = if i % 2 == 0 { &ada } else { &bob };
                NewMemory::new(scope.clone(), Role::User, format!("record {i}"))
                    .embedding(v.clone())
            })
            .collect();
        indexed.add_many(batch).await.unwrap();
        assert_eq!(indexed.build_vector_index().await.unwrap(), 1500);
        let queries = super::clustered(40, 24, 99);
        let (mut agree, mut total) = (0, 0);
        for q in &queries {
            let ask = SearchQuery::vector(ada.clone(), q.clone()).top_k(10);
            let truth = exact.search(ask.clone()).await.unwrap();
            let got = indexed.search(ask).await.unwrap();
            assert!(
                got.iter()
                    .all(|h| h.record.scope.user.as_deref() == Some("ada"))
            );
            let (a, t) = super::agreement(&truth, &got);
            (agree, total) = (agree + a, total + t);
        }
        assert!(
            agree as f64 >= 0.9 * total as f64,
            "recall@10 {agree}/{total}"
        );
        // This store's own writes: an added record is found, a deleted one is not.
        let probe = vec![3.0; 24];
        let added = indexed
            .add(NewMemory::new(ada.clone(), Role::User, "probe").embedding(probe.clone()))
            .await
            .unwrap();
        let top = |s: SqliteStore, v: Vec<f32>| async move {
            s.search(SearchQuery::vector(Scope::user("ada"), v).top_k(1))
                .await
                .unwrap()
                .remove(0)
                .record
        };
        assert_eq!(top(indexed.clone(), probe.clone()).await.id, added.id);
        assert!(indexed.delete(&added.id).await.unwrap());
        assert_ne!(top(indexed.clone(), probe.clone()).await.id, added.id);
        // Another connection's write is seen on the next search.
        let other = exact
            .add(NewMemory::new(ada.clone(), Role::User, "elsewhere").embedding(probe.clone()))
            .await
            .unwrap();
        assert_eq!(top(indexed.clone(), probe).await.id, other.id);
    }

    /// Past `min_records`, the first search starts a build in the background and scans;
    /// writes made meanwhile reach the index once it is ready.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_index_builds_in_the_background_and_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("m.db"))
            .unwrap()
            .with_vector_search(VectorSearch::Approximate {
                params: HnswParams::default(),
                min_records: 100,
            });
        let ada = Scope::user("ada");
        let vectors = super::clustered(400, 16, 8);
        let batch = vectors
            .iter()
            .map(|v| NewMemory::new(ada.clone(), Role::User, "r").embedding(v.clone()))
            .collect();
        let added = store.add_many(batch).await.unwrap();
        let ask = |v: &Vec<f32>| SearchQuery::vector(ada.clone(), v.clone()).top_k(1);
        // The first search starts the build and is answered by the scan.
        assert_eq!(
            store.search(ask(&vectors[5])).await.unwrap()[0].record.id,
            added[5].id
        );
        assert_eq!(store.vector_index_len(), None);
        // Writes while it builds.
        let probe = vec![5.0; 16];
        let new = store
            .add(NewMemory::new(ada.clone(), Role::User, "probe").embedding(probe.clone()))
            .await
            .unwrap();
        assert!(store.delete(&added[7].id).await.unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while store.vector_index_len().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the index never became ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            store.search(ask(&probe)).await.unwrap();
        }
        assert_eq!(store.vector_index_len(), Some(400));
        assert_eq!(
            store.search(ask(&probe)).await.unwrap()[0].record.id,
            new.id
        );
        let hit = store.search(ask(&vectors[7])).await.unwrap();
        assert_ne!(hit[0].record.id, added[7].id);
    }

    #[tokio::test]
    async fn records_survive_reopening_and_two_stores_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let scope = Scope::user("ada").with_session("s");
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .add(
                    NewMemory::new(scope.clone(), Role::User, "my locker code is 4711")
                        .embedding(vec![1.0, 2.0]),
                )
                .await
                .unwrap();
        }
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        b.add(NewMemory::new(scope.clone(), Role::Assistant, "noted"))
            .await
            .unwrap();
        let listed = a.list(ListQuery::new(scope.clone())).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].embedding, Some(vec![1.0, 2.0]));
        let hits = a
            .search(SearchQuery::text(Scope::user("ada"), "locker"))
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(
            &path,
            "just some text, not SQLite at all, long enough to matter ......",
        )
        .unwrap();
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("notes.txt") && err.contains("sqlite"), "{err}");
    }

    const CHILD_DB: &str = "ANY_MEMORY_TEST_CHILD_DB";
    const BATCH: usize = 40;

    /// Not a test on its own: the child process of `a_writer_killed_mid_batch_loses_no_commit`
    /// (the test binary runs itself with `CHILD_DB` set). It writes batches until killed and
    /// prints each batch's number after its commit returns.
    #[tokio::test]
    async fn child_writer() {
        let Ok(path) = std::env::var(CHILD_DB) else {
            return;
        };
        let store = SqliteStore::open(&path).unwrap();
        let mut out = std::io::stdout();
        for batch in 0..100_000 {
            let records = (0..BATCH)
                .map(|i| {
                    NewMemory::new(
                        Scope::session("kill"),
                        Role::User,
                        format!("batch {batch} item {i}"),
                    )
                    .metadata("batch", batch)
                })
                .collect();
            store.add_many(records).await.unwrap();
            writeln!(out, "committed {batch}").unwrap();
            out.flush().unwrap();
        }
    }

    #[tokio::test]
    async fn a_writer_killed_mid_batch_loses_no_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.db");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sqlite::child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut committed = Vec::new();
        while committed.len() < 25 {
            let line = lines
                .next()
                .expect("the child ended before committing 25 batches")
                .unwrap();
            if let Some(n) = line.strip_prefix("committed ") {
                committed.push(n.parse::<i64>().unwrap());
            }
        }
        // The child writes without pause, so at almost any instant it is inside a batch.
        child.kill().unwrap();
        child.wait().unwrap();
        for line in lines {
            if let Some(n) = line.unwrap().strip_prefix("committed ") {
                committed.push(n.parse().unwrap());
            }
        }
        let last = *committed.last().unwrap();

        let store = SqliteStore::open(&path).unwrap();
        let all = store
            .list(ListQuery::new(Scope::session("kill")))
            .await
            .unwrap();
        for batch in &committed {
            let n = all.iter().filter(|r| r.metadata["batch"] == *batch).count();
            assert_eq!(
                n, BATCH,
                "committed batch {batch} has {n} of {BATCH} records"
            );
        }
        assert_eq!(
            all.len() % BATCH,
            0,
            "a half-written batch is visible: {} records",
            all.len()
        );
        // At most the batch whose commit the child could not report yet.
        assert!(
            all.len() <= (last as usize + 2) * BATCH,
            "{} records after {last} batches",
            all.len()
        );
        store.integrity_check().await.unwrap();
        let hits = store
            .search(SearchQuery::text(Scope::session("kill"), "item 7"))
            .await
            .unwrap();
        assert!(
            !hits.is_empty(),
            "the full-text index lost the committed rows"
        );
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use std::collections::HashSet;

    use any_core::Role;
    use any_memory::{
        HnswParams, ListQuery, MemoryError, MemoryStore, NewMemory, PostgresOptions, PostgresStore,
        Scope, SearchQuery,
    };

    /// The server these tests run against: `scripts/test` starts one and exports its URL.
    /// Without it they fail, saying how to get one; they never skip.
    fn url() -> String {
        std::env::var("ANY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "ANY_TEST_POSTGRES_URL is not set: any-memory's PostgreSQL tests need a real \
                 server. Start one with `scripts/pg-test-server start DIR` (scripts/test does) \
                 and export the URL it prints."
            )
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_with_pgvector_where_installed() {
        let store = PostgresStore::connect(&url()).await.unwrap();
        if std::env::var("ANY_TEST_PGVECTOR").as_deref() == Ok("1") {
            assert!(
                store.uses_pgvector(),
                "pgvector is installed but the store does not use it"
            );
        }
        let r = conformance::run(Arc::new(store)).await;
        assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// pgvector's HNSW index: the conformance suite through it, and its answers against the
    /// exact search. Without pgvector, creating one is a clear error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_vector_index_agrees_with_the_exact_search() {
        let store = PostgresStore::connect(&url()).await.unwrap();
        if !store.uses_pgvector() {
            assert!(std::env::var("ANY_TEST_PGVECTOR").as_deref() != Ok("1"));
            let err = store.create_vector_index(3, HnswParams::default()).await;
            assert!(matches!(err, Err(MemoryError::InvalidInput(_))), "{err:?}");
            return;
        }
        // The suite's embeddings have three dimensions.
        store
            .create_vector_index(3, HnswParams::default())
            .await
            .unwrap();
        let r = conformance::run(Arc::new(store.clone())).await;
        assert!(r.is_ok(), "{}", r.unwrap_err());
        let err = store.create_vector_index(2001, HnswParams::default()).await;
        assert!(matches!(err, Err(MemoryError::InvalidInput(_))), "{err:?}");

        // 37 dimensions: no other test's, so this index covers only these records.
        let scope = Scope::user(format!("hnsw-{}", any_memory::now_millis()));
        let batch = super::clustered(3000, 37, 5)
            .into_iter()
            .enumerate()
            .map(|(i, v)| NewMemory::new(scope.clone(), Role::User, format!("r{i}")).embedding(v))
            .collect();
        store.add_many(batch).await.unwrap();
        store
            .create_vector_index(37, HnswParams::default())
            .await
            .unwrap();
        // A store connected afterwards finds the index; the client-side scan is exact.
        let indexed = PostgresStore::connect(&url()).await.unwrap();
        let exact = PostgresStore::connect_with(
            &url(),
            PostgresOptions {
                pgvector: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let (mut agree, mut total) = (0, 0);
        for q in super::clustered(30, 37, 77) {
            let ask = SearchQuery::vector(scope.clone(), q).top_k(10);
            let truth = exact.search(ask.clone()).await.unwrap();
            let got = indexed.search(ask).await.unwrap();
            assert_eq!(got.len(), 10);
            assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
            let (a, t) = super::agreement(&truth, &got);
            (agree, total) = (agree + a, total + t);
        }
        assert!(
            agree as f64 >= 0.9 * total as f64,
            "recall@10 {agree}/{total}"
        );
        store.clear(&scope).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_with_the_client_side_vector_scan() {
        let options = PostgresOptions {
            pgvector: false,
            ..Default::default()
        };
        let store = PostgresStore::connect_with(&url(), options).await.unwrap();
        assert!(!store.uses_pgvector());
        let r = conformance::run(Arc::new(store)).await;
        assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_pools_as_two_app_instances_lose_and_duplicate_nothing() {
        let options = PostgresOptions {
            pool_size: 4,
            ..Default::default()
        };
        let url = url();
        let (a, b) = tokio::join!(
            PostgresStore::connect_with(&url, options.clone()),
            PostgresStore::connect_with(&url, options),
        );
        let stores = [Arc::new(a.unwrap()), Arc::new(b.unwrap())];
        let scope = Scope::agent(format!(
            "two-pools-{}-{}",
            std::process::id(),
            any_memory::now_millis()
        ));
        let mut tasks = Vec::new();
        for w in 0..12 {
            let store = Arc::clone(&stores[w % 2]);
            let scope = scope.clone().with_session(format!("w{w}"));
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    store
                        .add(NewMemory::new(
                            scope.clone(),
                            Role::User,
                            format!("w{w}-{i}"),
                        ))
                        .await
                        .unwrap();
                }
                let batch = (10..20)
                    .map(|i| NewMemory::new(scope.clone(), Role::User, format!("w{w}-{i}")))
                    .collect();
                store.add_many(batch).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for store in &stores {
            let all = store.list(ListQuery::new(scope.clone())).await.unwrap();
            assert_eq!(all.len(), 12 * 20);
            let ids: HashSet<_> = all.iter().map(|r| &r.id).collect();
            let texts: HashSet<_> = all.iter().map(|r| r.text.as_str()).collect();
            assert_eq!(ids.len(), all.len(), "duplicate ids");
            assert_eq!(texts.len(), all.len(), "a record was written twice");
        }
        assert_eq!(stores[0].clear(&scope).await.unwrap(), 240);
    }

    #[tokio::test]
    async fn filtered_reads_page_through_many_rows() {
        use any_memory::{Filter, SearchQuery};
        let store = PostgresStore::connect(&url()).await.unwrap();
        let scope = Scope::agent(format!(
            "paging-{}-{}",
            std::process::id(),
            any_memory::now_millis()
        ));
        // More rows than one page (256) before the ones the filter keeps.
        let batch = (0..700)
            .map(|i| {
                NewMemory::new(scope.clone(), Role::User, format!("note number {i}"))
                    .metadata("n", i)
            })
            .collect();
        store.add_many(batch).await.unwrap();
        let late = Filter::range("n", Some(650.0), None);
        let listed = store
            .list(ListQuery::new(scope.clone()).filter(late.clone()).limit(10))
            .await
            .unwrap();
        let n: Vec<i64> = listed
            .iter()
            .map(|r| r.metadata["n"].as_i64().unwrap())
            .collect();
        assert_eq!(n, (650..660).collect::<Vec<_>>());
        let hits = store
            .search(
                SearchQuery::text(scope.clone(), "note")
                    .filter(late)
                    .top_k(60),
            )
            .await
            .unwrap();
        assert_eq!(hits.len(), 50);
        assert_eq!(store.clear(&scope).await.unwrap(), 700);
    }

    #[tokio::test]
    async fn a_malformed_url_is_a_clear_error() {
        let err = PostgresStore::connect("postgres://no host:x/")
            .await
            .unwrap_err();
        assert!(matches!(err, MemoryError::InvalidInput(_)), "{err}");
        assert!(err.to_string().contains("postgres://no host:x/"), "{err}");
    }
}

mod embedded {
    use any_core::{EmbedRequest, EmbedResponse, Error, Role};
    use any_memory::{
        Embedded, InMemoryStore, MemoryStore, MemoryUpdate, NewMemory, Retrieval, Scope,
        SearchQuery,
    };

    /// A real (if simple) embedding: words hashed into 64 buckets, so texts sharing words
    /// point the same way. Enough to test that `Embedded` embeds what it should.
    fn bag_of_words() -> impl any_core::EmbedService + Sync {
        tower::service_fn(|req: EmbedRequest| async move {
            let embed = |t: &str| {
                let mut v = vec![0.0f32; 64];
                for w in t
                    .to_lowercase()
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    let h = w.bytes().fold(1469598103934665603u64, |h, b| {
                        (h ^ u64::from(b)).wrapping_mul(1099511628211)
                    });
                    v[(h % 64) as usize] += 1.0;
                }
                v
            };
            Ok::<_, Error>(EmbedResponse {
                embeddings: req.inputs.iter().map(|t| embed(t)).collect(),
                ..Default::default()
            })
        })
    }

    #[tokio::test]
    async fn records_queries_and_updates_are_embedded() {
        let store = Embedded::new(InMemoryStore::new(), bag_of_words());
        let u = Scope::user("u");
        let added = store
            .add_many(vec![
                NewMemory::new(u.clone(), Role::User, "the violin lesson is on friday"),
                NewMemory::new(u.clone(), Role::User, "buy oat milk and bread"),
                NewMemory::new(u.clone(), Role::User, "given vector").embedding(vec![1.0; 64]),
            ])
            .await
            .unwrap();
        assert!(
            added
                .iter()
                .all(|r| r.embedding.as_ref().is_some_and(|e| e.len() == 64))
        );
        assert_eq!(
            added[2].embedding,
            Some(vec![1.0; 64]),
            "a given embedding was replaced"
        );
        for mode in [Retrieval::Vector, Retrieval::Hybrid] {
            let q = SearchQuery::new(u.clone(), mode)
                .with_text("when is the violin lesson")
                .top_k(1);
            let hits = store.search(q).await.unwrap();
            assert_eq!(
                hits[0].record.text, "the violin lesson is on friday",
                "{mode:?}"
            );
        }
        let changed = store
            .update(&added[1].id, MemoryUpdate::text("violin strings"))
            .await
            .unwrap();
        assert!(
            changed.embedding.is_some(),
            "a changed text was not embedded again"
        );
        assert_ne!(changed.embedding, added[1].embedding);
    }
}
