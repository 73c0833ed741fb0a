/*
 * Switchyard strategy ABI v1 for C (and anything else that reads C headers).
 * The layout is documented byte by byte in docs/abi.md; the Rust definition
 * is guest-sdk/src/layout.rs. All integers are little-endian (which
 * WebAssembly is), all offsets absolute from the buffer's first byte.
 *
 * Needs no libc: it builds on bare wasm32 (clang --target=wasm32 -nostdlib)
 * as well as natively. A whole strategy:
 *
 *     #include "switchyard.h"
 *     SWITCHYARD_ABI_V1()
 *     SWITCHYARD_INPUT_BUFFER()
 *     SWITCHYARD_EXPORT(switchyard_decide) int32_t switchyard_decide(int32_t len) {
 *         const uint8_t *in = sy_input();
 *         for (uint32_t i = 0; i < sy_candidate_count(in); i++)
 *             if (sy_eligible(in, i)) return (int32_t)i;
 *         return -1;
 *     }
 *
 * Build: clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o s.wasm s.c
 * (SWITCHYARD_EXPORT marks the exports, so no --export flags are needed).
 * examples/strategies/c has a Makefile.
 *
 * Exports (docs/abi.md):
 *   int32_t switchyard_abi_version(void);          SWITCHYARD_ABI_VERSION
 *   int32_t switchyard_input(int32_t capacity);    address of a buffer >= capacity
 *   int32_t switchyard_decide(int32_t len);        candidate index, or -1
 *   int32_t switchyard_init(int32_t len);          optional; 0 accepts the config
 *   int32_t switchyard_reads(void);                optional; SWITCHYARD_READS(SY_READS_*)
 *   int32_t switchyard_headers(void);              optional; SWITCHYARD_HEADERS("x-a,x-b")
 */
#ifndef SWITCHYARD_H
#define SWITCHYARD_H

#include <stdint.h>

#define SWITCHYARD_ABI_VERSION 1

/* Header: 64 bytes at offset 0. */
#define SY_H_VERSION 0            /* u16 */
#define SY_H_HEADER_LEN 2         /* u16 */
#define SY_H_TOTAL_LEN 4          /* u32 */
#define SY_H_CANDIDATE_COUNT 8    /* u32 */
#define SY_H_CANDIDATE_STRIDE 12  /* u16 */
#define SY_H_FLAGS 14             /* u16 */
#define SY_H_CANDIDATES_OFFSET 16 /* u32 */
#define SY_H_REQUEST_OFFSET 20    /* u32 */
#define SY_H_SEQUENCE 24          /* u64 */
#define SY_H_RANDOM 32            /* u64 */
#define SY_H_NOW_MS 40            /* u64 */
#define SY_HEADER_LEN 64

/* Candidate record: 64 bytes, at candidates_offset + i * candidate_stride. */
#define SY_C_ID 0                 /* u32 */
#define SY_C_WORKER 4             /* u32 */
#define SY_C_FLAGS 8              /* u32 */
#define SY_C_WEIGHT 12            /* u32 */
#define SY_C_ACTIVE 16            /* u32 */
#define SY_C_IN_FLIGHT 20         /* u32 */
#define SY_C_TOTAL 24             /* u64 */
#define SY_C_FAILURES 32          /* u32 */
#define SY_C_EWMA_US 36           /* u32 */
#define SY_C_CPU_PERMILLE 40      /* u32 */
#define SY_C_HEARTBEAT_AGE_MS 44  /* u32 */
#define SY_C_RSS_BYTES 48         /* u64 */
#define SY_C_RESERVED 56          /* u64 */
#define SY_CANDIDATE_LEN 64

#define SY_FLAG_HEALTHY 1u
#define SY_FLAG_DRAINING 2u

/* Parts of the input, for the optional export `int32_t switchyard_reads(void)`
   and the header's flags (the parts left out). */
