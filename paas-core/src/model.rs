//! The domain model: names, Procfiles, config, builds, releases, formations, instances, routes,
//! log lines and platform events.
//!
//! Types that carry user input validate at construction ([`AppName::new`], [`Procfile::parse`],
//! [`ConfigKey::new`]...) and cannot be built invalid, deserialization included.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `s`; the error names the rule that was broken.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                $check(&s)?;
                Ok($name(s))
            }
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_debug).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

fn check_app_name(s: &str) -> Result<()> {
    let rule = "app name must match ^[a-z][a-z0-9-]{0,29}$ (a DNS label: lowercase letter first, then lowercase letters, digits or '-', at most 30 characters, not ending in '-')";
    let bytes = s.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 30
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid app name \"{}\": {rule}",
            shown(s)
        )))
    }
}

fn check_process_type(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid process type \"{}\": must match ^[a-zA-Z0-9_-]+$ and be at most 63 characters",
            shown(s)
        )))
    }
}

fn check_config_key(s: &str) -> Result<()> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 256
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid config key \"{}\": must match ^[A-Za-z_][A-Za-z0-9_]*$ (at most 256 characters)",
            shown(s)
        )))
    }
}

fn check_domain(s: &str) -> Result<()> {
    let rule = "a hostname of dot-separated labels (letters, digits, '-', each 1-63 characters, not starting or ending with '-'), at most 253 characters, optionally starting with '*.' for a wildcard";
    let body = s.strip_prefix("*.").unwrap_or(s);
    let ok = !body.is_empty()
        && s.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok && s == s.to_ascii_lowercase() {
        Ok(())
    } else if ok {
        Err(Error::invalid(format!(
            "invalid domain \"{}\": must be lowercase",
            shown(s)
        )))
    } else {
        Err(Error::invalid(format!(
            "invalid domain \"{}\": {rule}",
            shown(s)
        )))
    }
}

fn check_build_id(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid build id \"{}\": must match ^[A-Za-z0-9_-]{{1,64}}$",
            shown(s)
        )))
    }
}

fn check_commit_id(s: &str) -> Result<()> {
    let ok = (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid commit id \"{}\": must be 4 to 64 hexadecimal digits",
            shown(s)
        )))
    }
}

/// Checks a git-style reference name given by a user (`main`, `refs/heads/main`, a commit id):
/// non-empty, at most 255 bytes, no `..`, no leading `-` or `/`, no control characters, spaces,
/// `~^:?*[\\`, no `@{`, no component starting with `.` or ending with `.lock`.
pub fn check_ref_name(s: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "invalid ref name \"{}\": {why}",
            shown(s)
        )))
    };
    if s.is_empty() || s.len() > 255 {
        return bad("must be 1 to 255 bytes");
    }
    if s.starts_with('-') {
        return bad("must not start with '-'");
    }
    if s.starts_with('/') || s.ends_with('/') || s.contains("//") {
        return bad("must not start or end with '/' or contain '//'");
    }
    if s.contains("..") {
        return bad("must not contain '..'");
    }
    if s.contains("@{") || s == "@" {
        return bad("must not contain '@{' or be '@'");
    }
    if s.chars()
        .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return bad("must not contain control characters, spaces or any of ~^:?*[\\");
    }
    if s.split('/')
        .any(|c| c.starts_with('.') || c.ends_with(".lock") || c.ends_with('.'))
    {
        return bad("no component may start with '.' or end with '.' or '.lock'");
    }
    Ok(())
}

/// Checks a relative path inside a source tree: non-empty, `/`-separated, not absolute, no
/// empty, `.` or `..` components, no `.git` component, no NUL or backslash.
pub fn check_relative_path(p: &str) -> Result<()> {
    let ok = !p.is_empty()
        && p.len() <= 4096
        && !p.starts_with('/')
        && !p.contains(['\0', '\\'])
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c != ".git");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid path \"{}\": must be relative, without '.', '..', '.git' or empty components",
            shown(p)
        )))
    }
}

