//! One assigned partition and everything held for it: its engine (the
//! visitors that hash to it), the visitors whose changelog record is due at
//! the next commit, how far its consent and feedback partitions have been
//! applied, and its recent offers (for data-subject access). Also the engine sink that
//! turns engine outputs into records of the open transaction, and the
//! sizing of dead letters so that every one of them can be produced, and
//! its monitoring windows (`crate::partition_monitoring`).

use std::collections::VecDeque;
use std::time::Duration;

use ahash::AHashSet;
use propensity_engine::wire::{Conversion, Decision};
use propensity_engine::{
    DeadLetter, Engine, EngineCounters, EngineSink, Offer, Origin, OutcomeScore,
};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;

use crate::delivery::{is_refusal, serve_then_pause, DeliveryWatch, DELIVERY_POLL_PAUSE};
use crate::metrics::PipelineMetrics;
use crate::partition_monitoring::{PartitionMonitoring, MONITORING_WINDOW_HEADER};

/// Header marking the changelog record that stores the consent position.
pub const CONSENT_POSITION_HEADER: &str = "propensity.consent_position";
/// Key of that record. It carries the header, so it can never be mistaken
/// for a visitor snapshot even if a visitor had this id.
pub const CONSENT_POSITION_KEY: &str = "__propensity.consent_position";
/// Header on every changelog record this version writes (snapshots,
/// tombstones, the consent position), value [`CHANGELOG_FORMAT`]: its
/// snapshots carry the visitors' consent. A partition whose latest consent
/// position record has it, and no record after which lacks it, restores
/// consent from that position on (a bounded tail); anything else (a
/// changelog written before, or since, by a version without it) from the
/// start of the consent topic.
pub const CHANGELOG_FORMAT_HEADER: &str = "propensity.changelog_format";
/// See [`CHANGELOG_FORMAT_HEADER`].
pub const CHANGELOG_FORMAT: &str = "2";
/// Header on the consent position record: the partition's event-time
/// clock at that commit, in epoch milliseconds (decimal). A restore hands
/// it back to the engine ([`Engine::restore_partition_clock`]), so waiting
/// events and idle sessions expire at the moments they would have without
/// the restart. Absent (a changelog written before it): the clock restarts
/// from the restored visitors' latest event times, as before.
pub const PARTITION_CLOCK_HEADER: &str = "propensity.partition_clock";
/// Header on the consent position record: the next offset of the
/// partition's feedback topic to apply (decimal). A restore reads the
/// feedback topic from there (the snapshots carry the contact state up to
/// it); absent (a changelog written before it), from its start.
pub const FEEDBACK_POSITION_HEADER: &str = "propensity.feedback_position";
/// Header marking the changelog record that stores the partition's
/// adaptive models (`[adaptive]`): their learners' states as JSON, written
/// at each commit that changed them, in the commit's transaction, so a
/// restore learns on from exactly what was committed (an update of an
/// aborted transaction is made again, never twice).
pub const ADAPTIVE_STATE_HEADER: &str = "propensity.adaptive_state";
/// Key of that record (it carries the header, so it is never taken for a
/// visitor snapshot).
pub const ADAPTIVE_STATE_KEY: &str = "__propensity.adaptive_state";
/// Dead-letter header: the value was cut to fit the producer's limits.
pub const TRUNCATED_HEADER: &str = "propensity.truncated";
/// Dead-letter header: the original value's size in bytes (when cut).
pub const ORIGINAL_SIZE_HEADER: &str = "propensity.original_size";

/// The transactional producer type. A `BaseProducer` that the pipeline
/// thread polls itself: with a background polling thread, librdkafka's
/// flush inside `commit_transaction` can only notice the last delivery
/// report in 100 ms steps, which added up to 100 ms to every commit.
pub type TxProducer = BaseProducer<DeliveryWatch>;

