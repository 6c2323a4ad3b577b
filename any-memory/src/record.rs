//! What a store keeps: [`MemoryRecord`], who it belongs to ([`Scope`]), and the inputs that
//! create and change one ([`NewMemory`], [`MemoryUpdate`]).

use std::time::{SystemTime, UNIX_EPOCH};

use any_core::Role;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{MemoryError, Result};

/// The id a store gave a record. Stores choose the form (a row number, a UUID); callers
/// treat it as opaque text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemoryId(pub String);

impl std::fmt::Display for MemoryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MemoryId {
    fn from(s: &str) -> Self {
        MemoryId(s.to_owned())
    }
}

impl From<String> for MemoryId {
    fn from(s: String) -> Self {
        MemoryId(s)
    }
}

/// Who a record belongs to: a user, an agent, a session (one conversation), in any
/// combination.
///
/// A record is added with a scope that names at least one of the three. A query's scope
/// selects the records whose fields equal every field the query names; a field the query
/// leaves unset matches anything. So `Scope::user("ada")` finds all of Ada's records across
/// her sessions, and `Scope::session("s1")` one conversation's.
///
/// ```
/// use any_memory::Scope;
/// let turn = Scope::user("ada").with_session("s1");
/// assert!(Scope::user("ada").contains(&turn));
/// assert!(!Scope::session("s2").contains(&turn));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// The end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The agent (or application) that remembers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The session: one conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl Scope {
    /// A user's records.
    pub fn user(user: impl Into<String>) -> Self {
        Scope {
            user: Some(user.into()),
            ..Scope::default()
        }
    }

    /// An agent's records.
    pub fn agent(agent: impl Into<String>) -> Self {
        Scope {
            agent: Some(agent.into()),
            ..Scope::default()
        }
    }

    /// A session's records.
    pub fn session(session: impl Into<String>) -> Self {
        Scope {
            session: Some(session.into()),
            ..Scope::default()
        }
    }

    /// The set parts of the scope as (column, value), for the SQL stores' `WHERE` clauses
    /// (their tables are aliased `m`).
    pub(crate) fn sql_conditions(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("m.user_id", &self.user),
            ("m.agent_id", &self.agent),
            ("m.session_id", &self.session),
        ]
        .into_iter()
        .filter_map(|(column, value)| value.as_ref().map(|v| (column, v)))
    }

    /// This scope, narrowed to a user.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// This scope, narrowed to an agent.
    pub fn with_agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// This scope, narrowed to a session.
    pub fn with_session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Whether no field is set (such a query scope matches every record).
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.agent.is_none() && self.session.is_none()
    }

    /// Whether a record added under `record` is selected by this (query) scope.
    pub fn contains(&self, record: &Scope) -> bool {
        let field = |q: &Option<String>, r: &Option<String>| q.is_none() || q == r;
        field(&self.user, &record.user)
            && field(&self.agent, &record.agent)
            && field(&self.session, &record.session)
    }

    /// Fails unless at least one field is set: what `add` and `clear` require, so a record
    /// always belongs to someone and nothing clears every scope by accident.
    ///
    /// # Errors
    /// [`MemoryError::InvalidInput`] saying what `what` needed.
    pub fn require_some(&self, what: &str) -> Result<()> {
        if self.is_empty() {
            return Err(MemoryError::InvalidInput(format!(
                "{what} needs a scope naming a user, an agent or a session; the scope is empty"
            )));
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One remembered item: a conversation turn, a fact, a summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// The store's id for it.
    pub id: MemoryId,
    /// Who it belongs to.
    pub scope: Scope,
    /// Who said it (a fact or a summary is usually [`Role::System`]).
    pub role: Role,
    /// What is remembered.
    pub text: String,
    /// Anything else, as a JSON object; [`Filter`](crate::Filter)s select on it.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// When it was added, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When it last changed, in milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// Its embedding, where one was given or computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// A record to add: [`MemoryStore::add`](crate::MemoryStore::add) gives it an id and times.
///
/// ```
/// use any_core::Role;
/// use any_memory::{NewMemory, Scope};
/// let fact = NewMemory::new(Scope::user("ada"), Role::User, "I am allergic to peanuts")
///     .metadata("kind", "fact");
/// assert_eq!(fact.metadata["kind"], "fact");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMemory {
    /// Who it belongs to; at least one field set.
    pub scope: Scope,
    /// Who said it.
    pub role: Role,
    /// What to remember.
    pub text: String,
    /// Anything else, as a JSON object.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Its embedding, if the caller has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// When it happened, in milliseconds since the Unix epoch; `None` means now. Set it to
    /// import history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

impl NewMemory {
    /// A record of `text` said by `role`, in `scope`.
    pub fn new(scope: Scope, role: Role, text: impl Into<String>) -> Self {
        NewMemory {
            scope,
            role,
            text: text.into(),
            metadata: Map::new(),
            embedding: None,
            created_at: None,
        }
    }

    /// Sets one metadata key.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the embedding.
    pub fn embedding(mut self, embedding: Vec<f32>) -> Self {
        self.embedding = Some(embedding);
        self
    }

    /// Sets when it happened (milliseconds since the Unix epoch).
    pub fn created_at(mut self, millis: i64) -> Self {
        self.created_at = Some(millis);
        self
    }

    /// Checks what every store requires: a scope, and an embedding with finite values.
    ///
    /// # Errors
    /// [`MemoryError::InvalidInput`] naming the problem.
    pub fn validate(&self) -> Result<()> {
        self.scope.require_some("a memory record")?;
        if let Some(e) = &self.embedding {
            check_embedding(e)?;
        }
        Ok(())
    }

    /// The record this becomes, with `id` and the time `now` (unless it has its own).
    pub fn into_record(self, id: MemoryId, now: i64) -> MemoryRecord {
        let created = self.created_at.unwrap_or(now);
        MemoryRecord {
            id,
            scope: self.scope,
            role: self.role,
            text: self.text,
            metadata: self.metadata,
            created_at: created,
            updated_at: created,
            embedding: self.embedding,
        }
    }
}

/// Checks an embedding: not empty, every value finite.
pub(crate) fn check_embedding(e: &[f32]) -> Result<()> {
    if e.is_empty() {
        return Err(MemoryError::InvalidInput("an embedding is empty".into()));
    }
    if let Some(i) = e.iter().position(|v| !v.is_finite()) {
        return Err(MemoryError::InvalidInput(format!(
            "an embedding has a non-finite value ({}) at index {i}",
            e[i]
        )));
    }
    Ok(())
}

/// A change to a record: each field set replaces the record's; `updated_at` becomes now.
///
/// Changing the text without giving an embedding **removes** the old embedding (it would
/// describe the old text); [`Embedded`](crate::Embedded) computes the new one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryUpdate {
    /// The new text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The new metadata (replacing the whole object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// The new embedding: `Some(None)` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Option<Vec<f32>>>,
}

impl MemoryUpdate {
    /// A change of text.
    pub fn text(text: impl Into<String>) -> Self {
        MemoryUpdate {
            text: Some(text.into()),
            ..Default::default()
        }
    }

    /// A change of metadata.
    pub fn metadata(metadata: Map<String, Value>) -> Self {
        MemoryUpdate {
            metadata: Some(metadata),
            ..Default::default()
        }
    }

    /// Applies the change to `record` at time `now`. Stores that hold records as values use
    /// it so every store updates alike.
    ///
    /// # Errors
    /// [`MemoryError::InvalidInput`] when the new embedding is empty or not finite.
    pub fn apply(self, record: &mut MemoryRecord, now: i64) -> Result<()> {
        if let Some(Some(e)) = &self.embedding {
            check_embedding(e)?;
        }
        if let Some(text) = self.text {
            if self.embedding.is_none() && text != record.text {
                record.embedding = None;
            }
            record.text = text;
        }
        if let Some(m) = self.metadata {
            record.metadata = m;
        }
        if let Some(e) = self.embedding {
            record.embedding = e;
        }
        record.updated_at = now.max(record.created_at);
        Ok(())
    }
}

/// The role as stored (`"user"`, ...), and back.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn role_from_str(s: &str) -> Result<Role> {
    Ok(match s {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(MemoryError::InvalidInput(format!(
                "unknown role `{other}` (expected system, user, assistant or tool)"
            )));
        }
    })
}
