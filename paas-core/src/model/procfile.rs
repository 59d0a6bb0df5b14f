//! Procfiles: process types and their commands.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::*;

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
