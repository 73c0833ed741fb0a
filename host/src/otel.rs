//! OpenTelemetry metrics over OTLP, when the standard variables ask for it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`;
//! `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and the rest as the SDK
//! reads them).
//!
//! Every instrument is observable: its callback reads the same figures as
//! `/metrics` (the per-thread counters of [`crate::metrics`], the
//! strategy's, each backend's) when the SDK's periodic reader collects, on
//! its own thread. Nothing is recorded on the request path. Histograms
//! cannot be observed in OpenTelemetry's API, so the sniff and decision
//! times go out as a count and a sum (their mean); `/metrics` has the
//! buckets.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use crate::backends::{Backend, Backends};
use crate::error::Kind;
use crate::metrics::{HttpVersion, METRICS, Path};
use crate::strategy::{FallbackReason, Strategy};

/// True if the environment asks for an OTLP metrics export.
pub fn wanted() -> bool {
    let set = |v: &str| std::env::var(v).is_ok_and(|s| !s.trim().is_empty());
    let off = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_METRICS_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !off && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
}

/// Starts the export if [`wanted`]; the provider flushes and stops when
/// shut down (or dropped).
pub fn start(strategy: Arc<Strategy>, backends: Arc<Backends>) -> Option<SdkMeterProvider> {
    if !wanted() {
        return None;
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    if protocol.starts_with("grpc") || protocol == "http/json" {
        tracing::warn!(
            protocol,
            "OTLP over {protocol} is not built in; exporting over http/protobuf"
        );
    }
    let exporter = match opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "OTLP metrics export not started");
            return None;
        }
    };
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter).build())
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(
                    std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "switchyard".into()),
                )
                .build(),
        )
        .build();
    instruments(&provider.meter("switchyard"), strategy, backends);
    tracing::info!(
        endpoint = std::env::var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .unwrap_or_default(),
        "exporting metrics over OTLP"
    );
    Some(provider)
}

fn kv(key: &'static str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(key, value)
}

// No address: a worker's changes on every rolling reload, which would start
// new series (as on `/metrics`, where it is on `switchyard_backend_info`).
fn backend_attrs(b: &Backend) -> [KeyValue; 2] {
    [
        kv("backend", b.name().to_string()),
        kv("id", b.id().to_string()),
    ]
}

