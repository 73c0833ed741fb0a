//! The writer side of ABI v1, used by the host (straight into guest memory) and
//! by native tests and benchmarks. Keeping reader and writer in one crate means
//! the layout is defined exactly once.

use crate::layout::*;

/// One backend's stats, as the host reports them to a strategy.
///
/// The struct *is* the v1 wire record: `repr(C)`, 64 bytes, fields at the
/// offsets of `layout::C_*` with no padding (checked at compile time below).
/// On a little-endian host a candidate table is therefore written with one
/// copy of the slice's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CandidateStats {
    /// Stable backend id.
    pub id: u32,
    /// Worker index or `u32::MAX`.
    pub worker: u32,
    /// [`FLAG_HEALTHY`], [`FLAG_DRAINING`].
    pub flags: u32,
    /// Weight, default 1.
    pub weight: u32,
    /// Open connections.
    pub active: u32,
    /// Requests in flight.
    pub in_flight: u32,
    /// Requests routed in total.
    pub total: u64,
    /// Recent failures.
    pub failures: u32,
    /// EWMA connect latency in microseconds.
    pub ewma_us: u32,
    /// CPU permille of one core.
    pub cpu_permille: u32,
    /// Milliseconds since the last telemetry sample.
    pub heartbeat_age_ms: u32,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Reserved, always 0.
    pub reserved: u64,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<CandidateStats>() == CANDIDATE_LEN);
    assert!(offset_of!(CandidateStats, id) == C_ID);
    assert!(offset_of!(CandidateStats, worker) == C_WORKER);
    assert!(offset_of!(CandidateStats, flags) == C_FLAGS);
    assert!(offset_of!(CandidateStats, weight) == C_WEIGHT);
    assert!(offset_of!(CandidateStats, active) == C_ACTIVE);
    assert!(offset_of!(CandidateStats, in_flight) == C_IN_FLIGHT);
    assert!(offset_of!(CandidateStats, total) == C_TOTAL);
    assert!(offset_of!(CandidateStats, failures) == C_FAILURES);
    assert!(offset_of!(CandidateStats, ewma_us) == C_EWMA_US);
    assert!(offset_of!(CandidateStats, cpu_permille) == C_CPU_PERMILLE);
    assert!(offset_of!(CandidateStats, heartbeat_age_ms) == C_HEARTBEAT_AGE_MS);
    assert!(offset_of!(CandidateStats, rss_bytes) == C_RSS_BYTES);
    assert!(offset_of!(CandidateStats, reserved) == C_RESERVED);
};

/// Writes a whole candidate table (`candidates.len() * 64` bytes).
#[inline]
pub fn encode_candidates(out: &mut [u8], candidates: &[CandidateStats]) {
    let out = &mut out[..candidates.len() * CANDIDATE_LEN];
    #[cfg(target_endian = "little")]
    {
        // SAFETY: `CandidateStats` is `repr(C)`, 64 bytes, with only integer
        // fields and no padding (the const block above proves the layout), so
        // its bytes are initialised and are exactly the little-endian wire
        // record on this little-endian target.
        let bytes =
            unsafe { core::slice::from_raw_parts(candidates.as_ptr().cast::<u8>(), out.len()) };
        out.copy_from_slice(bytes);
    }
    #[cfg(not(target_endian = "little"))]
    for (c, rec) in candidates.iter().zip(out.chunks_exact_mut(CANDIDATE_LEN)) {
        c.encode(rec.try_into().unwrap());
    }
}

impl CandidateStats {
    /// A healthy candidate with weight 1 and no load: handy in tests.
    pub const fn healthy(id: u32) -> CandidateStats {
        CandidateStats {
            id,
            worker: id,
            flags: FLAG_HEALTHY,
            weight: 1,
            active: 0,
            in_flight: 0,
            total: 0,
            failures: 0,
            ewma_us: 0,
            cpu_permille: 0,
            heartbeat_age_ms: 0,
            rss_bytes: 0,
            reserved: 0,
        }
    }

    /// Healthy, not draining and weight above zero ([`crate::layout::usable`]).
    #[inline]
    pub const fn usable(&self) -> bool {
        usable(self.flags, self.weight)
    }

