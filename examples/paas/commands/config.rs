//! `config, config:get, config:set, config:unset`.

use crate::*;

/// config, config:get, config:set, config:unset.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Show config vars.
    #[command(name = "config")]
    Config,
    /// Print one config var's value.
    #[command(name = "config:get")]
    ConfigGet {
        /// The key.
        key: String,
    },
    /// Set config vars and restart the app (a new release).
    #[command(name = "config:set")]
    ConfigSet {
        /// KEY=VALUE pairs.
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Remove config vars and restart the app (a new release).
    #[command(name = "config:unset")]
    ConfigUnset {
        /// Keys to remove.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

pub(crate) async fn run(cx: &Cx, command: ConfigCommand) -> CliResult<i32> {
    let (api, json, app_flag) = (&cx.api, cx.json, cx.app_flag.as_deref());
    let err = |e| api_error(api, e);
    match command {
        ConfigCommand::Config => {
            let app = resolve_app(app_flag)?;
            let vars = api.config(&app).await.map_err(err)?;
            if json {
                print_json(&vars);
            } else if vars.is_empty() {
                out(format!("{app} has no config vars."));
            } else {
                out(format!("=== {app} Config Vars"));
                let width = vars.keys().map(|k| k.len()).max().unwrap_or(0) + 1;
                for (k, val) in &vars {
                    out(format!("{:<width$} {val}", format!("{k}:")));
                }
            }
        }
        ConfigCommand::ConfigGet { key } => {
            let key = ConfigKey::new(key)?;
            let app = resolve_app(app_flag)?;
            let vars = api.config(&app).await.map_err(err)?;
            let value = vars.get(key.as_str());
            if json {
                print_json(&serde_json::json!({ key.as_str(): value }));
            } else if let Some(value) = value {
                out(value);
            }
        }
        ConfigCommand::ConfigSet { pairs } => {
            let patch = config_set_patch(&pairs)?;
            let app = resolve_app(app_flag)?;
            let keys: Vec<String> = patch.set.keys().cloned().collect();
            note(format!(
                "Setting {} and restarting {app}...",
                and_list(&keys)
            ));
            let op = api.set_config(&app, &patch).await.map_err(err)?;
            let changed = follow(op).await.map_err(err)?;
            report_config_change(&app, &changed, json);
        }
        ConfigCommand::ConfigUnset { keys } => {
            let patch = config_unset_patch(&keys)?;
            let app = resolve_app(app_flag)?;
            note(format!(
                "Unsetting {} and restarting {app}...",
                and_list(&patch.unset)
            ));
            let op = api.set_config(&app, &patch).await.map_err(err)?;
            let changed = follow(op).await.map_err(err)?;
            report_config_change(&app, &changed, json);
        }
    }
    Ok(0)
}

fn report_config_change(app: &AppName, changed: &paas::api::wire::ConfigChanged, json: bool) {
    if json {
        print_json(changed);
        return;
    }
    match &changed.release {
        None => out(format!("{app}: config unchanged, no new release")),
        Some(r) => out(format!("{app}: done, {}", r.version)),
    }
}
