//! Stack images: the base file systems builds and processes run on, made without a registry.
//!
//! The default stack, [`DEFAULT_STACK_IMAGE`], is `FROM scratch` plus the static busybox binary
//! of Debian's `busybox-static` package (`apt-get install -y busybox-static` puts it at
//! `/bin/busybox`), with:
//!
//! - every applet the binary reports (`busybox --list-full`) as a symlink to `/bin/busybox`
//!   (the `busybox --install -s` layout): `sh`, `httpd`, `nc`, `wget`, `env`, `sleep`...;
//! - an unprivileged user `app` (uid/gid [`APP_UID`]) whose home `/app` it owns, and `nobody`;
//! - `printenv` (a small script: the Debian build lacks the applet);
//! - `/tmp` (mode 1777), `/root`, `/etc/passwd`, `/etc/group`;
//! - `PATH`, `HOME=/app`, `WORKDIR /app`, `USER 1000:1000` in the image config.
//!
//! The root file system is a tar archive written in Rust and imported through the Engine API
//! (`POST /images/create?fromSrc=-`, what `docker import` does), which keeps ownership and
//! modes exactly; it takes well under a second.
//!
//! A realistic stack (bash, coreutils, python3) comes from `scripts/make-debian-stack.sh`:
//! `debootstrap --variant=minbase` piped through `tar` into `docker import`, with the same
//! `app` user and layout. Point [`crate::DockerBuilderSettings::stack_image`] at it (or at a
//! registry image on a machine that has one).

use std::path::Path;

use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use futures::StreamExt;
use paas_core::{Error, Result};

use crate::common::{docker_error, is_not_found, BACKEND};
use crate::tarball::{Owner, TarWriter};

/// The default stack image tag.
pub const DEFAULT_STACK_IMAGE: &str = "paas/stack-busybox:1";
/// Where Debian's `busybox-static` package installs the static binary.
pub const BUSYBOX_PATH: &str = "/bin/busybox";
/// The uid and gid of the unprivileged `app` user of the stacks.
pub const APP_UID: u32 = 1000;
/// The layout revision of the busybox stack; [`ensure_busybox_stack`] rebuilds an image with
/// another revision.
pub const STACK_REVISION: &str = "2";
const REVISION_LABEL: &str = "paas.stack-revision";

/// `printenv`, which Debian's busybox-static lacks.
const PRINTENV: &str = r#"#!/bin/sh
# printenv [NAME...] (busybox-static has no printenv applet)
[ $# -eq 0 ] && exec env
rc=0
for name in "$@"; do
  awk -v n="$name" 'BEGIN { if (n in ENVIRON) { print ENVIRON[n]; exit 0 } exit 1 }' || rc=1
done
exit $rc
"#;

/// `PATH` inside stack images.
pub const STACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Returns the id of the image `tag`, creating the busybox stack under that tag first if it does
/// not exist, from the binary at [`BUSYBOX_PATH`].
///
/// Errors: `NotFound` if the image is missing and `/bin/busybox` is absent (install Debian's
/// `busybox-static`); `Unavailable` when the engine is unreachable.
pub async fn ensure_busybox_stack(docker: &Docker, tag: &str) -> Result<String> {
    // One import at a time in this process: concurrent callers would each import and leave
    // the loser's image dangling.
    static ENSURE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ENSURE.lock().await;
    match docker.inspect_image(tag).await {
        Ok(img) => {
            let revision = img
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(REVISION_LABEL).cloned());
            if revision.as_deref() == Some(STACK_REVISION) {
                return img.id.ok_or_else(|| Error::internal("image without id"));
            }
            // An older layout of the stack: rebuild it under the same tag, and drop the old
            // image unless builds still use it as their base.
            let id = build_busybox_stack(docker, tag, Path::new(BUSYBOX_PATH)).await?;
            if let Some(old) = img.id.filter(|old| *old != id) {
                let _ = docker
                    .remove_image(
                        &old,
                        None::<bollard::query_parameters::RemoveImageOptions>,
                        None,
                    )
                    .await;
            }
            return Ok(id);
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(docker_error(e, "ensure_stack")),
    }
    build_busybox_stack(docker, tag, Path::new(BUSYBOX_PATH)).await
}

/// Creates (or replaces) the busybox stack image `tag` from the static busybox binary at
/// `busybox`, returning the image id.
///
/// Errors: `NotFound` if `busybox` does not exist; `InvalidInput` for a bad tag;
/// `Unavailable` when the engine is unreachable.
pub async fn build_busybox_stack(docker: &Docker, tag: &str, busybox: &Path) -> Result<String> {
    let (repo, tag_part) = split_tag(tag)?;
    let busybox = busybox.to_path_buf();
    let rootfs = tokio::task::spawn_blocking(move || busybox_rootfs(&busybox))
        .await
        .map_err(|e| Error::internal(format!("stack task failed: {e}")))??;
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.to_string()),
        tag: Some(tag_part.to_string()),
        message: Some("paas busybox stack".into()),
        changes: vec![
            format!("ENV PATH={STACK_PATH}"),
            "ENV HOME=/app".into(),
            "WORKDIR /app".into(),
            format!("USER {APP_UID}:{APP_UID}"),
            "LABEL paas.stack=busybox".into(),
            format!("LABEL {REVISION_LABEL}={STACK_REVISION}"),
            "CMD [\"/bin/sh\"]".into(),
        ],
        ..Default::default()
    };
    let mut stream =
        docker.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| docker_error(e, "import_stack"))?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            return Err(
                Error::internal(format!("importing the stack image failed: {err}"))
                    .with_backend(BACKEND)
                    .with_operation("import_stack"),
            );
        }
    }
    let img = docker
        .inspect_image(tag)
        .await
        .map_err(|e| docker_error(e, "import_stack"))?;
    img.id
        .ok_or_else(|| Error::internal("imported image without id"))
}

