//! Guardrails for any-suite: one verdict shape for every guardrail, composed as a tower layer.
//!
//! Part of [any-suite](https://docs.rs/any-core): small crates that each define one trait,
//! composed as `tower` layers over any model. Every crate of the family speaks the types of
//! [`any_core`].
//!
//! **Status: not yet implemented.** This crate reserves its place in the family and holds no
//! API yet: the `Guardrail` trait, the built-in guardrails (PII, secrets, prompt injection, Unicode, deny lists, JSON Schema) and `GuardLayer` arrive with their issue. The verdict type they all return already exists: [`any_core::Verdict`]. It has no feature flags.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
