;; Wrong on purpose: least-connections that finds record i at
;; candidates_offset + 64 * i instead of using candidate_stride. It works
;; with today's layout and breaks with any later v1 host; `strategy check`
;; must refuse it, saying so.
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
    (local $n i32) (local $i i32) (local $rec i32) (local $best i32) (local $min i32)
    (local.set $n (i32.load offset=8 (global.get $base)))
    (local.set $best (i32.const -1))
    (local.set $min (i32.const -1))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $rec (i32.add (i32.add (global.get $base) (i32.load offset=16 (global.get $base)))
                                 (i32.mul (local.get $i) (i32.const 64))))
        (if (i32.and (i32.eq (i32.and (i32.load offset=8 (local.get $rec)) (i32.const 3)) (i32.const 1))
                     (i32.lt_u (i32.load offset=16 (local.get $rec)) (local.get $min)))
          (then
            (local.set $best (local.get $i))
            (local.set $min (i32.load offset=16 (local.get $rec)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $best)))