/// Output topics and limits.
#[derive(Debug, Clone)]
pub struct OutputTopics {
    /// Offers.
    pub offers: String,
    /// Scores (empty: off).
    pub scores: String,
    /// Decisions (empty: off).
    pub decisions: String,
    /// Conversions (empty: off).
    pub conversions: String,
    /// Dead letters.
    pub dead_letters: String,
    /// Changelog.
    pub changelog: String,
    /// Largest record (key, value and headers) the producer may send; a
    /// dead letter whose original value does not fit is cut to fit.
    pub max_record_bytes: usize,
}

/// Offers kept per partition for access requests.
pub const RECENT_OFFERS_PER_PARTITION: usize = 1000;

/// What the open transaction's records go through: the producer, where
/// they go, and what the sink must report back to the transaction.
pub struct Outputs {
    /// The transactional producer.
    pub producer: TxProducer,
    /// Where records go.
    pub topics: OutputTopics,
    /// Metrics (probability histogram).
    pub metrics: std::sync::Arc<PipelineMetrics>,
    /// First produce error of the open transaction (it is then aborted).
    pub error: Option<RdKafkaError>,
    /// Record timestamps of the offers in the open transaction (for the
    /// event-to-offer latency observed at commit).
    pub offer_times: Vec<i64>,
}

/// The half of [`Outputs`] that several workers send through at once: the
/// producer is thread-safe (librdkafka's produce and poll are), the rest is
/// read-only.
#[derive(Clone, Copy)]
pub struct OutputTarget<'a> {
    /// The transactional producer.
    pub producer: &'a TxProducer,
    /// Where records go.
    pub topics: &'a OutputTopics,
    /// Metrics (probability histogram).
    pub metrics: &'a PipelineMetrics,
}

/// What one worker's sends report back to the transaction; merged into
/// [`Outputs`] by the loop once the workers are done.
#[derive(Default)]
pub struct SendReport {
    /// First produce error (the transaction is then aborted).
    pub error: Option<RdKafkaError>,
    /// Record timestamps of the offers sent.
    pub offer_times: Vec<i64>,
}

impl Outputs {
    /// The shared target and this transaction's report, borrowed apart.
    fn split(&mut self) -> (OutputTarget<'_>, &mut Option<RdKafkaError>, &mut Vec<i64>) {
        (
            OutputTarget {
                producer: &self.producer,
                topics: &self.topics,
                metrics: &self.metrics,
            },
            &mut self.error,
            &mut self.offer_times,
        )
    }

    /// The target shared by the workers of a batch.
    pub fn target(&self) -> OutputTarget<'_> {
        OutputTarget {
            producer: &self.producer,
            topics: &self.topics,
            metrics: &self.metrics,
        }
    }

    /// Takes in a worker's report: its offers' times, and its error unless
    /// an earlier one is already kept.
    pub fn merge(&mut self, report: SendReport) {
        self.offer_times.extend(report.offer_times);
        if self.error.is_none() {
            self.error = report.error;
        }
    }
}

/// One partition's state.
pub struct Shard {
    /// Partition number (same in events, consent and changelog).
    pub partition: i32,
    /// The engine of the visitors of this partition.
    pub engine: Engine,
    /// Visitors whose changelog record must be written at the next commit.
    dirty: AHashSet<Box<str>>,
    /// Next consent offset to apply.
    pub consent_next: i64,
    /// `consent_next` as of the last commit (changelog'd when it moves).
    pub consent_committed: i64,
    /// Next feedback offset to apply (0 while no feedback topic is read,
    /// or none was applied: a restore then reads it from its start).
    pub feedback_next: i64,
    /// `feedback_next` as of the last commit (changelog'd when it moves,
    /// with the consent position).
    pub feedback_committed: i64,
    /// The engine's partition clock as of the last commit (changelog'd
    /// with the consent position when it moves).
    clock_committed: Option<i64>,
    /// The next commit rewrites every visitor held and the consent
    /// position: after a restore that had to read the consent topic from
    /// its start, this makes the changelog one the next restore can bound.
    rewrite_due: bool,
    /// The latest offers of this partition, for data-subject access
    /// requests; bounded, and purged of a visitor on erasure.
    recent_offers: VecDeque<Offer>,
    /// The engine's counters as of the last commit. Work after it may
    /// still be aborted and done again, so only this much is reported.
    committed_counters: EngineCounters,
    /// Drift counts and resolved sessions of the partition's committed
    /// work, changelogged with it.
    pub monitoring: PartitionMonitoring,
}

