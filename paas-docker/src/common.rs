//! Shared helpers: labels, error mapping, timestamps, output tails.

use std::collections::VecDeque;

use paas_core::{Error, ErrorKind};

/// The labels the platform puts on containers, images and volumes it owns.
pub mod labels {
    /// The platform id (several platforms can share one engine without adopting each other's
    /// containers).
    pub const PLATFORM: &str = "paas.platform";
    /// What the object is: [`KIND_INSTANCE`], [`KIND_RUN`] or [`KIND_BUILD`].
    pub const KIND: &str = "paas.kind";
    /// An instance container (a process of a formation).
    pub const KIND_INSTANCE: &str = "instance";
    /// A one-off run container.
    pub const KIND_RUN: &str = "run";
    /// A build container.
    pub const KIND_BUILD: &str = "build";
    /// The app name.
    pub const APP: &str = "paas.app";
    /// The release number (`3` for `v3`).
    pub const RELEASE: &str = "paas.release";
    /// The process type.
    pub const PROCESS_TYPE: &str = "paas.process-type";
    /// The instance index (`1` for `web.1`).
    pub const INDEX: &str = "paas.index";
    /// The build id of an image.
    pub const BUILD: &str = "paas.build";
    /// How an image was built (`dockerfile`, `buildpack:NAME`, `procfile`).
    pub const STRATEGY: &str = "paas.strategy";
    /// The port a web instance listens on inside its container.
    pub const PORT: &str = "paas.port";
}

pub(crate) const BACKEND: &str = "docker";

/// Maps a bollard error into the SDK's error, with the operation named.
pub(crate) fn docker_error(e: bollard::errors::Error, operation: &'static str) -> Error {
    use bollard::errors::Error as B;
    let (kind, message) = match &e {
        B::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = match status_code {
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                400 => ErrorKind::InvalidInput,
                401 | 403 => ErrorKind::PermissionDenied,
                503 => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            };
            (kind, format!("docker engine: {message}"))
        }
        B::RequestTimeoutError => (ErrorKind::Timeout, "docker engine request timed out".into()),
        B::DockerStreamError { error } => (ErrorKind::Internal, format!("docker engine: {error}")),
        B::IOError { .. }
        | B::HyperResponseError { .. }
        | B::HttpClientError { .. }
        | B::SocketNotFoundError(_)
        | B::APIVersionParseError {}
        | B::UnsupportedURISchemeError { .. } => (
            ErrorKind::Unavailable,
            "docker engine is not reachable".to_string(),
        ),
        _ => (ErrorKind::Internal, "docker engine call failed".to_string()),
    };
    let retryable = kind == ErrorKind::Unavailable || kind == ErrorKind::Timeout;
    Error::new(kind, message)
        .with_backend(BACKEND)
        .with_operation(operation)
        .with_retryable(retryable)
        .with_source(e)
}

/// Whether a bollard error is an HTTP 404 (no such container/image).
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether a bollard error is an HTTP 304 (already started/stopped) or 409 (conflict).
pub(crate) fn is_status(e: &bollard::errors::Error, code: u16) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code, .. } if *status_code == code
    )
}

/// Parses an RFC 3339 timestamp as the engine writes it (`2024-01-02T03:04:05.123456789Z`,
/// any offset) into nanoseconds since the Unix epoch.
pub(crate) fn parse_rfc3339_nanos(s: &str) -> Option<i128> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_nanosecond())
}

/// A short random suffix for container names (`a1b2c3`).
pub(crate) fn short_suffix() -> String {
    format!("{:06x}", fastrand::u32(..) & 0xff_ffff)
}

/// Keeps the last lines of some output, for error messages.
#[derive(Debug)]
pub(crate) struct Tail {
    lines: VecDeque<String>,
    max: usize,
}

impl Tail {
    pub(crate) fn new(max: usize) -> Self {
        Tail {
            lines: VecDeque::new(),
            max: max.max(1),
        }
    }
    pub(crate) fn push(&mut self, line: &str) {
        if self.lines.len() == self.max {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }
    pub(crate) fn render(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Splits a byte stream into lines: feed chunks, get complete lines; `finish` flushes the rest.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial)
                    .trim_end_matches('\r')
                    .to_string();
                out.push(line);
                self.partial.clear();
            } else {
                self.partial.push(b);
                if self.partial.len() >= 64 * 1024 {
                    out.push(String::from_utf8_lossy(&self.partial).to_string());
                    self.partial.clear();
                }
            }
        }
        out
    }
    pub(crate) fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            None
        } else {
            let line = String::from_utf8_lossy(&self.partial).to_string();
            self.partial.clear();
            Some(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("2024-02-29T23:59:59.123Z"),
            Some(1_709_251_199_123_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-02-29T23:59:59.123456789Z"),
            Some(1_709_251_199_123_456_789)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-03-01T00:59:59.123+01:00"),
            Some(1_709_251_199_123_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("0001-01-01T00:00:00Z").map(|n| n < 0),
            Some(true)
        );
        assert_eq!(parse_rfc3339_nanos("garbage"), None);
    }

    #[test]
    fn lines_and_tail() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"a\r\nb"), vec!["a"]);
        assert_eq!(s.feed(b"c\n\n"), vec!["bc", ""]);
        assert_eq!(s.finish(), None);
        let mut t = Tail::new(2);
        for l in ["1", "2", "3"] {
            t.push(l);
        }
        assert_eq!(t.render(), "2\n3");
    }
}

/// Quotes one argument for a POSIX shell (left bare when it is made of safe characters).
pub(crate) fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@%+,-".contains(&b));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The command line an image runs by default (`ENTRYPOINT` + `CMD`, shell-quoted), the `web`
/// process of a Dockerfile build without a Procfile. `None` when the image has neither.
///
/// The scheduler recognises this exact string and then runs the image's own entrypoint and
/// command unchanged (no shell needed in the image).
pub(crate) fn image_default_command(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
) -> Option<String> {
    let argv: Vec<&String> = entrypoint
        .unwrap_or_default()
        .iter()
        .chain(cmd.unwrap_or_default())
        .collect();
    if argv.is_empty() || argv.iter().all(|a| a.is_empty()) {
        return None;
    }
    Some(
        argv.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(test)]
mod quote_tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        let sh = ["/bin/sh".to_string(), "-c".into()];
        let cmd = ["echo $PORT".to_string()];
        assert_eq!(
            image_default_command(Some(&sh), Some(&cmd)).unwrap(),
            "/bin/sh -c 'echo $PORT'"
        );
        assert_eq!(image_default_command(None, None), None);
    }
}