    /// Writes this record in the v1 layout.
    #[inline]
    pub fn encode(&self, out: &mut [u8; CANDIDATE_LEN]) {
        let mut put32 = |off: usize, v: u32| out[off..off + 4].copy_from_slice(&v.to_le_bytes());
        put32(C_ID, self.id);
        put32(C_WORKER, self.worker);
        put32(C_FLAGS, self.flags);
        put32(C_WEIGHT, self.weight);
        put32(C_ACTIVE, self.active);
        put32(C_IN_FLIGHT, self.in_flight);
        put32(C_FAILURES, self.failures);
        put32(C_EWMA_US, self.ewma_us);
        put32(C_CPU_PERMILLE, self.cpu_permille);
        put32(C_HEARTBEAT_AGE_MS, self.heartbeat_age_ms);
        out[C_TOTAL..C_TOTAL + 8].copy_from_slice(&self.total.to_le_bytes());
        out[C_RSS_BYTES..C_RSS_BYTES + 8].copy_from_slice(&self.rss_bytes.to_le_bytes());
        out[C_RESERVED..C_RESERVED + 8].fill(0);
    }
}

/// What the host knows about a request when it has to choose a backend.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// Transport.
    pub protocol: crate::Protocol,
    /// HTTP method, empty if not HTTP.
    pub method: &'a [u8],
    /// Path with query.
    pub path: &'a [u8],
    /// Host / :authority.
    pub authority: &'a [u8],
    /// TLS SNI.
    pub sni: &'a [u8],
    /// TLS ALPN protocols, comma separated.
    pub alpn: &'a [u8],
    /// Client address.
    pub client: Option<core::net::SocketAddr>,
    /// Headers in arrival order; names are lower-cased on the wire.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// 0 on the first decision, then the retry number.
    pub attempt: u32,
    /// Candidate indexes that already failed for this request.
    pub failed: &'a [u32],
    /// The raw request head, if the strings above are slices of it: the
    /// encoder then copies it in one block and points into the copy instead
    /// of copying each string (the request path's fast case).
    pub raw: &'a [u8],
    /// The header names are lower-case already (HTTP/2 and HTTP/3 always
    /// are, and so is every name from the `http` crate): the encoder then
    /// copies them as they are instead of lower-casing each byte.
    pub names_lowercase: bool,
}

impl RequestHead<'_> {
    /// An empty opaque request (no head at all).
    pub const EMPTY: RequestHead<'static> = RequestHead {
        protocol: crate::Protocol::Opaque,
        method: b"",
        path: b"",
        authority: b"",
        sni: b"",
        alpn: b"",
        client: None,
        headers: &[],
        attempt: 0,
        failed: &[],
        raw: &[],
        names_lowercase: false,
    };

    /// True if `s` lies inside `raw`.
    #[inline]
    fn in_raw(&self, s: &[u8]) -> bool {
        let (r, p) = (self.raw.as_ptr() as usize, s.as_ptr() as usize);
        p >= r && p + s.len() <= r + self.raw.len()
    }

    /// Bytes a string takes outside the raw block.
    #[inline]
    fn extra(&self, s: &[u8]) -> usize {
        if s.is_empty() || self.in_raw(s) {
            0
        } else {
            s.len()
        }
    }

    /// Bytes the request section takes.
    pub fn encoded_len(&self) -> usize {
        let fixed =
            REQUEST_FIXED_LEN + self.headers.len() * HEADER_ENTRY_LEN + self.failed.len() * 4;
        if self.raw.is_empty() && self.headers.is_empty() {
            // No raw block to point into (a module that reads no headers):
            // every string is copied.
            return fixed
                + self.method.len()
                + self.path.len()
                + self.authority.len()
                + self.sni.len()
                + self.alpn.len();
        }
        let strings = self.raw.len()
            + self.extra(self.method)
            + self.extra(self.path)
            + self.extra(self.authority)
            + self.extra(self.sni)
            + self.extra(self.alpn)
            + self
                .headers
                .iter()
                .map(|(n, v)| self.extra(n) + self.extra(v))
                .sum::<usize>();
        fixed + strings
    }
}

impl<'a> RequestHead<'a> {
    /// This head with only the parts in `reads` (`READS_*` bits): the rest
    /// empty, as the host sends it to a module that declared `reads`.
    pub fn only(&self, reads: u32) -> RequestHead<'a> {
        use crate::layout::{READS_HEADERS, READS_REQUEST, READS_TARGET, READS_TLS};
        let mut r = *self;
        if reads & READS_REQUEST == 0 {
            r.protocol = crate::Protocol::Opaque;
            r.client = None;
            r.attempt = 0;
            r.failed = &[];
        }
        if reads & READS_TARGET == 0 {
            r.method = b"";
            r.path = b"";
            r.authority = b"";
        }
        if reads & READS_HEADERS == 0 {
            r.headers = &[];
            // The raw block is copied whole: without headers the few
            // strings left are cheaper copied one by one.
            r.raw = &[];
        }
        if reads & READS_TLS == 0 {
            r.sni = b"";
            r.alpn = b"";
        }
        r
    }
}

