//! This node's spool: one file per accepted message under `data_dir/spool/`, written
//! and fsync'd (file and directory) before the message is recorded in the store's
//! queue, so a crash after `250` loses nothing. The store row is the truth (see
//! `store::queue`); the file is the local copy.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::SubmissionError;

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Creates `data_dir/spool` when missing.
    pub fn open(data_dir: &Path) -> Result<Spool, SubmissionError> {
        let dir = data_dir.join("spool");
        std::fs::create_dir_all(&dir).map_err(|source| SubmissionError::DataDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Spool { dir })
    }

    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    /// Writes `message` durably as `ID.eml`; gives the bytes back with the path.
    pub async fn write(&self, id: &str, message: Vec<u8>) -> (Vec<u8>, std::io::Result<PathBuf>) {
        let path = self.path_of(id);
        let dir = self.dir.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let result = write_durably(&dir, &path, &message).map(|()| path);
            (message, result)
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => (
                Vec::new(),
                Err(std::io::Error::other(format!("spool task failed: {e}"))),
            ),
        }
    }

    /// Removes a spool file whose store record could not be written.
    pub async fn remove(&self, id: &str) {
        let path = self.path_of(id);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::warn!(path = %path.display(), "cannot remove spool file: {e}");
        }
    }
}

fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    // The new directory entry must survive a crash too.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_once_and_durably() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let (back, path) = spool.write("A1", b"hello".to_vec()).await;
        assert_eq!(back, b"hello");
        assert_eq!(std::fs::read(path.unwrap()).unwrap(), b"hello");
        let (_, again) = spool.write("A1", b"x".to_vec()).await;
        assert!(again.is_err(), "never overwrites");
        spool.remove("A1").await;
        assert!(!spool.path_of("A1").exists());
    }
}
