//! Background jobs behind one small trait, run on a schedule until shutdown.

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A periodic background job. `run_once` may block: it runs on a blocking thread.
pub trait Worker: Send + 'static {
    fn name(&self) -> &'static str;
    fn interval(&self) -> Duration;
    /// When the first run comes: at once by default; a job with nothing to do at start-up
    /// waits one interval instead.
    fn first_run_after(&self) -> Duration {
        Duration::ZERO
    }
    fn run_once(&mut self) -> Result<(), String>;
}

/// Runs `worker` every `interval` until `shutdown` turns true.
pub fn spawn<W: Worker>(mut worker: W, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + worker.first_run_after();
        let mut tick = tokio::time::interval_at(first, worker.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let name = worker.name();
            let result = tokio::task::spawn_blocking(move || {
                let r = worker.run_once();
                (worker, r)
            })
            .await;
            match result {
                Ok((w, r)) => {
                    worker = w;
                    if let Err(e) = r {
                        tracing::warn!(worker = name, error = %e, "background job failed");
                    }
                }
                Err(e) => {
                    tracing::error!(worker = name, error = %e, "background job panicked; stopping it");
                    return;
                }
            }
        }
    })
}

/// Signs a checkpoint whenever the audit log has grown.
pub struct Checkpointer {
    pub archive: std::sync::Arc<crate::archive::Archive>,
    pub every: Duration,
}

impl Worker for Checkpointer {
    fn name(&self) -> &'static str {
        "checkpointer"
    }
    fn interval(&self) -> Duration {
        self.every
    }
    fn run_once(&mut self) -> Result<(), String> {
        let log = &self.archive.log;
        let (cp, note) = match log.checkpoint() {
            Ok(signed) => signed,
            Err(crate::log::LogError::Empty) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let Some(url) = &self.archive.config.tsa_url else {
            return Ok(());
        };
        if log
            .timestamp_of(cp.size)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(());
        }
        // A blocking thread: waiting here on the TSA holds up nothing else.
        let token = tokio::runtime::Handle::current()
            .block_on(crate::log::timestamp::stamp(
                url,
                note.as_bytes(),
                Duration::from_secs(20),
            ))
            .map_err(|e| format!("timestamping checkpoint {} with {url}: {e}", cp.size))?;
        log.store_timestamp(cp.size, &token.der)
            .map_err(|e| e.to_string())?;
        tracing::info!(size = cp.size, gen_time = %token.gen_time, "checkpoint timestamped");
        Ok(())
    }
}

/// Gives back the room of deleted blobs (abandoned ingests, lawful destruction) in the
/// node's own blob store and in each origin's it holds (`BlobStore::reclaim`: the pack
/// files of the files store).
pub struct PackCompactor {
    pub archive: std::sync::Arc<crate::archive::Archive>,
    pub every: Duration,
}

impl Worker for PackCompactor {
    fn name(&self) -> &'static str {
        "pack-compactor"
    }
    fn interval(&self) -> Duration {
        self.every
    }
    /// Not at start-up: a pass reads every namespace's whole pack index, and dead bytes
    /// can wait an hour.
    fn first_run_after(&self) -> Duration {
        self.every
    }
    fn run_once(&mut self) -> Result<(), String> {
        let a = &self.archive;
        let mut freed = a.store.blobs.reclaim().map_err(|e| e.to_string())?;
        for (origin, _) in a.holding.origins().map_err(|e| e.to_string())? {
            let store = a.holding.blobs_of(&origin).map_err(|e| e.to_string())?;
            freed += store.reclaim().map_err(|e| e.to_string())?;
        }
        if freed > 0 {
            tracing::info!(
                bytes = freed,
                "pack files rewritten: room of deleted blobs given back"
            );
        }
        Ok(())
    }
}
