//! Reading partitions by assignment up to "the end as of now": the consent
//! partitions (rebuild on assignment, then tailing before every event batch)
//! and the changelog partitions (state restore); plus the offset queries
//! (end and start offsets) that the readers and the lag gauge rely on.
//!
//! "Caught up" for a partition means every record committed before the end
//! offset was queried has been handed to the caller. It is decided by
//! offsets alone, never by waiting:
//! - librdkafka's application position (`position()`) moves past every
//!   record delivered *and* past transaction control markers, which are
//!   never delivered: a partition whose position reaches the queried end is
//!   caught up;
//! - offsets that neither deliver a record nor move the position (empty
//!   batches that compaction leaves behind, e.g. of deleted tombstones) are
//!   settled by a probe: a fresh client assigned at the position reads
//!   forward; if the first record it finds is at or past the end, nothing
//!   deliverable lies before the end (its end-of-partition report is not
//!   trusted: one was seen before a large record below the end). The
//!   probe is only asked once the reader's own fetcher reported the end of
//!   the partition while the position was still short of it; that report is
//!   a hint to probe, never a verdict (it may predate the end query).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::client_config;
use crate::error::KafkaError;
use crate::settings::KafkaSettings;

/// Timeout of one offset query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an assignment waits for the topic's metadata (see
/// [`fetch_metadata`]).
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a tail probe may read before it gives up (an error, retried by
/// the caller's loop; never taken as "caught up").
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// A partition short of its end that delivered nothing for this long is
/// probed even without an end-of-partition report (which librdkafka sends
/// once per arrival at the end, and not again while its fetcher idles
/// there); and if the probe finds records the reader does not deliver (its
/// fetcher wedged, e.g. after a broker restart), the reader is assigned
/// again at its positions. Only the time to look again, never a verdict.
const STUCK_AFTER: Duration = Duration::from_secs(2);
/// A read that delivered nothing and moved no position for this long,
/// although records wait, fails: the caller aborts and rebuilds (and the
/// partition's stall clock keeps running) instead of waiting here for
/// good, out of sight of the lag and stall gauges.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// Client context of readers: end-of-partition is expected here, not an
/// error worth logging.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::client_log::forward_log(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        if !matches!(error, RdKafkaError::PartitionEOF(_))
            && !reason.contains("reached end of partition")
        {
            tracing::warn!(target: crate::client_log::TARGET, error = %error, "{reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// End and start offsets of one topic's partitions, on a client of its own:
/// on a reader's connection a query waits behind its long-polling fetch.
pub struct OffsetQuery {
    consumer: BaseConsumer<ReaderContext>,
    /// A `read_uncommitted` twin for high watermarks, made on first use
    /// (only readers that wait for settled ends need one).
    uncommitted: OnceLock<BaseConsumer<ReaderContext>>,
    settings: KafkaSettings,
    purpose: String,
    topic: String,
}

impl OffsetQuery {
    /// A query client for `topic` (`read_committed`, so "end" is the last
    /// stable offset).
    pub fn new(settings: &KafkaSettings, purpose: &str, topic: &str) -> Result<Self, KafkaError> {
        Ok(Self {
            consumer: client_config::reader(settings, purpose)
                .create_with_context(ReaderContext)?,
            uncommitted: OnceLock::new(),
            settings: settings.clone(),
            purpose: purpose.to_owned(),
            topic: topic.to_owned(),
        })
    }

    /// End offsets of `partitions` once no transaction is pending on them
    /// (last stable offset = high watermark), waiting up to `max_wait`.
    ///
    /// A transaction's commit returns to its producer once the coordinator
    /// has logged the decision; the markers that make its records readable
    /// are written to each partition afterwards, one by one. So the group's
    /// committed offsets (one marker) can show a batch as done while an
    /// output partition's stable offset (another marker) still stops short
    /// of that batch's records. A reader that must see everything the
    /// committed offsets account for waits here for pending transactions to
    /// end. Only for readers of outputs written by others (the system tests
    /// read the topics this way): the pipeline's changelog restore does not
    /// wait, because a transaction of its own producer was seen pending on
    /// the changelog for minutes after a broker outage.
    pub fn settled_end_offsets(
        &self,
        partitions: &[i32],
        max_wait: Duration,
        shutdown: &CancellationToken,
    ) -> Result<HashMap<i32, i64>, KafkaError> {
        let started = Instant::now();
        loop {
            let stable = self.end_offsets(partitions)?;
            let high = self.high_watermarks(partitions)?;
            let pending: Vec<(i32, i64, i64)> = partitions
                .iter()
                .filter_map(|p| {
                    let (lso, hw) = (stable.get(p).copied()?, high.get(p).copied()?);
                    (lso < hw).then_some((*p, lso, hw))
                })
                .collect();
            if pending.is_empty() {
                return Ok(stable);
            }
            if shutdown.is_cancelled() {
                return Err(KafkaError::Shutdown);
            }
            if started.elapsed() >= max_wait {
                return Err(KafkaError::NoProgress {
                    topic: self.topic.clone(),
                    secs: max_wait.as_secs(),
                    why: format!("transactions still pending (partition, stable offset, high watermark): {pending:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// High watermarks (end offsets including records of open
    /// transactions) of `partitions`.
    fn high_watermarks(&self, partitions: &[i32]) -> Result<HashMap<i32, i64>, KafkaError> {
        let consumer = match self.uncommitted.get() {
            Some(c) => c,
            None => {
                let mut cfg = client_config::reader(&self.settings, &self.purpose);
                cfg.set("isolation.level", "read_uncommitted");
                let made = cfg.create_with_context(ReaderContext)?;
                self.uncommitted.get_or_init(|| made)
            }
        };
        list_offsets(consumer, &self.topic, partitions, Offset::End)
    }

    /// Current end offsets of `partitions`, in one ListOffsets request
    /// (timestamp -1: under `read_committed`, the last stable offset).
    pub fn end_offsets(&self, partitions: &[i32]) -> Result<HashMap<i32, i64>, KafkaError> {
        self.list(partitions, Offset::End)
    }

    /// Current log-start offsets of `partitions` (timestamp -2).
    pub fn start_offsets(&self, partitions: &[i32]) -> Result<HashMap<i32, i64>, KafkaError> {
        self.list(partitions, Offset::Beginning)
    }

    fn list(&self, partitions: &[i32], at: Offset) -> Result<HashMap<i32, i64>, KafkaError> {
        list_offsets(&self.consumer, &self.topic, partitions, at)
    }
}

/// One ListOffsets request for `partitions` of `topic` at `at` (`End`:
/// the client's isolation level decides between last stable offset and
/// high watermark).
fn list_offsets(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    partitions: &[i32],
    at: Offset,
) -> Result<HashMap<i32, i64>, KafkaError> {
    let mut found = HashMap::new();
    if partitions.is_empty() {
        return Ok(found);
    }
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, at)?;
    }
    let answer = consumer.offsets_for_times(tpl, QUERY_TIMEOUT)?;
    for e in answer.elements() {
        if let Err(err) = e.error() {
            return Err(KafkaError::Client(err));
        }
        let offset = match e.offset() {
            Offset::Offset(o) => o,
            // No offset known (empty partition): nothing to wait for.
            _ => 0,
        };
        found.insert(e.partition(), offset);
    }
    Ok(found)
}

/// Whether a reader error means the partition no longer exists (its topic
/// was deleted): reading on cannot succeed.
fn is_gone(e: &RdKafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::UnknownTopic
        )
    )
}

/// Asks for `topic`'s metadata before partitions of it are assigned. A
/// client assigned partitions of a topic it has no metadata for delivered
/// its first record 0.7–0.9 s later (measured on restores: the whole
/// consent tail of a restore took that long, whatever its size); with the
/// leaders already known, within milliseconds. A failed metadata request
/// is not an error here: the client then finds the leaders itself. The
/// wait is short ([`METADATA_TIMEOUT`]): assignments also change inside the
/// rebalance callback, which must not stall on an unreachable broker.
fn fetch_metadata(consumer: &BaseConsumer<ReaderContext>, topic: &str) {
    if let Err(e) = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
        tracing::debug!(topic, error = %e, "metadata before assigning failed");
    }
}

/// An assign-only reader of one topic.
pub struct PartitionReader {
    consumer: BaseConsumer<ReaderContext>,
    query: OffsetQuery,
    settings: KafkaSettings,
    purpose: String,
    topic: String,
    /// Next offset per assigned partition: never below the log start, the
    /// last delivered record + 1, or librdkafka's position (which also
    /// counts control markers).
    position: HashMap<i32, i64>,
    /// The fetcher reported the end of the partition since the last record.
    eof_hint: HashMap<i32, bool>,
    /// Tail probes run (for tests and logs).
    probes: u64,
}

impl PartitionReader {
    /// A reader of `topic`.
    pub fn new(settings: &KafkaSettings, purpose: &str, topic: &str) -> Result<Self, KafkaError> {
        let mut cfg = client_config::reader(settings, purpose);
        cfg.set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10");
        Ok(Self {
            consumer: cfg.create_with_context(ReaderContext)?,
            query: OffsetQuery::new(settings, purpose, topic)?,
            settings: settings.clone(),
            purpose: purpose.to_owned(),
            topic: topic.to_owned(),
            position: HashMap::new(),
            eof_hint: HashMap::new(),
            probes: 0,
        })
    }

    /// Assigns exactly `partitions`, each from the given offset (`None`:
    /// the beginning). Partitions already assigned and listed with their
    /// current position keep reading where they are: they are left out of
    /// the change, which is incremental.
    ///
    /// Why incremental: a plain `assign` stops every partition's fetcher and
    /// starts the kept ones again. librdkafka 2.12.1 stops a fetcher a
    /// second time when its assignment changes again before the first
    /// stop's reply is served, and aborts on the second reply
    /// (confluentinc/librdkafka#5573, fixed in 2.16.0). Two assignments in
    /// quick succession are what a revocation followed by a rewind makes
    /// (keep some partitions, then none): an instance was seen aborting
    /// there. Leaving kept partitions alone means a partition is stopped
    /// only when it leaves, so that takes a partition leaving, coming back
    /// and leaving again within one stop's round trip.
    pub fn assign(&mut self, partitions: &[(i32, Option<i64>)]) -> Result<(), KafkaError> {
        let from_start: Vec<i32> = partitions
            .iter()
            .filter(|(_, from)| from.is_none())
            .map(|(p, _)| *p)
            .collect();
        // A log whose start moved past 0 (retention) starts there, so
        // "caught up" is reachable even when nothing is left to read.
        let starts = self.query.start_offsets(&from_start)?;
        let assigned: Vec<i32> = self
            .consumer
            .assignment()?
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect();
        let kept: Vec<i32> = partitions
            .iter()
            .filter(|(p, from)| {
                assigned.contains(p) && from.is_some() && self.position.get(p) == from.as_ref()
            })
            .map(|(p, _)| *p)
            .collect();
        let mut leaving = TopicPartitionList::new();
        for p in assigned.iter().filter(|p| !kept.contains(p)) {
            leaving.add_partition(&self.topic, *p);
        }
        let mut arriving = TopicPartitionList::new();
        let mut position = HashMap::new();
        for (p, from) in partitions {
            let start = from.unwrap_or_else(|| starts.get(p).copied().unwrap_or(0));
            position.insert(*p, start);
            if !kept.contains(p) {
                arriving.add_partition_offset(
                    &self.topic,
                    *p,
                    from.map_or(Offset::Beginning, Offset::Offset),
                )?;
            }
        }
        if leaving.count() > 0 {
            self.consumer.incremental_unassign(&leaving)?;
        }
        // Whatever happens next, the positions of the partitions that
        // left are gone.
        self.position.retain(|p, _| kept.contains(p));
        if arriving.count() > 0 {
            fetch_metadata(&self.consumer, &self.topic);
            self.consumer.incremental_assign(&arriving)?;
        }
        self.position = position;
        for p in self.position.keys() {
            if !kept.contains(p) {
                self.eof_hint.insert(*p, false);
            }
        }
        self.eof_hint.retain(|p, _| self.position.contains_key(p));
        Ok(())
    }

    /// Stops and restarts every assigned partition at its position: for a
    /// fetcher that delivers nothing although records wait.
    fn restart_fetchers(&mut self) -> Result<(), KafkaError> {
        let positions = self.assigned();
        self.assign(&[])?;
        let again: Vec<(i32, Option<i64>)> = positions
            .into_iter()
            .map(|(p, pos)| (p, Some(pos)))
            .collect();
        self.assign(&again)
    }

    /// The partitions assigned, with their positions.
    pub fn assigned(&self) -> Vec<(i32, i64)> {
        let mut v: Vec<(i32, i64)> = self.position.iter().map(|(p, o)| (*p, *o)).collect();
        v.sort_unstable();
        v
    }

    /// Settled end offsets of `partitions` (see
    /// [`OffsetQuery::settled_end_offsets`]).
    pub fn settled_end_offsets(
        &self,
        partitions: &[i32],
        max_wait: Duration,
        shutdown: &CancellationToken,
    ) -> Result<HashMap<i32, i64>, KafkaError> {
        self.query
            .settled_end_offsets(partitions, max_wait, shutdown)
    }

    /// Current end offsets of `partitions` (see [`OffsetQuery::end_offsets`]).
    pub fn end_offsets(&self, partitions: &[i32]) -> Result<HashMap<i32, i64>, KafkaError> {
        self.query.end_offsets(partitions)
    }

    /// Delivers records until every partition in `ends` is caught up.
    /// `deliver(partition, message)` is called in offset order per partition.
    pub fn read_until(
        &mut self,
        ends: &HashMap<i32, i64>,
        shutdown: &CancellationToken,
        mut deliver: impl FnMut(i32, &BorrowedMessage<'_>),
    ) -> Result<(), KafkaError> {
        let mut last_progress = Instant::now();
        let mut last_moved = (Instant::now(), self.assigned());
        loop {
            let behind: Vec<(i32, i64)> = ends
                .iter()
                .filter(|(p, end)| self.position.get(p).is_some_and(|pos| pos < end))
                .map(|(p, end)| (*p, *end))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if shutdown.is_cancelled() {
                return Err(KafkaError::Shutdown);
            }
            match self.consumer.poll(Duration::from_millis(10)) {
                Some(Ok(msg)) => {
                    let p = msg.partition();
                    if let Some(pos) = self.position.get_mut(&p) {
                        *pos = (*pos).max(msg.offset() + 1);
                    }
                    self.eof_hint.insert(p, false);
                    last_progress = Instant::now();
                    deliver(p, &msg);
                }
                Some(Err(RdKafkaError::PartitionEOF(p))) => {
                    self.eof_hint.insert(p, true);
                    self.sync_positions()?;
                }
                None => {
                    // Control markers move librdkafka's position without
                    // delivering anything.
                    self.sync_positions()?;
                    let quiet = last_progress.elapsed() >= STUCK_AFTER;
                    let mut wedged = false;
                    for (p, end) in behind {
                        let short = self.position.get(&p).is_some_and(|pos| *pos < end);
                        let hinted = self.eof_hint.get(&p).copied().unwrap_or(false);
                        if short && (hinted || quiet) {
                            self.eof_hint.insert(p, false);
                            if self.tail_is_empty(p, end)? {
                                self.position.insert(p, end);
                            } else if quiet {
                                wedged = true;
                            }
                        }
                    }
                    if quiet {
                        let now = self.assigned();
                        if now != last_moved.1 {
                            last_moved = (Instant::now(), now);
                        } else if last_moved.0.elapsed() >= GIVE_UP_AFTER {
                            return Err(KafkaError::NoProgress {
                                topic: self.topic.clone(),
                                secs: GIVE_UP_AFTER.as_secs(),
                                why: format!("positions {:?}, ends {ends:?}", self.assigned()),
                            });
                        }
                        // The topic may be gone (deleted, recreated): the
                        // end query then fails, and so does this read.
                        let parts: Vec<i32> = ends.keys().copied().collect();
                        self.query.end_offsets(&parts)?;
                        if wedged {
                            tracing::warn!(topic = %self.topic, "reader delivers nothing although records wait: assigning it again at its positions");
                            self.restart_fetchers()?;
                        }
                        last_progress = Instant::now();
                    }
                }
                Some(Err(e)) if is_gone(&e) => return Err(e.into()),
                Some(Err(e)) => {
                    // Transient broker trouble: librdkafka retries by
                    // itself; we keep polling (and stay stoppable).
                    tracing::warn!(topic = %self.topic, error = %e, "reader poll error");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn sync_positions(&mut self) -> Result<(), KafkaError> {
        for e in self.consumer.position()?.elements() {
            if let (Offset::Offset(o), Some(pos)) =
                (e.offset(), self.position.get_mut(&e.partition()))
            {
                *pos = (*pos).max(o);
            }
        }
        Ok(())
    }

    /// Whether partition `p` holds no deliverable record in
    /// `[position, end)`: a fresh client (so no stale end-of-partition
    /// report can reach it) reads from the position until a record or the
    /// end of the partition.
    fn tail_is_empty(&mut self, p: i32, end: i64) -> Result<bool, KafkaError> {
        let from = self.position.get(&p).copied().unwrap_or(0);
        self.probes += 1;
        let mut cfg = client_config::reader(&self.settings, &format!("{}-probe", self.purpose));
        cfg.set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10");
        let probe: BaseConsumer<ReaderContext> = cfg.create_with_context(ReaderContext)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(from))?;
        fetch_metadata(&probe, &self.topic);
        probe.assign(&tpl)?;
        tracing::debug!(topic = %self.topic, partition = p, from, end, "probing the tail");
        let started = Instant::now();
        let mut empty = false;
        while started.elapsed() < PROBE_TIMEOUT {
            match probe.poll(Duration::from_millis(50)) {
                Some(Ok(msg)) => {
                    empty = msg.offset() >= end;
                    break;
                }
                // An end-of-partition report proves nothing here: a fresh
                // client was seen to report it before delivering a large
                // record below the end. Only a record at or past the end
                // settles the question; otherwise the caller keeps reading
                // (and reassigns a reader that delivers nothing), so a
                // record is never skipped.
                Some(Err(RdKafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => tracing::warn!(topic = %self.topic, error = %e, "tail probe error"),
                None => {}
            }
        }
        // Closing a consumer can wait on its group coordinator (after a
        // broker restart, for long): never on this thread, which holds the
        // pipeline.
        std::thread::spawn(move || drop(probe));
        Ok(empty)
    }

    /// Next offset of a partition.
    pub fn position(&self, partition: i32) -> i64 {
        self.position.get(&partition).copied().unwrap_or(0)
    }

    /// Tail probes run since this reader was made.
    pub fn probes(&self) -> u64 {
        self.probes
    }
}
