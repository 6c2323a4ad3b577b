//! The conformance suite: checks that a [`MemoryStore`] keeps the trait's contract.
//!
//! Every store of this crate runs it in its tests; an adapter author runs it on theirs with
//! one call:
//!
//! ```
//! use std::sync::Arc;
//! use any_memory::{InMemoryStore, conformance};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let report = conformance::run(Arc::new(InMemoryStore::new())).await;
//! assert!(report.is_ok(), "{}", report.unwrap_err());
//! # }
//! ```
//!
//! The suite works in scopes of its own (users named `conformance-<pid>-<time>-...`), so it
//! can run on a store that holds other data, and cleans up after itself when it passes. It
//! needs a tokio runtime: its concurrency check spawns tasks (a multi-threaded runtime makes
//! them truly parallel).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use any_core::Role;
use serde_json::json;

use crate::{
    Filter, ListQuery, MemoryError, MemoryStore, MemoryUpdate, NewMemory, Retrieval, Scope,
    SearchQuery, now_millis,
};

/// A broken promise: which check failed and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conformance check `{check}` failed: {message}")]
pub struct ConformanceFailure {
    /// The check's name (`"add_and_get"`, ...).
    pub check: &'static str,
    /// What was expected and what the store did.
    pub message: String,
}

type Checked = std::result::Result<(), ConformanceFailure>;

/// Writers in the concurrency check, and records each writes (half singly, half in batches).
const WRITERS: usize = 8;
const PER_WRITER: usize = 24;

macro_rules! ensure {
    ($check:expr, $cond:expr, $($msg:tt)+) => {
        {
            let holds: bool = $cond;
            if !holds {
                return Err(ConformanceFailure { check: $check, message: format!($($msg)+) });
            }
        }
    };
}

/// Runs every check on `store`, stopping at the first failure.
///
/// # Errors
/// The first [`ConformanceFailure`]: the check and what went wrong.
pub async fn run(store: Arc<dyn MemoryStore>) -> Checked {
    let run = Run::new();
    let s = store.as_ref();
    add_and_get(s, &run).await?;
    add_many_is_atomic(s, &run).await?;
    list_order_and_scope(s, &run).await?;
    filters(s, &run).await?;
    random_filters(s, &run).await?;
    update_and_delete(s, &run).await?;
    clear(s, &run).await?;
    keyword_search(s, &run).await?;
    vector_and_hybrid_search(s, &run).await?;
    concurrent_writers(Arc::clone(&store), &run).await?;
    let root = Scope::agent(run.agent.clone());
    fail("cleanup", store.clear(&root).await)?;
    Ok(())
}

/// One run's names, distinct from any other run's (other processes' too).
#[derive(Debug)]
struct Run {
    agent: String,
    next: AtomicU64,
}

impl Run {
    fn new() -> Self {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        Run {
            agent: format!("conformance-{}-{}-{n}", std::process::id(), now_millis()),
            next: AtomicU64::new(0),
        }
    }

    /// A fresh user scope under this run's agent.
    fn scope(&self) -> Scope {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Scope::agent(self.agent.clone()).with_user(format!("user-{n}"))
    }
}

fn fail<T>(check: &'static str, r: crate::Result<T>) -> std::result::Result<T, ConformanceFailure> {
    r.map_err(|e| ConformanceFailure {
        check,
        message: format!("the store failed: {e}"),
    })
}

fn texts(records: &[crate::MemoryRecord]) -> Vec<&str> {
    records.iter().map(|r| r.text.as_str()).collect()
}

