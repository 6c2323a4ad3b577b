//! Evaluation for any-suite: datasets, metrics, a runner and reports, over any
//! `ChatService`.
//!
//! Part of [any-suite](https://docs.rs/any-core): small crates that each define one trait,
//! composed as `tower` layers over any model. Every crate of the family speaks the types of
//! [`any_core`].
//!
//! - [`text`]: the text-overlap metrics as plain functions — exact match, token F1, ROUGE-1/2/L
//!   (as Google's `rouge-score` computes them), BLEU (as `sacrebleu`), Levenshtein
//!   similarity — checked against those reference implementations on committed examples.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod text;
