//! `releases, releases:info, rollback, deploy`.

use crate::*;

/// releases, releases:info, rollback, deploy.
#[derive(Debug, Subcommand)]
pub(crate) enum ReleasesCommand {
    /// List releases, newest first.
    #[command(name = "releases")]
    Releases {
        /// How many.
        #[arg(short = 'n', long = "num", default_value_t = 20)]
        num: u32,
    },
    /// Show one release.
    #[command(name = "releases:info")]
    ReleasesInfo {
        /// The release (`v3` or `3`).
        version: String,
    },
    /// Roll back to a release (default: the one before the current); makes a new release.
    #[command(name = "rollback")]
    Rollback {
        /// The release to go back to (`v3` or `3`).
        version: Option<String>,
    },
    /// Deploy again without a push: a ref of the app's repository (default `main`), or a
    /// prebuilt image present on the engine (`--image`).
    #[command(name = "deploy")]
    Deploy {
        /// The ref to build (`main`, a commit id).
        #[arg(conflicts_with = "image")]
        git_ref: Option<String>,
        /// An image reference to deploy as is.
        #[arg(long)]
        image: Option<String>,
    },
}

pub(crate) async fn run(cx: &Cx, command: ReleasesCommand) -> CliResult<i32> {
    let (api, json, app_flag) = (&cx.api, cx.json, cx.app_flag.as_deref());
    let err = |e| api_error(api, e);
    match command {
        ReleasesCommand::Releases { num } => {
            let app = resolve_app(app_flag)?;
            let page = api
                .releases(&app, &PageRequest::first(num as usize))
                .await
                .map_err(err)?;
            let releases = page.items;
            if json {
                print_json(&releases);
            } else if releases.is_empty() {
                out(format!("{app} has no releases."));
            } else {
                out(format!("=== {app} Releases"));
                let rows: Vec<Vec<String>> = releases
                    .iter()
                    .map(|r| {
                        vec![
                            r.version.to_string(),
                            status_word(&r.status).to_string(),
                            r.description.clone(),
                            r.created_at.to_string(),
                        ]
                    })
                    .collect();
                out(table(
                    &["VERSION", "STATUS", "DESCRIPTION", "CREATED"],
                    &rows,
                ));
            }
        }
        ReleasesCommand::ReleasesInfo { version } => {
            let version = parse_version(&version)?;
            let app = resolve_app(app_flag)?;
            let r = api.release(&app, version).await.map_err(err)?;
            show(json, &r, render_release);
        }
        ReleasesCommand::Rollback { version } => {
            let version = version.as_deref().map(parse_version).transpose()?;
            let app = resolve_app(app_flag)?;
            match version {
                Some(v) => note(format!("Rolling back {app} to {v}...")),
                None => note(format!("Rolling back {app} to the previous release...")),
            }
            let op = api.rollback(&app, version).await.map_err(err)?;
            let r = follow(op).await.map_err(err)?;
            show(json, &r, |r| {
                format!(
                    "Rolled back {app}: now at {} ({})",
                    r.version, r.description
                )
            });
        }
        ReleasesCommand::Deploy { git_ref, image } => {
            let app = resolve_app(app_flag)?;
            let body = match image {
                Some(image) => {
                    note(format!("Deploying image {image} to {app}..."));
                    DeployBody {
                        git_ref: None,
                        image: Some(image),
                    }
                }
                None => {
                    let git_ref = git_ref.unwrap_or_else(|| "main".into());
                    paas::core::check_ref_name(&git_ref)?;
                    note(format!("Deploying {git_ref} of {app}..."));
                    DeployBody {
                        git_ref: Some(git_ref),
                        image: None,
                    }
                }
            };
            let op = api.deploy(&app, &body).await.map_err(err)?;
            let r = follow(op).await.map_err(err)?;
            show(json, &r, |r| {
                format!("Released {} of {app} ({})", r.version, r.description)
            });
        }
    }
    Ok(0)
}

fn render_release(r: &ReleaseView) -> String {
    let procs = if r.process_types.is_empty() {
        "-".to_string()
    } else {
        r.process_types
            .iter()
            .map(|(t, c)| format!("{t}: {c}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let keys = if r.config_keys.is_empty() {
        "-".to_string()
    } else {
        r.config_keys
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "=== Release {}\n{}",
        r.version,
        key_values(&[
            ("Status", r.status.to_string()),
            ("Description", r.description.clone()),
            ("Build", r.build_id.to_string()),
            ("Commit", short_commit(&r.commit)),
            ("Image", r.image.clone()),
            ("Strategy", r.strategy.clone()),
            ("Processes", procs),
            ("Config keys", keys),
            ("Created", r.created_at.to_string()),
        ])
    )
}

pub(crate) fn status_word(s: &DeployStatus) -> &'static str {
    match s {
        DeployStatus::Pending => "pending",
        DeployStatus::Succeeded => "succeeded",
        DeployStatus::Failed(_) => "failed",
        _ => "unknown",
    }
}

fn short_commit(c: &Option<paas::core::CommitId>) -> String {
    c.as_ref()
        .map(|c| c.as_str().chars().take(7).collect())
        .unwrap_or_else(|| "-".into())
}
