//! Health checks: waiting until new instances run and answer their probe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use paas_core::{Error, HealthCheck, HealthRequest, Result};

use super::Inner;
use crate::common::BACKEND;

/// [`paas_core::Scheduler::wait_healthy`]: every instance is probed concurrently until the
/// deadline.
pub(super) async fn wait_healthy(inner: &Arc<Inner>, req: HealthRequest) -> Result<()> {
    let deadline = Instant::now() + req.deadline;
    let check = req.check.clone();
    let one = |id: String| wait_one(inner.clone(), id, check.clone(), deadline);
    let results = futures::future::join_all(req.instances.iter().cloned().map(one)).await;
    let mut late = Vec::new();
    for r in results {
        if let Some(name) = r? {
            late.push(name);
        }
    }
    if late.is_empty() {
        Ok(())
    } else {
        Err(Error::timeout(format!(
            "instances never became healthy within {:?}: {}",
            req.deadline,
            late.join(", ")
        ))
        .with_backend(BACKEND)
        .with_operation("wait_healthy"))
    }
}

/// Polls one instance: `None` once it is healthy, its name if it is still not healthy at
/// `deadline`, an error if it exited.
async fn wait_one(
    inner: Arc<Inner>,
    id: String,
    check: HealthCheck,
    deadline: Instant,
) -> Result<Option<String>> {
    loop {
        let c = inner
            .inspect(&id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no instance with id \"{id}\"")))?;
        let instance = inner
            .instance_from_inspect(&c)
            .ok_or_else(|| Error::not_found(format!("no instance with id \"{id}\"")))?;
        let st = c.state.as_ref();
        let running = st.and_then(|s| s.running).unwrap_or(false);
        let exited = !running
            && st
                .and_then(|s| s.finished_at.as_deref())
                .is_some_and(|f| !f.starts_with("0001"));
        if exited {
            return Err(Error::deploy_failed(format!(
                "instance {} exited with code {} before becoming healthy",
                instance.name(),
                st.and_then(|s| s.exit_code).unwrap_or(-1)
            ))
            .with_backend(BACKEND)
            .with_operation("wait_healthy"));
        }
        if running {
            let healthy = match (&check, instance.address) {
                (HealthCheck::Running, _) => true,
                // A web process without an address cannot be routed: not healthy
                // (yet). Other processes have nothing to probe.
                (_, None) => !instance.process_type.is_web(),
                (c, Some(addr)) => paas_core::probe(addr, c, Duration::from_secs(4)).await,
            };
            if healthy {
                return Ok(None);
            }
        }
        if Instant::now() >= deadline {
            return Ok(Some(instance.name()));
        }
        tokio::time::sleep(inner.settings.health_interval).await;
    }
}
