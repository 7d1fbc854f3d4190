//! Shared input generators for the criterion benchmarks (see `benches/`).