/// `listed` (a lower-case name from a list) is `name`; `lowercase` says
/// `name` is lower-case already, otherwise case is ignored. Lengths first:
/// most headers differ there.
#[inline]
fn same_name(listed: &[u8], name: &[u8], lowercase: bool) -> bool {
    listed.len() == name.len()
        && if lowercase {
            listed == name
        } else {
            listed.eq_ignore_ascii_case(name)
        }
}

/// True if `name` is one of `names`, a comma-separated list of lower-case
/// header names (a `switchyard_headers` declaration as the host keeps it).
/// `lowercase` says `name` is lower-case already; otherwise case is ignored.
#[inline]
pub fn is_named(names: &[u8], name: &[u8], lowercase: bool) -> bool {
    names
        .split(|&b| b == b',')
        .any(|n| same_name(n, name, lowercase))
}

/// Copies into `out` the headers that `names` lists (see [`is_named`]), in
/// their order, and returns how many there are: more than `out.len()`
/// when `out` is too small, in which case only the first ones are in it.
pub fn named_headers<'a>(
    headers: &[(&'a [u8], &'a [u8])],
    names: &[u8],
    lowercase: bool,
    out: &mut [(&'a [u8], &'a [u8])],
) -> usize {
    let mut k = 0;
    // One name, the usual list, is one length compare for most headers
    // (splitting the list for every header cost about 80 instructions a
    // header), so the list is looked at once.
    let single = !names.contains(&b',');
    for &(n, v) in headers {
        let hit = if single {
            same_name(names, n, lowercase)
        } else {
            is_named(names, n, lowercase)
        };
        if hit {
            if let Some(slot) = out.get_mut(k) {
                *slot = (n, v);
            }
            k += 1;
        }
    }
    k
}

/// Named headers kept in a small table on the stack before
/// [`with_named_headers`] takes a bigger one.
const NAMED_SMALL: usize = 16;
/// Most headers [`with_named_headers`] keeps: as many as the host parses.
pub const NAMED_MAX: usize = 128;

