//! Switchyard strategy ABI v1 for Zig: views over the input buffer and the
//! buffer itself. docs/abi.md documents every offset; docs/strategies.md the
//! build. Pure Zig (no @cImport, which current Zig no longer has).
//!
//! A strategy file:
//!
//!     const sy = @import("switchyard.zig");
//!     comptime { sy.exportAbi(); }
//!     export fn switchyard_decide(len: i32) i32 {
//!         _ = len;
//!         const in = sy.Input.current();
//!         var i: u32 = 0;
//!         while (i < in.count()) : (i += 1) if (in.eligible(i)) return @intCast(i);
//!         return -1;
//!     }
//!
//! Build: zig build-exe canary.zig -target wasm32-freestanding -fno-entry
//! -rdynamic -O ReleaseSmall. `-rdynamic` is what exports the `export fn`s.

pub const abi_version: i32 = 1;

pub const reads_candidates: i32 = 1;
pub const reads_request: i32 = 2;
pub const reads_target: i32 = 4;
pub const reads_headers: i32 = 8;
pub const reads_tls: i32 = 16;
pub const reads_sequence: i32 = 32;
pub const reads_all: i32 = 63;

pub const flag_healthy: u32 = 1;
pub const flag_draining: u32 = 2;

// Header.
const h_candidate_count = 8;
const h_candidate_stride = 12;
const h_candidates_offset = 16;
const h_request_offset = 20;
const h_sequence = 24;
const h_random = 32;
const h_now_ms = 40;
// Candidate record.
pub const c_id = 0;
pub const c_flags = 8;
pub const c_weight = 12;
pub const c_active = 16;
pub const c_in_flight = 20;
pub const c_total = 24;
pub const c_failures = 32;
pub const c_ewma_us = 36;
pub const c_cpu_permille = 40;
pub const c_rss_bytes = 48;
// Request section.
const r_protocol = 0;
const r_attempt = 4;
const r_header_count = 24;
const r_headers_offset = 28;
const r_failed_count = 32;
const r_failed_offset = 36;
pub const r_method = 40;
pub const r_path = 48;
pub const r_authority = 56;
pub const r_sni = 64;
pub const r_alpn = 72;
const header_entry_len = 16;

// The input buffer, straight from memory.grow: never at address 0, no
// allocator needed. A region outgrown is not reused.
var buffer: [*]u8 = undefined;
var capacity: usize = 0;

fn abiVersion() callconv(.c) i32 {
    return abi_version;
}

fn input(need: i32) callconv(.c) i32 {
    const want: usize = @intCast(@max(need, 1));
    if (capacity != 0 and want <= capacity) return @intCast(@intFromPtr(buffer));
    const pages = (want + 65535) / 65536;
    const old = @wasmMemoryGrow(0, pages);
    if (old < 0) return 0;
    buffer = @ptrFromInt(@as(usize, @intCast(old)) * 65536);
    capacity = pages * 65536;
    return @intCast(@intFromPtr(buffer));
}

/// Exports `switchyard_abi_version` and `switchyard_input`; call it from a
/// `comptime` block of the strategy's root file.
pub fn exportAbi() void {
    @export(&abiVersion, .{ .name = "switchyard_abi_version" });
    @export(&input, .{ .name = "switchyard_input" });
}

fn load(comptime T: type, p: [*]const u8, off: usize) T {
    return @import("std").mem.readInt(T, (p + off)[0..@sizeOf(T)], .little);
}

/// One decision's input.
pub const Input = struct {
    base: [*]const u8,

    /// The input of the current call (inside switchyard_decide).
    pub fn current() Input {
        return .{ .base = buffer };
    }

    pub fn count(self: Input) u32 {
        return load(u32, self.base, h_candidate_count);
    }
    pub fn sequence(self: Input) u64 {
        return load(u64, self.base, h_sequence);
    }
    pub fn random(self: Input) u64 {
        return load(u64, self.base, h_random);
    }
    pub fn nowMs(self: Input) u64 {
        return load(u64, self.base, h_now_ms);
    }

    /// Candidate `i`'s record, through the header's stride (never assume 64:
    /// later hosts may append fields).
    pub fn candidate(self: Input, i: u32) [*]const u8 {
        const off = load(u32, self.base, h_candidates_offset);
        const stride = load(u16, self.base, h_candidate_stride);
        return self.base + off + @as(usize, i) * stride;
    }
    /// A `u32` field of candidate `i` (`c_active`, `c_weight`, ...).
    pub fn field(self: Input, i: u32, comptime off: usize) u32 {
        return load(u32, self.candidate(i), off);
    }
    pub fn rssBytes(self: Input, i: u32) u64 {
        return load(u64, self.candidate(i), c_rss_bytes);
    }

    fn request(self: Input) [*]const u8 {
        return self.base + load(u32, self.base, h_request_offset);
    }
    pub fn protocol(self: Input) u8 {
        return self.request()[r_protocol];
    }
    pub fn attempt(self: Input) u32 {
        return load(u32, self.request(), r_attempt);
    }
    /// A request string: `r_method`, `r_path`, `r_authority`, `r_sni`, `r_alpn`.
    pub fn string(self: Input, comptime which: usize) []const u8 {
        const r = self.request();
        return (self.base + load(u32, r, which))[0..load(u32, r, which + 4)];
    }

    /// True if candidate `i` already failed for this request.
    pub fn failed(self: Input, i: u32) bool {
        const r = self.request();
        const n = load(u32, r, r_failed_count);
        const at = load(u32, r, r_failed_offset);
        var k: u32 = 0;
        while (k < n) : (k += 1) {
            if (load(u32, self.base, at + 4 * k) == i) return true;
        }
        return false;
    }

    /// Healthy, not draining, weight above 0 and not failed for this request.
    pub fn eligible(self: Input, i: u32) bool {
        const flags = self.field(i, c_flags);
        return flags & (flag_healthy | flag_draining) == flag_healthy and
            self.field(i, c_weight) > 0 and !self.failed(i);
    }

    /// The first header called `name` (lower-case: the host lower-cases
    /// names), or null.
    pub fn header(self: Input, name: []const u8) ?[]const u8 {
        const r = self.request();
        const n = load(u32, r, r_header_count);
        var e: usize = load(u32, r, r_headers_offset);
        var k: u32 = 0;
        while (k < n) : ({
            k += 1;
            e += header_entry_len;
        }) {
            const key = (self.base + load(u32, self.base, e))[0..load(u32, self.base, e + 4)];
            if (@import("std").mem.eql(u8, key, name)) {
                return (self.base + load(u32, self.base, e + 8))[0..load(u32, self.base, e + 12)];
            }
        }
        return null;
    }
};
