//! Placeholder; the push benchmark is written next.
fn main() {}
