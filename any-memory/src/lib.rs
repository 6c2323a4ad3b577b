//! Conversation memory for any-suite: stores, retrieval, and a tower layer that recalls and records.
//!
//! Part of [any-suite](https://docs.rs/any-core): small crates that each define one trait,
//! composed as `tower` layers over any model. Every crate of the family speaks the types of
//! [`any_core`].
//!
//! **Status: not yet implemented.** This crate reserves its place in the family and holds no
//! API yet: the `MemoryStore` trait, its in-memory, SQLite and PostgreSQL stores, retrieval and `MemoryLayer` arrive with their issue. It has no feature flags.
#![forbid(unsafe_code)]
