//! Tar archives: build contexts, build-container uploads, stack root filesystems. They are
//! kept in memory while small and spooled to a temporary file past 8 MiB, and streamed to the
//! engine from there, so a large source tree never sits in the daemon's memory.
//!
//! Paths come from walking a directory (never from user text), so entries cannot escape the
//! archive's root; symlinks are stored as symlinks and never followed.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;
use futures::Stream;
use tempfile::SpooledTempFile;

/// Archives larger than this go to a temporary file.
const SPOOL_AT: usize = 8 * 1024 * 1024;
/// Chunks of a streamed archive.
const CHUNK: usize = 64 * 1024;

/// Ownership and mtime applied to the entries written by [`TarWriter`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner {
    pub uid: u64,
    pub gid: u64,
}

impl Owner {
    pub(crate) const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// A tar archive being written (in memory, then on disk past 8 MiB).
pub(crate) struct TarWriter {
    builder: tar::Builder<SpooledTempFile>,
    mtime: u64,
}

/// A finished archive.
pub(crate) struct Archive(SpooledTempFile);

impl Archive {
    /// Its bytes, read whole (small archives and tests).
    pub(crate) fn into_bytes(mut self) -> io::Result<Vec<u8>> {
        self.0.seek(SeekFrom::Start(0))?;
        let mut out = Vec::new();
        self.0.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Its bytes as a stream of 64 KiB chunks, read on the blocking pool with at most a few
    /// chunks in flight.
    pub(crate) fn into_stream(mut self) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = self.0.seek(SeekFrom::Start(0)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            loop {
                let mut buf = vec![0u8; CHUNK];
                match self.0.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
    }
}

impl TarWriter {
    pub(crate) fn new() -> Self {
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        TarWriter {
            builder: tar::Builder::new(SpooledTempFile::new(SPOOL_AT)),
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
    pub(crate) fn finish(self) -> io::Result<Archive> {
        self.builder.into_inner().map(Archive)
    }
}

/// The patterns of a `.dockerignore` file: one per line, `#` comments, `!` re-includes, `*`,
/// `?` and `[...]` classes within one path segment, `**` across segments; patterns are cleaned
/// as Docker does (`./`, `//`, `..` and a leading `/` removed); a pattern matching a directory
/// excludes everything below it; the last matching pattern wins.
///
/// Matching never backtracks exponentially: each pattern is decided in time proportional to
/// the pattern's length times the path's (the greedy wildcard algorithm, at both levels).
#[derive(Clone, Debug, Default)]
pub(crate) struct IgnoreRules {
    rules: Vec<(bool, Vec<Segment>)>,
}

/// One segment of a pattern.
#[derive(Clone, Debug, PartialEq)]
enum Segment {
    /// `**`: any number of segments.
    Any,
    /// A glob of one segment.
    Glob(Vec<Tok>),
}

/// One element of a segment's glob.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Lit(u8),
    One,
    Star,
    Class {
        ranges: Vec<(u8, u8)>,
        negated: bool,
    },
}

impl Tok {
    fn matches(&self, c: u8) -> bool {
        match self {
            Tok::Lit(l) => *l == c,
            Tok::One => true,
            Tok::Star => false,
            Tok::Class { ranges, negated } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

/// Docker's `filepath.Clean` of a pattern, as segments.
fn clean(pat: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for seg in pat.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out
}

fn compile(seg: &str) -> Vec<Tok> {
    let b = seg.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' => {
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
            }
            b'?' => toks.push(Tok::One),
            b'\\' if i + 1 < b.len() => {
                i += 1;
                toks.push(Tok::Lit(b[i]));
            }
            b'[' => {
                // A class runs to the next unescaped `]`; without one, `[` is literal.
                let mut j = i + 1;
                let negated = matches!(b.get(j), Some(b'^' | b'!'));
                if negated {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut closed = false;
                while j < b.len() {
                    let mut c = b[j];
                    if c == b']' && !ranges.is_empty() {
                        closed = true;
                        break;
                    }
                    if c == b'\\' && j + 1 < b.len() {
                        j += 1;
                        c = b[j];
                    }
                    if b.get(j + 1) == Some(&b'-') && j + 2 < b.len() && b[j + 2] != b']' {
                        ranges.push((c, b[j + 2]));
                        j += 3;
                    } else {
                        ranges.push((c, c));
                        j += 1;
                    }
                }
                if closed {
                    toks.push(Tok::Class { ranges, negated });
                    i = j;
                } else {
                    toks.push(Tok::Lit(b'['));
                }
            }
            c => toks.push(Tok::Lit(c)),
        }
        i += 1;
    }
    toks
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
            let mut segments: Vec<Segment> = Vec::new();
            for s in clean(pat) {
                let seg = if s == "**" {
                    Segment::Any
                } else {
                    Segment::Glob(compile(s))
                };
                // `**/**` is one `**`.
                if !(seg == Segment::Any && segments.last() == Some(&Segment::Any)) {
                    segments.push(seg);
                }
            }
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
        let parts: Vec<&str> = rel
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
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

/// The greedy wildcard algorithm over segments, `**` being the wildcard: on a mismatch, go
/// back to just after the last `**` and let it take one more segment. No recursion, no
/// exponential blow-up.
fn match_segments(pat: &[Segment], parts: &[&str]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < parts.len() {
        match pat.get(p) {
            Some(Segment::Any) => {
                star = Some((p, i));
                p += 1;
                continue;
            }
            Some(Segment::Glob(toks)) if glob(toks, parts[i].as_bytes()) => {
                p += 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|s| *s == Segment::Any)
}

/// The same algorithm within one segment, `*` being the wildcard.
fn glob(toks: &[Tok], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match toks.get(p) {
            Some(Tok::Star) => {
                star = Some((p, i));
                p += 1;
                continue;
            }
            Some(t) if t.matches(s[i]) => {
                p += 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
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
        let bytes = w.finish().unwrap().into_bytes().unwrap();
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
    fn pathological_patterns_are_decided_at_once() {
        // These took seconds to forever with a backtracking matcher.
        let a40 = "a".repeat(40);
        let a200 = "a".repeat(200);
        let r = IgnoreRules::parse("*a*a*a*a*a*a*a*a*a*a*b\n");
        assert!(!r.excludes(&a40));
        assert!(!r.excludes(&a200));
        assert!(r.excludes(&format!("{a200}b")));
        let deep = vec!["a"; 200].join("/");
        let r = IgnoreRules::parse("**/a/**/a/**/a/**/a/**/a/**/a/**/b\n");
        assert!(!r.excludes(&deep));
        assert!(r.excludes(&format!("{deep}/b")));
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

        // Classes, escapes, cleaning as Docker does.
        let r2 = IgnoreRules::parse("[a-c]x.txt\n[!d]y\n./sub//../docs/**/*.md\n/lit\\*\n");
        assert!(r2.excludes("bx.txt") && !r2.excludes("dx.txt"));
        assert!(r2.excludes("zy") && !r2.excludes("dy"));
        assert!(r2.excludes("docs/a/b/c.md") && r2.excludes("docs/c.md"));
        assert!(!r2.excludes("sub/docs/c.md"));
        assert!(r2.excludes("lit*") && !r2.excludes("litx"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("node_modules/x")).unwrap();
        std::fs::write(dir.path().join("node_modules/x/i.js"), "").unwrap();
        std::fs::write(dir.path().join("a.log"), "").unwrap();
        std::fs::write(dir.path().join("keep.log"), "").unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "").unwrap();
        let mut w = TarWriter::new();
        w.tree_filtered(dir.path(), "", Owner::ROOT, true, &r)
            .unwrap();
        let bytes = w.finish().unwrap().into_bytes().unwrap();
        let mut names: Vec<String> = tar::Archive::new(&bytes[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["Dockerfile", "keep.log"]);
    }
}
