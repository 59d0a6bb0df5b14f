//! Request preparation: a request head parsed, checked and routed, and the head to send
//! upstream written from its slices.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::Method;

use crate::access::AccessRecord;
use crate::shared::Shared;
use crate::table::{normalize_host, parse_port, AppEntry};

use super::framing::{
    client_address_header, forwarded_family, framing_header, framing_of, hop_by_hop, idempotent,
    push_request_id, tokens, valid_request_id, ConnTokens, Framing, FramingError,
};
use super::pages::{
    page, Out, AMBIGUOUS, BAD_ASTERISK, BAD_CODING, BAD_HOST, BAD_LENGTH, BAD_REQUEST, NOT_ALLOWED,
    NOT_FOUND, TOO_BIG_HEAD, TOO_LARGE, TOO_LONG_URI,
};
use super::Client;

/// Most header lines in a request head.
const MAX_HEADERS: usize = 128;

/// Writes the forwarded headers for a request from a trusted proxy: its `x-forwarded-for`
/// values with the peer appended, and its `x-forwarded-proto`, `-host` and `-port` where valid
/// (else the proxy's own values, as for any client).
fn push_trusted_forwarded(
    up: &mut Vec<u8>,
    client: &Client,
    headers: &[httparse::Header<'_>],
    raw_host: &[u8],
) {
    let mut proto: Option<&[u8]> = None;
    let mut host: Option<&[u8]> = None;
    let mut port: Option<&[u8]> = None;
    up.extend_from_slice(b"x-forwarded-for: ");
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            let v = h.value.trim_ascii();
            if !v.is_empty() {
                up.extend_from_slice(v);
                up.extend_from_slice(b", ");
            }
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            proto = proto.or(Some(h.value.trim_ascii()));
        } else if name.eq_ignore_ascii_case("x-forwarded-host") {
            host = host.or(Some(h.value.trim_ascii()));
        } else if name.eq_ignore_ascii_case("x-forwarded-port") {
            port = port.or(Some(h.value.trim_ascii()));
        }
    }
    let _ = write!(Out(up), "{}\r\n", client.peer);
    let proto: &[u8] = match proto {
        Some(p) if p.eq_ignore_ascii_case(b"https") => b"https",
        _ => b"http",
    };
    up.extend_from_slice(b"x-forwarded-proto: ");
    up.extend_from_slice(proto);
    up.extend_from_slice(b"\r\nx-forwarded-port: ");
    let valid_port = port.filter(|p| parse_port(p).is_some_and(|n| n > 0));
    match valid_port {
        Some(p) => up.extend_from_slice(p),
        None => {
            let _ = write!(Out(up), "{}", client.port);
        }
    }
    up.extend_from_slice(b"\r\nx-forwarded-host: ");
    let host = host
        .filter(|h| normalize_host(h).is_some())
        .unwrap_or(raw_host);
    up.extend_from_slice(host);
    up.extend_from_slice(b"\r\n");
}

/// A parsed, checked and routed request, with the head to send upstream.
pub(super) struct Prepared {
    pub(super) entry: Arc<AppEntry>,
    pub(super) host: String,
    pub(super) up_head: Vec<u8>,
    pub(super) body: Framing,
    pub(super) client_keep_alive: bool,
    pub(super) http10: bool,
    pub(super) is_head: bool,
    pub(super) retryable: bool,
    /// The protocols an upgrade request asked for (its `Upgrade` value).
    pub(super) upgrade: Option<Box<[u8]>>,
    pub(super) access: Option<AccessRecord>,
}

/// What parsing the buffered bytes gave.
pub(super) enum Parsed {
    /// More bytes are needed.
    Partial,
    /// Answer this and close the connection.
    Refuse(Vec<u8>),
    /// Answer this to a request without a body (head length given), then keep the connection
    /// if the flag says so.
    Answer(Vec<u8>, usize, bool),
    Ready(Box<Prepared>, usize),
}

