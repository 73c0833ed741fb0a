//! `resource-aware`: lowest weighted score of CPU, memory and connections.

use switchyard_guest::{Candidate, Input, Strategy, reject};

use crate::config;

/// Lowest weighted score of CPU, memory and open connections, each normalised
/// to the busiest eligible backend.
pub struct ResourceAware {
    /// Weight of CPU in the score.
    pub cpu: u64,
    /// Weight of resident memory.
    pub mem: u64,
    /// Weight of open connections.
    pub conn: u64,
}

impl Default for ResourceAware {
    fn default() -> Self {
        ResourceAware {
            cpu: 50,
            mem: 30,
            conn: 20,
        }
    }
}

impl Strategy for ResourceAware {
    // The stats, and the failed table `eligible` reads; no request strings.
    fn reads(&self) -> u32 {
        switchyard_guest::READS_CANDIDATES | switchyard_guest::READS_REQUEST
    }

    fn configure(&mut self, config: &[u8]) -> Result<(), i32> {
        for (key, value) in config::pairs(config) {
            let v = config::number(value)
                .ok_or_else(|| reject(2, "a weight must be a whole number (cpu=50)"))?;
            match key {
                b"cpu" => self.cpu = v,
                b"mem" => self.mem = v,
                b"conn" => self.conn = v,
                _ => return Err(reject(3, "unknown key; expected cpu=N, mem=N and conn=N")),
            }
        }
        if self.cpu + self.mem + self.conn == 0 {
            return Err(reject(4, "the weights cpu, mem and conn are all 0"));
        }
        Ok(())
    }

    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let cands = input.candidates();
        let n = cands.len();
        let (mut max_cpu, mut max_rss, mut max_conn) = (1u64, 1u64, 1u64);
        input.scan_eligible_from(0, |_, c| {
            max_cpu = max_cpu.max(c.cpu_permille() as u64);
            max_rss = max_rss.max(c.rss_bytes());
            max_conn = max_conn.max(c.active() as u64);
        });
        // Scores in 1/1000ths so that integer math keeps resolution.
        let score = |c: &Candidate<'_>| {
            self.cpu * (c.cpu_permille() as u64 * 1000 / max_cpu)
                + self.mem * (c.rss_bytes().saturating_mul(1000) / max_rss)
                + self.conn * (c.active() as u64 * 1000 / max_conn)
        };
        let start = if n == 0 {
            0
        } else {
            crate::below(input.random() as u32, n)
        };
        let mut best: Option<(usize, u64)> = None;
        input.scan_eligible_from(start, |i, c| {
            let s = score(&c) * 1000 / c.weight().max(1) as u64;
            if best.is_none_or(|(_, b)| s < b) {
                best = Some((i, s));
            }
        });
        best.map(|(i, _)| i)
    }
}
