//! Config values at rest: sealed with XChaCha20-Poly1305 under a key kept in a file next to
//! the database (mode 0600), so that a dump or a copy of the database alone is not a list of
//! secrets. See the crate docs for what this does and does not protect against.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use paas_core::{Config, Error, Result};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// First byte of every sealed blob: the format version.
const FORMAT_V1: u8 = 1;
/// First line of a key file.
const KEY_FILE_HEADER: &str = "paas-sqlite config key v1";

/// The key that seals config values. Its `Debug` never shows the key.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| {
        Error::unavailable(format!(
            "the operating system's random number generator failed: {e}"
        ))
        .with_backend("sqlite")
    })?;
    Ok(buf)
}

/// Where the sealed blob lives; authenticated with it, so a blob copied to another row does not
/// open.
pub(crate) enum Slot<'a> {
    /// `apps.config` of an app.
    Current(&'a str),
    /// `releases.config` of an app's release.
    Release(&'a str, u64),
    /// The key check value in `meta`.
    KeyCheck,
}

impl Slot<'_> {
    fn aad(&self) -> Vec<u8> {
        match self {
            Slot::Current(app) => format!("paas-sqlite/config/{app}/current").into_bytes(),
            Slot::Release(app, v) => format!("paas-sqlite/config/{app}/v{v}").into_bytes(),
            Slot::KeyCheck => b"paas-sqlite/key-check".to_vec(),
        }
    }
}

/// The plaintext of the key check value stored in `meta`.
pub(crate) const KEY_CHECK_PLAINTEXT: &[u8] = b"paas-sqlite key check";

impl Sealer {
    fn from_key(key: &[u8; KEY_LEN]) -> Self {
        Sealer {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// A sealer with a fresh random key that lives only in memory.
    pub(crate) fn ephemeral() -> Result<Self> {
        Ok(Self::from_key(&random_bytes::<KEY_LEN>()?))
    }

    /// Seals raw bytes: `0x01 || nonce(24) || ciphertext+tag`.
    pub(crate) fn seal_bytes(&self, slot: Slot<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let nonce = XNonce::from(nonce_bytes);
        let aad = slot.aad();
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                Error::internal("sealing a config snapshot failed").with_backend("sqlite")
            })?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens what [`Sealer::seal_bytes`] sealed for the same slot.
    pub(crate) fn open_bytes(&self, slot: Slot<'_>, sealed: &[u8]) -> Result<Vec<u8>> {
        let bad = || {
            Error::internal(
                "a sealed config snapshot does not open with this database's key \
                 (wrong key file, or the row was altered outside paas-sqlite)",
            )
            .with_backend("sqlite")
        };
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != FORMAT_V1 {
            return Err(bad());
        }
        let nonce_bytes: [u8; NONCE_LEN] =
            sealed[1..1 + NONCE_LEN].try_into().map_err(|_| bad())?;
        let nonce = XNonce::from(nonce_bytes);
        let aad = slot.aad();
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| bad())
    }

    /// Seals a config (as JSON).
    pub(crate) fn seal_config(&self, slot: Slot<'_>, config: &Config) -> Result<Vec<u8>> {
        // Serializing a map of validated strings cannot fail; the error never carries a value.
        let json = serde_json::to_vec(config).map_err(|_| {
            Error::internal("config snapshot could not be serialized").with_backend("sqlite")
        })?;
        self.seal_bytes(slot, &json)
    }

    /// Opens a sealed config. Errors never contain the plaintext.
    pub(crate) fn open_config(&self, slot: Slot<'_>, sealed: &[u8]) -> Result<Config> {
        let json = self.open_bytes(slot, sealed)?;
        // Deliberately drop serde's error: its message may quote part of a value.
        serde_json::from_slice(&json).map_err(|_| {
            Error::internal("a stored config snapshot is not valid (its content is not shown)")
                .with_backend("sqlite")
        })
    }
}

