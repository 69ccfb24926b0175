//! One assigned partition: its engine (the visitors that hash to it), the
//! visitors whose changelog record is due at the next commit, and how far
//! the consent partition has been applied. Also the engine sink that turns
//! engine outputs into records of the open transaction.

use std::time::Duration;

use ahash::AHashSet;
use propensity_engine::{DeadLetter, Engine, EngineSink, Offer, Origin, OutcomeScore};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::metrics::PipelineMetrics;

/// Header marking the changelog record that stores the consent position.
pub const CONSENT_POSITION_HEADER: &str = "propensity.consent_position";
/// Key of that record. It carries the header, so it can never be mistaken
/// for a visitor snapshot even if a visitor had this id.
pub const CONSENT_POSITION_KEY: &str = "__propensity.consent_position";

/// The transactional producer type. A `BaseProducer` that the pipeline
/// thread polls itself: with a background polling thread, librdkafka's
/// flush inside `commit_transaction` can only notice the last delivery
/// report in 100 ms steps, which added up to 100 ms to every commit.
pub type TxProducer = BaseProducer;

/// Output topics.
#[derive(Debug, Clone)]
pub struct OutputTopics {
    /// Offers.
    pub offers: String,
    /// Scores (empty: off).
    pub scores: String,
    /// Dead letters.
    pub dead_letters: String,
    /// Changelog.
    pub changelog: String,
}

/// One partition's state.
pub struct Shard {
    /// Partition number (same in events, consent and changelog).
    pub partition: i32,
    /// The engine of the visitors of this partition.
    pub engine: Engine,
    /// Visitors whose changelog record must be written at the next commit.
    pub dirty: AHashSet<Box<str>>,
    /// Next consent offset to apply.
    pub consent_next: i64,
    /// `consent_next` as of the last commit (changelog'd when it moves).
    pub consent_committed: i64,
    /// The latest offers of this partition, for data-subject access
    /// requests; bounded, and purged of a visitor on erasure.
    pub recent_offers: std::collections::VecDeque<Offer>,
}

/// Offers kept per partition for access requests.
pub const RECENT_OFFERS_PER_PARTITION: usize = 1000;

