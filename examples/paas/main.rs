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

mod commands;

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
    #[command(flatten)]
    Apps(commands::apps::AppsCommand),
    #[command(flatten)]
    Config(commands::config::ConfigCommand),
    #[command(flatten)]
    Releases(commands::releases::ReleasesCommand),
    #[command(flatten)]
    Ps(commands::ps::PsCommand),
    #[command(flatten)]
    Logs(commands::logs::LogsCommand),
    #[command(flatten)]
    Domains(commands::domains::DomainsCommand),
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
    let cx = Cx {
        base: api.base_url().to_string(),
        api,
        json: cli.json,
        app_flag: cli.app,
    };
    match cli.command {
        Command::Apps(c) => commands::apps::run(&cx, c).await,
        Command::Config(c) => commands::config::run(&cx, c).await,
        Command::Releases(c) => commands::releases::run(&cx, c).await,
        Command::Ps(c) => commands::ps::run(&cx, c).await,
        Command::Logs(c) => commands::logs::run(&cx, c).await,
        Command::Domains(c) => commands::domains::run(&cx, c).await,
    }
}

/// What every command needs.
pub(crate) struct Cx {
    /// The API client.
    pub(crate) api: Client,
    /// The API's base URL.
    pub(crate) base: String,
    /// `--json`.
    pub(crate) json: bool,
    /// `-a APP`.
    pub(crate) app_flag: Option<String>,
}

/// With `--json`, prints `v` as JSON; otherwise the text `render` makes of it.
fn show<T: Serialize>(json: bool, v: &T, render: impl FnOnce(&T) -> String) {
    if json {
        print_json(v);
    } else {
        out(render(v));
    }
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
