//! [`Buf`]: the read buffer of a client or upstream connection.

use std::io;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::ReadHalf;

/// Bytes asked for by one read.
const READ_CHUNK: usize = 16 * 1024;
/// Read size while relaying a response body: large bodies move in fewer system calls.
const BODY_CHUNK: usize = 64 * 1024;

/// Bytes read from a socket and not used yet: `data[start..]`.
#[derive(Debug, Default)]
pub(super) struct Buf {
    data: Vec<u8>,
    start: usize,
}

impl Buf {
    pub(super) fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    pub(super) fn is_empty(&self) -> bool {
        self.start == self.data.len()
    }

    pub(super) fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Drops the CR and LF bytes at the front (blank lines between requests); how many.
    pub(super) fn skip_blank_lines(&mut self) -> usize {
        let n = self
            .pending()
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        self.consume(n);
        n
    }

    /// Frees the memory of an empty buffer (an idle connection keeps none).
    pub(super) fn release(&mut self) {
        if self.is_empty() {
            self.data = Vec::new();
            self.start = 0;
        }
    }

    /// Makes room for a read of `chunk` bytes.
    fn reserve(&mut self, chunk: usize) {
        if self.start > 0 && self.data.capacity() - self.data.len() < chunk {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.reserve(chunk);
    }

    /// Reads once; the number of bytes read (0 at EOF).
    pub(super) async fn read_from(&mut self, r: &mut ReadHalf<'_>) -> io::Result<usize> {
        self.reserve(READ_CHUNK);
        r.read_buf(&mut self.data).await
    }

    /// Reads once, up to `BODY_CHUNK` bytes (fewer system calls for large bodies).
    pub(super) async fn read_body_from(&mut self, r: &mut ReadHalf<'_>) -> io::Result<usize> {
        self.reserve(BODY_CHUNK);
        r.read_buf(&mut self.data).await
    }
}
