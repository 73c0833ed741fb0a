// An AssemblyScript strategy whose assertion fails on a later input, built
// with the SDK's abort handler (`--use abort=...`): it imports no
// `env.abort`, and the failure reaches the log as text and place.
import { Input } from "../../guest-sdk/assemblyscript/assembly/index";
export { switchyard_abi_version, switchyard_input } from "../../guest-sdk/assemblyscript/assembly/index";

export function switchyard_decide(len: i32): i32 {
  const input = Input.current();
  assert(input.count < 60, "too many candidates");
  return 0;
}
