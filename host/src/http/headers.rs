//! What a proxy must change in the headers it passes: hop-by-hop headers go
//! (RFC 9110 7.6.1: they describe one connection, not the message), and the
//! backend learns who the client is (`X-Forwarded-*`, RFC 7239 `Forwarded`).

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};

/// Hop-by-hop headers, besides any that `Connection` names. `Trailer` is
/// not one (RFC 9110 6.6.2 made it end to end): an HTTP/1.1 client gets
/// trailers only if the response declares them.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

/// True if the message asks to switch protocols (`Connection: upgrade` and
/// an `Upgrade` header).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers. An upgrade keeps `Connection: upgrade` and
/// `Upgrade`, which are the request itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than a
    // lookup per hop-by-hop name.
    if !headers
        .keys()
        .any(|k| HOP_BY_HOP.contains(k) || k == header::UPGRADE)
    {
        return;
    }
    let upgrade = is_upgrade(headers);
    // `TE: trailers` is end to end in practice: gRPC needs it to reach the
    // server, and HTTP/2 allows no other TE value (RFC 9113 8.2.2).
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    // `Host` and `Content-Length` stay whatever `Connection` says: the
    // backend would get its own address as the host, and the client a body
    // without its length.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| n != header::HOST && n != header::CONTENT_LENGTH)
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        if upgrade && (name == header::CONNECTION || name == header::UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// What the forwarded headers say of one client connection, made once
/// per connection: every request on it has the same client and scheme.
#[derive(Debug, Clone)]
pub struct Forwarded {
    ip: IpAddr,
    /// The client's address as `X-Forwarded-For` writes it.
    xff: HeaderValue,
    /// `http` or `https`.
    proto: HeaderValue,
    /// `for=...;proto=...`, the start of `Forwarded`.
    element: String,
}

impl Default for Forwarded {
    fn default() -> Self {
        Forwarded::new(SocketAddr::from(([0, 0, 0, 0], 0)), false)
    }
}

impl Forwarded {
    /// For a client at `client`, over TLS or not.
    pub fn new(client: SocketAddr, tls: bool) -> Forwarded {
        let ip = client.ip();
        let proto = if tls { "https" } else { "http" };
        // Formatted once (made for every connection).
        let text = ip.to_string();
        let mut element = String::with_capacity(48);
        match ip {
            IpAddr::V4(_) => element.extend(["for=", &text]),
            IpAddr::V6(_) => element.extend(["for=\"[", &text, "]\""]),
        }
        element.extend([";proto=", proto]);
        Forwarded {
            ip,
            xff: HeaderValue::from_str(&text).expect("an address is a valid value"),
            proto: HeaderValue::from_static(proto),
            element,
        }
    }

    /// Tells the backend who the client is and how it came. Without
    /// `trust`, values the client sent are replaced (a client could claim
    /// any address); with it, the client's own proxy chain is kept and
    /// extended.
    pub fn apply(&self, headers: &mut HeaderMap, trust: bool) {
        let xff = HeaderName::from_static("x-forwarded-for");
        let xfp = HeaderName::from_static("x-forwarded-proto");
        let xfh = HeaderName::from_static("x-forwarded-host");
        let host = headers.get(header::HOST).cloned();
        let chain = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
            Some(prev) if trust => HeaderValue::from_str(&format!("{prev}, {}", self.ip)).ok(),
            _ => Some(self.xff.clone()),
        };
        if let Some(v) = chain {
            headers.insert(xff, v);
        }
        if !trust || !headers.contains_key(&xfp) {
            headers.insert(xfp, self.proto.clone());
        }
        if let Some(h) = &host
            && (!trust || !headers.contains_key(&xfh))
        {
            headers.insert(xfh, h.clone());
        }
        let mut fwd = String::with_capacity(self.element.len() + 40);
        if trust && let Some(prev) = headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
            fwd.push_str(prev);
            fwd.push_str(", ");
        }
        fwd.push_str(&self.element);
        if let Some(h) = host.as_ref().and_then(|h| h.to_str().ok()) {
            // A token or a quoted string: a host with a port has ':', so quote.
            fwd.push_str(";host=\"");
            fwd.extend(h.chars().filter(|&c| c != '"'));
            fwd.push('"');
        }
        if let Ok(v) = HeaderValue::from_maybe_shared(hyper::body::Bytes::from(fwd)) {
            headers.insert(header::FORWARDED, v);
        }
    }
}

impl Forwarded {
    /// [`Forwarded::apply`] without trust, for the direct path (the
    /// client's own values were left out of the head): each header as its
    /// name and the pieces of its value, given to `header`. `host` passed
    /// the guard's `valid_host`, which allows no quote, so it goes into
    /// `Forwarded`'s quoted string as it is.
    pub(crate) fn h1_headers(&self, host: &[u8], mut header: impl FnMut(&[u8], &[&[u8]])) {
        debug_assert!(!host.contains(&b'"'), "a checked Host has no quote");
        header(b"x-forwarded-for", &[self.xff.as_bytes()]);
        header(b"x-forwarded-proto", &[self.proto.as_bytes()]);
        header(b"x-forwarded-host", &[host]);
        header(
            b"forwarded",
            &[self.element.as_bytes(), b";host=\"", host, b"\""],
        );
    }
}

/// Adds `X-Request-Id` when the request has none: 16 hex digits.
pub fn add_request_id(headers: &mut HeaderMap) {
    let name = HeaderName::from_static("x-request-id");
    if !headers.contains_key(&name) {
        let id = format!("{:016x}", crate::clock::random_u64());
        if let Ok(v) = HeaderValue::from_str(&id) {
            headers.insert(name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_go_and_upgrades_stay() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
        let mut h = map(&[("te", "trailers, gzip")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get("te").unwrap(), "trailers");
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn forwarded_headers_replace_or_extend_the_clients() {
        let client: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let mut h = map(&[("host", "a.example:8080"), ("x-forwarded-for", "6.6.6.6")]);
        Forwarded::new(client, false).apply(&mut h, false);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.1.2.3");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "a.example:8080");
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=10.1.2.3;proto=http;host=\"a.example:8080\""
        );
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        Forwarded::new("[::1]:9".parse().unwrap(), false).apply(&mut h, true);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "6.6.6.6, ::1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("forwarded").unwrap(), "for=\"[::1]\";proto=http");
    }
}
