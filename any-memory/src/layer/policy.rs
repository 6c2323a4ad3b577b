//! [`MemoryPolicy`]: how much a [`MemoryLayer`](super::MemoryLayer) recalls and how.

use std::fmt;

use any_core::BoxChatService;

use crate::Retrieval;

/// What the memory layer puts before each call.
///
/// - the **window**: the session's last `n` turns (a turn is a user message and the answer),
///   as real messages in order;
/// - **recall**: up to `k` older memories relevant to the new message, from all of the
///   user's sessions (the session's, when the request names no user), ranked by the
///   retrieval mode, in one system message;
/// - a **summary** of the session's turns older than the window, when a summariser is set;
///
/// all within a token budget, newest turns first, then recalled memories by rank. Tokens are
/// estimated as one per four bytes of text (what the budget is for is keeping context in
/// bounds; for an exact count, leave room).
///
/// ```
/// use any_memory::{MemoryPolicy, Retrieval};
/// let policy = MemoryPolicy::window(8).recall(4).token_budget(1500).retrieval(Retrieval::Hybrid);
/// assert_eq!(policy.window_turns(), 8);
/// ```
#[derive(Clone)]
pub struct MemoryPolicy {
    pub(crate) window: usize,
    pub(crate) recall: usize,
    pub(crate) retrieval: Retrieval,
    pub(crate) token_budget: usize,
    pub(crate) agent: Option<String>,
    pub(crate) summarizer: Option<BoxChatService>,
    pub(crate) summarize_after: usize,
}

impl fmt::Debug for MemoryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPolicy")
            .field("window", &self.window)
            .field("recall", &self.recall)
            .field("retrieval", &self.retrieval)
            .field("token_budget", &self.token_budget)
            .field("agent", &self.agent)
            .field("summarizer", &self.summarizer.is_some())
            .field("summarize_after", &self.summarize_after)
            .finish()
    }
}

impl Default for MemoryPolicy {
    /// The last 8 turns, 4 recalled memories by keyword, 2048 tokens.
    fn default() -> Self {
        MemoryPolicy {
            window: 8,
            recall: 4,
            retrieval: Retrieval::Keyword,
            token_budget: 2048,
            agent: None,
            summarizer: None,
            summarize_after: 512,
        }
    }
}

impl MemoryPolicy {
    /// The session's last `turns` turns (and the defaults for the rest).
    pub fn window(turns: usize) -> Self {
        MemoryPolicy {
            window: turns,
            ..Self::default()
        }
    }

    /// Recalls up to `k` older memories relevant to the new message (0: none).
    pub fn recall(mut self, k: usize) -> Self {
        self.recall = k;
        self
    }

    /// Ranks recalled memories this way. Vector and hybrid need a store that can embed the
    /// query: wrap it in [`Embedded`](crate::Embedded).
    pub fn retrieval(mut self, mode: Retrieval) -> Self {
        self.retrieval = mode;
        self
    }

    /// Spends at most `tokens` (estimated) on recalled context.
    pub fn token_budget(mut self, tokens: usize) -> Self {
        self.token_budget = tokens;
        self
    }

    /// Records turns under this agent, and recalls only its memories.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Summarises the session's turns that have left the window with `model`, once they add
    /// up to more than `after_tokens`; the summary is kept in the store (a system record with
    /// metadata `kind: "summary"`) and put before the window on every later call.
    pub fn summarize_with(mut self, model: BoxChatService, after_tokens: usize) -> Self {
        self.summarizer = Some(model);
        self.summarize_after = after_tokens;
        self
    }

    /// The number of turns in the window.
    pub fn window_turns(&self) -> usize {
        self.window
    }
}

/// The estimated tokens of `text`: one per four bytes, at least one for non-empty text.
pub(crate) fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}
