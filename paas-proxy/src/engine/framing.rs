//! Framing rules and header names: how a message body is delimited, which headers are
//! hop-by-hop or set by the proxy alone, and request ids.

/// Whether `name` is hop-by-hop (besides those a `Connection` header names).
pub(super) fn hop_by_hop(name: &str) -> bool {
    const NAMES: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
pub(super) fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// The `Connection` header tokens of a head, and the flags among them.
#[derive(Default)]
pub(super) struct ConnTokens<'a> {
    named: Vec<&'a [u8]>,
    pub(super) close: bool,
    pub(super) keep_alive: bool,
    pub(super) upgrade: bool,
}

impl<'a> ConnTokens<'a> {
    pub(super) fn of(headers: &[httparse::Header<'a>]) -> Self {
        let mut t = ConnTokens::default();
        for h in headers {
            if h.name.eq_ignore_ascii_case("connection") {
                for tok in tokens(h.value) {
                    if tok.eq_ignore_ascii_case(b"close") {
                        t.close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        t.keep_alive = true;
                    } else if tok.eq_ignore_ascii_case(b"upgrade") {
                        t.upgrade = true;
                    }
                    t.named.push(tok);
                }
            }
        }
        t
    }

    /// Whether a `Connection` header names `name` (never the framing or host headers, which
    /// the proxy sets itself).
    #[inline]
    pub(super) fn names(&self, name: &str) -> bool {
        !self.named.is_empty()
            && !name.eq_ignore_ascii_case("host")
            && !name.eq_ignore_ascii_case("content-length")
            && self
                .named
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Why a head's framing headers are refused.
pub(super) enum FramingError {
    Ambiguous,
    BadLength,
    BadCoding,
}

/// The framing a head's `Content-Length` / `Transfer-Encoding` headers give, checked.
pub(super) fn framing_of(
    headers: &[httparse::Header<'_>],
    request: bool,
) -> Result<Framing, FramingError> {
    let mut length: Option<u64> = None;
    let mut chunked_last = false;
    let mut chunked_seen = false;
    let mut te = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Err(FramingError::BadLength);
            }
            let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            match length {
                Some(prev) if prev != n => return Err(FramingError::BadLength),
                _ => length = Some(n),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            for tok in tokens(h.value) {
                if chunked_last && request {
                    // Chunked applied twice, or another coding after it.
                    return Err(FramingError::BadCoding);
                }
                chunked_last = tok.eq_ignore_ascii_case(b"chunked");
                if chunked_last && chunked_seen {
                    // A sender must not apply chunked twice (RFC 9112 6.1).
                    return Err(FramingError::BadCoding);
                }
                chunked_seen |= chunked_last;
                if request && !chunked_last {
                    return Err(FramingError::BadCoding);
                }
            }
        }
    }
    match (te, length) {
        (true, Some(_)) if request => Err(FramingError::Ambiguous),
        (true, _) if chunked_last => Ok(Framing::Chunked),
        (true, _) if request => Err(FramingError::BadCoding),
        // A response with another final coding ends when the connection does.
        (true, _) => Ok(Framing::Close),
        (false, Some(0)) => Ok(Framing::None),
        (false, Some(n)) => Ok(Framing::Length(n)),
        (false, None) if request => Ok(Framing::None),
        (false, None) => Ok(Framing::Close),
    }
}

/// Whether header name `a` is `b` (lowercase, dashes) in any case and with `_` for `-` (some
/// frameworks map both spellings to the same name).
fn same_header_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let x = if *x == b'_' {
                b'-'
            } else {
                x.to_ascii_lowercase()
            };
            x == *y
        })
}

/// Other headers that frameworks read the client's address from (`X-Real-IP`,
/// `True-Client-IP`, `X-Client-IP`, `Client-IP`, `CF-Connecting-IP`, `Fastly-Client-IP`,
/// `X-Cluster-Client-IP`, `X-Forwarded`, also spelled with underscores): passed on only from
/// trusted proxies. The name's length picks the candidates, and a comparison stops at the first
/// byte that differs, so most names cost one length match at most.
pub(super) fn client_address_header(name: &str) -> bool {
    let n = name.as_bytes();
    let candidates: &[&[u8]] = match n.len() {
        9 => &[b"x-real-ip", b"client-ip"],
        11 => &[b"x-client-ip", b"x-forwarded"],
        14 => &[b"true-client-ip"],
        16 => &[b"cf-connecting-ip", b"fastly-client-ip"],
        19 => &[b"x-cluster-client-ip"],
        _ => return false,
    };
    candidates.iter().any(|c| same_header_name(n, c))
}

