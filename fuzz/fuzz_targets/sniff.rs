//! No input may make the sniffer panic, loop or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::sniff;

fuzz_target!(|data: &[u8]| {
    let _ = sniff::classify(data);
    let _ = sniff::http_head(data, 16 * 1024);
    let _ = sniff::client_hello(data);
    // Also as the tail of a TLS record header, to reach the extension parser.
    let mut tls = vec![0x16, 3, 1];
    tls.extend_from_slice(&(data.len().min(65535) as u16).to_be_bytes());
    tls.extend_from_slice(&data[..data.len().min(65535)]);
    let _ = sniff::client_hello(&tls);
});
