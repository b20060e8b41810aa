//! Benchmarks live in benches/; the `loadgen` binary's pieces live here so that
//! they are unit-tested.
pub mod loadgen;
