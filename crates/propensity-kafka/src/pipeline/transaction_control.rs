//! The loop's one open transaction: begin, commit (changelog and consumed
//! offsets staged first), abort and rewind, producer replacement, and the
//! isolation of input events whose outputs the broker refuses. The
//! decisions on retry, abort and replacement are in [`crate::transaction`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use super::{now_ms, Core, GroupContext, TXN_TIMEOUT};
use crate::client_config;
use crate::delivery::DeliveryWatch;
use crate::error::KafkaError;
use crate::settings::KafkaSettings;
use crate::shard::TxProducer;
use crate::status::RuntimeStatus;
use crate::transaction::{self, AbortOutcome, CommitOutcome, Failure, PolledProducer, RetryPolicy};

impl Core {
    pub(super) fn ensure_txn(&mut self) -> Result<(), KafkaError> {
        if !self.txn_open {
            self.out.producer.begin_transaction()?;
            self.txn_open = true;
        }
        Ok(())
    }

    /// Aborts the open transaction (driven to completion, or the producer
    /// is replaced) and schedules the rewind of every shard.
    pub(super) fn abort_and_rewind(&mut self) {
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
    pub(super) fn after_refusals(&mut self, refused: u64, attempted: BTreeMap<i32, i64>) {
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
    pub(super) fn abort_open(&mut self) {
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
        self.commit_clock.count_from(Instant::now());
    }

    /// Replaces the producer; a new one with the same transactional id
    /// fences the old one and aborts whatever it left open. Retried until
    /// it works or the instance stops.
    pub(super) fn replace_producer(&mut self, why: &Failure) {
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

    /// Commits the open transaction. On failure it has been aborted (or
    /// the producer replaced) and a rewind is scheduled.
    pub(super) fn commit(&mut self, consumer: &BaseConsumer<GroupContext>) -> bool {
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
                self.commit_clock.count_from(started);
                for shard in self.shards.values_mut() {
                    shard.mark_committed();
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

    pub(super) fn after_failed_commit(&mut self) {
        self.unproducible_in_txn = 0;
        self.txn_open = false;
        self.offsets.clear();
        self.out.offer_times.clear();
        self.out.error = None;
        self.commit_clock.count_from(Instant::now());
        self.rewind = true;
        RuntimeStatus::set(&self.opts.status.ready, false);
    }

    /// Queues the changelog and the consumed offsets into the transaction.
    pub(super) fn stage_commit(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
    ) -> Result<(), Failure> {
        let classify = |e: RdKafkaError| Failure::classify(&e);
        let now = now_ms();
        for shard in self.shards.values_mut() {
            shard.write_changelog(&self.out, now).map_err(classify)?;
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
}

pub(super) fn create_producer(
    s: &KafkaSettings,
    instance_id: &str,
    shutdown: &CancellationToken,
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
                if !shutdown.is_cancelled()
                    && Failure::classify(&e).kind != transaction::FailureKind::Fatal =>
            {
                tracing::warn!(error = %e, "init_transactions failed, retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
