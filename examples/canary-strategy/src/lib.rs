//! A custom strategy in a few lines: requests carrying `x-canary: 1` (or a
//! `canary=1` cookie) go to the last eligible backend, everything else to the
//! least-loaded of the others.
//!
//! Build: `cargo build -p canary-strategy --target wasm32-unknown-unknown --release`
//! Check: `switchyard strategy check target/wasm32-unknown-unknown/release/canary_strategy.wasm`
//! Serve: `switchyard serve --strategy target/wasm32-unknown-unknown/release/canary_strategy.wasm`
#![cfg_attr(target_arch = "wasm32", no_std)]

use switchyard_guest::{Input, Strategy};

#[derive(Default)]
pub struct Canary;

impl Strategy for Canary {
    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let req = input.request();
        let canary = req.header(b"x-canary") == Some(b"1") || req.cookie(b"canary") == Some(b"1");
        let n = input.candidates().len();
        let last = (0..n).rev().find(|&i| input.eligible(i))?;
        if canary {
            return Some(last);
        }
        (0..n)
            .filter(|&i| i != last && input.eligible(i))
            .min_by_key(|&i| input.candidates().get(i).map_or(u32::MAX, |c| c.active()))
            .or(Some(last))
    }

    // Only these two headers are written into the input (the host checks
    // the list when it loads the module).
    fn headers(&self) -> Option<&[u8]> {
        Some(b"x-canary,cookie")
    }
}

switchyard_guest::export_strategy!(Canary);
