// The canary strategy in AssemblyScript: requests with `x-canary: 1` go to
// the last eligible backend; everything else to the least busy of the other
// eligible ones (the last, if it is the only one).
//
// Build: asc canary.ts -o canary.wasm --runtime stub -O3
// Test:  switchyard strategy test canary.wasm --cases ../canary.cases.toml

import { Input, READS_CANDIDATES, READS_HEADERS, READS_REQUEST } from "../../../guest-sdk/assemblyscript/assembly/index";
export { switchyard_abi_version, switchyard_input } from "../../../guest-sdk/assemblyscript/assembly/index";

export function switchyard_reads(): i32 {
  return READS_CANDIDATES | READS_REQUEST | READS_HEADERS;
}

// Of the headers, only x-canary: "x-canary" and a NUL, as UTF-8 bytes in
// static memory (AssemblyScript's own strings are UTF-16).
const HEADERS = memory.data<u8>([0x78, 0x2d, 0x63, 0x61, 0x6e, 0x61, 0x72, 0x79, 0]);

export function switchyard_headers(): i32 {
  return <i32>HEADERS;
}

export function switchyard_decide(len: i32): i32 {
  const input = Input.current();
  const n = input.count;
  let last: i32 = -1;
  for (let i = <i32>n - 1; i >= 0; i--) {
    if (input.eligible(<u32>i)) {
      last = i;
      break;
    }
  }
  if (last < 0) return -1;
  const canary = input.header("x-canary");
  if (canary != null && canary.is("1")) return last;
  let best: i32 = -1;
  let bestActive: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    if (<i32>i == last || !input.eligible(i)) continue;
    const active = input.active(i);
    if (best < 0 || active < bestActive) {
      best = <i32>i;
      bestActive = active;
    }
  }
  return best >= 0 ? best : last;
}
