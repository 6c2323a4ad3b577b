//! Run with `cargo run --release -p example-memory-chat` — then run it again.
//!
//! A chat on the local default model that remembers across restarts. The first run tells
//! the model a fact; every later run asks about it, and the memory layer recalls the earlier
//! turns from the SQLite file `memory-chat.db` (in the current directory). Pass your own
//! message as arguments to say something else.
//!
//! The same code on PostgreSQL, shared by any number of app instances:
//! `ANY_MEMORY_DB=postgres://user@host/db cargo run --release -p example-memory-chat`.

use any_core::{ChatRequest, ChatServiceExt, SessionId, UserId};
use any_memory::{
    ListQuery, MemoryPolicy, MemoryStore, PostgresStore, Scope, ServiceBuilderExt, SqliteStore,
};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: store
    let db = std::env::var("ANY_MEMORY_DB").unwrap_or_else(|_| "memory-chat.db".into());
    let store: Box<dyn MemoryStore> =
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            Box::new(PostgresStore::connect(&db).await?)
        } else {
            Box::new(SqliteStore::open(&db)?)
        };
    // ANCHOR_END: store
    let earlier = store
        .list(ListQuery::new(Scope::session("demo")))
        .await?
        .len();

    // ANCHOR: stack
    let chat = ServiceBuilder::new()
        .memory(store, MemoryPolicy::window(4).recall(3).token_budget(1024))
        .service(any_llm::local::default_model().await?);
    // ANCHOR_END: stack

    let said: Vec<String> = std::env::args().skip(1).collect();
    let message = match (said.is_empty(), earlier) {
        (false, _) => said.join(" "),
        (true, 0) => "Hi! My name is Ada and my cat is called Turing.".into(),
        (true, _) => "What is my cat called?".into(),
    };
    println!("{db}: {earlier} remembered records in session `demo`\n> {message}");

    // ANCHOR: ask
    let request = ChatRequest::builder()
        .system("You are a friendly assistant. Use what you remember about the user.")
        .user(message)
        .temperature(0.0)
        .max_tokens(48)
        .extension(SessionId("demo".into()))
        .extension(UserId("ada".into()))
        .build();
    let answer = chat.chat(request).await?;
    // ANCHOR_END: ask
    println!("{}", answer.text().trim());
    Ok(())
}
