;; A WASI preview 1 module, as a wasm32-wasip1 toolchain would produce: it
;; prints to stdout on every decision (the host turns that into rate-limited
;; log lines), asks WASI for random bytes, and opens no file (there is none).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get"
    (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "hello from wasi\n")
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param $cap i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.add (i32.shr_u (local.get $cap) (i32.const 16)) (i32.const 2)))
    (if (i32.lt_u (memory.size) (local.get $pages))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (i32.const 65536))
  (func (export "switchyard_decide") (param $len i32) (result i32)
    ;; iovec at 0: {ptr 100, len 16}
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 16))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
      (then unreachable))
    (if (call $random_get (i32.const 16) (i32.const 8))
      (then unreachable))
    ;; No preopens: path_open must fail (EBADF), not open anything.
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 5)
                                  (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 24)))
      (then unreachable))
    ;; random % candidate_count
    (i32.rem_u (i32.load (i32.const 16)) (i32.load offset=8 (i32.const 65536))))
)
