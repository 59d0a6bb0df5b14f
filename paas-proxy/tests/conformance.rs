//! The Router conformance suite of paas-core's testkit.

use paas_proxy::{ProxyRouter, ProxySettings};

#[tokio::test]
async fn router_conformance() {
    let router = ProxyRouter::new(ProxySettings::default()).unwrap();
    paas_core::testkit::router::run_all(&router).await;
}
