//! `paas`: the Heroku-like command line client of the example platform daemon (`paasd`).
//!
//! ```text
//! export PAAS_URL=http://127.0.0.1:7070 PAAS_TOKEN=...
//! paas apps:create myapp        # inside a git repository: also adds the `paas` remote
//! git push paas main            # builds and deploys
//! paas config:set GREETING=hi   # a new release, rolled out without downtime
//! paas ps:scale web=3
//! paas logs -t
//! ```
//!
//! It reads `PAAS_URL` (default `http://127.0.0.1:7070`) and `PAAS_TOKEN`. Commands that act on
//! an app take `-a/--app APP`; without it the app is taken from the git remote named `paas` of
//! the repository in the current directory (`PAAS_URL/APP.git`). Output is human-readable;
//! `--json` prints the API's JSON instead. Errors print one `error: ...` line on stderr and exit
//! with status 1; `run` exits with the status of the remote command. Long operations print
//! their progress on stderr as it arrives.
//!
//! Git credentials: `apps:create` and `git:remote` configure, in the repository's own
//! `.git/config`, a credential helper for `PAAS_URL` that answers with the token taken from the
//! `PAAS_TOKEN` environment variable at push time, so the token itself is never written to disk.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use futures::StreamExt;
use paas::api::wire::{AppInfo, ConfigPatch, DeployBody, LogsQuery, PageRequest, ReleaseView};
use paas::api::{json_terminal_safe, redact_url, terminal_safe, Client, Operation, Update};
use paas::core::{
    AppName, ConfigKey, ConfigUpdate, DeployStatus, Domain, ErrorKind, Formation, Instance,
    OutputStream, ProcessType, Version,
};
use serde::Serialize;

/// The name of the git remote the CLI adds and reads the app from.
const REMOTE: &str = "paas";
/// The user name git sends with the token (the daemon accepts any).
const GIT_USER: &str = "paas";

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Debug, Parser)]
#[command(
    name = "paas",
    version,
    about = "Command line client of the paas platform daemon (paasd)",
    after_help = "Environment: PAAS_URL (default http://127.0.0.1:7070), PAAS_TOKEN (the API token), PAAS_APP (default app).\nWithout -a, the app is read from the git remote named `paas` of the current repository."
)]
struct Cli {
    /// The app to act on (default: the git remote named `paas` of the current repository).
    #[arg(short = 'a', long = "app", global = true, env = "PAAS_APP")]
    app: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// The daemon's API URL.
    #[arg(
        long = "url",
        global = true,
        env = "PAAS_URL",
        default_value = "http://127.0.0.1:7070"
    )]
    url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Add (or update) the `paas` git remote of the current repository and its credential.
    #[command(name = "git:remote")]
    GitRemote,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A failure of the CLI: one line for the user.
#[derive(Debug)]
struct CliError(String);

impl CliError {
    fn new(msg: impl Into<String>) -> Self {
        CliError(msg.into())
    }
}

impl From<paas::core::Error> for CliError {
    fn from(e: paas::core::Error) -> Self {
        CliError(e.message().to_string())
    }
}

type CliResult<T> = Result<T, CliError>;

// ---------------------------------------------------------------------------------------------
// Output helpers

/// Writes a line to stdout; a closed pipe (`paas logs | head`) ends the program quietly.
fn out(line: impl AsRef<str>) {
    write_line(&terminal_safe(line.as_ref()));
}

/// Writes a line of JSON to stdout (characters that would drive a terminal as `\uXXXX`).
fn out_json(json: &str) {
    write_line(&json_terminal_safe(json));
}

fn write_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|_| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Writes a one-off run's output as it came (the user's own command, as `heroku run` and ssh
/// do), flushing it.
fn out_raw(stream: OutputStream, text: &str) {
    let res = match stream {
        OutputStream::Stdout => {
            let mut s = std::io::stdout().lock();
            s.write_all(text.as_bytes()).and_then(|_| s.flush())
        }
        OutputStream::Stderr => {
            let mut s = std::io::stderr().lock();
            s.write_all(text.as_bytes()).and_then(|_| s.flush())
        }
    };
    if res.is_err() {
        std::process::exit(0);
    }
}

/// A progress or status line, on stderr.
/// Text from the server (build output, messages) never drives the terminal: see
/// [`terminal_safe`].
fn note(line: impl AsRef<str>) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", terminal_safe(line.as_ref()));
}