fn refuse(status: u16, reason: &str, text: &str) -> Parsed {
    Parsed::Refuse(page(status, reason, text, true))
}

/// The answer to a request head over the limit: 414 when the request line alone is, else 431.
fn too_big(data: &[u8], limit: usize) -> Parsed {
    let line = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    if line > limit {
        refuse(414, "URI Too Long", TOO_LONG_URI)
    } else {
        refuse(431, "Request Header Fields Too Large", TOO_BIG_HEAD)
    }
}

/// Parses and prepares the request at the front of `data`.
pub(super) fn prepare(shared: &Shared, client: &Client, data: &[u8], started: Instant) -> Parsed {
    // Left uninitialized: httparse writes the headers it finds (no 4 KiB fill per request).
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(data, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if data.len() > shared.settings.max_header_bytes {
                too_big(data, shared.settings.max_header_bytes)
            } else {
                Parsed::Partial
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return refuse(431, "Request Header Fields Too Large", TOO_BIG_HEAD)
        }
        Err(_) => return refuse(400, "Bad Request", BAD_REQUEST),
    };
    if head_len > shared.settings.max_header_bytes {
        return too_big(data, shared.settings.max_header_bytes);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return refuse(400, "Bad Request", BAD_REQUEST);
    };
    let headers = req.headers;
    if method == "CONNECT" {
        // A reverse proxy tunnels nothing.
        return refuse(405, "Method Not Allowed", NOT_ALLOWED);
    }
    let body = match request_framing(shared, headers, version) {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let (path, authority) = match request_target(method, target) {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let (raw_host, host) = match request_host(authority, headers) {
        Ok(h) => h,
        Err(refused) => return refused,
    };
    let conn = ConnTokens::of(headers);
    let client_keep_alive = if version == 0 {
        conn.keep_alive && !conn.close
    } else {
        !conn.close
    };
    let answer = |status: u16, reason: &str, text: &str| {
        // Without a body to skip, the connection can stay.
        if body == Framing::None {
            Parsed::Answer(
                page(status, reason, text, !client_keep_alive),
                head_len,
                client_keep_alive,
            )
        } else {
            refuse(status, reason, text)
        }
    };
    let found = shared.table.load().lookup(&host).cloned();
    let Some(entry) = found else {
        shared.global.unrouted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "paas_proxy::access", host = %host, "no app routed at host");
        return answer(404, "Not Found", NOT_FOUND);
    };
    let mut access = access_record(shared, client, &entry, method, path, raw_host, started);
    if let Some(refused) = refuse_body_length(shared, &entry, body, started, &mut access) {
        return refused;
    }
    let upgrade_proto = upgrade_protocol(version, &conn, headers);
    let upgrade = upgrade_proto.map(Box::<[u8]>::from);

    // The upstream head, written from the parsed slices.
    let mut up = Vec::with_capacity(head_len + 256);
    let request_id_at = copy_request_head(
        &mut up,
        method,
        path,
        headers,
        &conn,
        client,
        authority.is_some(),
    );
    push_proxy_headers(
        &mut up,
        client,
        headers,
        authority.is_some(),
        raw_host,
        body,
        upgrade_proto,
    );
    let (id_at, id_len) = match request_id_at {
        Some(at) => at,
        None => (push_request_id(&mut up), 32),
    };
    up.extend_from_slice(b"\r\n");
    if let Some(a) = access.as_mut() {
        a.request_id = Some(String::from_utf8_lossy(&up[id_at..id_at + id_len]).into_owned());
    }
    Parsed::Ready(
        Box::new(Prepared {
            entry,
            host: host.into_owned(),
            up_head: up,
            body,
            client_keep_alive,
            http10: version == 0,
            is_head: method == "HEAD",
            retryable: shared.settings.retry_idempotent
                && body == Framing::None
                && upgrade.is_none()
                && idempotent(method),
            upgrade,
            access,
        }),
        head_len,
    )
}

/// The framing of a request's body, checked (a refusal when its headers are invalid).
#[inline(always)]
fn request_framing(
    shared: &Shared,
    headers: &[httparse::Header<'_>],
    version: u8,
) -> Result<Framing, Parsed> {
    let body = match framing_of(headers, true) {
        Ok(f) => f,
        Err(e) => {
            shared
                .global
                .rejected_framing
                .fetch_add(1, Ordering::Relaxed);
            return Err(match e {
                FramingError::Ambiguous => refuse(400, "Bad Request", AMBIGUOUS),
                FramingError::BadLength => refuse(400, "Bad Request", BAD_LENGTH),
                FramingError::BadCoding => refuse(400, "Bad Request", BAD_CODING),
            });
        }
    };
    if version == 0 && body == Framing::Chunked {
        return Err(refuse(400, "Bad Request", BAD_CODING));
    }
    Ok(body)
}

/// The path of a request target and, in absolute-form, its authority (a refusal when the
/// target is not valid).
#[inline(always)]
fn request_target<'a>(method: &str, target: &'a str) -> Result<(&'a str, Option<&'a str>), Parsed> {
    // `*` (asterisk-form) exists for OPTIONS only (RFC 9112 3.2.4).
    if target == "*" && method != "OPTIONS" {
        return Err(refuse(400, "Bad Request", BAD_ASTERISK));
    }
    // The request target: origin-form, `*`, or absolute-form (whose authority is the host).
    Ok(if target.starts_with('/') || target == "*" {
        (target, None)
    } else {
        let lower = target.get(..8).unwrap_or("").to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return Err(refuse(400, "Bad Request", BAD_REQUEST));
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        (&rest[end..], Some(&rest[..end]))
    })
}

/// The request's host as sent (the target's authority, else its one `Host` header) and
/// normalized (a refusal when there is none, or more than one, or it is not valid).
#[inline(always)]
fn request_host<'a>(
    authority: Option<&'a str>,
    headers: &[httparse::Header<'a>],
) -> Result<(&'a [u8], Cow<'a, str>), Parsed> {
    let mut host_header: Option<&[u8]> = None;
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            if host_header.is_some() {
                return Err(refuse(400, "Bad Request", BAD_HOST));
            }
            host_header = Some(h.value);
        }
    }
    let raw_host: &[u8] = match (authority, host_header) {
        (Some(a), _) => a.as_bytes(),
        (None, Some(h)) => h,
        (None, None) => return Err(refuse(400, "Bad Request", BAD_HOST)),
    };
    let Some(host) = normalize_host(raw_host) else {
        return Err(refuse(400, "Bad Request", BAD_HOST));
    };
    Ok((raw_host, host))
}

