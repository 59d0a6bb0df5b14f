//! git's pkt-line framing, side-band multiplexing and the receive-pack request / report-status
//! formats (see git's `gitprotocol-pack(5)` and `gitprotocol-common(5)`).

use bytes::{BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};

/// The largest pkt-line, header included.
pub(crate) const MAX_PKT_LEN: usize = 65520;

/// One decoded pkt-line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pkt<'a> {
    /// `0000`.
    Flush,
    /// `0001` (protocol v2).
    Delim,
    /// `0002` (protocol v2, stateless).
    ResponseEnd,
    /// A data line (payload without the 4-byte header).
    Data(&'a [u8]),
}

/// Decodes the pkt-line at the start of `buf`. `Ok(None)` means more bytes are needed.
pub(crate) fn decode(buf: &[u8]) -> Result<Option<(Pkt<'_>, usize)>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let hex = std::str::from_utf8(&buf[..4])
        .ok()
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| "malformed pkt-line: length is not 4 hexadecimal digits".to_string())?;
    let len = usize::from_str_radix(hex, 16)
        .map_err(|_| "malformed pkt-line: length is not 4 hexadecimal digits".to_string())?;
    match len {
        0 => Ok(Some((Pkt::Flush, 4))),
        1 => Ok(Some((Pkt::Delim, 4))),
        2 => Ok(Some((Pkt::ResponseEnd, 4))),
        3 => Err("malformed pkt-line: length 3 is invalid".to_string()),
        n if n > MAX_PKT_LEN => Err(format!(
            "malformed pkt-line: length {n} is above the limit of {MAX_PKT_LEN}"
        )),
        n if buf.len() < n => Ok(None),
        n => Ok(Some((Pkt::Data(&buf[4..n]), n))),
    }
}

/// Checks that `buf` is a whole sequence of well-formed pkt-lines (an upload-pack request).
pub(crate) fn check_framing(buf: &[u8]) -> Result<(), String> {
    let mut pos = 0;
    while pos < buf.len() {
        match decode(&buf[pos..])? {
            Some((_, used)) => pos += used,
            None => return Err("malformed request: truncated pkt-line".to_string()),
        }
    }
    Ok(())
}

/// Encodes one data pkt-line. `data` must be at most `MAX_PKT_LEN - 4` bytes.
pub(crate) fn encode(out: &mut BytesMut, data: &[u8]) {
    debug_assert!(data.len() + 4 <= MAX_PKT_LEN);
    out.put_slice(format!("{:04x}", data.len() + 4).as_bytes());
    out.put_slice(data);
}

/// The flush pkt-line.
pub(crate) const FLUSH: &[u8] = b"0000";

/// Encodes `data` on side band `band`, split into as many packets as needed, each at most
/// `max_pkt` bytes long (65520 for `side-band-64k`, 1000 for `side-band`).
pub(crate) fn sideband(band: u8, data: &[u8], max_pkt: usize) -> Bytes {
    let chunk = max_pkt - 5;
    let mut out = BytesMut::with_capacity(data.len() + 5 * (data.len() / chunk + 1));
    for part in data.chunks(chunk) {
        out.put_slice(format!("{:04x}", part.len() + 5).as_bytes());
        out.put_u8(band);
        out.put_slice(part);
    }
    out.freeze()
}

/// Encodes text lines as `remote:` progress lines on band 2. Control characters other than tab
/// are replaced by spaces so that deploy output cannot drive the pusher's terminal.
pub(crate) fn progress_lines(text: &str, max_pkt: usize) -> Bytes {
    let mut out = BytesMut::new();
    for line in text.split('\n') {
        let mut clean: String = line
            .trim_end_matches('\r')
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        clean.push('\n');
        out.put(sideband(2, clean.as_bytes(), max_pkt));
    }
    out.freeze()
}

/// One ref update command of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefCommand {
    /// Old object id (hex; all zeros for a create).
    pub old: String,
    /// New object id (hex; all zeros for a delete).
    pub new: String,
    /// Full reference name.
    pub name: String,
}

impl RefCommand {
    /// Whether this deletes the ref.
    pub fn is_delete(&self) -> bool {
        is_zero(&self.new)
    }
}

/// Whether an object id is the null id.
pub(crate) fn is_zero(id: &str) -> bool {
    id.bytes().all(|b| b == b'0')
}

/// A parsed receive-pack request.
#[derive(Debug)]
pub(crate) struct ReceiveRequest {
    /// The ref updates, in order.
    pub commands: Vec<RefCommand>,
    /// Capabilities the client asked for.
    pub capabilities: Vec<String>,
    /// Offset of the pack data in the request body.
    pub pack_offset: usize,
}

impl ReceiveRequest {
    /// Whether the client asked for `cap`.
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }
    /// The side-band packet size the client accepts, if any.
    pub fn sideband_max(&self) -> Option<usize> {
        if self.has("side-band-64k") {
            Some(MAX_PKT_LEN)
        } else if self.has("side-band") {
            Some(1000)
        } else {
            None
        }
    }
}