validated_string!(
    /// An app's name: a DNS label, `^[a-z][a-z0-9-]{0,29}$` (and not ending in `-`). It ends up
    /// in container names, paths and hostnames, so it is validated once, here.
    AppName,
    check_app_name
);
validated_string!(
    /// A Procfile process type (`web`, `worker`...): `^[a-zA-Z0-9_-]+$`, at most 63 characters.
    ProcessType,
    check_process_type
);
validated_string!(
    /// A config var key: `^[A-Za-z_][A-Za-z0-9_]*$`.
    ConfigKey,
    check_config_key
);
validated_string!(
    /// A hostname routed to an app (`www.example.com`, or a wildcard `*.example.com`), lowercase.
    Domain,
    check_domain
);
validated_string!(
    /// A build's identifier, `^[A-Za-z0-9_-]{1,64}$`.
    BuildId,
    check_build_id
);
validated_string!(
    /// A commit id in hexadecimal (a full SHA-1/SHA-256, or another backend's hex id).
    CommitId,
    check_commit_id
);

impl ProcessType {
    /// The `web` process type, the one that receives HTTP traffic.
    pub fn web() -> Self {
        ProcessType("web".into())
    }
    /// The `run` process type of one-off processes (`app[run.0]` in logs).
    pub fn run() -> Self {
        ProcessType("run".into())
    }
    /// The `release` process type, run once per release before processes start.
    pub fn release() -> Self {
        ProcessType("release".into())
    }
    /// Whether this is `web`.
    pub fn is_web(&self) -> bool {
        self.0 == "web"
    }
    /// Whether this is `release`.
    pub fn is_release(&self) -> bool {
        self.0 == "release"
    }
}

impl Domain {
    /// Whether this domain matches `host` (exactly, or as a wildcard of one or more labels).
    pub fn matches(&self, host: &str) -> bool {
        match self.0.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            None => self.0.eq_ignore_ascii_case(host),
        }
    }
}

impl BuildId {
    /// A fresh, unique build id (time-ordered).
    pub fn generate() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        BuildId(format!("b{now:x}{:08x}", fastrand::u32(..)))
    }
}

// ---------------------------------------------------------------------------------------------
// Procfile

/// A parsed Procfile: ordered `type: command` entries with unique types.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Procfile {
    entries: BTreeMap<ProcessType, String>,
}

impl Procfile {
    /// Parses Procfile text: `type: command` lines, blank lines and `#` comments ignored.
    /// Duplicate types, empty commands, bad type names and lines without `:` are errors that
    /// give the line number. Never panics.
    pub fn parse(text: &str) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, command)) = line.split_once(':') else {
                return Err(Error::invalid(format!(
                    "Procfile line {n}: expected \"type: command\""
                )));
            };
            let name = name.trim();
            let ty = ProcessType::new(name)
                .map_err(|e| Error::invalid(format!("Procfile line {n}: {}", e.message())))?;
            let command = command.trim();
            if command.is_empty() {
                return Err(Error::invalid(format!(
                    "Procfile line {n}: process type \"{ty}\" has an empty command"
                )));
            }
            if command.contains('\0') {
                return Err(Error::invalid(format!(
                    "Procfile line {n}: command contains a NUL byte"
                )));
            }
            if entries.insert(ty.clone(), command.to_string()).is_some() {
                return Err(Error::invalid(format!(
                    "Procfile line {n}: duplicate process type \"{ty}\""
                )));
            }
        }
        Ok(Procfile { entries })
    }

    /// Builds a Procfile from entries; commands must be non-empty single lines.
    pub fn from_entries(entries: impl IntoIterator<Item = (ProcessType, String)>) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (ty, cmd) in entries {
            let cmd = cmd.trim().to_string();
            if cmd.is_empty() || cmd.contains(['\n', '\r', '\0']) {
                return Err(Error::invalid(format!(
                    "process type \"{ty}\": command must be a non-empty single line"
                )));
            }
            if map.insert(ty.clone(), cmd).is_some() {
                return Err(Error::invalid(format!("duplicate process type \"{ty}\"")));
            }
        }
        Ok(Procfile { entries: map })
    }

    /// Renders back to Procfile text (one `type: command` line each, sorted by type).
    pub fn render(&self) -> String {
        self.entries
            .iter()
            .map(|(t, c)| format!("{t}: {c}\n"))
            .collect()
    }

    /// The command of a process type.
    pub fn command(&self, ty: &ProcessType) -> Option<&str> {
        self.entries.get(ty).map(String::as_str)
    }

    /// All entries, sorted by type.
    pub fn entries(&self) -> impl Iterator<Item = (&ProcessType, &str)> {
        self.entries.iter().map(|(t, c)| (t, c.as_str()))
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries of `self` override those of `base` (Procfile over buildpack defaults).
    pub fn merged_over(&self, base: &Procfile) -> Procfile {
        let mut entries = base.entries.clone();
        entries.extend(self.entries.clone());
        Procfile { entries }
    }
}

