;; No `switchyard_decide`: must be rejected at load, naming the export.
(module
  (memory (export "memory") 1)
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param i32) (result i32) (i32.const 1024))
)