impl Shard {
    /// A partition with a fresh engine and empty monitoring windows.
    pub fn new(partition: i32, engine: Engine, monitoring: PartitionMonitoring) -> Self {
        Self {
            partition,
            engine,
            dirty: AHashSet::new(),
            consent_next: 0,
            consent_committed: 0,
            feedback_next: 0,
            feedback_committed: 0,
            clock_committed: None,
            rewrite_due: false,
            recent_offers: VecDeque::new(),
            committed_counters: EngineCounters::default(),
            monitoring,
        }
    }

    /// The transaction holding this shard's work committed: its counts are
    /// final, and so are the consent and feedback positions it wrote.
    pub fn mark_committed(&mut self) {
        self.committed_counters = self.engine.counters().clone();
        self.consent_committed = self.consent_next;
        self.feedback_committed = self.feedback_next;
    }

    /// What this shard reports: totals of committed work (an abort can
    /// discard the rest, which is then consumed and counted again), gauges
    /// of the state held now.
    pub fn reported_counters(&self) -> EngineCounters {
        let now = self.engine.counters();
        EngineCounters {
            buffered_events: now.buffered_events,
            active_sessions: now.active_sessions,
            visitors: now.visitors,
            ..self.committed_counters.clone()
        }
    }

    /// Event records consumed since the last commit: discarded if this
    /// shard is dropped without committing (they will be consumed again).
    pub fn uncommitted_events(&self) -> u64 {
        self.engine
            .counters()
            .events_consumed
            .saturating_sub(self.committed_counters.events_consumed)
    }

