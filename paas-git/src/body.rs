//! Request bodies of git's smart-HTTP: read as they stream, refused the moment they pass the
//! limit (before anything more is buffered), kept in memory while small and spooled to a
//! temporary file past [`SPOOL_AT`], so a large push never sits in the daemon's memory.

use std::io::{Read, Seek, SeekFrom, Write};

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use sha1::{Digest, Sha1};

/// A boxed, thread-safe error (what a request body may fail with).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bodies larger than this go to a temporary file.
pub(crate) const SPOOL_AT: usize = 8 * 1024 * 1024;

/// A request body, whole.
pub(crate) enum RequestBody {
    /// Small: in memory.
    Memory(Bytes),
    /// Large: in an unlinked temporary file.
    File {
        /// The file (read from the start by each reader; cloned handles share the offset, so
        /// readers seek first).
        file: std::fs::File,
        /// Its length.
        len: u64,
    },
}

/// Why a body could not be read.
pub(crate) enum ReadError {
    /// Past the limit (nothing more was read).
    TooLarge,
    /// The client's stream broke, or the spool file could not be written.
    Unreadable(String),
}

impl RequestBody {
    /// Reads `body` whole, refusing it as soon as it passes `limit` bytes.
    pub(crate) async fn read<B>(body: B, limit: usize) -> Result<RequestBody, ReadError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut body = std::pin::pin!(body);
        let mut mem = BytesMut::new();
        let mut file: Option<std::fs::File> = None;
        let mut total = 0usize;
        loop {
            let data = match body.frame().await {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue, // trailers
                },
                Some(Err(e)) => {
                    let why = format!("reading the request failed: {}", e.into());
                    return Err(ReadError::Unreadable(why));
                }
            };
            total = total.saturating_add(data.len());
            if total > limit {
                return Err(ReadError::TooLarge);
            }
            match &mut file {
                None if mem.len() + data.len() <= SPOOL_AT => mem.extend_from_slice(&data),
                None => {
                    let mut f = tempfile::tempfile().map_err(spool_error)?;
                    let head = std::mem::take(&mut mem);
                    f = tokio::task::spawn_blocking(move || {
                        f.write_all(&head)?;
                        f.write_all(&data)?;
                        Ok::<_, std::io::Error>(f)
                    })
                    .await
                    .map_err(|e| ReadError::Unreadable(e.to_string()))?
                    .map_err(spool_error)?;
                    file = Some(f);
                }
                Some(f) => {
                    let mut handle = f.try_clone().map_err(spool_error)?;
                    tokio::task::spawn_blocking(move || handle.write_all(&data))
                        .await
                        .map_err(|e| ReadError::Unreadable(e.to_string()))?
                        .map_err(spool_error)?;
                }
            }
        }
        Ok(match file {
            None => RequestBody::Memory(mem.freeze()),
            Some(file) => RequestBody::File {
                file,
                len: total as u64,
            },
        })
    }

    /// Its length.
    pub(crate) fn len(&self) -> u64 {
        match self {
            RequestBody::Memory(b) => b.len() as u64,
            RequestBody::File { len, .. } => *len,
        }
    }

    /// Its first `n` bytes (fewer if shorter). Blocking for a spooled body.
    pub(crate) fn prefix(&self, n: usize) -> std::io::Result<Bytes> {
        match self {
            RequestBody::Memory(b) => Ok(b.slice(..n.min(b.len()))),
            RequestBody::File { file, len } => {
                let mut f = file.try_clone()?;
                f.seek(SeekFrom::Start(0))?;
                let n = (n as u64).min(*len) as usize;
                let mut out = vec![0u8; n];
                f.read_exact(&mut out)?;
                Ok(Bytes::from(out))
            }
        }
    }

    /// A reader of the whole body from its start.
    pub(crate) fn reader(&self) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            RequestBody::Memory(b) => Box::new(std::io::Cursor::new(b.clone())),
            RequestBody::File { file, len } => {
                let mut f = file.try_clone()?;
                f.seek(SeekFrom::Start(0))?;
                Box::new(f.take(*len))
            }
        })
    }

    /// Checks that the bytes from `offset` on are one complete pack (see
    /// [`crate::pktline::check_pack`]), reading a spooled body in chunks. Blocking.
    pub(crate) fn check_pack_from(&self, offset: usize) -> Result<(), String> {
        if let RequestBody::Memory(b) = self {
            return crate::pktline::check_pack(&b[offset.min(b.len())..]);
        }
        let len = self.len().saturating_sub(offset as u64);
        if len < 32 {
            return Err("truncated pack: shorter than a pack header and checksum".to_string());
        }
        let mut r = self
            .reader()
            .map_err(|e| format!("reading the pack failed: {e}"))?;
        std::io::copy(&mut (&mut r).take(offset as u64), &mut std::io::sink())
            .map_err(|e| format!("reading the pack failed: {e}"))?;
        let mut header = [0u8; 8];
        r.read_exact(&mut header)
            .map_err(|e| format!("reading the pack failed: {e}"))?;
        if &header[..4] != b"PACK" {
            return Err("malformed pack: missing PACK signature".to_string());
        }
        let version = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if version != 2 && version != 3 {
            return Err(format!("malformed pack: unsupported version {version}"));
        }
        let mut sha = Sha1::new();
        sha.update(header);
        let mut content_left = len - 20 - 8;
        let mut buf = vec![0u8; 256 * 1024];
        while content_left > 0 {
            let want = (buf.len() as u64).min(content_left) as usize;
            r.read_exact(&mut buf[..want])
                .map_err(|e| format!("reading the pack failed: {e}"))?;
            sha.update(&buf[..want]);
            content_left -= want as u64;
        }
        let mut trailer = [0u8; 20];
        r.read_exact(&mut trailer)
            .map_err(|e| format!("reading the pack failed: {e}"))?;
        if sha.finalize()[..] != trailer {
            return Err("truncated or corrupt pack: checksum mismatch".to_string());
        }
        Ok(())
    }
}

