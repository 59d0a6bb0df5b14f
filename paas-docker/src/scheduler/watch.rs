//! The crash watcher: engine `die` events and a periodic sweep find exited instances, which
//! are restarted after a capped exponential backoff, with [`InstanceEvent`]s.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, ContainerSummaryStateEnum};
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use paas_core::{InstanceEvent, InstanceState, Timestamp};

use super::containers::{target_of_summary, STOPPING_SUFFIX};
use super::{now_ns, Inner};
use crate::common::{labels, parse_rfc3339_nanos};
use crate::logs::{lock, LogTarget};

/// Crash bookkeeping of one container.
#[derive(Debug, Default)]
pub(super) struct RestartState {
    crashes: u32,
    pending: bool,
}

impl Inner {
    fn backoff(&self, crashes: u32) -> Duration {
        let base = self.settings.restart_backoff_base;
        let factor = 1u32.checked_shl(crashes.min(20)).unwrap_or(u32::MAX);
        base.saturating_mul(factor)
            .min(self.settings.restart_backoff_max)
    }

    /// Handles an exited instance: emits `Crashed`, waits the backoff, restarts it, emits
    /// `Restarted`. Deduplicated per container.
    async fn handle_exit(self: Arc<Self>, id: String) {
        if !self.claim_restart(&id) {
            return;
        }
        let Ok(Some(c)) = self.inspect(&id).await else {
            lock(&self.restarts).remove(&id);
            return;
        };
        if !self.is_ours(c.config.as_ref().and_then(|c| c.labels.as_ref()))
            || stopping_or_running(&c)
        {
            self.clear_pending(&id);
            return;
        }
        let delay = self.next_delay(&id, ran_for(&c));
        if !self.report_crash(&c, delay) {
            self.clear_pending(&id);
            return;
        }
        tokio::time::sleep(delay).await;
        self.restart_exited(&id).await;
    }

    /// Marks a restart of `id` as pending; false if one already is.
    fn claim_restart(&self, id: &str) -> bool {
        let mut r = lock(&self.restarts);
        let st = r.entry(id.to_string()).or_default();
        if st.pending {
            return false;
        }
        st.pending = true;
        true
    }

    fn clear_pending(&self, id: &str) {
        if let Some(st) = lock(&self.restarts).get_mut(id) {
            st.pending = false;
        }
    }

    /// Counts the crash and returns the backoff before the restart; a run of at least
    /// `restart_stable_after` resets the count first.
    fn next_delay(&self, id: &str, ran_for: Duration) -> Duration {
        let mut r = lock(&self.restarts);
        let st = r.entry(id.to_string()).or_default();
        if ran_for >= self.settings.restart_stable_after {
            st.crashes = 0;
        }
        let d = self.backoff(st.crashes);
        st.crashes = st.crashes.saturating_add(1);
        d
    }

    /// Emits `Crashed` for the exited container; false if it is not an instance.
    fn report_crash(&self, c: &ContainerInspectResponse, delay: Duration) -> bool {
        let Some(mut instance) = self.instance_from_inspect(c) else {
            return false;
        };
        instance.state = InstanceState::Crashed;
        instance.address = None;
        let exit_code = c.state.as_ref().and_then(|s| s.exit_code);
        tracing::info!(app = %instance.app, instance = %instance.name(), ?exit_code, ?delay, "instance crashed; restarting after backoff");
        let _ = self.events.send(InstanceEvent::Crashed {
            instance: instance.clone(),
            exit_code,
            restart_in: Some(delay),
            at: Timestamp::now(),
        });
        true
    }

    /// After the backoff: starts the container again unless the scheduler closed or the
    /// container went away, is being stopped or already runs.
    async fn restart_exited(&self, id: &str) {
        if self.closed.load(Ordering::SeqCst) {
            self.clear_pending(id);
            return;
        }
        let Ok(Some(c)) = self.inspect(id).await else {
            lock(&self.restarts).remove(id);
            return;
        };
        if stopping_or_running(&c) {
            self.clear_pending(id);
            return;
        }
        let restarted_at = now_ns();
        let result = self.docker.start_container(id, None).await;
        self.clear_pending(id);
        if let Err(e) = result {
            tracing::warn!(container = %id, error = %e, "restarting a crashed instance failed");
            return;
        }
        self.announce_restart(id, restarted_at).await;
    }

