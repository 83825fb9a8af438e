//! The durable outbox: every outgoing message (except `status`) is stored here,
//! with its seq, before it may be published, and leaves only when the broker
//! acknowledged it or a limit forced a reported drop.
//!
//! # Constraints
//!
//! - **Seq counter.** An append writes its record alone (a single sled
//!   insert: a sled `Batch` seals and writes a log buffer before and after
//!   itself, which made batches most of the agent's CPU time). The counter
//!   `m/next_seq` is written when a flush starts ([`Outbox::begin_flush`]),
//!   so the flush that makes a record durable makes a counter past it
//!   durable too; at open the counter is the larger of the stored one and
//!   the highest record + 1, written back and flushed before anything can be
//!   acknowledged. A published seq is therefore never handed out again, even
//!   after its record was deleted (sled's `generate_id` is never used: it
//!   skips ranges after a crash). sled recovers a prefix of its log, so the
//!   records that survive a crash are a prefix of those appended.
//! - **Publish only what is durable.** `durable_next` is the first seq not
//!   known to be on disk; [`Outbox::read`] never returns a record at or past
//!   it. A flush that *started* after an append makes that append durable
//!   (group commit: the caller starts a flush as soon as it has unflushed
//!   records and no flush is running).
//! - **Dense seqs, announced holes.** Seqs start at 1 and increase by one per
//!   append. A record leaves the store only by [`Outbox::ack`] (the broker has
//!   it) or by a drop; drops are gathered into one pending [`Gap`] per
//!   maximal burst of drops, persisted in the same batch as the removals, and
//!   appended as a `gap` record when the burst ends (a check finds nothing to
//!   drop and a quarter of the outbox is free again).
//! - **Bounded.** `bytes` (the sum of encoded record lengths) stays at or
//!   below `max_size` after every call; records older than `max_age` are
//!   dropped. Drop order: telemetry and health first, then availability, KPI
//!   windows last; `gap` records are never dropped; records in flight are
//!   never dropped (their PUBACK may be on its way).
//! - **Damage is loud.** A store that does not open (an error or a panic
//!   inside sled) or holds a record whose checksum fails is moved aside, a
//!   fresh store with a new id is started, and a `store_damaged` gap naming
//!   the lost store is its first record.
//!
//! # On-disk format
//!
//! One sled tree (the default), keys:
//!
//! | key | value |
//! | --- | --- |
//! | `b'r'` + seq (u64 BE) | a record, see [`record`] |
//! | `m/store_id` | the store id, 32 lowercase hex characters |
//! | `m/next_seq` | the seq counter as of the last flush start, u64 BE (the next seq is the larger of it and the highest record + 1) |
//! | `m/pending_gap` | the open gap: from, to, count (u64 BE each), reason (u8), see `gap` |
//!
//! The in-memory state (`bytes`, `count`, `next_seq`) is rebuilt by one scan
//! at open, which also verifies every record's checksum.
//!
//! # Parts
//!
//! This file is the design and the [`Outbox`] API, which does the store
//! I/O; the decisions are pure parts, each in its own file:
//!
//! - [`record`]: the record format (bytes ↔ [`Record`]).
//! - [`store`]: the [`Store`] trait, sled behind it, and an in-memory store
//!   with fault knobs for tests.
//! - `gap`: the [`Gap`] type, its `m/pending_gap` bytes and its `gap` message.
//! - `ledger`: the seq ledger (seqs handed out, the stored counter, seqs
//!   durable): the counter at open, what a flush start writes, what a flush
//!   makes durable.
//! - `retention`: which records `max_age` and `max_size` drop, and the
//!   burst of drops one gap counts (when it ends and is announced).
//! - `recovery`: opening the sled store, moving a damaged one aside, and
//!   reopening after a full disk ([`Outbox::open`], [`Outbox::recover`]).

mod gap;
mod ledger;
pub mod record;
mod recovery;
mod retention;
pub mod store;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

