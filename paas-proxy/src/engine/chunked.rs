//! [`Chunked`]: the incremental decoder of chunked bodies (strict for requests, lenient for
//! responses).

/// Longest chunk extension or trailer section accepted in a chunked body.
const MAX_CHUNK_META: usize = 16 * 1024;

/// Decodes a chunked body incrementally.
///
/// Request bodies are held to the grammar of RFC 9112 7.1: every line ends with CRLF, a chunk
/// extension is `BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ]`, and a trailer line
/// is a field name (a token), a colon and a value of visible characters, spaces and tabs. Any
/// other byte (a bare LF, a control character, junk after the size, a trailer line without a
/// colon) makes the body malformed, so that a proxy in front, which may read such bytes
/// differently, never disagrees with this one on where the body ends. Response bodies
/// (`Chunked::lenient`) are read as before: bare LFs accepted, extensions and trailers skipped
/// unchecked.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
    /// Bytes of the current chunk's extensions, or of the trailer section.
    meta: usize,
    /// Bytes of the current trailer line (lenient decoding).
    line: usize,
    /// Bare LFs accepted, extensions and trailers not checked (response bodies).
    lenient: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Lenient: the rest of a chunk-size line, skipped.
    Ext,
    /// Whitespace after the size or an extension: a `;` must follow.
    ExtWs,
    /// After a `;`: whitespace, then an extension name.
    ExtNameStart,
    ExtName,
    /// Whitespace after an extension name: `=` or `;` must follow.
    ExtNameWs,
    /// After `=`: whitespace, then a token or a quoted string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    /// After a backslash in a quoted string.
    ExtQuotedPair,
    /// After the closing quote of a quoted string.
    ExtQuotedEnd,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// Lenient: the trailer section, skipped.
    Trailer,
    /// The start of a trailer line, or of the CRLF ending the body.
    TrailerLine,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// The LF ending the body.
    EndLf,
    Done,
}

/// A chunked body broke the rules.
#[derive(Debug)]
pub(super) struct BadChunk;

/// A `tchar` of RFC 9110 5.6.2 (the bytes of a token: header names, extension names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, a visible character or obs-text: what a field value or a quoted string may hold
/// (no control character).
fn is_text(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

impl Chunked {
    /// A decoder for response bodies: bare LFs accepted, extensions and trailers skipped.
    pub(super) fn lenient() -> Self {
        Chunked {
            lenient: true,
            ..Chunked::default()
        }
    }

    /// Feeds `input`; data bytes go to `on_data`. Returns how many bytes were consumed (the
    /// body ends there once `done()`).
    pub(super) fn feed(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Done => return Ok(i),
                ChunkState::Data(left) => {
                    let n = ((input.len() - i) as u64).min(left) as usize;
                    on_data(&input[i..i + n]);
                    i += n;
                    self.state = if n as u64 == left {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left - n as u64)
                    };
                    continue;
                }
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(BadChunk);
                        }
                        self.size = self.size * 16 + (b as char).to_digit(16).unwrap_or(0) as u64;
                    }
                    b'\r' if self.digits > 0 => self.state = ChunkState::SizeLf,
                    b';' | b' ' | b'\t' if self.digits > 0 && self.lenient => {
                        self.state = ChunkState::Ext
                    }
                    b'\n' if self.digits > 0 && self.lenient => self.end_size_line(),
                    b';' if self.digits > 0 => self.state = ChunkState::ExtNameStart,
                    b' ' | b'\t' if self.digits > 0 => self.state = ChunkState::ExtWs,
                    _ => return Err(BadChunk),
                },
                ChunkState::Ext => match b {
                    b'\n' => self.end_size_line(),
                    _ => self.count_meta()?,
                },
                ChunkState::SizeLf => match b {
                    b'\n' => self.end_size_line(),
                    _ => return Err(BadChunk),
                },
                ChunkState::DataCr => match b {
                    b'\r' => self.state = ChunkState::DataLf,
                    b'\n' if self.lenient => self.next_chunk(),
                    _ => return Err(BadChunk),
                },
                ChunkState::DataLf => match b {
                    b'\n' => self.next_chunk(),
                    _ => return Err(BadChunk),
                },
                ChunkState::Trailer => {
                    self.count_meta()?;
                    match b {
                        b'\n' if self.line == 0 => {
                            self.state = ChunkState::Done;
                            return Ok(i + 1);
                        }
                        b'\n' => self.line = 0,
                        b'\r' => {}
                        _ => self.line += 1,
                    }
                }
                state => {
                    self.count_meta()?;
                    self.state = strict_step(state, b)?;
                    if self.state == ChunkState::Done {
                        return Ok(i + 1);
                    }
                }
            }
            i += 1;
        }
        Ok(i)
    }

    pub(super) fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Counts a byte of extensions or trailers against `MAX_CHUNK_META`.
    fn count_meta(&mut self) -> Result<(), BadChunk> {
        self.meta += 1;
        if self.meta > MAX_CHUNK_META {
            return Err(BadChunk);
        }
        Ok(())
    }

    fn end_size_line(&mut self) {
        self.state = if self.size > 0 {
            ChunkState::Data(self.size)
        } else if self.lenient {
            self.line = 0;
            ChunkState::Trailer
        } else {
            ChunkState::TrailerLine
        };
    }

    fn next_chunk(&mut self) {
        self.meta = 0;
        self.size = 0;
        self.digits = 0;
        self.state = ChunkState::Size;
    }
}

