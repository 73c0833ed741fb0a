;; A WASI-style reactor: `_initialize` must run before anything else (it is
;; where C constructors and the Go and Zig runtimes start). Until it has run,
;; every answer is -1 ("no opinion"), which the dry run refuses.
(module
  (memory (export "memory") 1)
  (global $ready (mut i32) (i32.const 0))
  (func (export "_initialize") (global.set $ready (i32.const 1)))
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param i32) (result i32)
    (drop (memory.grow (i32.const 2)))
    (i32.const 65536))
  (func (export "switchyard_decide") (param i32) (result i32)
    (i32.sub (global.get $ready) (i32.const 1))))
