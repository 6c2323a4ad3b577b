//! Wire formats: the JSON that providers and the server put on the network, as Rust types
//! with conversions to and from the [`any_core`] vocabulary.
//!
//! These modules are always compiled (they need only `serde`), so a client provider and the
//! server share one copy of each format and cannot drift apart.

pub mod openai;