impl fmt::Debug for Procfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter()).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Config

/// A config value. Values are secrets: `Debug` and `Display` print `<redacted>`; read the value
/// with [`ConfigValue::expose`] only where it is handed to the process.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ConfigValue(String);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ConfigValue::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl ConfigValue {
    /// The largest value, in bytes (as Heroku's 32 KB for all of an app's config).
    pub const MAX_BYTES: usize = 32 * 1024;

    /// Wraps a value. Values may be any string without a NUL byte, of at most
    /// [`MAX_BYTES`](Self::MAX_BYTES) bytes (an environment entry larger than the kernel's
    /// per-string limit would make every later process start fail).
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let v = value.into();
        if v.contains('\0') {
            return Err(Error::invalid("config value must not contain a NUL byte"));
        }
        if v.len() > Self::MAX_BYTES {
            return Err(Error::invalid(format!(
                "config value is {} bytes; the limit is {} bytes per value",
                v.len(),
                Self::MAX_BYTES
            )));
        }
        Ok(ConfigValue(v))
    }
    /// The secret value itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An app's environment: config var keys to secret values.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Config(BTreeMap<ConfigKey, ConfigValue>);

impl Config {
    /// An empty config.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets a var.
    pub fn set(&mut self, key: ConfigKey, value: ConfigValue) {
        self.0.insert(key, value);
    }
    /// Removes a var, returning whether it was there.
    pub fn unset(&mut self, key: &ConfigKey) -> bool {
        self.0.remove(key).is_some()
    }
    /// Reads a var.
    pub fn get(&self, key: &str) -> Option<&ConfigValue> {
        ConfigKey::new(key).ok().and_then(|k| self.0.get(&k))
    }
    /// The keys (never secret).
    pub fn keys(&self) -> impl Iterator<Item = &ConfigKey> {
        self.0.keys()
    }
    /// Key/value pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&ConfigKey, &ConfigValue)> {
        self.0.iter()
    }
    /// Number of vars.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no vars.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The largest config of an app, keys and values together, in bytes.
    pub const MAX_TOTAL_BYTES: usize = 64 * 1024;

    /// Bytes of every `KEY=VALUE` entry together.
    pub fn total_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|(k, v)| k.as_str().len() + 1 + v.expose().len())
            .sum()
    }

    /// Checks the whole config against [`MAX_TOTAL_BYTES`](Self::MAX_TOTAL_BYTES).
    pub fn check_size(&self) -> Result<()> {
        let total = self.total_bytes();
        if total > Self::MAX_TOTAL_BYTES {
            return Err(Error::invalid(format!(
                "config would hold {total} bytes; the limit is {} bytes for all of an app's vars",
                Self::MAX_TOTAL_BYTES
            )));
        }
        Ok(())
    }

    /// Applies an update: sets then unsets. Returns the keys that changed.
    pub fn apply(&mut self, update: &ConfigUpdate) -> Vec<ConfigKey> {
        let mut changed = Vec::new();
        for (k, v) in &update.set {
            if self.0.get(k) != Some(v) {
                changed.push(k.clone());
            }
            self.0.insert(k.clone(), v.clone());
        }
        for k in &update.unset {
            if self.0.remove(k).is_some() {
                changed.push(k.clone());
            }
        }
        changed
    }
    /// Environment pairs for a process.
    pub fn to_env(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| (k.to_string(), v.expose().to_string()))
            .collect()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl FromIterator<(ConfigKey, ConfigValue)> for Config {
    fn from_iter<I: IntoIterator<Item = (ConfigKey, ConfigValue)>>(iter: I) -> Self {
        Config(iter.into_iter().collect())
    }
}

/// A change to an app's config: vars to set, then keys to unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigUpdate {
    /// Vars to set.
    #[serde(default)]
    pub set: BTreeMap<ConfigKey, ConfigValue>,
    /// Keys to remove.
    #[serde(default)]
    pub unset: Vec<ConfigKey>,
}

