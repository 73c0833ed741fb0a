;; AssemblyScript's failure path: `abort(message, file, line, column)` with
;; its strings laid out as AssemblyScript lays them out (UTF-16LE, the byte
;; length in the 4 bytes before). The host must trap and say where.
(module
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  ;; "boom" at 20 (length 8 at 16); "canary.ts" at 52 (length 18 at 48).
  (data (i32.const 16) "\08\00\00\00b\00o\00o\00m\00")
  (data (i32.const 48) "\12\00\00\00c\00a\00n\00a\00r\00y\00.\00t\00s\00")
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param i32) (result i32)
    (drop (memory.grow (i32.const 2)))
    (i32.const 65536))
  (func (export "switchyard_decide") (param i32) (result i32)
    (call $abort (i32.const 20) (i32.const 52) (i32.const 3) (i32.const 5))
    (i32.const 0)))
