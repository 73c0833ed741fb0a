//! CPU and memory of every worker process, sampled each heartbeat interval
//! and published in its backend's stats (what `resource-aware` reads).

use std::sync::Arc;
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio_util::sync::CancellationToken;

use super::Backends;

/// Samples every worker's CPU and RSS each `interval` until `stop`.
pub async fn run(backends: Arc<Backends>, interval: Duration, stop: CancellationToken) {
    let mut sys = System::new();
    crate::shutdown::every(interval, &stop, || {
        let list = backends.load();
        let pids: Vec<Pid> = list
            .iter()
            .map(|b| b.pid())
            .filter(|&p| p != 0)
            .map(Pid::from_u32)
            .collect();
        if !pids.is_empty() {
            sys.refresh_processes_specifics(
                ProcessesToUpdate::Some(&pids),
                true,
                ProcessRefreshKind::nothing().with_cpu().with_memory(),
            );
            for b in list.iter().filter(|b| b.pid() != 0) {
                if let Some(p) = sys.process(Pid::from_u32(b.pid())) {
                    b.sampled((p.cpu_usage() * 10.0) as u32, p.memory());
                }
            }
        }
        std::future::ready(())
    })
    .await;
}
