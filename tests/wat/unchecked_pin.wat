;; Suspicious on purpose: pins everything to candidate 0 without checking
;; that it may take work. It passes the load-time dry run (whose candidates
;; are all healthy); `strategy check` accepts it with a warning, since a
;; strategy may mean it.
(module
  (memory (export "memory") 1)
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param $cap i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.add (i32.shr_u (local.get $cap) (i32.const 16)) (i32.const 2)))
    (if (i32.lt_u (memory.size) (local.get $pages))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (i32.const 65536))
  (func (export "switchyard_decide") (param $len i32) (result i32) (i32.const 0)))
