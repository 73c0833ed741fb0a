//! The built-in `power-of-two` strategy as a WebAssembly module.
#![cfg_attr(target_arch = "wasm32", no_std)]
switchyard_guest::export_strategy!(switchyard_strategies::PowerOfTwo);