/// Sends one record into the open transaction, waiting while the
/// producer's queue is full: this is where a slow broker slows consumption
/// instead of growing memory.
pub fn send_record(
    producer: &TxProducer,
    record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), RdKafkaError> {
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => {
                // Serve delivery reports as we go (non-blocking).
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Waits until every queued record is acknowledged, serving delivery
/// reports in 1 ms steps. Called before `commit_transaction`, whose own
/// flush (in rust-rdkafka) waits in 100 ms poll steps and so added up to
/// 100 ms to every commit.
pub fn drain_deliveries(producer: &TxProducer, timeout: Duration) -> Result<(), RdKafkaError> {
    let started = std::time::Instant::now();
    while producer.in_flight_count() > 0 {
        if started.elapsed() > timeout {
            return Err(RdKafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// The engine sink of one shard while a transaction is open.
pub struct KafkaSink<'a> {
    /// Producer.
    pub producer: &'a TxProducer,
    /// Topics.
    pub topics: &'a OutputTopics,
    /// The shard's dirty set.
    pub dirty: &'a mut AHashSet<Box<str>>,
    /// Key of the record being processed (dead letters keep it).
    pub key: Option<&'a [u8]>,
    /// First produce error (the transaction is then aborted).
    pub error: &'a mut Option<RdKafkaError>,
    /// Metrics (probability histogram).
    pub metrics: &'a PipelineMetrics,
    /// Kafka timestamp of the record being processed.
    pub record_time_ms: Option<i64>,
    /// Record timestamps of the offers in the open transaction (for the
    /// event-to-offer latency observed at commit).
    pub offer_times: &'a mut Vec<i64>,
    /// The shard's recent offers.
    pub recent_offers: &'a mut std::collections::VecDeque<Offer>,
}

impl KafkaSink<'_> {
    fn send(&mut self, record: BaseRecord<'_, [u8], [u8]>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = send_record(self.producer, record) {
            *self.error = Some(e);
        }
    }
}

impl EngineSink for KafkaSink<'_> {
    fn offer(&mut self, offer: Offer) {
        match serde_json::to_vec(&offer) {
            Ok(json) => {
                let topic = self.topics.offers.clone();
                let headers = OwnedHeaders::new().insert(Header {
                    key: "propensity.offer_id",
                    value: Some(offer.offer_id.as_bytes()),
                });
                self.send(
                    BaseRecord::to(&topic)
                        .key(offer.visitor_id.as_bytes())
                        .payload(json.as_slice())
                        .headers(headers),
                );
                if let Some(t) = self.record_time_ms {
                    self.offer_times.push(t);
                }
                if self.recent_offers.len() >= RECENT_OFFERS_PER_PARTITION {
                    self.recent_offers.pop_front();
                }
                self.recent_offers.push_back(offer);
            }
            Err(e) => tracing::error!(error = %e, "cannot encode offer"),
        }
    }

    fn dead_letter(&mut self, dl: DeadLetter<'_>) {
        let (topic, partition, offset) = match dl.origin {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => (topic.as_str(), *partition, *offset),
            _ => ("", -1, -1),
        };
        let partition_s = partition.to_string();
        let offset_s = offset.to_string();
        // Kafka Connect's dead-letter header names, so existing tooling can
        // read and replay them; plus our stable reason code.
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "__connect.errors.topic",
                value: Some(topic.as_bytes()),
            })
            .insert(Header {
                key: "__connect.errors.partition",
                value: Some(partition_s.as_bytes()),
            })
            .insert(Header {
                key: "__connect.errors.offset",
                value: Some(offset_s.as_bytes()),
            })
            .insert(Header {
                key: "__connect.errors.exception.class.name",
                value: Some(dl.reason.code().as_bytes()),
            })
            .insert(Header {
                key: "__connect.errors.exception.message",
                value: Some(dl.error.as_bytes()),
            })
            .insert(Header {
                key: "propensity.reason",
                value: Some(dl.reason.code().as_bytes()),
            });
        let dlq = self.topics.dead_letters.clone();
        let mut record = BaseRecord::<[u8], [u8]>::to(&dlq).headers(headers);
        if let Some(k) = self.key {
            record = record.key(k);
        }
        if !dl.payload.is_empty() {
            record = record.payload(dl.payload);
        }
        self.send(record);
    }

    fn wants_scores(&self) -> bool {
        !self.topics.scores.is_empty()
    }

    fn probability(&mut self, outcome: usize, probability: f64) {
        // Every score feeds the histogram, published or not.
        self.metrics.observe_probability(outcome, probability);
    }

    fn score(&mut self, score: &OutcomeScore<'_>) {
        if let Ok(json) = serde_json::to_vec(score) {
            let topic = self.topics.scores.clone();
            self.send(
                BaseRecord::to(&topic)
                    .key(score.visitor_id.as_bytes())
                    .payload(json.as_slice()),
            );
        }
    }

    fn state_changed(&mut self, visitor_id: &str) {
        if !self.dirty.contains(visitor_id) {
            self.dirty.insert(visitor_id.into());
        }
    }
}

/// Writes the changelog records of a shard's dirty visitors (snapshot or
/// tombstone) and, when it moved, the consent position, into the open
/// transaction.
pub fn write_changelog(
    shard: &mut Shard,
    producer: &TxProducer,
    topics: &OutputTopics,
) -> Result<(), RdKafkaError> {
    for visitor in shard.dirty.drain() {
        let snapshot = shard.engine.snapshot(&visitor);
        let mut record = BaseRecord::<[u8], [u8]>::to(&topics.changelog)
            .partition(shard.partition)
            .key(visitor.as_bytes());
        if let Some(bytes) = &snapshot {
            record = record.payload(bytes.as_slice());
        }
        send_record(producer, record)?;
    }
    if shard.consent_next != shard.consent_committed {
        let value = shard.consent_next.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: CONSENT_POSITION_HEADER,
            value: Some("1"),
        });
        send_record(
            producer,
            BaseRecord::<[u8], [u8]>::to(&topics.changelog)
                .partition(shard.partition)
                .key(CONSENT_POSITION_KEY.as_bytes())
                .payload(value.as_bytes())
                .headers(headers),
        )?;
    }
    Ok(())
}
