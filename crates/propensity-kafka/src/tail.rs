//! Reading an output topic as its consumers do, for `propensity tail`:
//! `read_committed` (only records of committed transactions, so exactly
//! what a downstream consumer will act on), every partition assigned
//! directly (no group membership, no rebalance, nothing committed: tailing
//! never moves anyone's offsets), from the log start or from the end
//! offsets as they are when the tail starts.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::client_config;
use crate::client_log::LoggedContext;
use crate::error::KafkaError;
use crate::reader::{OffsetQuery, PartitionReader};
use crate::settings::KafkaSettings;
use crate::CancellationToken;

/// Where a tail starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailStart {
    /// Every record still in the log.
    Beginning,
    /// Only records committed after the tail started.
    End,
}

/// One record read, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Kafka timestamp (epoch milliseconds), when the record has one.
    pub timestamp_ms: Option<i64>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: a tombstone, or a dead letter whose value was
    /// cut entirely).
    pub value: Option<Vec<u8>>,
    /// Headers in record order (dead letters carry their reason here).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A `read_committed` reader of every partition of one topic.
pub struct TailConsumer {
    consumer: BaseConsumer<LoggedContext>,
    /// Where each partition started, for the start-up log line.
    pub start_offsets: Vec<(i32, i64)>,
}

impl TailConsumer {
    /// Assigns `partitions` of `topic`. [`TailStart::End`] resolves the end
    /// offsets now (one ListOffsets request) rather than letting librdkafka
    /// resolve `OFFSET_END` at its first fetch, so "new records" means
    /// records committed after this returns.
    pub fn new(
        settings: &KafkaSettings,
        topic: &str,
        partitions: &[i32],
        start: TailStart,
    ) -> Result<Self, KafkaError> {
        let query = OffsetQuery::new(settings, "tail", topic)?;
        let offsets = match start {
            TailStart::Beginning => query.start_offsets(partitions)?,
            TailStart::End => query.end_offsets(partitions)?,
        };
        let mut cfg = client_config::reader(settings, "tail");
        // A tail is read by a person or a test waiting for the next line:
        // deliver small batches at once rather than fill fetches.
        cfg.set("fetch.wait.max.ms", "50");
        let consumer: BaseConsumer<LoggedContext> = cfg.create_with_context(LoggedContext)?;
        let mut tpl = TopicPartitionList::new();
        let mut start_offsets = Vec::with_capacity(partitions.len());
        for &p in partitions {
            let at = offsets.get(&p).copied().unwrap_or(0);
            tpl.add_partition_offset(topic, p, Offset::Offset(at))?;
            start_offsets.push((p, at));
        }
        consumer.assign(&tpl)?;
        Ok(Self {
            consumer,
            start_offsets,
        })
    }

    /// The next record, waiting up to `timeout` (`Ok(None)`: none came).
    /// Consumer errors are returned: librdkafka retries broker trouble on
    /// its own, so the caller may log them and keep polling.
    pub fn next(&self, timeout: Duration) -> Result<Option<TailRecord>, KafkaError> {
        let Some(polled) = self.consumer.poll(timeout) else {
            return Ok(None);
        };
        let m = polled?;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_owned(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(TailRecord {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }))
    }
}

/// Every record value committed to `partitions` of `topic` so far,
/// read_committed from the log start up to the settled end offsets (a
/// transaction open when it starts is waited for, up to `max_wait`), in
/// offset order per partition. For reports over a whole output topic; like
/// a tail it joins no group and commits nothing.
pub fn read_committed_values(
    settings: &KafkaSettings,
    topic: &str,
    partitions: &[i32],
    max_wait: Duration,
) -> Result<Vec<Vec<u8>>, KafkaError> {
    let never = CancellationToken::new();
    let mut reader = PartitionReader::new(settings, "report", topic)?;
    let from: Vec<(i32, Option<i64>)> = partitions.iter().map(|p| (*p, None)).collect();
    reader.assign(&from)?;
    let ends = reader.settled_end_offsets(partitions, max_wait, &never)?;
    let mut values = Vec::new();
    reader.read_until(&ends, &never, |_, m| {
        if let Some(v) = m.payload() {
            values.push(v.to_vec());
        }
    })?;
    Ok(values)
}