async fn add_and_get(s: &dyn MemoryStore, run: &Run) -> Checked {
    const C: &str = "add_and_get";
    let scope = run.scope().with_session("s1");
    let before = now_millis();
    let new = NewMemory::new(
        scope.clone(),
        Role::User,
        "Grüße 🌍 — «quoted» 'text' \"here\"",
    )
    .metadata("kind", "fact")
    .metadata("nested", json!({"a": [1, 2.5, null, true]}))
    .embedding(vec![0.25, -1.5, 3.0]);
    let added = fail(C, s.add(new.clone()).await)?;
    let after = now_millis();
    ensure!(
        C,
        added.text == new.text,
        "text came back as {:?}",
        added.text
    );
    ensure!(
        C,
        added.scope == scope,
        "scope came back as {:?}",
        added.scope
    );
    ensure!(
        C,
        added.role == Role::User,
        "role came back as {:?}",
        added.role
    );
    ensure!(
        C,
        added.metadata == new.metadata,
        "metadata came back as {:?}",
        added.metadata
    );
    ensure!(
        C,
        added.embedding == new.embedding,
        "embedding came back as {:?}",
        added.embedding
    );
    ensure!(
        C,
        (before..=after).contains(&added.created_at) && added.updated_at == added.created_at,
        "created_at {} / updated_at {} not in [{before}, {after}]",
        added.created_at,
        added.updated_at
    );
    let got = fail(C, s.get(&added.id).await)?;
    ensure!(
        C,
        got.as_ref() == Some(&added),
        "get returned {got:?}, add returned {added:?}"
    );
    let missing = fail(C, s.get(&"no-such-id-000".into()).await)?;
    ensure!(
        C,
        missing.is_none(),
        "get of an unknown id returned {missing:?}"
    );
    let dated = fail(
        C,
        s.add(NewMemory::new(scope, Role::System, "old").created_at(1_000))
            .await,
    )?;
    ensure!(
        C,
        dated.created_at == 1_000,
        "a given created_at became {}",
        dated.created_at
    );
    let no_scope = s
        .add(NewMemory::new(Scope::default(), Role::User, "x"))
        .await;
    ensure!(
        C,
        matches!(no_scope, Err(MemoryError::InvalidInput(_))),
        "a record without scope gave {no_scope:?}, expected InvalidInput"
    );
    Ok(())
}

async fn add_many_is_atomic(s: &dyn MemoryStore, run: &Run) -> Checked {
    const C: &str = "add_many_is_atomic";
    let scope = run.scope();
    let batch: Vec<NewMemory> = (0..5)
        .map(|i| NewMemory::new(scope.clone(), Role::User, format!("batch item {i}")))
        .collect();
    let added = fail(C, s.add_many(batch).await)?;
    let ids: HashSet<_> = added.iter().map(|r| r.id.clone()).collect();
    ensure!(
        C,
        ids.len() == 5,
        "5 records got {} distinct ids",
        ids.len()
    );
    ensure!(
        C,
        texts(&added)
            == [
                "batch item 0",
                "batch item 1",
                "batch item 2",
                "batch item 3",
                "batch item 4"
            ],
        "add_many returned {:?}",
        texts(&added)
    );
    let mut bad: Vec<NewMemory> = (0..3)
        .map(|i| NewMemory::new(scope.clone(), Role::User, format!("doomed {i}")))
        .collect();
    bad.push(NewMemory::new(scope.clone(), Role::User, "bad").embedding(vec![f32::NAN]));
    let r = s.add_many(bad).await;
    ensure!(
        C,
        matches!(r, Err(MemoryError::InvalidInput(_))),
        "a batch with a NaN embedding gave {r:?}"
    );
    let listed = fail(C, s.list(ListQuery::new(scope)).await)?;
    ensure!(
        C,
        listed.len() == 5,
        "after a failed batch the scope holds {:?}",
        texts(&listed)
    );
    let empty = fail(C, s.add_many(Vec::new()).await)?;
    ensure!(
        C,
        empty.is_empty(),
        "an empty batch returned {} records",
        empty.len()
    );
    Ok(())
}

