//! The `openai` provider (to come with the wire types).
