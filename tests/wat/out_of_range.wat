;; Returns an index far past the candidate list.
;;
;; Behaves on every input except when the host sends exactly 5 candidates, or
;; always once `switchyard_init` received a non-empty configuration. That lets
;; the same module pass the load-time dry run (1, 4 and 64 candidates) and
;; misbehave on live traffic, or be rejected at load: both paths are tested.
(module
  (memory (export "memory") 1)
  (global $always (mut i32) (i32.const 0))
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  ;; The input buffer starts at 64 KiB; grow memory so `cap` bytes fit.
  (func (export "switchyard_input") (param $cap i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.add (i32.shr_u (local.get $cap) (i32.const 16)) (i32.const 2)))
    (if (i32.lt_u (memory.size) (local.get $pages))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (i32.const 65536))
  (func (export "switchyard_init") (param $len i32) (result i32)
    (global.set $always (i32.ne (local.get $len) (i32.const 0)))
    (i32.const 0))
  (func $evil (result i32)
    (i32.or (global.get $always)
            (i32.eq (i32.load offset=8 (i32.const 65536)) (i32.const 5))))
  (func (export "switchyard_decide") (param $len i32) (result i32)
    (if (call $evil) (then (return (i32.const 1000))))
    (i32.const 0))
)