async fn list_order_and_scope(s: &dyn MemoryStore, run: &Run) -> Checked {
    const C: &str = "list_order_and_scope";
    let user = run.scope();
    let a = user.clone().with_session("a");
    let b = user.clone().with_session("b");
    let mut batch = Vec::new();
    // Out of time order, with ties: list sorts by time, ties in insertion order.
    for (scope, text, t) in [
        (&a, "a3", 3_000),
        (&a, "a1", 1_000),
        (&b, "b2", 2_000),
        (&a, "a2-first", 2_000),
        (&a, "a2-second", 2_000),
    ] {
        batch.push(NewMemory::new(scope.clone(), Role::User, text).created_at(t));
    }
    fail(C, s.add_many(batch).await)?;
    let sess_a = Scope {
        session: Some("a".into()),
        ..user.clone()
    };
    let listed = fail(C, s.list(ListQuery::new(sess_a.clone())).await)?;
    ensure!(
        C,
        texts(&listed) == ["a1", "a2-first", "a2-second", "a3"],
        "oldest first: {:?}",
        texts(&listed)
    );
    let newest = fail(
        C,
        s.list(ListQuery::new(sess_a).newest_first().limit(3)).await,
    )?;
    ensure!(
        C,
        texts(&newest) == ["a3", "a2-second", "a2-first"],
        "newest first, limit 3: {:?}",
        texts(&newest)
    );
    let all = fail(C, s.list(ListQuery::new(user.clone())).await)?;
    ensure!(
        C,
        texts(&all) == ["a1", "b2", "a2-first", "a2-second", "a3"],
        "the user's records: {:?}",
        texts(&all)
    );
    let none = fail(C, s.list(ListQuery::new(user.with_session("c"))).await)?;
    ensure!(
        C,
        none.is_empty(),
        "an unused session lists {:?}",
        texts(&none)
    );
    Ok(())
}

async fn filters(s: &dyn MemoryStore, run: &Run) -> Checked {
    const C: &str = "filters";
    let scope = run.scope();
    let rows = [
        (
            "r1",
            Role::User,
            json!({"topic": "food", "n": 1, "flag": true}),
            1_000,
        ),
        (
            "r2",
            Role::Assistant,
            json!({"topic": "travel", "n": 2.5}),
            2_000,
        ),
        (
            "r3",
            Role::User,
            json!({"topic": "food", "n": 7, "tags": ["x", "y"]}),
            3_000,
        ),
        ("r4", Role::System, json!({"n": "7"}), 4_000),
    ];
    let batch = rows
        .iter()
        .map(|(text, role, meta, t)| {
            let mut m = NewMemory::new(scope.clone(), *role, *text).created_at(*t);
            m.metadata = meta.as_object().cloned().unwrap_or_default();
            m
        })
        .collect();
    fail(C, s.add_many(batch).await)?;
    let cases: Vec<(Filter, Vec<&str>)> = vec![
        (Filter::eq("topic", "food"), vec!["r1", "r3"]),
        (Filter::eq("n", 1.0), vec!["r1"]),
        (Filter::eq("n", 7), vec!["r3"]),
        (Filter::eq("n", "7"), vec!["r4"]),
        (Filter::eq("flag", true), vec!["r1"]),
        (Filter::eq("tags", json!(["x", "y"])), vec!["r3"]),
        (Filter::eq("missing", "x"), vec![]),
        (Filter::is_in("topic", ["travel", "sport"]), vec!["r2"]),
        (Filter::range("n", Some(2.0), Some(7.0)), vec!["r2", "r3"]),
        (Filter::range("n", None, Some(2.5)), vec!["r1", "r2"]),
        (Filter::role(Role::User), vec!["r1", "r3"]),
        (
            Filter::created_between(Some(2_000), Some(4_000)),
            vec!["r2", "r3"],
        ),
        (Filter::created_between(None, Some(2_000)), vec!["r1"]),
        (
            Filter::eq("topic", "food").and(Filter::range("n", Some(5.0), None)),
            vec!["r3"],
        ),
        (
            Filter::eq("topic", "travel").or(Filter::role(Role::System)),
            vec!["r2", "r4"],
        ),
        (Filter::eq("topic", "food").not(), vec!["r2", "r4"]),
        (Filter::Or(vec![]), vec![]),
        (Filter::And(vec![]), vec!["r1", "r2", "r3", "r4"]),
    ];
    for (filter, want) in cases {
        let got = fail(
            C,
            s.list(ListQuery::new(scope.clone()).filter(filter.clone()))
                .await,
        )?;
        ensure!(
            C,
            texts(&got) == want,
            "{filter:?} selected {:?}, expected {want:?}",
            texts(&got)
        );
    }
    Ok(())
}

