// Wrong on purpose, as a first AssemblyScript strategy often is: it makes a
// new array on every decision, and with the stub runtime nothing is ever
// freed. `switchyard strategy check` must refuse it with the leak's rate.
import { Input } from "../../guest-sdk/assemblyscript/assembly/index";
export { switchyard_abi_version, switchyard_input } from "../../guest-sdk/assemblyscript/assembly/index";

export function switchyard_decide(len: i32): i32 {
  const input = Input.current();
  const seen = new Array<u32>(256);
  for (let i: u32 = 0; i < input.count; i++) {
    seen[i & 255] = input.active(i);
    if (input.eligible(i)) return <i32>i;
  }
  return seen.length > 0 ? -1 : -2;
}
