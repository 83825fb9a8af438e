//! The publisher: the one task that owns the outbox. It appends what the
//! rest of the agent sends it, runs the group commit, hands durable records
//! to the MQTT client within a bounded window, and deletes a record only when
//! the broker's PUBACK for it arrives.
//!
//! Flow: [`Outgoing`] typed messages (bounded channel) → [`Outbox::append`]
//! (the message's binary encoding) → flush (on a
//! blocking thread; as soon as there is something unflushed and no flush is
//! running) → `durable_next` advances → [`DeliveryState::lanes`] say what to
//! read → rendered by `crate::wire` → `try_publish` → `Outgoing::Publish(pkid)` → `PubAck(pkid)` →
//! [`Outbox::ack`]. After every (re)connect the delivery state restarts, so
//! every record still in the outbox is published again (at-least-once).
//!
//! With the `thingsboard` dialect consecutive telemetry and KPI records go
//! out in batches (`wire::thingsboard::batch`) within `max_message` bytes;
//! a batch's PUBACK acknowledges all its records, and a batch resent in the
//! same run carries the same records. Before a device's first record in a
//! session its `connect` and attributes are published, after an offline
//! availability its `disconnect` (session messages, not stored).
//!
//! Retained topics (`availability/*`): a record older than one already
//! published on the same topic goes out without the retain flag, so a
//! backlog drained after live data never overwrites a newer retained state.
//!
//! Backlog pacing: with `[buffer] replay_rate`, the backlog lane takes a
//! token per record from a bucket refilled at that rate — with the
//! `thingsboard` dialect a batch takes one per record it carries; the live
//! lane takes none and is offered first, so live data is never held behind
//! the cap. A backlog held back wakes the loop when its next token is due.
//! Both dialects go through one pump (`pump_lane`).
//!
//! Parts: `commit` (the group-commit policy: when a flush may start,
//! whether messages are taken meanwhile), [`state`] (what to publish next,
//! the packet id → seq map), `token_bucket` (the backlog's pace),
//! [`connection`] (the MQTT event loop). This file is the I/O loop that
//! applies them.

mod commit;
pub mod connection;
pub mod state;
mod token_bucket;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::events::Counters;
use crate::message::{self, Message, Outgoing, Reachability, Status, StatusReason};
use crate::outbox::{AppendError, Body, Outbox, Store, StoreError};
use crate::wire::{Dialect, thingsboard as tb};
pub use commit::MAX_UNFLUSHED;
use commit::{FlushDue, GroupCommit};
use connection::{ConnEvent, ConnectionSettings};
use state::DeliveryState;
use token_bucket::Pace;

/// Publisher settings.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// `{prefix}/{site}/{agent}/` (format-1 records go out under it).
    pub topic_base: String,
    /// How messages are rendered.
    pub dialect: Dialect,
    /// Records in flight at most.
    pub window: usize,
    /// Backlog records handed to the client per second at most (`None`:
    /// unlimited); live records are not counted.
    pub replay_rate: Option<NonZeroU32>,
    /// The `status` payload's store, version and configuration hash.
    pub status: Status,
    /// Largest rendered message (payload and topic) accepted: the MQTT
    /// packet limit. A larger one is refused at append and uses no seq.
    pub max_message: usize,
    /// A flush slower than this is counted (it bounds data at risk).
    pub flush_interval: Duration,
}

/// The publisher task.
pub struct Publisher<S: Store> {
    outbox: Outbox<S>,
    opts: PublisherOptions,
    delivery: DeliveryState,
    client: Option<AsyncClient>,
    /// Highest seq published per retained topic (this process's lifetime).
    retained_latest: HashMap<String, u64>,
    /// `thingsboard`: devices connected in this MQTT session.
    tb_connected: HashSet<tb::Subject>,
    counters: Arc<Counters>,
    flushing: Option<Flush>,
    /// The store failed (a full disk): no flush until it is recovered, which
    /// is tried at this instant.
    store_failed: Option<Instant>,
    /// When flushes start and whether messages are taken meanwhile.
    commit: GroupCommit,
    /// The backlog's pace (`replay_rate`).
    pace: Pace,
    /// Who else sees each message as it arrives (the HTTP live view).
    tap: Option<Arc<dyn crate::message::Tap>>,
}

