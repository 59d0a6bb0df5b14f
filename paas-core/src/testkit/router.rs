//! Conformance suite for [`Router`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::ErrorKind;
use crate::model::{Domain, Route};
use crate::traits::{DrainRequest, Router};

use super::unique_app;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Runs every Router contract.
pub async fn run_all(router: &dyn Router) {
    set_replace_remove(router).await;
    host_conflict_changes_nothing(router).await;
    drain_of_idle_endpoints(router).await;
}

/// set_route is visible in routes(), a second set replaces it whole, remove is idempotent.
pub async fn set_replace_remove(router: &dyn Router) {
    let app = unique_app("rt-set");
    let host = Domain::new(format!("{app}.example.test")).unwrap();
    let r1 = Route {
        app: app.clone(),
        hosts: vec![host.clone()],
        endpoints: vec![addr(1), addr(2)],
    };
    router.set_route(r1.clone()).await.expect("set_route");
    router
        .set_route(r1.clone())
        .await
        .expect("set_route is idempotent");
    let find = |routes: Vec<Route>| routes.into_iter().find(|r| r.app == app);
    let got = find(router.routes().await.unwrap()).expect("route listed");
    assert_eq!(got.hosts, r1.hosts, "hosts stored");
    let mut eps = got.endpoints.clone();
    eps.sort();
    assert_eq!(eps, vec![addr(1), addr(2)], "endpoints stored");
    let r2 = Route {
        app: app.clone(),
        hosts: vec![host],
        endpoints: vec![addr(3)],
    };
    router.set_route(r2).await.unwrap();
    let got = find(router.routes().await.unwrap()).unwrap();
    assert_eq!(
        got.endpoints,
        vec![addr(3)],
        "second set replaces endpoints whole"
    );
    let all = router.routes().await.unwrap();
    let mut names: Vec<_> = all.iter().map(|r| r.app.clone()).collect();
    let sorted = {
        let mut s = names.clone();
        s.sort();
        s
    };
    assert_eq!(names, sorted, "routes sorted by app");
    names.dedup();
    assert_eq!(names.len(), all.len(), "one entry per app");
    router.remove_route(&app).await.expect("remove_route");
    router
        .remove_route(&app)
        .await
        .expect("remove_route is idempotent");
    assert!(
        find(router.routes().await.unwrap()).is_none(),
        "route removed"
    );
}

/// A host routed to another app is a Conflict and the table does not change.
pub async fn host_conflict_changes_nothing(router: &dyn Router) {
    let a = unique_app("rt-a");
    let b = unique_app("rt-b");
    let shared = Domain::new(format!("{a}.shared.test")).unwrap();
    router
        .set_route(Route {
            app: a.clone(),
            hosts: vec![shared.clone()],
            endpoints: vec![addr(10)],
        })
        .await
        .unwrap();
    let own = Domain::new(format!("{b}.own.test")).unwrap();
    let e = router
        .set_route(Route {
            app: b.clone(),
            hosts: vec![own, shared],
            endpoints: vec![addr(11)],
        })
        .await
        .expect_err("host owned by another app");
    assert_eq!(e.kind(), ErrorKind::Conflict, "conflict kind: {e}");
    let routes = router.routes().await.unwrap();
    assert!(
        routes.iter().all(|r| r.app != b),
        "rejected route not added"
    );
    let ra = routes.iter().find(|r| r.app == a).unwrap();
    assert_eq!(ra.endpoints, vec![addr(10)], "other app unchanged");
    router.remove_route(&a).await.unwrap();
}

/// Draining endpoints with nothing in flight reports them drained well before the timeout.
pub async fn drain_of_idle_endpoints(router: &dyn Router) {
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        router.drain(DrainRequest::new(
            vec![addr(20), addr(21)],
            Duration::from_secs(5),
        )),
    )
    .await
    .expect("drain of idle endpoints returns")
    .expect("drain");
    let mut d = report.drained.clone();
    d.sort();
    assert_eq!(d, vec![addr(20), addr(21)], "idle endpoints are drained");
    assert!(report.pending.is_empty(), "nothing pending");
}