/// Registers every instrument; the meter keeps their callbacks.
fn instruments(meter: &Meter, strategy: Arc<Strategy>, backends: Arc<Backends>) {
    meter
        .u64_observable_counter("switchyard.connections")
        .with_description("Client connections, by how they were served.")
        .with_unit("{connection}")
        .with_callback(|o| {
            for p in Path::ALL {
                o.observe(METRICS.connections(p), &[kv("path", p.as_str())]);
            }
        })
        .build();
    meter
        .i64_observable_up_down_counter("switchyard.connections.active")
        .with_description("Client connections open now.")
        .with_unit("{connection}")
        .with_callback(|o| {
            for p in Path::ALL {
                o.observe(METRICS.open(p) as i64, &[kv("path", p.as_str())]);
            }
        })
        .build();
    meter
        .u64_observable_counter("switchyard.requests")
        .with_description("Requests served in HTTP mode, each a strategy decision.")
        .with_unit("{request}")
        .with_callback(|o| {
            for v in HttpVersion::ALL {
                o.observe(METRICS.requests(v), &[kv("protocol", v.as_str())]);
            }
        })
        .build();
    meter
        .u64_observable_counter("switchyard.proxy.errors")
        .with_description("Failures by kind.")
        .with_unit("{error}")
        .with_callback(|o| {
            for k in Kind::ALL {
                o.observe(METRICS.errors(k), &[kv("kind", k.as_str())]);
            }
        })
        .build();
    meter
        .u64_observable_counter("switchyard.sniff.count")
        .with_description("Heads sniffed (the count of the sniff-time histogram).")
        .with_unit("{connection}")
        .with_callback(|o| o.observe(METRICS.sniff.snapshot().count, &[]))
        .build();
    meter
        .f64_observable_counter("switchyard.sniff.time")
        .with_description("Total time spent sniffing heads (the sum of the sniff-time histogram).")
        .with_unit("s")
        .with_callback(|o| o.observe(METRICS.sniff.snapshot().sum_seconds, &[]))
        .build();

    let s = strategy.clone();
    meter
        .u64_observable_counter("switchyard.strategy.decisions")
        .with_description("Decisions, by who made them.")
        .with_unit("{decision}")
        .with_callback(move |o| {
            let st = s.status();
            let fallbacks: u64 = st.fallbacks.iter().map(|(_, n)| n).sum();
            o.observe(st.wasm_decisions, &[kv("by", "wasm")]);
            o.observe(fallbacks, &[kv("by", "fallback")]);
        })
        .build();
    let s = strategy.clone();
    meter
        .u64_observable_counter("switchyard.strategy.fallbacks")
        .with_description("Decisions the native fallback made, by reason.")
        .with_unit("{decision}")
        .with_callback(move |o| {
            let st = s.status();
            for r in FallbackReason::ALL {
                let n = st
                    .fallbacks
                    .iter()
                    .find(|(x, _)| *x == r)
                    .map_or(0, |(_, n)| *n);
                o.observe(n, &[kv("reason", r.as_str())]);
            }
        })
        .build();
    let s = strategy.clone();
    meter
        .u64_observable_counter("switchyard.strategy.swaps")
        .with_description("Modules swapped in (result=swapped) or refused (result=rejected).")
        .with_unit("{module}")
        .with_callback(move |o| {
            let st = s.status();
            o.observe(st.swaps, &[kv("result", "swapped")]);
            o.observe(st.rejections, &[kv("result", "rejected")]);
        })
        .build();
    meter
        .u64_observable_counter("switchyard.config.reloads")
        .with_description("Configuration reloads (SIGHUP), by result (applied or rejected).")
        .with_unit("{reload}")
        .with_callback(|o| {
            let (applied, rejected) = crate::reload::reloads();
            o.observe(applied, &[kv("result", "applied")]);
            o.observe(rejected, &[kv("result", "rejected")]);
        })
        .build();
    meter
        .u64_observable_gauge("switchyard.config.restart_pending")
        .with_description(
            "Settings changed in the configuration that take effect only after a restart.",
        )
        .with_callback(|o| {
            let n = crate::reload::last().map_or(0, |l| l.need_restart.len());
            o.observe(n as u64, &[]);
        })
        .build();
    let s = strategy.clone();
    meter
        .u64_observable_gauge("switchyard.strategy.degraded")
        .with_description("1 while the module fails repeatedly.")
        .with_callback(move |o| o.observe(s.status().degraded as u64, &[]))
        .build();
    let s = strategy.clone();
    meter
        .f64_observable_counter("switchyard.strategy.decision.time")
        .with_description("Total time of the sampled decisions (one in 16).")
        .with_unit("s")
        .with_callback(move |o| o.observe(s.status().latency.sum_seconds, &[]))
        .build();
    let s = strategy.clone();
    meter
        .u64_observable_counter("switchyard.strategy.decision.samples")
        .with_description("Decisions timed (one in 16).")
        .with_unit("{decision}")
        .with_callback(move |o| o.observe(s.status().latency.count, &[]))
        .build();
    let s = strategy;
    meter
        .u64_observable_counter("switchyard.shadow.decisions")
        .with_description("Shadow decisions: agreed, disagreed, failed.")
        .with_unit("{decision}")
        .with_callback(move |o| {
            if let Some(sh) = s.shadow_status() {
                let name = kv("shadow", sh.name.clone());
                o.observe(sh.agreed, &[kv("result", "agreed"), name.clone()]);
                o.observe(sh.disagreed, &[kv("result", "disagreed"), name.clone()]);
                o.observe(sh.failed, &[kv("result", "failed"), name]);
            }
        })
        .build();

    type Read = fn(&Backend, u64) -> u64;
    let per_backend: [(&'static str, &'static str, &'static str, Read); 6] = [
        (
            "switchyard.backend.up",
            "1 if alive and passing health checks.",
            "1",
            |b, _| b.is_up() as u64,
        ),
        (
            "switchyard.backend.draining",
            "1 while taking no new work.",
            "1",
            |b, _| b.is_draining() as u64,
        ),
        (
            "switchyard.backend.active",
            "Connections open to it.",
            "{connection}",
            |b, _| b.active() as u64,
        ),
        (
            "switchyard.backend.in_flight",
            "Requests routed to it and not finished.",
            "{request}",
            |b, n| b.stats(n).in_flight as u64,
        ),
        (
            "switchyard.backend.connect.latency",
            "Connect latency, moving average.",
            "us",
            |b, n| b.stats(n).ewma_us as u64,
        ),
        (
            "switchyard.backend.heartbeat.age",
            "Time since its last heartbeat.",
            "ms",
            |b, n| b.heartbeat_age_ms(n) as u64,
        ),
    ];
    for (name, help, unit, read) in per_backend {
        let list = backends.clone();
        meter
            .u64_observable_gauge(name)
            .with_description(help)
            .with_unit(unit)
            .with_callback(move |o: &dyn AsyncInstrument<u64>| {
                let now = crate::clock::now_ms();
                for b in list.load().iter() {
                    o.observe(read(b, now), &backend_attrs(b));
                }
            })
            .build();
    }
    let per_backend_total: [(&'static str, &'static str, &'static str, Read); 2] = [
        (
            "switchyard.backend.requests",
            "Connections (TCP mode) or requests (HTTP mode) routed to it.",
            "{request}",
            |b, _| b.total(),
        ),
        (
            "switchyard.backend.failures",
            "Failed connects and responses that never started.",
            "{failure}",
            |b, _| b.failures_total(),
        ),
    ];
    for (name, help, unit, read) in per_backend_total {
        let list = backends.clone();
        meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_unit(unit)
            .with_callback(move |o: &dyn AsyncInstrument<u64>| {
                for b in list.load().iter() {
                    o.observe(read(b, 0), &backend_attrs(b));
                }
            })
            .build();
    }
    let list = backends.clone();
    meter
        .u64_observable_gauge("switchyard.backends.healthy")
        .with_description("Backends up and not draining.")
        .with_callback(move |o| {
            let n = list
                .load()
                .iter()
                .filter(|b| b.is_up() && !b.is_draining())
                .count();
            o.observe(n as u64, &[]);
        })
        .build();
    let worker_attrs = |b: &Backend| [kv("worker", b.worker_index().unwrap_or(0) as i64)];
    let list = backends.clone();
    meter
        .f64_observable_gauge("switchyard.worker.cpu")
        .with_description("Worker CPU, share of one core.")
        .with_unit("1")
        .with_callback(move |o| {
            let now = crate::clock::now_ms();
            for b in list.load().iter().filter(|b| b.worker_index().is_some()) {
                o.observe(b.stats(now).cpu_permille as f64 / 1000.0, &worker_attrs(b));
            }
        })
        .build();
    let list = backends.clone();
    meter
        .u64_observable_gauge("switchyard.worker.memory")
        .with_description("Worker resident set size.")
        .with_unit("By")
        .with_callback(move |o| {
            let now = crate::clock::now_ms();
            for b in list.load().iter().filter(|b| b.worker_index().is_some()) {
                o.observe(b.stats(now).rss_bytes, &worker_attrs(b));
            }
        })
        .build();
    let list = backends.clone();
    meter
        .u64_observable_gauge("switchyard.worker.up")
        .with_description("1 if the worker process runs and accepts connections.")
        .with_callback(move |o| {
            for b in list.load().iter().filter(|b| b.worker_index().is_some()) {
                o.observe(b.is_alive() as u64, &worker_attrs(b));
            }
        })
        .build();
    let list = backends;
    meter
        .u64_observable_counter("switchyard.worker.restarts")
        .with_description("Times the worker process was started again.")
        .with_unit("{restart}")
        .with_callback(move |o| {
            for b in list.load().iter().filter(|b| b.worker_index().is_some()) {
                o.observe(b.restarts(), &worker_attrs(b));
            }
        })
        .build();
}
