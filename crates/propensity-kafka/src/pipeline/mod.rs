//! The exactly-once consume–score–produce loop of one instance.
//!
//! Per loop: restore newly assigned partitions; poll a batch of events;
//! before processing it, apply every consent record written up to now on
//! the batch's partitions (consent first, decided by offsets: see
//! [`crate::reader`]); process the events through the partition's shard,
//! producing offers, scores and dead letters into the open transaction;
//! every commit interval write the changelog of changed visitors and the
//! consent position, add the consumed offsets to the transaction and commit
//! it. Everything a commit covers becomes visible to `read_committed`
//! consumers at once, or not at all.
//!
//! Rebalances are incremental (`cooperative-sticky`): when partitions are
//! revoked, the open transaction is committed inside the revocation
//! callback — before the group can hand them to another instance — and
//! only the revoked shards are dropped; newly assigned partitions are
//! restored (changelog, then consent) while the others keep their state.
//! The loop state ([`Core`]) sits behind a mutex shared with the consumer's
//! context for that reason; the loop never holds it while polling, which is
//! when callbacks run.
//!
//! Failure handling follows librdkafka's transactional-producer guidance
//! (see [`crate::transaction`]): retriable errors are retried; an abortable
//! one aborts the transaction, driven to completion; a fatal one, or an
//! abort that cannot complete, recreates the producer. After an abort every
//! shard is rebuilt and the consumer rewound to the committed offsets. All
//! rdkafka calls here block, so this runs on its own OS thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

use propensity_engine::{EngineConfig, EngineCounters};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, TopicPartitionList};

use crate::access::AccessRequest;
use crate::client_config;
use crate::error::KafkaError;
use crate::metrics::PipelineMetrics;
use crate::model_handle::ModelHandle;
use crate::progress::Progress;
use crate::reader::{OffsetQuery, PartitionReader};
use crate::settings::KafkaSettings;
use crate::shard::{OutputTopics, Outputs, Shard};
use crate::status::RuntimeStatus;

mod assignment;
mod reporting;
mod transaction_control;
mod workers;

use transaction_control::create_producer;

/// At most this many events per batch (one consent catch-up per batch).
const MAX_BATCH: usize = 5000;
/// Timeout of one transactional call.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// librdkafka's default `message.max.bytes` for producers.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// Everything the pipeline needs.
pub struct PipelineOptions {
    /// `[kafka]`.
    pub settings: KafkaSettings,
    /// Instance id: part of the transactional id and the static group
    /// membership id; stable across restarts of the same instance.
    pub instance_id: String,
    /// Engine configuration.
    pub engine_config: Arc<EngineConfig>,
    /// Models (hot-swappable).
    pub models: Arc<ModelHandle>,
    /// Status for health and metrics.
    pub status: Arc<RuntimeStatus>,
    /// Set to stop: the open transaction is committed, then the loop ends.
    pub shutdown: CancellationToken,
    /// Prometheus metrics.
    pub metrics: Arc<PipelineMetrics>,
    /// Data-subject access requests (answered between batches).
    pub access: Option<std::sync::mpsc::Receiver<AccessRequest>>,
}

/// The topics read by assignment beside the events, before each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SideInput {
    Consent,
    Feedback,
}

