;; The canary strategy in hand-written WebAssembly text, and a commented
;; template for any strategy: requests with `x-canary: 1` go to the last
;; eligible backend; everything else to the least busy of the other eligible
;; ones (the last, if it is the only one).
;;
;; Load it as it is (`switchyard strategy check canary.wat`): the host
;; compiles the text format itself. Byte offsets are docs/abi.md's tables.
;; Every offset in the input is absolute, counted from the buffer's first
;; byte, so each field is one load from $buf + offset.
(module
  ;; One page for the constant below; the input buffer is grown past it, so
  ;; its address is never 0 (0 means "no buffer").
  (memory (export "memory") 1)
  (data (i32.const 16) "x-canary")
  (data (i32.const 32) "x-canary\00")

  ;; Address and size of the input buffer.
  (global $buf (mut i32) (i32.const 0))
  (global $cap (mut i32) (i32.const 0))

  (func (export "switchyard_abi_version") (result i32) (i32.const 1))

  ;; What decide reads: candidates (1), request: the failed table (2), and
  ;; headers (8). The host leaves the rest out and checks the claim at load.
  (func (export "switchyard_reads") (result i32) (i32.const 11))
  ;; Of the headers, only x-canary: the NUL-terminated list at 32.
  (func (export "switchyard_headers") (result i32) (i32.const 32))

  ;; A buffer of at least $need bytes, from memory.grow. The host asks again
  ;; only when it needs more.
  (func (export "switchyard_input") (param $need i32) (result i32)
    (local $pages i32) (local $old i32)
    (if (i32.and (i32.ne (global.get $buf) (i32.const 0))
                 (i32.le_u (local.get $need) (global.get $cap)))
      (then (return (global.get $buf))))
    (local.set $pages (i32.shr_u (i32.add (local.get $need) (i32.const 65535)) (i32.const 16)))
    (if (i32.eqz (local.get $pages)) (then (local.set $pages (i32.const 1))))
    (local.set $old (memory.grow (local.get $pages)))
    (if (i32.lt_s (local.get $old) (i32.const 0)) (then (return (i32.const 0))))
    (global.set $buf (i32.shl (local.get $old) (i32.const 16)))
    (global.set $cap (i32.shl (local.get $pages) (i32.const 16)))
    (global.get $buf))

  ;; Address of candidate $i: candidates_offset (header +16) plus $i times
  ;; the stride (header +12, u16). Never assume a stride of 64.
  (func $candidate (param $i i32) (result i32)
    (i32.add
      (i32.add (global.get $buf) (i32.load offset=16 (global.get $buf)))
      (i32.mul (local.get $i) (i32.load16_u offset=12 (global.get $buf)))))

  ;; Address of the request section (header +20).
  (func $request (result i32)
    (i32.add (global.get $buf) (i32.load offset=20 (global.get $buf))))

  ;; 1 if candidate $i is in the request's failed table (count at +32,
  ;; table offset at +36, u32 entries).
  (func $failed (param $i i32) (result i32)
    (local $n i32) (local $at i32) (local $k i32)
    (local.set $n (i32.load offset=32 (call $request)))
    (local.set $at (i32.add (global.get $buf) (i32.load offset=36 (call $request))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $k) (local.get $n)))
        (if (i32.eq (i32.load (i32.add (local.get $at) (i32.shl (local.get $k) (i32.const 2))))
                    (local.get $i))
          (then (return (i32.const 1))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Healthy and not draining (flags +8: bit 0 healthy, bit 1 draining),
  ;; weight (+12) above 0, and not failed for this request.
  (func $eligible (param $i i32) (result i32)
    (local $c i32)
    (local.set $c (call $candidate (local.get $i)))
    (if (i32.ne (i32.and (i32.load offset=8 (local.get $c)) (i32.const 3)) (i32.const 1))
      (then (return (i32.const 0))))
    (if (i32.eqz (i32.load offset=12 (local.get $c)))
      (then (return (i32.const 0))))
    (i32.eqz (call $failed (local.get $i))))

  ;; 1 if the first `x-canary` header is exactly "1". The header table (count
  ;; at request +24, offset at +28) has 16-byte entries: name offset, name
  ;; length, value offset, value length. Names arrive lower-cased.
  (func $canary (result i32)
    (local $n i32) (local $e i32) (local $k i32)
    (local.set $n (i32.load offset=24 (call $request)))
    (local.set $e (i32.add (global.get $buf) (i32.load offset=28 (call $request))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $k) (local.get $n)))
        (if (i32.eq (i32.load offset=4 (local.get $e)) (i32.const 8))
          (then
            (if (i64.eq (i64.load (i32.add (global.get $buf) (i32.load (local.get $e))))
                        (i64.load (i32.const 16)))
              (then
                (return
                  (i32.and
                    (i32.eq (i32.load offset=12 (local.get $e)) (i32.const 1))
                    (i32.eq (i32.load8_u (i32.add (global.get $buf) (i32.load offset=8 (local.get $e))))
                            (i32.const 49))))))))
        (local.set $e (i32.add (local.get $e) (i32.const 16)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; The decision: a candidate index, or -1 for "no opinion" (the host's
  ;; fallback decides).
  (func (export "switchyard_decide") (param $len i32) (result i32)
    (local $n i32) (local $i i32) (local $last i32) (local $best i32)
    (local $best_active i32) (local $active i32)
    (local.set $n (i32.load offset=8 (global.get $buf)))
    ;; The last eligible candidate.
    (local.set $last (i32.const -1))
    (local.set $i (local.get $n))
    (block $found
      (loop $back
        (br_if $found (i32.eqz (local.get $i)))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (if (call $eligible (local.get $i))
          (then (local.set $last (local.get $i)) (br $found)))
        (br $back)))
    (if (i32.lt_s (local.get $last) (i32.const 0)) (then (return (i32.const -1))))
    (if (call $canary) (then (return (local.get $last))))
    ;; The least busy (active, +16) of the others.
    (local.set $best (i32.const -1))
    (local.set $i (i32.const 0))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.and (i32.ne (local.get $i) (local.get $last)) (call $eligible (local.get $i)))
          (then
            (local.set $active (i32.load offset=16 (call $candidate (local.get $i))))
            (if (i32.or (i32.lt_s (local.get $best) (i32.const 0))
                        (i32.lt_u (local.get $active) (local.get $best_active)))
              (then
                (local.set $best (local.get $i))
                (local.set $best_active (local.get $active))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (select (local.get $best) (local.get $last) (i32.ge_s (local.get $best) (i32.const 0))))
)
