//! Protocol rules that sit beside hyper: the strict HTTP/1.1 request guard.
//! Pure Rust (no PyO3), so it is unit-tested and fuzzed on its own.

pub mod http1_guard;
