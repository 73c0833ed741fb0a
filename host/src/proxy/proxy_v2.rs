//! The PROXY protocol v2 header (haproxy.org's `proxy-protocol.txt`, section
//! 2.2) that tells a backend who the client is: sent before the client's
//! bytes when `proxy_protocol` is on.

use std::net::SocketAddr;

/// A PROXY protocol v2 header for a TCP connection from `src` to `dst`.
pub fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
                SocketAddr::V6(a) => *a.ip(),
            };
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v2_header_layout() {
        let h = proxy_v2(
            "10.0.0.1:1234".parse().unwrap(),
            "127.0.0.1:3000".parse().unwrap(),
        );
        assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(&h[16..20], &[10, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 1234);
        assert_eq!(h.len(), 28);
    }

    #[test]
    fn proxy_v2_header_over_ipv6() {
        let h = proxy_v2(
            "[2001:db8::1]:4321".parse().unwrap(),
            "[::1]:3000".parse().unwrap(),
        );
        assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!((h[12], h[13]), (0x21, 0x21), "v2 PROXY over TCP/IPv6");
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 36);
        assert_eq!(
            h[16..32],
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(h[32..48], std::net::Ipv6Addr::LOCALHOST.octets());
        assert_eq!(u16::from_be_bytes([h[48], h[49]]), 4321);
        assert_eq!(u16::from_be_bytes([h[50], h[51]]), 3000);
        assert_eq!(h.len(), 52);
    }
}
