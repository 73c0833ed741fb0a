//! Byte offsets of ABI v1. `docs/abi.md` is the prose version of this file; the
//! two must agree, and `tests/abi_doc.rs` checks that every constant named
//! there has the value written there.
//!
//! Every integer is little-endian. Every offset is absolute: from the first byte
//! of the input buffer, so a guest in any language reads a field as
//! `load(base + offset)` with no pointer chasing.

/// The ABI version this crate speaks; `switchyard_abi_version()` returns it.
pub const ABI_VERSION: u32 = 1;

// ---- header: 64 bytes at offset 0 -------------------------------------------
/// `u16` ABI version of the layout that follows (1).
pub const H_VERSION: usize = 0;
/// `u16` size of this header in bytes (64). Later versions may grow it.
pub const H_HEADER_LEN: usize = 2;
/// `u32` total bytes of input, equal to the `len` passed to `switchyard_decide`.
pub const H_TOTAL_LEN: usize = 4;
/// `u32` number of candidate records.
pub const H_CANDIDATE_COUNT: usize = 8;
/// `u16` bytes between the starts of two candidate records (64 in v1). Guests
/// must index with this, not with 64, so later hosts can append fields.
pub const H_CANDIDATE_STRIDE: usize = 12;
/// `u16` parts of the input the host left out because the module declared
/// it does not read them (`READS_*` bits; see `switchyard_reads`). 0: every
/// part is present, as from hosts before the declaration existed.
pub const H_FLAGS: usize = 14;
/// `u32` offset of candidate record 0.
pub const H_CANDIDATES_OFFSET: usize = 16;
/// `u32` offset of the request section.
pub const H_REQUEST_OFFSET: usize = 20;
/// `u64` decision sequence number of this strategy generation, shared by all of
/// its pooled instances (so round-robin is exact across threads).
pub const H_SEQUENCE: usize = 24;
/// `u64` fresh random bits for this decision (no import needed for randomness).
pub const H_RANDOM: usize = 32;
/// `u64` host monotonic clock, milliseconds since the host started.
pub const H_NOW_MS: usize = 40;
/// Size of the v1 header.
pub const HEADER_LEN: usize = 64;

// ---- candidate record: 64 bytes each --------------------------------------
/// `u32` stable backend id (survives reordering and respawns of the same slot).
pub const C_ID: usize = 0;
/// `u32` supervised worker index, or `u32::MAX` for a static backend.
pub const C_WORKER: usize = 4;
/// `u32` flag bits, see [`FLAG_HEALTHY`] and [`FLAG_DRAINING`].
pub const C_FLAGS: usize = 8;
/// `u32` configured weight (default 1; 0 means "do not send new work").
pub const C_WEIGHT: usize = 12;
/// `u32` open client connections routed to this backend.
pub const C_ACTIVE: usize = 16;
/// `u32` requests in flight (equal to active connections in TCP mode).
pub const C_IN_FLIGHT: usize = 20;
/// `u64` requests or connections routed here since it started.
pub const C_TOTAL: usize = 24;
/// `u32` failures (connect errors, resets) in the recent window.
pub const C_FAILURES: usize = 32;
/// `u32` EWMA of connect latency, microseconds.
pub const C_EWMA_US: usize = 36;
/// `u32` CPU use of the worker process, permille of one core (1000 = one core).
pub const C_CPU_PERMILLE: usize = 40;
/// `u32` milliseconds since the last telemetry sample or health check.
pub const C_HEARTBEAT_AGE_MS: usize = 44;
/// `u64` resident set size of the worker process, bytes (0 if unknown).
pub const C_RSS_BYTES: usize = 48;
/// `u64` reserved, 0.
pub const C_RESERVED: usize = 56;
/// Size of a v1 candidate record.
pub const CANDIDATE_LEN: usize = 64;

