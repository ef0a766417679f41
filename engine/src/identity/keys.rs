//! Key files: `private.pem` (PKCS#8, mode 0600, written atomically) and `public.pem`
//! (SubjectPublicKeyInfo) in the identity directory. Created on first start, reused after.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot use the identity directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an Ed25519 PKCS#8 PEM private key: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the key pair from `dir`, creating it (and `dir`) when absent. With `recreate`,
/// replaces an existing pair. Returns the key and whether it was created now.
pub fn load_or_create(dir: &Path, recreate: bool) -> Result<(SigningKey, bool), KeyError> {
    let private = dir.join("private.pem");
    if private.exists() && !recreate {
        check_permissions(&private)?;
        let pem = std::fs::read_to_string(&private).map_err(io(&private))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Invalid {
            path: private.clone(),
            reason: e.to_string(),
        })?;
        return Ok((key, false));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| KeyError::Invalid {
            path: private.clone(),
            reason: e.to_string(),
        })?;
    let created = if recreate {
        write_atomically(&private, pem.as_bytes(), true)?;
        true
    } else {
        // Processes starting together on a fresh directory (an ingress and its workers):
        // the first key written wins and every one of them uses it.
        write_once(&private, pem.as_bytes())?
    };
    drop(key);
    let pem = std::fs::read_to_string(&private).map_err(io(&private))?;
    let on_disk = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Invalid {
        path: private.clone(),
        reason: e.to_string(),
    })?;
    let public = dir.join("public.pem");
    let public_pem = on_disk
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(|e| KeyError::Invalid {
            path: public.clone(),
            reason: e.to_string(),
        })?;
    write_atomically(&public, public_pem.as_bytes(), false)?;
    Ok((on_disk, created))
}

/// Writes a private file complete under a temporary name, then links it into place only if
/// nothing is there yet. True when this call's file is the one in place.
fn write_once(path: &Path, bytes: &[u8]) -> Result<bool, KeyError> {
    let tmp = temporary(path);
    write_new(&tmp, bytes, true)?;
    let placed = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links: the last rename wins instead.
        Err(_) => std::fs::rename(&tmp, path).map(|_| true).map_err(io(path)),
    };
    let _ = std::fs::remove_file(&tmp);
    placed
}

fn temporary(path: &Path) -> PathBuf {
    path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Writes to a uniquely named temporary file (mode 0600 when `private`), then renames it
/// into place: readers never see a partial file.
fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<(), KeyError> {
    let tmp = temporary(path);
    write_new(&tmp, bytes, private)?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The permission bits of `path` (`0o600`: only its owner reads and writes it).
#[cfg(unix)]
pub fn file_mode(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

/// Refuses a private-key file other users can read or write (any group or other bit set).
pub fn check_permissions(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        let mode = file_mode(path).map_err(io(path))?;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes starting at once on a fresh directory all end up with one key.
    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        for _ in 0..20 {
            let dir =
                std::env::temp_dir().join(format!("bindu-keys-{}", uuid::Uuid::new_v4().simple()));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let dir = dir.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        load_or_create(&dir, false).unwrap()
                    })
                })
                .collect();
            let got: Vec<(SigningKey, bool)> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();
            for (key, _) in &got {
                assert_eq!(key.to_bytes(), got[0].0.to_bytes(), "one key for all");
            }
            assert_eq!(got.iter().filter(|(_, created)| *created).count(), 1);
            let leftovers = std::fs::read_dir(&dir)
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_string_lossy().contains(".tmp-")
                })
                .count();
            assert_eq!(leftovers, 0, "no temporary files left behind");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn created_once_then_reused_with_private_mode() {
        let dir =
            std::env::temp_dir().join(format!("bindu-keys-{}", uuid::Uuid::new_v4().simple()));
        let (a, created) = load_or_create(&dir, false).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&dir, false).unwrap();
        assert!(!created);
        assert_eq!(a.to_bytes(), b.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(file_mode(&dir.join("private.pem")).unwrap(), 0o600);
            std::fs::set_permissions(
                dir.join("private.pem"),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
            assert!(matches!(
                load_or_create(&dir, false),
                Err(KeyError::Permissions { .. })
            ));
        }
        let (c, created) = load_or_create(&dir, true).unwrap();
        assert!(created);
        assert_ne!(c.to_bytes(), a.to_bytes());
        assert!(std::fs::read_to_string(dir.join("public.pem"))
            .unwrap()
            .contains("BEGIN PUBLIC KEY"));
        std::fs::remove_dir_all(dir).ok();
    }
}