/// A seeded xorshift: the random checks are the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Metadata values that tell JSON's kinds apart: numbers of every sort, strings that look
/// like numbers, booleans, null, an array and an object.
fn awkward_values() -> Vec<serde_json::Value> {
    vec![
        json!(1),
        json!(1.0),
        json!(2.5),
        json!(-3),
        json!(1e20),
        json!(9_007_199_254_740_993u64),
        json!("1"),
        json!("food"),
        json!("Food"),
        json!("é"),
        json!(""),
        json!("it's \"quoted\""),
        json!(true),
        json!(false),
        json!(null),
        json!([1, 2]),
        json!({"a": 1}),
    ]
}

/// Metadata keys with a dot, a quote, a space and another script.
const AWKWARD_KEYS: [&str; 6] = ["n", "topic", "a.b", "ключ", "k\"q", "x y"];
const ROLES: [Role; 3] = [Role::User, Role::Assistant, Role::System];

/// A random filter of at most `depth` levels of `and`, `or` and `not`.
fn random_filter(rng: &mut Rng, values: &[serde_json::Value], depth: u32) -> Filter {
    let bounds = [
        None,
        Some(-5.0),
        Some(1.0),
        Some(2.5),
        Some(1e20),
        Some(9.007_199_254_740_992e15),
    ];
    let times = [None, Some(0), Some(5_000), Some(12_000), Some(30_000)];
    match if depth == 0 { 0 } else { rng.below(4) } {
        1 => Filter::And(
            (0..rng.below(3))
                .map(|_| random_filter(rng, values, depth - 1))
                .collect(),
        ),
        2 => Filter::Or(
            (0..rng.below(3))
                .map(|_| random_filter(rng, values, depth - 1))
                .collect(),
        ),
        3 => random_filter(rng, values, depth - 1).not(),
        _ => {
            let key = AWKWARD_KEYS[rng.below(AWKWARD_KEYS.len())];
            match rng.below(6) {
                0 | 1 => Filter::eq(key, values[rng.below(values.len())].clone()),
                2 => {
                    let n = rng.below(4);
                    Filter::is_in(key, (0..n).map(|_| values[rng.below(values.len())].clone()))
                }
                3 => Filter::range(
                    key,
                    bounds[rng.below(bounds.len())],
                    bounds[rng.below(bounds.len())],
                ),
                4 => Filter::role(ROLES[rng.below(ROLES.len())]),
                _ => Filter::created_between(
                    times[rng.below(times.len())],
                    times[rng.below(times.len())],
                ),
            }
        }
    }
}

