//! Partition ownership of the loop: what happens when partitions are
//! assigned (their shards are restored from the changelog, then from the
//! consent records committed after it — or, for a changelog of an older
//! format, from the whole consent topic, after which the changelog is
//! rewritten so the next restore is bounded; the feedback reader is
//! assigned at the committed feedback position),
//! revoked (the open transaction is committed first, inside the revocation
//! callback, so the next owner starts exactly where this one ended) or
//! must be rebuilt after an abort (every shard restored, the consumer
//! sought back to the committed offsets).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use propensity_engine::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{now_ms, Core, GroupContext};
use crate::error::KafkaError;
use crate::partition_monitoring::{PartitionMonitoring, WindowKind, MONITORING_WINDOW_HEADER};
use crate::shard::{
    Shard, ADAPTIVE_STATE_HEADER, CHANGELOG_FORMAT, CHANGELOG_FORMAT_HEADER,
    CONSENT_POSITION_HEADER, FEEDBACK_POSITION_HEADER, PARTITION_CLOCK_HEADER,
};
use crate::status::RuntimeStatus;

impl Core {
    pub(super) fn note_assignment(&self, consumer: &BaseConsumer<GroupContext>) {
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

    pub(super) fn restore_failed(&mut self, e: KafkaError) {
        if matches!(e, KafkaError::Shutdown) {
            return;
        }
        let e = e.reported(&self.opts.settings.brokers);
        tracing::warn!(error = %e, "restore failed, retrying");
        self.opts.status.error(e.to_string());
        self.abort_and_rewind();
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Drops a shard's state. Its committed work stays counted; work since
    /// its last commit is discarded with the aborted transaction (its
    /// records are consumed again, here or by the next owner) and shows
    /// only as rewound.
    pub(super) fn retire(&mut self, shard: Shard) {
        self.retired.merge(&shard.reported_counters().totals_only());
        self.opts
            .metrics
            .events_rewound
            .inc_by(shard.uncommitted_events());
    }

    pub(super) fn forget_all_shards(&mut self) {
        for shard in std::mem::take(&mut self.shards).into_values() {
            self.retire(shard);
        }
    }

    /// Partitions are being taken away (cooperative rebalance: only these).
    /// The open transaction is committed first, while this instance still
    /// owns them, so their next owner starts exactly where this one ended.
    pub(super) fn revoke(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        partitions: &[i32],
        lost: bool,
    ) {
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
        let mut failed = false;
        for reader in std::iter::once(&mut self.consent).chain(self.feedback.as_mut()) {
            let keep: Vec<(i32, Option<i64>)> = reader
                .assigned()
                .into_iter()
                .filter(|(p, _)| !partitions.contains(p))
                .map(|(p, pos)| (p, Some(pos)))
                .collect();
            if let Err(e) = reader.assign(&keep) {
                tracing::warn!(error = %e, "side-input reader reassignment failed; rewinding");
                failed = true;
            }
        }
        if failed {
            self.abort_and_rewind();
        }
        self.note_assignment(consumer);
        self.publish_progress();
    }

    /// After an abort: every shard is rebuilt from the changelog and the
    /// consent topic, and the consumer is sought back to the committed
    /// offsets.
    pub(super) fn rewind_to_committed(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
    ) -> Result<(), KafkaError> {
        self.abort_open();
        let assignment = consumer.assignment()?;
        let partitions = self.events_partitions(&assignment);
        self.forget_all_shards();
        // Lag and stall bookkeeping outlives the rebuild (a rebuild that
        // keeps failing is exactly what must show as stalled), for the
        // partitions still owned.
        self.progress.retain(&partitions);
        for reader in std::iter::once(&mut self.consent).chain(self.feedback.as_mut()) {
            if let Err(e) = reader.assign(&[]) {
                tracing::warn!(error = %e, "side-input reader unassign failed");
            }
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
    /// snapshots, then consent. The snapshots carry consent as of the
    /// committed consent position, so only the records from there on are
    /// read, and applied with their effects like any new record. A
    /// partition whose changelog a version without consent in its snapshots
    /// wrote (see [`CHANGELOG_FORMAT_HEADER`]) reads the consent topic from
    /// its start instead: records below the position loaded without
    /// effects (they are reflected in the snapshots), newer ones applied;
    /// its next commit rewrites the changelog in the current format. The
    /// other shards are untouched.
    pub(super) fn restore_pending(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
    ) -> Result<(), KafkaError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let partitions: Vec<i32> = self.pending.iter().copied().collect();
        let status = self.opts.status.clone();
        RuntimeStatus::set(&status.ready, false);
        tracing::info!(partitions = ?partitions, "restoring partition state");
        // Timed from here (the restore proper) to the shards' hand-over;
        // a failed restore is not observed (it is retried, and the retry
        // that succeeds is).
        let started = Instant::now();
        let mut changelog_records: u64 = 0;
        let mut consent_records: u64 = 0;
        // Shards kept from before get a model swapped in meanwhile too (the
        // version is only moved on with them), and the new ones start with
        // the same models.
        self.refresh_models();
        let models = self.opts.models.current();
        self.opts.metrics.set_models(&models);
        let mut fresh: BTreeMap<i32, Shard> = partitions
            .iter()
            .map(|&p| {
                let engine = Engine::new(self.opts.engine_config.clone(), models.clone());
                let monitoring = PartitionMonitoring::new(
                    Duration::from_secs_f64(self.opts.settings.drift_window_secs),
                    Duration::from_secs_f64(self.opts.settings.online_eval_window_secs),
                    &models,
                );
                (p, Shard::new(p, engine, monitoring))
            })
            .collect();

        // 1. Changelog: the state as of the last commit.
        let from_start: Vec<(i32, Option<i64>)> = partitions.iter().map(|p| (*p, None)).collect();
        self.changelog.assign(&from_start)?;
        // Not `settled_end_offsets`: after a broker outage this instance's
        // own aborted transaction was seen pending on the changelog for
        // minutes, and a restore waiting for it never ran (a stall).
        let ends = self.changelog.end_offsets(&partitions)?;
        let mut restore_error = None;
        // Per partition: whether its snapshots carry consent up to the
        // committed position: its latest position record, and every record
        // after it, were written in the current format. A record of an
        // older version after the position (a rolling upgrade moved the
        // partition back and forth) may have replaced a snapshot that
        // carried consent by one that does not.
        let mut bounded: BTreeMap<i32, bool> = partitions.iter().map(|p| (*p, false)).collect();
        // Per partition: the feedback position of its latest position
        // record, when it has one (else feedback is read from the start).
        let mut feedback_from: BTreeMap<i32, i64> = BTreeMap::new();
        self.changelog
            .read_until(&ends, &self.opts.shutdown, |p, msg| {
                let Some(shard) = fresh.get_mut(&p) else {
                    return;
                };
                changelog_records += 1;
                status.restored_records.fetch_add(1, Ordering::Relaxed);
                let header = |key: &str| {
                    msg.headers()
                        .and_then(|h| h.iter().find(|x| x.key == key))
                        .map(|x| x.value)
                };
                let current_format =
                    header(CHANGELOG_FORMAT_HEADER) == Some(Some(CHANGELOG_FORMAT.as_bytes()));
                let is_position = header(CONSENT_POSITION_HEADER).is_some();
                if is_position {
                    bounded.insert(p, current_format);
                } else if !current_format {
                    bounded.insert(p, false);
                }
                if is_position {
                    if let Some(v) = msg
                        .payload()
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse().ok())
                    {
                        shard.consent_committed = v;
                    }
                    match header(FEEDBACK_POSITION_HEADER)
                        .flatten()
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        Some(v) => {
                            shard.feedback_committed = v;
                            shard.feedback_next = v;
                            feedback_from.insert(p, v);
                        }
                        None => {
                            feedback_from.remove(&p);
                        }
                    }
                    // Clocks only move forward, so restoring each one read
                    // (the engine keeps the greatest) leaves the latest.
                    if let Some(clock) = header(PARTITION_CLOCK_HEADER)
                        .flatten()
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse().ok())
                    {
                        shard.restore_clock(clock);
                    }
                    return;
                }
                if let Some(kind) = header(MONITORING_WINDOW_HEADER)
                    .flatten()
                    .and_then(WindowKind::parse)
                {
                    shard
                        .monitoring
                        .restore(kind, msg.key().unwrap_or_default(), msg.payload());
                    return;
                }
                if header(ADAPTIVE_STATE_HEADER).is_some() {
                    // The latest one read is the partition's committed state.
                    let restored = serde_json::from_slice::<
                        Vec<(String, propensity_engine::adaptive::LearnerState)>,
                    >(msg.payload().unwrap_or_default())
                    .map_err(|e| propensity_engine::EngineError::AdaptiveState(e.to_string()))
                    .and_then(|states| {
                        shard
                            .engine
                            .restore_learner_states(u32::try_from(p).unwrap_or(0), &states)
                    });
                    if let Err(e) = restored {
                        restore_error.get_or_insert(e);
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
        let restored_at = now_ms();
        for shard in fresh.values_mut() {
            for e in shard.monitoring.restored(restored_at, &models) {
                tracing::warn!(partition = shard.partition, error = %e, "a monitoring window record is unreadable; its counts are left out");
            }
        }
        let changelog_seconds = started.elapsed().as_secs_f64();
        if let Some(e) = restore_error {
            // A snapshot we cannot read means state we cannot trust: refuse
            // to process rather than guess.
            return Err(e.into());
        }

        // 2. Consent: a bounded partition from its committed position (every
        // record read is newer than its snapshots); any other from the start
        // of the topic, records below the position loaded without effects.
        let mut consent_assignment: Vec<(i32, Option<i64>)> = self
            .consent
            .assigned()
            .into_iter()
            .filter(|(p, _)| !fresh.contains_key(p))
            .map(|(p, pos)| (p, Some(pos)))
            .collect();
        consent_assignment.extend(fresh.values().map(|s| {
            let from = bounded[&s.partition].then_some(s.consent_committed);
            (s.partition, from)
        }));
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
        let out = &mut self.out;
        let now = now_ms();
        self.consent
            .read_until(&ends, &self.opts.shutdown, |p, msg| {
                let Some(shard) = fresh.get_mut(&p) else {
                    return;
                };
                consent_records += 1;
                let ts = msg.timestamp().to_millis().unwrap_or(now);
                if msg.offset() < shard.consent_committed {
                    shard.engine.load_consent(msg.key(), msg.payload(), ts);
                    shard.consent_next = msg.offset() + 1;
                    loaded.fetch_add(1, Ordering::Relaxed);
                } else {
                    // Newer than the snapshots: applied with its effects
                    // (outputs, changelog) inside the open transaction.
                    shard.process_consent(out, msg, now);
                }
            })?;
        if let Some(e) = self.out.error.take() {
            return Err(e.into());
        }
        let mut from_start_partitions = 0;
        for shard in fresh.values_mut() {
            shard.consent_next = shard
                .consent_next
                .max(self.consent.position(shard.partition));
            if !bounded[&shard.partition] {
                from_start_partitions += 1;
                shard.rewrite_all_at_next_commit();
            }
        }
        if from_start_partitions > 0 {
            // The rewrite is committed soon, not only once events arrive.
            self.ensure_txn()?;
        }

        // 3. Feedback: from the committed position, applied later, before
        // each batch, like new records (the snapshots carry the contact
        // state up to that position).
        if let Some(reader) = self.feedback.as_mut() {
            let mut assignment: Vec<(i32, Option<i64>)> = reader
                .assigned()
                .into_iter()
                .filter(|(p, _)| !fresh.contains_key(p))
                .map(|(p, pos)| (p, Some(pos)))
                .collect();
            assignment.extend(
                fresh
                    .keys()
                    .map(|p| (*p, feedback_from.get(p).copied().filter(|o| *o > 0))),
            );
            reader.assign(&assignment)?;
        }

        // 4. Lag bookkeeping from the group's committed offsets.
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
        let seconds = started.elapsed().as_secs_f64();
        let metrics = &self.opts.metrics;
        metrics.restore_seconds.observe(seconds);
        // The changelog side is counted as it is read (status.restored_records,
        // exported as propensity_changelog_restored_records_total).
        metrics.consent_restored_records.inc_by(consent_records);
        tracing::info!(
            partitions = partitions.len(),
            changelog_records,
            consent_records,
            consent_from_start_partitions = from_start_partitions,
            changelog_seconds,
            seconds,
            "partition state restored"
        );
        Ok(())
    }
}
