//! The events of one batch, processed on the shards in parallel.
//!
//! The loop polls a batch and applies consent first (see [`super::Core`]);
//! only then are the batch's events split by partition and each
//! partition's events run, in offset order, on its shard by one worker.
//! Shards share nothing (a visitor hashes to one partition: the partition
//! equivalence property of docs/architecture.md), so a partition's outputs
//! are the same whichever worker runs it and whatever runs beside it.
//!
//! Workers send their records straight into the open transaction: the
//! producer is thread-safe, and Kafka keeps order per output partition per
//! producer, so a partition's offers, scores and dead letters keep their
//! events' order (records of different input partitions were never
//! ordered against each other). What a send reports back (the first error,
//! offer times) is kept per worker and merged by the loop after the join,
//! before it decides to commit or abort: the single transaction still
//! covers the whole batch or none of it. The loop thread is one of the
//! workers; the others are scoped threads that end with the batch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use crate::shard::{send_unproducible, OutputTarget, SendReport, Shard};

/// What processing one partition's events of a batch yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartitionTally {
    /// Next event offset of the partition (the last one processed + 1).
    pub next_offset: i64,
    /// Events consumed (processed or dead-lettered as unproducible).
    pub consumed: u64,
    /// Of those, dead-lettered as unproducible.
    pub unproducible: u64,
    /// Offset of the last event processed.
    pub last_offset: i64,
}

/// One partition's share of the batch.
struct Job<'s, 'b, 'm> {
    shard: &'s mut Shard,
    events: Vec<&'b BorrowedMessage<'m>>,
}

/// Everything a batch's events produced.
pub(super) struct BatchRun {
    /// Per partition that had events, in partition order.
    pub tallies: BTreeMap<i32, PartitionTally>,
    /// The workers' send reports (merged into the transaction's outputs
    /// by the loop).
    pub reports: Vec<SendReport>,
}

/// Processes `batch` on `shards` with up to `workers` threads. Records of
/// partitions without a shard (revoked while the batch was polled) are
/// skipped. Events in `unproducible` are dead-lettered without reaching
/// the engine.
pub(super) fn process_events(
    shards: &mut BTreeMap<i32, Shard>,
    batch: &[BorrowedMessage<'_>],
    unproducible: &BTreeSet<(i32, i64)>,
    target: OutputTarget<'_>,
    workers: usize,
    now_ms: i64,
) -> BatchRun {
    let mut by_partition: BTreeMap<i32, Vec<&BorrowedMessage<'_>>> = BTreeMap::new();
    for msg in batch {
        by_partition.entry(msg.partition()).or_default().push(msg);
    }
    let mut jobs: Vec<Job<'_, '_, '_>> = shards
        .iter_mut()
        .filter_map(|(p, shard)| by_partition.remove(p).map(|events| Job { shard, events }))
        .collect();
    // Largest last: workers pop from the end, so the longest jobs start
    // first and the short ones fill in.
    jobs.sort_by_key(|job| job.events.len());
    let threads = workers.clamp(1, jobs.len().max(1));
    let mut run = BatchRun {
        tallies: BTreeMap::new(),
        reports: Vec::new(),
    };
    if threads == 1 {
        let mut report = SendReport::default();
        for job in jobs {
            let (p, tally) = run_job(job, unproducible, target, &mut report, now_ms);
            run.tallies.insert(p, tally);
        }
        run.reports.push(report);
        return run;
    }
    let queue = Mutex::new(jobs);
    let work = || {
        let mut report = SendReport::default();
        let mut tallies = Vec::new();
        loop {
            let job = queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let Some(job) = job else { break };
            tallies.push(run_job(job, unproducible, target, &mut report, now_ms));
        }
        (tallies, report)
    };
    let results: Vec<_> = std::thread::scope(|scope| {
        let spawned: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut results = vec![work()];
        for handle in spawned {
            match handle.join() {
                Ok(result) => results.push(result),
                // A panic on a worker is a panic of the loop.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    });
    for (tallies, report) in results {
        run.tallies.extend(tallies);
        run.reports.push(report);
    }
    run
}

/// Runs one partition's events in order on its shard.
fn run_job(
    job: Job<'_, '_, '_>,
    unproducible: &BTreeSet<(i32, i64)>,
    target: OutputTarget<'_>,
    report: &mut SendReport,
    now_ms: i64,
) -> (i32, PartitionTally) {
    let Job { shard, events } = job;
    let mut tally = PartitionTally {
        next_offset: 0,
        consumed: 0,
        unproducible: 0,
        last_offset: -1,
    };
    for msg in events {
        let (p, offset) = (msg.partition(), msg.offset());
        // Kept until committed: a failed transaction reads it again.
        if unproducible.contains(&(p, offset)) {
            if let Err(e) = send_unproducible(target, msg) {
                report.error.get_or_insert(e);
            }
            tally.unproducible += 1;
        } else {
            shard.process_event(target, report, msg, now_ms);
        }
        tally.next_offset = offset + 1;
        tally.last_offset = offset;
        tally.consumed += 1;
    }
    (shard.partition, tally)
}
