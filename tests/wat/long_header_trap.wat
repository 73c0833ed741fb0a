;; Wrong on purpose: traps when any header value is longer than 4 KiB, as a
;; strategy copying values into a fixed 4 KiB buffer would. The load-time dry
;; run's sample head never has one; `strategy check` must refuse it, naming
;; the input.
(module
  (memory (export "memory") 1)
  (global $base i32 (i32.const 65536))
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param $cap i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.add (i32.shr_u (local.get $cap) (i32.const 16)) (i32.const 2)))
    (if (i32.lt_u (memory.size) (local.get $pages))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (global.get $base))
  (func (export "switchyard_decide") (param $len i32) (result i32)
    (local $req i32) (local $n i32) (local $e i32) (local $k i32)
    (local.set $req (i32.add (global.get $base) (i32.load offset=20 (global.get $base))))
    (local.set $n (i32.load offset=24 (local.get $req)))
    (local.set $e (i32.add (global.get $base) (i32.load offset=28 (local.get $req))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $k) (local.get $n)))
        (if (i32.gt_u (i32.load offset=12 (local.get $e)) (i32.const 4096))
          (then unreachable))
        (local.set $e (i32.add (local.get $e) (i32.const 16)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $next)))
    (i32.const 0)))