    fn sink<'a>(
        &'a mut self,
        target: OutputTarget<'a>,
        report: (&'a mut Option<RdKafkaError>, &'a mut Vec<i64>),
        key: Option<&'a [u8]>,
        record_time_ms: Option<i64>,
    ) -> (&'a mut Engine, KafkaSink<'a>) {
        (
            &mut self.engine,
            KafkaSink {
                target,
                error: report.0,
                offer_times: report.1,
                dirty: &mut self.dirty,
                recent_offers: &mut self.recent_offers,
                key,
                record_time_ms,
            },
        )
    }

    /// Processes one event record into the open transaction. Called by
    /// one worker at a time per shard (the shard is `&mut`), so this
    /// partition's outputs are sent in its events' order.
    pub fn process_event(
        &mut self,
        target: OutputTarget<'_>,
        report: &mut SendReport,
        msg: &BorrowedMessage<'_>,
        now_ms: i64,
    ) {
        let origin = origin_of(msg);
        let (engine, mut sink) = self.sink(
            target,
            (&mut report.error, &mut report.offer_times),
            msg.key(),
            msg.timestamp().to_millis(),
        );
        engine.process_event(
            msg.key(),
            msg.payload().unwrap_or_default(),
            &origin,
            Some(now_ms),
            &mut sink,
        );
    }

    /// Applies one consent record (with its effects) into the open
    /// transaction. An erasure also forgets the visitor's recent offers.
    pub fn process_consent(&mut self, out: &mut Outputs, msg: &BorrowedMessage<'_>, now_ms: i64) {
        // A tombstone is dated by its Kafka timestamp.
        let record_time_ms = msg.timestamp().to_millis().unwrap_or(now_ms);
        let origin = origin_of(msg);
        let (target, error, offer_times) = out.split();
        let (engine, mut sink) = self.sink(target, (error, offer_times), msg.key(), None);
        engine.process_consent(
            msg.key(),
            msg.payload(),
            record_time_ms,
            &origin,
            Some(now_ms),
            &mut sink,
        );
        self.consent_next = msg.offset() + 1;
        if let Some(visitor) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) {
            let erased = self
                .engine
                .visitor_view(visitor)
                .and_then(|(consent, _)| consent)
                .is_some_and(|c| c.erased);
            if erased {
                self.recent_offers.retain(|o| o.visitor_id != visitor);
            }
        }
    }

    /// Applies one offer-feedback record into the open transaction (its
    /// effect is state: the visitor's changelog record).
    pub fn process_feedback(&mut self, out: &mut Outputs, msg: &BorrowedMessage<'_>) {
        let origin = origin_of(msg);
        let (target, error, offer_times) = out.split();
        let (engine, mut sink) = self.sink(target, (error, offer_times), msg.key(), None);
        engine.process_feedback(
            msg.key(),
            msg.payload().unwrap_or_default(),
            &origin,
            &mut sink,
        );
        self.feedback_next = msg.offset() + 1;
    }

    /// The recent offers of one visitor.
    pub fn recent_offers_of<'a>(&'a self, visitor: &'a str) -> impl Iterator<Item = &'a Offer> {
        self.recent_offers
            .iter()
            .filter(move |o| o.visitor_id == visitor)
    }

    /// Has the next commit rewrite every visitor held and the consent
    /// position (see `rewrite_due`).
    pub fn rewrite_all_at_next_commit(&mut self) {
        self.rewrite_due = true;
    }

    /// Writes the changelog records of the dirty visitors (snapshot or
    /// tombstone), of the monitoring window buckets the open transaction
    /// added to (at `now_ms`, epoch milliseconds) or that left the window,
    /// and, when it moved (or a rewrite is due), the consent position, into
    /// the open transaction. If the transaction aborts, the shard is dropped
    /// and restored again, so nothing here needs undoing.
    pub fn write_changelog(&mut self, out: &Outputs, now_ms: i64) -> Result<(), RdKafkaError> {
        let rewrite = std::mem::take(&mut self.rewrite_due);
        if rewrite {
            self.dirty.extend(self.engine.visitor_ids().map(Box::from));
        }
        let format = || {
            OwnedHeaders::new().insert(Header {
                key: CHANGELOG_FORMAT_HEADER,
                value: Some(CHANGELOG_FORMAT),
            })
        };
        for visitor in self.dirty.drain() {
            let snapshot = self.engine.snapshot(&visitor);
            let mut record = BaseRecord::<[u8], [u8]>::to(&out.topics.changelog)
                .partition(self.partition)
                .key(visitor.as_bytes())
                .headers(format());
            if let Some(bytes) = &snapshot {
                record = record.payload(bytes.as_slice());
            }
            send_record(&out.producer, record)?;
        }
        self.monitoring.take_from(&mut self.engine, now_ms);
        for window in self.monitoring.take_records(rewrite) {
            let headers = format().insert(Header {
                key: MONITORING_WINDOW_HEADER,
                value: Some(window.kind.name()),
            });
            let mut record = BaseRecord::<[u8], [u8]>::to(&out.topics.changelog)
                .partition(self.partition)
                .key(window.key.as_bytes())
                .headers(headers);
            if let Some(value) = &window.value {
                record = record.payload(value.as_slice());
            }
            send_record(&out.producer, record)?;
        }
        if let Ok(p) = u32::try_from(self.partition) {
            let changed = self.engine.take_learners_changed(p);
            let states = self.engine.learner_states(p);
            if changed || (rewrite && !states.is_empty()) {
                let value = serde_json::to_vec(&states).unwrap_or_default();
                let headers = format().insert(Header {
                    key: ADAPTIVE_STATE_HEADER,
                    value: Some("1"),
                });
                send_record(
                    &out.producer,
                    BaseRecord::<[u8], [u8]>::to(&out.topics.changelog)
                        .partition(self.partition)
                        .key(ADAPTIVE_STATE_KEY.as_bytes())
                        .payload(value.as_slice())
                        .headers(headers),
                )?;
            }
        }
        let clock = self.clock();
        if rewrite
            || self.consent_next != self.consent_committed
            || self.feedback_next != self.feedback_committed
            || clock != self.clock_committed
        {
            let value = self.consent_next.to_string();
            let feedback = self.feedback_next.to_string();
            let mut headers = format()
                .insert(Header {
                    key: CONSENT_POSITION_HEADER,
                    value: Some("1"),
                })
                .insert(Header {
                    key: FEEDBACK_POSITION_HEADER,
                    value: Some(feedback.as_str()),
                });
            let clock_text = clock.map(|ms| ms.to_string());
            if let Some(ms) = &clock_text {
                headers = headers.insert(Header {
                    key: PARTITION_CLOCK_HEADER,
                    value: Some(ms.as_str()),
                });
            }
            send_record(
                &out.producer,
                BaseRecord::<[u8], [u8]>::to(&out.topics.changelog)
                    .partition(self.partition)
                    .key(CONSENT_POSITION_KEY.as_bytes())
                    .payload(value.as_bytes())
                    .headers(headers),
            )?;
            // Committed together with the position itself; an abort drops
            // the shard, so this needs no undoing either.
            self.clock_committed = clock;
        }
        Ok(())
    }

    /// The engine's event-time clock of this partition.
    fn clock(&self) -> Option<i64> {
        u32::try_from(self.partition)
            .ok()
            .and_then(|p| self.engine.partition_clock(p))
    }

    /// Restores the partition clock read from the changelog's consent
    /// position record ([`PARTITION_CLOCK_HEADER`]).
    pub fn restore_clock(&mut self, clock_ms: i64) {
        if let Ok(p) = u32::try_from(self.partition) {
            self.engine.restore_partition_clock(p, clock_ms);
        }
        self.clock_committed = self.clock_committed.max(Some(clock_ms));
    }
}

