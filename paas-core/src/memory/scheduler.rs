use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::lock;
use crate::error::{Error, Result};
use crate::model::{AppName, Instance, InstanceState, ProcessType, Release, Timestamp};
use crate::traits::{
    ConvergeReport, ConvergeRequest, HealthCheck, HealthRequest, InstanceEvent, OutputStream,
    RunHandle, RunOutput, RunRequest, Scheduler, StartRequest, StopRequest,
};

/// A fault to simulate for an instance, chosen by the hook set with
/// [`MemoryScheduler::set_fault`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimFault {
    /// `start` fails with `Unavailable`.
    FailStart,
    /// The instance runs but never passes a health check (a web instance's port refuses
    /// connections).
    NeverHealthy,
    /// The instance crashes after this long (and every time after a restart).
    CrashAfter(Duration),
}

type FaultHook = Arc<dyn Fn(&Release, &ProcessType, u32) -> Option<SimFault> + Send + Sync>;

struct SimInstance {
    instance: Instance,
    release: Release,
    fault: Option<SimFault>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SimInstance {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Inner {
    instances: Mutex<BTreeMap<String, SimInstance>>,
    events: broadcast::Sender<InstanceEvent>,
    fault: Mutex<Option<FaultHook>>,
    next_id: AtomicU64,
    restart_delay: Duration,
}

/// A [`Scheduler`] that simulates instances inside the current process.
///
/// Each web instance is a real HTTP/1.1 listener on `127.0.0.1` that answers every request with
/// `APP vN web.I` (so routing and health checks are real); other instances are tasks. One-off
/// runs interpret a tiny shell: `sh -c 'SCRIPT'` or a plain argv, with statements separated by
/// `;` or newlines: `echo WORDS`, `printenv KEY`, `sleep SECS`, `true`, `false`, `exit N`;
/// anything else exits 127 like a missing command. Crashes and health failures are injected
/// with [`MemoryScheduler::set_fault`]; a crashed instance is restarted after a delay.
#[derive(Clone)]
pub struct MemoryScheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryScheduler")
            .field("instances", &lock(&self.inner.instances).len())
            .finish()
    }
}

impl Default for MemoryScheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryScheduler {
    /// A scheduler with no instances; crashed instances restart after 50 ms.
    pub fn new() -> Self {
        MemoryScheduler {
            inner: Arc::new(Inner {
                instances: Mutex::new(BTreeMap::new()),
                events: broadcast::channel(1024).0,
                fault: Mutex::new(None),
                next_id: AtomicU64::new(1),
                restart_delay: Duration::from_millis(50),
            }),
        }
    }

    /// Sets the fault hook: called for every instance started, it returns the fault to
    /// simulate, if any. `None` clears it.
    pub fn set_fault(
        &self,
        hook: Option<
            impl Fn(&Release, &ProcessType, u32) -> Option<SimFault> + Send + Sync + 'static,
        >,
    ) {
        *lock(&self.inner.fault) = hook.map(|h| Arc::new(h) as FaultHook);
    }

