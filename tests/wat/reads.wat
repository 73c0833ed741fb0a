;; Declares what it reads from its configuration, to test the declaration:
;; config byte 0 is the `switchyard_reads` answer; byte 1 is the behaviour:
;;   'a'  answer (header_count + method_len + sni_len) % candidate_count:
;;        the answer depends on the headers, the target and TLS names
;;   'l'  answer 0, and log "request empty" or "request seen" depending on
;;        whether any header, method or SNI byte arrived
;; Bytes 2.. (when there are any) are the `switchyard_headers` list, copied
;; to address 1024 with a NUL after it; without them it returns 0 (every
;; header).
(module
  (import "switchyard" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "request empty")
  (data (i32.const 32) "request seen")
  (global $base i32 (i32.const 65536))
  (global $reads (mut i32) (i32.const 31))
  (global $mode (mut i32) (i32.const 97))
  (global $names (mut i32) (i32.const 0))
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param $cap i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.add (i32.shr_u (local.get $cap) (i32.const 16)) (i32.const 2)))
    (if (i32.lt_u (memory.size) (local.get $pages))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (global.get $base))
  (func (export "switchyard_init") (param $len i32) (result i32)
    (if (i32.ge_u (local.get $len) (i32.const 1))
      (then (global.set $reads (i32.load8_u (global.get $base)))))
    (if (i32.ge_u (local.get $len) (i32.const 2))
      (then (global.set $mode (i32.load8_u offset=1 (global.get $base)))))
    (if (i32.gt_u (local.get $len) (i32.const 2))
      (then
        (memory.copy (i32.const 1024)
          (i32.add (global.get $base) (i32.const 2))
          (i32.sub (local.get $len) (i32.const 2)))
        (i32.store8 (i32.add (i32.const 1022) (local.get $len)) (i32.const 0))
        (global.set $names (i32.const 1024))))
    (i32.const 0))
  (func (export "switchyard_reads") (result i32) (global.get $reads))
  (func (export "switchyard_headers") (result i32) (global.get $names))
  (func (export "switchyard_decide") (param $len i32) (result i32)
    (local $req i32) (local $seen i32)
    (local.set $req (i32.add (global.get $base) (i32.load offset=20 (global.get $base))))
    ;; header_count (+24) + method length (+44) + SNI length (+68)
    (local.set $seen
      (i32.add (i32.load offset=24 (local.get $req))
        (i32.add (i32.load offset=44 (local.get $req)) (i32.load offset=68 (local.get $req)))))
    (if (i32.eq (global.get $mode) (i32.const 108))
      (then
        (if (local.get $seen)
          (then (call $log (i32.const 2) (i32.const 32) (i32.const 12)))
          (else (call $log (i32.const 2) (i32.const 16) (i32.const 13))))
        (return (i32.const 0))))
    (i32.rem_u (local.get $seen) (i32.load offset=8 (global.get $base)))))
