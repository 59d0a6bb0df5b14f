//! Config: secret values, an app's environment, updates.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

use super::*;

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
