//! No input may make the sniffer panic, loop or read out of bounds: the
//! classifier, the request-line check, the HTTP/1 head parser and the TLS
//! ClientHello reader all run on the same bytes, as `sniff::read_head` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::sniff::{self, Class, http1, tls};

fuzz_target!(|data: &[u8]| {
    let class = sniff::classify(data);
    let line = http1::request_line(data);
    // `classify` defers to `request_line` for anything that is not TLS or
    // the HTTP/2 preface, so an HTTP/1 verdict means the line is complete.
    if class == Class::Http1 {
        assert_eq!(line, http1::Line::Http);
    }
    if data.starts_with(&[0x16, 3]) {
        assert_eq!(class, Class::Tls);
    }

    // The listener's cap, and a small one to reach the `TooLarge` paths.
    let small = data.first().map_or(0, |&b| b as usize);
    for max in [16 * 1024, small] {
        match http1::parse(data, max) {
            http1::Parsed::Complete(head) => {
                assert!(head.len <= data.len() && head.len <= max);
            }
            http1::Parsed::Partial => assert!(data.len() < max),
            http1::Parsed::TooLarge | http1::Parsed::Malformed => {}
        }
    }

    check_hello(data);
    // Also as the body of a TLS handshake record, to reach the extension
    // parser (random bytes almost never start with 0x16 0x03).
    let body = &data[..data.len().min(18432)];
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(body.len() as u16).to_be_bytes());
    rec.extend_from_slice(body);
    check_hello(&rec);
});

fn check_hello(buf: &[u8]) {
    if let tls::Hello::Complete(h) = tls::client_hello(buf) {
        // SNI and ALPN are copied out of the records: never longer than them.
        assert!(h.sni.len() + h.alpn.len() <= buf.len());
    }
}