/// Seeded random filters over awkward metadata: a store's list, keyword and vector searches
/// must select exactly what [`Filter::matches`] selects, with and without a limit.
async fn random_filters(s: &dyn MemoryStore, run: &Run) -> Checked {
    const C: &str = "random_filters";
    let scope = run.scope();
    let values = awkward_values();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let batch: Vec<NewMemory> = (0..24)
        .map(|i| {
            let mut m = NewMemory::new(scope.clone(), ROLES[i % 3], format!("apple pie {i}"))
                .created_at(1_000 * (i as i64 + 1))
                .embedding(vec![1.0, i as f32 / 10.0]);
            for key in AWKWARD_KEYS {
                if rng.below(3) > 0 {
                    let v = values[rng.below(values.len())].clone();
                    m.metadata.insert(key.to_owned(), v);
                }
            }
            m
        })
        .collect();
    fail(C, s.add_many(batch).await)?;
    let all = fail(C, s_list(s, scope.clone()).await)?;
    for _ in 0..120 {
        let filter = random_filter(&mut rng, &values, 3);
        let want: Vec<&str> = all
            .iter()
            .filter(|r| filter.matches(r))
            .map(|r| r.text.as_str())
            .collect();
        let list = ListQuery::new(scope.clone()).filter(filter.clone());
        let got = fail(C, s.list(list.clone()).await)?;
        ensure!(
            C,
            texts(&got) == want,
            "list {filter:?} selected {:?}, expected {want:?}",
            texts(&got)
        );
        let newest: Vec<&str> = want.iter().rev().take(2).copied().collect();
        let got = fail(C, s.list(list.newest_first().limit(2)).await)?;
        ensure!(
            C,
            texts(&got) == newest,
            "list {filter:?}, newest 2: {:?}, expected {newest:?}",
            texts(&got)
        );
        for mode in [Retrieval::Keyword, Retrieval::Vector] {
            let query = SearchQuery::new(scope.clone(), mode)
                .with_text("apple")
                .with_vector(vec![1.0, 0.0])
                .top_k(100)
                .filter(filter.clone());
            let hits = fail(C, s.search(query).await)?;
            let mut got: Vec<&str> = hits.iter().map(|h| h.record.text.as_str()).collect();
            got.sort_unstable();
            let mut want = want.clone();
            want.sort_unstable();
            ensure!(
                C,
                got == want,
                "{mode:?} search {filter:?} found {got:?}, expected {want:?}"
            );
        }
    }
    Ok(())
}

async fn update_and_delete(s: &dyn MemoryStore, run: &Run) -> Checked {
    const C: &str = "update_and_delete";
    let scope = run.scope();
    let added = fail(
        C,
        s.add(
            NewMemory::new(scope.clone(), Role::User, "I like tea")
                .metadata("v", 1)
                .embedding(vec![1.0, 0.0])
                .created_at(1_000),
        )
        .await,
    )?;
    let meta = json!({"v": 2}).as_object().cloned().unwrap_or_default();
    let changed = fail(
        C,
        s.update(&added.id, MemoryUpdate::metadata(meta.clone()))
            .await,
    )?;
    ensure!(
        C,
        changed.metadata == meta && changed.text == "I like tea",
        "a metadata update gave {changed:?}"
    );
    ensure!(
        C,
        changed.embedding == added.embedding,
        "a metadata update changed the embedding"
    );
    ensure!(
        C,
        changed.updated_at > changed.created_at && changed.created_at == 1_000,
        "times after update: {changed:?}"
    );
    let changed = fail(
        C,
        s.update(&added.id, MemoryUpdate::text("I like coffee"))
            .await,
    )?;
    ensure!(
        C,
        changed.text == "I like coffee",
        "a text update gave {changed:?}"
    );
    ensure!(
        C,
        changed.embedding.is_none(),
        "a text update without embedding kept the stale embedding"
    );
    let got = fail(C, s.get(&added.id).await)?;
    ensure!(
        C,
        got.as_ref() == Some(&changed),
        "get after update returned {got:?}"
    );
    let found = fail(
        C,
        s.search(SearchQuery::text(scope.clone(), "coffee")).await,
    )?;
    ensure!(
        C,
        found.len() == 1,
        "keyword search for the new text found {} records",
        found.len()
    );
    let stale = fail(C, s.search(SearchQuery::text(scope.clone(), "tea")).await)?;
    ensure!(
        C,
        stale.is_empty(),
        "keyword search still finds the old text"
    );
    let missing = s
        .update(&"no-such-id-000".into(), MemoryUpdate::text("x"))
        .await;
    ensure!(
        C,
        matches!(missing, Err(MemoryError::NotFound(_))),
        "update of an unknown id gave {missing:?}"
    );
    ensure!(
        C,
        fail(C, s.delete(&added.id).await)?,
        "delete of an existing record returned false"
    );
    ensure!(
        C,
        !fail(C, s.delete(&added.id).await)?,
        "a second delete returned true"
    );
    ensure!(
        C,
        fail(C, s.get(&added.id).await)?.is_none(),
        "get after delete found the record"
    );
    let gone = fail(C, s.search(SearchQuery::text(scope, "coffee")).await)?;
    ensure!(C, gone.is_empty(), "keyword search finds a deleted record");
    Ok(())
}

