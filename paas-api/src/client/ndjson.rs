//! NDJSON bodies as streams of lines, read as they arrive, with a limit on one line's length.

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use paas_core::{Error, ErrorKind, Result};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

/// The longest line accepted (a build's output line, a log line): longer ones end the stream
/// with an error instead of growing a buffer without bound.
pub(crate) const MAX_LINE: usize = 4 * 1024 * 1024;

/// The non-empty lines of a streamed body.
pub(crate) fn lines(resp: reqwest::Response, base: &str) -> BoxStream<'static, Result<String>> {
    let base = base.to_string();
    let bytes = resp
        .bytes_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let reader = StreamReader::new(bytes);
    FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE))
        .map_err(move |e| match e {
            LinesCodecError::MaxLineLengthExceeded => Error::new(
                ErrorKind::InvalidInput,
                format!("the server at {base} sent a line longer than {MAX_LINE} bytes"),
            ),
            LinesCodecError::Io(e) => Error::new(
                ErrorKind::Unavailable,
                format!("the connection to {base} broke: {e}"),
            ),
        })
        .try_filter(|l| futures::future::ready(!l.trim().is_empty()))
        .boxed()
}