fn valid_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the command list at the start of a receive-pack request body. The pack (if any) starts
/// at `pack_offset`. An empty command list (git's auth probe, `0000`) is valid.
pub(crate) fn parse_receive_request(body: &[u8]) -> Result<ReceiveRequest, String> {
    let mut pos = 0;
    let mut commands = Vec::new();
    let mut capabilities = Vec::new();
    let mut first = true;
    loop {
        let (pkt, used) = decode(&body[pos..])?
            .ok_or_else(|| "malformed request: the command list is truncated".to_string())?;
        pos += used;
        let data = match pkt {
            Pkt::Flush => break,
            Pkt::Data(d) => d,
            Pkt::Delim | Pkt::ResponseEnd => {
                return Err("malformed request: unexpected special packet".to_string())
            }
        };
        let data = data.strip_suffix(b"\n").unwrap_or(data);
        let (line, caps) = match data.iter().position(|b| *b == 0) {
            Some(i) => (&data[..i], Some(&data[i + 1..])),
            None => (data, None),
        };
        let line = std::str::from_utf8(line)
            .map_err(|_| "malformed request: a command is not UTF-8".to_string())?;
        if let Some(oid) = line.strip_prefix("shallow ") {
            if !valid_oid(oid) || caps.is_some() {
                return Err("malformed request: bad shallow line".to_string());
            }
            continue;
        }
        if line.starts_with("push-cert") {
            return Err("signed pushes (push-cert) are not supported".to_string());
        }
        if let Some(caps) = caps {
            if !first {
                return Err("malformed request: capabilities after the first command".to_string());
            }
            let caps = std::str::from_utf8(caps)
                .map_err(|_| "malformed request: capabilities are not UTF-8".to_string())?;
            capabilities = caps
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
        }
        first = false;
        let mut parts = line.splitn(3, ' ');
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("malformed request: a command must be \"<old-id> <new-id> <ref>\"".into());
        };
        if !valid_oid(old) || !valid_oid(new) || old.len() != new.len() {
            return Err("malformed request: bad object id in a command".to_string());
        }
        if name.is_empty() {
            return Err("malformed request: empty ref name in a command".to_string());
        }
        commands.push(RefCommand {
            old: old.to_ascii_lowercase(),
            new: new.to_ascii_lowercase(),
            name: name.to_string(),
        });
    }
    if capabilities.iter().any(|c| c == "push-options") && !commands.is_empty() {
        loop {
            let (pkt, used) = decode(&body[pos..])?
                .ok_or_else(|| "malformed request: push options are truncated".to_string())?;
            pos += used;
            match pkt {
                Pkt::Flush => break,
                Pkt::Data(_) => {}
                _ => return Err("malformed request: unexpected special packet".to_string()),
            }
        }
    }
    Ok(ReceiveRequest {
        commands,
        capabilities,
        pack_offset: pos,
    })
}

/// Checks that `pack` is one complete pack: `PACK` signature, version 2 or 3, and a trailing
/// SHA-1 checksum that matches the rest (which catches truncation and trailing garbage).
pub(crate) fn check_pack(pack: &[u8]) -> Result<(), String> {
    if pack.len() < 32 {
        return Err("truncated pack: shorter than a pack header and checksum".to_string());
    }
    if &pack[..4] != b"PACK" {
        return Err("malformed pack: missing PACK signature".to_string());
    }
    let version = u32::from_be_bytes([pack[4], pack[5], pack[6], pack[7]]);
    if version != 2 && version != 3 {
        return Err(format!("malformed pack: unsupported version {version}"));
    }
    let (content, trailer) = pack.split_at(pack.len() - 20);
    let digest = Sha1::digest(content);
    if digest[..] != *trailer {
        return Err("truncated or corrupt pack: checksum mismatch".to_string());
    }
    Ok(())
}

/// One ref's line of a report-status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefStatus {
    /// The full ref name.
    pub name: String,
    /// `Ok(())` or the reason it was refused.
    pub result: Result<(), String>,
}

/// A parsed report-status.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// `Ok(())` for `unpack ok`, else the unpack error.
    pub unpack: Option<Result<(), String>>,
    /// Per-ref results.
    pub refs: Vec<RefStatus>,
}

/// Parses a report-status (v1 or v2) pkt-line stream.
pub(crate) fn parse_report(buf: &[u8]) -> Report {
    let mut report = Report::default();
    let mut pos = 0;
    while let Ok(Some((pkt, used))) = decode(&buf[pos..]) {
        pos += used;
        let Pkt::Data(data) = pkt else { break };
        let line = String::from_utf8_lossy(data);
        let line = line.trim_end_matches('\n');
        if let Some(rest) = line.strip_prefix("unpack ") {
            report.unpack = Some(if rest == "ok" {
                Ok(())
            } else {
                Err(rest.to_string())
            });
        } else if let Some(name) = line.strip_prefix("ok ") {
            report.refs.push(RefStatus {
                name: name.to_string(),
                result: Ok(()),
            });
        } else if let Some(rest) = line.strip_prefix("ng ") {
            let (name, reason) = rest.split_once(' ').unwrap_or((rest, "rejected"));
            report.refs.push(RefStatus {
                name: name.to_string(),
                result: Err(reason.to_string()),
            });
        }
    }
    report
}

