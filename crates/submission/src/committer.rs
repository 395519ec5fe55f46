//! Group commit into the store's queue. Every accepted message must be committed
//! before its `250`, and each commit is a transaction and a flush to disk (the store
//! lets concurrent commits share a flush; a transaction of its own each still costs).
//! Messages that arrive while a commit is running are committed together in the next
//! transaction: one transaction and flush for many messages.
//! A message that arrives while no commit runs is committed by its own session at
//! once, on its own thread (what one session alone pays): no hand-off to a
//! committing task, nor to a blocking thread and back, which cost more than the
//! commit itself on a quiet server. Only one such commit runs at a time, so it blocks
//! at most one runtime worker; every other message meanwhile goes to the group. Its
//! flush is waited for after [`QueueCommitter::enqueue`] returns ([`Flush::wait`]),
//! so the session can hand the message to delivery first: the disk flushes while the
//! message is relayed, where one session otherwise did one after the other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

/// At most this many messages, or this many body bytes, in one transaction.
const MAX_BATCH: usize = 64;
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// What a commit returns: the message as claimed, for one enqueued with a claim.
type Committed = Result<Option<store::ClaimedMessage>, String>;

type Job = (store::NewQueuedMessage, oneshot::Sender<Committed>);

/// The flush a commit still owes before the message is safe (none after a group
/// commit, which returns once on disk).
#[must_use = "the message is not safe until its flush is waited for"]
pub struct Flush(Option<(store::Unflushed, Running)>);

impl Flush {
    /// Whether the flush is still to come (not after a group commit, nor on
    /// PostgreSQL, whose commit returns once on disk).
    pub fn is_pending(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|(unflushed, _)| unflushed.is_pending())
    }

    /// Returns once the message is on disk; blocks the calling thread (see
    /// [`store::Unflushed::flushed_here`]). The commit counts as running until then,
    /// so the next message goes to the group and shares the next flush.
    pub fn wait(self) -> Result<(), String> {
        match self.0 {
            None => Ok(()),
            Some((unflushed, _running)) => unflushed.flushed_here().map_err(|e| e.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct QueueCommitter {
    jobs: mpsc::Sender<Job>,
    store: store::Store,
    /// Commits running now, direct or grouped.
    running: Arc<AtomicUsize>,
}

/// Counts a running commit for as long as it lives.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(count: &Arc<AtomicUsize>) -> Running {
        count.fetch_add(1, Ordering::AcqRel);
        Running(count.clone())
    }

    /// Counts a commit only if none is running.
    fn alone(count: &Arc<AtomicUsize>) -> Option<Running> {
        count
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Running(count.clone()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl QueueCommitter {
    /// Starts `writers` committing tasks (one suits SQLite's single writer; a few
    /// suit PostgreSQL's connection pool).
    pub fn start(store: store::Store, writers: usize) -> (QueueCommitter, Vec<JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let running = Arc::new(AtomicUsize::new(0));
        let tasks = (0..writers.max(1))
            .map(|_| tokio::spawn(run(store.clone(), rx.clone(), running.clone())))
            .collect();
        (
            QueueCommitter {
                jobs: tx,
                store,
                running,
            },
            tasks,
        )
    }

    /// Returns once the message is committed (or could not be), see
    /// [`store::Store::enqueue`], with the flush that makes it safe still to wait for.
    pub async fn enqueue(
        &self,
        message: store::NewQueuedMessage,
    ) -> Result<(Option<store::ClaimedMessage>, Flush), String> {
        if let Some(running) = Running::alone(&self.running) {
            let (claimed, unflushed) = self
                .store
                .enqueue_on_caller(&message)
                .await
                .map_err(|e| e.to_string())?;
            return Ok((claimed, Flush(Some((unflushed, running)))));
        }
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((message, tx))
            .await
            .map_err(|_| "queue committer stopped".to_string())?;
        let claimed = rx
            .await
            .map_err(|_| "queue committer stopped".to_string())??;
        Ok((claimed, Flush(None)))
    }
}

async fn run(
    store: store::Store,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    running: Arc<AtomicUsize>,
) {
    loop {
        let batch = {
            let mut rx = jobs.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut bytes = first.0.body.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += job.0.body.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let _running = Running::start(&running);
        let (messages, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match store.enqueue_many(&messages).await {
            Ok(claimed) => {
                for (r, c) in replies.into_iter().zip(claimed) {
                    let _ = r.send(Ok(c));
                }
            }
            Err(e) if messages.len() > 1 => {
                // One bad message must not fail the others: commit them one by one.
                tracing::warn!(
                    batch = messages.len(),
                    "group commit failed ({e}); committing one by one"
                );
                for (m, r) in messages.iter().zip(replies) {
                    let _ = r.send(store.enqueue(m).await.map_err(|e| e.to_string()));
                }
            }
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(e.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session commits on its own thread only while no other commit runs, so at
    /// most one runtime worker is ever blocked by a commit.
    #[test]
    fn one_commit_alone_at_a_time() {
        let count = Arc::new(AtomicUsize::new(0));
        let first = Running::alone(&count).expect("nothing runs");
        assert!(
            Running::alone(&count).is_none(),
            "a second one waits its turn"
        );
        drop(first);
        let grouped = Running::start(&count);
        assert!(
            Running::alone(&count).is_none(),
            "nor beside a group commit"
        );
        drop(grouped);
        assert!(Running::alone(&count).is_some());
    }
}
