//! The state a router shares with its listeners, connections and background tasks, and the
//! signal that stops a listener's connections.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use paas_core::{AppName, Route};
use tokio::sync::Notify;

use crate::access::AccessLog;
use crate::metrics::{AppMetrics, GlobalMetrics};
use crate::settings::{Balance, ProxySettings};
use crate::table::{Endpoint, Table};

#[derive(Debug, Default)]
pub(crate) struct WriteState {
    pub(crate) routes: BTreeMap<AppName, Route>,
    pub(crate) balance: BTreeMap<AppName, Balance>,
}

/// State shared by the router handle, its listeners and its background tasks.
pub(crate) struct Shared {
    pub(crate) settings: ProxySettings,
    pub(crate) table: ArcSwap<Table>,
    pub(crate) write: Mutex<WriteState>,
    pub(crate) registry: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    pub(crate) app_metrics: Mutex<HashMap<AppName, Arc<AppMetrics>>>,
    pub(crate) global: Arc<GlobalMetrics>,
    pub(crate) access: ArcSwap<AccessLog>,
    pub(crate) health_started: AtomicBool,
    pub(crate) sweeper_started: AtomicBool,
}

impl Shared {
    /// The state of a router with an empty table (`settings` already validated).
    pub(crate) fn new(settings: ProxySettings) -> Self {
        Shared {
            settings,
            table: ArcSwap::from_pointee(Table::default()),
            write: Mutex::new(WriteState::default()),
            registry: Mutex::new(HashMap::new()),
            app_metrics: Mutex::new(HashMap::new()),
            global: Arc::new(GlobalMetrics::default()),
            access: ArcSwap::from_pointee(AccessLog::default()),
            health_started: AtomicBool::new(false),
            sweeper_started: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("settings", &self.settings)
            .field("apps", &self.table.load().apps.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The signal telling a listener's connections to finish (a small future to wait on: every
/// idle connection's task holds one).
#[derive(Debug, Default)]
pub(crate) struct Stop {
    set: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Relaxed)
    }

    pub(crate) async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.set.load(Ordering::SeqCst) {
            notified.await;
        }
    }
}