#define SY_READS_CANDIDATES 1u
#define SY_READS_REQUEST 2u
#define SY_READS_TARGET 4u
#define SY_READS_HEADERS 8u
#define SY_READS_TLS 16u
#define SY_READS_SEQUENCE 32u
#define SY_READS_ALL 63u
/* In the header's flags: the header table holds only the listed headers. */
#define SY_FLAG_HEADERS_NAMED 64u

/* Request section: offsets relative to request_offset; stored values absolute. */
#define SY_R_PROTOCOL 0           /* u8 */
#define SY_R_CLIENT_FAMILY 1      /* u8 */
#define SY_R_CLIENT_PORT 2        /* u16 */
#define SY_R_ATTEMPT 4            /* u32 */
#define SY_R_CLIENT_ADDR 8        /* 16 bytes */
#define SY_R_HEADER_COUNT 24      /* u32 */
#define SY_R_HEADERS_OFFSET 28    /* u32 */
#define SY_R_FAILED_COUNT 32      /* u32 */
#define SY_R_FAILED_OFFSET 36     /* u32 */
#define SY_R_METHOD 40            /* string: u32 off, u32 len */
#define SY_R_PATH 48
#define SY_R_AUTHORITY 56
#define SY_R_SNI 64
#define SY_R_ALPN 72
#define SY_R_RESERVED 80
#define SY_REQUEST_FIXED_LEN 96
#define SY_HEADER_ENTRY_LEN 16    /* u32 name_off, name_len, value_off, value_len */

enum sy_protocol { SY_OPAQUE = 0, SY_HTTP1 = 1, SY_HTTP2 = 2, SY_HTTP3 = 3, SY_TLS = 4 };

/* Marks a function as a module export (wasm-ld keeps it and exports it by
   this name); nothing when built natively, as the tests do. */
#if defined(__wasm__)
#define SWITCHYARD_EXPORT(name) __attribute__((export_name(#name)))
#else
#define SWITCHYARD_EXPORT(name)
#endif

/* Defines switchyard_abi_version(). */
#define SWITCHYARD_ABI_V1() \
    SWITCHYARD_EXPORT(switchyard_abi_version) int32_t switchyard_abi_version(void) { \
        return SWITCHYARD_ABI_VERSION; \
    }

/* Defines switchyard_reads(): the parts of the input the strategy reads, as
   SY_READS_* bits (SWITCHYARD_READS(SY_READS_CANDIDATES | SY_READS_REQUEST)). */
#define SWITCHYARD_READS(bits) \
    SWITCHYARD_EXPORT(switchyard_reads) int32_t switchyard_reads(void) { \
        return (int32_t)(bits); \
    }

/* Defines switchyard_headers(): the host then writes only the headers named
   in `names`, a comma-separated string literal ("x-canary", "cookie,x-a"). */
#define SWITCHYARD_HEADERS(names) \
    SWITCHYARD_EXPORT(switchyard_headers) int32_t switchyard_headers(void) { \
        static const char sy__names[] = names; \
        return (int32_t)(uintptr_t)sy__names; \
    }

#if defined(__wasm__)
/* The input buffer, taken straight from memory.grow: its address is never 0,
   it needs no allocator, and the host asks again only when it needs more.
   A region outgrown is not reused (regions only get bigger, so at most half
   of what was grown is wasted). The buffer is read-only to the module: the
   host keeps the candidate table in it between decisions (docs/abi.md). */
static uint8_t *sy__buffer;
static uint32_t sy__capacity;
#define SWITCHYARD_INPUT_BUFFER() \
    SWITCHYARD_EXPORT(switchyard_input) int32_t switchyard_input(int32_t capacity) { \
        uint32_t cap = (uint32_t)capacity; \
        if (sy__buffer && cap <= sy__capacity) return (int32_t)(uintptr_t)sy__buffer; \
        uint32_t pages = (cap + 65535u) / 65536u; \
        if (pages == 0) pages = 1; \
        int32_t old = (int32_t)__builtin_wasm_memory_grow(0, pages); \
        if (old < 0) return 0; \
        sy__buffer = (uint8_t *)(uintptr_t)((uint32_t)old * 65536u); \
        sy__capacity = pages * 65536u; \
        return (int32_t)(uintptr_t)sy__buffer; \
    }
