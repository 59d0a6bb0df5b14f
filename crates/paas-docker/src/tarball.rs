//! Tar archives made in memory: build contexts, build-container uploads, stack root filesystems.
//!
//! Paths come from walking a directory (never from user text), so entries cannot escape the
//! archive's root; symlinks are stored as symlinks and never followed.

use std::io::{self, Read};
use std::path::Path;

/// Ownership and mtime applied to the entries written by [`TarWriter`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner {
    pub uid: u64,
    pub gid: u64,
}

impl Owner {
    pub(crate) const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// An in-memory tar archive.
pub(crate) struct TarWriter {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl TarWriter {
    pub(crate) fn new() -> Self {
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        TarWriter {
            builder: tar::Builder::new(Vec::new()),
            mtime,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, owner: Owner, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.uid);
        h.set_gid(owner.gid);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    /// Adds a directory entry (`path` relative, without trailing slash).
    pub(crate) fn dir(&mut self, path: &str, mode: u32, owner: Owner) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Directory, mode, owner, 0);
        self.builder
            .append_data(&mut h, format!("{path}/"), io::empty())
    }

    /// Adds a regular file.
    pub(crate) fn file(
        &mut self,
        path: &str,
        mode: u32,
        owner: Owner,
        data: impl Read,
        size: u64,
    ) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Regular, mode, owner, size);
        self.builder.append_data(&mut h, path, data)
    }

    /// Adds a symbolic link.
    pub(crate) fn symlink(&mut self, path: &str, target: &str, owner: Owner) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, owner, 0);
        self.builder.append_link(&mut h, path, target)
    }

    /// Adds the tree under `src` below `prefix` (`""` for the archive root). `owner`
    /// overrides the files' owners (`None` keeps root). Skips `.git` directories when
    /// `skip_git`; sockets, FIFOs and devices are skipped.
    pub(crate) fn tree(
        &mut self,
        src: &Path,
        prefix: &str,
        owner: Owner,
        skip_git: bool,
    ) -> io::Result<()> {
        let mut stack = vec![(src.to_path_buf(), prefix.trim_end_matches('/').to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "source contains a file name that is not UTF-8",
                    ));
                };
                if skip_git && name == ".git" {
                    continue;
                }
                let path = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                let meta = std::fs::symlink_metadata(entry.path())?;
                let ft = meta.file_type();
                let mode = {
                    use std::os::unix::fs::PermissionsExt;
                    meta.permissions().mode() & 0o7777
                };
                if ft.is_symlink() {
                    let target = std::fs::read_link(entry.path())?;
                    let Some(target) = target.to_str() else {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "source contains a symlink target that is not UTF-8",
                        ));
                    };
                    self.symlink(&path, target, owner)?;
                } else if ft.is_dir() {
                    self.dir(&path, mode | 0o700, owner)?;
                    stack.push((entry.path(), path));
                } else if ft.is_file() {
                    let f = std::fs::File::open(entry.path())?;
                    self.file(&path, mode | 0o600, owner, f, meta.len())?;
                }
            }
        }
        Ok(())
    }

    /// The finished archive.
    pub(crate) fn finish(self) -> io::Result<Vec<u8>> {
        self.builder.into_inner()
    }
}

/// Reads the regular file whose path (relative, without leading `./` or `/`) ends the archive
/// entry `name` in a tar downloaded from the engine. `None` if absent.
pub(crate) fn read_file(archive: &[u8], name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut ar = tar::Archive::new(archive);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().to_string();
        let path = path.trim_start_matches("./").trim_start_matches('/');
        if path == name && entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            entry
                .by_ref()
                .take(4 * 1024 * 1024)
                .read_to_end(&mut data)?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("a/b/f.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let mut w = TarWriter::new();
        w.tree(
            dir.path(),
            "app",
            Owner {
                uid: 1000,
                gid: 1000,
            },
            true,
        )
        .unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(
            read_file(&bytes, "app/a/b/f.txt").unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 1000);
            names.push(e.path().unwrap().to_string_lossy().to_string());
        }
        assert!(names.iter().all(|n| !n.contains(".git")), "{names:?}");
        assert!(names.contains(&"app/link".to_string()));
    }
}
