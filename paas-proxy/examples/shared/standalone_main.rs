// The body of the standalone router program, shared by the workspace's `proxy` example and
// paas-proxy's `standalone` example (included with `include!`, hence no inner attributes).

/// mimalloc, not the system allocator: tokio aligns each task and each socket's readiness
/// record to 128 bytes, and glibc pads such aligned blocks; mimalloc's size classes do not.
/// Measured by `paas-proxy/bench/run.sh` on 2,000 idle keep-alive connections: 1.38 KiB
/// each with glibc's allocator, 1.06 KiB with mimalloc (HAProxy: 1.28), and no less throughput.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use paas_proxy::{load_routes_file, watch_routes_file, IpNet, ProxyRouter, ProxySettings};

/// Command line of the standalone router.
#[derive(Debug, Parser)]
#[command(about = "The paas router alone: a reverse proxy fed by a JSON routes file")]
struct Args {
    /// Address to serve proxied traffic on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Routes file: {"apps": {"NAME": {"hosts": ["..."], "endpoints": ["IP:PORT", ...]}}}.
    /// Reloaded on SIGHUP and when it changes.
    #[arg(long)]
    routes: PathBuf,
    /// Address of the admin listener (GET /metrics, /routes, /healthz).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Base domain of the default `<app>.<base>` hosts; empty turns them off.
    #[arg(long, default_value = "localhost")]
    base_domain: String,
    /// A network of proxies in front (e.g. a TLS load balancer: `10.0.0.0/8`, `192.0.2.7`)
    /// whose X-Forwarded-For/-Proto/-Host/-Port are passed on; repeatable. From any other
    /// client these headers are replaced.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_net)]
    trusted_proxies: Vec<IpNet>,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>().map_err(|e| e.to_string())
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // This program's own lines (listening, routes loaded) as well as the router's.
                tracing_subscriber::EnvFilter::new(format!(
                    "warn,paas_proxy=info,paas_proxy::access=warn,{}=info",
                    module_path!()
                ))
            }),
        )
        .init();
    // Every proxied connection holds two descriptors (client and app).
    let open_files = paas_proxy::raise_open_files_limit();
    tracing::debug!(?open_files, "open files limit");
    // One thread: a current-thread runtime (no work-stealing bookkeeping); more: that many
    // workers.
    let mut runtime = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all();
    if let Some(n) = args.threads.filter(|n| *n > 1) {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("proxy: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("proxy: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = ProxySettings::default();
    settings.base_domain = (!args.base_domain.is_empty()).then_some(args.base_domain);
    settings.trusted_proxies = args.trusted_proxies;
    let router = ProxyRouter::new(settings)?;
    let apps = load_routes_file(&router, &args.routes).await?;
    tracing::info!(apps, routes = %args.routes.display(), "routes loaded");
    tokio::spawn(watch_routes_file(
        router.clone(),
        args.routes.clone(),
        Duration::from_secs(1),
    ));
    if let Some(admin) = args.admin {
        let listener = tokio::net::TcpListener::bind(admin).await?;
        tracing::info!(%admin, "admin listening");
        tokio::spawn(router.clone().serve_admin(listener, std::future::pending()));
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, "proxy listening");
    router
        .serve(listener, async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let mut term = match signal(SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        return;
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
        })
        .await?;
    Ok(())
}