impl ConfigUpdate {
    /// Parses `KEY=VALUE` pairs (the value may contain `=`); errors name the offending pair's key.
    pub fn parse_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut update = ConfigUpdate::default();
        for pair in pairs {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(Error::invalid(
                    "config pairs must look like KEY=VALUE (missing '=')",
                ));
            };
            update.set.insert(ConfigKey::new(k)?, ConfigValue::new(v)?);
        }
        Ok(update)
    }
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Time

/// Milliseconds since the Unix epoch. Displayed and sent on the wire as an RFC 3339 UTC string
/// with milliseconds (`2024-02-29T23:59:59.123Z`); reading also accepts any RFC 3339 instant
/// and, for records written by earlier versions, a number of milliseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
        )
    }
    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
    fn to_jiff(self) -> jiff::Timestamp {
        i64::try_from(self.0)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .unwrap_or(jiff::Timestamp::MAX)
    }
}

impl FromStr for Timestamp {
    type Err = Error;
    /// An RFC 3339 instant (`2024-02-29T23:59:59.123Z`, `2024-03-01T01:00:00+01:00`) at or
    /// after the Unix epoch; finer than milliseconds is truncated.
    fn from_str(s: &str) -> Result<Self> {
        let t: jiff::Timestamp = s
            .parse()
            .map_err(|e| Error::invalid(format!("\"{s}\" is not an RFC 3339 timestamp: {e}")))?;
        u64::try_from(t.as_millisecond())
            .map(Timestamp)
            .map_err(|_| Error::invalid(format!("timestamp \"{s}\" is before 1970")))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        static PRINTER: jiff::fmt::temporal::DateTimePrinter =
            jiff::fmt::temporal::DateTimePrinter::new().precision(Some(3));
        let mut s = String::with_capacity(24);
        PRINTER
            .print_timestamp(&self.to_jiff(), &mut s)
            .map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Millis(u64),
            Text(String),
        }
        match Wire::deserialize(d)? {
            Wire::Millis(ms) => Ok(Timestamp(ms)),
            Wire::Text(s) => s
                .parse()
                .map_err(|e: Error| serde::de::Error::custom(e.message())),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// ---------------------------------------------------------------------------------------------
// Apps, builds, releases

/// An app's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct App {
    /// Its name.
    pub name: AppName,
    /// When it was created.
    pub created_at: Timestamp,
}

impl App {
    /// A new app record created now.
    pub fn new(name: AppName) -> Self {
        App {
            name,
            created_at: Timestamp::now(),
        }
    }
}

/// What a build produced: something a scheduler can run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// An image reference or id (Docker), or another backend's handle (`memory://...`).
    pub image: String,
}

/// Source turned into a runnable artifact plus its process types. Builds never change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// Unique id.
    pub id: BuildId,
    /// The app it belongs to.
    pub app: AppName,
    /// The commit it was built from (absent for a deployed image).
    pub commit: Option<CommitId>,
    /// The runnable artifact.
    pub artifact: Artifact,
    /// Process types and their commands.
    pub procfile: Procfile,
    /// What built it (`dockerfile`, `buildpack:python`, `image`...).
    pub strategy: String,
    /// When it finished.
    pub created_at: Timestamp,
}

/// A release number, `vN`, N ≥ 1. Displayed and parsed as `v3` (`3` is accepted too).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version after this one.
    pub fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let digits = s.strip_prefix('v').unwrap_or(s);
        match digits.parse::<u64>() {
            Ok(n) if n > 0 && !digits.starts_with('+') => Ok(Version(n)),
            _ => Err(Error::invalid(format!(
                "invalid release version \"{}\": expected vN with N ≥ 1",
                shown(s)
            ))),
        }
    }
}

/// Whether a release's deploy went through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeployStatus {
    /// Created; its processes are being started.
    Pending,
    /// Its processes were healthy and it took traffic.
    Succeeded,
    /// It never took traffic; the reason says why.
    Failed(String),
    /// A state this version does not know (a newer server's), whatever its reason. Never made
    /// by the SDK itself.
    Unknown,
}

