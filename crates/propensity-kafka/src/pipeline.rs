//! The exactly-once consume–score–produce loop of one instance.
//!
//! Per loop: handle a rebalance or a pending restore; poll a batch of
//! events; before processing it, apply every consent record written up to
//! now on the batch's partitions (consent first); process the events through
//! the partition's engine, producing offers, scores and dead letters into the
//! open transaction; every commit interval write the changelog of changed
//! visitors and the consent position, add the consumed offsets to the
//! transaction and commit it. Everything a commit covers becomes visible to
//! `read_committed` consumers at once, or not at all.
//!
//! Failure handling follows librdkafka's transactional-producer guidance:
//! a retriable error is retried; an abortable one aborts the transaction,
//! and the engine state and consumer positions are rewound to the last
//! commit (state is rebuilt from the changelog, consent from the consent
//! topic); a fatal one (e.g. fenced) recreates the producer and rewinds.
//! All rdkafka calls here block, so this runs on its own OS thread, never on
//! the async executor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ahash::AHashSet;
use propensity_engine::{Engine, EngineConfig, EngineCounters, Origin};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::access::{partition_of, AccessAnswer, AccessRequest};
use crate::client_config;
use crate::error::KafkaError;
use crate::metrics::PipelineMetrics;
use crate::model_handle::ModelHandle;
use crate::reader::PartitionReader;
use crate::settings::KafkaSettings;
use crate::shard::{
    drain_deliveries, write_changelog, KafkaSink, OutputTopics, Shard, TxProducer,
    CONSENT_POSITION_HEADER,
};
use crate::status::{add_counters, RuntimeStatus};

/// At most this many events per batch (one consent catch-up per batch).
const MAX_BATCH: usize = 5000;
/// Timeout of transactional calls.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Consumer context: notes rebalances for the loop.
struct GroupContext {
    rebalanced: AtomicBool,
    status: Arc<RuntimeStatus>,
}

impl ClientContext for GroupContext {
    /// librdkafka statistics feed the lag gauges (instead of being logged).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lags = Vec::new();
        for (topic, t) in &statistics.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.desired && part.consumer_lag >= 0 {
                    lags.push((topic.clone(), *p, part.consumer_lag));
                }
            }
        }
        if let Ok(mut l) = self.status.consumer_lag.lock() {
            *l = lags;
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalanced.store(true, Ordering::SeqCst);
        RuntimeStatus::set(&self.status.ready, false);
        self.status.rebalances.fetch_add(1, Ordering::Relaxed);
        if let Rebalance::Error(e) = rebalance {
            tracing::warn!(error = %e, "rebalance error");
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        self.rebalanced.store(true, Ordering::SeqCst);
    }
}

/// A consent record read while the shards were borrowed, applied after.
struct PendingConsent {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    time_ms: i64,
}

/// How a transactional failure must be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// Abort, rewind, go on.
    Abort,
    /// Recreate the producer, rewind, go on.
    Fatal,
}

fn classify(e: &RdKafkaError) -> Recovery {
    match e {
        RdKafkaError::Transaction(r) if r.is_fatal() => Recovery::Fatal,
        _ => Recovery::Abort,
    }
}

