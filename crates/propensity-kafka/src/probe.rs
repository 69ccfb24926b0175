//! Observing a pipeline from outside, for tests, benchmarks and the
//! traffic producer: whether its consumer group has committed everything
//! written to the events topic, and tailing an output topic as a
//! `read_committed` consumer would.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::client_log::LoggedContext;
use crate::error::KafkaError;
use crate::settings::KafkaSettings;

/// Reads the committed offsets of the pipeline's group without joining it.
pub struct CommitProbe {
    consumer: BaseConsumer<LoggedContext>,
    topic: String,
    partitions: i32,
    settings: KafkaSettings,
}

impl CommitProbe {
    /// A probe of `settings.group_id` on the events topic.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        Ok(Self {
            consumer: ClientConfig::new()
                .set("bootstrap.servers", &settings.brokers)
                .set("group.id", &settings.group_id)
                .set("enable.auto.commit", "false")
                .create_with_context(LoggedContext)?,
            topic: settings.events_topic.clone(),
            partitions: settings.partitions,
            settings: settings.clone(),
        })
    }

    /// The settings this probe was made with (to make a fresh one: a client
    /// that lived through a broker restart can keep failing on stale
    /// metadata).
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// Current end offsets of the events topic.
    pub fn end_offsets(&self) -> Result<HashMap<i32, i64>, KafkaError> {
        let mut ends = HashMap::new();
        for p in 0..self.partitions {
            let (_, high) =
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))?;
            ends.insert(p, high);
        }
        Ok(ends)
    }

    /// Whether the group's commits reach `ends` on every partition.
    pub fn committed_reaches(&self, ends: &HashMap<i32, i64>) -> Result<bool, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(committed.elements().iter().all(|e| {
            let end = ends.get(&e.partition()).copied().unwrap_or(0);
            match e.offset() {
                Offset::Offset(o) => o >= end,
                _ => end == 0,
            }
        }))
    }

    /// Waits until everything written to the events topic so far is
    /// committed by the group.
    pub fn wait_until_committed(&self, timeout: Duration) -> Result<(), KafkaError> {
        let started = Instant::now();
        // Broker trouble is retried until the timeout; after an error the
        // question goes to a new client, since one that lived through a
        // broker restart can keep failing on stale metadata.
        let mut fresh: Option<CommitProbe> = None;
        let mut ends = None;
        loop {
            let asking = fresh.as_ref().unwrap_or(self);
            let answer = match &ends {
                None => asking.end_offsets().map(|e| {
                    ends = Some(e);
                    false
                }),
                Some(e) => asking.committed_reaches(e),
            };
            match answer {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(_) => fresh = CommitProbe::new(&self.settings).ok(),
            }
            if started.elapsed() > timeout {
                return Err(KafkaError::Topics(format!(
                    "group did not commit the events topic to its end within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Tails a topic from the beginning as a `read_committed` consumer.
pub struct TopicTail {
    consumer: BaseConsumer<LoggedContext>,
}

impl TopicTail {
    /// Assigns every partition of `topic` from the beginning.
    pub fn new(settings: &KafkaSettings, topic: &str) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer<LoggedContext> = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", format!("{}-tail", settings.group_id))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .create_with_context(LoggedContext)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..settings.partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        Ok(Self { consumer })
    }

    /// The next record's value, waiting up to `timeout`.
    pub fn next_value(&self, timeout: Duration) -> Option<Vec<u8>> {
        match self.consumer.poll(timeout) {
            Some(Ok(m)) => Some(m.payload().unwrap_or_default().to_vec()),
            _ => None,
        }
    }
}