/// The next state after byte `b` of a chunk extension or of the trailer section, checked
/// against RFC 9112 7.1 (`chunk-ext`, `trailer-section`).
fn strict_step(state: ChunkState, b: u8) -> Result<ChunkState, BadChunk> {
    use ChunkState::*;
    Ok(match (state, b) {
        (ExtWs | ExtNameStart, b' ' | b'\t') => state,
        (ExtWs | ExtName | ExtNameWs | ExtToken | ExtQuotedEnd, b';') => ExtNameStart,
        (ExtNameStart | ExtName, _) if is_tchar(b) => ExtName,
        (ExtName | ExtNameWs, b' ' | b'\t') => ExtNameWs,
        (ExtName | ExtNameWs, b'=') => ExtValueStart,
        (ExtValueStart, b' ' | b'\t') => ExtValueStart,
        (ExtValueStart, b'"') => ExtQuoted,
        (ExtValueStart | ExtToken, _) if is_tchar(b) => ExtToken,
        (ExtToken | ExtQuotedEnd, b' ' | b'\t') => ExtWs,
        (ExtName | ExtToken | ExtQuotedEnd, b'\r') => SizeLf,
        (ExtQuoted, b'"') => ExtQuotedEnd,
        (ExtQuoted, b'\\') => ExtQuotedPair,
        (ExtQuoted | ExtQuotedPair, _) if is_text(b) => ExtQuoted,
        (TrailerLine, b'\r') => EndLf,
        (TrailerLine | TrailerName, _) if is_tchar(b) => TrailerName,
        (TrailerName, b':') => TrailerValue,
        (TrailerValue, b'\r') => TrailerLf,
        (TrailerValue, _) if is_text(b) => TrailerValue,
        (TrailerLf, b'\n') => TrailerLine,
        (EndLf, b'\n') => Done,
        _ => return Err(BadChunk),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_with(mut d: Chunked, parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), BadChunk> {
        let mut data = Vec::new();
        let mut used = 0;
        for p in parts {
            used += d.feed(p, |b| data.extend_from_slice(b))?;
            if d.done() {
                break;
            }
        }
        Ok((data, used, d.done()))
    }

    /// Decodes a request body (strict).
    fn decode(parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), BadChunk> {
        decode_with(Chunked::default(), parts)
    }

    /// Decodes a request body fed one byte at a time.
    fn decode_bytewise(msg: &[u8]) -> Result<(Vec<u8>, usize, bool), BadChunk> {
        let parts: Vec<&[u8]> = msg.chunks(1).collect();
        decode(&parts)
    }

    #[test]
    fn chunked_bodies_decode_split_anywhere() {
        let msg: &[u8] = b"5;x=y\r\nhello\r\n10 ; a ; b = \"q\\\"x\" ;c=d\r\n0123456789abcdef\r\n3\r\nabc\r\n0;last\r\nX-T: 1\r\nEmpty:\r\nTab:\tv a l\t\r\n\r\nGET / HTTP/1.1\r\n";
        let body_len = msg.len() - b"GET / HTTP/1.1\r\n".len();
        for split in 0..msg.len() {
            let (data, used, done) = decode(&[&msg[..split], &msg[split..]]).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(data, b"hello0123456789abcdefabc", "split at {split}");
            assert_eq!(
                used, body_len,
                "split at {split}: the next request is left alone"
            );
        }
        let (data, used, done) = decode_bytewise(msg).unwrap();
        assert!(done);
        assert_eq!(
            (data.as_slice(), used),
            (&b"hello0123456789abcdefabc"[..], body_len)
        );
    }

    #[test]
    fn response_bodies_are_decoded_leniently() {
        let msg: &[u8] =
            b"5;x=y\r\nhello\r\n10 junk\r\n0123456789abcdef\r\n3\nabc\n0\r\nX-T 1\r\n\r\nnext";
        let body_len = msg.len() - b"next".len();
        for split in 0..msg.len() {
            let (data, used, done) =
                decode_with(Chunked::lenient(), &[&msg[..split], &msg[split..]]).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(data, b"hello0123456789abcdefabc", "split at {split}");
            assert_eq!(used, body_len, "split at {split}");
        }
        assert!(
            decode(&[msg]).is_err(),
            "a request body is held to RFC 9112"
        );
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\rX",
            b"1111111111111111\r\n",
            // Bare LFs.
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5;a=b\nhello\r\n0\r\n\r\n",
            b"0\n\r\n",
            b"0\r\n\n",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\nX-T: 1\r\n\n",
            // Control characters in extensions.
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"5;a=b\x01\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\x7f\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\rc\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\\\x00\"\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            // Junk after the size that is not an extension.
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;=b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a b\r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"unterminated\r\nhello\r\n0\r\n\r\n",
            b"5;a=b;\r\nhello\r\n0\r\n\r\n",
            b"5;a@b\r\nhello\r\n0\r\n\r\n",
            b"0 x\r\n\r\n",
            // Malformed trailer lines.
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nBad Name: x\r\n\r\n",
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nX-T: 1\r\n continued\r\n\r\n",
            b"0\r\nX(T): 1\r\n\r\n",
            b"0\r\nX-T: a\x00b\r\n\r\n",
            b"0\r\nX-T: a\rb\r\n\r\n",
            b"0\r\n\rX",
        ] {
            let shown = String::from_utf8_lossy(bad);
            assert!(decode(&[bad]).is_err(), "{shown:?}");
            assert!(decode_bytewise(bad).is_err(), "byte by byte: {shown:?}");
        }
    }

    #[test]
    fn long_chunk_extensions_and_trailers_are_refused() {
        let mut ext = b"1;a=".to_vec();
        ext.resize(MAX_CHUNK_META + 8, b'x');
        ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(decode(&[&ext]).is_err());
        let mut trailer = b"0\r\nX-T: ".to_vec();
        trailer.resize(MAX_CHUNK_META + 8, b'x');
        trailer.extend_from_slice(b"\r\n\r\n");
        assert!(decode(&[&trailer]).is_err());
    }
}
