//! [`GitSourceStore`]: one bare git repository per app, on git2.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use git2::{ErrorCode, ObjectType, Oid, Repository, RepositoryInitOptions, Signature};
use paas_core::{
    AppName, CommitFilesRequest, CommitId, CommitInfo, Error, ErrorKind, ExportRequest, Result,
    SourceFile, SourceStore, Timestamp,
};
use tokio::sync::OwnedMutexGuard;

use crate::refname;

const BACKEND: &str = "git";

/// A [`SourceStore`] keeping one bare git repository per app at `<root>/<app>.git`.
///
/// Every git2 call runs on tokio's blocking pool. Writes to one app (commits made through
/// [`SourceStore::commit_files`], pushes through [`crate::GitHttpService`] sharing this store)
/// are serialized per app; different apps proceed in parallel. Cloning is cheap and clones share
/// the same locks.
#[derive(Clone)]
pub struct GitSourceStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl fmt::Debug for GitSourceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSourceStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// Maps a git2 error into the SDK's error.
pub(crate) fn git_error(operation: &'static str, e: git2::Error) -> Error {
    let kind = match e.code() {
        ErrorCode::NotFound | ErrorCode::UnbornBranch => ErrorKind::NotFound,
        ErrorCode::Exists => ErrorKind::AlreadyExists,
        ErrorCode::Locked | ErrorCode::Modified | ErrorCode::NotFastForward => ErrorKind::Conflict,
        ErrorCode::Ambiguous | ErrorCode::InvalidSpec | ErrorCode::Invalid => {
            ErrorKind::InvalidInput
        }
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("git: {}", e.message()))
        .with_backend(BACKEND)
        .with_operation(operation)
}

fn io_error(operation: &'static str, what: &str, e: std::io::Error) -> Error {
    let kind = Error::from(std::io::Error::from(e.kind())).kind();
    Error::new(kind, format!("{what}: {e}"))
        .with_backend(BACKEND)
        .with_operation(operation)
}

/// Runs blocking work on the blocking pool.
pub(crate) async fn blocking<T, F>(operation: &'static str, f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::internal(format!("blocking task failed: {e}"))
            .with_backend(BACKEND)
            .with_operation(operation)
    })?
}

