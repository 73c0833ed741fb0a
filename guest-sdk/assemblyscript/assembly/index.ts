// Switchyard strategy ABI v1 for AssemblyScript: views over the input
// buffer and the input buffer itself. docs/abi.md documents every offset;
// docs/strategies.md the build.
//
// A strategy file re-exports the ABI exports and defines its decision:
//
//   import { Input } from "switchyard-strategy/assembly";
//   export { switchyard_abi_version, switchyard_input } from "switchyard-strategy/assembly";
//   export function switchyard_decide(len: i32): i32 {
//     const input = Input.current();
//     for (let i: u32 = 0; i < input.count; i++) if (input.eligible(i)) return i;
//     return -1;
//   }
//
// Build with `asc strategy.ts -o strategy.wasm --runtime stub -O3`. A decision
// should not allocate: with the stub runtime nothing is ever freed, and a
// module whose memory keeps growing is refused by `switchyard strategy check`.

export const ABI_VERSION: i32 = 1;

export const READS_CANDIDATES: i32 = 1;
export const READS_REQUEST: i32 = 2;
export const READS_TARGET: i32 = 4;
export const READS_HEADERS: i32 = 8;
export const READS_TLS: i32 = 16;
export const READS_SEQUENCE: i32 = 32;
export const READS_ALL: i32 = 63;

export const FLAG_HEALTHY: u32 = 1;
export const FLAG_DRAINING: u32 = 2;

// Header.
const H_CANDIDATE_COUNT = 8;
const H_CANDIDATE_STRIDE = 12;
const H_CANDIDATES_OFFSET = 16;
const H_REQUEST_OFFSET = 20;
const H_SEQUENCE = 24;
const H_RANDOM = 32;
const H_NOW_MS = 40;
// Candidate record.
const C_ID = 0;
const C_FLAGS = 8;
const C_WEIGHT = 12;
const C_ACTIVE = 16;
const C_IN_FLIGHT = 20;
const C_TOTAL = 24;
const C_FAILURES = 32;
const C_EWMA_US = 36;
const C_CPU_PERMILLE = 40;
const C_RSS_BYTES = 48;
// Request section.
const R_PROTOCOL = 0;
const R_ATTEMPT = 4;
const R_HEADER_COUNT = 24;
const R_HEADERS_OFFSET = 28;
const R_FAILED_COUNT = 32;
const R_FAILED_OFFSET = 36;
const R_METHOD = 40;
const R_PATH = 48;
const R_AUTHORITY = 56;
const R_SNI = 64;
const R_ALPN = 72;
const HEADER_ENTRY_LEN = 16;

// The input buffer: from the runtime's heap (never address 0), outside the
// garbage collector, kept for the instance's life. A bigger one replaces it
// only when the host asks for more.
let buffer: usize = 0;
let capacity: usize = 0;

export function switchyard_abi_version(): i32 {
  return ABI_VERSION;
}

export function switchyard_input(need: i32): i32 {
  if (buffer != 0 && <usize>need <= capacity) return <i32>buffer;
  if (buffer != 0) heap.free(buffer);
  capacity = max<usize>(<usize>need, 1024);
  buffer = heap.alloc(capacity);
  return <i32>buffer;
}

/// A string of the input: its bytes stay in the buffer.
export class Bytes {
  constructor(public ptr: usize, public len: u32) {}

  /// True if the bytes are exactly `s` (ASCII).
  is(s: string): bool {
    if (<u32>s.length != this.len) return false;
    for (let i: u32 = 0; i < this.len; i++) {
      if (<u32>load<u8>(this.ptr + i) != <u32>s.charCodeAt(i)) return false;
    }
    return true;
  }

  /// The bytes as an AssemblyScript string (allocates: for logs and tests,
  /// not for every decision).
  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, this.len);
  }
}

// One of each view, made once: a decision must not allocate (see above).
const INPUT = new Input();
const SCRATCH = new Bytes(0, 0);

/// One decision's input. Get it with `Input.current()`; it is the same
/// object every time.
export class Input {
  base: usize = 0;

  /// The input of the current call (inside switchyard_decide).
  @inline static current(): Input {
    INPUT.base = buffer;
    return INPUT;
  }

  @inline get count(): u32 {
    return load<u32>(this.base + H_CANDIDATE_COUNT);
  }
  @inline get sequence(): u64 {
    return load<u64>(this.base + H_SEQUENCE);
  }
  @inline get random(): u64 {
    return load<u64>(this.base + H_RANDOM);
  }
  @inline get nowMs(): u64 {
    return load<u64>(this.base + H_NOW_MS);
  }