    /// Follows the restarted instance's logs (from just before `restarted_at`) and emits
    /// `Restarted`.
    async fn announce_restart(&self, id: &str, restarted_at: i128) {
        if let Ok(Some(c)) = self.inspect(id).await {
            if let Some(instance) = self.instance_from_inspect(&c) {
                self.logs.follow(
                    LogTarget {
                        id: id.to_string(),
                        app: instance.app.clone(),
                        process_type: instance.process_type.clone(),
                        index: instance.index,
                    },
                    Some(restarted_at - 1_000_000_000),
                );
                let _ = self.events.send(InstanceEvent::Restarted {
                    instance,
                    at: Timestamp::now(),
                });
            }
        }
    }

    /// Looks for exited instances (missed events, containers adopted from an earlier run).
    async fn sweep(self: &Arc<Self>) {
        let Ok(all) = self.list_containers(None, labels::KIND_INSTANCE).await else {
            return;
        };
        for c in all {
            let exited = matches!(
                c.state,
                Some(ContainerSummaryStateEnum::EXITED) | Some(ContainerSummaryStateEnum::DEAD)
            );
            let stopping = c
                .names
                .as_ref()
                .is_some_and(|n| n.iter().any(|n| n.ends_with(STOPPING_SUFFIX)));
            if let Some(id) = c.id.clone() {
                if exited && !stopping {
                    tokio::spawn(self.clone().handle_exit(id));
                } else if c.state == Some(ContainerSummaryStateEnum::RUNNING) {
                    if let Some(t) = target_of_summary(&c) {
                        self.logs.follow(t, Some(now_ns()));
                    }
                }
            }
        }
    }
}

/// Whether the container is being stopped (renamed with the suffix) or running.
fn stopping_or_running(c: &ContainerInspectResponse) -> bool {
    c.name
        .as_deref()
        .is_some_and(|n| n.ends_with(STOPPING_SUFFIX))
        || c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

/// How long the container ran before it exited (zero if unknown).
fn ran_for(c: &ContainerInspectResponse) -> Duration {
    let st = c.state.as_ref();
    match (
        st.and_then(|s| s.started_at.as_deref())
            .and_then(parse_rfc3339_nanos),
        st.and_then(|s| s.finished_at.as_deref())
            .and_then(parse_rfc3339_nanos),
    ) {
        (Some(a), Some(b)) if b >= a => Duration::from_nanos((b - a).min(u64::MAX as i128) as u64),
        _ => Duration::ZERO,
    }
}

/// The background watcher: engine `die` events plus a periodic sweep.
pub(super) async fn watch(inner: Arc<Inner>) {
    loop {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(1))
            .unwrap_or(0);
        let mut filters = inner.base_filters(labels::KIND_INSTANCE, None);
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert("event".into(), vec!["die".into()]);
        let mut events = inner.docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }));
        inner.sweep().await;
        let mut sweep = tokio::time::interval(inner.settings.sweep_interval);
        sweep.tick().await;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        if let Some(id) = ev.actor.and_then(|a| a.id) {
                            tokio::spawn(inner.clone().handle_exit(id));
                        }
                    }
                    Some(Err(_)) | None => break,
                },
                _ = sweep.tick() => inner.sweep().await,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use tokio::sync::broadcast;

    use super::*;
    use crate::logs::LogFollowers;
    use crate::Docker;
    use crate::DockerSchedulerSettings;

    #[tokio::test]
    async fn backoff_is_capped() {
        let docker = Docker::connect_with_local_defaults().unwrap();
        let inner = Inner {
            logs: Arc::new(LogFollowers::new(docker.clone())),
            docker,
            settings: DockerSchedulerSettings {
                restart_backoff_base: Duration::from_secs(1),
                restart_backoff_max: Duration::from_secs(10),
                ..Default::default()
            },
            events: broadcast::channel(1).0,
            restarts: Mutex::new(HashMap::new()),
            image_defaults: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        };
        let d: Vec<u64> = (0..6).map(|c| inner.backoff(c).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(inner.backoff(1000).as_secs(), 10);
    }
}