/// Runs `f` on `req` with only the headers `names` lists (see
/// [`is_named`]), as the host writes them for a module that declared
/// `switchyard_headers`. The raw head is left out: the few strings left are
/// cheaper copied one by one than the whole head.
pub fn with_named_headers<R>(
    req: &RequestHead<'_>,
    names: &[u8],
    f: impl FnOnce(&RequestHead<'_>) -> R,
) -> R {
    let mut small: [(&[u8], &[u8]); NAMED_SMALL] = [(b"", b""); NAMED_SMALL];
    let k = named_headers(req.headers, names, req.names_lowercase, &mut small);
    if k <= NAMED_SMALL {
        return f(&RequestHead {
            headers: &small[..k],
            raw: b"",
            ..*req
        });
    }
    let mut big: [(&[u8], &[u8]); NAMED_MAX] = [(b"", b""); NAMED_MAX];
    let k = named_headers(req.headers, names, req.names_lowercase, &mut big).min(NAMED_MAX);
    f(&RequestHead {
        headers: &big[..k],
        raw: b"",
        ..*req
    })
}

/// Runs `f` on `req` as the host sends it to a module that reads `reads`
/// and, if `names` is given, lists those headers (`switchyard_headers`):
/// the parts left out empty, only the listed headers. `f` also gets the
/// parts to give [`encode_parts`]: `reads`, with `FLAG_HEADERS_NAMED` when
/// the list applies (whenever the headers part is read, a request with no
/// headers included). The one place that rule is written, for the host's
/// call, its native twins and the benches.
pub fn as_declared<R>(
    req: &RequestHead<'_>,
    reads: u32,
    names: Option<&[u8]>,
    f: impl FnOnce(&RequestHead<'_>, u32) -> R,
) -> R {
    let req = req.only(reads);
    match names {
        Some(names) if reads & crate::layout::READS_HEADERS != 0 => {
            let parts = reads | crate::layout::FLAG_HEADERS_NAMED;
            if req.headers.is_empty() {
                return f(&req, parts);
            }
            with_named_headers(&req, names, |r| f(r, parts))
        }
        _ => f(&req, reads),
    }
}

/// Per-decision header values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta {
    /// Decision sequence number.
    pub sequence: u64,
    /// Random bits.
    pub random: u64,
    /// Host clock, ms.
    pub now_ms: u64,
}

/// Total input bytes for a request and `n` candidates.
pub fn encoded_len(req: &RequestHead<'_>, n: usize) -> usize {
    HEADER_LEN + n * CANDIDATE_LEN + req.encoded_len()
}

#[inline(always)]
fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline(always)]
fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline(always)]
fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Writes the header for `n` candidates followed by a request section of
/// `request_len` bytes. Returns the total length.
pub fn encode_header(buf: &mut [u8], n: usize, request_len: usize, meta: &Meta) -> usize {
    let request_offset = HEADER_LEN + n * CANDIDATE_LEN;
    let total = request_offset + request_len;
    // Built on the stack and written in one copy, as the request's fixed block.
    let mut h = [0u8; HEADER_LEN];
    put_u16(&mut h, H_VERSION, ABI_VERSION as u16);
    put_u16(&mut h, H_HEADER_LEN, HEADER_LEN as u16);
    put_u32(&mut h, H_TOTAL_LEN, total as u32);
    put_u32(&mut h, H_CANDIDATE_COUNT, n as u32);
    put_u16(&mut h, H_CANDIDATE_STRIDE, CANDIDATE_LEN as u16);
    put_u32(&mut h, H_CANDIDATES_OFFSET, HEADER_LEN as u32);
    put_u32(&mut h, H_REQUEST_OFFSET, request_offset as u32);
    put_u64(&mut h, H_SEQUENCE, meta.sequence);
    put_u64(&mut h, H_RANDOM, meta.random);
    put_u64(&mut h, H_NOW_MS, meta.now_ms);
    buf[..HEADER_LEN].copy_from_slice(&h);
    total
}

/// Writes the request section at absolute offset `at`; returns its length.
pub fn encode_request(buf: &mut [u8], at: usize, req: &RequestHead<'_>) -> usize {
    let headers_at = at + REQUEST_FIXED_LEN;
    let failed_at = headers_at + req.headers.len() * HEADER_ENTRY_LEN;
    let mut cursor = failed_at + req.failed.len() * 4;
    // The fixed block is built on the stack and written in one copy: its
    // stores need no bounds checks there, and this runs on every decision.
    let mut fixed = [0u8; REQUEST_FIXED_LEN];
    fixed[R_PROTOCOL] = req.protocol as u8;
    match req.client {
        Some(core::net::SocketAddr::V4(a)) => {
            fixed[R_CLIENT_FAMILY] = 4;
            fixed[R_CLIENT_ADDR..R_CLIENT_ADDR + 4].copy_from_slice(&a.ip().octets());
            put_u16(&mut fixed, R_CLIENT_PORT, a.port());
        }
        Some(core::net::SocketAddr::V6(a)) => {
            fixed[R_CLIENT_FAMILY] = 6;
            fixed[R_CLIENT_ADDR..R_CLIENT_ADDR + 16].copy_from_slice(&a.ip().octets());
            put_u16(&mut fixed, R_CLIENT_PORT, a.port());
        }
        None => {}
    }
    put_u32(&mut fixed, R_ATTEMPT, req.attempt);
    put_u32(&mut fixed, R_HEADER_COUNT, req.headers.len() as u32);
    put_u32(&mut fixed, R_HEADERS_OFFSET, headers_at as u32);
    put_u32(&mut fixed, R_FAILED_COUNT, req.failed.len() as u32);
    put_u32(&mut fixed, R_FAILED_OFFSET, failed_at as u32);
    for (k, f) in req.failed.iter().enumerate() {
        put_u32(buf, failed_at + 4 * k, *f);
    }
    let no_strings = req.raw.is_empty()
        && req.headers.is_empty()
        && req.method.is_empty()
        && req.path.is_empty()
        && req.authority.is_empty()
        && req.sni.is_empty()
        && req.alpn.is_empty();
    if no_strings {
        // A module that reads no request strings (most built-ins): every
        // string is (0, 0), as the zeroed block already says.
        buf[at..at + REQUEST_FIXED_LEN].copy_from_slice(&fixed);
        return cursor - at;
    }
    // The raw head first, in one copy; strings inside it are pointed at.
    let raw_at = cursor;
    buf[raw_at..raw_at + req.raw.len()].copy_from_slice(req.raw);
    cursor += req.raw.len();
    let raw_base = req.raw.as_ptr() as usize;
    let mut place = |buf: &mut [u8], s: &[u8], lower: bool| -> (u32, u32) {
        if s.is_empty() {
            return (0, 0);
        }
        let off = if req.in_raw(s) {
            raw_at + (s.as_ptr() as usize - raw_base)
        } else {
            buf[cursor..cursor + s.len()].copy_from_slice(s);
            cursor += s.len();
            cursor - s.len()
        };
        if lower {
            for b in &mut buf[off..off + s.len()] {
                // Branch-free ASCII lower-casing (vectorises).
                *b |= (b.is_ascii_uppercase() as u8) << 5;
            }
        }
        (off as u32, s.len() as u32)
    };
    for (field, s) in [
        (R_METHOD, req.method),
        (R_PATH, req.path),
        (R_AUTHORITY, req.authority),
        (R_SNI, req.sni),
        (R_ALPN, req.alpn),
    ] {
        let (off, len) = place(buf, s, false);
        put_u32(&mut fixed, field, off);
        put_u32(&mut fixed, field + 4, len);
    }
    buf[at..at + REQUEST_FIXED_LEN].copy_from_slice(&fixed);
    let lower = !req.names_lowercase;
    for (k, (name, value)) in req.headers.iter().enumerate() {
        let (no, nl) = place(buf, name, lower);
        let (vo, vl) = place(buf, value, false);
        let e = headers_at + k * HEADER_ENTRY_LEN;
        let rec: &mut [u8; HEADER_ENTRY_LEN] = (&mut buf[e..e + HEADER_ENTRY_LEN])
            .try_into()
            .expect("16-byte entry");
        rec[0..4].copy_from_slice(&no.to_le_bytes());
        rec[4..8].copy_from_slice(&nl.to_le_bytes());
        rec[8..12].copy_from_slice(&vo.to_le_bytes());
        rec[12..16].copy_from_slice(&vl.to_le_bytes());
    }
    cursor - at
}

