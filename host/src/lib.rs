//! Switchyard: a load balancer and worker supervisor whose every routing
//! decision is made by a hot-swappable WebAssembly module.
//!
//! # Layout
//! - [`strategy`]: the strategy engine: loads, validates and hot-swaps
//!   WebAssembly strategies and asks them for decisions under a fuel budget,
//!   with a native fallback.
#![deny(missing_docs)]

pub mod strategy;
