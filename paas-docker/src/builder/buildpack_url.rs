//! The `BUILDPACK_URL` policy (which URLs may be fetched) and the clone of the buildpack.

use std::path::Path;

use paas_core::{Error, Result};

use super::{BuildOutput, DockerBuilder};
use crate::common::BACKEND;

impl DockerBuilder {
    pub(super) async fn clone_buildpack(
        &self,
        url: &str,
        dest: &Path,
        progress: &BuildOutput,
    ) -> Result<()> {
        let (repo, reference) = match url.rsplit_once('#') {
            Some((r, f)) if !f.is_empty() && !r.is_empty() => (r, Some(f)),
            _ => (url, None),
        };
        let repo = repo.trim();
        let bad = repo.is_empty()
            || repo.starts_with('-')
            || reference.is_some_and(|r| r.starts_with('-'))
            || repo.contains(['\n', '\r', '\0']);
        if bad {
            return Err(progress.failed(
                "BUILDPACK_URL must be a git URL, a file:// URL or a local path (optionally with #ref)",
            ));
        }
        if let Err(why) = check_buildpack_url(repo, self.settings.allow_local_buildpack_urls).await
        {
            return Err(progress.failed(&format!("BUILDPACK_URL refused: {why}")));
        }
        progress.line(&format!("-----> Fetching buildpack {}", redact_url(repo)));
        let home = tempfile::tempdir().map_err(|e| {
            Error::unavailable("could not make a home directory for git")
                .with_backend(BACKEND)
                .with_operation("build")
                .with_source(e)
        })?;
        let mut cmd = tokio::process::Command::new(&self.settings.git_program);
        // The daemon's environment and git configuration (credential helpers, proxies, ssh
        // keys, `url.*.insteadOf`) stay out of it; only the allowed protocols run.
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let protocols = if self.settings.allow_local_buildpack_urls {
            "https:http:git:file"
        } else {
            "https:http:git"
        };
        cmd.env("HOME", home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", protocols)
            .env("GIT_SSH_COMMAND", "false")
            .arg("-c")
            .arg("http.followRedirects=false")
            .arg("-c")
            .arg("credential.helper=")
            .arg("clone")
            .arg("--depth")
            .arg("1")
            .arg("--quiet");
        if let Some(r) = reference {
            cmd.arg("--branch").arg(r);
        }
        cmd.arg("--")
            .arg(repo)
            .arg(dest)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = cmd.output().await.map_err(|e| {
            Error::unavailable("could not run git to fetch BUILDPACK_URL")
                .with_backend(BACKEND)
                .with_operation("build")
                .with_source(e)
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).replace(repo, "<BUILDPACK_URL>");
            for l in stderr.lines().filter(|l| !l.trim().is_empty()) {
                progress.line(l);
            }
            return Err(progress.failed("fetching the buildpack from BUILDPACK_URL failed"));
        }
        Ok(())
    }
}

/// Whether `BUILDPACK_URL` may be fetched: the error says which rule it breaks.
async fn check_buildpack_url(url: &str, allow_local: bool) -> std::result::Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        if lower.contains("::") || (lower.contains(':') && !lower.starts_with('/')) {
            return Err(
                "ssh and git transport helpers (`host:path`, `ext::`) are not allowed".into(),
            );
        }
        return if allow_local {
            Ok(())
        } else {
            Err("local paths are not allowed; use an https:// URL".into())
        };
    };
    match scheme {
        "https" | "http" | "git" => {}
        "file" if allow_local => return Ok(()),
        "file" => return Err("file:// URLs are not allowed; use an https:// URL".into()),
        _ => {
            return Err(format!(
                "the {scheme}:// scheme is not allowed; use https://"
            ))
        }
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err("malformed host".into()),
        },
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("the URL names no host".into());
    }
    if allow_local {
        return Ok(());
    }
    let port: u16 = match port {
        Some(p) => p.parse().map_err(|_| "malformed port".to_string())?,
        None => 443,
    };
    let addrs: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("the host does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err("the host does not resolve".into());
    }
    if let Some(ip) = addrs.iter().find(|ip| is_local(**ip)) {
        return Err(format!(
            "the host is a loopback, private or link-local address ({ip}); buildpacks come from public hosts"
        ));
    }
    Ok(())
}

/// Addresses only this host or its private networks reach.
fn is_local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_local(v4.into()))
        }
    }
}

/// Hides credentials in a URL (`https://user:token@host/x` -> `https://***@host/x`).
pub(super) fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://***@{host}/{path}");
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn buildpack_urls_are_checked() {
        use super::check_buildpack_url as check;
        for ok in [
            "https://93.184.216.34/heroku/heroku-buildpack-ruby",
            "http://93.184.216.34:8080/bp.git",
            "git://93.184.216.34/bp",
        ] {
            assert!(check(ok, false).await.is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:7070/other-app.git",
            "https://localhost/bp",
            "https://10.1.2.3/bp",
            "https://[::1]/bp",
            "https://169.254.169.254/latest",
            "https://[::ffff:127.0.0.1]/bp",
            "file:///var/lib/paas/repos/other.git",
            "/var/lib/paas/repos/other.git",
            "git@github.com:heroku/bp.git",
            "ssh://git@github.com/heroku/bp.git",
            "ext::sh -c touch% /tmp/pwned",
            "https://",
        ] {
            let e = check(bad, false).await.unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(check("file:///srv/buildpacks/bp", true).await.is_ok());
        assert!(check("/srv/buildpacks/bp", true).await.is_ok());
        assert!(check("ext::sh -c x", true).await.is_err());
    }
}