/// The feedback topic's reader, when one is configured.
fn feedback_reader(s: &KafkaSettings) -> Result<Option<PartitionReader>, KafkaError> {
    if s.feedback_topic.is_empty() {
        return Ok(None);
    }
    Ok(Some(PartitionReader::new(
        s,
        "feedback",
        &s.feedback_topic,
    )?))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    // A panic inside the loop ends the thread anyway; the state behind a
    // poisoned lock is only read to shut down.
    core.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Consumer context: hands rebalances to the loop state.
struct GroupContext {
    core: Arc<Mutex<Core>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::client_log::forward_log(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        crate::client_log::forward_error(&error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut core = lock(&self.core);
        core.opts.status.rebalances.fetch_add(1, Ordering::Relaxed);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                let partitions = core.events_partitions(tpl);
                core.revoke(consumer, &partitions, lost);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut core = lock(&self.core);
            let partitions = core.events_partitions(tpl);
            core.pending.extend(partitions);
            core.note_assignment(consumer);
        }
    }
}

/// Runs the pipeline until `opts.shutdown` is set. Blocks the calling
/// thread.
pub fn run_pipeline(opts: PipelineOptions) -> Result<(), KafkaError> {
    let core = Arc::new(Mutex::new(Core::new(opts)?));
    loop {
        let consumer = {
            let c = lock(&core);
            let consumer: BaseConsumer<GroupContext> =
                client_config::events_consumer(&c.opts.settings, &c.opts.instance_id)
                    .create_with_context(GroupContext { core: core.clone() })?;
            consumer.subscribe(&[&c.opts.settings.events_topic])?;
            consumer
        };
        match run_with(&consumer, &core) {
            // A fatal consumer error (e.g. fenced static membership after
            // the broker came back) leaves that client unusable: make a new
            // one and rebuild state, instead of exiting or spinning.
            Err(KafkaError::Fatal(why)) if !lock(&core).stopping() => {
                tracing::warn!(error = %why, "recreating the Kafka clients after a fatal consumer error");
                let mut c = lock(&core);
                c.opts.status.error(why);
                c.abort_open();
                c.forget_all_shards();
                c.progress.clear();
                c.pending.clear();
                c.rewind = false;
                drop(c);
                // Closing a fenced consumer can wait on its coordinator:
                // never on this thread.
                std::thread::spawn(move || drop(consumer));
                std::thread::sleep(Duration::from_secs(1));
                // The same start as a new process: fresh readers, offset
                // queries and producer too (clients that lived through a
                // broker restart were seen stuck on stale metadata).
                if let Err(e) = lock(&core).renew_clients() {
                    tracing::warn!(error = %e, "cannot recreate the Kafka clients yet");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            other => {
                if other.is_ok() {
                    consumer.unsubscribe();
                }
                return other;
            }
        }
    }
}

/// The loop over one group consumer.
fn run_with(consumer: &BaseConsumer<GroupContext>, core: &Mutex<Core>) -> Result<(), KafkaError> {
    loop {
        let (wait, max_batch) = {
            let mut c = lock(core);
            if c.stopping() {
                return c.drain(consumer);
            }
            c.housekeeping(consumer)?;
            // While isolating a refused record, one event per transaction.
            let max_batch = if c.isolation.is_some() { 1 } else { MAX_BATCH };
            (c.poll_wait(), max_batch)
        };
        // No lock while polling: rebalance callbacks run in here.
        let batch = poll_batch(consumer, wait, max_batch, core)?;
        let mut c = lock(core);
        if c.rewind {
            // The batch was fetched before the rewind's seek: it is read
            // again from the committed offsets.
            continue;
        }
        if batch.is_empty() {
            continue;
        }
        RuntimeStatus::set(&c.opts.status.broker_reachable, true);
        if let Err(e) = c.restore_pending(consumer) {
            c.restore_failed(e);
            continue;
        }
        match c.process_batch(consumer, &batch) {
            Ok(()) if c.isolation.is_some() && !c.rewind => {
                c.commit(consumer);
            }
            Ok(()) => {}
            Err(e) => {
                if !matches!(e, KafkaError::Shutdown) {
                    let e = e.reported(&c.opts.settings.brokers);
                    tracing::warn!(error = %e, "batch failed; aborting and rewinding");
                    c.opts.status.error(e.to_string());
                }
                c.abort_and_rewind();
            }
        }
    }
}

fn poll_batch<'c>(
    consumer: &'c BaseConsumer<GroupContext>,
    wait: Duration,
    max_batch: usize,
    core: &Mutex<Core>,
) -> Result<Vec<BorrowedMessage<'c>>, KafkaError> {
    let mut batch = Vec::new();
    let mut next = consumer.poll(wait);
    while let Some(item) = next {
        match item {
            Ok(m) => batch.push(m),
            Err(RdKafkaError::MessageConsumptionFatal(code)) => {
                return Err(KafkaError::Fatal(format!("consumer: {code}")));
            }
            Err(e) => {
                // Errors (broker down…) repeat on every poll: note one,
                // back off a little, and let librdkafka retry.
                tracing::warn!(error = %e, "consumer error");
                RuntimeStatus::set(&lock(core).opts.status.broker_reachable, false);
                if batch.is_empty() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                break;
            }
        }
        if batch.len() >= max_batch {
            break;
        }
        next = consumer.poll(Duration::ZERO);
    }
    Ok(batch)
}

/// When the open transaction is due for its commit: one commit interval
/// after the previous commit *started* (Kafka Streams counts its commit
/// interval the same way). Counted from the end, every commit's own
/// duration was added to the period: under load, with commits taking
/// ~50 ms, offers became visible every ~150 ms instead of every 100 ms.
/// A commit that takes longer than the interval makes the next one due at
/// once (the period is then the commit's duration).
#[derive(Debug, Clone, Copy)]
struct CommitClock {
    interval: Duration,
    /// Start of the last successful commit, or the last abort.
    last_start: Instant,
}

impl CommitClock {
    fn until_due(&self, now: Instant) -> Duration {
        self.interval
            .saturating_sub(now.saturating_duration_since(self.last_start))
    }

    fn due(&self, now: Instant) -> bool {
        self.until_due(now).is_zero()
    }

    /// Counts the next interval from `at`: the start of a commit that
    /// succeeded, or the moment a transaction ended without one (an abort:
    /// the next transaction gets a whole interval).
    fn count_from(&mut self, at: Instant) {
        self.last_start = at;
    }
}

/// The loop's state: the shards, the open transaction, the readers.
struct Core {
    opts: PipelineOptions,
    out: Outputs,
    consent: PartitionReader,
    /// The feedback topic's reader (`None`: `kafka.feedback_topic` empty).
    feedback: Option<PartitionReader>,
    changelog: PartitionReader,
    /// End and start offsets of the events topic (lag).
    events: OffsetQuery,
    shards: BTreeMap<i32, Shard>,
    /// Assigned partitions whose shard is not restored yet.
    pending: BTreeSet<i32>,
    /// After an abort: every shard is rebuilt and the consumer sought back
    /// to the committed offsets before anything else is processed.
    rewind: bool,
    /// Next event offset per partition in the open transaction.
    offsets: BTreeMap<i32, i64>,
    txn_open: bool,
    /// When the open transaction is due for its commit.
    commit_clock: CommitClock,
    models_version: u64,
    /// Counters of shards dropped since start (gauges zeroed).
    retired: EngineCounters,
    last_monitoring_publish: Instant,
    /// Last consent catch-up of all partitions (idle partitions still apply
    /// consent, so an erasure takes effect without the visitor's next event).
    last_consent_sync: Instant,
    progress: Progress,
    last_lag_refresh: Instant,
    /// The last end-offset query for the lag failed (said once, at warn,
    /// until one succeeds again).
    lag_query_failing: bool,
    /// Set after a transaction failed because the broker refused one of
    /// its records: events are then processed one per transaction until
    /// these offsets (the failed transaction's) are committed, so that the
    /// input record behind the refusal is found.
    isolation: Option<BTreeMap<i32, i64>>,
    /// The event of the open single-event transaction while isolating.
    isolated_event: Option<(i32, i64)>,
    /// Input events whose outputs the broker refused: dead-lettered without
    /// their value instead of being processed again.
    unproducible: BTreeSet<(i32, i64)>,
    /// Unproducible dead letters in the open transaction (counted once
    /// committed).
    unproducible_in_txn: u64,
    /// Threads that process a batch's events (`[kafka] workers`, resolved).
    workers: usize,
}

impl Core {
    fn new(opts: PipelineOptions) -> Result<Self, KafkaError> {
        opts.metrics
            .set_online_auc_floor(opts.settings.online_auc_floor);
        let s = &opts.settings;
        let max_record_bytes = s
            .client
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let topics = OutputTopics {
            offers: s.offers_topic.clone(),
            scores: s.scores_topic.clone(),
            decisions: s.decisions_topic.clone(),
            conversions: s.conversions_topic.clone(),
            dead_letters: s.dead_letter_topic.clone(),
            changelog: s.changelog_topic.clone(),
            max_record_bytes,
        };
        let producer = create_producer(s, &opts.instance_id, &opts.shutdown)?;
        let consent = PartitionReader::new(s, "consent", &s.consent_topic)?;
        let feedback = feedback_reader(s)?;
        let changelog = PartitionReader::new(s, "changelog", &s.changelog_topic)?;
        let events = OffsetQuery::new(s, "events-lag", &s.events_topic)?;
        let models_version = opts.models.version();
        let workers = s.worker_threads();
        tracing::info!(workers = workers, "batch workers");
        let commit_clock = CommitClock {
            interval: Duration::from_millis(s.commit_interval_ms),
            last_start: Instant::now(),
        };
        Ok(Self {
            out: Outputs {
                producer,
                topics,
                metrics: opts.metrics.clone(),
                error: None,
                offer_times: Vec::new(),
            },
            opts,
            consent,
            feedback,
            changelog,
            events,
            shards: BTreeMap::new(),
            pending: BTreeSet::new(),
            rewind: false,
            offsets: BTreeMap::new(),
            txn_open: false,
            commit_clock,
            models_version,
            retired: EngineCounters::default(),
            last_monitoring_publish: Instant::now(),
            last_consent_sync: Instant::now(),
            progress: Progress::default(),
            last_lag_refresh: Instant::now(),
            lag_query_failing: false,
            isolation: None,
            isolated_event: None,
            unproducible: BTreeSet::new(),
            unproducible_in_txn: 0,
            workers,
        })
    }

    /// Replaces every Kafka client but the group consumer (which the
    /// caller makes): readers, offset queries and the producer. The old
    /// clients are closed on threads of their own.
    fn renew_clients(&mut self) -> Result<(), KafkaError> {
        let s = &self.opts.settings;
        let consent = PartitionReader::new(s, "consent", &s.consent_topic)?;
        let feedback = feedback_reader(s)?;
        let changelog = PartitionReader::new(s, "changelog", &s.changelog_topic)?;
        let events = OffsetQuery::new(s, "events-lag", &s.events_topic)?;
        let producer = create_producer(s, &self.opts.instance_id, &self.opts.shutdown)?;
        let old = (
            std::mem::replace(&mut self.consent, consent),
            std::mem::replace(&mut self.feedback, feedback),
            std::mem::replace(&mut self.changelog, changelog),
            std::mem::replace(&mut self.events, events),
            std::mem::replace(&mut self.out.producer, producer),
        );
        std::thread::spawn(move || drop(old));
        self.txn_open = false;
        Ok(())
    }

    fn stopping(&self) -> bool {
        self.opts.shutdown.is_cancelled()
    }

    fn events_partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.opts.settings.events_topic)
            .map(|e| e.partition())
            .collect()
    }

    /// How long the next poll may wait for events: until the open
    /// transaction is due for its commit, and never more than the loop's
    /// tick. Without an open transaction nothing is due, so an idle instance
    /// waits the whole tick: computing the wait from the last commit alone
    /// made it 0 once a commit was older than the interval, and an idle
    /// instance spun at a core's worth of CPU.
    fn poll_wait(&self) -> Duration {
        const TICK: Duration = Duration::from_millis(50);
        if !self.txn_open {
            return TICK;
        }
        self.commit_clock.until_due(Instant::now()).min(TICK)
    }

    /// Everything between batches: rewind or restore, models, access
    /// requests, consent of idle partitions, lag, and the commit when due.
    fn housekeeping(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), KafkaError> {
        // First, so that a rebuild that keeps failing still shows as lag
        // and, after the stall timeout, as stalled.
        self.refresh_lag();
        self.publish_monitoring();
        if self.rewind {
            match self.rewind_to_committed(consumer) {
                Ok(()) => {}
                Err(e) => {
                    self.restore_failed(e);
                    return Ok(());
                }
            }
        }
        if let Err(e) = self.restore_pending(consumer) {
            self.restore_failed(e);
            return Ok(());
        }
        self.refresh_models();
        self.answer_access_requests();
        if self.last_consent_sync.elapsed() >= Duration::from_secs(1) {
            let all: Vec<i32> = self.shards.keys().copied().collect();
            let synced = self
                .consent
                .end_offsets(&all)
                .and_then(|ends| self.apply_consent_until(&ends));
            match synced {
                Ok(()) => self.last_consent_sync = Instant::now(),
                Err(KafkaError::Shutdown) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "consent catch-up failed; rewinding");
                    self.abort_and_rewind();
                    return Ok(());
                }
            }
        }
        if self.txn_open && self.commit_clock.due(Instant::now()) {
            self.commit(consumer);
        }
        Ok(())
    }

    fn refresh_models(&mut self) {
        let v = self.opts.models.version();
        if v != self.models_version {
            let models = self.opts.models.current();
            for shard in self.shards.values_mut() {
                shard.engine.set_models(models.clone());
            }
            self.opts.metrics.set_models(&models);
            // Each window slot keeps the counts of the model version it
            // now holds (a promotion moves the challenger's to the
            // champion role); a new version starts empty.
            for shard in self.shards.values_mut() {
                shard.monitoring.remap(&models);
            }
            self.models_version = v;
        }
    }

    /// Applies consent records up to `ends`, with their effects, inside the
    /// open transaction.
    fn apply_consent_until(&mut self, ends: &HashMap<i32, i64>) -> Result<(), KafkaError> {
        self.apply_side_input_until(SideInput::Consent, ends)
    }

    /// Applies the records of a side input (consent or feedback: topics
    /// co-partitioned with events, read by assignment) up to `ends`, with
    /// their effects, inside the open transaction.
    fn apply_side_input_until(
        &mut self,
        input: SideInput,
        ends: &HashMap<i32, i64>,
    ) -> Result<(), KafkaError> {
        let reader = match input {
            SideInput::Consent => Some(&self.consent),
            SideInput::Feedback => self.feedback.as_ref(),
        };
        let behind = reader.is_some_and(|r| {
            ends.iter()
                .any(|(p, end)| self.shards.contains_key(p) && r.position(*p) < *end)
        });
        if !behind {
            return Ok(());
        }
        self.ensure_txn()?;
        let reader = match input {
            SideInput::Consent => &mut self.consent,
            SideInput::Feedback => match self.feedback.as_mut() {
                Some(r) => r,
                None => return Ok(()),
            },
        };
        let (shards, out) = (&mut self.shards, &mut self.out);
        let now = now_ms();
        reader.read_until(ends, &self.opts.shutdown, |p, msg| {
            let Some(shard) = shards.get_mut(&p) else {
                return;
            };
            match input {
                SideInput::Consent => shard.process_consent(out, msg, now),
                SideInput::Feedback => shard.process_feedback(out, msg),
            }
        })?;
        if let Some(e) = self.out.error.take() {
            return Err(e.into());
        }
        Ok(())
    }

    fn process_batch(
        &mut self,
        _consumer: &BaseConsumer<GroupContext>,
        batch: &[BorrowedMessage<'_>],
    ) -> Result<(), KafkaError> {
        // One span per batch: log lines inside (warnings, debug visitor
        // traces) carry its size; nothing here logs per event at info.
        let _span = tracing::debug_span!("batch", events = batch.len()).entered();
        let mut parts: Vec<i32> = batch.iter().map(Message::partition).collect();
        parts.sort_unstable();
        parts.dedup();
        parts.retain(|p| self.shards.contains_key(p));
        // Consent first: everything written to these consent partitions up
        // to now is applied before any event of the batch. The end offsets
        // are queried after the batch was fetched, so a consent record
        // acknowledged before an event was produced is below them.
        let consent_started = Instant::now();
        let ends = self.consent.end_offsets(&parts)?;
        self.apply_consent_until(&ends)?;
        tracing::debug!(
            total_ms = consent_started.elapsed().as_secs_f64() * 1000.0,
            partitions = parts.len(),
            "consent caught up"
        );
        if parts.len() == self.shards.len() {
            self.last_consent_sync = Instant::now();
        }
        // Feedback likewise: a decline acknowledged before an event was
        // produced suppresses what that event would trigger.
        if let Some(reader) = &self.feedback {
            let ends = reader.end_offsets(&parts)?;
            self.apply_side_input_until(SideInput::Feedback, &ends)?;
        }
        if self.isolation.is_some() && self.txn_open {
            // Consent effects commit on their own, so that a refusal in the
            // event's transaction can only come from the event.
            if !self.commit(_consumer) {
                return Ok(());
            }
        }
        self.ensure_txn()?;
        let timer = self.opts.metrics.batch_seconds.start_timer();
        let run = workers::process_events(
            &mut self.shards,
            batch,
            &self.unproducible,
            self.out.target(),
            self.workers,
            now_ms(),
        );
        let mut consumed = 0u64;
        for (p, tally) in &run.tallies {
            self.offsets.insert(*p, tally.next_offset);
            self.unproducible_in_txn += tally.unproducible;
            consumed += tally.consumed;
            if self.isolation.is_some() && tally.consumed > tally.unproducible {
                self.isolated_event = Some((*p, tally.last_offset));
            }
        }
        for report in run.reports {
            self.out.merge(report);
        }
        self.opts
            .status
            .events_consumed
            .fetch_add(consumed, Ordering::Relaxed);
        timer.observe_duration();
        if let Some(e) = self.out.error.take() {
            return Err(e.into());
        }
        Ok(())
    }

    /// Shutdown: commit what is open, then stop.
    fn drain(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), KafkaError> {
        if self.txn_open {
            tracing::info!("draining: committing the open transaction");
            if !self.commit(consumer) {
                tracing::warn!(
                    "final commit failed; its input will be reprocessed by the next owner"
                );
            }
        }
        self.publish_counters();
        RuntimeStatus::set(&self.opts.status.ready, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    fn clock_from(t0: Instant) -> CommitClock {
        CommitClock {
            interval: INTERVAL,
            last_start: t0,
        }
    }

    #[test]
    fn the_next_commit_is_due_one_interval_after_the_previous_one_started() {
        let t0 = Instant::now();
        let mut clock = clock_from(t0);
        // A commit started at 100 ms and took 60 ms.
        let (started, finished) = (t0 + INTERVAL, t0 + Duration::from_millis(160));
        clock.count_from(started);
        assert_eq!(clock.until_due(finished), Duration::from_millis(40));
        assert!(!clock.due(finished));
        assert!(clock.due(started + INTERVAL));
    }

    #[test]
    fn a_commit_longer_than_the_interval_makes_the_next_due_at_once() {
        let t0 = Instant::now();
        let mut clock = clock_from(t0);
        let finished = t0 + Duration::from_millis(250);
        clock.count_from(t0);
        assert!(clock.due(finished));
        assert_eq!(clock.until_due(finished), Duration::ZERO);
    }

    #[test]
    fn after_an_abort_the_next_commit_gets_a_whole_interval() {
        let t0 = Instant::now();
        let mut clock = clock_from(t0);
        let aborted = t0 + Duration::from_millis(500);
        clock.count_from(aborted);
        assert_eq!(clock.until_due(aborted), INTERVAL);
    }
}
