//! Recovery: opening the outbox's sled store, moving a damaged one aside,
//! and reopening the store after it failed (a full disk).
//!
//! The decisions are pure functions ([`moves_aside`], [`check_id_file`],
//! [`moved_aside_path`], [`parse_store_id`]); [`open`] and [`recover`] are
//! the thin shells that apply them to the file system and the store.
//!
//! Invariants:
//! - a store that does not open (an error or a panic inside sled), holds a
//!   record that fails its checksum, or no longer holds the id written in
//!   the `store_id` file beside it is damaged: it is renamed to
//!   `<dir>.damaged-<now_ms>` (never deleted), a fresh store with a new id
//!   is opened in its place, and that store's first record is a
//!   `store_damaged` gap naming the lost store;
//! - a store holding records of a *newer* format is not damage: opening
//!   fails with [`OutboxError::FutureFormat`] and nothing is moved;
//! - after a full disk the store is reopened from what is durable; the
//!   records appended since the last good flush are lost, their seqs stay
//!   used, and they join the open gap so the loss is announced exactly.

use std::path::{Path, PathBuf};

use super::{
    META_NEXT_SEQ, META_PENDING_GAP, Outbox, OutboxError, OutboxOptions, SledStore, Store,
    WriteBatch,
};
use crate::message::{GapReport, Message};

/// Name of the file beside the store that holds its id.
pub(super) const STORE_ID_FILE: &str = "store_id";

/// What happened when a damaged store was replaced.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub moved_to: PathBuf,
    pub lost_store: Option<String>,
    pub cause: String,
}

/// Opens the outbox under `dir`, replacing a damaged store (see the module
/// invariants).
pub(super) fn open(
    dir: &Path,
    opts: OutboxOptions,
    now_ms: u64,
) -> Result<(Outbox<SledStore>, Option<Recovery>), OutboxError> {
    let id_file = read_store_id_file(dir);
    let attempt = SledStore::open(dir, opts.cache_capacity)
        .map_err(OutboxError::from)
        .and_then(|store| Outbox::from_store(store, opts.clone()))
        .and_then(|outbox| check_id_file(id_file.as_deref(), outbox.store_id()).map(|()| outbox));
    let err = match attempt {
        Ok(outbox) => return Ok((outbox, None)),
        Err(e) if !moves_aside(&e) => return Err(e),
        Err(e) => e,
    };
    let lost_store = id_file;
    let moved_to = moved_aside_path(dir, now_ms);
    std::fs::rename(dir, &moved_to).map_err(|source| OutboxError::MoveAside {
        from: dir.to_owned(),
        to: moved_to.clone(),
        source,
    })?;
    let mut outbox = Outbox::from_store(SledStore::open(dir, opts.cache_capacity)?, opts)?;
    let cause = err.to_string();
    outbox.append_raw(
        &Message::Gap(GapReport::StoreDamaged {
            ts: now_ms,
            lost_store: lost_store.clone(),
            detail: cause.clone(),
        }),
        now_ms,
    )?;
    outbox.stats.gaps_announced += 1;
    Ok((
        outbox,
        Some(Recovery {
            moved_to,
            lost_store,
            cause,
        }),
    ))
}

/// Whether a store that failed to open with `err` is damage to move aside.
/// Records of a newer release are not: refuse to start rather than move the
/// backlog aside.
pub(super) fn moves_aside(err: &OutboxError) -> bool {
    !matches!(err, OutboxError::FutureFormat { .. })
}

/// A store that opens but no longer holds the id written beside it has lost
/// its contents (sled may open a damaged directory as an empty database).
pub(super) fn check_id_file(file_id: Option<&str>, store_id: &str) -> Result<(), OutboxError> {
    match file_id {
        Some(id) if id != store_id => Err(OutboxError::Damaged(format!(
            "the store holds id {store_id} but was created as {id}"
        ))),
        _ => Ok(()),
    }
}

/// Where the damaged store under `dir` is moved: `<dir>.damaged-<now_ms>`.
pub(super) fn moved_aside_path(dir: &Path, now_ms: u64) -> PathBuf {
    PathBuf::from(format!("{}.damaged-{now_ms}", dir.display()))
}

