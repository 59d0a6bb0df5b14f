//! `domains, domains:add, domains:remove`.

use crate::*;

/// domains, domains:add, domains:remove.
#[derive(Debug, Subcommand)]
pub(crate) enum DomainsCommand {
    /// List custom domains.
    #[command(name = "domains")]
    Domains,
    /// Route a hostname to the app.
    #[command(name = "domains:add")]
    DomainsAdd {
        /// The hostname (`www.example.com`, `*.example.com`).
        host: String,
    },
    /// Stop routing a hostname to the app.
    #[command(name = "domains:remove")]
    DomainsRemove {
        /// The hostname.
        host: String,
    },
}

pub(crate) async fn run(cx: &Cx, command: DomainsCommand) -> CliResult<i32> {
    let (api, json, app_flag) = (&cx.api, cx.json, cx.app_flag.as_deref());
    let err = |e| api_error(api, e);
    match command {
        DomainsCommand::Domains => {
            let app = resolve_app(app_flag)?;
            let hosts = api.domains(&app).await.map_err(err)?;
            if json {
                print_json(&hosts);
            } else if hosts.is_empty() {
                out(format!("{app} has no custom domains."));
            } else {
                out(format!("=== {app} Custom Domains"));
                for h in hosts {
                    out(&h);
                }
            }
        }
        DomainsCommand::DomainsAdd { host } => {
            let host = parse_domain(&host)?;
            let app = resolve_app(app_flag)?;
            let added = api.add_domain(&app, &host).await.map_err(err)?;
            if json {
                print_json(&serde_json::json!({ "host": added }));
            } else {
                out(format!("Adding {host} to {app}... done"));
            }
        }
        DomainsCommand::DomainsRemove { host } => {
            let host = parse_domain(&host)?;
            let app = resolve_app(app_flag)?;
            api.remove_domain(&app, &host).await.map_err(err)?;
            if json {
                print_json(&serde_json::json!({"removed": host}));
            } else {
                out(format!("Removing {host} from {app}... done"));
            }
        }
    }
    Ok(0)
}