async fn clear(s: &dyn MemoryStore, run: &Run) -> Checked {
    const C: &str = "clear";
    let user = run.scope();
    let other = run.scope();
    let batch = vec![
        NewMemory::new(user.clone().with_session("x"), Role::User, "1"),
        NewMemory::new(user.clone().with_session("x"), Role::User, "2"),
        NewMemory::new(user.clone().with_session("y"), Role::User, "3"),
        NewMemory::new(other.clone(), Role::User, "4"),
    ];
    fail(C, s.add_many(batch).await)?;
    let n = fail(C, s.clear(&user.clone().with_session("x")).await)?;
    ensure!(
        C,
        n == 2,
        "clearing a session removed {n} records, expected 2"
    );
    let left = fail(C, s.list(ListQuery::new(user.clone())).await)?;
    ensure!(
        C,
        texts(&left) == ["3"],
        "after clearing session x the user has {:?}",
        texts(&left)
    );
    let r = s.clear(&Scope::default()).await;
    ensure!(
        C,
        matches!(r, Err(MemoryError::InvalidInput(_))),
        "clear with an empty scope gave {r:?}"
    );
    let n = fail(C, s.clear(&user).await)?;
    ensure!(
        C,
        n == 1,
        "clearing the user removed {n} records, expected 1"
    );
    let kept = fail(C, s.list(ListQuery::new(other)).await)?;
    ensure!(
        C,
        texts(&kept) == ["4"],
        "another user's records became {:?}",
        texts(&kept)
    );
    Ok(())
}