impl<'de> Deserialize<'de> for DeployStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            state: String,
            #[serde(default)]
            reason: Option<serde_json::Value>,
        }
        let w = Wire::deserialize(d)?;
        Ok(match w.state.as_str() {
            "pending" => DeployStatus::Pending,
            "succeeded" => DeployStatus::Succeeded,
            "failed" => DeployStatus::Failed(
                w.reason
                    .as_ref()
                    .and_then(|r| r.as_str())
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => DeployStatus::Unknown,
        })
    }
}

impl fmt::Display for DeployStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployStatus::Pending => f.write_str("pending"),
            DeployStatus::Succeeded => f.write_str("succeeded"),
            DeployStatus::Failed(r) => write!(f, "failed: {r}"),
            DeployStatus::Unknown => f.write_str("unknown"),
        }
    }
}

/// `vN` of an app: one build plus one config snapshot. Immutable but for its deploy status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The app.
    pub app: AppName,
    /// Its number.
    pub version: Version,
    /// The build it runs.
    pub build: Build,
    /// The config snapshot.
    pub config: Config,
    /// What made it (`Deploy 1a2b3c4`, `Set FOO config vars`, `Rollback to v1`).
    pub description: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Deploy status.
    pub status: DeployStatus,
}

/// A release to append; the store allocates the version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRelease {
    /// The app.
    pub app: AppName,
    /// The build (must have been stored with `put_build`).
    pub build: Build,
    /// The config snapshot; it also becomes the app's current config.
    pub config: Config,
    /// What made it.
    pub description: String,
}

/// How many processes of each type run. Mutable; not part of a release.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Formation(BTreeMap<ProcessType, u32>);

impl Formation {
    /// The most processes of one type.
    pub const MAX_PER_TYPE: u32 = 100;

    /// An empty formation.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the count of a type (checked against [`Formation::MAX_PER_TYPE`]).
    pub fn set(&mut self, ty: ProcessType, count: u32) -> Result<()> {
        if count > Self::MAX_PER_TYPE {
            return Err(Error::invalid(format!(
                "process type \"{ty}\": at most {} processes per type",
                Self::MAX_PER_TYPE
            )));
        }
        self.0.insert(ty, count);
        Ok(())
    }
    /// The count of a type (0 when absent).
    pub fn get(&self, ty: &ProcessType) -> u32 {
        self.0.get(ty).copied().unwrap_or(0)
    }
    /// Whether the type has an entry (even 0).
    pub fn contains(&self, ty: &ProcessType) -> bool {
        self.0.contains_key(ty)
    }
    /// Entries.
    pub fn iter(&self) -> impl Iterator<Item = (&ProcessType, u32)> {
        self.0.iter().map(|(t, n)| (t, *n))
    }
    /// Parses `TYPE=N` pairs.
    pub fn parse_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut f = Formation::new();
        for pair in pairs {
            let Some((t, n)) = pair.split_once('=') else {
                return Err(Error::invalid("scale pairs must look like TYPE=N"));
            };
            let ty = ProcessType::new(t)?;
            let n: u32 = n.parse().map_err(|_| {
                Error::invalid(format!(
                    "process type \"{ty}\": count must be a whole number from 0 to {}",
                    Self::MAX_PER_TYPE
                ))
            })?;
            f.set(ty, n)?;
        }
        Ok(f)
    }
}

impl fmt::Debug for Formation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl fmt::Display for Formation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(t, n)| format!("{t}={n}")).collect();
        f.write_str(&parts.join(" "))
    }
}

// ---------------------------------------------------------------------------------------------
// Instances and routes

/// The lifecycle state of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum InstanceState {
    /// Created, not yet known to be running.
    Starting,
    /// Its process runs.
    Running,
    /// Its process exited unexpectedly; a restart may be pending.
    Crashed,
    /// Being stopped.
    Stopping,
    /// Stopped.
    Stopped,
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "up",
            InstanceState::Crashed => "crashed",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// One running replica of one process type of one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    /// The backend's unique id for it (a container id, ...).
    pub id: String,
    /// The app.
    pub app: AppName,
    /// The release it runs.
    pub release: Version,
    /// Its process type.
    pub process_type: ProcessType,
    /// Its index within the type, from 1 (`web.1`).
    pub index: u32,
    /// Where it listens (web processes), reachable by the router.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "172.17.0.5:5000"))]
    pub address: Option<SocketAddr>,
    /// Lifecycle state.
    pub state: InstanceState,
    /// When it was started.
    pub started_at: Timestamp,
}