/// Writes a whole input into `buf` (which must hold [`encoded_len`] bytes) and
/// returns its length.
pub fn encode(
    buf: &mut [u8],
    meta: &Meta,
    req: &RequestHead<'_>,
    candidates: &[CandidateStats],
) -> usize {
    encode_parts(buf, meta, req, candidates, crate::layout::READS_ALL)
}

/// [`encode`] with only the parts in `reads`; `req` must already be
/// [`RequestHead::only`]`(reads)` (its length is what the caller sized `buf`
/// for). Left-out parts are zero, and `H_FLAGS` names them, with
/// `FLAG_HEADERS_NAMED` when `reads` has it (see [`as_declared`]).
pub fn encode_parts(
    buf: &mut [u8],
    meta: &Meta,
    req: &RequestHead<'_>,
    candidates: &[CandidateStats],
    reads: u32,
) -> usize {
    let n = candidates.len();
    if reads & crate::layout::READS_CANDIDATES != 0 {
        encode_candidates(&mut buf[HEADER_LEN..], candidates);
    } else {
        buf[HEADER_LEN..HEADER_LEN + n * CANDIDATE_LEN].fill(0);
    }
    encode_all_but_candidates(buf, meta, req, n, reads)
}

/// [`encode_parts`] without writing the candidate table: the header for
/// `n` candidates and the request section after them. For a writer that
/// keeps the table in place between inputs and updates it itself.
pub fn encode_all_but_candidates(
    buf: &mut [u8],
    meta: &Meta,
    req: &RequestHead<'_>,
    n: usize,
    reads: u32,
) -> usize {
    let request_len = encode_request(buf, HEADER_LEN + n * CANDIDATE_LEN, req);
    let total = encode_header(buf, n, request_len, meta);
    let named = reads & crate::layout::FLAG_HEADERS_NAMED;
    put_u16(
        buf,
        H_FLAGS,
        ((!reads & crate::layout::READS_ALL) | named) as u16,
    );
    if reads & crate::layout::READS_SEQUENCE == 0 {
        put_u64(buf, H_SEQUENCE, 0);
    }
    total
}
