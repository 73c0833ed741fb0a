//! Embedding Switchyard in a Rust program: two workers running as tasks in
//! this process (the built-in demo server), least-connections deciding every
//! connection, a graceful stop on Ctrl-C.
//!
//! Run: `cargo run -p switchyard-examples --example embed`, then
//! `curl localhost:3000/`.

use switchyard::config::RawConfig;
use switchyard::{Balancer, demo};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();

    let (_keep, stop) = tokio::sync::watch::channel(false);
    let balancer = Balancer::builder()
        .config(RawConfig {
            host: "127.0.0.1".into(),
            port: 3000,
            strategy: "builtin:least-connections".into(),
            ..RawConfig::default()
        })
        // Each worker is a future serving a loopback listener; Switchyard
        // publishes it to the strategy and restarts it if it ends.
        .in_process_workers(2, move |index, listener| {
            demo::serve(listener, demo::DemoWorker { index }, stop.clone())
        })
        .build()?;
    println!("listening on {}", balancer.local_addr());

    let shutdown = balancer.shutdown_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.graceful();
    });
    balancer.run().await?;
    Ok(())
}