fn spool_error(e: std::io::Error) -> ReadError {
    ReadError::Unreadable(format!("spooling the request to disk failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn pack(content: &[u8]) -> Vec<u8> {
        let mut p = b"PACK\0\0\0\x02\0\0\0\x00".to_vec();
        p.extend_from_slice(content);
        let digest = Sha1::digest(&p);
        p.extend_from_slice(&digest);
        p
    }

    #[tokio::test]
    async fn large_bodies_spool_and_check_like_small_ones() {
        let mut big = b"0000".to_vec();
        big.extend(pack(&vec![7u8; SPOOL_AT + 12345]));
        // Streamed in 64 KiB frames.
        let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = big
            .chunks(64 * 1024)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = StreamBody::new(futures::stream::iter(frames));
        let read = RequestBody::read(body, 64 * 1024 * 1024)
            .await
            .ok()
            .unwrap();
        assert!(matches!(read, RequestBody::File { .. }));
        assert_eq!(read.len(), big.len() as u64);
        assert_eq!(&read.prefix(4).unwrap()[..], b"0000");
        read.check_pack_from(4).unwrap();
        let mut all = Vec::new();
        read.reader().unwrap().read_to_end(&mut all).unwrap();
        assert_eq!(all, big);

        let mut corrupt = big.clone();
        let n = corrupt.len();
        corrupt[n / 2] ^= 1;
        let read = RequestBody::read(Full::new(Bytes::from(corrupt)), usize::MAX)
            .await
            .ok()
            .unwrap();
        assert!(read.check_pack_from(4).unwrap_err().contains("checksum"));

        let small = RequestBody::read(Full::new(Bytes::from(pack(b"x"))), 1024)
            .await
            .ok()
            .unwrap();
        assert!(matches!(small, RequestBody::Memory(_)));
        small.check_pack_from(0).unwrap();
    }

    #[tokio::test]
    async fn over_the_limit_stops_reading() {
        let body = Full::new(Bytes::from(vec![0u8; 2048]));
        assert!(matches!(
            RequestBody::read(body, 1024).await,
            Err(ReadError::TooLarge)
        ));
    }
}
