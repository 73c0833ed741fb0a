;; A complete strategy in hand-written WebAssembly text: the first candidate
;; that is healthy and has not failed for this request, reading ABI v1 fields
;; straight from the buffer (see docs/abi.md). It also calls the host log and
;; clock imports, which are allowed.
(module
  (import "switchyard" "log" (func $log (param i32 i32 i32)))
  (import "switchyard" "clock_ns" (func $clock (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 16) "first_eligible loaded")
  (global $base i32 (i32.const 65536))
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param $cap i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.add (i32.shr_u (local.get $cap) (i32.const 16)) (i32.const 2)))
    (if (i32.lt_u (memory.size) (local.get $pages))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (global.get $base))
  (func (export "switchyard_init") (param $len i32) (result i32)
    (call $log (i32.const 2) (i32.const 16) (i32.const 21))
    (drop (call $clock))
    (i32.const 0))
  ;; True if candidate $i is in the request's failed table.
  (func $failed (param $i i32) (result i32)
    (local $req i32) (local $n i32) (local $at i32) (local $k i32)
    (local.set $req (i32.add (global.get $base) (i32.load offset=20 (global.get $base))))
    (local.set $n (i32.load offset=32 (local.get $req)))
    (local.set $at (i32.add (global.get $base) (i32.load offset=36 (local.get $req))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $k) (local.get $n)))
        (if (i32.eq (i32.load (i32.add (local.get $at) (i32.shl (local.get $k) (i32.const 2))))
                    (local.get $i))
          (then (return (i32.const 1))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $next)))
    (i32.const 0))
  (func (export "switchyard_decide") (param $len i32) (result i32)
    (local $count i32) (local $stride i32) (local $rec i32) (local $i i32)
    (local.set $count (i32.load offset=8 (global.get $base)))
    (local.set $stride (i32.load16_u offset=12 (global.get $base)))
    (local.set $rec (i32.add (global.get $base) (i32.load offset=16 (global.get $base))))
    (block $none
      (loop $scan
        (br_if $none (i32.ge_u (local.get $i) (local.get $count)))
        ;; flags at +8: bit 0 healthy
        (if (i32.and (i32.and (i32.load offset=8 (local.get $rec)) (i32.const 1))
                     (i32.eqz (call $failed (local.get $i))))
          (then (return (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (local.set $rec (i32.add (local.get $rec) (local.get $stride)))
        (br $scan)))
    (i32.const -1))
)