  /// Address of candidate `i`'s record, through the header's stride
  /// (never assume 64: later hosts may append fields).
  @inline candidate(i: u32): usize {
    return (
      this.base +
      <usize>load<u32>(this.base + H_CANDIDATES_OFFSET) +
      <usize>i * <usize>load<u16>(this.base + H_CANDIDATE_STRIDE)
    );
  }
  @inline id(i: u32): u32 {
    return load<u32>(this.candidate(i) + C_ID);
  }
  @inline flags(i: u32): u32 {
    return load<u32>(this.candidate(i) + C_FLAGS);
  }
  @inline weight(i: u32): u32 {
    return load<u32>(this.candidate(i) + C_WEIGHT);
  }
  @inline active(i: u32): u32 {
    return load<u32>(this.candidate(i) + C_ACTIVE);
  }
  @inline inFlight(i: u32): u32 {
    return load<u32>(this.candidate(i) + C_IN_FLIGHT);
  }
  @inline total(i: u32): u64 {
    return load<u64>(this.candidate(i) + C_TOTAL);
  }
  @inline failures(i: u32): u32 {
    return load<u32>(this.candidate(i) + C_FAILURES);
  }
  @inline ewmaUs(i: u32): u32 {
    return load<u32>(this.candidate(i) + C_EWMA_US);
  }
  @inline cpuPermille(i: u32): u32 {
    return load<u32>(this.candidate(i) + C_CPU_PERMILLE);
  }
  @inline rssBytes(i: u32): u64 {
    return load<u64>(this.candidate(i) + C_RSS_BYTES);
  }

  @inline request(): usize {
    return this.base + <usize>load<u32>(this.base + H_REQUEST_OFFSET);
  }
  @inline protocol(): u8 {
    return load<u8>(this.request() + R_PROTOCOL);
  }
  @inline attempt(): u32 {
    return load<u32>(this.request() + R_ATTEMPT);
  }

  /// True if candidate `i` already failed for this request.
  failed(i: u32): bool {
    const r = this.request();
    const n = load<u32>(r + R_FAILED_COUNT);
    const at = this.base + <usize>load<u32>(r + R_FAILED_OFFSET);
    for (let k: u32 = 0; k < n; k++) {
      if (load<u32>(at + <usize>k * 4) == i) return true;
    }
    return false;
  }

  /// Healthy, not draining, weight above 0 and not failed for this request.
  eligible(i: u32): bool {
    return (
      (this.flags(i) & (FLAG_HEALTHY | FLAG_DRAINING)) == FLAG_HEALTHY &&
      this.weight(i) > 0 &&
      !this.failed(i)
    );
  }

  // The strings below and `header` return one shared `Bytes`, valid until
  // the next such call: read it (or `is` it) before asking for another.
  private string(field: usize): Bytes {
    const r = this.request();
    SCRATCH.ptr = this.base + <usize>load<u32>(r + field);
    SCRATCH.len = load<u32>(r + field + 4);
    return SCRATCH;
  }
  method(): Bytes {
    return this.string(R_METHOD);
  }
  path(): Bytes {
    return this.string(R_PATH);
  }
  authority(): Bytes {
    return this.string(R_AUTHORITY);
  }
  sni(): Bytes {
    return this.string(R_SNI);
  }
  alpn(): Bytes {
    return this.string(R_ALPN);
  }

  /// The first header called `name` (lower-case: the host lower-cases
  /// names), or null.
  header(name: string): Bytes | null {
    const r = this.request();
    const n = load<u32>(r + R_HEADER_COUNT);
    let e = this.base + <usize>load<u32>(r + R_HEADERS_OFFSET);
    for (let k: u32 = 0; k < n; k++, e += HEADER_ENTRY_LEN) {
      SCRATCH.ptr = this.base + <usize>load<u32>(e);
      SCRATCH.len = load<u32>(e + 4);
      if (SCRATCH.is(name)) {
        SCRATCH.ptr = this.base + <usize>load<u32>(e + 8);
        SCRATCH.len = load<u32>(e + 12);
        return SCRATCH;
      }
    }
    return null;
  }
}

// The host's log (`switchyard.log`): level 0 error .. 3 debug, UTF-8.
@external("switchyard", "log")
declare function hostLog(level: i32, ptr: usize, len: usize): void;

/// Writes `text` to the host's log (at most 20 lines a second reach it).
export function log(level: i32, text: string): void {
  const bytes = String.UTF8.encode(text);
  hostLog(level, changetype<usize>(bytes), <usize>bytes.byteLength);
}

/// An abort handler that logs through `switchyard.log` and traps, for
/// `asc ... --use abort=<path>/index/abortHandler`: the module then imports
/// no `env.abort`. Without it, the host maps AssemblyScript's own
/// `env.abort` to the same trap and log line.
export function abortHandler(
  message: string | null,
  fileName: string | null,
  line: u32,
  column: u32,
): void {
  let m = "(no message)";
  if (message !== null) m = message;
  let f = "?";
  if (fileName !== null) f = fileName;
  log(0, "abort: " + m + " at " + f + ":" + line.toString() + ":" + column.toString());
  unreachable();
}
