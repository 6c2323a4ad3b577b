//! The `local` provider: the built-in backend, opened once per process and shared.