/// The access line of a routed request, when access lines are enabled.
#[inline(always)]
fn access_record(
    shared: &Shared,
    client: &Client,
    entry: &AppEntry,
    method: &str,
    path: &str,
    raw_host: &[u8],
    started: Instant,
) -> Option<AccessRecord> {
    let access_log = shared.access.load();
    access_log.enabled().then(|| AccessRecord {
        log: arc_swap::Guard::into_inner(access_log),
        app: entry.route.app.clone(),
        method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
        path: path.chars().take(512).collect(),
        host: Some(String::from_utf8_lossy(raw_host).into_owned()),
        request_id: None,
        client: client.peer,
        endpoint: None,
        status: 0,
        started,
        service_ms: 0,
        bytes: 0,
        aborted: false,
        note: "",
    })
}

/// The refusal of a body whose declared length is over `max_body_bytes` (counted and logged).
#[inline(always)]
fn refuse_body_length(
    shared: &Shared,
    entry: &AppEntry,
    body: Framing,
    started: Instant,
    access: &mut Option<AccessRecord>,
) -> Option<Parsed> {
    if let (Some(limit), Framing::Length(n)) = (shared.settings.max_body_bytes, body) {
        if n > limit {
            entry.metrics.record(413, started.elapsed());
            if let Some(mut a) = access.take() {
                a.status = 413;
                a.note = "body too large";
                a.emit();
            }
            return Some(refuse(413, "Payload Too Large", TOO_LARGE));
        }
    }
    None
}

