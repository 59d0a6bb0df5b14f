//! The receive-pack (push) side of [`crate::GitHttpService`]: request checks, the per-app
//! lock, relaying `git receive-pack`, and the deploy hook with its `remote:` progress.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use paas_core::{AppName, CommitId, OutputSender};
use tokio::sync::mpsc;

use crate::body::RequestBody;
use crate::hook::{PushEvent, PushHook};
use crate::http::{
    channel_body, full_body, git_response, read_chunk, result_type, text, GitBody, GitService,
    ServiceInner,
};
use crate::pktline::{self, Pkt, RefCommand, RefStatus};
use crate::refname;
use crate::store::{blocking, git_error};

impl ServiceInner {
    /// A response refusing the whole push, with a reason per ref in report-status.
    fn refuse_push(
        request: &pktline::ReceiveRequest,
        statuses: Vec<RefStatus>,
        summary: &str,
    ) -> Response<GitBody> {
        if !request.has("report-status") && !request.has("report-status-v2") {
            return text(StatusCode::FORBIDDEN, format!("push refused: {summary}"));
        }
        let report = pktline::encode_report(&statuses);
        let body = match request.sideband_max() {
            Some(max) => {
                let mut out = BytesMut::new();
                out.extend_from_slice(&pktline::sideband(1, &report, max));
                out.extend_from_slice(&pktline::progress_lines(summary, max));
                out.extend_from_slice(pktline::FLUSH);
                out.freeze()
            }
            None => report,
        };
        git_response(result_type(GitService::Receive), full_body(body))
    }

    pub(crate) async fn receive_pack(
        self: Arc<Self>,
        app: AppName,
        path: PathBuf,
        body: RequestBody,
    ) -> Response<GitBody> {
        let request = match parse_commands(&body).await {
            Ok(r) => r,
            Err(why) => return text(StatusCode::BAD_REQUEST, why),
        };
        if request.commands.is_empty() {
            // git's probe before a large push (`0000`): nothing to do.
            return git_response(result_type(GitService::Receive), full_body(Bytes::new()));
        }

        // 1. Ref names: only refs/heads/*, valid names.
        let checks: Vec<Result<(), String>> = request
            .commands
            .iter()
            .map(|c| refname::check_push_ref(&c.name))
            .collect();
        if let Some(first_err) = checks.iter().find_map(|c| c.as_ref().err()) {
            let statuses = request
                .commands
                .iter()
                .zip(&checks)
                .map(|(c, check)| RefStatus {
                    name: c.name.clone(),
                    result: Err(match check {
                        Err(why) => why.clone(),
                        Ok(()) => "not updated: another ref in this push was refused".into(),
                    }),
                })
                .collect();
            tracing::info!(%app, reason = %first_err, "git http: push refused");
            return Self::refuse_push(
                &request,
                statuses,
                &format!("push refused: {first_err}; nothing was changed"),
            );
        }

        // 2. The pack must be complete (a truncated upload changes nothing).
        let needs_pack = request.commands.iter().any(|c| !c.is_delete());
        let has_pack = body.len() > request.pack_offset as u64;
        let body = if needs_pack || has_pack {
            let offset = request.pack_offset;
            let checked = tokio::task::spawn_blocking(move || {
                let r = body.check_pack_from(offset);
                (body, r)
            })
            .await;
            match checked {
                Ok((body, Ok(()))) => body,
                Ok((_, Err(why))) => return text(StatusCode::BAD_REQUEST, why),
                Err(e) => {
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("checking the pack failed: {e}"),
                    )
                }
            }
        } else {
            body
        };

