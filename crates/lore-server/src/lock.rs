//! One writer per embedded data folder. `lore serve` holds an exclusive lock on
//! `<data>/lore.lock` for its lifetime and records where it listens in `<data>/server.json`;
//! `lore ingest` takes the same lock to write directly, and when a server holds it, sends the
//! files through the server's document API instead. The operating system drops the lock when
//! the process ends, however it ends, so a crash never leaves a stale lock behind.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub struct DataDirLock {
    _file: File,
    info_path: PathBuf,
}

/// What a running server says about itself in `server.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub url: String,
    pub pid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the data folder {dir} is in use by another Lore process{}", .server.as_ref().map(|s| format!(" (a server at {}, pid {})", s.url, s.pid)).unwrap_or_default())]
    Held { dir: PathBuf, server: Option<ServerInfo> },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl DataDirLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, LockError> {
        std::fs::create_dir_all(data_dir).map_err(|source| LockError::Io { path: data_dir.to_owned(), source })?;
        let path = data_dir.join("lore.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::Io { path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file, info_path: data_dir.join("server.json") }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(LockError::Held { dir: data_dir.to_owned(), server: running_server(data_dir) })
            }
            Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    /// Records the server's address for `lore ingest` (removed again on drop).
    pub fn publish(&self, info: &ServerInfo) -> std::io::Result<()> {
        std::fs::write(&self.info_path, serde_json::to_vec_pretty(info).expect("info serializes"))
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.info_path);
    }
}

/// The server recorded in `server.json`, if any (meaningful only while the lock is held).
pub fn running_server(data_dir: &Path) -> Option<ServerInfo> {
    let bytes = std::fs::read(data_dir.join("server.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DataDirLock::acquire(dir.path()).unwrap();
        lock.publish(&ServerInfo { url: "http://127.0.0.1:9".into(), pid: 7 }).unwrap();
        match DataDirLock::acquire(dir.path()) {
            Err(LockError::Held { server: Some(server), .. }) => assert_eq!(server.url, "http://127.0.0.1:9"),
            other => panic!("expected Held, got {:?}", other.map(|_| ())),
        }
        drop(lock);
        assert!(running_server(dir.path()).is_none());
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