/// Where an input record came from (dead letters name it).
fn origin_of(msg: &BorrowedMessage<'_>) -> Origin {
    Origin::Kafka {
        topic: msg.topic().to_owned(),
        partition: msg.partition(),
        offset: msg.offset(),
    }
}

/// Sends one record into the open transaction, waiting while the
/// producer's queue is full: this is where a slow broker slows consumption
/// instead of growing memory.
pub fn send_record(
    producer: &TxProducer,
    record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), RdKafkaError> {
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => {
                // Serve delivery reports as we go (non-blocking).
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                serve_then_pause(producer, DELIVERY_POLL_PAUSE);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Waits until every queued record is acknowledged, serving delivery
/// reports in [`DELIVERY_POLL_PAUSE`] steps (without spinning: see
/// [`serve_then_pause`]). Called before `commit_transaction`, whose own
/// flush (in rust-rdkafka) waits in 100 ms poll steps and so added up to
/// 100 ms to every commit.
pub fn drain_deliveries(producer: &TxProducer, timeout: Duration) -> Result<(), RdKafkaError> {
    let started = std::time::Instant::now();
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(RdKafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        std::thread::sleep(DELIVERY_POLL_PAUSE);
    }
}

/// Room a record needs besides its key, value and headers (record and batch
/// framing), with a margin.
const RECORD_OVERHEAD: usize = 1024;

/// How much of a dead letter's original value is sent: all of it if the
/// record fits in `max_record_bytes`, else the longest prefix that fits.
/// Returns the value to send and, when cut, the original size.
pub fn fit_dead_letter_value(
    value: &[u8],
    key_len: usize,
    headers_len: usize,
    max_record_bytes: usize,
) -> (&[u8], Option<usize>) {
    let room = max_record_bytes.saturating_sub(key_len + headers_len + RECORD_OVERHEAD);
    if value.len() <= room {
        (value, None)
    } else {
        (&value[..room], Some(value.len()))
    }
}

/// Dead-letter reason of an input record whose outputs the broker refuses
/// (see `crate::delivery`): it is dead-lettered without its value.
pub const UNPRODUCIBLE_REASON: &str = "unproducible";

/// Where a dead letter comes from and why: its headers.
pub struct DeadLetterSource<'a> {
    /// Input topic.
    pub topic: &'a str,
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
    /// Input key (kept as the dead letter's key).
    pub key: Option<&'a [u8]>,
    /// Stable reason code.
    pub reason: &'a str,
    /// Error text (names fields, never quotes values).
    pub message: &'a str,
}

impl DeadLetterSource<'_> {
    /// The headers of the dead letter and the part of `value` it carries:
    /// Kafka Connect's dead-letter header names (so existing tooling can
    /// read and replay them), our reason code, and, when the value had to
    /// be cut to fit `max_record_bytes`, `propensity.truncated` and
    /// `propensity.original_size`. A record the producer cannot send would
    /// abort the transaction and be read again forever, blocking every
    /// partition: so the value is cut instead.
    pub fn record<'v>(&self, value: &'v [u8], max_record_bytes: usize) -> (OwnedHeaders, &'v [u8]) {
        let partition = self.partition.to_string();
        let offset = self.offset.to_string();
        let fields: [(&str, &[u8]); 6] = [
            ("__connect.errors.topic", self.topic.as_bytes()),
            ("__connect.errors.partition", partition.as_bytes()),
            ("__connect.errors.offset", offset.as_bytes()),
            (
                "__connect.errors.exception.class.name",
                self.reason.as_bytes(),
            ),
            (
                "__connect.errors.exception.message",
                self.message.as_bytes(),
            ),
            ("propensity.reason", self.reason.as_bytes()),
        ];
        let headers_len: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + TRUNCATED_HEADER.len()
            + ORIGINAL_SIZE_HEADER.len()
            + 24;
        let key_len = self.key.map_or(0, <[u8]>::len);
        let (value, original) =
            fit_dead_letter_value(value, key_len, headers_len, max_record_bytes);
        let mut headers = OwnedHeaders::new();
        for (key, value) in fields {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        if let Some(size) = original {
            let size = size.to_string();
            headers = headers
                .insert(Header {
                    key: TRUNCATED_HEADER,
                    value: Some("true"),
                })
                .insert(Header {
                    key: ORIGINAL_SIZE_HEADER,
                    value: Some(size.as_bytes()),
                });
        }
        (headers, value)
    }
}

