//! `ps, ps:scale, ps:restart, run`.

use crate::*;

/// ps, ps:scale, ps:restart, run.
#[derive(Debug, Subcommand)]
pub(crate) enum PsCommand {
    /// List the app's processes.
    #[command(name = "ps")]
    Ps,
    /// Scale process types (`web=3 worker=1`); without pairs, show the formation.
    #[command(name = "ps:scale")]
    PsScale {
        /// TYPE=N pairs.
        #[arg(value_name = "TYPE=N")]
        pairs: Vec<String>,
    },
    /// Restart all processes, or those of one type.
    #[command(name = "ps:restart")]
    PsRestart {
        /// Only this process type.
        process_type: Option<String>,
    },
    /// Run a one-off command in a new process of the current release; exits with its status.
    #[command(name = "run")]
    Run {
        /// The command and its arguments (after `--`).
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
}

pub(crate) async fn run(cx: &Cx, command: PsCommand) -> CliResult<i32> {
    let (api, json, app_flag) = (&cx.api, cx.json, cx.app_flag.as_deref());
    let err = |e| api_error(api, e);
    match command {
        PsCommand::Ps => {
            let app = resolve_app(app_flag)?;
            let instances = api.ps(&app).await.map_err(err)?;
            show(json, &instances, |i| render_ps(&app, i.clone()));
        }
        PsCommand::PsScale { pairs } => {
            let app = resolve_app(app_flag)?;
            if pairs.is_empty() {
                let f = api.formation(&app).await.map_err(err)?;
                show(json, &f, render_formation);
                return Ok(0);
            }
            let formation = scale_formation(&pairs)?;
            note(format!("Scaling {app} processes ({formation})..."));
            let op = api.scale(&app, &formation).await.map_err(err)?;
            let f = follow(op).await.map_err(err)?;
            show(json, &f, |f| {
                format!(
                    "Scaling {app} processes... done, now running {}",
                    render_formation(f)
                )
            });
        }
        PsCommand::PsRestart { process_type } => {
            let process_type = process_type.map(ProcessType::new).transpose()?;
            let app = resolve_app(app_flag)?;
            let what = match &process_type {
                Some(t) => format!("{t} processes"),
                None => "all processes".into(),
            };
            note(format!("Restarting {what} of {app}..."));
            let op = api
                .restart(&app, process_type.as_ref())
                .await
                .map_err(err)?;
            follow(op).await.map_err(err)?;
            if json {
                print_json(&());
            } else {
                out(format!("Restarting {what} of {app}... done"));
            }
        }
        PsCommand::Run { command } => {
            let app = resolve_app(app_flag)?;
            if command.iter().all(|c| c.is_empty()) {
                return Err(CliError::new(
                    "run needs a command: paas run -- CMD ARGS...",
                ));
            }
            note(format!("Running `{}` on {app}...", shell_display(&command)));
            let op = api.run(&app, command).await.map_err(err)?;
            return follow(op).await.map_err(err);
        }
    }
    Ok(0)
}

pub(crate) fn render_formation(f: &Formation) -> String {
    let s = f.to_string();
    if s.is_empty() {
        "no processes".into()
    } else {
        s
    }
}

fn render_ps(app: &AppName, mut instances: Vec<Instance>) -> String {
    if instances.is_empty() {
        return format!("{app} has no running processes.");
    }
    instances.sort_by(|a, b| {
        (a.process_type.as_str(), a.index, a.release).cmp(&(
            b.process_type.as_str(),
            b.index,
            b.release,
        ))
    });
    let mut groups: BTreeMap<String, Vec<&Instance>> = BTreeMap::new();
    for i in &instances {
        groups
            .entry(i.process_type.to_string())
            .or_default()
            .push(i);
    }
    let mut lines = Vec::new();
    for (ty, items) in groups {
        lines.push(format!("=== {ty} ({})", items.len()));
        for i in items {
            let addr = i.address.map(|a| format!(" {a}")).unwrap_or_default();
            lines.push(format!(
                "{}: {} {} (since {}){addr}",
                i.name(),
                i.state,
                i.release,
                i.started_at
            ));
        }
        lines.push(String::new());
    }
    lines.pop();
    lines.join("\n")
}