/* The current input (valid inside switchyard_decide and switchyard_init). */
static inline const uint8_t *sy_input(void) { return sy__buffer; }
#endif

static inline uint16_t sy_u16(const uint8_t *b, uint32_t off) { uint16_t v; __builtin_memcpy(&v, b + off, 2); return v; }
static inline uint32_t sy_u32(const uint8_t *b, uint32_t off) { uint32_t v; __builtin_memcpy(&v, b + off, 4); return v; }
static inline uint64_t sy_u64(const uint8_t *b, uint32_t off) { uint64_t v; __builtin_memcpy(&v, b + off, 8); return v; }

/* A string field: pointer into the buffer and length. */
typedef struct { const uint8_t *ptr; uint32_t len; } sy_str;

static inline sy_str sy_string(const uint8_t *b, uint32_t field) {
    sy_str s = { b + sy_u32(b, field), sy_u32(b, field + 4) };
    return s;
}

/* True if s holds exactly the NUL-terminated text t. */
static inline int sy_str_eq(sy_str s, const char *t) {
    uint32_t i = 0;
    for (; i < s.len; i++) if (t[i] == 0 || (uint8_t)t[i] != s.ptr[i]) return 0;
    return t[i] == 0;
}

static inline uint32_t sy_candidate_count(const uint8_t *b) { return sy_u32(b, SY_H_CANDIDATE_COUNT); }
/* Record i, located with the header's stride (never assume 64: later hosts
   may append fields). */
static inline const uint8_t *sy_candidate(const uint8_t *b, uint32_t i) {
    return b + sy_u32(b, SY_H_CANDIDATES_OFFSET) + i * (uint32_t)sy_u16(b, SY_H_CANDIDATE_STRIDE);
}
static inline const uint8_t *sy_request(const uint8_t *b) { return b + sy_u32(b, SY_H_REQUEST_OFFSET); }

/* Request strings: field is SY_R_METHOD, SY_R_PATH, SY_R_AUTHORITY, SY_R_SNI
   or SY_R_ALPN. */
static inline sy_str sy_request_string(const uint8_t *b, uint32_t field) {
    const uint8_t *r = sy_request(b);
    sy_str s = { b + sy_u32(r, field), sy_u32(r, field + 4) };
    return s;
}

/* True if candidate i already failed for this request. */
static inline int sy_failed(const uint8_t *b, uint32_t i) {
    const uint8_t *r = sy_request(b);
    uint32_t n = sy_u32(r, SY_R_FAILED_COUNT), at = sy_u32(r, SY_R_FAILED_OFFSET);
    for (uint32_t k = 0; k < n; k++) if (sy_u32(b, at + 4 * k) == i) return 1;
    return 0;
}

/* Healthy, not draining, weight above 0, not failed for this request. */
static inline int sy_eligible(const uint8_t *b, uint32_t i) {
    const uint8_t *c = sy_candidate(b, i);
    uint32_t flags = sy_u32(c, SY_C_FLAGS);
    return (flags & (SY_FLAG_HEALTHY | SY_FLAG_DRAINING)) == SY_FLAG_HEALTHY
        && sy_u32(c, SY_C_WEIGHT) > 0 && !sy_failed(b, i);
}

/* Value of the first header `name` (lower-case: the host lower-cases names),
   or a zero-length string. */
static inline sy_str sy_header(const uint8_t *b, const char *name) {
    const uint8_t *r = sy_request(b);
    uint32_t n = sy_u32(r, SY_R_HEADER_COUNT), at = sy_u32(r, SY_R_HEADERS_OFFSET);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t e = at + k * SY_HEADER_ENTRY_LEN;
        sy_str key = { b + sy_u32(b, e), sy_u32(b, e + 4) };
        if (sy_str_eq(key, name)) {
            sy_str s = { b + sy_u32(b, e + 8), sy_u32(b, e + 12) };
            return s;
        }
    }
    sy_str none = { b, 0 };
    return none;
}

#endif /* SWITCHYARD_H */