impl Instance {
    /// `web.1`-style name (Heroku's `DYNO`).
    pub fn name(&self) -> String {
        format!("{}.{}", self.process_type, self.index)
    }
}

/// An app's entry in the routing table: hostnames to the addresses of its healthy web processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The app.
    pub app: AppName,
    /// Hostnames (exact or wildcard) that reach it.
    pub hosts: Vec<Domain>,
    /// Healthy web process addresses.
    pub endpoints: Vec<SocketAddr>,
}

// ---------------------------------------------------------------------------------------------
// Logs and events

/// Where a log line came from. Apps can only produce [`LogSource::App`] lines: the source is
/// structured, never parsed from text, so app output cannot forge a platform line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// `app[web.1]`: a process's stdout/stderr.
    App {
        /// Process type.
        process_type: ProcessType,
        /// Index (0 for one-off runs: `app[run.0]`).
        index: u32,
    },
    /// `platform[build]`, `platform[deploy]`...: the platform's own lines.
    Platform(String),
    /// `router`: access lines.
    Router,
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogSource::App {
                process_type,
                index,
            } => write!(f, "app[{process_type}.{index}]"),
            LogSource::Platform(c) => write!(f, "platform[{c}]"),
            LogSource::Router => f.write_str("router"),
        }
    }
}

impl FromStr for LogSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("invalid log source \"{}\"", shown(s)));
        if s == "router" {
            return Ok(LogSource::Router);
        }
        if let Some(inner) = s
            .strip_prefix("platform[")
            .and_then(|r| r.strip_suffix(']'))
        {
            if !inner.is_empty()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Ok(LogSource::Platform(inner.to_string()));
            }
            return Err(bad());
        }
        if let Some(inner) = s.strip_prefix("app[").and_then(|r| r.strip_suffix(']')) {
            let (t, i) = inner.rsplit_once('.').ok_or_else(bad)?;
            return Ok(LogSource::App {
                process_type: ProcessType::new(t)?,
                index: i.parse().map_err(|_| bad())?,
            });
        }
        Err(bad())
    }
}

impl Serialize for LogSource {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for LogSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One log line: timestamp, app, source, text (one line, no line breaks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// When it was written.
    pub timestamp: Timestamp,
    /// The app.
    pub app: AppName,
    /// Who wrote it.
    pub source: LogSource,
    /// The text, without line breaks.
    pub text: String,
}

impl LogLine {
    /// A line stamped now. Line breaks and other control characters (but tab) in `text` are
    /// replaced by spaces, so one line can never pose as several.
    pub fn new(app: AppName, source: LogSource, text: impl AsRef<str>) -> Self {
        let text = text
            .as_ref()
            .trim_end_matches(['\r', '\n'])
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        LogLine {
            timestamp: Timestamp::now(),
            app,
            source,
            text,
        }
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.timestamp, self.source, self.text)
    }
}

/// What happened, for platform events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// An app was created.
    AppCreated,
    /// An app was destroyed.
    AppDestroyed,
    /// A build started.
    BuildStarted,
    /// A build succeeded.
    BuildSucceeded,
    /// A build failed.
    BuildFailed,
    /// A release was created.
    ReleaseCreated,
    /// The release phase ran.
    ReleasePhase,
    /// A rollout started.
    DeployStarted,
    /// A rollout finished: the release takes traffic.
    DeploySucceeded,
    /// A rollout failed: the previous release keeps serving.
    DeployFailed,
    /// Config changed.
    ConfigChanged,
    /// The formation changed.
    Scaled,
    /// The route table entry changed.
    RouteUpdated,
    /// An instance started.
    InstanceStarted,
    /// An instance stopped.
    InstanceStopped,
    /// An instance crashed.
    InstanceCrashed,
    /// An instance was restarted after a crash.
    InstanceRestarted,
    /// Domains changed.
    DomainsChanged,
}