/// A flush running on a blocking thread: the seq bound it makes durable, when it started.
type Flush = (u64, Instant, JoinHandle<Result<(), StoreError>>);

impl<S: Store> std::fmt::Debug for Publisher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

/// Records read per lane and turn with the `thingsboard` dialect (a batch
/// takes many).
const TB_READ: usize = 1024;

/// How a lane's turn of the pump ended.
enum Turn {
    /// The window is full, the client's queue is full or a read failed:
    /// no other lane goes either.
    Stop,
    /// `replay_rate` holds the lane back until this instant.
    Held(Option<tokio::time::Instant>),
    /// Nothing more to hand over from this lane now.
    Done,
}

/// What became of a batch.
enum BatchOutcome {
    /// Published, carrying this many records.
    Sent(usize),
    /// The client's queue is full (or nothing to send): wait for progress.
    QueueFull,
    /// It may go on past the records read: read again from its start.
    PastRead,
}

/// A timer the loop waits on.
type Timer = std::pin::Pin<Box<tokio::time::Sleep>>;

/// Waits for `timer`; forever when there is none.
async fn expiry(timer: &mut Option<Timer>) {
    match timer {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Sets `timer` to `at` (none for `None`), touching it only when the
/// deadline changes (arming a timer can wake the runtime's driver).
fn rearm(timer: &mut Option<Timer>, at: Option<tokio::time::Instant>) {
    match (timer.as_mut(), at) {
        (Some(t), Some(at)) if t.deadline() == at => {}
        (Some(t), Some(at)) => t.as_mut().reset(at),
        (None, Some(at)) => *timer = Some(Box::pin(tokio::time::sleep_until(at))),
        (_, None) => *timer = None,
    }
}

/// How many queued messages one wake-up appends at most before flushing.
const APPEND_BATCH: usize = 4096;

impl<S: Store> Publisher<S> {
    pub fn new(
        outbox: Outbox<S>,
        opts: PublisherOptions,
        replay: spindle_config::model::Replay,
        counters: Arc<Counters>,
    ) -> Self {
        let delivery = DeliveryState::new(opts.window, replay);
        let commit = GroupCommit::new(opts.flush_interval);
        let pace = Pace::new(opts.replay_rate, tokio::time::Instant::now());
        Publisher {
            outbox,
            opts,
            delivery,
            client: None,
            retained_latest: HashMap::new(),
            tb_connected: HashSet::new(),
            counters,
            flushing: None,
            store_failed: None,
            commit,
            pace,
            tap: None,
        }
    }

    /// Shows every message to `tap` as it arrives, before it is stored.
    #[must_use]
    pub fn with_tap(mut self, tap: Arc<dyn crate::message::Tap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Runs until `messages` is closed (every producer stopped), then
    /// flushes, gives in-flight messages up to `drain` to be acknowledged,
    /// publishes the clean `status` offline and returns.
    pub async fn run(
        mut self,
        settings: ConnectionSettings,
        mut messages: mpsc::Receiver<Outgoing>,
        drain: Duration,
    ) -> Outbox<S> {
        let (conn_tx, mut conn_rx) = mpsc::channel(4096);
        let (stop_tx, stop_rx) = watch::channel(false);
        let conn_task = tokio::spawn(connection::run(settings, conn_tx, stop_rx));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        // One timer for flushes held back by the gather time, moved only when
        // its deadline changes: registering a timer earlier than the
        // driver's next wake-up writes to its eventfd, and a fresh timer
        // each turn of the loop did so thousands of times a second.
        let flush_timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(flush_timer);
        let mut flush_timer_at: Option<tokio::time::Instant> = None;
        let mut pace_timer: Option<Timer> = None; // a backlog held back by `replay_rate`
        loop {
            // A flush held back by the gather time starts when its time comes.
            let flush_at = self.start_flush_if_due();
            if !open {
                let done = self.flushing.is_none()
                    && !self.outbox.needs_flush()
                    && (self.delivery.in_flight() == 0 || !self.delivery.is_connected());
                let deadline =
                    *drain_deadline.get_or_insert_with(|| tokio::time::Instant::now() + drain);
                if done || tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            if let Some(at) = flush_at
                && flush_timer_at != Some(at)
            {
                flush_timer.as_mut().reset(at);
                flush_timer_at = Some(at);
            }
            let accepting = self.take_messages();
            let flush_wait = async {
                match self.flushing.as_mut() {
                    Some((_, _, handle)) => Some(handle.await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = conn_rx.recv() => match ev {
                    Some(ev) => self.on_conn_event(ev),
                    None => self.on_conn_event(ConnEvent::Down("connection task ended".into())),
                },
                joined = flush_wait => {
                    if let Some(joined) = joined {
                        self.on_flush_done(joined);
                    }
                },
                msg = messages.recv(), if open && accepting => match msg {
                    Some(msg) => {
                        self.append(msg);
                        let mut n = 1;
                        while n < APPEND_BATCH && self.accepting() {
                            let Ok(msg) = messages.try_recv() else { break };
                            self.append(msg);
                            n += 1;
                        }
                    }
                    None => open = false,
                },
                _ = tick.tick() => self.on_tick(),
                () = &mut flush_timer, if flush_at.is_some() => flush_timer_at = None,
                () = expiry(&mut pace_timer) => pace_timer = None,
                () = async {
                    match drain_deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            rearm(&mut pace_timer, self.pump());
        }
        // Final flush: anything appended is made durable before exit.
        if let Some((bound, _, handle)) = self.flushing.take()
            && let Ok(Ok(())) = handle.await
        {
            self.outbox.flush_done(bound);
        }
        if let Err(e) = self.outbox.flush() {
            tracing::error!(error = %e, "Final outbox flush failed; the newest messages may be lost");
        }
        self.goodbye(&mut conn_rx).await;
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), conn_task).await;
        self.outbox
    }

    /// Publishes the clean `status` offline and gives it a moment to reach
    /// the broker before DISCONNECT.
    async fn goodbye(&self, conn_rx: &mut mpsc::Receiver<ConnEvent>) {
        let Some(client) = &self.client else {
            return;
        };
        let goodbye = connection::status_publish(
            &self.opts.dialect,
            &self.opts.status,
            Reachability::Offline,
            Some(StatusReason::Shutdown),
        );
        let _ = client.try_publish(
            goodbye.topic,
            QoS::AtLeastOnce,
            goodbye.retain,
            goodbye.payload,
        );
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while let Some(ev) = conn_rx.recv().await {
                if matches!(ev, ConnEvent::Sent(_)) {
                    break;
                }
            }
        })
        .await;
    }

    fn append(&mut self, out: Outgoing) {
        if let Some(tap) = &self.tap {
            match &out {
                Outgoing::Message(msg) => tap.observe(msg),
                Outgoing::Atomic { messages, .. } => messages.iter().for_each(|m| tap.observe(m)),
            }
        }
        match out {
            Outgoing::Message(msg) => self.append_one(&msg),
            Outgoing::Atomic { messages, meta } => {
                if let Some(big) = messages.iter().find(|m| !self.fits(m)) {
                    self.counters.outbox_refused_too_large.inc();
                    tracing::error!(
                        topic = %self.opts.dialect.label(big),
                        max = self.opts.max_message,
                        "A KPI message larger than the packet limit was refused; the batch is lost"
                    );
                    return;
                }
                let meta = meta.as_ref().map(|(k, v)| (k.as_slice(), v.as_slice()));
                match self.outbox.append_atomic(&messages, meta, now_ms()) {
                    Ok(seqs) => self.counters.outbox_appended.add(seqs.len() as u64),
                    Err(e) => self.append_failed(&e, "a KPI batch"),
                }
            }
        }
    }

    /// Whether a message's rendering fits the packet limit.
    fn fits(&self, msg: &Message) -> bool {
        self.opts.dialect.fits(msg, self.opts.max_message)
    }

    fn append_one(&mut self, msg: &Message) {
        if !self.fits(msg) {
            self.counters.outbox_refused_too_large.inc();
            tracing::error!(topic = %self.opts.dialect.label(msg), max = self.opts.max_message, "Message larger than the packet limit was refused; it is lost");
            return;
        }
        match self.outbox.append(msg, now_ms()) {
            Ok(_) => self.counters.outbox_appended.inc(),
            Err(e) => self.append_failed(&e, "a message"),
        }
    }

    fn append_failed(&mut self, e: &AppendError, what: &str) {
        match e {
            AppendError::TooLarge { len, max } => {
                self.counters.outbox_refused_too_large.inc();
                tracing::error!(
                    len,
                    max,
                    "The outbox refused {what} larger than its record limit; it is lost"
                );
            }
            AppendError::Encode(e) => {
                self.counters.outbox_refused_too_large.inc();
                tracing::error!(error = %e, "Could not encode {what}; it is lost");
            }
            AppendError::Store(e) => self.store_failure(e),
        }
    }

    /// A write the store refused: counted always, logged once per failure streak.
    fn store_failure(&mut self, e: &StoreError) {
        self.counters.outbox_store_errors.inc();
        if self.store_failed.is_none() {
            tracing::error!(error = %e, "Outbox write failed (disk full?); messages are dropped and will be announced on gap; recovering the store every second");
            self.store_failed = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// False while a running flush has [`MAX_UNFLUSHED`] bytes appended behind it.
    fn accepting(&self) -> bool {
        commit::accepting(self.flushing.is_some(), self.outbox.unflushed_bytes())
    }

    /// [`Self::accepting`], counting each stop behind a slow flush once.
    fn take_messages(&mut self) -> bool {
        let take = self
            .commit
            .take_messages(self.flushing.is_some(), self.outbox.unflushed_bytes());
        if take.wait_began {
            self.counters.outbox_flush_waits.inc();
        }
        take.accepting
    }

    /// Starts a flush if one is due; else when one wanted will be due (held
    /// back by the group commit's gather time), if any.
    fn start_flush_if_due(&mut self) -> Option<tokio::time::Instant> {
        let wanted =
            self.flushing.is_none() && self.store_failed.is_none() && self.outbox.needs_flush();
        let now = tokio::time::Instant::now();
        if let FlushDue::At(at) = self.commit.next_flush(wanted, now)? {
            return Some(at);
        }
        self.commit.started(now);
        match self.outbox.begin_flush() {
            Ok(bound) => {
                let store = self.outbox.store();
                let handle = tokio::task::spawn_blocking(move || store.flush());
                self.flushing = Some((bound, Instant::now(), handle));
            }
            Err(e) => self.store_failure(&e),
        }
        None
    }

    fn on_flush_done(&mut self, joined: Result<Result<(), StoreError>, tokio::task::JoinError>) {
        let Some((bound, started, _)) = self.flushing.take() else {
            return;
        };
        match joined {
            Ok(Ok(())) => {
                self.outbox.flush_done(bound);
                self.counters.outbox_flushes.inc();
                if self.commit.is_slow(started.elapsed()) {
                    self.counters.outbox_slow_flushes.inc();
                }
            }
            Ok(Err(e)) => self.store_failure(&e),
            Err(e) => tracing::error!(error = %e, "Outbox flush task failed; retrying"),
        }
    }

    fn on_tick(&mut self) {
        self.counters.publisher_ticks.inc();
        self.counters
            .mqtt_in_flight
            .set(self.delivery.in_flight() as u64);
        if let Some(at) = self.store_failed
            && Instant::now() >= at
        {
            match self.outbox.recover() {
                Ok(lost) => {
                    self.store_failed = None;
                    tracing::warn!(
                        lost,
                        "Outbox store recovered; the lost messages are announced on gap"
                    );
                }
                Err(e) => {
                    self.counters.outbox_store_errors.inc();
                    tracing::debug!(error = %e, "Outbox store not recovered yet");
                    self.store_failed = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
        if let Err(e) = self.outbox.enforce_limits(now_ms()) {
            self.counters.outbox_store_errors.inc();
            tracing::warn!(error = %e, "Outbox limits could not be enforced this time");
        }
        let stats = self.outbox.stats();
        self.counters
            .set_outbox_levels(&stats, self.delivery.backlog_remaining());
        if let Ok(oldest) = self.outbox.oldest_created_ms() {
            self.counters.outbox_oldest_ms.set(oldest.unwrap_or(0));
        }
    }

    fn on_conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Up(client) => {
                self.counters.mqtt_connects.inc();
                self.counters.mqtt_connected.set(1);
                self.outbox.release_in_flight();
                self.delivery.connected(self.outbox.next_seq());
                self.tb_connected.clear();
                let birth = connection::status_publish(
                    &self.opts.dialect,
                    &self.opts.status,
                    Reachability::Online,
                    None,
                );
                if client
                    .try_publish(birth.topic, QoS::AtLeastOnce, birth.retain, birth.payload)
                    .is_ok()
                {
                    self.delivery.handed_untracked();
                }
                self.client = Some(client);
                tracing::info!(
                    backlog = self.outbox.stats().depth,
                    "MQTT connected; sending every unacknowledged message"
                );
            }
            ConnEvent::Sent(pkid) => self.delivery.outgoing(pkid),
            ConnEvent::Acked(pkid) => {
                let seqs = self.delivery.puback(pkid);
                if !seqs.is_empty() {
                    match self.outbox.ack(&seqs) {
                        Ok(_) => self.counters.published_acked.add(seqs.len() as u64),
                        Err(e) => {
                            self.counters.outbox_store_errors.inc();
                            tracing::warn!(error = %e, seq = seqs.first().copied().unwrap_or_default(), "Could not delete an acknowledged message; it may be sent again");
                        }
                    }
                }
            }
            ConnEvent::AuthRefused => self.counters.mqtt_auth_refused.inc(),
            ConnEvent::Down(reason) => {
                self.counters.mqtt_disconnects.inc();
                self.counters.mqtt_connected.set(0);
                tracing::debug!(reason = %reason, "MQTT session ended");
                self.client = None;
                self.delivery.disconnected();
                self.outbox.release_in_flight();
            }
        }
    }

    /// Hands durable records to the client while the window has room and,
    /// for the backlog, while `replay_rate` allows. Returns when a backlog
    /// held back by `replay_rate` may go on.
    fn pump(&mut self) -> Option<tokio::time::Instant> {
        let client = self.client.clone()?;
        let gw = match &self.opts.dialect {
            Dialect::ThingsBoard(gw) => Some(gw.clone()),
            Dialect::Spindle { .. } => None,
        };
        let store = self.outbox.store_id().to_owned();
        let now = tokio::time::Instant::now();
        let mut held_until = None;
        for lane in self.delivery.lanes() {
            match self.pump_lane(&client, gw.as_deref(), lane, &store, now) {
                Turn::Stop => return held_until,
                Turn::Held(at) => held_until = at,
                Turn::Done => {}
            }
        }
        held_until
    }

    /// One lane's turn of [`Self::pump`]. Spindle: one record per publish.
    /// `thingsboard`: consecutive telemetry and KPI records go out in
    /// batches under the packet limit (a batch handed over before is
    /// rebuilt with the same records); availability, health and gap go
    /// alone; a device is connected (connect, attributes) before the first
    /// publish that carries its data in this session, and disconnected
    /// after an offline availability. Pacing counts records, not
    /// publishes: a batch takes a token per record it carries, a new batch
    /// carries at most the tokens at hand, and a repeated batch (which must
    /// carry the same records) goes when one token is there and leaves the
    /// bucket owing the rest.
    fn pump_lane(
        &mut self,
        client: &AsyncClient,
        gw: Option<&tb::Gateway>,
        lane: state::Lane,
        store: &str,
        now: tokio::time::Instant,
    ) -> Turn {
        let mut handed_any = false;
        let mut from = lane.from;
        'read: loop {
            let room = self.delivery.room();
            if room == 0 {
                return Turn::Stop;
            }
            let budget = self.pace.budget(lane, room, now);
            if budget == 0 {
                return Turn::Held(self.pace.resume_at(now));
            }
            // A batch takes many records: read more than the window.
            let want = if gw.is_some() { TB_READ } else { budget };
            let records = match self.outbox.read(from, want, now_ms()) {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(error = %e, "Outbox read failed");
                    return Turn::Stop;
                }
            };
            // A batch that reaches the end of a full read may go on past
            // it: it is read again from its start (unless it starts the read).
            let full = records.len() == want;
            let mut i = 0;
            while let Some((seq, record)) = records.get(i) {
                let seq = *seq;
                if seq >= lane.below {
                    break;
                }
                if self.delivery.room() == 0 {
                    return Turn::Stop;
                }
                let tokens = self.pace.budget(lane, usize::MAX, now);
                if tokens == 0 {
                    return Turn::Held(self.pace.resume_at(now));
                }
                let len = record.encoded_len();
                let taken = match &record.body {
                    Body::Rendered { topic, payload } => {
                        // A format-1 record (an older release) goes out as stored.
                        let topic = format!("{}{topic}", self.opts.topic_base);
                        let retain = gw.is_none() && record.retain;
                        if !self.publish_one(client, (seq, len), topic, payload.clone(), retain) {
                            return Turn::Stop; // the client's queue is full: wait for progress
                        }
                        1
                    }
                    Body::Message(bytes) => match message::decode(bytes) {
                        Err(e) => {
                            self.discard_damaged(seq, len, &e);
                            i += 1;
                            continue;
                        }
                        Ok(msg) => match gw {
                            None => {
                                let r = self.opts.dialect.render(&msg, seq, store);
                                let payload = r.payload.into_bytes();
                                if !self.publish_one(client, (seq, len), r.topic, payload, r.retain)
                                {
                                    return Turn::Stop;
                                }
                                1
                            }
                            Some(gw) if tb::batchable(&msg) => {
                                let run = records.get(i..).unwrap_or_default();
                                let go_past = full && i > 0;
                                match self
                                    .publish_batch(client, gw, run, lane, store, go_past, tokens)
                                {
                                    BatchOutcome::Sent(n) => n,
                                    BatchOutcome::QueueFull => return Turn::Stop,
                                    BatchOutcome::PastRead => {
                                        from = seq;
                                        continue 'read;
                                    }
                                }
                            }
                            Some(gw) => {
                                if !self.publish_alone(client, gw, &msg, (seq, len), store) {
                                    return Turn::Stop;
                                }
                                1
                            }
                        },
                    },
                };
                self.pace.spent(lane, taken, now);
                handed_any = true;
                i += taken;
            }
            break;
        }
        // The backlog is drained once nothing is left below its bound
        // and all of it is durable (an unflushed record is not there yet).
        if !handed_any && lane.below <= self.outbox.durable_next() {
            self.delivery.backlog_drained(lane);
        }
        Turn::Done
    }

    /// Publishes one record alone (retained only if no newer record of its
    /// topic went out); false when the client's queue is full.
    fn publish_one(
        &mut self,
        client: &AsyncClient,
        (seq, len): (u64, usize),
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> bool {
        let retain = retain && self.retain_allowed(&topic, seq);
        if client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_err()
        {
            return false;
        }
        self.handed(&[(seq, len)]);
        true
    }

    /// Drops a record that does not decode; it is reported on `gap`.
    fn discard_damaged(&mut self, seq: u64, len: usize, e: &postcard::Error) {
        tracing::error!(seq, error = %e, "An outbox record does not decode; it is dropped and reported on gap");
        if let Err(e) = self.outbox.discard_damaged(seq, len as u64, now_ms()) {
            tracing::warn!(error = %e, "Could not drop the damaged record");
        }
    }

    /// Publishes the batch that starts at `run[0]` (a batchable record):
    /// the one handed over before if there is one, else as many
    /// consecutive batchable records as fit. With `may_go_past` (a full
    /// read that this batch does not start), a batch that would take every
    /// record to the end of the read is not sent: it is read again from
    /// its first record, so that it is the same batch however reads fall.
    /// A new batch carries at most `limit` records (the backlog's tokens);
    /// a repeated one carries what it carried before.
    #[allow(clippy::too_many_arguments)]
    fn publish_batch(
        &mut self,
        client: &AsyncClient,
        gw: &tb::Gateway,
        run: &[(u64, crate::outbox::Record)],
        lane: state::Lane,
        store: &str,
        may_go_past: bool,
        limit: usize,
    ) -> BatchOutcome {
        let Some(first) = run.first().map(|(seq, _)| *seq) else {
            return BatchOutcome::QueueFull;
        };
        let remembered: Option<Vec<u64>> = self.delivery.batch_at(first).map(<[u64]>::to_vec);
        let mut entries: Vec<(u64, tb::Entry)> = Vec::new();
        let mut subjects: Vec<tb::Subject> = Vec::new();
        let mut lens = Vec::new();
        let mut bytes = 0;
        for (seq, record) in run {
            if *seq >= lane.below {
                break;
            }
            match &remembered {
                Some(seqs) if !seqs.contains(seq) => break,
                Some(_) => {}
                None => {
                    // Enough to fill a packet; and never into a batch handed before.
                    if bytes > self.opts.max_message
                        || entries.len() >= limit
                        || (!entries.is_empty() && self.delivery.batch_at(*seq).is_some())
                    {
                        break;
                    }
                }
            }
            let Body::Message(body) = &record.body else {
                break;
            };
            let Ok(msg) = message::decode(body) else {
                break;
            };
            if !tb::batchable(&msg) {
                break;
            }
            let Some(entry) = tb::entry(gw, &msg, *seq, store) else {
                break;
            };
            bytes += entry.json.len() + entry.device.len() + 8;
            subjects.push(tb::subject(&msg));
            lens.push((*seq, record.encoded_len()));
            entries.push((*seq, entry));
        }
        // The batch would take every record up to the end of the read:
        // there may be more of it (a remembered batch's rest, or more that
        // fit) past the read.
        if may_go_past && entries.len() == run.len() {
            return BatchOutcome::PastRead;
        }
        let batch = if remembered.is_some() {
            let only: Vec<tb::Entry> = entries.iter().map(|(_, e)| e.clone()).collect();
            tb::Batch {
                seqs: entries.iter().map(|(seq, _)| *seq).collect(),
                payload: tb::gateway_telemetry(&only),
            }
        } else {
            tb::batch(&entries, self.opts.max_message)
        };
        let n = batch.seqs.len();
        if n == 0 {
            return BatchOutcome::QueueFull;
        }
        for subject in subjects.iter().take(n) {
            if !self.connect_device(client, gw, subject) {
                return BatchOutcome::QueueFull;
            }
        }
        if client
            .try_publish(
                tb::GATEWAY_TELEMETRY,
                QoS::AtLeastOnce,
                false,
                batch.payload,
            )
            .is_err()
        {
            return BatchOutcome::QueueFull;
        }
        self.handed(lens.get(..n).unwrap_or_default());
        BatchOutcome::Sent(n)
    }

    /// Publishes a record that goes alone (availability, health, gap),
    /// connecting its device first and, after an offline availability,
    /// disconnecting it; false when the client's queue is full.
    fn publish_alone(
        &mut self,
        client: &AsyncClient,
        gw: &tb::Gateway,
        msg: &Message<&str>,
        (seq, len): (u64, usize),
        store: &str,
    ) -> bool {
        let subject = tb::subject(msg);
        if subject != tb::Subject::Gateway && !self.connect_device(client, gw, &subject) {
            return false;
        }
        let (topic, payload) = tb::render(gw, msg, seq, store);
        if client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .is_err()
        {
            return false;
        }
        self.handed(&[(seq, len)]);
        if let Message::Availability(a) = msg
            && a.state == Reachability::Offline
        {
            let bye = tb::disconnect(gw, &subject);
            if client
                .try_publish(tb::DISCONNECT, QoS::AtLeastOnce, false, bye)
                .is_ok()
            {
                self.delivery.handed_untracked();
            }
            self.tb_connected.remove(&subject);
        }
        true
    }

    /// Publishes `connect` and the attributes of a device not yet connected
    /// in this session; false when the client's queue is full.
    fn connect_device(
        &mut self,
        client: &AsyncClient,
        gw: &tb::Gateway,
        subject: &tb::Subject,
    ) -> bool {
        if self.tb_connected.contains(subject) {
            return true;
        }
        for (topic, payload) in [
            (tb::CONNECT, tb::connect(gw, subject)),
            (tb::GATEWAY_ATTRIBUTES, tb::attributes(gw, subject)),
        ] {
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                return false;
            }
            self.delivery.handed_untracked();
        }
        self.tb_connected.insert(subject.clone());
        true
    }

    /// One publish carrying these records (seq, record length) was handed over.
    fn handed(&mut self, records: &[(u64, usize)]) {
        let seqs: Vec<u64> = records.iter().map(|(seq, _)| *seq).collect();
        self.delivery.handed_batch(&seqs);
        for &(seq, len) in records {
            self.outbox.mark_in_flight(seq, len);
        }
        self.counters.published.add(records.len() as u64);
    }

    fn retain_allowed(&mut self, topic: &str, seq: u64) -> bool {
        match self.retained_latest.get(topic) {
            Some(&latest) if latest > seq => false,
            _ => {
                self.retained_latest.insert(topic.to_owned(), seq);
                true
            }
        }
    }
}
