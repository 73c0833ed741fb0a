//! A fixed number of request-section encodes of the sample request, for
//! counting instructions (deterministic, unlike time on a shared machine):
//!
//! `valgrind --tool=callgrind --toggle-collect='*encode_count::run*'
//!  target/release/examples/encode_count` → instructions / 100,000 per call.

use std::hint::black_box;

use switchyard::strategy::sample_request;
use switchyard_guest::encode::{encode_request, encoded_len};

#[inline(never)]
fn run(buf: &mut [u8], req: &switchyard_guest::encode::RequestHead<'_>) {
    for _ in 0..100_000 {
        black_box(encode_request(black_box(&mut *buf), 64, black_box(req)));
    }
}

fn main() {
    let req = sample_request();
    let mut buf = vec![0u8; encoded_len(&req, 0) + 64];
    run(&mut buf, &req);
}
