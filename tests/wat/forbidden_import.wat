;; Imports a function outside the allow-list: must be rejected at load, naming it.
(module
  (import "env" "open_socket" (func $open (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param i32) (result i32) (i32.const 1024))
  (func (export "switchyard_decide") (param i32) (result i32) (call $open (i32.const 0)))
)