pub use crate::message::DropReason;
use crate::message::Message;
pub use gap::Gap;
pub use record::{Body, Kind, Record, RecordError};
pub use recovery::Recovery;
pub use store::{MemStore, SledStore, Store, StoreError, WriteBatch};

use ledger::Ledger;
use record::{key_seq, seq_key};
use retention::{Burst, Expiry, InFlight, SizeCut, Victim};

const META_STORE_ID: &[u8] = b"m/store_id";
const META_NEXT_SEQ: &[u8] = b"m/next_seq";
const META_PENDING_GAP: &[u8] = b"m/pending_gap";
const RECORD_PREFIX: &[u8] = &[record::RECORD_PREFIX];
const SCAN_CHUNK: usize = 512;

/// Limits and sizes of an outbox.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    /// Cap on the sum of encoded record bytes.
    pub max_size: u64,
    pub max_age: Duration,
    /// Largest encoded record accepted (derived from the broker's packet limit).
    pub max_record: usize,
    /// sled page cache, bytes.
    pub cache_capacity: u64,
}

/// The outbox's drop class of a message (see [`Kind::drop_class`]).
pub fn kind_of<S>(message: &Message<S>) -> Kind {
    match message {
        Message::Telemetry(_) => Kind::Telemetry,
        Message::Health(_) | Message::HealthF2(_) | Message::HealthF3(_) => Kind::Health,
        Message::Availability(_) => Kind::Availability,
        Message::Kpi(_) | Message::KpiF2(_) => Kind::Kpi,
        Message::Gap(_) => Kind::Gap,
    }
}

#[derive(Debug, Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store is damaged: {0}")]
    Damaged(String),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(
        "the outbox holds records of format {version}, written by a newer spindle; this build reads formats up to {supported}. Run the newer release to deliver them (or move the store aside to start afresh, giving them up)"
    )]
    FutureFormat { version: u8, supported: u8 },
    #[error("a message could not be encoded: {0}")]
    Encode(String),
    #[error("could not move the damaged store {from} aside to {to}: {source}")]
    MoveAside {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Error)]
pub enum AppendError {
    #[error(
        "message of {len} bytes is larger than the broker's packet limit allows ({max} bytes); it was not queued"
    )]
    TooLarge { len: usize, max: usize },
    #[error(
        "the store refused the write, the message was dropped and will be reported on `gap`: {0}"
    )]
    Store(#[from] StoreError),
    #[error("the message could not be encoded: {0}")]
    Encode(String),
}

/// Counters and levels for `health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub depth: u64,
    pub bytes: u64,
    pub dropped_outbox_full: u64,
    pub dropped_max_age: u64,
    pub dropped_store_damaged: u64,
    pub gaps_announced: u64,
    pub appends_failed: u64,
    pub enforce_failed: u64,
}

/// The outbox over a [`Store`].
#[derive(Debug)]
pub struct Outbox<S: Store> {
    store: S,
    store_id: String,
    opts: OutboxOptions,
    /// Seqs handed out, the stored counter, seqs durable.
    ledger: Ledger,
    bytes: u64,
    /// Record bytes appended since the last flush started (what the next
    /// flush will write, held in sled's log buffers meanwhile).
    unflushed_bytes: u64,
    count: u64,
    /// The open gap and the burst of drops it counts.
    burst: Burst,
    /// Records handed to the publisher and not yet acknowledged: seq → encoded length.
    in_flight: InFlight,
    stats: OutboxStats,
}

impl Outbox<SledStore> {
    /// Opens the outbox under `dir` (created if missing). A damaged store is
    /// moved aside to `dir.damaged-<now_ms>` and replaced; the returned
    /// [`Recovery`] says so, and the new store's first record is the
    /// `store_damaged` gap.
    pub fn open(
        dir: &Path,
        opts: OutboxOptions,
        now_ms: u64,
    ) -> Result<(Self, Option<Recovery>), OutboxError> {
        recovery::open(dir, opts, now_ms)
    }
}

fn new_store_id() -> String {
    let id: u128 = rand::random();
    format!("{id:032x}")
}