/// A platform event: a step of the pipeline, for subscribers and the app's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlatformEvent {
    /// When.
    pub timestamp: Timestamp,
    /// The app.
    pub app: AppName,
    /// What.
    pub kind: EventKind,
    /// The release concerned, if any.
    pub release: Option<Version>,
    /// A human line (never secret).
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for ok in ["a", "my-app", "a1", "abcdefghijabcdefghijabcdefghij"] {
            AppName::new(ok).unwrap();
        }
        for bad in [
            "",
            "1a",
            "A",
            "a_b",
            "a-",
            "-a",
            "abcdefghijabcdefghijabcdefghijk",
            "a.b",
            "a/b",
            "ä",
        ] {
            let e = AppName::new(bad).unwrap_err();
            assert!(e.message().contains("^[a-z]"), "{e}");
        }
        assert!(serde_json::from_str::<AppName>("\"Bad\"").is_err());
    }

    #[test]
    fn procfile_parse_render() {
        let p = Procfile::parse("# c\nweb: ./server --port $PORT\n\nworker:  run.sh  \n").unwrap();
        assert_eq!(
            p.command(&ProcessType::web()),
            Some("./server --port $PORT")
        );
        assert_eq!(Procfile::parse(&p.render()).unwrap(), p);
        let e = Procfile::parse("web: a\nweb: b").unwrap_err();
        assert!(e.message().contains("line 2") && e.message().contains("duplicate"));
        let e = Procfile::parse("web:").unwrap_err();
        assert!(e.message().contains("line 1") && e.message().contains("empty"));
        let e = Procfile::parse("\nw eb: x").unwrap_err();
        assert!(e.message().contains("line 2"), "{e}");
        let e = Procfile::parse("web x").unwrap_err();
        assert!(e.message().contains("line 1"));
    }

    #[test]
    fn config_redacts() {
        let mut c = Config::new();
        c.set(
            ConfigKey::new("SECRET").unwrap(),
            ConfigValue::new("hunter2").unwrap(),
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", c.get("SECRET")).contains("hunter2"));
        assert_eq!(c.get("SECRET").unwrap().expose(), "hunter2");
        assert!(serde_json::to_string(&c).unwrap().contains("hunter2"));
        assert!(ConfigKey::new("1A").is_err());
        assert!(ConfigKey::new("A-B").is_err());
        ConfigKey::new("_A1").unwrap();
        let u = ConfigUpdate::parse_pairs(["A=b=c", "B="]).unwrap();
        assert_eq!(u.set.len(), 2);
        assert!(ConfigUpdate::parse_pairs(["A"]).is_err());
    }

    #[test]
    fn versions_and_time() {
        assert_eq!("v3".parse::<Version>().unwrap(), Version(3));
        assert_eq!("12".parse::<Version>().unwrap(), Version(12));
        for bad in ["v0", "v", "", "v-1", "x3", "v+3"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_709_251_199_123).to_string(),
            "2024-02-29T23:59:59.123Z"
        );
        let t = Timestamp(1_709_251_199_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2024-02-29T23:59:59.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        // Records written before timestamps were strings.
        assert_eq!(
            serde_json::from_str::<Timestamp>("1709251199123").unwrap(),
            t
        );
        assert_eq!(
            "2024-03-01T00:59:59.123+01:00"
                .parse::<Timestamp>()
                .unwrap(),
            t
        );
        assert!("yesterday".parse::<Timestamp>().is_err());
        assert!("1969-12-31T23:59:59Z".parse::<Timestamp>().is_err());
    }

    #[test]
    fn domains_and_sources() {
        let d = Domain::new("*.example.com").unwrap();
        assert!(d.matches("a.example.com"));
        assert!(d.matches("a.b.example.com"));
        assert!(!d.matches("example.com"));
        assert!(!d.matches("aexample.com"));
        assert!(Domain::new("Example.com").is_err());
        assert!(Domain::new("a..b").is_err());
        assert!(Domain::new("-a.b").is_err());
        for s in ["app[web.1]", "platform[build]", "router"] {
            assert_eq!(s.parse::<LogSource>().unwrap().to_string(), s);
        }
        let l = LogLine::new(
            AppName::new("a").unwrap(),
            LogSource::Router,
            "x\nplatform[build]: y\n",
        );
        assert!(!l.text.contains('\n'));
    }

    #[test]
    fn formation_pairs() {
        let f = Formation::parse_pairs(["web=3", "worker=0"]).unwrap();
        assert_eq!(f.get(&ProcessType::web()), 3);
        assert!(Formation::parse_pairs(["web=-1"]).is_err());
        assert!(Formation::parse_pairs(["web=1000"]).is_err());
        assert!(Formation::parse_pairs(["we b=1"]).is_err());
    }
}