async fn keyword_search(s: &dyn MemoryStore, run: &Run) -> Checked {
    const C: &str = "keyword_search";
    let scope = run.scope();
    let docs = [
        ("My sister Maria lives in Porto", json!({"kind": "fact"})),
        ("The weather in Porto was rainy", json!({"kind": "chat"})),
        ("I adopted a dog named Pixel", json!({"kind": "fact"})),
        (
            "Pixel loves long walks and Pixel sleeps a lot",
            json!({"kind": "chat"}),
        ),
        ("Nothing relevant here at all", json!({"kind": "chat"})),
    ];
    let batch = docs
        .iter()
        .map(|(t, m)| {
            let mut n = NewMemory::new(scope.clone(), Role::User, *t);
            n.metadata = m.as_object().cloned().unwrap_or_default();
            n
        })
        .collect();
    fail(C, s.add_many(batch).await)?;
    let hits = fail(
        C,
        s.search(SearchQuery::text(scope.clone(), "Where does Maria live?"))
            .await,
    )?;
    ensure!(
        C,
        hits.first()
            .is_some_and(|h| h.record.text.contains("Maria")),
        "the best hit for Maria: {hits:?}"
    );
    ensure!(
        C,
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "scores not descending: {hits:?}"
    );
    let hits = fail(C, s.search(SearchQuery::text(scope.clone(), "pixel")).await)?;
    ensure!(
        C,
        hits.len() == 2,
        "two records mention Pixel, the search found {}",
        hits.len()
    );
    let hits = fail(
        C,
        s.search(SearchQuery::text(scope.clone(), "pixel").top_k(1))
            .await,
    )?;
    ensure!(C, hits.len() == 1, "top_k 1 returned {}", hits.len());
    let hits = fail(
        C,
        s.search(
            SearchQuery::text(scope.clone(), "pixel porto").filter(Filter::eq("kind", "fact")),
        )
        .await,
    )?;
    let mut got: Vec<&str> = hits.iter().map(|h| h.record.text.as_str()).collect();
    got.sort_unstable();
    ensure!(
        C,
        got == [
            "I adopted a dog named Pixel",
            "My sister Maria lives in Porto"
        ],
        "filtered search found {got:?}"
    );
    let hits = fail(
        C,
        s.search(SearchQuery::text(scope.clone(), "zebra quantum"))
            .await,
    )?;
    ensure!(C, hits.is_empty(), "a query sharing no word found {hits:?}");
    let hits = fail(
        C,
        s.search(SearchQuery::text(scope.clone(), "porto").min_score(f32::MAX))
            .await,
    )?;
    ensure!(C, hits.is_empty(), "min_score f32::MAX kept {hits:?}");
    let hits = fail(
        C,
        s.search(SearchQuery::text(
            scope.clone(),
            "\"unbalanced ( AND OR * quotes:",
        ))
        .await,
    );
    ensure!(
        C,
        hits.is_ok(),
        "query text with search-syntax characters failed: {hits:?}"
    );
    let r = s
        .search(SearchQuery::new(scope.clone(), Retrieval::Keyword))
        .await;
    ensure!(
        C,
        matches!(r, Err(MemoryError::InvalidInput(_))),
        "a keyword search without text gave {r:?}"
    );
    let recent = fail(
        C,
        s.search(SearchQuery::new(scope, Retrieval::Recent).top_k(2))
            .await,
    )?;
    ensure!(
        C,
        recent
            .iter()
            .map(|h| h.record.text.as_str())
            .collect::<Vec<_>>()
            == [
                "Nothing relevant here at all",
                "Pixel loves long walks and Pixel sleeps a lot"
            ],
        "recent top 2: {recent:?}"
    );
    Ok(())
}

async fn vector_and_hybrid_search(s: &dyn MemoryStore, run: &Run) -> Checked {
    const C: &str = "vector_and_hybrid_search";
    let scope = run.scope();
    let docs = [
        ("north", vec![1.0, 0.0, 0.0]),
        ("north-east", vec![0.7, 0.7, 0.0]),
        ("up", vec![0.0, 0.0, 1.0]),
        ("east east", vec![0.0, -1.0, 0.0]),
    ];
    let mut batch: Vec<NewMemory> = docs
        .iter()
        .map(|(t, v)| NewMemory::new(scope.clone(), Role::User, *t).embedding(v.clone()))
        .collect();
    batch.push(NewMemory::new(
        scope.clone(),
        Role::User,
        "no vector, north",
    ));
    fail(C, s.add_many(batch).await)?;
    let q = vec![0.9, 0.1, 0.0];
    let hits = fail(
        C,
        s.search(SearchQuery::vector(scope.clone(), q.clone()).top_k(10))
            .await,
    )?;
    let order: Vec<&str> = hits.iter().map(|h| h.record.text.as_str()).collect();
    ensure!(
        C,
        order == ["north", "north-east", "up", "east east"],
        "cosine order: {order:?}"
    );
    let want = any_core::cosine_similarity(&q, &[1.0, 0.0, 0.0]);
    ensure!(
        C,
        (hits[0].score - want).abs() < 1e-4,
        "cosine score {} expected {want}",
        hits[0].score
    );
    let hits = fail(
        C,
        s.search(SearchQuery::vector(scope.clone(), q.clone()).min_score(0.5))
            .await,
    )?;
    ensure!(
        C,
        hits.len() == 2,
        "min_score 0.5 kept {} records, expected 2",
        hits.len()
    );
    let r = s
        .search(SearchQuery::vector(scope.clone(), vec![1.0, 0.0]))
        .await;
    ensure!(
        C,
        matches!(r, Err(MemoryError::InvalidInput(_))),
        "a 2-d query against 3-d embeddings gave {r:?}"
    );
    let r = s
        .search(SearchQuery::new(scope.clone(), Retrieval::Vector))
        .await;
    ensure!(
        C,
        matches!(r, Err(MemoryError::InvalidInput(_))),
        "a vector search without a vector gave {r:?}"
    );
    // By keyword "east east" ranks first and "north-east" second; by vector "north" first,
    // "north-east" second and "east east" last. Second in both lists beats first in one:
    // 1/62 + 1/62 > 1/61 + 1/64 (and > 1/61 alone).
    let hybrid = SearchQuery::new(scope.clone(), Retrieval::Hybrid)
        .with_text("east")
        .with_vector(q)
        .top_k(10);
    let hits = fail(C, s.search(hybrid).await)?;
    ensure!(
        C,
        hits.first().is_some_and(|h| h.record.text == "north-east"),
        "hybrid best: {hits:?}"
    );
    let ids: HashSet<_> = hits.iter().map(|h| &h.record.id).collect();
    ensure!(
        C,
        ids.len() == hits.len(),
        "hybrid returned a record twice: {hits:?}"
    );
    Ok(())
}

