;; Claims ABI version 2: must be rejected at load, naming the version.
(module
  (memory (export "memory") 1)
  (func (export "switchyard_abi_version") (result i32) (i32.const 2))
  (func (export "switchyard_input") (param i32) (result i32) (i32.const 1024))
  (func (export "switchyard_decide") (param i32) (result i32) (i32.const 0))
)
