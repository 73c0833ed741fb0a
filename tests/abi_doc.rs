//! docs/abi.md, the Rust layout and the C header must agree: this reads the
//! offset tables out of the doc, compares them with `switchyard_guest::layout`,
//! and compiles a C program against `guest-sdk/c/switchyard.h` that decodes an
//! input encoded by the host's own encoder.

use std::collections::HashMap;
use std::path::PathBuf;

use switchyard_guest::encode::{encode, encoded_len};
use switchyard_guest::layout::*;
use switchyard_guest::{CandidateStats, Meta, Protocol, RequestHead};

mod support;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(section heading, field) -> offset` from the doc's tables.
fn doc_offsets() -> HashMap<(String, String), usize> {
    let doc = std::fs::read_to_string(root().join("docs/abi.md")).unwrap();
    let mut section = String::new();
    let mut out = HashMap::new();
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            section = h.split(' ').next().unwrap_or("").to_lowercase();
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 4
            && let Ok(off) = cells[1].parse::<usize>()
        {
            let field = cells[3].trim_matches('`').to_string();
            out.insert((section.clone(), field), off);
        }
    }
    out
}

#[test]
fn the_doc_tables_match_the_rust_layout() {
    let doc = doc_offsets();
    let expect = [
        ("header", "version", H_VERSION),
        ("header", "header_len", H_HEADER_LEN),
        ("header", "total_len", H_TOTAL_LEN),
        ("header", "candidate_count", H_CANDIDATE_COUNT),
        ("header", "candidate_stride", H_CANDIDATE_STRIDE),
        ("header", "flags", H_FLAGS),
        ("header", "candidates_offset", H_CANDIDATES_OFFSET),
        ("header", "request_offset", H_REQUEST_OFFSET),
        ("header", "sequence", H_SEQUENCE),
        ("header", "random", H_RANDOM),
        ("header", "now_ms", H_NOW_MS),
        ("candidate", "id", C_ID),
        ("candidate", "worker", C_WORKER),
        ("candidate", "flags", C_FLAGS),
        ("candidate", "weight", C_WEIGHT),
        ("candidate", "active", C_ACTIVE),
        ("candidate", "in_flight", C_IN_FLIGHT),
        ("candidate", "total", C_TOTAL),
        ("candidate", "failures", C_FAILURES),
        ("candidate", "ewma_us", C_EWMA_US),
        ("candidate", "cpu_permille", C_CPU_PERMILLE),
        ("candidate", "heartbeat_age_ms", C_HEARTBEAT_AGE_MS),
        ("candidate", "rss_bytes", C_RSS_BYTES),
        ("request", "protocol", R_PROTOCOL),
        ("request", "client_family", R_CLIENT_FAMILY),
        ("request", "client_port", R_CLIENT_PORT),
        ("request", "attempt", R_ATTEMPT),
        ("request", "client_addr", R_CLIENT_ADDR),
        ("request", "header_count", R_HEADER_COUNT),
        ("request", "headers_offset", R_HEADERS_OFFSET),
        ("request", "failed_count", R_FAILED_COUNT),
        ("request", "failed_offset", R_FAILED_OFFSET),
        ("request", "method", R_METHOD),
        ("request", "path", R_PATH),
        ("request", "authority", R_AUTHORITY),
        ("request", "sni", R_SNI),
        ("request", "alpn", R_ALPN),
    ];
    for (section, field, off) in expect {
        assert_eq!(
            doc.get(&(section.to_string(), field.to_string())),
            Some(&off),
            "docs/abi.md, {section} table, `{field}`"
        );
    }
    assert_eq!(HEADER_LEN, 64);
    assert_eq!(CANDIDATE_LEN, 64);
    assert_eq!(REQUEST_FIXED_LEN, 96);
}

const C_PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include "switchyard.h"

int main(int argc, char **argv) {
    static uint8_t b[1 << 16];
    FILE *f = fopen(argv[1], "rb");
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    printf("len=%u total=%u\n", (unsigned)n, sy_u32(b, SY_H_TOTAL_LEN));
    printf("version=%u count=%u seq=%llu\n", sy_u16(b, SY_H_VERSION), sy_candidate_count(b),
           (unsigned long long)sy_u64(b, SY_H_SEQUENCE));
    for (uint32_t i = 0; i < sy_candidate_count(b); i++) {
        const uint8_t *c = sy_candidate(b, i);
        printf("c%u id=%u active=%u rss=%llu eligible=%d\n", i, sy_u32(c, SY_C_ID),
               sy_u32(c, SY_C_ACTIVE), (unsigned long long)sy_u64(c, SY_C_RSS_BYTES), sy_eligible(b, i));
    }
    const uint8_t *r = sy_request(b);
    sy_str m = sy_string(b, (uint32_t)(r - b) + SY_R_METHOD);
    sy_str p = sy_string(b, (uint32_t)(r - b) + SY_R_PATH);
    sy_str u = sy_header(b, "x-user");
    printf("proto=%u attempt=%u method=%.*s path=%.*s x-user=%.*s\n", r[SY_R_PROTOCOL],
           sy_u32(r, SY_R_ATTEMPT), (int)m.len, m.ptr, (int)p.len, p.ptr, (int)u.len, u.ptr);
    return 0;
}
"#;

#[test]
fn the_c_header_decodes_what_the_host_encodes() {
    let dir = support::TempDir::new("abi-c");
    let mut cands: Vec<CandidateStats> = (0..3).map(CandidateStats::healthy).collect();
    cands[1].flags = 0;
    cands[2].active = 7;
    cands[2].rss_bytes = 5 << 30;
    let headers = [
        (&b"Host"[..], &b"a.example"[..]),
        (&b"X-User"[..], &b"alice"[..]),
    ];
    let req = RequestHead {
        protocol: Protocol::Http1,
        method: b"POST",
        path: b"/cart?id=9",
        headers: &headers,
        attempt: 1,
        failed: &[0],
        ..RequestHead::EMPTY
    };
    let mut buf = vec![0u8; encoded_len(&req, cands.len())];
    let meta = Meta {
        sequence: 42,
        ..Meta::default()
    };
    let len = encode(&mut buf, &meta, &req, &cands);
    let input = dir.0.join("input.bin");
    std::fs::write(&input, &buf[..len]).unwrap();
    let src = dir.0.join("decode.c");
    std::fs::write(&src, C_PROGRAM).unwrap();
    let exe = dir.0.join("decode");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = std::process::Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-I")
        .arg(root().join("guest-sdk/c"))
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler `{cc}`: {e}"));
    assert!(status.success(), "switchyard.h does not compile cleanly");
    let out = std::process::Command::new(&exe)
        .arg(&input)
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let want = format!(
        "len={len} total={len}\n\
         version=1 count=3 seq=42\n\
         c0 id=0 active=0 rss=0 eligible=0\n\
         c1 id=1 active=0 rss=0 eligible=0\n\
         c2 id=2 active=7 rss=5368709120 eligible=1\n\
         proto=1 attempt=1 method=POST path=/cart?id=9 x-user=alice\n"
    );
    assert_eq!(out, want);
}