fn print_json<T: Serialize + ?Sized>(v: &T) {
    out_json(&serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Renders rows as left-aligned columns under `headers`.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let render = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] + 2 - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        line.trim_end().to_string()
    };
    let mut lines = vec![render(headers.to_vec())];
    lines.push(render(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        lines.push(render(row.iter().map(String::as_str).collect()));
    }
    lines.join("\n")
}

/// `Key:   value` lines with aligned values.
fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    pairs
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `A`, `A and B`, `A, B and C`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// argv as a shell would need it typed (for display only: nothing is run by a shell here).
fn shell_display(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn status_word(s: &DeployStatus) -> &'static str {
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

// ---------------------------------------------------------------------------------------------
// Validation of user input (nothing is sent when it fails)

fn parse_app(s: &str) -> CliResult<AppName> {
    Ok(AppName::new(s)?)
}

fn parse_version(s: &str) -> CliResult<Version> {
    Ok(s.parse::<Version>()?)
}

/// Validates `KEY=VALUE` pairs with paas-core's rules and returns the API patch.
fn config_set_patch(pairs: &[String]) -> CliResult<ConfigPatch> {
    let update = ConfigUpdate::parse_pairs(pairs.iter().map(String::as_str))?;
    let set = update
        .set
        .iter()
        .map(|(k, v)| (k.to_string(), v.expose().to_string()))
        .collect::<BTreeMap<_, _>>();
    Ok(ConfigPatch {
        set,
        unset: Vec::new(),
    })
}

/// Validates keys with paas-core's rules and returns the API patch.
fn config_unset_patch(keys: &[String]) -> CliResult<ConfigPatch> {
    let mut unset = Vec::new();
    for k in keys {
        let key = ConfigKey::new(k.as_str())?;
        if !unset.contains(&key.to_string()) {
            unset.push(key.to_string());
        }
    }
    Ok(ConfigPatch {
        set: BTreeMap::new(),
        unset,
    })
}

/// Validates `TYPE=N` pairs with paas-core's rules.
fn scale_formation(pairs: &[String]) -> CliResult<Formation> {
    Ok(Formation::parse_pairs(pairs.iter().map(String::as_str))?)
}

fn parse_domain(s: &str) -> CliResult<Domain> {
    Ok(Domain::new(
        s.trim().trim_end_matches('.').to_ascii_lowercase(),
    )?)
}

/// The app named by a git remote URL: the last path segment without `.git`.
fn app_from_remote_url(url: &str) -> CliResult<AppName> {
    let trimmed = url.trim().trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or("");
    let name = last.strip_suffix(".git").unwrap_or(last);
    AppName::new(name).map_err(|e| {
        CliError::new(format!(
            "the git remote `{REMOTE}` ({}) does not name an app: {}",
            redact_url(url),
            e.message()
        ))
    })
}

/// The client of `PAAS_URL` (`http://` or `https://`, without credentials) with the token of
/// `PAAS_TOKEN`.
fn client(url: &str) -> CliResult<Client> {
    let client = Client::new(url).map_err(|e| {
        CliError::new(format!(
            "PAAS_URL: {} (put the token in PAAS_TOKEN)",
            e.message()
        ))
    })?;
    Ok(match std::env::var("PAAS_TOKEN") {
        Ok(t) => client.with_token(t),
        Err(_) => client,
    })
}

/// A failure of an API call, with a hint for the usual mistakes.
fn api_error(client: &Client, e: paas::core::Error) -> CliError {
    match e.kind() {
        ErrorKind::Unauthenticated if !client.has_token() => CliError::new(
            "unauthorized (401): PAAS_TOKEN is not set; export PAAS_TOKEN=<the token paasd printed or was started with>",
        ),
        ErrorKind::Unauthenticated => {
            CliError::new("unauthorized (401): the token in PAAS_TOKEN is wrong")
        }
        ErrorKind::Unavailable if e.message().starts_with("cannot reach") => CliError::new(format!(
            "{} (is paasd running? is PAAS_URL right?)",
            e.message()
        )),
        _ => CliError::from(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Git

fn git(args: &[&str]) -> CliResult<std::process::Output> {
    std::process::Command::new("git")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CliError::new(format!("could not run git: {e}")))
}

fn git_ok(args: &[&str]) -> CliResult<()> {
    let o = git(args)?;
    if o.status.success() {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&o.stderr).trim()
        )))
    }
}

