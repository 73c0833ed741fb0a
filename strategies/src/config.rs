//! Tiny `key=value,key=value` parsing for strategy configuration, without an
//! allocator.

/// Trims ASCII spaces and tabs.
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\n' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\n' | b'\r'] = s {
        s = rest;
    }
    s
}

/// The `key=value` items of a comma-separated list; an item without `=` has an
/// empty value.
pub fn pairs(config: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    config
        .split(|&b| b == b',')
        .map(trim)
        .filter(|s| !s.is_empty())
        .map(|item| match item.iter().position(|&b| b == b'=') {
            Some(eq) => (trim(&item[..eq]), trim(&item[eq + 1..])),
            None => (item, &b""[..]),
        })
}

/// A decimal number that fits in `u32`.
pub fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as u64)
    })
}
