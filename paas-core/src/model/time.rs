//! Timestamps.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

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
