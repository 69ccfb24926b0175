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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use propensity_engine::{Engine, EngineConfig, EngineCounters, Origin};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::access::{partition_of, AccessAnswer, AccessRequest};
use crate::client_config;
use crate::delivery::DeliveryWatch;
use crate::error::KafkaError;
use crate::metrics::PipelineMetrics;
use crate::model_handle::ModelHandle;
use crate::progress::Progress;
use crate::reader::{OffsetQuery, PartitionReader};
use crate::settings::KafkaSettings;
use crate::shard::{
    send_unproducible, OutputTopics, Outputs, Shard, TxProducer, CONSENT_POSITION_HEADER,
};
use crate::status::{add_counters, RuntimeStatus};
use crate::transaction::{self, AbortOutcome, CommitOutcome, Failure, PolledProducer, RetryPolicy};

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
    pub shutdown: Arc<AtomicBool>,
    /// Prometheus metrics.
    pub metrics: Arc<PipelineMetrics>,
    /// Data-subject access requests (answered between batches).
    pub access: Option<std::sync::mpsc::Receiver<AccessRequest>>,
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

impl ClientContext for GroupContext {}

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
                tracing::warn!(error = %why, "recreating the group consumer after a fatal error");
                let mut c = lock(&core);
                c.opts.status.error(why);
                c.abort_open();
                c.forget_all_shards();
                c.pending.clear();
                c.rewind = false;
                drop(c);
                drop(consumer);
                std::thread::sleep(Duration::from_secs(1));
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

/// The loop's state: the shards, the open transaction, the readers.
struct Core {
    opts: PipelineOptions,
    out: Outputs,
    consent: PartitionReader,
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
    last_commit: Instant,
    models_version: u64,
    /// Counters of shards dropped since start (gauges zeroed).
    retired: EngineCounters,
    /// Last consent catch-up of all partitions (idle partitions still apply
    /// consent, so an erasure takes effect without the visitor's next event).
    last_consent_sync: Instant,
    progress: Progress,
    last_lag_refresh: Instant,
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
}

