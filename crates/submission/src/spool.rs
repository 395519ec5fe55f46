//! This node's spool: one file per accepted message under `data_dir/spool/`, written
//! and fsync'd (file and directory) before the message is recorded in the store's
//! queue, so a crash after `250` loses nothing. The store row is the truth (see
//! `store::queue`); the file is the local copy.
//!
//! Each file is fsync'd by its writer; the directory, whose fsync commits the
//! filesystem journal and costs most, is fsync'd once for all files written while
//! the previous directory fsync ran (group sync, like the store's group commit).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::SubmissionError;

type SyncWaiter = tokio::sync::oneshot::Sender<Result<(), String>>;

pub struct Spool {
    dir: PathBuf,
    dir_sync: tokio::sync::mpsc::UnboundedSender<SyncWaiter>,
}

/// Fsyncs `dir` for every batch of waiters, each waiter's file written before.
async fn sync_dir_loop(
    dir: PathBuf,
    mut waiters: tokio::sync::mpsc::UnboundedReceiver<SyncWaiter>,
) {
    while let Some(first) = waiters.recv().await {
        let mut batch = vec![first];
        while let Ok(w) = waiters.try_recv() {
            batch.push(w);
        }
        let d = dir.clone();
        let result = tokio::task::spawn_blocking(move || std::fs::File::open(&d)?.sync_all())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        for w in batch {
            let _ = w.send(result.clone());
        }
    }
}

impl Spool {
    /// Creates `data_dir/spool` when missing.
    pub fn open(data_dir: &Path) -> Result<Spool, SubmissionError> {
        let dir = data_dir.join("spool");
        std::fs::create_dir_all(&dir).map_err(|source| SubmissionError::DataDir {
            path: dir.clone(),
            source,
        })?;
        // The directory-sync task needs a tokio runtime: start_with runs inside one.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(sync_dir_loop(dir.clone(), rx));
        Ok(Spool { dir, dir_sync: tx })
    }

    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    /// Writes `message` durably as `ID.eml`; gives the bytes back with the path.
    pub async fn write(&self, id: &str, message: Vec<u8>) -> (Vec<u8>, std::io::Result<PathBuf>) {
        let path = self.path_of(id);
        let joined = tokio::task::spawn_blocking(move || {
            let result = write_file(&path, &message).map(|()| path);
            (message, result)
        })
        .await;
        let (message, written) = match joined {
            Ok(r) => r,
            Err(e) => {
                return (
                    Vec::new(),
                    Err(std::io::Error::other(format!("spool task failed: {e}"))),
                )
            }
        };
        let path = match written {
            Ok(p) => p,
            Err(e) => return (message, Err(e)),
        };
        // The new directory entry must survive a crash too.
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.dir_sync.send(tx).is_err() {
            return (
                message,
                Err(std::io::Error::other("spool directory sync stopped")),
            );
        }
        match rx.await {
            Ok(Ok(())) => (message, Ok(path)),
            Ok(Err(e)) => (
                message,
                Err(std::io::Error::other(format!(
                    "cannot fsync the spool directory: {e}"
                ))),
            ),
            Err(_) => (
                message,
                Err(std::io::Error::other("spool directory sync stopped")),
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

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
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
