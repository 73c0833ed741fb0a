//! Switchyard: a load balancer and worker supervisor whose every routing
//! decision is made by a hot-swappable WebAssembly module.
//!
//! # Layout
//! - [`balancer`]: the embeddable entry point, `Balancer::builder()` →
//!   `build()` → `run()`; wiring only.
//! - [`config`]: the options, declared once, and their sources (file, flags,
//!   environment), validated into a typed `Config`.
//! - [`listener`]: listening sockets, serving threads and accept loops.
//! - [`sniff`]: what a connection's first bytes are (HTTP/1 head, TLS
//!   ClientHello, opaque), read once within the head limits.
//! - [`proxy`]: a connection's phases after sniffing: route, first response,
//!   forward; PROXY v2.
//! - [`http`]: HTTP mode: hyper serves the connection, a decision per
//!   request, pooled keep-alive connections upstream.
//! - [`strategy`]: the WebAssembly strategy engine: fuel, fallback, hot swap.
//! - [`backends`]: the backend set and what happens to each backend; static
//!   backends, the worker supervisor, health checks, telemetry.
//! - [`error`]: the request path's error type: what, who, retryable, cause.
//! - [`shutdown`]: one tree of cancellation tokens for every part.
//! - [`telemetry`]: the log and its rate limits.
//! - [`metrics`]: counters and histograms (per-thread shards), rendered as
//!   Prometheus text.
//! - [`upgrade`]: handing the listening sockets to a new binary.
//! - [`access`]: the access log, written off the byte path.
//! - [`otel`]: the same figures over OTLP when `OTEL_EXPORTER_OTLP_*` asks.
//! - [`admin`]: the admin API (`/status`, `/metrics`, `PUT /strategy`,
//!   drains, the status page) that `switchyard ctl` talks to.
//! - [`clock`], [`sys`]: the process clock and RNG; cores and file limits.
//! - [`demo`]: the built-in demo worker.
//! - `watch`: debounced file watching for strategies and the backends file.
//!
//! `docs/architecture.md` draws the request path and who owns which state.
//!
//! # The request path
//! 1. `listener` takes a connection permit, then accepts.
//! 2. `sniff` reads the head within the head timeout and size cap.
//! 3. `proxy` snapshots every backend's stats (`backends`) and asks the
//!    `strategy`, which runs the WebAssembly module under a fuel budget (the
//!    native fallback on any failure).
//! 4. `proxy` connects, sends, waits for the first response byte while the
//!    client's bytes flow (retrying other candidates when allowed), then
//!    forwards both ways.
#![deny(missing_docs)]

pub mod access;
pub mod admin;
pub mod backends;
pub mod balancer;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod h3;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod otel;
pub mod proxy;
pub mod reload;
pub mod shutdown;
pub mod sniff;
pub mod strategy;
pub mod sys;
pub mod telemetry;
pub mod tls;
pub mod upgrade;
mod watch;

pub use balancer::{Balancer, BalancerBuilder, BuildError};
pub use config::{Config, RawConfig};
pub use shutdown::ShutdownHandle;
