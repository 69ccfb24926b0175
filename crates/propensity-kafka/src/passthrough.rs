//! The pass-through baseline of `propensity bench --kafka`: consume the
//! events topic and produce every value unchanged to another topic, with
//! the same client settings as the pipeline (group consumer,
//! read_committed, transactional producer, offsets in the transaction, the
//! same commit interval) and no processing. The pipeline's rate divided by
//! this one is the price of the engine, measured against the same broker in
//! the same run.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::client_config;
use crate::error::KafkaError;
use crate::settings::KafkaSettings;
use crate::shard::{drain_deliveries, send_record, TxProducer};

/// Copies `expected` records from the events topic to `target`; returns the
/// time from the first record consumed to the last commit.
pub fn run_passthrough(
    settings: &KafkaSettings,
    target: &str,
    expected: u64,
    timeout: Duration,
) -> Result<Duration, KafkaError> {
    let consumer: BaseConsumer<crate::client_log::LoggedContext> =
        client_config::events_consumer(settings, "passthrough")
            .create_with_context(crate::client_log::LoggedContext)?;
    let producer: TxProducer = client_config::transactional_producer(settings, "passthrough")
        .create_with_context(crate::delivery::DeliveryWatch::default())?;
    producer.init_transactions(Duration::from_secs(30))?;
    consumer.subscribe(&[&settings.events_topic])?;
    let interval = Duration::from_millis(settings.commit_interval_ms);
    let deadline = Instant::now() + timeout;
    let (mut first, mut done, mut open) = (None, 0u64, false);
    let mut offsets: std::collections::BTreeMap<i32, i64> = Default::default();
    let mut last_commit = Instant::now();
    while done < expected || open {
        if Instant::now() > deadline {
            return Err(KafkaError::Topics(format!(
                "pass-through copied {done} of {expected} records before the timeout"
            )));
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
            first.get_or_insert_with(Instant::now);
            if !open {
                producer.begin_transaction()?;
                open = true;
            }
            let mut rec = BaseRecord::<[u8], [u8]>::to(target);
            if let Some(k) = m.key() {
                rec = rec.key(k);
            }
            if let Some(v) = m.payload() {
                rec = rec.payload(v);
            }
            send_record(&producer, rec)?;
            offsets.insert(m.partition(), m.offset() + 1);
            done += 1;
        }
        if open && (last_commit.elapsed() >= interval || done >= expected) {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &offsets {
                tpl.add_partition_offset(&settings.events_topic, *p, Offset::Offset(*o))?;
            }
            let md = consumer.group_metadata().ok_or_else(|| {
                KafkaError::Topics("pass-through consumer has no group metadata".into())
            })?;
            producer.send_offsets_to_transaction(&tpl, &md, Duration::from_secs(30))?;
            drain_deliveries(&producer, Duration::from_secs(30))?;
            producer.commit_transaction(Duration::from_secs(30))?;
            open = false;
            last_commit = Instant::now();
        }
    }
    Ok(first.map_or(Duration::ZERO, |f| f.elapsed()))
}
