//! Benchmark suites, one per kernel family. Each suite times its kernels and the matching
//! library baselines in the same run ([`crate::timing`], [`crate::baseline`]) and produces a
//! [`crate::report::Report`] of its own row type.

pub mod bipolar;
pub mod common;
pub mod int8;
pub mod int_baselines;
pub mod weight_only;
