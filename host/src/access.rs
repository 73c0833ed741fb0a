//! The access log: one JSON line per connection (TCP mode) or per request
//! (HTTP mode), written off the byte path.
//!
//! The request path only fills an [`Entry`] (no formatting, no I/O) and
//! hands it to a bounded channel with `try_send`. A writer thread formats
//! and writes. When the writer falls behind, entries are dropped and
//! counted, never waited for: a slow disk must not slow the proxy. The
//! count of dropped lines is logged once a second while it grows.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Entries waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 64 * 1024;

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// One line of the access log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When the connection or request started.
    pub start: SystemTime,
    /// `tcp` (a spliced connection), `http1`, `http2` or `http3` (a request).
    pub mode: &'static str,
    /// The client.
    pub client: SocketAddr,
    /// HTTP mode: the method.
    pub method: Option<Box<str>>,
    /// HTTP mode: the path and query.
    pub path: Option<Box<str>>,
    /// HTTP mode: the response status.
    pub status: Option<u16>,
    /// The backend that served it, if one did.
    pub backend: Option<SocketAddr>,
    /// Decisions made (1, or more after failed attempts); 0 when none was.
    pub attempts: u32,
    /// Why the last decision was the native fallback's, if it was.
    pub fallback: Option<&'static str>,
    /// Bytes from the client (TCP mode; HTTP mode: the request body).
    pub bytes_in: u64,
    /// Bytes to the client (TCP mode; HTTP mode: the response body).
    pub bytes_out: u64,
    /// From start to the last byte.
    pub duration: Duration,
    /// Why it failed, if it did (the error kind).
    pub error: Option<&'static str>,
}

/// What the writer thread is sent.
enum Msg {
    /// A line to write.
    Entry(Entry),
    /// Flush what came before, then answer.
    Sync(SyncSender<()>),
}

/// The access log's sending end.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Opens `target` (a file is created if missing and appended to) and
    /// starts the writer thread.
    pub fn open(target: &Target) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            Target::Stdout => Box::new(std::io::stdout()),
            Target::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("switchyard-access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(AccessLog {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues `entry`; drops it (and counts it) if the writer is behind.
    pub fn log(&self, entry: Entry) {
        match self.tx.try_send(Msg::Entry(entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                static LIMIT: crate::telemetry::RateLimit = crate::telemetry::RateLimit::new(1);
                if LIMIT.allow().is_some() {
                    tracing::warn!(dropped = n, "access log behind; lines dropped");
                }
            }
        }
    }

    /// Waits (up to `timeout`) until every line queued so far is written
    /// and flushed: a stopping balancer calls it last, so the lines of the
    /// requests its shutdown cut are not lost with the process.
    pub fn sync(&self, timeout: Duration) {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Msg::Sync(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_loop(rx: Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = String::with_capacity(512);
    loop {
        // Flush whenever the queue runs dry, so lines show up promptly.
        let entry = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => e,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = out.flush();
                match rx.recv() {
                    Ok(e) => e,
                    Err(_) => break,
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let entry = match entry {
            Msg::Entry(e) => e,
            Msg::Sync(ack) => {
                let _ = out.flush();
                let _ = ack.send(());
                continue;
            }
        };
        line.clear();
        format(&entry, &mut line);
        if out.write_all(line.as_bytes()).is_err() {
            static LIMIT: crate::telemetry::RateLimit = crate::telemetry::RateLimit::new(1);
            if LIMIT.allow().is_some() {
                tracing::error!("cannot write the access log");
            }
        }
    }
    let _ = out.flush();
}

/// One JSON object and a newline.
fn format(e: &Entry, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "{{\"time\":\"{}\",\"mode\":\"{}\",\"client\":\"{}\"",
        rfc3339(e.start),
        e.mode,
        e.client
    );
    if let Some(m) = &e.method {
        out.push_str(",\"method\":");
        string(out, m);
    }
    if let Some(p) = &e.path {
        out.push_str(",\"path\":");
        string(out, p);
    }
    if let Some(s) = e.status {
        let _ = write!(out, ",\"status\":{s}");
    }
    match e.backend {
        Some(b) => {
            let _ = write!(out, ",\"backend\":\"{b}\"");
        }
        None => out.push_str(",\"backend\":null"),
    }
    let _ = write!(out, ",\"attempts\":{}", e.attempts);
    match e.fallback {
        Some(f) => {
            let _ = write!(out, ",\"fallback\":\"{f}\"");
        }
        None => out.push_str(",\"fallback\":null"),
    }
    let _ = write!(
        out,
        ",\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3}",
        e.bytes_in,
        e.bytes_out,
        e.duration.as_secs_f64() * 1000.0
    );
    if let Some(err) = e.error {
        let _ = write!(out, ",\"error\":\"{err}\"");
    }
    out.push_str("}\n");
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `2026-11-28T01:02:03.456Z`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_a_utc_time() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_827_723_456)),
            "2026-11-28T01:02:03.456Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        let mut line = String::new();
        format(
            &Entry {
                start: UNIX_EPOCH,
                mode: "http1",
                client: "127.0.0.1:4000".parse().unwrap(),
                method: Some("GET".into()),
                path: Some("/a\"b\\c\u{1}".into()),
                status: Some(200),
                backend: Some("127.0.0.1:3001".parse().unwrap()),
                attempts: 1,
                fallback: None,
                bytes_in: 0,
                bytes_out: 12,
                duration: Duration::from_micros(1500),
                error: None,
            },
            &mut line,
        );
        assert_eq!(
            line,
            "{\"time\":\"1970-01-01T00:00:00.000Z\",\"mode\":\"http1\",\"client\":\"127.0.0.1:4000\",\"method\":\"GET\",\"path\":\"/a\\\"b\\\\c\\u0001\",\"status\":200,\"backend\":\"127.0.0.1:3001\",\"attempts\":1,\"fallback\":null,\"bytes_in\":0,\"bytes_out\":12,\"duration_ms\":1.500}\n"
        );
    }
}
