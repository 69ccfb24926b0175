//! Acknowledged sends: [`AckProducer`] tells per send when and where the
//! broker acknowledged it ([`Acked`]).
//!
//! Tests of races and liveness must do the opposite of the paced producing
//! of [`Deployment`] (see [`crate::deployment`]): their producers never
//! wait for the pipeline's commits between records (they may wait for the
//! broker's acknowledgement of a send, see [`AckProducer`]), so that a
//! pipeline that only works when traffic is spaced out fails them.
//!
//! [`Deployment`]: crate::Deployment

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use propensity_kafka::KafkaSettings;
use rdkafka::Message;
use serde_json::Value;

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

#[derive(Default)]
struct AckContext {
    results: Mutex<HashMap<usize, Result<Acked, String>>>,
}

impl rdkafka::ClientContext for AckContext {}

impl rdkafka::producer::ProducerContext for AckContext {
    type DeliveryOpaque = Box<usize>;
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, ticket: Box<usize>) {
        let result = match r {
            Ok(m) => Ok(Acked {
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, _)) => Err(e.to_string()),
        };
        if let Ok(mut map) = self.results.lock() {
            map.insert(*ticket, result);
        }
    }
}

/// A producer (murmur2 partitioner, idempotent, like the data platform's)
/// that tells per send when and where the broker acknowledged it, and can
/// set a record's Kafka timestamp (tombstones are dated by it).
pub struct AckProducer {
    producer: rdkafka::producer::BaseProducer<AckContext>,
    next: AtomicUsize,
}

impl AckProducer {
    /// A producer with extra librdkafka properties (e.g.
    /// `message.max.bytes`).
    pub fn new(settings: &KafkaSettings, extra: &[(&str, &str)]) -> Self {
        let mut cfg = propensity_kafka::client_config::plain_producer(settings);
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        Self {
            producer: cfg
                .create_with_context(AckContext::default())
                .expect("producer"),
            next: AtomicUsize::new(0),
        }
    }

    /// Queues a record (never waits for the pipeline); returns its ticket.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) -> usize {
        use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
        use rdkafka::producer::BaseRecord;
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let mut record =
            BaseRecord::<[u8], [u8], Box<usize>>::with_opaque_to(topic, Box::new(ticket));
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(t) = timestamp_ms {
            record = record.timestamp(t);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer.poll(Duration::ZERO);
                    return ticket;
                }
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("cannot queue a record to {topic}: {e}"),
            }
        }
    }

    /// Sends a JSON value keyed by its `visitor_id`.
    pub fn send_json(&self, topic: &str, value: &Value, timestamp_ms: Option<i64>) -> usize {
        let bytes = serde_json::to_vec(value).expect("json");
        let key = value["visitor_id"].as_str().map(str::as_bytes);
        self.send(topic, key, Some(&bytes), timestamp_ms)
    }

    /// Waits for the broker's acknowledgement of each ticket; panics on a
    /// failed delivery or after `timeout`.
    pub fn wait_acked(&self, tickets: &[usize], timeout: Duration) -> Vec<Acked> {
        use rdkafka::producer::Producer as _;
        let started = Instant::now();
        loop {
            {
                let map = self.producer.context().results.lock().expect("acks");
                if tickets.iter().all(|t| map.contains_key(t)) {
                    return tickets
                        .iter()
                        .map(|t| {
                            map[t]
                                .clone()
                                .unwrap_or_else(|e| panic!("the broker refused a record: {e}"))
                        })
                        .collect();
                }
            }
            assert!(
                started.elapsed() < timeout,
                "records not acknowledged within {timeout:?}"
            );
            self.producer.poll(Duration::from_millis(1));
        }
    }

    /// Waits until everything sent so far is acknowledged (panics on a
    /// failed delivery).
    pub fn flush(&self, timeout: Duration) {
        let tickets: Vec<usize> = (0..self.next.load(Ordering::Relaxed)).collect();
        self.wait_acked(&tickets, timeout);
    }
}