/// Reads the key file at `path`, or creates it (mode 0600, durably) when `create` allows and it
/// does not exist. Returns the sealer and whether the file was created now.
///
/// Blocking: call on a blocking thread.
pub(crate) fn load_or_create_key(path: &Path, create: bool) -> Result<(Sealer, bool)> {
    match read_key(path) {
        Ok(key) => return Ok((Sealer::from_key(&key), false)),
        Err(e) if e.kind() == paas_core::ErrorKind::NotFound && create => {}
        Err(e) => return Err(e),
    }
    let key = random_bytes::<KEY_LEN>()?;
    let tmp = tmp_path(path);
    write_key_file(&tmp, &key)?;
    // Publish atomically and without clobbering a key another process created meanwhile:
    // hard_link fails if `path` exists.
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&tmp);
            sync_parent_dir(path)?;
            Ok((Sealer::from_key(&key), true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            Ok((Sealer::from_key(&read_key(path)?), false))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io_err(e, "creating the config key file", path))
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn io_err(e: std::io::Error, doing: &str, path: &Path) -> Error {
    let kind = Error::from(std::io::Error::new(e.kind(), "")).kind();
    Error::new(kind, format!("{doing} {} failed", path.display()))
        .with_backend("sqlite")
        .with_source(e)
}

fn write_key_file(path: &Path, key: &[u8; KEY_LEN]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| io_err(e, "creating the config key file", path))?;
    // A stale temporary file from a crashed run may have other permissions: fix them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(e, "restricting the permissions of", path))?;
    }
    let hex = hex::encode(key);
    f.write_all(format!("{KEY_FILE_HEADER}\n{hex}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(e, "writing the config key file", path))
}

fn read_key(path: &Path) -> Result<[u8; KEY_LEN]> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::not_found(format!(
                "config key file {} does not exist",
                path.display()
            ))
            .with_backend("sqlite"))
        }
        Err(e) => return Err(io_err(e, "opening the config key file", path)),
    };
    #[cfg(unix)]
    if let Ok(meta) = f.metadata() {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "config key file is readable by group or others; it should be mode 0600"
            );
        }
    }
    let mut text = String::new();
    Read::by_ref(&mut f)
        .take(4096)
        .read_to_string(&mut text)
        .map_err(|e| io_err(e, "reading the config key file", path))?;
    let bad = || {
        Error::invalid(format!(
            "config key file {} is not valid: expected the line \"{KEY_FILE_HEADER}\" then {} hexadecimal digits",
            path.display(),
            KEY_LEN * 2
        ))
        .with_backend("sqlite")
    };
    let mut lines = text.lines();
    if lines.next() != Some(KEY_FILE_HEADER) {
        return Err(bad());
    }
    let digits = lines.next().ok_or_else(bad)?.trim();
    let mut key = [0u8; KEY_LEN];
    hex::decode_to_slice(digits, &mut key).map_err(|_| bad())?;
    Ok(key)
}

/// fsync the directory holding `path`, so that a newly created entry survives a power loss.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(e, "syncing the directory of", path))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use paas_core::{ConfigKey, ConfigValue};

    #[test]
    fn seal_roundtrip_and_binding() {
        let s = Sealer::ephemeral().unwrap();
        let mut c = Config::new();
        c.set(
            ConfigKey::new("TOKEN").unwrap(),
            ConfigValue::new("hunter2").unwrap(),
        );
        let blob = s.seal_config(Slot::Release("a", 3), &c).unwrap();
        assert!(!blob.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.open_config(Slot::Release("a", 3), &blob).unwrap(), c);
        // Bound to its slot.
        assert!(s.open_config(Slot::Release("a", 4), &blob).is_err());
        assert!(s.open_config(Slot::Current("a"), &blob).is_err());
        assert!(s.open_config(Slot::Release("b", 3), &blob).is_err());
        // Another key does not open it, and the error does not leak anything.
        let other = Sealer::ephemeral().unwrap();
        let e = other.open_config(Slot::Release("a", 3), &blob).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        // Tampering is detected.
        let mut t = blob.clone();
        let n = t.len() - 1;
        t[n] ^= 1;
        assert!(s.open_config(Slot::Release("a", 3), &t).is_err());
        assert!(s.open_config(Slot::Release("a", 3), &[1, 2, 3]).is_err());
        assert!(format!("{s:?}").contains("redacted"));
    }

    #[test]
    fn key_file_create_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.key");
        assert_eq!(
            load_or_create_key(&p, false).unwrap_err().kind(),
            paas_core::ErrorKind::NotFound
        );
        let (s1, created) = load_or_create_key(&p, true).unwrap();
        assert!(created);
        let (s2, created) = load_or_create_key(&p, true).unwrap();
        assert!(!created);
        let blob = s1.seal_bytes(Slot::KeyCheck, b"x").unwrap();
        assert_eq!(s2.open_bytes(Slot::KeyCheck, &blob).unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!tmp_path(&p).exists());
        std::fs::write(&p, "garbage\n").unwrap();
        let e = load_or_create_key(&p, true).unwrap_err();
        assert_eq!(e.kind(), paas_core::ErrorKind::InvalidInput);
        assert!(e.message().contains("hexadecimal"), "{e}");
    }
}