/// Dead-letters an input event whose outputs the broker refuses: no value
/// (so it cannot be refused again for its size), the usual headers, and the
/// original size. The record never reaches the engine.
pub fn send_unproducible(
    target: OutputTarget<'_>,
    msg: &BorrowedMessage<'_>,
) -> Result<(), RdKafkaError> {
    let source = DeadLetterSource {
        topic: msg.topic(),
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key(),
        reason: UNPRODUCIBLE_REASON,
        message: "the broker refused the outputs of this record; its value is not repeated here",
    };
    let original = msg.payload().unwrap_or_default();
    // Limit 0: nothing of the value fits, so the size headers are always set.
    let (headers, _) = source.record(original, 0);
    let mut record = BaseRecord::<[u8], [u8]>::to(&target.topics.dead_letters).headers(headers);
    if let Some(k) = msg.key() {
        record = record.key(k);
    }
    send_record(target.producer, record)
}

/// The engine sink of one shard while a transaction is open.
pub struct KafkaSink<'a> {
    target: OutputTarget<'a>,
    /// First produce error (later sends are skipped).
    error: &'a mut Option<RdKafkaError>,
    /// Record timestamps of the offers sent.
    offer_times: &'a mut Vec<i64>,
    dirty: &'a mut AHashSet<Box<str>>,
    recent_offers: &'a mut VecDeque<Offer>,
    /// Key of the record being processed (dead letters keep it).
    key: Option<&'a [u8]>,
    /// Kafka timestamp of the record being processed.
    record_time_ms: Option<i64>,
}

