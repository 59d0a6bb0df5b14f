//! [`probe`]: the one health probe every backend uses, so that "healthy" means the same to
//! the schedulers and the router.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::traits::HealthCheck;

/// Probes `addr` once, as `check` says, within `timeout`:
/// - `Running` and `Tcp`: a TCP connect succeeds;
/// - `Http { path }`: `GET path` (HTTP/1.1, `Connection: close`) is answered with a status
///   line whose status is from 200 to 399 (redirects count as healthy; 1xx, 4xx and 5xx do
///   not).
///
/// Never panics; anything else (refused, reset, timeout, junk) is `false`.
pub async fn probe(addr: SocketAddr, check: &HealthCheck, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, attempt(addr, check)).await,
        Ok(Some(true))
    )
}

async fn attempt(addr: SocketAddr, check: &HealthCheck) -> Option<bool> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let path = match check {
        HealthCheck::Http { path } => path,
        _ => return Some(true),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: paas-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::with_capacity(128);
    let mut chunk = [0u8; 128];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = std::str::from_utf8(&head).ok()?.lines().next()?;
    let mut parts = line.split_ascii_whitespace();
    let version = parts.next()?;
    let status: u16 = parts.next()?.parse().ok()?;
    Some(version.starts_with("HTTP/1.") && (200..400).contains(&status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server answering every connection with `status_line`.
    async fn answering(status_line: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("{status_line}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn statuses_from_200_to_399_are_healthy() {
        let http = HealthCheck::http("/up").unwrap();
        let t = Duration::from_secs(2);
        for (line, healthy) in [
            ("HTTP/1.1 200 OK", true),
            ("HTTP/1.1 302 Found", true),
            ("HTTP/1.0 399 Odd", true),
            ("HTTP/1.1 100 Continue", false),
            ("HTTP/1.1 404 Not Found", false),
            ("HTTP/1.1 503 Unavailable", false),
            ("SSH-2.0-OpenSSH", false),
        ] {
            let addr = answering(line).await;
            assert_eq!(probe(addr, &http, t).await, healthy, "{line}");
            assert!(probe(addr, &HealthCheck::Tcp, t).await);
        }
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        assert!(!probe(closed, &HealthCheck::Tcp, t).await);
    }
}
