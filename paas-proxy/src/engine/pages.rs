//! The router's own answers: HTML pages for refused requests and for apps that cannot answer.

use std::fmt::Write as _;

/// A response made by the router itself.
pub(super) fn page(status: u16, reason: &str, text: &str, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + text.len());
    let _ = write!(
        Out(&mut out),
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: {}\r\n{}\r\n",
        text.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    out.extend_from_slice(text.as_bytes());
    out
}

/// `fmt::Write` into a byte vector.
pub(super) struct Out<'a>(pub(super) &'a mut Vec<u8>);

impl std::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

pub(super) const BAD_ASTERISK: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The request target * is for OPTIONS only.</p>\n";
pub(super) const NOT_ALLOWED: &str = "<!doctype html><title>Method not allowed</title><h1>Method not allowed</h1><p>CONNECT is not supported.</p>\n";
pub(super) const NOT_FOUND: &str = "<!doctype html><title>No such app</title><h1>No such app</h1><p>No app is routed at this hostname.</p>\n";
const UNAVAILABLE: &str = "<!doctype html><title>Application unavailable</title><h1>Application unavailable</h1><p>The app has no healthy process right now. Try again shortly.</p>\n";
const TIMED_OUT: &str = "<!doctype html><title>Gateway timeout</title><h1>Gateway timeout</h1><p>The app did not answer in time.</p>\n";
const BAD_GATEWAY: &str =
    "<!doctype html><title>Bad gateway</title><h1>Bad gateway</h1><p>The app did not answer.</p>\n";
pub(super) const TOO_LARGE: &str = "<!doctype html><title>Payload too large</title><h1>Payload too large</h1><p>The request body is larger than this router accepts.</p>\n";
pub(super) const AMBIGUOUS: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>A request must not carry both Content-Length and Transfer-Encoding.</p>\n";
pub(super) const BAD_LENGTH: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>Content-Length must be one decimal number.</p>\n";
pub(super) const BAD_CODING: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The only transfer coding accepted is chunked, last.</p>\n";
pub(super) const BAD_HOST: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The request has no valid Host.</p>\n";
pub(super) const BAD_REQUEST: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The request is not valid HTTP/1.</p>\n";
const BAD_CHUNK: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The chunked request body is malformed.</p>\n";
pub(super) const TOO_LONG_URI: &str = "<!doctype html><title>URI too long</title><h1>URI too long</h1><p>The request line must fit in the header size limit.</p>\n";
pub(super) const TOO_BIG_HEAD: &str = "<!doctype html><title>Request header fields too large</title><h1>Request header fields too large</h1><p>The request line and headers must fit in the limit.</p>\n";

/// An answer the router makes itself for an app's request.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) reason: &'static str,
    pub(super) text: &'static str,
    /// Why, for the access line.
    pub(super) note: &'static str,
}

pub(super) const NO_ENDPOINT: Answer = Answer {
    status: 503,
    reason: "Service Unavailable",
    text: UNAVAILABLE,
    note: "no healthy endpoint",
};
pub(super) const CONNECT_FAILED: Answer = Answer {
    note: "connect failed",
    ..NO_ENDPOINT
};
pub(super) const RESPONSE_TIMEOUT: Answer = Answer {
    status: 504,
    reason: "Gateway Timeout",
    text: TIMED_OUT,
    note: "response timeout",
};
pub(super) const UPSTREAM_ERROR: Answer = Answer {
    status: 502,
    reason: "Bad Gateway",
    text: BAD_GATEWAY,
    note: "upstream error",
};
pub(super) const BODY_TOO_LARGE: Answer = Answer {
    status: 413,
    reason: "Payload Too Large",
    text: TOO_LARGE,
    note: "body too large",
};
pub(super) const BODY_MALFORMED: Answer = Answer {
    status: 400,
    reason: "Bad Request",
    text: BAD_CHUNK,
    note: "malformed chunked body",
};
