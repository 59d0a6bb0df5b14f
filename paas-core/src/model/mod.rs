//! The domain model: names, Procfiles, config, builds, releases, formations, instances, routes,
//! log lines and platform events.
//!
//! Types that carry user input validate at construction ([`AppName::new`], [`Procfile::parse`],
//! [`ConfigKey::new`]...) and cannot be built invalid, deserialization included.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

mod config;
mod instance;
mod logs;
mod procfile;
mod release;
mod time;

pub use config::*;
pub use instance::*;
pub use logs::*;
pub use procfile::*;
pub use release::*;
pub use time::*;

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

fn check_health_path(path: &str) -> Result<()> {
    let ok =
        path.starts_with('/') && path.len() <= 1024 && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "a health check path must start with '/' and hold visible ASCII characters only (no spaces), at most 1024 of them",
        ))
    }
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
    /// The path of an HTTP health check (`/up`): it starts with `/` and holds visible ASCII
    /// characters only (no spaces), at most 1024 of them.
    HealthPath,
    check_health_path
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
