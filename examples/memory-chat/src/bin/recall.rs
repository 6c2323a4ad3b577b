//! Run with `cargo run --release -p example-memory-chat --bin recall`
//!
//! Measures retrieval quality: recall@5 of keyword, vector and hybrid search on a long
//! multi-session conversation with planted facts and later questions about them
//! (`data/recall.jsonl`, made by `scripts/memory_recall_data.py`). A question counts as
//! recalled when the turn that planted its fact is among the five results. Embeddings come
//! from the local sentence encoder (all-MiniLM-L6-v2), or from `--embedder provider:model`
//! (`--embedder local:chat` for the chat model's hidden states). Prints a Markdown table.

use any_core::Role;
use any_memory::{
    Embedded, InMemoryStore, MemoryStore, NewMemory, Retrieval, Scope, SearchQuery, SqliteStore,
};
use serde_json::Value;

const DATA: &str = include_str!("../../data/recall.jsonl");
const K: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let embedder = match args.iter().position(|a| a == "--embedder") {
        Some(i) => {
            let id = args.get(i + 1).ok_or("--embedder needs a model id")?;
            any_llm::embedder(id)?
        }
        None => any_llm::embedder("local:default")?,
    };
    let user = Scope::user("bench");
    let mut turns = Vec::new();
    let mut questions = Vec::new();
    for (n, line) in DATA.lines().enumerate() {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let text = v["text"].as_str().ok_or("a line without text")?.to_owned();
        let fact = v["fact"].as_str().map(str::to_owned);
        match v["kind"].as_str() {
            Some("turn") => {
                let role = if v["role"] == "user" {
                    Role::User
                } else {
                    Role::Assistant
                };
                let session = v["session"].as_str().unwrap_or_default();
                let mut m = NewMemory::new(user.clone().with_session(session), role, text);
                if let Some(f) = fact {
                    m = m.metadata("fact", f);
                }
                turns.push(m);
            }
            _ => questions.push((text, fact.ok_or("a question without a fact")?)),
        }
    }
    // Embed once; both stores get the same vectors.
    let started = std::time::Instant::now();
    let embedded = Embedded::new(InMemoryStore::new(), embedder.clone());
    let turns = embedded.add_many(turns).await?;
    eprintln!(
        "embedded {} turns in {:.1}s",
        turns.len(),
        started.elapsed().as_secs_f64()
    );
    let sqlite = SqliteStore::open_in_memory()?;
    sqlite
        .add_many(
            turns
                .iter()
                .map(|r| NewMemory {
                    scope: r.scope.clone(),
                    role: r.role,
                    text: r.text.clone(),
                    metadata: r.metadata.clone(),
                    embedding: r.embedding.clone(),
                    created_at: Some(r.created_at),
                })
                .collect(),
        )
        .await?;
    let sqlite = Embedded::new(sqlite, embedder);

    println!(
        "| store | retrieval | recall@{K} ({} questions) |",
        questions.len()
    );
    println!("|---|---|---|");
    let stores: [(&str, &dyn MemoryStore); 2] = [("in-memory", &embedded), ("SQLite", &sqlite)];
    for (name, store) in stores {
        for mode in [Retrieval::Keyword, Retrieval::Vector, Retrieval::Hybrid] {
            let mut hits = 0;
            for (question, fact) in &questions {
                let q = SearchQuery::new(user.clone(), mode)
                    .with_text(question.clone())
                    .top_k(K);
                let found = store.search(q).await?;
                if found
                    .iter()
                    .any(|h| h.record.metadata.get("fact").and_then(Value::as_str) == Some(fact))
                {
                    hits += 1;
                }
            }
            let recall = hits as f64 / questions.len() as f64;
            println!(
                "| {name} | {} | {recall:.2} ({hits}/{}) |",
                mode.as_str(),
                questions.len()
            );
        }
    }
    Ok(())
}
