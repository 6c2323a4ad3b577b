//! `any memory`: add, search, list and delete memories in a SQLite file or a PostgreSQL
//! database, with JSON output.

use std::path::PathBuf;

use any_core::Role;
use any_memory::{
    Embedded, ListQuery, MemoryId, MemoryStore, NewMemory, PostgresStore, Retrieval, Scope,
    SearchQuery, SqliteStore,
};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

/// `any memory`.
#[derive(Debug, Args)]
pub(crate) struct MemoryArgs {
    #[command(subcommand)]
    command: MemoryCommand,
}

/// Where the memories are and whose they are: every subcommand's options.
#[derive(Debug, Args)]
struct StoreArgs {
    /// The store: a SQLite file (created if missing) or a `postgres://` URL.
    #[arg(long, value_name = "PATH|URL", env = "ANY_MEMORY_DB")]
    db: String,
    /// The session (one conversation).
    #[arg(long)]
    session: Option<String>,
    /// The user.
    #[arg(long)]
    user: Option<String>,
    /// The agent.
    #[arg(long)]
    agent: Option<String>,
    /// Embed with this model (`provider:model`; `local` is the local sentence encoder,
    /// all-MiniLM-L6-v2) for vector and hybrid search; records added with it get embeddings.
    #[arg(long, value_name = "MODEL")]
    embedder: Option<String>,
}

#[derive(Debug, Subcommand)]
enum MemoryCommand {
    /// Add TEXT; prints the stored record.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        /// Who said it.
        #[arg(long, value_enum, default_value_t = RoleArg::User)]
        role: RoleArg,
        /// Metadata as KEY=VALUE (VALUE parsed as JSON when it is JSON, else a string);
        /// repeatable.
        #[arg(long = "meta", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
        /// What to remember.
        text: String,
    },
    /// Search for QUERY; prints the scored records, best first.
    Search {
        #[command(flatten)]
        store: StoreArgs,
        /// How to rank: keyword, vector, hybrid (these two need --embedder) or recent.
        #[arg(long, value_enum, default_value_t = ModeArg::Keyword)]
        mode: ModeArg,
        /// At most this many results.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// What to look for.
        query: String,
    },
    /// List records in time order; prints them as a JSON array.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
        /// Newest first.
        #[arg(long)]
        newest_first: bool,
    },
    /// Delete the record ID, or with --all every record of the scope; prints how many went.
    Delete {
        #[command(flatten)]
        store: StoreArgs,
        /// Delete every record the scope (--session, --user, --agent) selects.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// The record's id.
        id: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    User,
    Assistant,
    System,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Keyword,
    Vector,
    Hybrid,
    Recent,
}

impl StoreArgs {
    fn scope(&self) -> Scope {
        Scope {
            user: self.user.clone(),
            agent: self.agent.clone(),
            session: self.session.clone(),
        }
    }

    async fn open(&self) -> Result<Box<dyn MemoryStore>> {
        let store: Box<dyn MemoryStore> = if self.db.starts_with("postgres://")
            || self.db.starts_with("postgresql://")
        {
            Box::new(PostgresStore::connect(&self.db).await?)
        } else {
            let path = PathBuf::from(&self.db);
            Box::new(
                SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?,
            )
        };
        Ok(match &self.embedder {
            Some(id) => Box::new(Embedded::new(store, any_llm::embedder(id)?)),
            None => store,
        })
    }
}

fn print(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) async fn run(args: MemoryArgs) -> Result<()> {
    match args.command {
        MemoryCommand::Add {
            store,
            role,
            metadata,
            text,
        } => {
            let role = match role {
                RoleArg::User => Role::User,
                RoleArg::Assistant => Role::Assistant,
                RoleArg::System => Role::System,
            };
            let mut memory = NewMemory::new(store.scope(), role, text);
            for pair in metadata {
                let Some((key, value)) = pair.split_once('=') else {
                    bail!("--meta `{pair}`: expected KEY=VALUE");
                };
                let value = serde_json::from_str(value)
                    .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
                memory.metadata.insert(key.to_owned(), value);
            }
            print(&store.open().await?.add(memory).await?)
        }
        MemoryCommand::Search {
            store,
            mode,
            top_k,
            query,
        } => {
            let mode = match mode {
                ModeArg::Keyword => Retrieval::Keyword,
                ModeArg::Vector => Retrieval::Vector,
                ModeArg::Hybrid => Retrieval::Hybrid,
                ModeArg::Recent => Retrieval::Recent,
            };
            if mode.needs_vector() && store.embedder.is_none() {
                bail!(
                    "--mode {} needs --embedder MODEL to embed the query",
                    mode.as_str()
                );
            }
            let q = SearchQuery::new(store.scope(), mode)
                .with_text(query)
                .top_k(top_k);
            print(&store.open().await?.search(q).await?)
        }
        MemoryCommand::List {
            store,
            limit,
            newest_first,
        } => {
            let mut q = ListQuery::new(store.scope());
            q.limit = limit;
            q.newest_first = newest_first;
            print(&store.open().await?.list(q).await?)
        }
        MemoryCommand::Delete { store, all, id } => {
            let deleted = match (all, id) {
                (true, _) => store.open().await?.clear(&store.scope()).await?,
                (false, Some(id)) => u64::from(store.open().await?.delete(&MemoryId(id)).await?),
                (false, None) => {
                    bail!("give the record's ID, or --all to delete the scope's records")
                }
            };
            print(&serde_json::json!({ "deleted": deleted }))
        }
    }
}
