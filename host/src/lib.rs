//! Switchyard: a load balancer and worker supervisor whose every routing
//! decision is made by a hot-swappable WebAssembly module.
//!
//! # Layout
//! - [`balancer`]: the embeddable entry point, `Balancer::builder()` → `run()`.
//! - [`config`]: `RawConfig` (TOML, flags) validated into `Config`.
//! - [`proxy`]: the TCP listener and each connection's phases.
//! - [`sniff`]: what the first bytes are (HTTP/1 head, TLS ClientHello, opaque).
//! - [`strategy`]: the WebAssembly strategy engine: fuel, fallback, hot swap.
//! - [`backends`]: the backend set and the live stats strategies see.
//! - [`health`]: active checks and passive ejection.
//! - [`supervisor`]: worker processes: spawn, readiness, respawn, telemetry.
//! - [`demo`]: the built-in demo worker.
//! - [`shutdown`]: graceful and forced shutdown.
//! - `forward`: moving bytes both ways once routed (read/write, `splice(2)` for bulk).
//! - `watch`: debounced file watching for strategies and the backends file.
//!
//! # The request path
//! 1. `proxy` accepts (a connection permit first) and reads the first bytes.
//! 2. `sniff` classifies them and reads the head within timeouts and caps.
//! 3. `backends` snapshots every candidate's stats.
//! 4. `strategy` writes head and stats into a WebAssembly instance and calls it
//!    under a fuel budget (native fallback on any failure).
//! 5. `proxy` connects (retrying other candidates on failure); `forward` moves
//!    the bytes.
#![deny(missing_docs)]

pub mod backends;
pub mod balancer;
pub mod clock;
pub mod config;
pub mod demo;
mod forward;
pub mod health;
pub mod proxy;
pub mod shutdown;
pub mod sniff;
pub mod strategy;
pub mod supervisor;
pub mod sys;
mod watch;

pub use balancer::{Balancer, BalancerBuilder, BuildError};
pub use config::{Config, RawConfig};
pub use shutdown::ShutdownHandle;