/// `Content-Length` or `Transfer-Encoding`, also spelled with underscores (`Content_Length`):
/// the framing headers are set by the proxy itself, and the underscore spellings are never
/// passed on (from any client), since app servers that fold `_` into `-` (CGI, WSGI, Rack,
/// PHP) would take them for framing headers the proxy never checked.
pub(super) fn framing_header(name: &str) -> bool {
    let n = name.as_bytes();
    match n.len() {
        14 => same_header_name(n, b"content-length"),
        17 => same_header_name(n, b"transfer-encoding"),
        _ => false,
    }
}

/// `Forwarded` and `X-Forwarded-*`, also spelled with underscores: only the proxy sets them.
pub(super) fn forwarded_family(name: &str) -> bool {
    let n = name.as_bytes();
    same_header_name(n, b"forwarded")
        || (n.len() > 12 && same_header_name(&n[..12], b"x-forwarded-"))
}

pub(super) fn idempotent(m: &str) -> bool {
    matches!(m, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

pub(super) fn valid_request_id(b: &[u8]) -> bool {
    (1..=200).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic())
}

pub(super) fn push_request_id(out: &mut Vec<u8>) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    out.extend_from_slice(b"x-request-id: ");
    let at = out.len();
    for _ in 0..32 {
        out.push(HEX[(n & 0xf) as usize]);
        n >>= 4;
    }
    out.extend_from_slice(b"\r\n");
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_and_client_address_header_names() {
        for name in [
            "Content-Length",
            "content_length",
            "Content_Length",
            "Transfer-Encoding",
            "TRANSFER_ENCODING",
            "Transfer_encoding",
        ] {
            assert!(framing_header(name), "{name}");
        }
        for name in ["Content-Type", "Content_Lengths", "Sec-Fetch-Mode", "te"] {
            assert!(!framing_header(name), "{name}");
        }
        for name in [
            "X-Real-IP",
            "x_real_ip",
            "True-Client-IP",
            "X-Client-IP",
            "X_Client_IP",
            "Client-IP",
            "client_ip",
            "CF-Connecting-IP",
            "Cf_Connecting_Ip",
            "Fastly-Client-IP",
            "X-Cluster-Client-IP",
            "X_CLUSTER_CLIENT_IP",
            "X-Forwarded",
            "x_forwarded",
        ] {
            assert!(client_address_header(name), "{name}");
        }
        for name in [
            "X-Forwarded-For",
            "X-Forwardedx",
            "X-Client-IPs",
            "Client-IP-Hint",
            "Sec-Fetch-Mode",
            "User-Agent",
            "Host",
        ] {
            assert!(!client_address_header(name), "{name}");
        }
    }

    fn head(lines: &[(&'static str, &'static str)]) -> Vec<httparse::Header<'static>> {
        lines
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn request_framing_rules() {
        let ok = |h: &[(&'static str, &'static str)]| framing_of(&head(h), true).ok();
        assert_eq!(ok(&[]), Some(Framing::None));
        assert_eq!(ok(&[("Content-Length", "12")]), Some(Framing::Length(12)));
        assert_eq!(
            ok(&[("content-length", "3"), ("Content-Length", "3")]),
            Some(Framing::Length(3))
        );
        assert_eq!(
            ok(&[("Transfer-Encoding", "chunked")]),
            Some(Framing::Chunked)
        );
        for bad in [
            &[("content-length", "3"), ("content-length", "4")][..],
            &[("content-length", "3, 3")],
            &[("content-length", "+3")],
            &[("content-length", "")],
            &[("content-length", "99999999999999999999")],
            &[("transfer-encoding", "gzip")],
            &[("transfer-encoding", "chunked, gzip")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
        ] {
            assert!(ok(bad).is_none(), "{bad:?}");
        }
        // Responses: a final coding other than chunked is read until the connection ends.
        let resp = |h: &[(&'static str, &'static str)]| framing_of(&head(h), false).ok();
        assert_eq!(resp(&[]), Some(Framing::Close));
        assert_eq!(resp(&[("transfer-encoding", "gzip")]), Some(Framing::Close));
        assert_eq!(
            resp(&[("transfer-encoding", "gzip, chunked")]),
            Some(Framing::Chunked)
        );
    }
}
