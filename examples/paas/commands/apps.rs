//! `apps, apps:create, apps:info, apps:destroy, git:remote`.

use super::ps::render_formation;
use super::releases::status_word;
use crate::*;

/// apps, apps:create, apps:info, apps:destroy, git:remote.
#[derive(Debug, Subcommand)]
pub(crate) enum AppsCommand {
    /// List apps.
    #[command(name = "apps")]
    Apps,
    /// Create an app (inside a git repository, also adds the `paas` remote).
    #[command(name = "apps:create")]
    AppsCreate {
        /// The app's name (^[a-z][a-z0-9-]{0,29}$).
        name: String,
    },
    /// Show an app's details.
    #[command(name = "apps:info")]
    AppsInfo,
    /// Destroy an app: its processes, images, repository, routes and records.
    #[command(name = "apps:destroy")]
    AppsDestroy {
        /// The app to destroy (default: -a, or the `paas` git remote).
        name: Option<String>,
        /// The app's name again, to confirm.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// Add (or update) the `paas` git remote of the current repository and its credential.
    #[command(name = "git:remote")]
    GitRemote,
}

pub(crate) async fn run(cx: &Cx, command: AppsCommand) -> CliResult<i32> {
    let (api, base, json, app_flag) = (&cx.api, cx.base.as_str(), cx.json, cx.app_flag.as_deref());
    let err = |e| api_error(api, e);
    match command {
        AppsCommand::Apps => {
            let mut apps = api.all_apps().await.map_err(err)?;
            apps.sort_by(|a, b| a.name.cmp(&b.name));
            if json {
                print_json(&apps);
            } else if apps.is_empty() {
                out("You have no apps.");
            } else {
                let rows: Vec<Vec<String>> = apps
                    .iter()
                    .map(|a| vec![a.name.to_string(), a.created_at.to_string()])
                    .collect();
                out(table(&["NAME", "CREATED"], &rows));
            }
        }
        AppsCommand::AppsCreate { name } => {
            let name = parse_app(&name)?;
            let created = api.create_app(&name).await.map_err(err)?;
            if json {
                print_json(&created);
            } else {
                out(format!("Creating {name}... done"));
                if let Ok(info) = api.app(&name).await {
                    let web = info.web_urls.first().cloned().unwrap_or_default();
                    out(format!("{web} | {}", info.git_url));
                }
            }
            if in_git_repo() {
                let msg = setup_git_remote(base, &name)?;
                if json {
                    note(msg);
                } else {
                    out(msg);
                }
            }
        }
        AppsCommand::AppsInfo => {
            let app = resolve_app(app_flag)?;
            let info = api.app(&app).await.map_err(err)?;
            show(json, &info, render_app_info);
        }
        AppsCommand::AppsDestroy { name, confirm } => {
            let app = match name {
                Some(n) => parse_app(&n)?,
                None => resolve_app(app_flag)?,
            };
            if confirm.as_deref() != Some(app.as_str()) {
                return Err(CliError::new(format!(
                    "this permanently destroys {app} (processes, images, repository, routes, releases and config); to proceed, run again with --confirm {app}"
                )));
            }
            api.destroy_app(&app).await.map_err(err)?;
            let points_here = remote_url()
                .is_some_and(|url| app_from_remote_url(&url).ok().as_ref() == Some(&app));
            let remote_removed = points_here
                && git(&["remote", "remove", REMOTE])
                    .map(|o| o.status.success())
                    .unwrap_or(false);
            if json {
                print_json(&serde_json::json!({"destroyed": app}));
            } else {
                out(format!(
                    "Destroying {app} (including all processes, images and data)... done"
                ));
                if remote_removed {
                    out(format!("Git remote {REMOTE} removed"));
                }
            }
        }
        AppsCommand::GitRemote => {
            let app = resolve_app(app_flag)?;
            if !in_git_repo() {
                return Err(CliError::new(
                    "not inside a git repository (run `git init` first)",
                ));
            }
            // Check the app exists (and the token works) before touching the repository.
            api.app(&app).await.map_err(err)?;
            let msg = setup_git_remote(base, &app)?;
            if json {
                print_json(&serde_json::json!({
                    "remote": REMOTE,
                    "url": format!("{base}/{app}.git"),
                }));
            } else {
                out(msg);
            }
        }
    }
    Ok(0)
}

fn render_app_info(info: &AppInfo) -> String {
    let rel = |r: &Option<ReleaseView>| match r {
        Some(r) => format!(
            "{} {} ({})",
            r.version,
            status_word(&r.status),
            r.description
        ),
        None => "-".into(),
    };
    let mut pairs = vec![
        ("Created", info.created_at.to_string()),
        (
            "Web URL",
            if info.web_urls.is_empty() {
                "-".into()
            } else {
                info.web_urls.join(", ")
            },
        ),
        ("Git URL", info.git_url.clone()),
        ("Release", rel(&info.current)),
    ];
    if info.latest.as_ref().map(|r| r.version) != info.current.as_ref().map(|r| r.version) {
        pairs.push(("Latest", rel(&info.latest)));
        if let Some(DeployStatus::Failed(reason)) = info.latest.as_ref().map(|r| &r.status) {
            pairs.push(("Failure", reason.clone()));
        }
    }
    pairs.push(("Formation", render_formation(&info.formation)));
    let mut dynos: Vec<String> = info
        .instances
        .iter()
        .map(|i| format!("{} {} {}", i.name(), i.state, i.release))
        .collect();
    dynos.sort();
    pairs.push((
        "Processes",
        if dynos.is_empty() {
            "-".into()
        } else {
            dynos.join(", ")
        },
    ));
    pairs.push((
        "Domains",
        if info.domains.is_empty() {
            "-".into()
        } else {
            info.domains
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    ));
    format!("=== {}\n{}", info.name, key_values(&pairs))
}