fn in_git_repo() -> bool {
    git(&["rev-parse", "--git-dir"])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn remote_url() -> Option<String> {
    let o = git(&["remote", "get-url", REMOTE]).ok()?;
    if !o.status.success() {
        return None;
    }
    let url = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (!url.is_empty()).then_some(url)
}

/// The credential helper: answers `get` with the token read from `PAAS_TOKEN` at push time.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get || return 0; test -n \"$PAAS_TOKEN\" || return 0; echo username=paas; echo \"password=$PAAS_TOKEN\"; }; f";

/// Adds or updates the `paas` remote to `BASE/APP.git` and configures the credential helper
/// for `BASE` in the repository's config. Returns a line describing what changed.
fn setup_git_remote(base: &str, app: &AppName) -> CliResult<String> {
    let url = format!("{base}/{app}.git");
    let message = match remote_url() {
        Some(existing) if existing == url => format!("Git remote {REMOTE} is {url}"),
        Some(_) => {
            git_ok(&["remote", "set-url", REMOTE, &url])?;
            format!("Git remote {REMOTE} updated to {url}")
        }
        None => {
            git_ok(&["remote", "add", REMOTE, &url])?;
            format!("Git remote {REMOTE} added: {url}")
        }
    };
    let helper_key = format!("credential.{base}.helper");
    // Replace our entries; an empty value first resets helpers configured globally, so no
    // other helper (a `store`) sees or keeps the token.
    let _ = git(&["config", "--local", "--unset-all", &helper_key]);
    git_ok(&["config", "--local", "--add", &helper_key, ""])?;
    git_ok(&["config", "--local", "--add", &helper_key, CREDENTIAL_HELPER])?;
    git_ok(&[
        "config",
        "--local",
        &format!("credential.{base}.username"),
        GIT_USER,
    ])?;
    Ok(message)
}

/// The app of the command: `-a`, or else the `paas` git remote.
fn resolve_app(flag: Option<&str>) -> CliResult<AppName> {
    if let Some(a) = flag {
        return parse_app(a);
    }
    match remote_url() {
        Some(url) => app_from_remote_url(&url),
        None => Err(CliError::new(format!(
            "no app given: use -a APP, or run inside a git repository with a `{REMOTE}` remote (see `paas git:remote -a APP`)"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Long operations

/// Prints an operation's progress on stderr (and a one-off run's output as it came) and
/// returns its result.
async fn follow<T: Unpin>(op: Operation<T>) -> paas::core::Result<T> {
    op.finish(|u| match u {
        Update::Progress(line) => note(line),
        Update::Output { stream, text } => out_raw(stream, &text),
        _ => {}
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Commands

async fn run(cli: Cli) -> CliResult<i32> {
    let api = client(&cli.url)?;
    let base = api.base_url().to_string();
    let json = cli.json;
    let app_flag = cli.app.as_deref();
    let err = |e| api_error(&api, e);

    match cli.command {
        Command::Apps => {
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
        Command::AppsCreate { name } => {
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
                let msg = setup_git_remote(&base, &name)?;
                if json {
                    note(msg);
                } else {
                    out(msg);
                }
            }
        }
        Command::AppsInfo => {
            let app = resolve_app(app_flag)?;
            let info = api.app(&app).await.map_err(err)?;
            show(json, &info, render_app_info);
        }
        Command::AppsDestroy { name, confirm } => {
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
        Command::Config => {
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
        Command::ConfigGet { key } => {
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
        Command::ConfigSet { pairs } => {
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
        Command::ConfigUnset { keys } => {
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
        Command::Releases { num } => {
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
        Command::ReleasesInfo { version } => {
            let version = parse_version(&version)?;
            let app = resolve_app(app_flag)?;
            let r = api.release(&app, version).await.map_err(err)?;
            show(json, &r, render_release);
        }
        Command::Rollback { version } => {
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
        Command::Deploy { git_ref, image } => {
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
        Command::Ps => {
            let app = resolve_app(app_flag)?;
            let instances = api.ps(&app).await.map_err(err)?;
            show(json, &instances, |i| render_ps(&app, i.clone()));
        }
        Command::PsScale { pairs } => {
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
        Command::PsRestart { process_type } => {
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
        Command::Logs { num, tail } => {
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
        Command::Run { command } => {
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
        Command::Domains => {
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
        Command::DomainsAdd { host } => {
            let host = parse_domain(&host)?;
            let app = resolve_app(app_flag)?;
            let added = api.add_domain(&app, &host).await.map_err(err)?;
            if json {
                print_json(&serde_json::json!({ "host": added }));
            } else {
                out(format!("Adding {host} to {app}... done"));
            }
        }
        Command::DomainsRemove { host } => {
            let host = parse_domain(&host)?;
            let app = resolve_app(app_flag)?;
            api.remove_domain(&app, &host).await.map_err(err)?;
            if json {
                print_json(&serde_json::json!({"removed": host}));
            } else {
                out(format!("Removing {host} from {app}... done"));
            }
        }
        Command::GitRemote => {
            let app = resolve_app(app_flag)?;
            if !in_git_repo() {
                return Err(CliError::new(
                    "not inside a git repository (run `git init` first)",
                ));
            }
            // Check the app exists (and the token works) before touching the repository.
            api.app(&app).await.map_err(err)?;
            let msg = setup_git_remote(&base, &app)?;
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

/// With `--json`, prints `v` as JSON; otherwise the text `render` makes of it.
fn show<T: Serialize>(json: bool, v: &T, render: impl FnOnce(&T) -> String) {
    if json {
        print_json(v);
    } else {
        out(render(v));
    }
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

fn render_formation(f: &Formation) -> String {
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors print clap's
            // `error: ...` (with a usage hint) and exit 1 like every other error.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli).await {
        Ok(code) => {
            // Exit codes outside 0..=255 (a negative code) still mean failure.
            let code = u8::try_from(code).unwrap_or(1);
            ExitCode::from(code)
        }
        Err(CliError(msg)) => {
            note(format!("error: {msg}"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_name_apps() {
        assert_eq!(
            app_from_remote_url("http://127.0.0.1:7070/my-app.git")
                .unwrap()
                .as_str(),
            "my-app"
        );
        assert_eq!(
            app_from_remote_url("http://x:tok@h:1/a1.git/")
                .unwrap()
                .as_str(),
            "a1"
        );
        let e = app_from_remote_url("http://x:secret@h/Bad.git").unwrap_err();
        assert!(
            e.0.contains("app name") && !e.0.contains("secret"),
            "{}",
            e.0
        );
    }

    #[test]
    fn input_is_validated_locally() {
        assert!(parse_app("Bad_Name").unwrap_err().0.contains("^[a-z]"));
        assert!(config_set_patch(&["1X=y".into()])
            .unwrap_err()
            .0
            .contains("config key"));
        assert!(config_set_patch(&["NOEQUALS".into()]).is_err());
        let p = config_set_patch(&["A=b=c".into(), "B=".into()]).unwrap();
        assert_eq!(p.set["A"], "b=c");
        assert_eq!(p.set["B"], "");
        assert!(config_unset_patch(&["A-B".into()]).is_err());
        assert!(scale_formation(&["web=x".into()]).is_err());
        assert!(scale_formation(&["web=101".into()]).is_err());
        assert_eq!(
            scale_formation(&["web=3".into()]).unwrap().to_string(),
            "web=3"
        );
        assert!(parse_version("v0").is_err());
        assert_eq!(parse_version("v3").unwrap(), Version(3));
        assert_eq!(
            parse_domain("WWW.Example.com").unwrap().as_str(),
            "www.example.com"
        );
        assert!(parse_domain("a..b").is_err());
    }

    #[test]
    fn urls_and_formatting() {
        assert_eq!(client("http://h:1/").unwrap().base_url(), "http://h:1");
        assert!(client("https://h").is_ok());
        assert!(client("ftp://h").is_err());
        assert!(client("http://u:p@h").is_err());
        assert_eq!(redact_url("http://u:p@h:1/a.git"), "http://h:1/a.git");
        assert_eq!(
            and_list(&["A".into(), "B".into(), "C".into()]),
            "A, B and C"
        );
        assert_eq!(
            shell_display(&["sh".into(), "-c".into(), "echo 'hi' $X".into()]),
            r#"sh -c 'echo '\''hi'\'' $X'"#
        );
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\n---  --\nxxx  y");
        assert!(Cli::try_parse_from(["paas", "run", "--", "sh", "-c", "exit 3"]).is_ok());
        assert!(Cli::try_parse_from(["paas", "apps:destroy", "x", "--confirm", "x"]).is_ok());
        assert!(Cli::try_parse_from(["paas", "logs", "-n", "5", "-t", "-a", "x"]).is_ok());
    }
}
