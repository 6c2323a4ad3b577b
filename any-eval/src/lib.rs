//! Evaluation for any-suite: datasets, metrics, runners and reports.
//!
//! Part of [any-suite](https://docs.rs/any-core): small crates that each define one trait,
//! composed as `tower` layers over any model. Every crate of the family speaks the types of
//! [`any_core`].
//!
//! **Status: not yet implemented.** This crate reserves its place in the family and holds no
//! API yet: datasets, metrics, the runner and reports arrive with their issue. It has no feature flags.
#![forbid(unsafe_code)]
