//! The key-value store under the outbox, behind a small trait.
//!
//! [`SledStore`] is the real one (sled 0.34, beta by its own README: its cache
//! is set explicitly, its background flusher is off so the outbox decides when
//! to flush, and a panic inside `open` is caught and reported as an error).
//! [`MemStore`] keeps a durable image and the writes since the last flush
//! apart, so a test can "crash" it and lose exactly the unflushed writes.
//!
//! Contract of every store: `apply` is atomic (all of a batch or none of it,
//! also across a crash), a crash keeps a prefix of the applied batches (in
//! the order they were applied), writes become durable at the end of a
//! `flush` that started after them, and `scan` returns keys in byte order.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("store could not be opened: {0}")]
    Open(String),
    #[error("store panicked while opening: {0}")]
    OpenPanicked(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// A set of writes applied atomically.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Key-value pairs returned by [`Store::scan`].
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What the outbox needs of a key-value store.
pub trait Store: Clone + Send + Sync + 'static {
    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Makes every write applied before the call durable.
    fn flush(&self) -> Result<(), StoreError>;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` entries whose key starts with `prefix` and is `>= from`, in key order.
    fn scan(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, StoreError>;
    /// Bytes the store takes on disk (0 where not applicable).
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// Drops what is held in memory and reopens from what is durable (after
    /// an I/O error the store may refuse every write until reopened).
    fn reopen(&self) -> Result<(), StoreError>;
}

/// The sled-backed store.
#[derive(Clone)]
pub struct SledStore {
    db: Arc<std::sync::RwLock<Option<sled::Db>>>,
    dir: std::path::PathBuf,
    cache_capacity: u64,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir` with a page cache of `cache_capacity` bytes.
    /// A panic inside sled's open is caught and returned as [`StoreError::OpenPanicked`].
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<SledStore, StoreError> {
        let db = Self::open_db(dir, cache_capacity)?;
        Ok(SledStore {
            db: Arc::new(std::sync::RwLock::new(Some(db))),
            dir: dir.to_owned(),
            cache_capacity,
        })
    }

    fn open_db(dir: &Path, cache_capacity: u64) -> Result<sled::Db, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .flush_every_ms(None)
            .mode(sled::Mode::LowSpace);
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
        match opened {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(e)) => Err(StoreError::Open(e.to_string())),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(ToString::to_string)
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(StoreError::OpenPanicked(msg))
            }
        }
    }
}

impl SledStore {
    fn db(&self) -> Result<sled::Db, StoreError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError::Io("the store is closed".into()))
    }
}

impl Store for SledStore {
    fn apply(&self, mut batch: WriteBatch) -> Result<(), StoreError> {
        // One write is atomic by itself: sled writes it into the current log
        // buffer, where a `Batch` seals and writes a log buffer before and
        // after it (a disk write each, and most of the outbox's CPU time).
        if batch.ops.len() == 1
            && let Some((k, v)) = batch.ops.pop()
        {
            let db = self.db()?;
            match v {
                Some(v) => db.insert(k, v)?,
                None => db.remove(k)?,
            };
            return Ok(());
        }
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        Ok(self.db()?.apply_batch(b)?)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db()?.flush()?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db()?.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let mut out = Vec::new();
        for item in self.db()?.range(from..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db()?.size_on_disk()?)
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // sled locks its directory: the old instance must be gone first.
        drop(guard.take());
        *guard = Some(Self::open_db(&self.dir, self.cache_capacity)?);
        Ok(())
    }
}

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Default)]
struct MemInner {
    durable: Map,
    live: Map,
    /// Batches applied since the last flush, oldest first.
    unflushed: Vec<WriteBatch>,
    /// When set, `apply` and `flush` fail with an I/O error (a full disk).
    failing: bool,
}

/// An in-memory store with explicit durability, for tests.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    inner: Arc<Mutex<MemInner>>,
    gate: Arc<FlushGate>,
}

/// Holds flushes back on demand (a slow disk), and counts what is written
/// while one is held.
#[derive(Debug, Default)]
struct FlushGate {
    state: Mutex<GateState>,
    released: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    held: bool,
    waiting: usize,
    /// Value bytes applied while a flush was waiting at the gate.
    written_while_waiting: u64,
}

impl FlushGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn apply_to(map: &mut Map, batch: &WriteBatch) {
    for (k, v) in &batch.ops {
        match v {
            Some(v) => map.insert(k.clone(), v.clone()),
            None => map.remove(k),
        };
    }
}

impl MemStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A power cut: a new store holding only what was durable, plus a prefix
    /// (`keep` batches) of the writes that were not flushed yet — a crash may
    /// persist some of them, never part of one.
    #[must_use]
    pub fn crash(&self, keep: usize) -> MemStore {
        let inner = self.lock();
        let mut durable = inner.durable.clone();
        for batch in inner.unflushed.iter().take(keep) {
            apply_to(&mut durable, batch);
        }
        MemStore {
            inner: Arc::new(Mutex::new(MemInner {
                live: durable.clone(),
                durable,
                unflushed: Vec::new(),
                failing: false,
            })),
            gate: Arc::default(),
        }
    }

    /// Makes every flush wait (as on a slow disk) until released.
    pub fn hold_flushes(&self, held: bool) {
        self.gate.lock().held = held;
        self.gate.released.notify_all();
    }

    /// Flushes waiting to be released.
    pub fn flushes_waiting(&self) -> usize {
        self.gate.lock().waiting
    }

    /// Value bytes applied while a flush was waiting to be released.
    pub fn written_while_flush_waited(&self) -> u64 {
        self.gate.lock().written_while_waiting
    }

    /// Makes writes fail (as on a full disk) or succeed again.
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Overwrites one durable value (to simulate on-disk damage).
    pub fn corrupt(&self, key: &[u8], value: Vec<u8>) {
        let mut inner = self.lock();
        inner.durable.insert(key.to_vec(), value.clone());
        inner.live.insert(key.to_vec(), value);
    }
}

impl Store for MemStore {
    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.failing {
            return Err(StoreError::Io("No space left on device (simulated)".into()));
        }
        apply_to(&mut inner.live, &batch);
        {
            let mut gate = self.gate.lock();
            if gate.waiting > 0 {
                gate.written_while_waiting += batch
                    .ops
                    .iter()
                    .map(|(_, v)| v.as_ref().map_or(0, Vec::len) as u64)
                    .sum::<u64>();
            }
        }
        inner.unflushed.push(batch);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        {
            let mut gate = self.gate.lock();
            if gate.held {
                gate.waiting += 1;
                while gate.held {
                    gate = self
                        .gate
                        .released
                        .wait(gate)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                gate.waiting -= 1;
            }
        }
        let mut inner = self.lock();
        if inner.failing {
            return Err(StoreError::Io("No space left on device (simulated)".into()));
        }
        let batches = std::mem::take(&mut inner.unflushed);
        for b in &batches {
            apply_to(&mut inner.durable, b);
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().live.get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let inner = self.lock();
        Ok(inner
            .live
            .range(from.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.failing {
            return Err(StoreError::Io("No space left on device (simulated)".into()));
        }
        inner.live = inner.durable.clone();
        inner.unflushed.clear();
        Ok(())
    }
}
