//! Zero-copy, panic-free views over an ABI v1 input buffer.
//!
//! A guest must never trap on input it does not understand, so every accessor
//! here is bounds-checked and answers "empty" or 0 rather than panicking. The
//! one up-front check ([`Input::parse`]) proves that the header and the whole
//! candidate table lie inside the buffer; after that, candidate field reads go
//! through fixed-size array references and compile to plain loads.

use crate::layout::*;

#[inline(always)]
fn u16_at(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

#[inline(always)]
fn u32_at(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

#[inline(always)]
fn rec_u32(r: &[u8; CANDIDATE_LEN], off: usize) -> u32 {
    rec32(r, off)
}

/// A `u32` at a constant offset of a fixed-size block: one load.
#[inline(always)]
fn rec32<const N: usize>(r: &[u8; N], off: usize) -> u32 {
    u32::from_le_bytes([r[off], r[off + 1], r[off + 2], r[off + 3]])
}

/// A `u64` at a constant offset of a fixed-size block: one load.
#[inline(always)]
fn rec64<const N: usize>(r: &[u8; N], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&r[off..off + 8]);
    u64::from_le_bytes(a)
}

#[inline(always)]
fn rec_u64(r: &[u8; CANDIDATE_LEN], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&r[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Why an input buffer was refused by [`Input::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// Shorter than the header, or than the header says.
    Truncated,
    /// A layout version this SDK does not know.
    Version(u16),
    /// The candidate table does not fit in the buffer or its stride is too small.
    BadCandidateTable,
}

/// The transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Protocol {
    /// Bytes that were neither HTTP nor TLS.
    Opaque = 0,
    /// HTTP/1.x.
    Http1 = 1,
    /// HTTP/2 (prior knowledge or h2c).
    Http2 = 2,
    /// HTTP/3 over QUIC.
    Http3 = 3,
    /// A TLS ClientHello (SNI and ALPN are filled in).
    Tls = 4,
}

impl Protocol {
    /// Decodes the wire byte; unknown values read as `Opaque`.
    pub fn from_u8(v: u8) -> Protocol {
        match v {
            1 => Protocol::Http1,
            2 => Protocol::Http2,
            3 => Protocol::Http3,
            4 => Protocol::Tls,
            _ => Protocol::Opaque,
        }
    }
}

/// One decision's input: header, request and candidates.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    buf: &'a [u8],
    header: &'a [u8; HEADER_LEN],
    candidates: &'a [u8],
    count: usize,
    stride: usize,
    request: usize,
    /// The failed table, checked once so the per-candidate test is a scan
    /// of (almost always zero) u32s with no bounds checks.
    failed: &'a [u8],
}

impl<'a> Input<'a> {
    /// Checks the header and candidate table bounds once.
    ///
    /// Header fields are read from the header as a fixed-size array, so each
    /// is one load with no bounds check: this runs on every decision, and in
    /// WebAssembly every instruction is a unit of the decision's fuel.
    pub fn parse(buf: &'a [u8]) -> Result<Input<'a>, InputError> {
        let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(InputError::Truncated);
        };
        let h16 = |off: usize| u16::from_le_bytes([header[off], header[off + 1]]);
        let h32 = |off: usize| rec_u32(header, off);
        let version = h16(H_VERSION);
        if version != ABI_VERSION as u16 {
            return Err(InputError::Version(version));
        }
        let total = h32(H_TOTAL_LEN) as usize;
        // The header itself must lie inside the length it gives.
        let Some(buf) = buf.get(..total).filter(|_| total >= HEADER_LEN) else {
            return Err(InputError::Truncated);
        };
        let count = h32(H_CANDIDATE_COUNT) as usize;
        let stride = h16(H_CANDIDATE_STRIDE) as usize;
        let start = h32(H_CANDIDATES_OFFSET) as usize;
        if stride < CANDIDATE_LEN && count > 0 {
            return Err(InputError::BadCandidateTable);
        }
        let end = count
            .checked_mul(stride)
            .and_then(|n| n.checked_add(start))
            .ok_or(InputError::BadCandidateTable)?;
        let candidates = buf.get(start..end).ok_or(InputError::BadCandidateTable)?;
        let request = h32(H_REQUEST_OFFSET) as usize;
        // As `Request::failed_count`: the entries that lie inside the buffer.
        let failed = match buf
            .get(request..)
            .and_then(|r| r.first_chunk::<REQUEST_FIXED_LEN>())
        {
            Some(fixed) => {
                let n = rec32(fixed, R_FAILED_COUNT) as usize;
                let at = rec32(fixed, R_FAILED_OFFSET) as usize;
                let n = n.min(buf.len().saturating_sub(at) / 4);
                buf.get(at..at + 4 * n).unwrap_or(&[])
            }
            None => &[],
        };
        Ok(Input {
            buf,
            header,
            candidates,
            count,
            stride,
            request,
            failed,
        })
    }

    /// The whole buffer, for readers of fields this SDK does not wrap.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Decision sequence number, shared by every instance of this strategy.
    pub fn sequence(&self) -> u64 {
        rec64(self.header, H_SEQUENCE)
    }

    /// Fresh random bits for this decision.
    pub fn random(&self) -> u64 {
        rec64(self.header, H_RANDOM)
    }

    /// Host monotonic clock in milliseconds.
    pub fn now_ms(&self) -> u64 {
        rec64(self.header, H_NOW_MS)
    }

    /// The header's `flags`: the `READS_*` bits of the parts the host left
    /// out, and [`FLAG_HEADERS_NAMED`](crate::FLAG_HEADERS_NAMED) when the
    /// header table holds only the headers the module listed.
    pub fn flags(&self) -> u32 {
        u16::from_le_bytes([self.header[H_FLAGS], self.header[H_FLAGS + 1]]) as u32
    }

    /// The request being routed.
    pub fn request(&self) -> Request<'a> {
        Request {
            buf: self.buf,
            base: self.request,
        }
    }

    /// The backends to choose from.
    pub fn candidates(&self) -> Candidates<'a> {
        Candidates {
            table: self.candidates,
            count: self.count,
            stride: self.stride,
        }
    }

    /// True if candidate `i` may take this request: healthy, not draining, not
    /// weighted out and not already failed for this request.
    #[inline]
    pub fn eligible(&self, i: usize) -> bool {
        match self.candidates().get(i) {
            Some(c) => c.usable() && !self.has_failed(i),
            None => false,
        }
    }

    /// [`Input::eligible`] for a record already in hand (from
    /// [`Candidates::iter`] or [`Candidates::scan_from`]): no second lookup.
    #[inline]
    pub fn eligible_with(&self, i: usize, c: &Candidate<'_>) -> bool {
        c.usable() && !self.has_failed(i)
    }

    /// [`Candidates::scan_from`] over the eligible candidates only (usable
    /// and not failed for this request). The failed table is looked at once:
    /// on a first attempt, which is nearly every decision, the walk has no
    /// per-record failed check at all.
    #[inline]
    pub fn scan_eligible_from(&self, from: usize, mut f: impl FnMut(usize, Candidate<'a>)) {
        let cands = self.candidates();
        if self.failed.is_empty() {
            cands.scan_from(from, |i, c| {
                if c.usable() {
                    f(i, c)
                }
            });
        } else {
            cands.scan_from(from, |i, c| {
                if c.usable() && !self.has_failed(i) {
                    f(i, c)
                }
            });
        }
    }

    /// The eligible candidates (usable and not failed for this request)
    /// with their indexes, in table order, for a `for` loop. A loop body
    /// stays in the caller's locals; a closure given to
    /// [`Input::scan_eligible_from`] is called from several places there and
    /// may be left out of line, and then every variable it captures is a
    /// load and a store on every record. Consistent-hash's module took 14%
    /// fewer instructions a decision as a loop; resource-aware and
    /// weighted-round-robin took more (this walk costs more than
    /// `scan_from`'s fixed-stride one), so measure.
    #[inline]
    pub fn eligible_candidates(&self) -> impl Iterator<Item = (usize, Candidate<'a>)> + use<'a> {
        let failed = self.failed;
        self.candidates().iter().filter(move |&(i, c)| {
            c.usable()
                && (failed.is_empty()
                    || !failed
                        .chunks_exact(4)
                        .any(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as usize == i))
        })
    }

    /// True if some candidate already failed for this request (a retry).
    #[inline]
    pub fn any_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// True if candidate `i` already failed for this request (the same as
    /// [`Request::has_failed`] on any input whose request block is whole,
    /// which every host writes; faster).
    #[inline]
    pub fn has_failed(&self, i: usize) -> bool {
        self.failed
            .chunks_exact(4)
            .any(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize == i)
    }
}

/// The request head, as far as the host could parse it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    buf: &'a [u8],
    base: usize,
}

impl<'a> Request<'a> {
    fn str_at(&self, field: usize) -> &'a [u8] {
        let off = u32_at(self.buf, self.base + field) as usize;
        let len = u32_at(self.buf, self.base + field + 4) as usize;
        off.checked_add(len)
            .and_then(|end| self.buf.get(off..end))
            .unwrap_or(&[])
    }

    /// Transport of the request.
    pub fn protocol(&self) -> Protocol {
        Protocol::from_u8(self.buf.get(self.base + R_PROTOCOL).copied().unwrap_or(0))
    }

    /// 0 on the first decision, then 1, 2, ... on retries.
    pub fn attempt(&self) -> u32 {
        u32_at(self.buf, self.base + R_ATTEMPT)
    }

    /// HTTP method, empty if not HTTP.
    pub fn method(&self) -> &'a [u8] {
        self.str_at(R_METHOD)
    }

    /// Path with query.
    pub fn path(&self) -> &'a [u8] {
        self.str_at(R_PATH)
    }

    /// `Host` or `:authority`.
    pub fn authority(&self) -> &'a [u8] {
        self.str_at(R_AUTHORITY)
    }

    /// TLS server name, empty if none.
    pub fn sni(&self) -> &'a [u8] {
        self.str_at(R_SNI)
    }

    /// TLS ALPN protocols offered, comma separated.
    pub fn alpn(&self) -> &'a [u8] {
        self.str_at(R_ALPN)
    }

    /// Client address bytes: 4 for IPv4, 16 for IPv6, empty if unknown.
    pub fn client_ip(&self) -> &'a [u8] {
        let family = self.buf.get(self.base + R_CLIENT_FAMILY).copied();
        let n = match family {
            Some(4) => 4,
            Some(6) => 16,
            _ => return &[],
        };
        let at = self.base + R_CLIENT_ADDR;
        self.buf.get(at..at + n).unwrap_or(&[])
    }

    /// Client port, 0 if unknown.
    pub fn client_port(&self) -> u16 {
        u16_at(self.buf, self.base + R_CLIENT_PORT)
    }

    /// Number of headers: as many as the header says, but never more than
    /// its table holds inside the buffer, so a hostile count cannot make a
    /// walk over the headers run for billions of steps.
    pub fn header_count(&self) -> usize {
        let count = u32_at(self.buf, self.base + R_HEADER_COUNT) as usize;
        let at = u32_at(self.buf, self.base + R_HEADERS_OFFSET) as usize;
        count.min(self.buf.len().saturating_sub(at) / HEADER_ENTRY_LEN)
    }

    /// Header `i` as `(lower-case name, value)`.
    pub fn header_at(&self, i: usize) -> Option<(&'a [u8], &'a [u8])> {
        if i >= self.header_count() {
            return None;
        }
        let e = (u32_at(self.buf, self.base + R_HEADERS_OFFSET) as usize)
            .checked_add(i * HEADER_ENTRY_LEN)?;
        let get = |o: usize, l: usize| {
            let off = u32_at(self.buf, e + o) as usize;
            let len = u32_at(self.buf, e + l) as usize;
            self.buf.get(off..off.checked_add(len)?)
        };
        Some((get(0, 4)?, get(8, 12)?))
    }

    /// All headers in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let this = *self;
        (0..this.header_count()).filter_map(move |i| this.header_at(i))
    }

    /// First header with this name; `name` must be lower-case.
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Value of cookie `name` from the `cookie` headers.
    pub fn cookie(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers()
            .filter(|(n, _)| *n == b"cookie")
            .find_map(|(_, v)| find_cookie(v, name))
    }

    /// Number of candidates that already failed for this request (never
    /// more than the failed table holds inside the buffer).
    pub fn failed_count(&self) -> usize {
        let count = u32_at(self.buf, self.base + R_FAILED_COUNT) as usize;
        let at = u32_at(self.buf, self.base + R_FAILED_OFFSET) as usize;
        count.min(self.buf.len().saturating_sub(at) / 4)
    }

    /// True if candidate `i` already failed for this request; the same
    /// answer as [`Input::has_failed`], which is faster.
    #[inline]
    pub fn has_failed(&self, i: usize) -> bool {
        let n = self.failed_count();
        if n == 0 {
            return false;
        }
        let at = u32_at(self.buf, self.base + R_FAILED_OFFSET) as usize;
        (0..n).any(|k| u32_at(self.buf, at + 4 * k) as usize == i)
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn find_cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        (trim(&pair[..eq]) == name).then(|| trim(&pair[eq + 1..]))
    })
}

/// The candidate table.
#[derive(Clone, Copy)]
pub struct Candidates<'a> {
    table: &'a [u8],
    count: usize,
    stride: usize,
}

impl<'a> Candidates<'a> {
    /// Number of candidates.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if there are none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Candidate `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<Candidate<'a>> {
        if i >= self.count {
            return None;
        }
        let at = i * self.stride;
        let rec = self.table.get(at..at + CANDIDATE_LEN)?;
        Some(Candidate {
            rec: rec.try_into().ok()?,
        })
    }

    /// Calls `f(i, candidate)` for every candidate, from `from` to the end
    /// and then from 0 (a scan whose ties need not favour the first). It
    /// walks the table once with no check per record beyond the stride's,
    /// which makes a least-loaded scan in WebAssembly about half the
    /// instructions of a `get(i)` loop (`switchyard strategy bench` prints
    /// the fuel).
    #[inline]
    pub fn scan_from(&self, from: usize, mut f: impl FnMut(usize, Candidate<'a>)) {
        if self.count == 0 || self.stride < CANDIDATE_LEN {
            return;
        }
        let from = from % self.count;
        let (head, tail) = self.table.split_at(from * self.stride);
        if self.stride == CANDIDATE_LEN {
            // The v1 stride: records as fixed-size arrays, so the walk is a
            // pointer stepping by a constant to an end, with no remainder
            // arithmetic (about 4 fewer instructions a record).
            let mut visit = |at: usize, part: &'a [u8]| {
                let (records, _) = part.as_chunks::<CANDIDATE_LEN>();
                for (k, rec) in records.iter().enumerate() {
                    f(at + k, Candidate { rec });
                }
            };
            visit(from, tail);
            visit(0, head);
            return;
        }
        // A plain loop rather than `records`: its filter_map cost about 1%
        // more fuel in least-connections (3925 against 3886 at 64).
        let mut visit = |at: usize, part: &'a [u8]| {
            for (k, rec) in part.chunks_exact(self.stride).enumerate() {
                if let Some(rec) = rec.first_chunk::<CANDIDATE_LEN>() {
                    f(at + k, Candidate { rec });
                }
            }
        };
        visit(from, tail);
        visit(0, head);
    }

    /// All candidates with their index, in one walk over the table (no
    /// check per record beyond the stride's, unlike `get(i)` in a loop).
    pub fn iter(&self) -> impl Iterator<Item = (usize, Candidate<'a>)> + use<'a> {
        self.records(0, self.table)
    }

    /// The records of `part` (a whole number of strides of the table),
    /// numbered from `first`.
    #[inline]
    fn records(
        &self,
        first: usize,
        part: &'a [u8],
    ) -> impl Iterator<Item = (usize, Candidate<'a>)> + use<'a> {
        // A stride below a record's size never passes `Input::parse`; 1
        // keeps `chunks_exact` valid for an empty table.
        let stride = self.stride.max(1);
        part.chunks_exact(stride)
            .enumerate()
            .filter_map(move |(k, rec)| {
                Some((
                    first + k,
                    Candidate {
                        rec: rec.first_chunk()?,
                    },
                ))
            })
    }
}

/// One backend's live stats.
#[derive(Clone, Copy)]
pub struct Candidate<'a> {
    rec: &'a [u8; CANDIDATE_LEN],
}

impl Candidate<'_> {
    /// Stable backend id.
    #[inline]
    pub fn id(&self) -> u32 {
        rec_u32(self.rec, C_ID)
    }
    /// Worker index, `u32::MAX` for static backends.
    #[inline]
    pub fn worker(&self) -> u32 {
        rec_u32(self.rec, C_WORKER)
    }
    /// Raw flag bits.
    #[inline]
    pub fn flags(&self) -> u32 {
        rec_u32(self.rec, C_FLAGS)
    }
    /// Passes health checks.
    #[inline]
    pub fn healthy(&self) -> bool {
        self.flags() & FLAG_HEALTHY != 0
    }
    /// Being drained.
    #[inline]
    pub fn draining(&self) -> bool {
        self.flags() & FLAG_DRAINING != 0
    }
    /// Healthy, not draining and weight above zero.
    #[inline]
    pub fn usable(&self) -> bool {
        usable(self.flags(), self.weight())
    }
    /// Configured weight.
    #[inline]
    pub fn weight(&self) -> u32 {
        rec_u32(self.rec, C_WEIGHT)
    }
    /// Open connections.
    #[inline]
    pub fn active(&self) -> u32 {
        rec_u32(self.rec, C_ACTIVE)
    }
    /// Requests in flight.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        rec_u32(self.rec, C_IN_FLIGHT)
    }
    /// Requests routed here in total.
    #[inline]
    pub fn total(&self) -> u64 {
        rec_u64(self.rec, C_TOTAL)
    }
    /// Recent failures.
    #[inline]
    pub fn failures(&self) -> u32 {
        rec_u32(self.rec, C_FAILURES)
    }
    /// EWMA connect latency in microseconds.
    #[inline]
    pub fn ewma_us(&self) -> u32 {
        rec_u32(self.rec, C_EWMA_US)
    }
    /// CPU use in permille of one core.
    #[inline]
    pub fn cpu_permille(&self) -> u32 {
        rec_u32(self.rec, C_CPU_PERMILLE)
    }
    /// Milliseconds since the last telemetry sample.
    #[inline]
    pub fn heartbeat_age_ms(&self) -> u32 {
        rec_u32(self.rec, C_HEARTBEAT_AGE_MS)
    }
    /// Resident set size in bytes.
    #[inline]
    pub fn rss_bytes(&self) -> u64 {
        rec_u64(self.rec, C_RSS_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{CandidateStats, Meta, RequestHead, encode, encoded_len};

    fn input_with(headers: &[(&[u8], &[u8])], failed: &[u32]) -> [u8; 4096] {
        let req = RequestHead {
            headers,
            failed,
            ..RequestHead::EMPTY
        };
        let cands = [CandidateStats::healthy(0), CandidateStats::healthy(1)];
        let mut buf = [0u8; 4096];
        assert!(encoded_len(&req, 2) <= buf.len());
        encode(&mut buf, &Meta::default(), &req, &cands);
        buf
    }

    #[test]
    fn hostile_counts_are_clamped_to_what_the_buffer_holds() {
        let mut buf = input_with(&[(b"a", b"1")], &[1]);
        let req = u32_at(&buf, H_REQUEST_OFFSET) as usize;
        buf[req + R_HEADER_COUNT..req + R_HEADER_COUNT + 4]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        buf[req + R_FAILED_COUNT..req + R_FAILED_COUNT + 4]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        let total = u32_at(&buf, H_TOTAL_LEN) as usize;
        let input = Input::parse(&buf[..total]).unwrap();
        let r = input.request();
        assert!(r.header_count() <= total / HEADER_ENTRY_LEN);
        assert!(r.failed_count() <= total / 4);
        // Walks end at once; the answers of the two failed views agree.
        assert!(r.headers().count() <= total / HEADER_ENTRY_LEN);
        for i in 0..2 {
            assert_eq!(r.has_failed(i), input.has_failed(i), "candidate {i}");
        }
    }

    #[test]
    fn a_failed_table_outside_the_buffer_fails_nobody() {
        let mut buf = input_with(&[], &[0]);
        let req = u32_at(&buf, H_REQUEST_OFFSET) as usize;
        buf[req + R_FAILED_OFFSET..req + R_FAILED_OFFSET + 4]
            .copy_from_slice(&0xFFFF_0000u32.to_le_bytes());
        let total = u32_at(&buf, H_TOTAL_LEN) as usize;
        let input = Input::parse(&buf[..total]).unwrap();
        assert_eq!(input.request().failed_count(), 0);
        assert!(!input.request().has_failed(0) && !input.has_failed(0));
        assert!(input.eligible(0));
    }

    /// Names are lower-cased on the wire unless the caller says they are
    /// already (`names_lowercase`), which HTTP mode does for hyper's names.
    #[test]
    fn header_names_are_lower_cased_unless_they_already_are() {
        for (flag, name, want) in [
            (false, &b"X-User-Id"[..], &b"x-user-id"[..]),
            (true, &b"x-user-id"[..], &b"x-user-id"[..]),
        ] {
            let headers = [(name, &b"7"[..])];
            let req = RequestHead {
                headers: &headers,
                names_lowercase: flag,
                ..RequestHead::EMPTY
            };
            let mut buf = [0u8; 1024];
            let n = encode(
                &mut buf,
                &Meta::default(),
                &req,
                &[CandidateStats::healthy(0)],
            );
            let input = Input::parse(&buf[..n]).unwrap();
            assert_eq!(input.request().header_at(0), Some((want, &b"7"[..])));
            assert_eq!(input.request().header(b"x-user-id"), Some(&b"7"[..]));
        }
    }

    /// `iter` and `scan_from` walk the table in one pass; they must see
    /// exactly what `get(i)` sees, in their order, for any start and for a
    /// stride longer than a record (a later v1 host).
    #[test]
    fn iter_and_scan_from_agree_with_get() {
        for n in [0usize, 1, 5, 17] {
            let cands: [CandidateStats; 17] = core::array::from_fn(|i| CandidateStats {
                active: 100 + i as u32,
                ..CandidateStats::healthy(i as u32)
            });
            let mut buf = [0u8; 4096];
            let len = encode(&mut buf, &Meta::default(), &RequestHead::EMPTY, &cands[..n]);
            // The same input with an 80-byte stride: records moved apart.
            let mut wide = [0u8; 4096];
            wide[..HEADER_LEN].copy_from_slice(&buf[..HEADER_LEN]);
            wide[H_CANDIDATE_STRIDE..H_CANDIDATE_STRIDE + 2].copy_from_slice(&80u16.to_le_bytes());
            for i in 0..n {
                let from = HEADER_LEN + i * CANDIDATE_LEN;
                let to = HEADER_LEN + i * 80;
                wide[to..to + CANDIDATE_LEN].copy_from_slice(&buf[from..from + CANDIDATE_LEN]);
            }
            let req_at = HEADER_LEN + n * 80;
            let old_req = u32_at(&buf, H_REQUEST_OFFSET) as usize;
            let req_len = len - old_req;
            wide[req_at..req_at + req_len].copy_from_slice(&buf[old_req..len]);
            wide[H_REQUEST_OFFSET..H_REQUEST_OFFSET + 4]
                .copy_from_slice(&(req_at as u32).to_le_bytes());
            wide[H_TOTAL_LEN..H_TOTAL_LEN + 4]
                .copy_from_slice(&((req_at + req_len) as u32).to_le_bytes());
            for bytes in [&buf[..], &wide[..]] {
                let input = Input::parse(bytes).unwrap();
                let c = input.candidates();
                let by_get: [Option<(u32, u32)>; 17] =
                    core::array::from_fn(|i| c.get(i).map(|r| (r.id(), r.active())));
                let mut seen = 0;
                for (i, r) in c.iter() {
                    assert_eq!(Some((r.id(), r.active())), by_get[i]);
                    assert_eq!(i, seen);
                    seen += 1;
                }
                assert_eq!(seen, n);
                for start in 0..n.max(1) + 2 {
                    let mut order = [usize::MAX; 17];
                    let mut k = 0;
                    c.scan_from(start, |i, r| {
                        assert_eq!(Some((r.id(), r.active())), by_get[i]);
                        order[k] = i;
                        k += 1;
                    });
                    assert_eq!(k, n);
                    for (j, &i) in order[..n].iter().enumerate() {
                        assert_eq!(i, (start % n.max(1) + j) % n.max(1));
                    }
                }
            }
        }
    }

    /// `scan_eligible_from` visits exactly the candidates `eligible(i)`
    /// accepts, in scan order, on a first attempt (no failed table) and on
    /// a retry (some failed), with unusable candidates mixed in.
    #[test]
    fn scan_eligible_from_agrees_with_eligible() {
        let cands: [CandidateStats; 9] = core::array::from_fn(|i| CandidateStats {
            flags: match i % 4 {
                0 => FLAG_HEALTHY | FLAG_DRAINING,
                1 => 0,
                _ => FLAG_HEALTHY,
            },
            weight: if i == 6 { 0 } else { 1 },
            ..CandidateStats::healthy(i as u32)
        });
        for failed in [&[][..], &[2u32, 7][..], &[3, 100][..]] {
            let req = RequestHead {
                failed,
                attempt: failed.len() as u32,
                ..RequestHead::EMPTY
            };
            let mut buf = [0u8; 2048];
            let len = encode(&mut buf, &Meta::default(), &req, &cands);
            let input = Input::parse(&buf[..len]).unwrap();
            assert_eq!(input.any_failed(), !failed.is_empty());
            for start in 0..cands.len() + 1 {
                let mut seen = [usize::MAX; 9];
                let mut k = 0;
                input.scan_eligible_from(start, |i, _| {
                    seen[k] = i;
                    k += 1;
                });
                let want = (0..cands.len())
                    .map(|j| (start + j) % cands.len())
                    .filter(|&i| input.eligible(i));
                assert!(
                    want.eq(seen[..k].iter().copied()),
                    "start {start}, failed {failed:?}"
                );
            }
        }
    }
}
