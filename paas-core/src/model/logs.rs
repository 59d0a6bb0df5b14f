//! Log lines and platform events.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

use super::*;

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
