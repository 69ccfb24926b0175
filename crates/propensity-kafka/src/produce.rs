//! Producing records to the input topics (test traffic, demos, benchmarks)
//! the way a well-behaved data platform must: keyed by `visitor_id` with the
//! murmur2 partitioner, so a visitor's events and consent share a partition
//! number; in the given order; optionally at a fixed rate.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::client_config;
use crate::client_log::LoggedContext;
use crate::delivery::{serve_then_pause, DELIVERY_POLL_PAUSE};
use crate::error::KafkaError;
use crate::settings::KafkaSettings;

/// One record to produce.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Key (the visitor id), if known.
    pub key: Option<&'a [u8]>,
    /// Value (`None`: tombstone).
    pub value: Option<&'a [u8]>,
}

/// A plain idempotent producer with the murmur2 partitioner. A
/// `BaseProducer` polled by us: flushing then waits exactly as long as the
/// acknowledgements take (the threaded producer's flush sleeps in 100 ms
/// steps, which made paced test traffic ten times slower).
pub struct TrafficProducer {
    producer: BaseProducer<LoggedContext>,
    /// `kafka.brokers`, named when acknowledgements do not come.
    brokers: String,
}

impl TrafficProducer {
    /// Connects.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: client_config::plain_producer(settings).create_with_context(LoggedContext)?,
            brokers: settings.brokers.clone(),
        })
    }

    /// Queues one record, waiting while the local queue is full.
    pub fn send(&self, r: OutgoingRecord<'_>) -> Result<(), KafkaError> {
        let mut record = BaseRecord::<[u8], [u8]>::to(r.topic);
        if let Some(k) = r.key {
            record = record.key(k);
        }
        if let Some(v) = r.value {
            record = record.payload(v);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer.poll(Duration::ZERO);
                    return Ok(());
                }
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    serve_then_pause(&self.producer, DELIVERY_POLL_PAUSE);
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Waits until everything queued is acknowledged; records still
    /// unacknowledged after `timeout` mean the brokers stopped answering.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let started = Instant::now();
        while self.producer.in_flight_count() > 0 {
            let elapsed = started.elapsed();
            if elapsed > timeout {
                return Err(KafkaError::Unreachable {
                    brokers: self.brokers.clone(),
                    cause: format!(
                        "{} records not acknowledged within {} s",
                        self.producer.in_flight_count(),
                        timeout.as_secs_f64()
                    ),
                });
            }
            // A poll returns as soon as a delivery report was served, so
            // a long one adds no latency; it only keeps an unanswered
            // flush from spinning on the CPU.
            self.producer
                .poll((timeout - elapsed).min(Duration::from_millis(100)));
        }
        Ok(())
    }

    /// Produces `records` in order, at `rate` records/s when given, and
    /// flushes. Returns how many were sent.
    pub fn send_all<'a>(
        &self,
        records: impl IntoIterator<Item = OutgoingRecord<'a>>,
        rate: Option<f64>,
    ) -> Result<u64, KafkaError> {
        let started = Instant::now();
        let mut n = 0u64;
        for r in records {
            if let Some(rate) = rate.filter(|r| *r > 0.0) {
                let due = started + Duration::from_secs_f64(n as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            self.send(r)?;
            n += 1;
        }
        self.flush(Duration::from_secs(60))?;
        Ok(n)
    }
}

/// The `visitor_id` of a JSON record, used as its key.
pub fn visitor_key(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Key {
        visitor_id: Option<String>,
    }
    serde_json::from_slice::<Key>(line).ok()?.visitor_id
}
