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
        self.tree_filtered(src, prefix, owner, skip_git, &IgnoreRules::default())
    }

    /// [`TarWriter::tree`] without the paths `ignore` excludes (relative to `src`).
    pub(crate) fn tree_filtered(
        &mut self,
        src: &Path,
        prefix: &str,
        owner: Owner,
        skip_git: bool,
        ignore: &IgnoreRules,
    ) -> io::Result<()> {
        let prefix = prefix.trim_end_matches('/').to_string();
        // (directory on disk, path relative to src)
        let mut stack = vec![(src.to_path_buf(), String::new())];
        while let Some((dir, rel_dir)) = stack.pop() {
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
                let rel = if rel_dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel_dir}/{name}")
                };
                let excluded = ignore.excludes(&rel);
                if excluded && !ignore.has_negations() {
                    continue;
                }
                let path = if prefix.is_empty() {
                    rel.clone()
                } else {
                    format!("{prefix}/{rel}")
                };
                let meta = std::fs::symlink_metadata(entry.path())?;
                let ft = meta.file_type();
                let mode = {
                    use std::os::unix::fs::PermissionsExt;
                    meta.permissions().mode() & 0o7777
                };
                if excluded && !ft.is_dir() {
                    continue;
                }
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
                    if !excluded {
                        self.dir(&path, mode | 0o700, owner)?;
                    }
                    stack.push((entry.path(), rel));
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

/// The patterns of a `.dockerignore` file: one per line, `#` comments, `!` re-includes, `*`
/// and `?` within one path segment, `**` across segments; a pattern matching a directory
/// excludes everything below it; the last matching pattern wins.
#[derive(Clone, Debug, Default)]
pub(crate) struct IgnoreRules {
    rules: Vec<(bool, Vec<String>)>,
}

impl IgnoreRules {
    pub(crate) fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let segments: Vec<String> = pat
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
                .collect();
            if !segments.is_empty() {
                rules.push((negate, segments));
            }
        }
        IgnoreRules { rules }
    }

    fn has_negations(&self) -> bool {
        self.rules.iter().any(|(n, _)| *n)
    }

    /// Whether `rel` (a `/`-separated path relative to the context root) is excluded.
    pub(crate) fn excludes(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut excluded = false;
        for (negate, pat) in &self.rules {
            // The path itself or one of its parent directories.
            let hit = (1..=parts.len()).any(|n| match_segments(pat, &parts[..n]));
            if hit {
                excluded = !negate;
            }
        }
        excluded
    }
}

fn match_segments(pat: &[String], parts: &[&str]) -> bool {
    match pat.split_first() {
        None => parts.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..]))
        }
        Some((first, rest)) => match parts.split_first() {
            Some((p, more)) => glob(first.as_bytes(), p.as_bytes()) && match_segments(rest, more),
            None => false,
        },
    }
}

/// `*` and `?` glob of one segment.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((b'\\', rest)) if !rest.is_empty() => {
            s.first() == Some(&rest[0]) && glob(&rest[1..], &s[1..])
        }
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
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

    #[test]
    fn dockerignore() {
        let r = IgnoreRules::parse("# c\nnode_modules\n*.log\n**/tmp\n!keep.log\nsecrets/*.key\n");
        assert!(r.excludes("node_modules"));
        assert!(r.excludes("node_modules/a/b.js"));
        assert!(r.excludes("x.log"));
        assert!(!r.excludes("keep.log"));
        assert!(!r.excludes("dir/x.log"));
        assert!(r.excludes("a/b/tmp/c"));
        assert!(r.excludes("secrets/a.key"));
        assert!(!r.excludes("secrets/a.txt"));
        assert!(!r.excludes("src/main.rs"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("node_modules/x")).unwrap();
        std::fs::write(dir.path().join("node_modules/x/i.js"), "").unwrap();
        std::fs::write(dir.path().join("a.log"), "").unwrap();
        std::fs::write(dir.path().join("keep.log"), "").unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "").unwrap();
        let mut w = TarWriter::new();
        w.tree_filtered(dir.path(), "", Owner::ROOT, true, &r)
            .unwrap();
        let bytes = w.finish().unwrap();
        let mut names: Vec<String> = tar::Archive::new(&bytes[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["Dockerfile", "keep.log"]);
    }
}
