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
    write_atomically(&private, pem.as_bytes(), true)?;
    let public = dir.join("public.pem");
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(|e| KeyError::Invalid {
            path: public.clone(),
            reason: e.to_string(),
        })?;
    write_atomically(&public, public_pem.as_bytes(), false)?;
    // Two processes creating keys at once: both read back the one that won the rename.
    let pem = std::fs::read_to_string(&private).map_err(io(&private))?;
    let on_disk = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Invalid {
        path: private.clone(),
        reason: e.to_string(),
    })?;
    drop(key);
    Ok((on_disk, true))
}

/// Writes to a uniquely named temporary file (mode 0600 when `private`), then renames it
/// into place: readers never see a partial file.
fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<(), KeyError> {
    let tmp = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn check_permissions(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(io(path))?
            .permissions()
            .mode()
            & 0o777;
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
            let mode = std::fs::metadata(dir.join("private.pem"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
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