/// A store id as written in the `store_id` file: 32 hex characters
/// (surrounding whitespace ignored); anything else names no store.
pub(super) fn parse_store_id(text: &str) -> Option<String> {
    let id = text.trim();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// The id of a store, written beside it as a plain file so it can be named
/// even when the store itself no longer opens.
fn read_store_id_file(dir: &Path) -> Option<String> {
    parse_store_id(&std::fs::read_to_string(dir.join(STORE_ID_FILE)).ok()?)
}

/// Reopens the store of `outbox` from what is durable and accounts for
/// what was lost; returns how many records were lost.
pub(super) fn recover<S: Store>(outbox: &mut Outbox<S>) -> Result<u64, OutboxError> {
    let old_next = outbox.ledger.next();
    outbox.store.reopen()?;
    let fresh = Outbox::from_store(outbox.store.clone(), outbox.opts.clone())?;
    let lost = outbox.ledger.lost_after_reopen(fresh.ledger.next());
    outbox.bytes = fresh.bytes;
    outbox.count = fresh.count;
    outbox.burst.reopened(fresh.burst.open_gap());
    let reason = outbox.burst.reason_for_lost_write();
    for seq in lost.clone() {
        outbox.note_drop(seq, reason);
    }
    let mut batch = WriteBatch::default();
    batch.insert(META_NEXT_SEQ, old_next.to_be_bytes());
    if let Some(gap) = outbox.burst.open_gap() {
        batch.insert(META_PENDING_GAP, gap.encode());
    }
    outbox.store.apply(batch)?;
    outbox.store.flush()?;
    outbox.ledger.recovered();
    Ok(lost.end - lost.start)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::message::Message;
    use crate::outbox::record::{self, Record, seq_key};
    use crate::outbox::{Body, Kind};

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn opts() -> OutboxOptions {
        OutboxOptions {
            max_size: 1 << 20,
            max_age: Duration::from_secs(3600),
            max_record: 1 << 16,
            cache_capacity: 1 << 20,
        }
    }

    /// A fresh directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "spindle-recovery-{}-{name}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_store_id_file_names_a_store_only_with_32_hex_characters() {
        assert_eq!(parse_store_id(&format!("  {ID}\n")), Some(ID.to_owned()));
        assert_eq!(parse_store_id(&ID[..31]), None);
        assert_eq!(parse_store_id(&format!("{}g", &ID[..31])), None);
        assert_eq!(parse_store_id(""), None);
    }

    #[test]
    fn a_damaged_store_is_moved_beside_itself_with_the_time_in_its_name() {
        assert_eq!(
            moved_aside_path(Path::new("/var/lib/spindle/outbox"), 1_700),
            PathBuf::from("/var/lib/spindle/outbox.damaged-1700")
        );
    }

    #[test]
    fn a_store_holding_another_id_than_the_file_beside_it_is_damaged() {
        assert!(check_id_file(None, ID).is_ok());
        assert!(check_id_file(Some(ID), ID).is_ok());
        let other = "f".repeat(32);
        let err = check_id_file(Some(&other), ID).unwrap_err();
        assert!(matches!(err, OutboxError::Damaged(_)), "{err}");
        assert!(moves_aside(&err));
    }

    #[test]
    fn records_of_a_newer_format_are_never_moved_aside() {
        let future = OutboxError::FutureFormat {
            version: 3,
            supported: record::FORMAT_VERSION,
        };
        assert!(!moves_aside(&future));
        assert!(moves_aside(&OutboxError::Damaged("checksum".into())));
    }

    #[test]
    fn a_store_that_lost_its_contents_is_moved_aside_and_replaced_by_one_that_reports_it() {
        let dir = scratch("lost");
        let (outbox, recovery) = open(&dir, opts(), 1_000).unwrap();
        assert!(recovery.is_none());
        let first_id = outbox.store_id().to_owned();
        drop(outbox);
        std::fs::write(dir.join(STORE_ID_FILE), ID).unwrap();

        let (mut outbox, recovery) = open(&dir, opts(), 2_000).unwrap();
        let recovery = recovery.unwrap();
        assert_eq!(recovery.moved_to, moved_aside_path(&dir, 2_000));
        assert_eq!(recovery.lost_store.as_deref(), Some(ID));
        assert!(recovery.cause.contains(&first_id), "{}", recovery.cause);
        assert!(recovery.moved_to.exists());
        assert_ne!(outbox.store_id(), first_id);
        outbox.flush().unwrap();
        let records = outbox.read(1, 10, 2_000).unwrap();
        let [(1, record)] = records.as_slice() else {
            panic!("one record, the gap: {records:?}");
        };
        assert_eq!(record.kind, Kind::Gap);
        let Body::Message(bytes) = &record.body else {
            panic!("a typed message");
        };
        let message = crate::message::decode(bytes).unwrap();
        assert!(
            matches!(
                message,
                Message::Gap(GapReport::StoreDamaged { ts: 2_000, lost_store: Some(ref s), .. }) if s == ID
            ),
            "{message:?}"
        );
        assert_eq!(outbox.stats().gaps_announced, 1);
        drop(outbox);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&recovery.moved_to);
    }

    #[test]
    fn a_store_of_a_newer_format_refuses_to_open_and_stays_where_it_is() {
        let dir = scratch("future");
        let (outbox, _) = open(&dir, opts(), 1_000).unwrap();
        let gap: Message = Message::Gap(GapReport::StoreDamaged {
            ts: 1_000,
            lost_store: None,
            detail: String::new(),
        });
        let encoded = crate::message::encode(&gap).unwrap();
        let mut bytes = Record::message(Kind::Gap, 1_000, encoded).encode();
        let crc_at = bytes.len() - 4;
        bytes[0] = record::FORMAT_VERSION + 1;
        let crc = crc32fast::hash(&bytes[..crc_at]).to_be_bytes();
        bytes[crc_at..].copy_from_slice(&crc);
        let mut batch = WriteBatch::default();
        batch.insert(seq_key(1), bytes);
        outbox.store().apply(batch).unwrap();
        outbox.store().flush().unwrap();
        drop(outbox);

        let err = open(&dir, opts(), 2_000).unwrap_err();
        assert!(
            matches!(err, OutboxError::FutureFormat { version, .. } if version == record::FORMAT_VERSION + 1),
            "{err}"
        );
        assert!(dir.exists());
        assert!(!moved_aside_path(&dir, 2_000).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