    async fn start_one(&self, release: &Release, ty: &ProcessType, index: u32) -> Result<()> {
        let fault = lock(&self.inner.fault)
            .as_ref()
            .and_then(|h| h(release, ty, index));
        if fault == Some(SimFault::FailStart) {
            return Err(
                Error::unavailable(format!("simulated start failure of {ty}.{index}"))
                    .with_backend("memory"),
            );
        }
        let id = format!(
            "mem-{}-{}-{}-{}-{}",
            release.app,
            release.version.0,
            ty,
            index,
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let mut instance = Instance {
            id: id.clone(),
            app: release.app.clone(),
            release: release.version,
            process_type: ty.clone(),
            index,
            address: None,
            state: InstanceState::Running,
            started_at: Timestamp::now(),
        };
        let mut tasks = Vec::new();
        if ty.is_web() {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            instance.address = Some(listener.local_addr()?);
            if fault == Some(SimFault::NeverHealthy) {
                drop(listener);
            } else {
                let body = format!("{} {} {}.{}\n", release.app, release.version, ty, index);
                tasks.push(tokio::spawn(serve(listener, body)));
            }
        }
        if let Some(SimFault::CrashAfter(after)) = fault {
            tasks.push(tokio::spawn(crash_loop(
                self.inner.clone(),
                id.clone(),
                after,
            )));
        }
        lock(&self.inner.instances).insert(
            id,
            SimInstance {
                instance,
                release: release.clone(),
                fault,
                tasks,
            },
        );
        Ok(())
    }
}

async fn crash_loop(inner: Arc<Inner>, id: String, after: Duration) {
    loop {
        tokio::time::sleep(after).await;
        let snapshot = {
            let mut all = lock(&inner.instances);
            let Some(sim) = all.get_mut(&id) else { return };
            sim.instance.state = InstanceState::Crashed;
            sim.instance.clone()
        };
        let _ = inner.events.send(InstanceEvent::Crashed {
            instance: snapshot,
            exit_code: Some(1),
            restart_in: Some(inner.restart_delay),
            at: Timestamp::now(),
        });
        tokio::time::sleep(inner.restart_delay).await;
        let snapshot = {
            let mut all = lock(&inner.instances);
            let Some(sim) = all.get_mut(&id) else { return };
            sim.instance.state = InstanceState::Running;
            sim.instance.clone()
        };
        let _ = inner.events.send(InstanceEvent::Restarted {
            instance: snapshot,
            at: Timestamp::now(),
        });
    }
}

/// Answers every HTTP/1.1 request on `listener` with `body` (keep-alive supported).
async fn serve(listener: TcpListener, body: String) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            loop {
                let Some(end) = find_header_end(&buf) else {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.len() > 64 * 1024 {
                        return;
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let close = head.contains("connection: close");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{}",
                    body.len(),
                    if close { "connection: close\r\n" } else { "" },
                    body
                );
                buf.drain(..end + 4);
                if sock.write_all(resp.as_bytes()).await.is_err() || close {
                    return;
                }
            }
        });
    }
}

fn find_header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

async fn probe(addr: SocketAddr, check: &HealthCheck) -> bool {
    crate::probe(addr, check, Duration::from_secs(1)).await
}

/// Runs the tiny simulated shell; returns (output, exit code).
fn interpret(script: &str, env: &HashMap<String, String>) -> (Vec<RunOutput>, i32, Duration) {
    let mut out = Vec::new();
    let mut sleep = Duration::ZERO;
    for stmt in script
        .split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let mut words = stmt.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        let stdout = |t: String| RunOutput {
            stream: OutputStream::Stdout,
            text: t,
        };
        match cmd {
            "echo" => out.push(stdout(format!("{}\n", args.join(" ")))),
            "printenv" => {
                for a in &args {
                    if let Some(v) = env.get(*a) {
                        out.push(stdout(format!("{v}\n")));
                    }
                }
            }
            "sleep" => {
                let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(0.0);
                sleep += Duration::from_secs_f64(secs.clamp(0.0, 3600.0));
            }
            "true" | ":" => {}
            "false" => return (out, 1, sleep),
            "exit" => {
                let code = args.first().and_then(|s| s.parse().ok()).unwrap_or(0);
                return (out, code, sleep);
            }
            other => {
                out.push(RunOutput {
                    stream: OutputStream::Stderr,
                    text: format!("sh: {other}: not found\n"),
                });
                return (out, 127, sleep);
            }
        }
    }
    (out, 0, sleep)
}

#[async_trait]
impl Scheduler for MemoryScheduler {
    async fn start(&self, req: StartRequest) -> Result<Vec<Instance>> {
        if req
            .release
            .build
            .procfile
            .command(&req.process_type)
            .is_none()
        {
            return Err(Error::invalid(format!(
                "release {} of app \"{}\" has no process type \"{}\"",
                req.release.version, req.release.app, req.process_type
            )));
        }
        let before: Vec<String> = lock(&self.inner.instances).keys().cloned().collect();
        for &index in &req.indexes {
            if let Err(e) = self.start_one(&req.release, &req.process_type, index).await {
                let mut all = lock(&self.inner.instances);
                all.retain(|id, _| before.contains(id));
                return Err(e);
            }
        }
        let all = lock(&self.inner.instances);
        let mut started: Vec<Instance> = all
            .iter()
            .filter(|(id, _)| !before.contains(id))
            .map(|(_, s)| s.instance.clone())
            .filter(|i| i.process_type == req.process_type && i.release == req.release.version)
            .collect();
        started.sort_by_key(|i| i.index);
        Ok(started)
    }

