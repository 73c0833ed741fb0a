//! The canary strategy in Zig: requests with `x-canary: 1` go to the last
//! eligible backend; everything else to the least busy of the other eligible
//! ones (the last, if it is the only one).
//!
//! Build: zig build-exe canary.zig --dep switchyard -Mroot=canary.zig
//!        -Mswitchyard=../../../guest-sdk/zig/switchyard.zig
//!        -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseSmall
//! (build.sh has the line.)
//! Test:  switchyard strategy test canary.wasm --cases ../canary.cases.toml

const std = @import("std");
const sy = @import("switchyard");

comptime {
    sy.exportAbi();
}

export fn switchyard_reads() i32 {
    return sy.reads_candidates | sy.reads_request | sy.reads_headers;
}

// Of the headers, only x-canary (a Zig string literal ends with a NUL).
export fn switchyard_headers() i32 {
    return @intCast(@intFromPtr("x-canary"));
}

export fn switchyard_decide(len: i32) i32 {
    _ = len;
    const in = sy.Input.current();
    const n = in.count();
    var last: ?u32 = null;
    var i = n;
    while (i > 0) {
        i -= 1;
        if (in.eligible(i)) {
            last = i;
            break;
        }
    }
    const tail = last orelse return -1;
    if (in.header("x-canary")) |v| {
        if (std.mem.eql(u8, v, "1")) return @intCast(tail);
    }
    var best: ?u32 = null;
    var best_active: u32 = 0;
    i = 0;
    while (i < n) : (i += 1) {
        if (i == tail or !in.eligible(i)) continue;
        const active = in.field(i, sy.c_active);
        if (best == null or active < best_active) {
            best = i;
            best_active = active;
        }
    }
    return @intCast(best orelse tail);
}