        // 3. One push per app at a time; a push based on stale refs is told to fetch first.
        let guard = self.store.lock_app(&app).await;
        let stale = match current_mismatches(path.clone(), request.commands.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%app, error = %e, "git http: reading refs failed");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "reading the repository failed",
                );
            }
        };
        if stale.iter().any(|s| *s) {
            let statuses = request
                .commands
                .iter()
                .zip(&stale)
                .map(|(c, stale)| RefStatus {
                    name: c.name.clone(),
                    result: Err(if *stale {
                        "fetch first: the branch moved since you fetched (another push won); pull, then push again".into()
                    } else {
                        "not updated: another ref in this push was refused".into()
                    }),
                })
                .collect();
            return Self::refuse_push(
                &request,
                statuses,
                "push refused: the remote branch moved since you fetched (fetch first); nothing was changed",
            );
        }

        // 4. Hand it to git.
        let (child, stdout, stderr) = match self.spawn_rpc(GitService::Receive, &path, None, body) {
            Ok(spawned) => spawned,
            Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot run git"),
        };
        // Unbounded: the app lock is held until git exits, and a client that stops reading
        // must not hold it. What is queued is bounded by git's and the hook's output.
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let sideband = request.sideband_max();
        tokio::spawn(self.finish_push(
            app, path, request, child, stdout, stderr, guard, tx, sideband,
        ));
        git_response(result_type(GitService::Receive), channel_body(rx))
    }

    /// Relays receive-pack's output, then runs the deploy hook and relays its progress.
    /// Runs the push hook for each updated deploy branch; returns the refs whose deploy
    /// failed, with why.
    async fn deploy_pushed(
        &self,
        app: &AppName,
        updated: &[&RefCommand],
        tx: &mpsc::UnboundedSender<Bytes>,
        sideband: Option<usize>,
    ) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let Some(hook) = self.hook.clone() else {
            return failed;
        };
        for c in updated {
            let Some(branch) = c.name.strip_prefix("refs/heads/") else {
                continue;
            };
            if c.is_delete() || !self.settings.deploy_branches.iter().any(|b| b == branch) {
                continue;
            }
            let Ok(commit) = CommitId::new(c.new.clone()) else {
                continue;
            };
            let mut event = PushEvent::new(app.clone(), branch, commit);
            event.previous = (!pktline::is_zero(&c.old))
                .then(|| CommitId::new(c.old.clone()).ok())
                .flatten();
            if let Err(reason) = self.run_hook(&hook, event, tx, sideband).await {
                failed.push((c.name.clone(), reason));
            }
        }
        failed
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_push(
        self: Arc<Self>,
        app: AppName,
        path: PathBuf,
        request: pktline::ReceiveRequest,
        mut child: tokio::process::Child,
        mut stdout: tokio::process::ChildStdout,
        stderr: tokio::task::JoinHandle<String>,
        guard: tokio::sync::OwnedMutexGuard<()>,
        tx: mpsc::UnboundedSender<Bytes>,
        sideband: Option<usize>,
    ) {
        let Relayed {
            report,
            held_flush,
            held_report,
        } = relay_receive_pack(&mut stdout, &tx, sideband).await;
        let status = child.wait().await;
        let stderr = stderr.await.unwrap_or_default();
        let succeeded = matches!(&status, Ok(s) if s.success());
        if !succeeded {
            tracing::warn!(%app, status = ?status, %stderr, "git http: receive-pack failed");
        }

        let parsed = pktline::parse_report(&report);
        let updated: Vec<&RefCommand> = request
            .commands
            .iter()
            .filter(|c| {
                parsed
                    .refs
                    .iter()
                    .any(|r| r.name == c.name && r.result.is_ok())
            })
            .collect();
        for c in &updated {
            tracing::info!(%app, r#ref = %c.name, old = %c.old, new = %c.new, "git push stored");
        }
        self.point_head(&path, &updated).await;
        drop(guard);

        let failed_deploys = self.deploy_pushed(&app, &updated, &tx, sideband).await;

        match (sideband, failed_deploys.is_empty()) {
            (Some(max), false) => {
                let mut statuses = parsed.refs.clone();
                for status in &mut statuses {
                    if let Some((_, reason)) =
                        failed_deploys.iter().find(|(n, _)| *n == status.name)
                    {
                        status.result = Err(reason.clone());
                    }
                }
                let _ = tx.send(pktline::sideband(
                    1,
                    &pktline::encode_report(&statuses),
                    max,
                ));
            }
            _ => {
                for packet in held_report {
                    let _ = tx.send(packet);
                }
            }
        }

        if held_flush {
            let _ = tx.send(Bytes::from_static(pktline::FLUSH));
        } else if let (Some(max), false) = (sideband, succeeded) {
            let _ = tx.send(pktline::sideband(
                3,
                b"receive-pack failed on the server",
                max,
            ));
        }
    }

    /// If HEAD names a branch that does not exist and a deploy branch now does, point HEAD at
    /// it, so that clones check it out.
    async fn point_head(&self, path: &Path, updated: &[&RefCommand]) {
        let candidates: Vec<String> = self
            .settings
            .deploy_branches
            .iter()
            .map(|b| format!("refs/heads/{b}"))
            .filter(|r| updated.iter().any(|c| &c.name == r && !c.is_delete()))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let path = path.to_path_buf();
        let result = blocking("push", move || {
            let repo = git2::Repository::open_bare(&path).map_err(|e| git_error("push", e))?;
            let head_ok = repo.head().is_ok();
            if !head_ok {
                repo.set_head(&candidates[0])
                    .map_err(|e| git_error("push", e))?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "git http: cannot update HEAD");
        }
    }

    async fn run_hook(
        &self,
        hook: &Arc<dyn PushHook>,
        event: PushEvent,
        tx: &mpsc::UnboundedSender<Bytes>,
        sideband: Option<usize>,
    ) -> Result<(), String> {
        let app = event.app.clone();
        let short: String = event.commit.as_str().chars().take(7).collect();
        let send = |text: String| {
            if let Some(max) = sideband {
                let _ = tx.send(pktline::progress_lines(&text, max));
            }
        };
        let (progress, mut lines) = OutputSender::channel();
        let hook = Arc::clone(hook);
        let mut task = tokio::spawn(async move { hook.on_push(event, progress).await });
        let mut lines_open = true;
        let result = loop {
            tokio::select! {
                line = lines.recv(), if lines_open => match line {
                    Some(line) => send(line),
                    None => lines_open = false,
                },
                result = &mut task => break result,
                _ = tokio::time::sleep(self.settings.keepalive) => {
                    if sideband.is_some() {
                        // An empty band-1 packet: git's own keep-alive.
                        let _ = tx.send(Bytes::from_static(b"0005\x01"));
                    }
                }
            }
        };
        while let Ok(line) = lines.try_recv() {
            send(line);
        }
        match result {
            Ok(Ok(message)) => {
                tracing::info!(%app, commit = %short, %message, "deploy after push finished");
                send(message);
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::warn!(%app, commit = %short, error = %e, "deploy after push failed");
                send(format!(
                    "deploy of {short} failed: {e}\nthe push itself was stored; fix the problem and push again"
                ));
                Err(format!("deploy of {short} failed (the push was stored)"))
            }
            Err(e) => {
                tracing::error!(%app, commit = %short, error = %e, "deploy hook panicked");
                send(format!("deploy of {short} failed: internal error"));
                Err(format!(
                    "deploy of {short} failed: internal error (the push was stored)"
                ))
            }
        }
    }
}

/// For each command, whether its old id no longer matches the ref (a lost race).
async fn current_mismatches(
    path: PathBuf,
    commands: Vec<RefCommand>,
) -> paas_core::Result<Vec<bool>> {
    blocking("push", move || {
        let repo = git2::Repository::open_bare(&path).map_err(|e| git_error("push", e))?;
        commands
            .iter()
            .map(|c| {
                let current = match repo.refname_to_id(&c.name) {
                    Ok(oid) => oid.to_string(),
                    Err(e) if e.code() == git2::ErrorCode::NotFound => "0".repeat(c.old.len()),
                    Err(e) => return Err(git_error("push", e)),
                };
                Ok(current != c.old)
            })
            .collect()
    })
    .await
}

/// The command list at the start of a receive-pack request: read from a prefix of the body,
/// growing it while the list is longer (the pack after it is never read here).
async fn parse_commands(body: &RequestBody) -> Result<pktline::ReceiveRequest, String> {
    let mut n = 64 * 1024;
    loop {
        let prefix = match body {
            RequestBody::Memory(b) => b.clone(),
            RequestBody::File { file, len } => {
                let handle = RequestBody::File {
                    file: file
                        .try_clone()
                        .map_err(|e| format!("reading the request failed: {e}"))?,
                    len: *len,
                };
                tokio::task::spawn_blocking(move || handle.prefix(n))
                    .await
                    .map_err(|e| format!("reading the request failed: {e}"))?
                    .map_err(|e| format!("reading the request failed: {e}"))?
            }
        };
        match pktline::parse_receive_request(&prefix) {
            Err(_) if (prefix.len() as u64) < body.len() && n < 64 * 1024 * 1024 => n *= 4,
            other => return other,
        }
    }
}

/// What [`relay_receive_pack`] kept back.
struct Relayed {
    /// The report-status bytes (band 1), to parse.
    report: Vec<u8>,
    /// A flush packet not yet sent.
    held_flush: bool,
    /// Report packets held until the deploy hook has run: a failed deploy turns the branch's
    /// `ok` into `ng` so `git push` fails.
    held_report: Vec<Bytes>,
}

/// Sends receive-pack's output to the client as it comes, keeping the report-status back.
async fn relay_receive_pack(
    stdout: &mut tokio::process::ChildStdout,
    tx: &mpsc::UnboundedSender<Bytes>,
    sideband: Option<usize>,
) -> Relayed {
    let mut buf = BytesMut::new();
    let mut out = Relayed {
        report: Vec::new(),
        held_flush: false,
        held_report: Vec::new(),
    };
    let mut broken = false;
    loop {
        let n = read_chunk(stdout, &mut buf).await;
        if n == 0 {
            break;
        }
        if sideband.is_none() || broken {
            out.report.extend_from_slice(&buf);
            let _ = tx.send(buf.split().freeze());
            continue;
        }
        loop {
            match pktline::decode(&buf) {
                Ok(Some((Pkt::Flush, used))) => {
                    out.held_flush = true;
                    let _ = buf.split_to(used);
                }
                Ok(Some((pkt, used))) => {
                    let is_report = matches!(pkt, Pkt::Data(d) if d.first() == Some(&1));
                    if let Pkt::Data(d) = pkt {
                        if is_report {
                            out.report.extend_from_slice(&d[1..]);
                        }
                    }
                    if out.held_flush {
                        out.held_flush = false;
                        let _ = tx.send(Bytes::from_static(pktline::FLUSH));
                    }
                    let packet = buf.split_to(used).freeze();
                    if is_report {
                        out.held_report.push(packet);
                    } else {
                        let _ = tx.send(packet);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    broken = true;
                    let _ = tx.send(buf.split().freeze());
                    break;
                }
            }
        }
    }
    if !buf.is_empty() {
        let _ = tx.send(buf.split().freeze());
    }
    out
}
