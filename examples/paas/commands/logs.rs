//! `logs`.

use crate::*;

/// logs.
#[derive(Debug, Subcommand)]
pub(crate) enum LogsCommand {
    /// Show the app's logs (build, app, router and platform lines).
    #[command(name = "logs")]
    Logs {
        /// How many past lines.
        #[arg(short = 'n', long = "num", default_value_t = 100)]
        num: u32,
        /// Keep streaming new lines until interrupted.
        #[arg(short = 't', long = "tail")]
        tail: bool,
    },
}

pub(crate) async fn run(cx: &Cx, command: LogsCommand) -> CliResult<i32> {
    let (api, json, app_flag) = (&cx.api, cx.json, cx.app_flag.as_deref());
    let err = |e| api_error(api, e);
    match command {
        LogsCommand::Logs { num, tail } => {
            let app = resolve_app(app_flag)?;
            let query = LogsQuery {
                lines: Some(num as usize),
                follow: Some(tail),
            };
            let mut lines = api.logs(&app, &query).await.map_err(err)?;
            while let Some(line) = lines.next().await {
                let line = line.map_err(err)?;
                if json {
                    out_json(&serde_json::to_string(&line).unwrap_or_default());
                } else {
                    out(line.to_string());
                }
            }
            if tail {
                return Err(CliError::new(
                    "the log stream ended: paasd closed the connection",
                ));
            }
        }
    }
    Ok(0)
}