impl Core {
    fn new(opts: PipelineOptions) -> Result<Self, KafkaError> {
        let s = &opts.settings;
        let max_record_bytes = s
            .client
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let topics = OutputTopics {
            offers: s.offers_topic.clone(),
            scores: s.scores_topic.clone(),
            dead_letters: s.dead_letter_topic.clone(),
            changelog: s.changelog_topic.clone(),
            max_record_bytes,
        };
        let producer = create_producer(s, &opts.instance_id, &opts.shutdown)?;
        let consent = PartitionReader::new(s, "consent", &s.consent_topic)?;
        let changelog = PartitionReader::new(s, "changelog", &s.changelog_topic)?;
        let events = OffsetQuery::new(s, "events-lag", &s.events_topic)?;
        let models_version = opts.models.version();
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
            changelog,
            events,
            shards: BTreeMap::new(),
            pending: BTreeSet::new(),
            rewind: false,
            offsets: BTreeMap::new(),
            txn_open: false,
            last_commit: Instant::now(),
            models_version,
            retired: EngineCounters::default(),
            last_consent_sync: Instant::now(),
            progress: Progress::default(),
            last_lag_refresh: Instant::now(),
            isolation: None,
            isolated_event: None,
            unproducible: BTreeSet::new(),
            unproducible_in_txn: 0,
        })
    }

    fn stopping(&self) -> bool {
        self.opts.shutdown.load(Ordering::Relaxed)
    }

    fn events_partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.opts.settings.events_topic)
            .map(|e| e.partition())
            .collect()
    }

    fn note_assignment(&self, consumer: &BaseConsumer<GroupContext>) {
        let status = &self.opts.status;
        let assigned = consumer
            .assignment()
            .map(|a| self.events_partitions(&a).len())
            .unwrap_or(self.shards.len() + self.pending.len());
        status
            .assigned_partitions
            .store(assigned as i64, Ordering::Relaxed);
        status
            .restoring_partitions
            .store(self.pending.len() as i64, Ordering::Relaxed);
        RuntimeStatus::set(&status.ready, self.pending.is_empty() && !self.rewind);
    }

    fn poll_wait(&self) -> Duration {
        let interval = Duration::from_millis(self.opts.settings.commit_interval_ms);
        interval
            .saturating_sub(self.last_commit.elapsed())
            .min(Duration::from_millis(50))
    }

    /// Everything between batches: rewind or restore, models, access
    /// requests, consent of idle partitions, lag, and the commit when due.
    fn housekeeping(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), KafkaError> {
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
        self.refresh_lag();
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
        let interval = Duration::from_millis(self.opts.settings.commit_interval_ms);
        if self.txn_open && self.last_commit.elapsed() >= interval {
            self.commit(consumer);
        }
        Ok(())
    }

    fn restore_failed(&mut self, e: KafkaError) {
        if matches!(e, KafkaError::Shutdown) {
            return;
        }
        tracing::warn!(error = %e, "restore failed, retrying");
        self.opts.status.error(e.to_string());
        self.abort_and_rewind();
        std::thread::sleep(Duration::from_millis(500));
    }

    fn refresh_models(&mut self) {
        let v = self.opts.models.version();
        if v != self.models_version {
            let models = self.opts.models.current();
            for shard in self.shards.values_mut() {
                shard.engine.set_models(models.clone());
            }
            self.opts.metrics.set_models(&models);
            self.models_version = v;
        }
    }

    fn answer_access_requests(&mut self) {
        let Some(rx) = &self.opts.access else { return };
        while let Ok(req) = rx.try_recv() {
            let partition = partition_of(req.visitor_id.as_bytes(), self.opts.settings.partitions);
            let answer = match self.shards.get(&partition) {
                Some(shard) => {
                    let view = shard.engine.visitor_view(&req.visitor_id);
                    let offers: Vec<&propensity_engine::Offer> =
                        shard.recent_offers_of(&req.visitor_id).collect();
                    let held = match view {
                        None if offers.is_empty() => None,
                        view => Some(serde_json::json!({
                            "consent": view.as_ref().and_then(|v| v.0),
                            "state": view.as_ref().and_then(|v| v.1.clone()),
                            "recent_offers": offers,
                        })),
                    };
                    AccessAnswer::Owned { partition, held }
                }
                None => AccessAnswer::OwnedElsewhere {
                    partition,
                    owned_here: self.shards.keys().copied().collect(),
                },
            };
            let _ = req.reply.send(answer);
        }
    }

    /// Lag from committed offsets against the current end offsets, and the
    /// stalled partitions (lag, and no commit for the stall timeout).
    fn refresh_lag(&mut self) {
        let every = Duration::from_millis(self.opts.settings.statistics_interval_ms.max(100));
        if self.last_lag_refresh.elapsed() < every {
            return;
        }
        self.last_lag_refresh = Instant::now();
        let partitions = self.progress.partitions();
        match self.events.end_offsets(&partitions) {
            Ok(ends) => {
                let now = Instant::now();
                for (p, end) in ends {
                    self.progress.end(p, end, now);
                }
            }
            Err(e) => tracing::debug!(error = %e, "end offsets for lag not available"),
        }
        self.publish_progress();
    }

    fn publish_progress(&self) {
        let topic = &self.opts.settings.events_topic;
        let lags: Vec<(String, i32, i64)> = self
            .progress
            .lags()
            .into_iter()
            .map(|(p, lag)| (topic.clone(), p, lag))
            .collect();
        if let Ok(mut l) = self.opts.status.consumer_lag.lock() {
            *l = lags;
        }
        let timeout = Duration::from_secs_f64(self.opts.settings.stall_timeout_secs);
        let stalled = self.progress.stalled(timeout, Instant::now());
        if !stalled.is_empty() {
            tracing::warn!(partitions = ?stalled, timeout_secs = timeout.as_secs_f64(), "partitions with lag have committed nothing within the stall timeout");
        }
        if let Ok(mut s) = self.opts.status.stalled_partitions.lock() {
            *s = stalled;
        }
    }

    fn ensure_txn(&mut self) -> Result<(), KafkaError> {
        if !self.txn_open {
            self.out.producer.begin_transaction()?;
            self.txn_open = true;
        }
        Ok(())
    }

    /// Aborts the open transaction (driven to completion, or the producer
    /// is replaced) and schedules the rewind of every shard.
    fn abort_and_rewind(&mut self) {
        let refused = self.out.producer.context().take_refused();
        let attempted = self.offsets.clone();
        self.abort_open();
        self.after_refusals(refused, attempted);
        self.rewind = true;
        RuntimeStatus::set(&self.opts.status.ready, false);
    }

    /// After a failed transaction: if the broker refused records, find the
    /// input event behind them (see [`Core::isolation`]). Failures of the
    /// moment (no refusal) never get here, so an outage never dead-letters
    /// healthy input.
    fn after_refusals(&mut self, refused: u64, attempted: BTreeMap<i32, i64>) {
        if refused == 0 {
            return;
        }
        if let Some((p, offset)) = self.isolated_event.take() {
            tracing::warn!(
                partition = p,
                offset,
                "the broker refuses the outputs of this event; it is dead-lettered as `unproducible`"
            );
            self.unproducible.insert((p, offset));
        } else if self.isolation.is_none() && !attempted.is_empty() {
            tracing::warn!(
                refused,
                "the broker refused records; processing one event per transaction to find the input behind them"
            );
            self.isolation = Some(attempted);
        }
    }

    /// Ends the open transaction without committing it. The shards then
    /// hold uncommitted changes: callers rewind or drop them.
    fn abort_open(&mut self) {
        if self.txn_open {
            let ends = PolledProducer {
                producer: &self.out.producer,
                timeout: Duration::from_secs(10),
            };
            match transaction::abort(&ends, RetryPolicy::default(), std::thread::sleep) {
                AbortOutcome::Aborted => {}
                AbortOutcome::ProducerLost(f) => self.replace_producer(&f),
            }
            self.opts.status.aborts.fetch_add(1, Ordering::Relaxed);
        }
        self.txn_open = false;
        self.unproducible_in_txn = 0;
        self.offsets.clear();
        self.out.offer_times.clear();
        self.out.error = None;
        self.last_commit = Instant::now();
    }

    /// Replaces the producer; a new one with the same transactional id
    /// fences the old one and aborts whatever it left open. Retried until
    /// it works or the instance stops.
    fn replace_producer(&mut self, why: &Failure) {
        tracing::warn!(error = %why.message, "recreating the transactional producer");
        self.opts
            .status
            .error(format!("producer replaced: {}", why.message));
        loop {
            self.opts
                .status
                .producer_restarts
                .fetch_add(1, Ordering::Relaxed);
            match create_producer(
                &self.opts.settings,
                &self.opts.instance_id,
                &self.opts.shutdown,
            ) {
                Ok(p) => {
                    self.out.producer = p;
                    break;
                }
                Err(e) if !self.stopping() => {
                    tracing::warn!(error = %e, "cannot create the producer yet, retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot create the producer while stopping");
                    break;
                }
            }
        }
        self.txn_open = false;
    }

    fn retire(&mut self, shard: Shard) {
        let mut c = shard.engine.counters().clone();
        c.buffered_events = 0;
        c.active_sessions = 0;
        c.visitors = 0;
        add_counters(&mut self.retired, &c);
    }

    fn forget_all_shards(&mut self) {
        for shard in std::mem::take(&mut self.shards).into_values() {
            self.retire(shard);
        }
        self.progress.clear();
    }

    /// Partitions are being taken away (cooperative rebalance: only these).
    /// The open transaction is committed first, while this instance still
    /// owns them, so their next owner starts exactly where this one ended.
    fn revoke(&mut self, consumer: &BaseConsumer<GroupContext>, partitions: &[i32], lost: bool) {
        tracing::info!(partitions = ?partitions, lost, "partitions revoked");
        if self.txn_open {
            if lost {
                // Not a member any more: the commit would be refused.
                self.abort_and_rewind();
            } else {
                self.commit(consumer);
            }
        }
        for p in partitions {
            self.pending.remove(p);
            self.progress.revoked(*p);
            if let Some(shard) = self.shards.remove(p) {
                self.retire(shard);
            }
        }
        let keep: Vec<(i32, Option<i64>)> = self
            .consent
            .assigned()
            .into_iter()
            .filter(|(p, _)| !partitions.contains(p))
            .map(|(p, pos)| (p, Some(pos)))
            .collect();
        if let Err(e) = self.consent.assign(&keep) {
            tracing::warn!(error = %e, "consent reader reassignment failed; rewinding");
            self.abort_and_rewind();
        }
        self.note_assignment(consumer);
        self.publish_progress();
    }

    /// After an abort: every shard is rebuilt from the changelog and the
    /// consent topic, and the consumer is sought back to the committed
    /// offsets.
    fn rewind_to_committed(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
    ) -> Result<(), KafkaError> {
        self.abort_open();
        let assignment = consumer.assignment()?;
        let partitions = self.events_partitions(&assignment);
        self.forget_all_shards();
        if let Err(e) = self.consent.assign(&[]) {
            tracing::warn!(error = %e, "consent reader unassign failed");
        }
        self.pending = partitions.iter().copied().collect();
        // Done once the shards are restored (a failure schedules it again).
        self.rewind = false;
        self.restore_pending(consumer)?;
        let committed = consumer.committed(Duration::from_secs(30))?;
        let events_topic = self.opts.settings.events_topic.clone();
        for e in committed.elements() {
            if e.topic() != events_topic || !partitions.contains(&e.partition()) {
                continue;
            }
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            consumer.seek(
                &events_topic,
                e.partition(),
                offset,
                Duration::from_secs(10),
            )?;
        }
        Ok(())
    }

    /// Restores the shards of newly assigned partitions: changelog
    /// snapshots, then consent (records already reflected in the snapshots
    /// are loaded without effects, newer ones applied normally). The other
    /// shards are untouched.
    fn restore_pending(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), KafkaError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let partitions: Vec<i32> = self.pending.iter().copied().collect();
        let status = self.opts.status.clone();
        RuntimeStatus::set(&status.ready, false);
        tracing::info!(partitions = ?partitions, "restoring partition state");
        let models = self.opts.models.current();
        self.models_version = self.opts.models.version();
        self.opts.metrics.set_models(&models);
        let mut fresh: BTreeMap<i32, Shard> = partitions
            .iter()
            .map(|&p| {
                let engine = Engine::new(self.opts.engine_config.clone(), models.clone());
                (p, Shard::new(p, engine))
            })
            .collect();

        // 1. Changelog: the state as of the last commit.
        let from_start: Vec<(i32, Option<i64>)> = partitions.iter().map(|p| (*p, None)).collect();
        self.changelog.assign(&from_start)?;
        let ends = self.changelog.end_offsets(&partitions)?;
        let mut restore_error = None;
        self.changelog
            .read_until(&ends, &self.opts.shutdown, |p, msg| {
                let Some(shard) = fresh.get_mut(&p) else {
                    return;
                };
                status.restored_records.fetch_add(1, Ordering::Relaxed);
                let is_position = msg
                    .headers()
                    .is_some_and(|h| h.iter().any(|x| x.key == CONSENT_POSITION_HEADER));
                if is_position {
                    if let Some(v) = msg
                        .payload()
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse().ok())
                    {
                        shard.consent_committed = v;
                    }
                    return;
                }
                let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    return;
                };
                if let Err(e) = shard.engine.restore(key, msg.payload()) {
                    restore_error.get_or_insert(e);
                }
            })?;
        self.changelog.assign(&[])?;
        if let Some(e) = restore_error {
            // A snapshot we cannot read means state we cannot trust: refuse
            // to process rather than guess.
            return Err(e.into());
        }

        // 2. Consent: rebuilt from the compacted topic itself. Records
        // below the committed consent position are loaded without effects.
        let mut consent_assignment: Vec<(i32, Option<i64>)> = self
            .consent
            .assigned()
            .into_iter()
            .filter(|(p, _)| !fresh.contains_key(p))
            .map(|(p, pos)| (p, Some(pos)))
            .collect();
        consent_assignment.extend(from_start.iter().copied());
        self.consent.assign(&consent_assignment)?;
        let ends = self.consent.end_offsets(&partitions)?;
        let has_effects = fresh.values().any(|s| {
            ends.get(&s.partition)
                .is_some_and(|e| *e > s.consent_committed)
        });
        if has_effects {
            self.ensure_txn()?;
        }
        let loaded = &status.consent_records_loaded;
        let consent_topic = self.opts.settings.consent_topic.clone();
        let out = &mut self.out;
        let now = now_ms();
        self.consent
            .read_until(&ends, &self.opts.shutdown, |p, msg| {
                let Some(shard) = fresh.get_mut(&p) else {
                    return;
                };
                let ts = msg.timestamp().to_millis().unwrap_or(now);
                if msg.offset() < shard.consent_committed {
                    shard.engine.load_consent(msg.key(), msg.payload(), ts);
                    shard.consent_next = msg.offset() + 1;
                    loaded.fetch_add(1, Ordering::Relaxed);
                } else {
                    // Newer than the snapshots: applied with its effects
                    // (outputs, changelog) inside the open transaction.
                    let origin = Origin::Kafka {
                        topic: consent_topic.clone(),
                        partition: p,
                        offset: msg.offset(),
                    };
                    shard.process_consent(out, msg, &origin, ts, now);
                }
            })?;
        if let Some(e) = self.out.error.take() {
            return Err(e.into());
        }
        for shard in fresh.values_mut() {
            shard.consent_next = shard
                .consent_next
                .max(self.consent.position(shard.partition));
        }

        // 3. Lag bookkeeping from the group's committed offsets.
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(&self.opts.settings.events_topic, *p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(30))?;
        let starts = self.events.start_offsets(&partitions)?;
        let ends = self.events.end_offsets(&partitions)?;
        let now = Instant::now();
        for e in committed.elements() {
            let p = e.partition();
            let from = match e.offset() {
                Offset::Offset(o) => o,
                _ => starts.get(&p).copied().unwrap_or(0),
            };
            self.progress
                .assigned(p, from, ends.get(&p).copied().unwrap_or(from), now);
        }

        self.shards.append(&mut fresh);
        self.pending.clear();
        self.note_assignment(consumer);
        self.publish_progress();
        RuntimeStatus::set(&status.broker_reachable, true);
        tracing::info!(partitions = partitions.len(), "partition state restored");
        Ok(())
    }

    /// Applies consent records up to `ends`, with their effects, inside the
    /// open transaction.
    fn apply_consent_until(&mut self, ends: &HashMap<i32, i64>) -> Result<(), KafkaError> {
        let behind = ends
            .iter()
            .any(|(p, end)| self.shards.contains_key(p) && self.consent.position(*p) < *end);
        if !behind {
            return Ok(());
        }
        self.ensure_txn()?;
        let consent_topic = self.opts.settings.consent_topic.clone();
        let (shards, out) = (&mut self.shards, &mut self.out);
        let now = now_ms();
        self.consent
            .read_until(ends, &self.opts.shutdown, |p, msg| {
                let Some(shard) = shards.get_mut(&p) else {
                    return;
                };
                let ts = msg.timestamp().to_millis().unwrap_or(now);
                let origin = Origin::Kafka {
                    topic: consent_topic.clone(),
                    partition: p,
                    offset: msg.offset(),
                };
                shard.process_consent(out, msg, &origin, ts, now);
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
        if self.isolation.is_some() && self.txn_open {
            // Consent effects commit on their own, so that a refusal in the
            // event's transaction can only come from the event.
            if !self.commit(_consumer) {
                return Ok(());
            }
        }
        self.ensure_txn()?;
        let timer = self.opts.metrics.batch_seconds.start_timer();
        let now = now_ms();
        let events_topic = self.opts.settings.events_topic.clone();
        let mut consumed = 0u64;
        for msg in batch {
            let p = msg.partition();
            // Records of partitions revoked while the batch was polled.
            let Some(shard) = self.shards.get_mut(&p) else {
                continue;
            };
            // Kept until committed: a failed transaction reads it again.
            if self.unproducible.contains(&(p, msg.offset())) {
                send_unproducible(&mut self.out, msg)?;
                self.unproducible_in_txn += 1;
                self.offsets.insert(p, msg.offset() + 1);
                consumed += 1;
                continue;
            }
            let origin = Origin::Kafka {
                topic: events_topic.clone(),
                partition: p,
                offset: msg.offset(),
            };
            shard.process_event(&mut self.out, msg, &origin, now);
            if self.isolation.is_some() {
                self.isolated_event = Some((p, msg.offset()));
            }
            self.offsets.insert(p, msg.offset() + 1);
            consumed += 1;
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

    /// Commits the open transaction. On failure it has been aborted (or
    /// the producer replaced) and a rewind is scheduled.
    fn commit(&mut self, consumer: &BaseConsumer<GroupContext>) -> bool {
        let _span = tracing::info_span!("transaction", partitions = self.offsets.len()).entered();
        let started = Instant::now();
        let outcome = match self.stage_commit(consumer) {
            Ok(()) => {
                let ends = PolledProducer {
                    producer: &self.out.producer,
                    timeout: TXN_TIMEOUT,
                };
                transaction::commit_or_abort(&ends, RetryPolicy::default(), std::thread::sleep)
            }
            Err(failure) => {
                let ends = PolledProducer {
                    producer: &self.out.producer,
                    timeout: Duration::from_secs(10),
                };
                match failure.kind {
                    transaction::FailureKind::Fatal => CommitOutcome::ProducerLost(failure),
                    _ => {
                        match transaction::abort(&ends, RetryPolicy::default(), std::thread::sleep)
                        {
                            AbortOutcome::Aborted => CommitOutcome::Aborted(failure),
                            AbortOutcome::ProducerLost(f) => CommitOutcome::ProducerLost(f),
                        }
                    }
                }
            }
        };
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1000.0,
            ok = matches!(outcome, CommitOutcome::Committed),
            "commit"
        );
        let refused = self.out.producer.context().take_refused();
        let attempted = self.offsets.clone();
        match outcome {
            CommitOutcome::Committed => {
                self.txn_open = false;
                let now = Instant::now();
                for (p, o) in std::mem::take(&mut self.offsets) {
                    self.progress.committed(p, o, now);
                }
                self.last_commit = now;
                for shard in self.shards.values_mut() {
                    shard.consent_committed = shard.consent_next;
                }
                self.opts.status.commits.fetch_add(1, Ordering::Relaxed);
                RuntimeStatus::set(&self.opts.status.broker_reachable, true);
                let now = now_ms();
                for t in self.out.offer_times.drain(..) {
                    self.opts
                        .metrics
                        .offer_latency
                        .observe((now - t).max(0) as f64 / 1000.0);
                }
                self.isolated_event = None;
                self.opts.status.unproducible_events.fetch_add(
                    std::mem::take(&mut self.unproducible_in_txn),
                    Ordering::Relaxed,
                );
                let progress = &self.progress;
                self.unproducible
                    .retain(|(p, o)| progress.committed_offset(*p).is_some_and(|c| *o >= c));
                if let Some(until) = &self.isolation {
                    let done = until.iter().all(|(p, o)| {
                        !self.shards.contains_key(p)
                            || self.progress.committed_offset(*p) >= Some(*o)
                    });
                    if done {
                        tracing::info!("isolation finished: processing batches again");
                        self.isolation = None;
                    }
                }
                self.publish_counters();
                self.publish_progress();
                true
            }
            CommitOutcome::Aborted(f) => {
                tracing::warn!(error = %f.message, "transaction commit failed; aborted, rewinding");
                self.opts
                    .status
                    .error(format!("commit failed: {}", f.message));
                self.opts.status.aborts.fetch_add(1, Ordering::Relaxed);
                self.after_failed_commit();
                self.after_refusals(refused, attempted);
                false
            }
            CommitOutcome::ProducerLost(f) => {
                tracing::warn!(error = %f.message, "transaction commit failed; replacing the producer, rewinding");
                self.opts
                    .status
                    .error(format!("commit failed: {}", f.message));
                self.opts.status.aborts.fetch_add(1, Ordering::Relaxed);
                self.replace_producer(&f);
                self.after_failed_commit();
                self.after_refusals(refused, attempted);
                false
            }
        }
    }

    fn after_failed_commit(&mut self) {
        self.unproducible_in_txn = 0;
        self.txn_open = false;
        self.offsets.clear();
        self.out.offer_times.clear();
        self.out.error = None;
        self.last_commit = Instant::now();
        self.rewind = true;
        RuntimeStatus::set(&self.opts.status.ready, false);
    }

    /// Queues the changelog and the consumed offsets into the transaction.
    fn stage_commit(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), Failure> {
        let classify = |e: RdKafkaError| Failure::classify(&e);
        for shard in self.shards.values_mut() {
            shard.write_changelog(&self.out).map_err(classify)?;
        }
        if let Some(e) = self.out.error.take() {
            return Err(Failure::classify(&e));
        }
        if self.offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &self.offsets {
            tpl.add_partition_offset(&self.opts.settings.events_topic, *p, Offset::Offset(*o))
                .map_err(classify)?;
        }
        // Without group metadata (not a group member right now) the offsets
        // cannot be committed: abort and rewind.
        let metadata = consumer.group_metadata().ok_or_else(|| Failure {
            kind: transaction::FailureKind::Abortable,
            message: "no consumer group metadata (not a group member)".into(),
        })?;
        let producer = &self.out.producer;
        transaction::settle(
            || {
                transaction::while_polling(producer, || {
                    producer.send_offsets_to_transaction(&tpl, &metadata, TXN_TIMEOUT)
                })
                .map_err(|e| Failure::classify(&e))
            },
            RetryPolicy::default(),
            false,
            std::thread::sleep,
        )
    }

    fn publish_counters(&self) {
        let mut total = self.retired.clone();
        for shard in self.shards.values() {
            add_counters(&mut total, shard.engine.counters());
        }
        self.opts.metrics.publish_engine(&total);
        if let Ok(mut c) = self.opts.status.engine.lock() {
            *c = total;
        }
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

fn create_producer(
    s: &KafkaSettings,
    instance_id: &str,
    shutdown: &AtomicBool,
) -> Result<TxProducer, KafkaError> {
    loop {
        let producer: TxProducer = client_config::transactional_producer(s, instance_id)
            .create_with_context(DeliveryWatch::default())?;
        // init_transactions fences any previous producer with this
        // transactional id and aborts its open transaction, so a restarted
        // instance never waits for its predecessor's timeout.
        let init =
            transaction::while_polling(&producer, || producer.init_transactions(TXN_TIMEOUT));
        match init {
            Ok(()) => return Ok(producer),
            Err(e)
                if !shutdown.load(Ordering::Relaxed)
                    && Failure::classify(&e).kind != transaction::FailureKind::Fatal =>
            {
                tracing::warn!(error = %e, "init_transactions failed, retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