async fn concurrent_writers(store: Arc<dyn MemoryStore>, run: &Run) -> Checked {
    const C: &str = "concurrent_writers";
    let scope = run.scope();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        let scope = scope.clone().with_session(format!("w{w}"));
        tasks.push(tokio::spawn(async move {
            let half = PER_WRITER / 2;
            for i in 0..half {
                store
                    .add(NewMemory::new(
                        scope.clone(),
                        Role::User,
                        format!("w{w}-{i}"),
                    ))
                    .await?;
            }
            let batch = (half..PER_WRITER)
                .map(|i| NewMemory::new(scope.clone(), Role::User, format!("w{w}-{i}")))
                .collect();
            store.add_many(batch).await?;
            crate::Result::Ok(())
        }));
    }
    for t in tasks {
        match t.await {
            Ok(r) => fail(C, r)?,
            Err(e) => ensure!(C, false, "a writer task panicked or was cancelled: {e}"),
        }
    }
    let all = fail(C, s_list(&*store, scope.clone()).await)?;
    let ids: HashSet<_> = all.iter().map(|r| r.id.clone()).collect();
    let got: HashSet<&str> = all.iter().map(|r| r.text.as_str()).collect();
    ensure!(
        C,
        all.len() == WRITERS * PER_WRITER,
        "{} writers x {} records left {} records",
        WRITERS,
        PER_WRITER,
        all.len()
    );
    ensure!(
        C,
        ids.len() == all.len(),
        "{} records share {} ids",
        all.len(),
        ids.len()
    );
    for w in 0..WRITERS {
        for i in 0..PER_WRITER {
            let t = format!("w{w}-{i}");
            ensure!(C, got.contains(t.as_str()), "record {t} is missing");
        }
    }
    // Each writer's records keep their order within the writer's session.
    let mine = fail(C, s_list(&*store, scope.with_session("w0")).await)?;
    let want: Vec<String> = (0..PER_WRITER).map(|i| format!("w0-{i}")).collect();
    ensure!(
        C,
        texts(&mine) == want.iter().map(String::as_str).collect::<Vec<_>>(),
        "writer 0's session: {:?}",
        texts(&mine)
    );
    Ok(())
}

async fn s_list(s: &dyn MemoryStore, scope: Scope) -> crate::Result<Vec<crate::MemoryRecord>> {
    s.list(ListQuery::new(scope)).await
}
