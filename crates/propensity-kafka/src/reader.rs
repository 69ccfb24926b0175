//! Reading partitions by assignment up to "the end as of now": the consent
//! partitions (rebuild on assignment, then tailing before every event batch)
//! and the changelog partitions (state restore).
//!
//! "Caught up" for a partition means every record committed before the end
//! offset was queried has been handed to the caller. The consumer's
//! position reaches that end unless the partition ends in transaction
//! control markers (transactional producers, such as our own changelog
//! writer) or aborted records, which are never delivered. For those, the
//! end-of-partition event stands in: once the fetcher has reported EOF and
//! no record has arrived for a short grace period, the rest is markers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};

use crate::client_config;
use crate::error::KafkaError;
use crate::settings::KafkaSettings;

/// How long after an EOF without new records the remaining offsets are
/// taken to be control markers.
const MARKER_GRACE: Duration = Duration::from_millis(40);
/// Timeout of one end-offset query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Client context of readers: end-of-partition is expected here, not an
/// error worth logging.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: RdKafkaError, reason: &str) {
        if !matches!(error, RdKafkaError::PartitionEOF(_))
            && !reason.contains("reached end of partition")
        {
            tracing::warn!(error = %error, reason, "kafka reader error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// An assign-only reader of one topic.
pub struct PartitionReader {
    consumer: BaseConsumer<ReaderContext>,
    /// A second client for end-offset queries: on the reader's own
    /// connection a query waits behind its long-polling fetch.
    query: BaseConsumer<ReaderContext>,
    topic: String,
    /// Next offset per assigned partition (last delivered + 1).
    position: HashMap<i32, i64>,
    /// An EOF was reported after the last delivered record.
    eof: HashMap<i32, bool>,
}

impl PartitionReader {
    /// A reader of `topic`.
    pub fn new(settings: &KafkaSettings, purpose: &str, topic: &str) -> Result<Self, KafkaError> {
        let mut cfg = client_config::reader(settings, purpose);
        cfg.set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10");
        Ok(Self {
            consumer: cfg.create_with_context(ReaderContext)?,
            query: client_config::reader(settings, purpose).create_with_context(ReaderContext)?,
            topic: topic.to_owned(),
            position: HashMap::new(),
            eof: HashMap::new(),
        })
    }

    /// Assigns `partitions`, each from the given offset (`None`: beginning).
    pub fn assign(&mut self, partitions: &[(i32, Option<i64>)]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        self.position.clear();
        self.eof.clear();
        for (p, from) in partitions {
            let offset = from.map_or(Offset::Beginning, Offset::Offset);
            tpl.add_partition_offset(&self.topic, *p, offset)?;
            self.position.insert(*p, from.unwrap_or(0));
            self.eof.insert(*p, false);
        }
        self.consumer.assign(&tpl)?;
        Ok(())
    }

    /// Current end offsets of `partitions`, in one ListOffsets request on
    /// a client of its own: timestamp -1 asks for the latest offset, which
    /// under `read_committed` is the last stable offset. (A watermark query
    /// per partition, on the reader's connection behind its long-polling
    /// fetch, cost ~10 ms per partition on every batch.)
    pub fn end_offsets(&self, partitions: &[i32]) -> Result<HashMap<i32, i64>, KafkaError> {
        let mut ends = HashMap::new();
        if partitions.is_empty() {
            return Ok(ends);
        }
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(&self.topic, *p, Offset::End)?;
        }
        let answer = self.query.offsets_for_times(tpl, QUERY_TIMEOUT)?;
        for e in answer.elements() {
            if let Err(err) = e.error() {
                return Err(KafkaError::Client(err));
            }
            let end = match e.offset() {
                Offset::Offset(o) => o,
                // No offset known (empty partition): nothing to wait for.
                _ => 0,
            };
            ends.insert(e.partition(), end);
        }
        Ok(ends)
    }

    /// Delivers records until every partition in `ends` is caught up.
    /// `deliver(partition, message)` is called in offset order per partition.
    pub fn read_until(
        &mut self,
        ends: &HashMap<i32, i64>,
        shutdown: &AtomicBool,
        mut deliver: impl FnMut(i32, &BorrowedMessage<'_>),
    ) -> Result<(), KafkaError> {
        let started = Instant::now();
        let mut last_record = started;
        loop {
            let pending = ends.iter().any(|(p, end)| {
                let pos = self.position.get(p).copied().unwrap_or(0);
                pos < *end
                    && !(self.eof.get(p).copied().unwrap_or(false)
                        && started.elapsed() >= MARKER_GRACE
                        && last_record.elapsed() >= MARKER_GRACE)
            });
            if !pending {
                return Ok(());
            }
            if shutdown.load(Ordering::Relaxed) {
                return Err(KafkaError::Shutdown);
            }
            match self.consumer.poll(Duration::from_millis(10)) {
                None => {}
                Some(Ok(msg)) => {
                    use rdkafka::Message;
                    let p = msg.partition();
                    self.position.insert(p, msg.offset() + 1);
                    self.eof.insert(p, false);
                    last_record = Instant::now();
                    deliver(p, &msg);
                }
                Some(Err(RdKafkaError::PartitionEOF(p))) => {
                    self.eof.insert(p, true);
                }
                Some(Err(e)) => {
                    // Transient broker trouble: librdkafka retries by
                    // itself; we keep polling (and stay stoppable).
                    tracing::warn!(topic = %self.topic, error = %e, "reader poll error");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Next offset of a partition.
    pub fn position(&self, partition: i32) -> i64 {
        self.position.get(&partition).copied().unwrap_or(0)
    }
}
