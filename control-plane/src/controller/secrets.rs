//! `${file:PATH}` secrets: the lookup the catalog is loaded with, which reads
//! them (relative to the catalog's directory) and remembers what each held,
//! so that the controller can poll them and reload when one changes
//! (Kubernetes Secrets and Vault agents rotate them in place, or through a
//! symlink swap that directory watches see inconsistently).
//!
//! What is remembered of a file is a digest, never its content; nothing here
//! logs or formats a value.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::catalog::{self, Lookup, Unreadable};

/// A secret file and a digest of what it held when read (or of how it could
/// not be read: a missing file is watched too, for a `:-default`).
pub type SecretFile = (PathBuf, [u8; 32]);

/// Looks names up for [`catalog::load_with`]: `file:PATH` in the file, any
/// other name in the environment.
pub struct SecretFiles {
    base_dir: PathBuf,
    read: Mutex<BTreeMap<PathBuf, [u8; 32]>>,
}

impl SecretFiles {
    /// Relative paths are taken from `base_dir`, the catalog's directory
    /// (made absolute, so that errors and the log name files plainly).
    pub fn new(base_dir: &Path) -> Self {
        let base = if base_dir.as_os_str().is_empty() { Path::new(".") } else { base_dir };
        SecretFiles { base_dir: std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf()), read: Mutex::default() }
    }

    /// The value of `${name}`: a variable of the process's environment, or
    /// for `file:PATH` the file's content (the catalog trims its trailing
    /// newlines).
    pub fn lookup(&self, name: &str) -> Lookup {
        let Some(file) = name.strip_prefix(catalog::FILE_PREFIX) else {
            return Ok(std::env::var(name).ok());
        };
        let path = self.base_dir.join(file);
        let read = std::fs::read(&path);
        if let Ok(mut seen) = self.read.lock() {
            seen.insert(path.clone(), state_of(&read));
        }
        let bytes = read.map_err(|e| Unreadable {
            reason: format!("cannot read secret file {}: {e}", path.display()),
            absent: e.kind() == io::ErrorKind::NotFound,
        })?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Unreadable { reason: format!("secret file {} is not UTF-8 text", path.display()), absent: false })
    }

    /// Every file looked up, in order of path, with what it held.
    pub fn into_read(self) -> Vec<SecretFile> {
        self.read.into_inner().unwrap_or_default().into_iter().collect()
    }
}

/// What `files` hold now, in the same form [`SecretFiles::into_read`] gives.
pub async fn read_again(files: &[SecretFile]) -> Vec<SecretFile> {
    let mut now = Vec::with_capacity(files.len());
    for (path, _) in files {
        now.push((path.clone(), state_of(&tokio::fs::read(path).await)));
    }
    now
}

/// A digest of what a file held, or of the kind of error reading it gave.
fn state_of(read: &io::Result<Vec<u8>>) -> [u8; 32] {
    match read {
        Ok(bytes) => Sha256::digest(bytes).into(),
        Err(e) => Sha256::digest(format!("unreadable: {:?}", e.kind()).as_bytes()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcp-secrets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn remembers_the_files_read_and_sees_them_change() {
        let dir = scratch("watch");
        std::fs::write(dir.join("key"), "one\n").unwrap();
        let secrets = SecretFiles::new(&dir);
        assert_eq!(secrets.lookup("file:key"), Ok(Some("one\n".to_string())), "the catalog trims, not the lookup");
        let absent = secrets.lookup("file:later").unwrap_err();
        assert!(absent.absent && absent.reason.contains(&dir.join("later").display().to_string()), "{absent:?}");
        let read = secrets.into_read();
        assert_eq!(read.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), vec![dir.join("key"), dir.join("later")]);
        assert_eq!(read_again(&read).await, read, "nothing changed");
        // Kubernetes' way: a new file renamed over the old one.
        std::fs::write(dir.join("key.tmp"), "two\n").unwrap();
        std::fs::rename(dir.join("key.tmp"), dir.join("key")).unwrap();
        let now = read_again(&read).await;
        assert_ne!(now[0], read[0]);
        assert_eq!(now[1], read[1]);
        // A missing file, watched for a default, appears.
        std::fs::write(dir.join("later"), "x").unwrap();
        assert_ne!(read_again(&read).await[1], read[1]);
        // And one that disappears is a change too.
        std::fs::remove_file(dir.join("key")).unwrap();
        assert_ne!(read_again(&now).await[0], now[0]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_names_are_the_environment() {
        let secrets = SecretFiles::new(Path::new("/nonexistent"));
        assert_eq!(secrets.lookup("PATH"), Ok(std::env::var("PATH").ok()));
        assert_eq!(secrets.lookup("MCP_GATEWAY_SURELY_UNSET_2f1c"), Ok(None));
        assert!(secrets.into_read().is_empty());
    }
}