// ---- parts of the input (`switchyard_reads`, `H_FLAGS`) ---------------------
/// The candidate records' stats (the count is always there).
pub const READS_CANDIDATES: u32 = 1 << 0;
/// The request's fixed fields: protocol, client address, attempt and the
/// failed table (which [`usable`]'s per-request rule needs).
pub const READS_REQUEST: u32 = 1 << 1;
/// Method, path and authority.
pub const READS_TARGET: u32 = 1 << 2;
/// The header table and its strings.
pub const READS_HEADERS: u32 = 1 << 3;
/// TLS SNI and ALPN.
pub const READS_TLS: u32 = 1 << 4;
/// The header's `sequence`: a count of the generation's decisions shared by
/// every thread (what makes round-robin exact). Keeping it costs a shared
/// counter per decision, so it is 0 for modules that do not read it.
pub const READS_SEQUENCE: u32 = 1 << 5;
/// Every part: what a module without `switchyard_reads` gets.
pub const READS_ALL: u32 =
    READS_CANDIDATES | READS_REQUEST | READS_TARGET | READS_HEADERS | READS_TLS | READS_SEQUENCE;

/// `H_FLAGS` bit: the header table holds only the headers whose names the
/// module listed in `switchyard_headers` (the other headers were left out).
pub const FLAG_HEADERS_NAMED: u32 = 1 << 6;
/// Longest list `switchyard_headers` may point at, bytes before its NUL.
pub const HEADER_NAMES_MAX_LEN: usize = 1024;
/// Most names `switchyard_headers` may list.
pub const HEADER_NAMES_MAX: usize = 32;

/// Candidate flag: passes health checks.
pub const FLAG_HEALTHY: u32 = 1 << 0;
/// Candidate flag: being drained; prefer others.
pub const FLAG_DRAINING: u32 = 1 << 1;

/// The one eligibility rule, shared by the SDK's views, the built-ins and
/// the host: a candidate may take new work when it is healthy, not draining
/// and weighted above zero. (A request also skips candidates that already
/// failed for it; see `Input::eligible`.)
#[inline]
pub const fn usable(flags: u32, weight: u32) -> bool {
    flags & (FLAG_HEALTHY | FLAG_DRAINING) == FLAG_HEALTHY && weight > 0
}

// ---- request section: 96 fixed bytes, then tables and string bytes ---------
/// `u8` protocol, see [`crate::Protocol`].
pub const R_PROTOCOL: usize = 0;
/// `u8` client address family: 0 unknown, 4 IPv4, 6 IPv6.
pub const R_CLIENT_FAMILY: usize = 1;
/// `u16` client port.
pub const R_CLIENT_PORT: usize = 2;
/// `u32` attempt number: 0 for the first decision, 1 for the first retry, ...
pub const R_ATTEMPT: usize = 4;
/// `[u8; 16]` client address: IPv4 in the first 4 bytes, IPv6 in all 16.
pub const R_CLIENT_ADDR: usize = 8;
/// `u32` number of headers.
pub const R_HEADER_COUNT: usize = 24;
/// `u32` offset of the header table: `header_count` entries of 16 bytes,
/// each `u32 name_off, u32 name_len, u32 value_off, u32 value_len`.
pub const R_HEADERS_OFFSET: usize = 28;
/// `u32` number of candidate indexes that already failed for this request.
pub const R_FAILED_COUNT: usize = 32;
/// `u32` offset of the failed table: `failed_count` `u32` candidate indexes.
pub const R_FAILED_OFFSET: usize = 36;
/// String `(u32 off, u32 len)`: method (`GET`), empty if not HTTP.
pub const R_METHOD: usize = 40;
/// String: path with query (`/a?b=1`).
pub const R_PATH: usize = 48;
/// String: authority (`Host` header or `:authority`).
pub const R_AUTHORITY: usize = 56;
/// String: TLS server name indication, empty if none.
pub const R_SNI: usize = 64;
/// String: TLS ALPN protocols offered, comma separated (`h2,http/1.1`).
pub const R_ALPN: usize = 72;
/// 16 reserved bytes, 0.
pub const R_RESERVED: usize = 80;
/// Size of the fixed part of the v1 request section.
pub const REQUEST_FIXED_LEN: usize = 96;
/// Size of one header table entry.
pub const HEADER_ENTRY_LEN: usize = 16;
