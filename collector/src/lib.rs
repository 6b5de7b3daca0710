//! The collector: config loading and validation, receivers, extensions,
//! assembling and running pipelines. The `observatory` binary is a thin CLI
//! over it; the fuzz targets call the config loader through it.

// Calls into glibc (allocator.rs) are the only unsafe code.
#![deny(unsafe_code)]

pub mod allocator;
pub mod config;
pub mod extensions;
pub mod flow;
pub mod receivers;
pub mod registry;
pub mod service;
pub mod telemetry;
pub mod top;