fn split_tag(tag: &str) -> Result<(&str, &str)> {
    let (repo, t) = match tag.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (tag, "latest"),
    };
    let ok = !repo.is_empty()
        && !t.is_empty()
        && repo
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/-:".contains(&b))
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok((repo, t))
    } else {
        Err(Error::invalid(format!(
            "invalid stack image tag \"{tag}\": expected repository[:tag] in lowercase letters, digits, '.', '_', '-', '/'"
        )))
    }
}

/// The root file system of the busybox stack, as a tar archive.
fn busybox_rootfs(busybox: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(busybox).map_err(|e| {
        Error::not_found(format!(
            "static busybox binary not found at {} (install Debian's busybox-static package)",
            busybox.display()
        ))
        .with_source(e)
    })?;
    let applets = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| Error::internal("could not run busybox --list-full").with_source(e))?;
    if !applets.status.success() {
        return Err(Error::internal("busybox --list-full failed"));
    }
    let applets = String::from_utf8_lossy(&applets.stdout).to_string();

    let root = Owner::ROOT;
    let app = Owner {
        uid: APP_UID.into(),
        gid: APP_UID.into(),
    };
    let mut w = TarWriter::new();
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/local",
        "usr/local/bin",
        "etc",
        "var",
        "home",
        "dev",
        "proc",
        "sys",
    ] {
        w.dir(dir, 0o755, root)?;
    }
    w.dir("root", 0o700, root)?;
    w.dir("tmp", 0o1777, root)?;
    w.dir("var/tmp", 0o1777, root)?;
    w.dir("app", 0o755, app)?;
    let f = std::fs::File::open(busybox)?;
    w.file("bin/busybox", 0o755, root, f, meta.len())?;
    let mut seen = std::collections::BTreeSet::new();
    for applet in applets.lines().map(str::trim) {
        let ok = !applet.is_empty()
            && !applet.starts_with('/')
            && !applet
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            && applet != "bin/busybox";
        if !ok || !seen.insert(applet.to_string()) {
            continue;
        }
        if let Some((parent, _)) = applet.rsplit_once('/') {
            if !matches!(parent, "bin" | "sbin" | "usr/bin" | "usr/sbin") {
                continue;
            }
        }
        w.symlink(applet, "/bin/busybox", root)?;
    }
    let text = |s: &str| (s.as_bytes().to_vec(), s.len() as u64);
    let (passwd, n) = text(&format!(
        "root:x:0:0:root:/root:/bin/sh\napp:x:{APP_UID}:{APP_UID}:app:/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    ));
    w.file("etc/passwd", 0o644, root, &passwd[..], n)?;
    let (group, n) = text(&format!("root:x:0:\napp:x:{APP_UID}:\nnogroup:x:65534:\n"));
    w.file("etc/group", 0o644, root, &group[..], n)?;
    if seen.insert("usr/bin/printenv".into()) {
        w.file(
            "usr/bin/printenv",
            0o755,
            root,
            PRINTENV.as_bytes(),
            PRINTENV.len() as u64,
        )?;
    }
    let (os, n) = text("NAME=\"paas busybox stack\"\nID=paas-busybox\n");
    w.file("etc/os-release", 0o644, root, &os[..], n)?;
    Ok(w.finish()?.into_bytes()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(split_tag("paas/stack:1").unwrap(), ("paas/stack", "1"));
        assert_eq!(split_tag("paas/stack").unwrap(), ("paas/stack", "latest"));
        assert_eq!(
            split_tag("localhost:5000/stack").unwrap(),
            ("localhost:5000/stack", "latest")
        );
        assert!(split_tag("Bad Tag").is_err());
        assert!(split_tag("").is_err());
    }
}
