;; Wrong on purpose: keeps 1 KiB of every decision, as an AssemblyScript
;; module that allocates per decision under the stub runtime does. It passes
;; a short dry run and hits the memory cap after about 15,000 decisions in
;; production; `strategy check` must refuse it, with the rate.
(module
  (memory (export "memory") 1)
  (global $base i32 (i32.const 65536))
  (global $heap (mut i32) (i32.const 0))
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param $cap i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.add (i32.shr_u (local.get $cap) (i32.const 16)) (i32.const 2)))
    (if (i32.lt_u (memory.size) (local.get $pages))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (global.set $heap (i32.shl (memory.size) (i32.const 16)))
    (global.get $base))
  (func (export "switchyard_decide") (param $len i32) (result i32)
    (global.set $heap (i32.add (global.get $heap) (i32.const 1024)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.const 1)))))
    (i32.const 0)))
