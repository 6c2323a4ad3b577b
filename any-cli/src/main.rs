//! The `any` command.
fn main() {}