    async fn wait_healthy(&self, req: HealthRequest) -> Result<()> {
        let deadline = tokio::time::Instant::now() + req.deadline;
        let mut pending: Vec<String> = req.instances.clone();
        loop {
            let mut still = Vec::new();
            for id in &pending {
                let (inst, fault) = {
                    let all = lock(&self.inner.instances);
                    let sim = all
                        .get(id)
                        .ok_or_else(|| Error::not_found(format!("instance {id} not found")))?;
                    (sim.instance.clone(), sim.fault.clone())
                };
                let healthy = match (&req.check, inst.address) {
                    _ if inst.state != InstanceState::Running => false,
                    (HealthCheck::Running, _) => fault != Some(SimFault::NeverHealthy),
                    (check, Some(addr)) => probe(addr, check).await,
                    (_, None) => fault != Some(SimFault::NeverHealthy),
                };
                if !healthy {
                    still.push(id.clone());
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let names: Vec<String> = {
                    let all = lock(&self.inner.instances);
                    still
                        .iter()
                        .filter_map(|id| all.get(id).map(|s| s.instance.name()))
                        .collect()
                };
                return Err(Error::timeout(format!(
                    "{} never became healthy within {:?}",
                    names.join(", "),
                    req.deadline
                ))
                .with_backend("memory"));
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&self, req: StopRequest) -> Result<()> {
        let mut all = lock(&self.inner.instances);
        for id in &req.instances {
            all.remove(id);
        }
        Ok(())
    }

    async fn list(&self, app: Option<&AppName>) -> Result<Vec<Instance>> {
        let mut v: Vec<Instance> = lock(&self.inner.instances)
            .values()
            .filter(|s| app.is_none_or(|a| &s.instance.app == a))
            .map(|s| s.instance.clone())
            .collect();
        crate::traits::sort_instances(&mut v);
        Ok(v)
    }

    async fn run_once(&self, req: RunRequest) -> Result<RunHandle> {
        if req.command.is_empty() || req.command[0].is_empty() {
            return Err(Error::invalid("command must not be empty"));
        }
        let script = match req.command.as_slice() {
            [sh, flag, script, ..] if (sh == "sh" || sh == "bash") && flag == "-c" => {
                script.clone()
            }
            argv => argv.join(" "),
        };
        let mut env: HashMap<String, String> = req.release.config.to_env().into_iter().collect();
        env.extend(req.env.clone());
        env.insert("DYNO".into(), format!("{}.0", req.process_type));
        let (output, code, sleep) = interpret(&script, &env);
        let timeout = req.timeout;
        let exit = async move {
            match timeout {
                Some(t) if t < sleep => {
                    tokio::time::sleep(t).await;
                    Err(Error::timeout(format!(
                        "command did not finish within {t:?}"
                    )))
                }
                _ => {
                    tokio::time::sleep(sleep).await;
                    Ok(code)
                }
            }
        };
        Ok(RunHandle {
            output: futures::stream::iter(output).boxed(),
            exit: Box::pin(exit),
        })
    }

    async fn converge(&self, req: ConvergeRequest) -> Result<ConvergeReport> {
        let app = req.release.app.clone();
        let current = self.list(Some(&app)).await?;
        let mut report = ConvergeReport::default();
        let mut stop = Vec::new();
        let mut have: BTreeMap<(ProcessType, u32), bool> = BTreeMap::new();
        for i in &current {
            let wanted = i.release == req.release.version
                && !i.process_type.is_release()
                && i.index >= 1
                && i.index <= req.formation.get(&i.process_type)
                && req
                    .release
                    .build
                    .procfile
                    .command(&i.process_type)
                    .is_some()
                && !have.contains_key(&(i.process_type.clone(), i.index));
            if wanted {
                have.insert((i.process_type.clone(), i.index), true);
            } else {
                stop.push(i.id.clone());
            }
        }
        if !stop.is_empty() {
            self.stop(StopRequest::new(stop.clone(), req.grace)).await?;
            report.stopped = stop;
        }
        for (ty, n) in req.formation.iter() {
            if ty.is_release() || req.release.build.procfile.command(ty).is_none() {
                continue;
            }
            let missing: Vec<u32> = (1..=n)
                .filter(|i| !have.contains_key(&(ty.clone(), *i)))
                .collect();
            if !missing.is_empty() {
                let started = self
                    .start(StartRequest::new(req.release.clone(), ty.clone(), missing))
                    .await?;
                report.started.extend(started);
            }
        }
        Ok(report)
    }

    fn events(&self) -> BoxStream<'static, InstanceEvent> {
        let rx = self.inner.events.subscribe();
        crate::stream::broadcast_stream(rx)
    }
}

impl MemoryScheduler {
    /// The release an instance runs (for tests).
    pub fn release_of(&self, id: &str) -> Option<Release> {
        lock(&self.inner.instances)
            .get(id)
            .map(|s| s.release.clone())
    }
}