/// The protocols an upgrade request asks for, when they are passed on.
#[inline(always)]
fn upgrade_protocol<'a>(
    version: u8,
    conn: &ConnTokens<'_>,
    headers: &[httparse::Header<'a>],
) -> Option<&'a [u8]> {
    let upgrade = version == 1 && conn.upgrade;
    // `h2c` is not passed on: an app that speaks HTTP/2 over the upgraded connection would be
    // out of the proxy's sight (a known way to smuggle requests past a proxy's rules).
    if upgrade {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
            .map(|h| h.value)
            .filter(|v| !tokens(v).any(|t| t.eq_ignore_ascii_case(b"h2c")))
    } else {
        None
    }
}

/// Writes the upstream request line and the client's headers that are passed on; where the
/// value of the (first valid) `x-request-id` went, if any.
#[inline(always)]
fn copy_request_head(
    up: &mut Vec<u8>,
    method: &str,
    path: &str,
    headers: &[httparse::Header<'_>],
    conn: &ConnTokens<'_>,
    client: &Client,
    absolute_form: bool,
) -> Option<(usize, usize)> {
    up.extend_from_slice(method.as_bytes());
    up.push(b' ');
    if !path.starts_with('/') && path != "*" {
        // Absolute-form without a path (`http://host` or `http://host?q`).
        up.push(b'/');
    }
    up.extend_from_slice(path.as_bytes());
    up.extend_from_slice(b" HTTP/1.1\r\n");
    let mut request_id_at = None;
    for h in headers.iter() {
        let name = h.name;
        if hop_by_hop(name)
            || conn.names(name)
            || framing_header(name)
            || forwarded_family(name)
            || (!client.trusted && client_address_header(name))
            || (absolute_form && name.eq_ignore_ascii_case("host"))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("x-request-id") {
            if request_id_at.is_some() || !valid_request_id(h.value) {
                continue;
            }
            request_id_at = Some((up.len() + name.len() + 2, h.value.len()));
        }
        up.extend_from_slice(name.as_bytes());
        up.extend_from_slice(b": ");
        up.extend_from_slice(h.value);
        up.extend_from_slice(b"\r\n");
    }
    request_id_at
}

/// Writes the headers the proxy sets itself: `host` (absolute-form), the framing, the upgrade
/// and the forwarded ones.
#[inline(always)]
fn push_proxy_headers(
    up: &mut Vec<u8>,
    client: &Client,
    headers: &[httparse::Header<'_>],
    absolute_form: bool,
    raw_host: &[u8],
    body: Framing,
    upgrade_proto: Option<&[u8]>,
) {
    if absolute_form {
        up.extend_from_slice(b"host: ");
        up.extend_from_slice(raw_host);
        up.extend_from_slice(b"\r\n");
    }
    match body {
        Framing::Length(n) => {
            let _ = write!(Out(up), "content-length: {n}\r\n");
        }
        Framing::Chunked => up.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {
            if headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("content-length"))
            {
                up.extend_from_slice(b"content-length: 0\r\n");
            }
        }
        Framing::Close => {}
    }
    if let Some(p) = upgrade_proto {
        up.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        up.extend_from_slice(p);
        up.extend_from_slice(b"\r\n");
    }
    if client.trusted {
        push_trusted_forwarded(up, client, headers, raw_host);
    } else {
        up.extend_from_slice(&client.forwarded);
        up.extend_from_slice(b"x-forwarded-host: ");
        up.extend_from_slice(raw_host);
        up.extend_from_slice(b"\r\n");
    }
}
