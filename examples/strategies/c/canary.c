/* The canary strategy in C, with no libc: requests with `x-canary: 1` go to
 * the last eligible backend; everything else to the least busy of the other
 * eligible ones (the last, if it is the only one). The same strategy is
 * written in every language under examples/strategies/ and each build is
 * tested against ../canary.cases.toml.
 *
 * Build: make            (clang and wasm-ld; see the Makefile)
 * Test:  switchyard strategy test canary.wasm --cases ../canary.cases.toml
 */
#include "switchyard.h"

SWITCHYARD_ABI_V1()
SWITCHYARD_INPUT_BUFFER()

/* Reads the candidates, the request's failed table and the headers: the host
   leaves the rest out. */
SWITCHYARD_READS(SY_READS_CANDIDATES | SY_READS_REQUEST | SY_READS_HEADERS)

/* Of the headers, only x-canary: the host writes that one and no other. */
SWITCHYARD_HEADERS("x-canary")

SWITCHYARD_EXPORT(switchyard_decide) int32_t switchyard_decide(int32_t len) {
    (void)len;
    const uint8_t *in = sy_input();
    uint32_t n = sy_candidate_count(in);
    int32_t last = -1;
    for (uint32_t i = n; i-- > 0;) {
        if (sy_eligible(in, i)) { last = (int32_t)i; break; }
    }
    if (last < 0) return -1;
    if (sy_str_eq(sy_header(in, "x-canary"), "1")) return last;
    int32_t best = -1;
    uint32_t best_active = 0;
    for (uint32_t i = 0; i < n; i++) {
        if ((int32_t)i == last || !sy_eligible(in, i)) continue;
        uint32_t active = sy_u32(sy_candidate(in, i), SY_C_ACTIVE);
        if (best < 0 || active < best_active) { best = (int32_t)i; best_active = active; }
    }
    return best >= 0 ? best : last;
}
