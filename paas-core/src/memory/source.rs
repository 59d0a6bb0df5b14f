use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::error::{Error, Result};
use crate::model::{check_ref_name, check_relative_path, AppName, CommitId, Timestamp};
use crate::traits::{CommitFilesRequest, CommitInfo, ExportRequest, SourceFile, SourceStore};

#[derive(Debug, Clone)]
struct MemCommit {
    parent: Option<CommitId>,
    files: Vec<SourceFile>,
    message: String,
    time: Timestamp,
}

#[derive(Debug, Default)]
struct Repo {
    commits: HashMap<CommitId, MemCommit>,
    branches: BTreeMap<String, CommitId>,
}

/// A [`SourceStore`] in memory: commits are snapshots of files stored with
/// [`SourceStore::commit_files`].
#[derive(Debug, Default)]
pub struct MemorySourceStore {
    repos: Mutex<HashMap<AppName, Repo>>,
    counter: AtomicU64,
}

impl MemorySourceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn not_found(app: &AppName) -> Error {
    Error::not_found(format!("app \"{app}\" has no repository"))
        .with_backend("memory")
        .with_operation("source")
}

fn resolve_in(repo: &Repo, app: &AppName, reference: &str) -> Result<CommitId> {
    check_ref_name(reference)?;
    let branch = reference.strip_prefix("refs/heads/").unwrap_or(reference);
    if let Some(c) = repo.branches.get(branch) {
        return Ok(c.clone());
    }
    if reference.len() >= 4 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        let lower = reference.to_ascii_lowercase();
        let matches: Vec<&CommitId> = repo
            .commits
            .keys()
            .filter(|c| c.as_str().starts_with(&lower))
            .collect();
        match matches.as_slice() {
            [one] => return Ok((*one).clone()),
            [] => {}
            _ => {
                return Err(Error::invalid(format!(
                    "ref \"{reference}\" is ambiguous in app \"{app}\""
                )))
            }
        }
    }
    Err(
        Error::not_found(format!("ref \"{reference}\" not found in app \"{app}\""))
            .with_backend("memory"),
    )
}

#[async_trait]
impl SourceStore for MemorySourceStore {
    async fn create_repo(&self, app: &AppName) -> Result<()> {
        let mut repos = lock(&self.repos);
        if repos.contains_key(app) {
            return Err(Error::already_exists(format!(
                "app \"{app}\" already has a repository"
            )));
        }
        repos.insert(app.clone(), Repo::default());
        Ok(())
    }

    async fn delete_repo(&self, app: &AppName) -> Result<()> {
        lock(&self.repos).remove(app);
        Ok(())
    }

    async fn repo_exists(&self, app: &AppName) -> Result<bool> {
        Ok(lock(&self.repos).contains_key(app))
    }

    async fn resolve(&self, app: &AppName, reference: &str) -> Result<CommitId> {
        let repos = lock(&self.repos);
        let repo = repos.get(app).ok_or_else(|| not_found(app))?;
        resolve_in(repo, app, reference)
    }

    async fn recent_commits(
        &self,
        app: &AppName,
        reference: &str,
        limit: usize,
    ) -> Result<Vec<CommitInfo>> {
        let repos = lock(&self.repos);
        let repo = repos.get(app).ok_or_else(|| not_found(app))?;
        let mut next = Some(resolve_in(repo, app, reference)?);
        let mut out = Vec::new();
        while let Some(id) = next {
            if out.len() >= limit {
                break;
            }
            let c = &repo.commits[&id];
            out.push(CommitInfo {
                id: id.clone(),
                summary: c.message.lines().next().unwrap_or("").to_string(),
                author: "paas".into(),
                time: c.time,
            });
            next = c.parent.clone();
        }
        Ok(out)
    }

    async fn commit_files(&self, req: CommitFilesRequest) -> Result<CommitId> {
        check_ref_name(&req.branch)?;
        if req.branch.starts_with("refs/") {
            return Err(Error::invalid(
                "branch must be a short name like \"main\", not a full ref",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &req.files {
            check_relative_path(&f.path)?;
            if !seen.insert(f.path.as_str()) {
                return Err(Error::invalid(format!("duplicate path \"{}\"", f.path)));
            }
        }
        let mut repos = lock(&self.repos);
        let repo = repos.get_mut(&req.app).ok_or_else(|| not_found(&req.app))?;
        let parent = repo.branches.get(&req.branch).cloned();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (n, &req.app, &req.branch, &req.message, &parent).hash(&mut h);
        for f in &req.files {
            (&f.path, &f.contents, f.executable).hash(&mut h);
        }
        let a = h.finish();
        n.hash(&mut h);
        let b = h.finish();
        let id = CommitId::new(format!("{a:016x}{b:016x}{:08x}", n as u32))?;
        repo.commits.insert(
            id.clone(),
            MemCommit {
                parent,
                files: req.files,
                message: req.message,
                time: Timestamp::now(),
            },
        );
        repo.branches.insert(req.branch, id.clone());
        Ok(id)
    }

    async fn export(&self, req: ExportRequest) -> Result<()> {
        let files = {
            let repos = lock(&self.repos);
            let repo = repos.get(&req.app).ok_or_else(|| not_found(&req.app))?;
            let c = repo.commits.get(&req.commit).ok_or_else(|| {
                Error::not_found(format!(
                    "commit {} not found in app \"{}\"",
                    req.commit, req.app
                ))
            })?;
            c.files.clone()
        };
        let dest = req.dest.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for f in files {
                check_relative_path(&f.path)?;
                let path = dest.join(&f.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, &f.contents)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = if f.executable { 0o755 } else { 0o644 };
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(format!("export task failed: {e}")))?
    }
}