impl GitSourceStore {
    /// Opens (creating it if needed) a store rooted at `root`. The root is made absolute, so the
    /// repository paths handed to `git` can never be mistaken for options.
    ///
    /// Errors: `Internal`/`PermissionDenied` if the directory cannot be created or read.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| io_error("open", &format!("creating {}", root.display()), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| io_error("open", &format!("resolving {}", root.display()), e))?;
        Ok(GitSourceStore {
            inner: Arc::new(Inner {
                root,
                locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The (absolute) root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The path of an app's bare repository: `<root>/<app>.git`.
    pub fn repo_path(&self, app: &AppName) -> PathBuf {
        self.inner.root.join(format!("{app}.git"))
    }

    /// Takes the app's write lock (serializes pushes and commits to one app).
    pub(crate) async fn lock_app(&self, app: &AppName) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(app.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    fn open_repo(path: &Path, app: &AppName, operation: &'static str) -> Result<Repository> {
        if !path.join("HEAD").is_file() {
            return Err(Error::not_found(format!("app \"{app}\" has no repository"))
                .with_backend(BACKEND)
                .with_operation(operation));
        }
        Repository::open_bare(path).map_err(|e| git_error(operation, e))
    }
}

fn check_reference(reference: &str, operation: &'static str) -> Result<()> {
    refname::check_syntax(reference).map_err(|rule| {
        Error::invalid(format!("invalid reference: {rule}"))
            .with_backend(BACKEND)
            .with_operation(operation)
    })
}

/// Resolves `reference` to a commit id in `repo`.
fn resolve_in(repo: &Repository, app: &AppName, reference: &str, op: &'static str) -> Result<Oid> {
    let not_found = || {
        Error::not_found(format!(
            "app \"{app}\": reference \"{reference}\" does not exist"
        ))
        .with_backend(BACKEND)
        .with_operation(op)
    };
    let object = if reference == "HEAD" {
        match repo.head() {
            Ok(r) => Some(r.peel(ObjectType::Any).map_err(|e| git_error(op, e))?),
            Err(e) if matches!(e.code(), ErrorCode::NotFound | ErrorCode::UnbornBranch) => None,
            Err(e) => return Err(git_error(op, e)),
        }
    } else {
        let candidates: Vec<String> = if reference.starts_with("refs/") {
            vec![reference.to_string()]
        } else {
            vec![
                format!("refs/heads/{reference}"),
                format!("refs/tags/{reference}"),
            ]
        };
        let mut found = None;
        for name in candidates {
            match repo.find_reference(&name) {
                Ok(r) => {
                    found = Some(r.peel(ObjectType::Any).map_err(|e| git_error(op, e))?);
                    break;
                }
                Err(e) if matches!(e.code(), ErrorCode::NotFound | ErrorCode::InvalidSpec) => {}
                Err(e) => return Err(git_error(op, e)),
            }
        }
        if found.is_none()
            && (4..=64).contains(&reference.len())
            && reference.bytes().all(|b| b.is_ascii_hexdigit())
        {
            match repo.revparse_single(reference) {
                Ok(o) => found = Some(o),
                Err(e) if e.code() == ErrorCode::Ambiguous => {
                    return Err(Error::invalid(format!(
                        "app \"{app}\": abbreviated commit id \"{reference}\" is ambiguous"
                    ))
                    .with_backend(BACKEND)
                    .with_operation(op))
                }
                Err(e) if matches!(e.code(), ErrorCode::NotFound | ErrorCode::InvalidSpec) => {}
                Err(e) => return Err(git_error(op, e)),
            }
        }
        found
    };
    let object = object.ok_or_else(not_found)?;
    let commit = object.peel_to_commit().map_err(|_| not_found())?;
    Ok(commit.id())
}

fn commit_id(oid: Oid) -> CommitId {
    CommitId::new(oid.to_string()).expect("git object ids are hexadecimal")
}

fn check_source_path(path: &str) -> Result<Vec<&str>> {
    let bad = |rule: &str| {
        Error::invalid(format!(
            "invalid file path \"{}\": {rule}",
            path.escape_debug()
        ))
        .with_backend(BACKEND)
        .with_operation("commit_files")
    };
    if path.is_empty() {
        return Err(bad("it must not be empty"));
    }
    if path.len() > 4096 {
        return Err(bad("it must be at most 4096 bytes"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(bad("it must not contain control characters"));
    }
    if path.starts_with('/') {
        return Err(bad("it must be relative (no leading '/')"));
    }
    if path.contains('\\') {
        return Err(bad("it must use '/' separators (no '\\')"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        if part.is_empty() {
            return Err(bad(
                "it must not contain empty components (\"//\" or a trailing '/')",
            ));
        }
        if *part == "." || *part == ".." {
            return Err(bad("it must not contain \".\" or \"..\" components"));
        }
        if part.eq_ignore_ascii_case(".git") {
            return Err(bad("it must not contain a \".git\" component"));
        }
    }
    Ok(parts)
}

enum Node {
    File(Oid, i32),
    Dir(BTreeMap<String, Node>),
}

fn insert_node(
    dir: &mut BTreeMap<String, Node>,
    parts: &[&str],
    oid: Oid,
    mode: i32,
    path: &str,
) -> Result<()> {
    let conflict = || {
        Error::invalid(format!(
            "invalid file path \"{}\": it is given twice, or is both a file and a directory",
            path.escape_debug()
        ))
        .with_backend(BACKEND)
        .with_operation("commit_files")
    };
    let (first, rest) = parts.split_first().expect("paths have a component");
    if rest.is_empty() {
        if dir.contains_key(*first) {
            return Err(conflict());
        }
        dir.insert(first.to_string(), Node::File(oid, mode));
        return Ok(());
    }
    match dir
        .entry(first.to_string())
        .or_insert_with(|| Node::Dir(BTreeMap::new()))
    {
        Node::Dir(sub) => insert_node(sub, rest, oid, mode, path),
        Node::File(..) => Err(conflict()),
    }
}

fn write_tree(repo: &Repository, dir: &BTreeMap<String, Node>) -> Result<Oid> {
    let op = "commit_files";
    let mut builder = repo.treebuilder(None).map_err(|e| git_error(op, e))?;
    for (name, node) in dir {
        let (oid, mode) = match node {
            Node::File(oid, mode) => (*oid, *mode),
            Node::Dir(sub) => (write_tree(repo, sub)?, 0o040000),
        };
        builder
            .insert(name.as_str(), oid, mode)
            .map_err(|e| git_error(op, e))?;
    }
    builder.write().map_err(|e| git_error(op, e))
}

fn commit_files_blocking(path: &Path, req: CommitFilesRequest) -> Result<CommitId> {
    let op = "commit_files";
    let repo = GitSourceStore::open_repo(path, &req.app, op)?;
    let mut root = BTreeMap::new();
    for SourceFile {
        path: file_path,
        contents,
        executable,
    } in &req.files
    {
        let parts = check_source_path(file_path)?;
        let oid = repo.blob(contents).map_err(|e| git_error(op, e))?;
        let mode = if *executable { 0o100755 } else { 0o100644 };
        insert_node(&mut root, &parts, oid, mode, file_path)?;
    }
    let tree_id = write_tree(&repo, &root)?;
    let tree = repo.find_tree(tree_id).map_err(|e| git_error(op, e))?;
    let refname = format!("refs/heads/{}", req.branch);
    let parent = match repo.refname_to_id(&refname) {
        Ok(oid) => Some(repo.find_commit(oid).map_err(|e| git_error(op, e))?),
        Err(e) if e.code() == ErrorCode::NotFound => None,
        Err(e) => return Err(git_error(op, e)),
    };
    let sig = Signature::now("paas", "paas@localhost").map_err(|e| git_error(op, e))?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let message = if req.message.trim().is_empty() {
        "paas: commit files"
    } else {
        req.message.as_str()
    };
    let oid = repo
        .commit(None, &sig, &sig, message, &tree, &parents)
        .map_err(|e| git_error(op, e))?;
    let log = format!("paas: commit files on {}", req.branch);
    let moved = match &parent {
        Some(p) => repo.reference_matching(&refname, oid, true, p.id(), &log),
        None => repo.reference(&refname, oid, false, &log),
    };
    moved.map_err(|e| {
        if matches!(
            e.code(),
            ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
        ) {
            Error::conflict(format!(
                "app \"{}\": branch \"{}\" moved while committing; retry",
                req.app, req.branch
            ))
            .with_backend(BACKEND)
            .with_operation(op)
            .with_retryable(true)
        } else {
            git_error(op, e)
        }
    })?;
    Ok(commit_id(oid))
}

/// Checks one tree entry name before it becomes a path component on disk.
fn safe_component(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.eq_ignore_ascii_case(b".git")
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// Whether a symlink at depth `depth` (number of directories between the export root and the
/// link) pointing at `target` stays inside the export root. Only leading `..` components are
/// allowed, so no `..` is ever applied after following another link.
fn symlink_stays_inside(target: &[u8], depth: usize) -> bool {
    if target.is_empty() || target.starts_with(b"/") || target.contains(&0) {
        return false;
    }
    let mut ups = 0;
    let mut descended = false;
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if !descended => ups += 1,
            b".." => return false,
            p if p.eq_ignore_ascii_case(b".git") => return false,
            _ => descended = true,
        }
    }
    ups <= depth
}

fn export_blocking(path: &Path, req: ExportRequest) -> Result<()> {
    let op = "export";
    let repo = GitSourceStore::open_repo(path, &req.app, op)?;
    let oid = resolve_in(&repo, &req.app, req.commit.as_str(), op)?;
    let commit = repo.find_commit(oid).map_err(|e| git_error(op, e))?;
    let meta = fs::metadata(&req.dest)
        .map_err(|e| io_error(op, &format!("export destination {}", req.dest.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "export destination {} is not a directory",
            req.dest.display()
        ))
        .with_backend(BACKEND)
        .with_operation(op));
    }
    let tree = commit.tree().map_err(|e| git_error(op, e))?;
    // Directories and files first; symlinks last, so no write ever goes through a link.
    let mut links: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut stack = vec![(tree, req.dest.clone(), 0usize)];
    while let Some((tree, dir, depth)) = stack.pop() {
        for entry in tree.iter() {
            let name = entry.name_bytes();
            if !safe_component(name) {
                return Err(Error::invalid(format!(
                    "commit {} contains an unsafe path component \"{}\"",
                    req.commit,
                    String::from_utf8_lossy(name).escape_debug()
                ))
                .with_backend(BACKEND)
                .with_operation(op));
            }
            let target = dir.join(std::ffi::OsStr::from_bytes(name));
            let mode = entry.filemode();
            match mode {
                0o040000 => {
                    fs::create_dir(&target)
                        .map_err(|e| io_error(op, &format!("creating {}", target.display()), e))?;
                    let sub = repo.find_tree(entry.id()).map_err(|e| git_error(op, e))?;
                    stack.push((sub, target, depth + 1));
                }
                0o100644 | 0o100755 | 0o100664 => {
                    let blob = repo.find_blob(entry.id()).map_err(|e| git_error(op, e))?;
                    let file_mode = if mode == 0o100755 { 0o755 } else { 0o644 };
                    let mut file = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(file_mode)
                        .open(&target)
                        .map_err(|e| io_error(op, &format!("creating {}", target.display()), e))?;
                    file.write_all(blob.content())
                        .map_err(|e| io_error(op, &format!("writing {}", target.display()), e))?;
                    if mode == 0o100755 {
                        file.set_permissions(fs::Permissions::from_mode(0o755))
                            .map_err(|e| io_error(op, &format!("chmod {}", target.display()), e))?;
                    }
                }
                0o120000 => {
                    let blob = repo.find_blob(entry.id()).map_err(|e| git_error(op, e))?;
                    let link_target = blob.content().to_vec();
                    if symlink_stays_inside(&link_target, depth) {
                        links.push((target, link_target));
                    } else {
                        tracing::warn!(
                            app = %req.app,
                            path = %target.display(),
                            "export: skipping a symlink that points outside the tree"
                        );
                    }
                }
                0o160000 => {
                    // A submodule: like `git checkout`, leave an empty directory.
                    fs::create_dir(&target)
                        .map_err(|e| io_error(op, &format!("creating {}", target.display()), e))?;
                }
                other => {
                    return Err(Error::invalid(format!(
                        "commit {} contains an entry with unknown mode {other:o}",
                        req.commit
                    ))
                    .with_backend(BACKEND)
                    .with_operation(op))
                }
            }
        }
    }
    for (path, target) in links {
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)
            .map_err(|e| io_error(op, &format!("creating symlink {}", path.display()), e))?;
    }
    Ok(())
}

fn create_blocking(root: &Path, path: &Path, app: &AppName) -> Result<()> {
    let op = "create_repo";
    let exists = || {
        Error::already_exists(format!("app \"{app}\" already has a repository"))
            .with_backend(BACKEND)
            .with_operation(op)
    };
    if path.exists() {
        return Err(exists());
    }
    // Initialise in a private directory, then rename into place: readers never see a
    // half-made repository, and of two racing creates exactly one wins.
    let tmp = root.join(format!(".tmp-{app}-{:016x}", rand_u64()));
    let mut opts = RepositoryInitOptions::new();
    opts.bare(true).initial_head("main").mkdir(true);
    let result = (|| {
        let repo = Repository::init_opts(&tmp, &opts).map_err(|e| git_error(op, e))?;
        let mut config = repo.config().map_err(|e| git_error(op, e))?;
        for (key, value) in [
            ("receive.denyNonFastForwards", false),
            ("receive.denyDeletes", false),
            ("core.logAllRefUpdates", true),
        ] {
            config.set_bool(key, value).map_err(|e| git_error(op, e))?;
        }
        Ok::<_, Error>(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, path) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            if path.exists() {
                Err(exists())
            } else {
                Err(io_error(op, &format!("creating {}", path.display()), e))
            }
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

#[async_trait]
impl SourceStore for GitSourceStore {
    async fn create_repo(&self, app: &AppName) -> Result<()> {
        let root = self.inner.root.clone();
        let path = self.repo_path(app);
        let app = app.clone();
        let _guard = self.lock_app(&app).await;
        blocking("create_repo", move || create_blocking(&root, &path, &app)).await
    }

    async fn delete_repo(&self, app: &AppName) -> Result<()> {
        let root = self.inner.root.clone();
        let path = self.repo_path(app);
        let app2 = app.clone();
        let _guard = self.lock_app(app).await;
        blocking("delete_repo", move || {
            let op = "delete_repo";
            // Move it out of the way atomically, then remove it.
            let trash = root.join(format!(".trash-{app2}-{:016x}", rand_u64()));
            match fs::rename(&path, &trash) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_error(op, &format!("removing {}", path.display()), e)),
            }
            fs::remove_dir_all(&trash)
                .map_err(|e| io_error(op, &format!("removing {}", trash.display()), e))
        })
        .await
    }

    async fn repo_exists(&self, app: &AppName) -> Result<bool> {
        let path = self.repo_path(app);
        blocking("repo_exists", move || Ok(path.join("HEAD").is_file())).await
    }

    async fn resolve(&self, app: &AppName, reference: &str) -> Result<CommitId> {
        check_reference(reference, "resolve")?;
        let path = self.repo_path(app);
        let app = app.clone();
        let reference = reference.to_string();
        blocking("resolve", move || {
            let repo = Self::open_repo(&path, &app, "resolve")?;
            resolve_in(&repo, &app, &reference, "resolve").map(commit_id)
        })
        .await
    }

    async fn recent_commits(
        &self,
        app: &AppName,
        reference: &str,
        limit: usize,
    ) -> Result<Vec<CommitInfo>> {
        let op = "recent_commits";
        check_reference(reference, op)?;
        let path = self.repo_path(app);
        let app = app.clone();
        let reference = reference.to_string();
        blocking(op, move || {
            let repo = Self::open_repo(&path, &app, op)?;
            let start = resolve_in(&repo, &app, &reference, op)?;
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            let mut walk = repo.revwalk().map_err(|e| git_error(op, e))?;
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
                .map_err(|e| git_error(op, e))?;
            walk.push(start).map_err(|e| git_error(op, e))?;
            for oid in walk.take(limit) {
                let oid = oid.map_err(|e| git_error(op, e))?;
                let commit = repo.find_commit(oid).map_err(|e| git_error(op, e))?;
                let summary =
                    String::from_utf8_lossy(commit.summary_bytes().unwrap_or(b"")).into_owned();
                let author = String::from_utf8_lossy(commit.author().name_bytes()).into_owned();
                let secs = commit.time().seconds().max(0) as u64;
                out.push(CommitInfo::new(
                    commit_id(oid),
                    summary,
                    author,
                    Timestamp(secs.saturating_mul(1000)),
                ));
            }
            Ok(out)
        })
        .await
    }

    async fn commit_files(&self, req: CommitFilesRequest) -> Result<CommitId> {
        refname::check_branch(&req.branch).map_err(|rule| {
            Error::invalid(format!("branch \"{}\": {rule}", req.branch.escape_debug()))
                .with_backend(BACKEND)
                .with_operation("commit_files")
        })?;
        for f in &req.files {
            check_source_path(&f.path)?;
        }
        let path = self.repo_path(&req.app);
        let _guard = self.lock_app(&req.app).await;
        blocking("commit_files", move || commit_files_blocking(&path, req)).await
    }

    async fn export(&self, req: ExportRequest) -> Result<()> {
        let path = self.repo_path(&req.app);
        blocking("export", move || export_blocking(&path, req)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_rules() {
        assert!(symlink_stays_inside(b"a/b", 0));
        assert!(symlink_stays_inside(b"../x", 1));
        assert!(!symlink_stays_inside(b"../x", 0));
        assert!(!symlink_stays_inside(b"/etc/passwd", 5));
        assert!(!symlink_stays_inside(b"a/../../x", 5));
        assert!(!symlink_stays_inside(b".git/config", 0));
        assert!(!symlink_stays_inside(b"", 0));
    }

    #[test]
    fn source_paths() {
        check_source_path("a/b.txt").unwrap();
        for bad in [
            "", "/a", "a/../b", "./a", "a//b", "a/", ".git/x", "x/.GIT", "a\\b", "a\nb",
        ] {
            assert!(check_source_path(bad).is_err(), "{bad:?}");
        }
    }
}
