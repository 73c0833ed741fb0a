//! Embedding Switchyard in a Rust program: two in-process demo servers as
//! static backends, least-connections deciding every connection, a graceful
//! stop on Ctrl-C.
//!
//! Run: `cargo run -p switchyard-examples --example embed`, then
//! `curl localhost:3000/`.

use switchyard::config::{RawConfig, Workers};
use switchyard::{Balancer, demo};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();

    // Backends: two demo servers in this process, on ports the OS picks.
    let mut backends = Vec::new();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    for index in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        backends.push(listener.local_addr()?.to_string());
        tokio::spawn(demo::serve(
            listener,
            demo::DemoWorker { index },
            stop.clone(),
        ));
    }

    let balancer = Balancer::builder()
        .config(RawConfig {
            host: "127.0.0.1".into(),
            port: 3000,
            workers: Workers::Count(0),
            backends,
            strategy: "builtin:least-connections".into(),
            ..RawConfig::default()
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