impl KafkaSink<'_> {
    /// Sends `value` as JSON to `topic`, keyed by the visitor id (scores
    /// and decisions).
    fn send_json(&mut self, topic: &str, visitor_id: &str, value: &impl serde::Serialize) {
        if let Ok(json) = serde_json::to_vec(value) {
            self.send(
                BaseRecord::to(topic)
                    .key(visitor_id.as_bytes())
                    .payload(json.as_slice()),
            );
        }
    }

    fn send(&mut self, record: BaseRecord<'_, [u8], [u8]>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = send_record(self.target.producer, record) {
            if is_refusal(&e) {
                self.target.producer.context().note_refused();
            }
            *self.error = Some(e);
        }
    }
}

impl EngineSink for KafkaSink<'_> {
    fn offer(&mut self, offer: Offer) {
        match serde_json::to_vec(&offer) {
            Ok(json) => {
                let headers = OwnedHeaders::new().insert(Header {
                    key: "propensity.offer_id",
                    value: Some(offer.offer_id.as_bytes()),
                });
                let topic = self.target.topics.offers.as_str();
                self.send(
                    BaseRecord::to(topic)
                        .key(offer.visitor_id.as_bytes())
                        .payload(json.as_slice())
                        .headers(headers),
                );
                if let Some(t) = self.record_time_ms {
                    self.offer_times.push(t);
                }
                if self.recent_offers.len() >= RECENT_OFFERS_PER_PARTITION {
                    self.recent_offers.pop_front();
                }
                self.recent_offers.push_back(offer);
            }
            Err(e) => tracing::error!(error = %e, "cannot encode offer"),
        }
    }

    fn dead_letter(&mut self, dl: DeadLetter<'_>) {
        let (topic, partition, offset) = match dl.origin {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => (topic.as_str(), *partition, *offset),
            _ => ("", -1, -1),
        };
        let source = DeadLetterSource {
            topic,
            partition,
            offset,
            key: self.key,
            reason: dl.reason.code(),
            message: &dl.error,
        };
        let limit = self.target.topics.max_record_bytes;
        let (headers, value) = source.record(dl.payload, limit);
        let dlq = self.target.topics.dead_letters.as_str();
        let mut record = BaseRecord::<[u8], [u8]>::to(dlq).headers(headers);
        if let Some(k) = self.key {
            record = record.key(k);
        }
        if !value.is_empty() {
            record = record.payload(value);
        }
        self.send(record);
    }

    fn wants_scores(&self) -> bool {
        !self.target.topics.scores.is_empty()
    }

    fn probability(&mut self, outcome: usize, probability: f64) {
        // Every score feeds the histogram, published or not.
        self.target
            .metrics
            .observe_probability(outcome, probability);
    }

    fn score(&mut self, score: &OutcomeScore<'_>) {
        let topics = self.target.topics;
        self.send_json(&topics.scores, score.visitor_id, score);
    }

    fn wants_decisions(&self) -> bool {
        !self.target.topics.decisions.is_empty()
    }

    fn decision(&mut self, decision: &Decision<'_>) {
        let topics = self.target.topics;
        self.send_json(&topics.decisions, decision.visitor_id, decision);
    }

    fn wants_conversions(&self) -> bool {
        !self.target.topics.conversions.is_empty()
    }

    fn conversion(&mut self, conversion: &Conversion<'_>) {
        let topics = self.target.topics;
        self.send_json(&topics.conversions, conversion.visitor_id, conversion);
    }

    fn state_changed(&mut self, visitor_id: &str) {
        if !self.dirty.contains(visitor_id) {
            self.dirty.insert(visitor_id.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_fits_is_sent_whole() {
        let v = vec![b'x'; 1000];
        let (sent, cut) = fit_dead_letter_value(&v, 10, 200, 1_000_000);
        assert_eq!(sent.len(), 1000);
        assert_eq!(cut, None);
    }

    #[test]
    fn a_value_that_does_not_fit_is_cut_so_the_whole_record_fits() {
        let v = vec![b'x'; 1_048_000];
        let (sent, cut) = fit_dead_letter_value(&v, 10, 200, 1_000_000);
        assert_eq!(cut, Some(1_048_000));
        assert!(sent.len() + 10 + 200 + RECORD_OVERHEAD <= 1_000_000);
        assert!(sent.len() > 990_000, "cut no more than needed");
    }
}