/// Encodes a report-status: `unpack ok`, then one `ok`/`ng` line per ref, then a flush.
pub(crate) fn encode_report(refs: &[RefStatus]) -> Bytes {
    let mut out = BytesMut::new();
    encode(&mut out, b"unpack ok\n");
    for r in refs {
        let line = match &r.result {
            Ok(()) => format!("ok {}\n", r.name),
            Err(reason) => {
                let reason: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                format!("ng {} {reason}\n", r.name)
            }
        };
        let bytes = line.as_bytes();
        encode(&mut out, &bytes[..bytes.len().min(MAX_PKT_LEN - 4)]);
    }
    out.put_slice(FLUSH);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: &str = "0000000000000000000000000000000000000000";
    const A: &str = "1111111111111111111111111111111111111111";

    fn pkt(s: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode(&mut b, s);
        b.to_vec()
    }

    #[test]
    fn decode_specials_and_errors() {
        assert_eq!(decode(b"0000").unwrap(), Some((Pkt::Flush, 4)));
        assert_eq!(decode(b"0001").unwrap(), Some((Pkt::Delim, 4)));
        assert_eq!(decode(b"000").unwrap(), None);
        assert_eq!(decode(b"0009abc").unwrap(), None);
        assert_eq!(decode(b"0008abcd").unwrap(), Some((Pkt::Data(b"abcd"), 8)));
        assert!(decode(b"0003").is_err());
        assert!(decode(b"zzzz").is_err());
        assert!(decode(b"fff1").is_err());
        assert!(check_framing(b"0008abcd0000").is_ok());
        assert!(check_framing(b"0008abc").is_err());
    }

    #[test]
    fn receive_request() {
        let mut body =
            pkt(format!("{Z} {A} refs/heads/main\0report-status side-band-64k\n").as_bytes());
        body.extend(pkt(format!("{A} {Z} refs/heads/old\n").as_bytes()));
        body.extend(b"0000PACK");
        let r = parse_receive_request(&body).unwrap();
        assert_eq!(r.commands.len(), 2);
        assert_eq!(r.commands[0].name, "refs/heads/main");
        assert!(r.commands[1].is_delete());
        assert!(r.has("report-status"));
        assert_eq!(r.sideband_max(), Some(MAX_PKT_LEN));
        assert_eq!(&body[r.pack_offset..], b"PACK");

        let probe = parse_receive_request(b"0000").unwrap();
        assert!(probe.commands.is_empty());

        assert!(parse_receive_request(b"").is_err());
        assert!(parse_receive_request(&pkt(b"garbage")).is_err());
        assert!(parse_receive_request(&pkt(format!("{Z} {A}\n").as_bytes())).is_err());
        let mut trunc = pkt(format!("{Z} {A} refs/heads/main\n").as_bytes());
        trunc.truncate(20);
        assert!(parse_receive_request(&trunc).is_err());
    }

    #[test]
    fn pack_check() {
        let mut pack = b"PACK\0\0\0\x02\0\0\0\0".to_vec();
        let sum = Sha1::digest(&pack);
        pack.extend_from_slice(&sum);
        check_pack(&pack).unwrap();
        assert!(check_pack(&pack[..pack.len() - 1]).is_err());
        let mut extra = pack.clone();
        extra.push(0);
        assert!(check_pack(&extra).is_err());
        assert!(check_pack(b"PACK").is_err());
    }

    #[test]
    fn report_roundtrip() {
        let refs = vec![
            RefStatus {
                name: "refs/heads/main".into(),
                result: Ok(()),
            },
            RefStatus {
                name: "refs/tags/x".into(),
                result: Err("only branches".into()),
            },
        ];
        let r = parse_report(&encode_report(&refs));
        assert_eq!(r.unpack, Some(Ok(())));
        assert_eq!(r.refs, refs);
    }

    #[test]
    fn sideband_split() {
        let data = vec![b'x'; 2000];
        let out = sideband(2, &data, 1000);
        let mut pos = 0;
        let mut total = 0;
        while let Some((Pkt::Data(d), used)) = decode(&out[pos..]).unwrap() {
            assert_eq!(d[0], 2);
            assert!(used <= 1000);
            total += d.len() - 1;
            pos += used;
        }
        assert_eq!(total, 2000);
        let p = progress_lines("a\x1b[31mb\r\nc", MAX_PKT_LEN);
        assert!(!p.contains(&0x1b));
    }
}