fn retriable(e: &RdKafkaError) -> bool {
    matches!(e, RdKafkaError::Transaction(r) if r.is_retriable() && !r.txn_requires_abort() && !r.is_fatal())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Runtime {
    opts: PipelineOptions,
    topics: OutputTopics,
    producer: TxProducer,
    consent: PartitionReader,
    changelog: PartitionReader,
    shards: BTreeMap<i32, Shard>,
    /// Next event offset per partition in the open transaction.
    offsets: BTreeMap<i32, i64>,
    txn_open: bool,
    produce_error: Option<RdKafkaError>,
    last_commit: Instant,
    models_version: u64,
    /// Counters of shards dropped since start (gauges zeroed).
    retired: EngineCounters,
    /// Kafka timestamps of the events behind the open transaction's offers.
    offer_times: Vec<i64>,
    /// Last consent catch-up (idle partitions still apply consent, so an
    /// erasure takes effect without waiting for the visitor's next event).
    last_consent_sync: Instant,
}

/// Runs the pipeline until `opts.shutdown` is set. Blocks the calling
/// thread.
pub fn run_pipeline(opts: PipelineOptions) -> Result<(), KafkaError> {
    let s = &opts.settings;
    let topics = OutputTopics {
        offers: s.offers_topic.clone(),
        scores: s.scores_topic.clone(),
        dead_letters: s.dead_letter_topic.clone(),
        changelog: s.changelog_topic.clone(),
    };
    let context = GroupContext {
        rebalanced: AtomicBool::new(false),
        status: opts.status.clone(),
    };
    let consumer: BaseConsumer<GroupContext> =
        client_config::events_consumer(s, &opts.instance_id).create_with_context(context)?;
    let producer = create_producer(s, &opts.instance_id, &opts.shutdown)?;
    let consent = PartitionReader::new(s, "consent", &s.consent_topic)?;
    let changelog = PartitionReader::new(s, "changelog", &s.changelog_topic)?;
    consumer.subscribe(&[&s.events_topic])?;
    let models_version = opts.models.version();
    let mut rt = Runtime {
        opts,
        topics,
        producer,
        consent,
        changelog,
        shards: BTreeMap::new(),
        offsets: BTreeMap::new(),
        txn_open: false,
        produce_error: None,
        last_commit: Instant::now(),
        models_version,
        retired: EngineCounters::default(),
        offer_times: Vec::new(),
        last_consent_sync: Instant::now(),
    };
    let mut consumer = consumer;
    loop {
        let result = rt.run(&consumer);
        match result {
            // A fatal consumer error (e.g. fenced static membership after
            // the broker came back) leaves that client unusable: make a new
            // one and rebuild state, instead of exiting or spinning.
            Err(KafkaError::Fatal(why)) if !rt.opts.shutdown.load(Ordering::Relaxed) => {
                tracing::warn!(error = %why, "recreating the group consumer after a fatal error");
                rt.opts.status.error(why);
                rt.abort_open();
                rt.shards.clear();
                drop(consumer);
                std::thread::sleep(Duration::from_secs(1));
                let context = GroupContext {
                    rebalanced: AtomicBool::new(false),
                    status: rt.opts.status.clone(),
                };
                consumer = client_config::events_consumer(&rt.opts.settings, &rt.opts.instance_id)
                    .create_with_context(context)?;
                consumer.subscribe(&[&rt.opts.settings.events_topic])?;
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

fn create_producer(
    s: &KafkaSettings,
    instance_id: &str,
    shutdown: &AtomicBool,
) -> Result<TxProducer, KafkaError> {
    loop {
        let producer: TxProducer =
            client_config::transactional_producer(s, instance_id).create()?;
        // init_transactions fences any previous producer with this
        // transactional id and aborts its open transaction, so a restarted
        // instance never waits for its predecessor's timeout.
        match producer.init_transactions(TXN_TIMEOUT) {
            Ok(()) => return Ok(producer),
            Err(e)
                if !shutdown.load(Ordering::Relaxed)
                    && !matches!(&e, RdKafkaError::Transaction(r) if r.is_fatal()) =>
            {
                tracing::warn!(error = %e, "init_transactions failed, retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Runtime {
    fn run(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), KafkaError> {
        let interval = Duration::from_millis(self.opts.settings.commit_interval_ms);
        let mut needs_restore = false;
        loop {
            if self.opts.shutdown.load(Ordering::Relaxed) {
                return self.drain(consumer);
            }
            if consumer.context().rebalanced.swap(false, Ordering::SeqCst) || needs_restore {
                self.abort_open();
                match self.restore(consumer, needs_restore) {
                    Ok(()) => needs_restore = false,
                    Err(KafkaError::Shutdown) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "restore failed, retrying");
                        self.opts.status.error(e.to_string());
                        needs_restore = true;
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                }
            }
            self.refresh_models();
            self.answer_access_requests();
            let wait = interval
                .saturating_sub(self.last_commit.elapsed())
                .min(Duration::from_millis(50));
            let mut batch: Vec<BorrowedMessage<'_>> = Vec::new();
            let mut next = consumer.poll(wait);
            while let Some(item) = next {
                match item {
                    Ok(m) => batch.push(m),
                    Err(RdKafkaError::MessageConsumptionFatal(code)) => {
                        return Err(KafkaError::Fatal(format!("consumer: {code}")));
                    }
                    Err(e) => {
                        // Errors (broker down…) repeat on every poll: note
                        // one, back off a little, and let librdkafka retry.
                        tracing::warn!(error = %e, "consumer error");
                        RuntimeStatus::set(&self.opts.status.broker_reachable, false);
                        if batch.is_empty() {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        break;
                    }
                }
                if batch.len() >= MAX_BATCH {
                    break;
                }
                next = consumer.poll(Duration::ZERO);
            }
            if consumer.context().rebalanced.load(Ordering::SeqCst) {
                // The batch may belong to revoked partitions: drop it; the
                // restore rewinds to the committed offsets.
                continue;
            }
            if batch.is_empty() && self.last_consent_sync.elapsed() >= Duration::from_secs(1) {
                let all: Vec<i32> = self.shards.keys().copied().collect();
                let synced = self
                    .consent
                    .end_offsets(&all)
                    .and_then(|ends| self.apply_consent_until(&ends, false));
                if let Err(e) = synced {
                    if !matches!(e, KafkaError::Shutdown) {
                        tracing::warn!(error = %e, "consent catch-up failed; rewinding");
                        needs_restore = true;
                        continue;
                    }
                }
                self.last_consent_sync = Instant::now();
            }
            if !batch.is_empty() {
                RuntimeStatus::set(&self.opts.status.broker_reachable, true);
                if let Err(e) = self.process_batch(&batch) {
                    drop(batch);
                    if matches!(e, KafkaError::Shutdown) {
                        continue;
                    }
                    tracing::warn!(error = %e, "batch failed; aborting and rewinding");
                    self.opts.status.error(e.to_string());
                    needs_restore = true;
                    continue;
                }
            }
            if self.txn_open && self.last_commit.elapsed() >= interval {
                if let Err(recovery) = self.commit(consumer) {
                    needs_restore = true;
                    if recovery == Recovery::Fatal {
                        self.recreate_producer()?;
                    }
                }
            }
        }
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
                    let offers: Vec<&propensity_engine::Offer> = shard
                        .recent_offers
                        .iter()
                        .filter(|o| o.visitor_id == req.visitor_id)
                        .collect();
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

    fn ensure_txn(&mut self) -> Result<(), KafkaError> {
        if !self.txn_open {
            self.producer.begin_transaction()?;
            self.txn_open = true;
        }
        Ok(())
    }

    fn abort_open(&mut self) {
        if self.txn_open {
            if let Err(e) = self.producer.abort_transaction(TXN_TIMEOUT) {
                tracing::warn!(error = %e, "abort_transaction failed");
                if classify(&e) == Recovery::Fatal {
                    if let Err(e) = self.recreate_producer() {
                        tracing::error!(error = %e, "cannot recreate producer");
                    }
                }
            }
            self.opts.status.aborts.fetch_add(1, Ordering::Relaxed);
        }
        self.txn_open = false;
        self.offsets.clear();
        self.offer_times.clear();
        self.produce_error = None;
        self.last_commit = Instant::now();
    }

    fn recreate_producer(&mut self) -> Result<(), KafkaError> {
        tracing::warn!("recreating the transactional producer after a fatal error");
        self.opts
            .status
            .producer_restarts
            .fetch_add(1, Ordering::Relaxed);
        self.txn_open = false;
        self.producer = create_producer(
            &self.opts.settings,
            &self.opts.instance_id,
            &self.opts.shutdown,
        )?;
        Ok(())
    }

    /// Rebuilds every assigned partition's state: changelog snapshots, then
    /// consent (records already reflected in the snapshots are loaded
    /// without effects, newer ones applied normally), and with `rewind` the
    /// consumer is sought back to the committed offsets.
    fn restore(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        rewind: bool,
    ) -> Result<(), KafkaError> {
        let status = self.opts.status.clone();
        RuntimeStatus::set(&status.ready, false);
        for shard in std::mem::take(&mut self.shards).into_values() {
            let mut c = shard.engine.counters().clone();
            c.buffered_events = 0;
            c.active_sessions = 0;
            c.visitors = 0;
            add_counters(&mut self.retired, &c);
        }
        let assignment = consumer.assignment()?;
        let events_topic = self.opts.settings.events_topic.clone();
        let partitions: Vec<i32> = assignment
            .elements()
            .iter()
            .filter(|e| e.topic() == events_topic)
            .map(|e| e.partition())
            .collect();
        status
            .assigned_partitions
            .store(partitions.len() as i64, Ordering::Relaxed);
        status
            .restoring_partitions
            .store(partitions.len() as i64, Ordering::Relaxed);
        let models = self.opts.models.current();
        self.models_version = self.opts.models.version();
        self.opts.metrics.set_models(&models);
        for &p in &partitions {
            self.shards.insert(
                p,
                Shard {
                    partition: p,
                    engine: Engine::new(self.opts.engine_config.clone(), models.clone()),
                    dirty: AHashSet::new(),
                    consent_next: 0,
                    consent_committed: 0,
                    recent_offers: std::collections::VecDeque::new(),
                },
            );
        }
        tracing::info!(partitions = ?partitions, "restoring partition state");

        // 1. Changelog: the state as of the last commit.
        let from_start: Vec<(i32, Option<i64>)> = partitions.iter().map(|p| (*p, None)).collect();
        self.changelog.assign(&from_start)?;
        let ends = self.changelog.end_offsets(&partitions)?;
        let shards = &mut self.shards;
        let mut restore_error = None;
        self.changelog
            .read_until(&ends, &self.opts.shutdown, |p, msg| {
                let Some(shard) = shards.get_mut(&p) else {
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
        if let Some(e) = restore_error {
            // A snapshot we cannot read means state we cannot trust: refuse
            // to process rather than guess.
            return Err(e.into());
        }
        self.changelog.assign(&[])?;

        // 2. Consent: rebuilt from the compacted topic itself.
        self.consent.assign(&from_start)?;
        let ends = self.consent.end_offsets(&partitions)?;
        self.apply_consent_until(&ends, true)?;
        for shard in self.shards.values_mut() {
            shard.consent_next = shard
                .consent_next
                .max(self.consent.position(shard.partition));
        }

        // 3. Positions: after an abort, back to the committed offsets.
        if rewind && !partitions.is_empty() {
            let committed = consumer.committed(Duration::from_secs(30))?;
            for e in committed.elements() {
                if e.topic() != events_topic {
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
        }
        status.restoring_partitions.store(0, Ordering::Relaxed);
        RuntimeStatus::set(&status.ready, true);
        RuntimeStatus::set(&status.broker_reachable, true);
        tracing::info!(partitions = partitions.len(), "partition state restored");
        Ok(())
    }

    /// Applies consent records up to `ends`. While `restoring`, records
    /// below a shard's committed consent position are loaded without side
    /// effects (their effects are in the restored snapshots).
    fn apply_consent_until(
        &mut self,
        ends: &std::collections::HashMap<i32, i64>,
        restoring: bool,
    ) -> Result<(), KafkaError> {
        let mut deliveries: Vec<PendingConsent> = Vec::new();
        let status = self.opts.status.clone();
        {
            let shards = &mut self.shards;
            self.consent
                .read_until(ends, &self.opts.shutdown, |p, msg| {
                    let Some(shard) = shards.get_mut(&p) else {
                        return;
                    };
                    let ts = msg.timestamp().to_millis().unwrap_or_else(now_ms);
                    if restoring && msg.offset() < shard.consent_committed {
                        shard.engine.load_consent(msg.key(), msg.payload(), ts);
                        shard.consent_next = msg.offset() + 1;
                        status
                            .consent_records_loaded
                            .fetch_add(1, Ordering::Relaxed);
                    } else {
                        deliveries.push(PendingConsent {
                            partition: p,
                            offset: msg.offset(),
                            key: msg.key().map(<[u8]>::to_vec),
                            value: msg.payload().map(<[u8]>::to_vec),
                            time_ms: ts,
                        });
                    }
                })?;
        }
        if deliveries.is_empty() {
            return Ok(());
        }
        self.ensure_txn()?;
        let consent_topic = self.opts.settings.consent_topic.clone();
        for PendingConsent {
            partition: p,
            offset,
            key,
            value,
            time_ms: ts,
        } in deliveries
        {
            let Some(shard) = self.shards.get_mut(&p) else {
                continue;
            };
            let origin = Origin::Kafka {
                topic: consent_topic.clone(),
                partition: p,
                offset,
            };
            let mut sink = KafkaSink {
                producer: &self.producer,
                topics: &self.topics,
                dirty: &mut shard.dirty,
                recent_offers: &mut shard.recent_offers,
                key: key.as_deref(),
                error: &mut self.produce_error,
                metrics: &self.opts.metrics,
                record_time_ms: None,
                offer_times: &mut self.offer_times,
            };
            shard.engine.process_consent(
                key.as_deref(),
                value.as_deref(),
                ts,
                &origin,
                Some(now_ms()),
                &mut sink,
            );
            shard.consent_next = offset + 1;
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: &[BorrowedMessage<'_>]) -> Result<(), KafkaError> {
        // One span per batch: log lines inside (warnings, debug visitor
        // traces) carry its size; nothing here logs per event at info.
        let _span = tracing::debug_span!("batch", events = batch.len()).entered();
        let mut parts: Vec<i32> = batch.iter().map(Message::partition).collect();
        parts.sort_unstable();
        parts.dedup();
        parts.retain(|p| self.shards.contains_key(p));
        // Consent first: everything written to these consent partitions up
        // to now is applied before any event of the batch.
        let consent_started = Instant::now();
        let ends = self.consent.end_offsets(&parts)?;
        let queried = consent_started.elapsed();
        self.apply_consent_until(&ends, false)?;
        tracing::debug!(
            query_ms = queried.as_secs_f64() * 1000.0,
            total_ms = consent_started.elapsed().as_secs_f64() * 1000.0,
            partitions = parts.len(),
            "consent caught up"
        );
        if parts.len() == self.shards.len() {
            self.last_consent_sync = Instant::now();
        }
        self.ensure_txn()?;
        let timer = self.opts.metrics.batch_seconds.start_timer();
        let now = now_ms();
        let events_topic = self.opts.settings.events_topic.clone();
        self.opts
            .status
            .events_consumed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for msg in batch {
            let p = msg.partition();
            let Some(shard) = self.shards.get_mut(&p) else {
                continue;
            };
            let origin = Origin::Kafka {
                topic: events_topic.clone(),
                partition: p,
                offset: msg.offset(),
            };
            let mut sink = KafkaSink {
                producer: &self.producer,
                topics: &self.topics,
                dirty: &mut shard.dirty,
                recent_offers: &mut shard.recent_offers,
                key: msg.key(),
                error: &mut self.produce_error,
                metrics: &self.opts.metrics,
                record_time_ms: msg.timestamp().to_millis(),
                offer_times: &mut self.offer_times,
            };
            shard.engine.process_event(
                msg.key(),
                msg.payload().unwrap_or_default(),
                &origin,
                Some(now),
                &mut sink,
            );
            self.offsets.insert(p, msg.offset() + 1);
        }
        timer.observe_duration();
        if let Some(e) = self.produce_error.take() {
            return Err(e.into());
        }
        Ok(())
    }

    fn commit(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), Recovery> {
        let _span = tracing::info_span!("transaction", partitions = self.offsets.len()).entered();
        let started = Instant::now();
        let result = self.try_commit(consumer);
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1000.0,
            ok = result.is_ok(),
            "commit"
        );
        match result {
            Ok(()) => {
                self.txn_open = false;
                self.offsets.clear();
                self.last_commit = Instant::now();
                for shard in self.shards.values_mut() {
                    shard.consent_committed = shard.consent_next;
                }
                self.opts.status.commits.fetch_add(1, Ordering::Relaxed);
                RuntimeStatus::set(&self.opts.status.broker_reachable, true);
                let now = now_ms();
                for t in self.offer_times.drain(..) {
                    self.opts
                        .metrics
                        .offer_latency
                        .observe((now - t).max(0) as f64 / 1000.0);
                }
                self.publish_counters();
                Ok(())
            }
            Err(e) => {
                let recovery = classify(&e);
                tracing::warn!(error = %e, ?recovery, "transaction commit failed");
                self.opts.status.error(format!("commit failed: {e}"));
                if recovery == Recovery::Abort {
                    self.abort_open();
                } else {
                    self.txn_open = false;
                    self.offsets.clear();
                    self.opts.status.aborts.fetch_add(1, Ordering::Relaxed);
                }
                Err(recovery)
            }
        }
    }

    fn try_commit(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), RdKafkaError> {
        for shard in self.shards.values_mut() {
            write_changelog(shard, &self.producer, &self.topics)?;
        }
        if let Some(e) = self.produce_error.take() {
            return Err(e);
        }
        if !self.offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &self.offsets {
                tpl.add_partition_offset(&self.opts.settings.events_topic, *p, Offset::Offset(*o))?;
            }
            // Without group metadata (not a group member right now) the
            // offsets cannot be committed: abort and rewind.
            let metadata = consumer.group_metadata().ok_or(RdKafkaError::Rebalance(
                rdkafka::error::RDKafkaErrorCode::InvalidGroupId,
            ))?;
            self.retry(|p| p.send_offsets_to_transaction(&tpl, &metadata, TXN_TIMEOUT))?;
        }
        drain_deliveries(&self.producer, TXN_TIMEOUT)?;
        self.retry(|p| p.commit_transaction(TXN_TIMEOUT))
    }

    /// Retries a transactional call while librdkafka says it is retriable
    /// (e.g. a timeout while the broker is away), staying stoppable.
    fn retry(
        &self,
        call: impl Fn(&TxProducer) -> Result<(), RdKafkaError>,
    ) -> Result<(), RdKafkaError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match call(&self.producer) {
                Ok(()) => return Ok(()),
                Err(e) if retriable(&e) => {
                    tracing::warn!(error = %e, "retriable transaction error, retrying");
                    RuntimeStatus::set(&self.opts.status.broker_reachable, false);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
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
            if let Err(recovery) = self.commit(consumer) {
                tracing::warn!(
                    ?recovery,
                    "final commit failed; its input will be reprocessed by the next owner"
                );
            }
        }
        self.publish_counters();
        RuntimeStatus::set(&self.opts.status.ready, false);
        Ok(())
    }
}