/// Visits every record in seq order, in chunks, until `visit` breaks.
fn for_each_record<S: Store>(
    store: &S,
    mut visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let mut from = seq_key(0).to_vec();
    // Most visits stop after a record or two (the oldest is what a drop
    // wants): start small, grow to SCAN_CHUNK.
    let mut size = 4;
    loop {
        let chunk = store.scan(RECORD_PREFIX, &from, size)?;
        size = (size * 4).min(SCAN_CHUNK);
        let Some((last_key, _)) = chunk.last() else {
            return Ok(());
        };
        from.clone_from(last_key);
        from.push(0);
        for (k, v) in &chunk {
            if visit(k, v).is_break() {
                return Ok(());
            }
        }
    }
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl<S: Store> Outbox<S> {
    /// Opens an outbox on a store: verifies every record, rebuilds the
    /// counters, and creates the store's id when the store is new.
    pub fn from_store(store: S, opts: OutboxOptions) -> Result<Self, OutboxError> {
        let stored_id = store.get(META_STORE_ID)?;
        let stored_next = match store.get(META_NEXT_SEQ)? {
            Some(v) => {
                be_u64(&v).ok_or_else(|| OutboxError::Damaged("next seq is not 8 bytes".into()))?
            }
            None => 1,
        };
        let mut highest = None;
        let mut bytes = 0u64;
        let mut count = 0u64;
        let mut damage = None;
        for_each_record(&store, |k, v| {
            let checked = key_seq(k).and_then(|seq| Record::decode(v).map(|_| seq));
            match checked {
                Ok(seq) => {
                    bytes += v.len() as u64;
                    count += 1;
                    highest = highest.max(Some(seq));
                    ControlFlow::Continue(())
                }
                Err(RecordError::FutureVersion(version)) => {
                    damage = Some(OutboxError::FutureFormat {
                        version,
                        supported: record::FORMAT_VERSION,
                    });
                    ControlFlow::Break(())
                }
                Err(e) => {
                    damage = Some(OutboxError::Damaged(format!("record at key {k:02x?}: {e}")));
                    ControlFlow::Break(())
                }
            }
        })?;
        if let Some(damage) = damage {
            return Err(damage);
        }
        let id = match stored_id {
            Some(id) => String::from_utf8(id)
                .map_err(|_| OutboxError::Damaged("store id is not UTF-8".into()))?,
            None if count == 0 => {
                let id = new_store_id();
                let mut batch = WriteBatch::default();
                batch.insert(META_STORE_ID, id.as_bytes());
                // No records: the stored counter (1 unless written) is the counter.
                batch.insert(META_NEXT_SEQ, stored_next.to_be_bytes());
                store.apply(batch)?;
                store.flush()?;
                id
            }
            None => return Err(OutboxError::Damaged("records without a store id".into())),
        };
        let pending_gap = match store.get(META_PENDING_GAP)? {
            Some(v) => Some(
                Gap::decode(&v)
                    .ok_or_else(|| OutboxError::Damaged("pending gap is malformed".into()))?,
            ),
            None => None,
        };
        let opened = Ledger::open(stored_next, highest, pending_gap.as_ref());
        if let Some(counter) = opened.write_back {
            let mut batch = WriteBatch::default();
            batch.insert(META_NEXT_SEQ, counter.to_be_bytes());
            store.apply(batch)?;
            store.flush()?;
        }
        Ok(Outbox {
            store,
            store_id: id,
            opts,
            ledger: opened.ledger,
            bytes,
            unflushed_bytes: 0,
            count,
            burst: Burst::resume(pending_gap),
            in_flight: InFlight::new(),
            stats: OutboxStats::default(),
        })
    }

    /// After the store failed (a full disk): reopens it from what is
    /// durable and accounts for what was lost. Records appended since the
    /// last good flush are gone; their seqs are not reused (the seq counter
    /// is carried over) and they join the open gap, so the loss is announced
    /// exactly. Returns how many records were lost.
    pub fn recover(&mut self) -> Result<u64, OutboxError> {
        recovery::recover(self)
    }

    /// Writes the store id beside a sled store so it can be named if the store is damaged later.
    pub fn write_id_file(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join(recovery::STORE_ID_FILE), &self.store_id)
    }

    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// A handle on the store, for flushing off the async runtime.
    pub fn store(&self) -> S {
        self.store.clone()
    }

    pub fn next_seq(&self) -> u64 {
        self.ledger.next()
    }

    /// First seq not known to be durable.
    pub fn durable_next(&self) -> u64 {
        self.ledger.durable_next()
    }

    pub fn pending_gap(&self) -> Option<Gap> {
        self.burst.open_gap()
    }

    pub fn stats(&self) -> OutboxStats {
        OutboxStats {
            depth: self.count,
            bytes: self.bytes,
            ..self.stats.clone()
        }
    }

    /// Counts `records` new records of `bytes` in all, just written.
    fn stored(&mut self, bytes: u64, records: u64) {
        self.bytes += bytes;
        self.unflushed_bytes += bytes;
        self.count += records;
    }

    /// Record bytes appended since the last flush started.
    pub fn unflushed_bytes(&self) -> u64 {
        self.unflushed_bytes
    }

    /// True when records were appended that no flush has covered yet.
    pub fn needs_flush(&self) -> bool {
        self.ledger.needs_flush()
    }

    /// Call when a flush starts, then flush the store and pass the returned
    /// bound to [`Outbox::flush_done`] once the store's flush returned.
    ///
    /// Appends write their record alone (one key: sled writes it without
    /// sealing a log buffer, unlike a batch); the seq counter is written
    /// here instead, so the flush that makes a record durable also makes a
    /// counter past it durable. At open the counter is the larger of the
    /// stored one and the highest record + 1, so a seq that was ever
    /// published (durable) is never handed out again, even once its record
    /// was acknowledged and deleted.
    pub fn begin_flush(&mut self) -> Result<u64, StoreError> {
        self.unflushed_bytes = 0;
        let start = self.ledger.begin_flush();
        if let Some(counter) = start.write_counter {
            let mut batch = WriteBatch::default();
            batch.insert(META_NEXT_SEQ, counter.to_be_bytes());
            self.store.apply(batch)?;
            self.ledger.counter_stored(counter);
        }
        Ok(start.bound)
    }

    /// Marks every seq below `bound` durable.
    pub fn flush_done(&mut self, bound: u64) {
        self.ledger.flush_done(bound);
    }

    /// Flushes synchronously (tests and shutdown).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let bound = self.begin_flush()?;
        self.store.flush()?;
        self.flush_done(bound);
        Ok(())
    }

    /// Appends one message, then enforces the limits (which may drop older
    /// records). Returns the record's seq.
    pub fn append(&mut self, message: &Message, now_ms: u64) -> Result<u64, AppendError> {
        let seq = self.append_raw(message, now_ms)?;
        if self.enforce_size(now_ms).is_err() {
            // The record is stored; the store refused the drops (a full
            // disk). They are retried on the next append or tick.
            self.stats.enforce_failed += 1;
        }
        Ok(seq)
    }

    /// Appends several messages and writes one meta value (e.g. the KPI
    /// engine's state) in a single atomic batch: after a crash either all of
    /// them are there or none. Then enforces the limits. Returns the seqs.
    pub fn append_atomic(
        &mut self,
        messages: &[Message],
        meta: Option<(&[u8], &[u8])>,
        now_ms: u64,
    ) -> Result<Vec<u64>, AppendError> {
        let mut batch = WriteBatch::default();
        let mut seqs = Vec::with_capacity(messages.len());
        let mut added = 0u64;
        let mut largest = 0u64;
        let mut seq = self.ledger.next();
        for message in messages {
            let record = self.new_record(message, now_ms)?;
            let len = record.len();
            batch.insert(seq_key(seq), record);
            seqs.push(seq);
            added += len as u64;
            largest = largest.max(len as u64);
            seq += 1;
        }
        if let Some((key, value)) = meta {
            if key.first() == Some(&record::RECORD_PREFIX) {
                return Err(AppendError::Store(StoreError::Io(
                    "meta keys must not look like record keys".into(),
                )));
            }
            batch.insert(key.to_vec(), value.to_vec());
        }
        if batch.is_empty() {
            return Ok(seqs);
        }
        batch.insert(META_NEXT_SEQ, seq.to_be_bytes());
        if let Some(gap) = self.burst.open_gap() {
            batch.insert(META_PENDING_GAP, gap.encode());
        }
        let allocated = self.ledger.allocate(seqs.len() as u64);
        if let Err(e) = self.store.apply(batch) {
            self.stats.appends_failed += seqs.len() as u64;
            let reason = self.burst.reason_for_lost_write();
            for lost in allocated {
                self.note_drop(lost, reason);
            }
            return Err(AppendError::Store(e));
        }
        self.stored(added, seqs.len() as u64);
        self.burst.appended(largest);
        if self.enforce_size(now_ms).is_err() {
            self.stats.enforce_failed += 1;
        }
        Ok(seqs)
    }

    /// The one record constructor of both append paths: the message's
    /// encoding, refused when larger than `max_record`.
    fn new_record(&self, message: &Message, now_ms: u64) -> Result<Vec<u8>, AppendError> {
        let record = Record::encode_message(kind_of(message), now_ms, message)
            .map_err(|e| AppendError::Encode(e.to_string()))?;
        if record.len() > self.opts.max_record {
            return Err(AppendError::TooLarge {
                len: record.len(),
                max: self.opts.max_record,
            });
        }
        Ok(record)
    }

    /// A meta value written by [`Outbox::append_atomic`].
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(key)
    }

    fn append_raw(&mut self, message: &Message, now_ms: u64) -> Result<u64, AppendError> {
        let seq = self.ledger.next();
        let record = self.new_record(message, now_ms)?;
        let len = record.len();
        // The record alone (see `begin_flush` for the seq counter).
        let mut batch = WriteBatch::default();
        batch.insert(seq_key(seq), record);
        if let Some(gap) = self.burst.open_gap() {
            // Keep the store's view of the open gap current (it may have
            // grown while the store refused writes).
            batch.insert(META_PENDING_GAP, gap.encode());
        }
        self.ledger.allocate(1);
        if let Err(e) = self.store.apply(batch) {
            // The record is lost (a full disk): its seq is used, the loss is
            // part of the open gap and is announced once writes work again.
            self.stats.appends_failed += 1;
            // Nothing can be written now: the lost record joins the open
            // gap (see `Burst::reason_for_lost_write`).
            let reason = self.burst.reason_for_lost_write();
            self.note_drop(seq, reason);
            return Err(AppendError::Store(e));
        }
        self.stored(len as u64, 1);
        self.burst.appended(len as u64);
        Ok(seq)
    }

    /// Counts the drop of `seq` in the stats and the open gap.
    fn note_drop(&mut self, seq: u64, reason: DropReason) {
        match reason {
            DropReason::OutboxFull => self.stats.dropped_outbox_full += 1,
            DropReason::MaxAge => self.stats.dropped_max_age += 1,
            DropReason::StoreDamaged => self.stats.dropped_store_damaged += 1,
        }
        self.burst.note_drop(seq, reason);
    }

    /// Drops what `max_age` and `max_size` require, and announces the open
    /// gap once a check finds nothing more to drop.
    pub fn enforce_limits(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let cutoff = retention::age_cutoff(now_ms, self.opts.max_age);
        let mut dropped = self.drop_expired(cutoff, now_ms)?;
        dropped |= self.drop_for_size(now_ms)?;
        self.end_burst_if_room(dropped, now_ms)
    }

    /// What an append needs: the size cap (ages are checked by the periodic
    /// [`Outbox::enforce_limits`], so an append costs no scan unless the
    /// outbox is full).
    fn enforce_size(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let dropped = self.drop_for_size(now_ms)?;
        self.end_burst_if_room(dropped, now_ms)
    }

    fn end_burst_if_room(&mut self, dropped: bool, now_ms: u64) -> Result<(), StoreError> {
        if self.burst.ends(dropped, self.bytes, self.opts.max_size) {
            self.close_gap(now_ms)?;
        }
        // Announced gaps take room too; what they push out opens (or
        // extends) the next gap.
        self.drop_for_size(now_ms)?;
        Ok(())
    }

    fn drop_expired(&mut self, cutoff_ms: u64, now_ms: u64) -> Result<bool, StoreError> {
        let mut expiry = Expiry::new(cutoff_ms, &self.in_flight);
        for_each_record(&self.store, |k, v| match key_seq(k) {
            Ok(seq) => expiry.visit(seq, record::peek_header(v), v.len() as u64),
            Err(_) => ControlFlow::Continue(()),
        })?;
        let victims = expiry.into_victims();
        self.remove_dropped(&victims, now_ms)?;
        Ok(!victims.is_empty())
    }

    fn drop_for_size(&mut self, now_ms: u64) -> Result<bool, StoreError> {
        let Some(mut cut) = SizeCut::new(self.bytes, self.opts.max_size, &self.in_flight) else {
            return Ok(false);
        };
        loop {
            for_each_record(&self.store, |k, v| match key_seq(k) {
                Ok(seq) => cut.visit(seq, record::peek_header(v), v.len() as u64),
                Err(_) => ControlFlow::Continue(()),
            })?;
            if !cut.next_pass() {
                break;
            }
        }
        let victims = cut.into_victims();
        self.remove_dropped(&victims, now_ms)?;
        Ok(!victims.is_empty())
    }

    fn remove_dropped(&mut self, victims: &[Victim], now_ms: u64) -> Result<(), StoreError> {
        if victims.is_empty() {
            return Ok(());
        }
        let saved = (self.burst, self.stats.clone());
        let mut closed = Vec::new();
        let mut batch = WriteBatch::default();
        for &Victim { seq, reason, .. } in victims {
            if let Some(gap) = self.burst.take_if_other_reason(reason) {
                closed.push(gap);
            }
            batch.remove(seq_key(seq).to_vec());
            self.note_drop(seq, reason);
        }
        // A gap closed by a change of reason is announced in the same batch
        // that replaces it as the open gap, so a crash keeps one or the other.
        let mut next_seq = self.ledger.next();
        let mut added = 0u64;
        for gap in &closed {
            added += Self::gap_record_into(&mut batch, *gap, next_seq, now_ms);
            next_seq += 1;
        }
        if let Some(gap) = self.burst.open_gap() {
            batch.insert(META_PENDING_GAP, gap.encode());
        }
        // The counter goes with the drops: a dropped record may not be
        // covered by a flushed counter yet, and a crash that keeps the drop
        // must not hand its seq out again (the open gap counts it).
        batch.insert(META_NEXT_SEQ, next_seq.to_be_bytes());
        if let Err(e) = self.store.apply(batch) {
            (self.burst, self.stats) = saved;
            return Err(e);
        }
        for victim in victims {
            self.bytes = self.bytes.saturating_sub(victim.len);
            self.count = self.count.saturating_sub(1);
        }
        self.ledger.allocate(closed.len() as u64);
        self.stored(added, closed.len() as u64);
        self.stats.gaps_announced += closed.len() as u64;
        Ok(())
    }

    /// Appends the open gap as a `gap` record and clears it, in one batch.
    fn close_gap(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let Some(gap) = self.burst.open_gap() else {
            return Ok(());
        };
        let seq = self.ledger.next();
        let mut batch = WriteBatch::default();
        let len = Self::gap_record_into(&mut batch, gap, seq, now_ms);
        batch.remove(META_PENDING_GAP);
        self.store.apply(batch)?;
        self.burst.closed();
        self.ledger.allocate(1);
        self.stored(len, 1);
        self.stats.gaps_announced += 1;
        Ok(())
    }

    /// Adds a `gap` record with `seq` (and the next seq after it) to `batch`;
    /// returns its encoded length.
    fn gap_record_into(batch: &mut WriteBatch, gap: Gap, seq: u64, now_ms: u64) -> u64 {
        let message = gap.report(now_ms);
        // A gap is a handful of integers: its encoding cannot fail.
        let encoded = crate::message::encode(&message).unwrap_or_default();
        let bytes = Record::message(Kind::Gap, now_ms, encoded).encode();
        let len = bytes.len() as u64;
        batch.insert(seq_key(seq), bytes);
        batch.insert(META_NEXT_SEQ, (seq + 1).to_be_bytes());
        len
    }

    /// Drops a record that was read but whose message does not decode, and
    /// reports it as damage (a `store_damaged` gap).
    pub fn discard_damaged(&mut self, seq: u64, len: u64, now_ms: u64) -> Result<(), StoreError> {
        self.in_flight.remove(&seq);
        let victim = Victim {
            seq,
            len,
            reason: DropReason::StoreDamaged,
        };
        self.remove_dropped(&[victim], now_ms)
    }

    /// Up to `limit` durable records with seq `>= from_seq`, in seq order.
    /// A record whose checksum fails is dropped and reported as a
    /// `store_damaged` gap instead of being returned.
    pub fn read(
        &mut self,
        from_seq: u64,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<(u64, Record)>, StoreError> {
        let mut out = Vec::new();
        let durable_next = self.ledger.durable_next();
        if from_seq >= durable_next || limit == 0 {
            return Ok(out);
        }
        // At most `durable_next - from_seq` records are durable from here:
        // do not copy the unflushed ones after them out of the store.
        let durable = usize::try_from(durable_next - from_seq).unwrap_or(usize::MAX);
        let entries = self
            .store
            .scan(RECORD_PREFIX, &seq_key(from_seq), limit.min(durable))?;
        let mut damaged = Vec::new();
        for (k, v) in entries {
            let Ok(seq) = key_seq(&k) else { continue };
            if seq >= durable_next {
                break;
            }
            let len = v.len() as u64;
            match Record::from_bytes(v) {
                Ok(rec) => out.push((seq, rec)),
                Err(_) => damaged.push(Victim {
                    seq,
                    len,
                    reason: DropReason::StoreDamaged,
                }),
            }
        }
        self.remove_dropped(&damaged, now_ms)?;
        Ok(out)
    }

    /// Marks a record as handed to the broker: it will not be dropped until
    /// acknowledged or released.
    pub fn mark_in_flight(&mut self, seq: u64, len: usize) {
        self.in_flight.insert(seq, len as u64);
    }

    /// Forgets every in-flight mark (the session was lost; they will be sent again).
    pub fn release_in_flight(&mut self) {
        self.in_flight.clear();
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The broker acknowledged these seqs: remove them. Returns how many were present.
    pub fn ack(&mut self, seqs: &[u64]) -> Result<usize, StoreError> {
        let mut batch = WriteBatch::default();
        let mut freed = 0u64;
        let mut removed = 0usize;
        for &seq in seqs {
            let len = match self.in_flight.get(&seq) {
                Some(&len) => Some(len),
                None => self.store.get(&seq_key(seq))?.map(|v| v.len() as u64),
            };
            if let Some(len) = len {
                batch.remove(seq_key(seq).to_vec());
                freed += len;
                removed += 1;
            }
        }
        if batch.is_empty() {
            return Ok(0);
        }
        self.store.apply(batch)?;
        for seq in seqs {
            self.in_flight.remove(seq);
        }
        self.bytes = self.bytes.saturating_sub(freed);
        self.count = self.count.saturating_sub(removed as u64);
        Ok(removed)
    }

    /// Creation time of the oldest record, for `health`.
    pub fn oldest_created_ms(&self) -> Result<Option<u64>, StoreError> {
        let first = self.store.scan(RECORD_PREFIX, &seq_key(0), 1)?;
        Ok(first
            .first()
            .and_then(|(_, v)| Record::decode(v).ok())
            .map(|r| r.created_ms))
    }
}
