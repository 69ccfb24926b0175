//! Background load on the broker and the machine: a thread writing ~1 KiB
//! records to a throwaway topic of its own, at a fixed rate or as fast as
//! the producer's queue takes them, until stopped; the topic is deleted
//! afterwards. `propensity bench --kafka --background-load` measures
//! event-to-offer latency under it, and the system tests'
//! `PROPENSITY_TEST_LOAD` runs any test under it. Nothing reads the topic:
//! the load never feeds the pipeline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};

use crate::delivery::{serve_then_pause, DELIVERY_POLL_PAUSE};
use crate::error::KafkaError;
use crate::settings::KafkaSettings;

/// Bytes of one load record.
pub const LOAD_RECORD_BYTES: usize = 1024;

/// How often a rate-limited load thread sends what is due.
const LOAD_TICK: Duration = Duration::from_millis(10);

/// What a load run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// Records handed to the producer.
    pub sent: u64,
    /// Records the broker acknowledged.
    pub acked: u64,
    /// Records that failed.
    pub failed: u64,
    /// Seconds from start to stop.
    pub seconds: f64,
}

impl LoadReport {
    /// Acknowledged records per second.
    pub fn acked_per_sec(&self) -> f64 {
        self.acked as f64 / self.seconds.max(0.001)
    }
}

/// Counts deliveries of the load producer.
#[derive(Default)]
struct LoadCounters {
    acked: AtomicU64,
    failed: AtomicU64,
}

struct LoadContext(Arc<LoadCounters>);

impl rdkafka::ClientContext for LoadContext {}

impl ProducerContext for LoadContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let counter = if r.is_ok() {
            &self.0.acked
        } else {
            &self.0.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Load running on a thread of its own; stopped (and its topic deleted)
/// by [`BackgroundLoad::stop`] or on drop.
pub struct BackgroundLoad {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<LoadCounters>,
    sent: Arc<AtomicU64>,
    topic: String,
    brokers: String,
    started: Instant,
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, KafkaError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaError::Topics(format!("runtime for the load topic: {e}")))?;
    Ok(rt.block_on(f))
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?)
}

impl BackgroundLoad {
    /// Creates `topic` (3 partitions, one minute of retention) on
    /// `settings.brokers` and starts writing [`LOAD_RECORD_BYTES`] records
    /// to it, `records_per_sec` of them per second (0: as fast as the
    /// producer's queue takes them), for at most `max_duration`.
    pub fn start(
        settings: &KafkaSettings,
        topic: &str,
        records_per_sec: f64,
        max_duration: Duration,
    ) -> Result<Self, KafkaError> {
        let admin = admin(&settings.brokers)?;
        let new = NewTopic::new(topic, 3, TopicReplication::Fixed(1))
            .set("retention.ms", "60000")
            .set("segment.bytes", "8388608");
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for created in block_on(admin.create_topics([&new], &opts))?? {
            created.map_err(|(t, e)| KafkaError::Topics(format!("load topic {t}: {e}")))?;
        }
        let counters = Arc::new(LoadCounters::default());
        let producer: BaseProducer<LoadContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "20000")
            .create_with_context(LoadContext(counters.clone()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent, topic) = (stop.clone(), sent.clone(), topic.to_owned());
            std::thread::Builder::new()
                .name("background-load".into())
                .spawn(move || {
                    let deadline = Instant::now() + max_duration;
                    let writer = LoadWriter {
                        producer: &producer,
                        topic: &topic,
                        stop: &stop,
                        sent: &sent,
                        deadline,
                    };
                    if records_per_sec > 0.0 {
                        writer.at_rate(records_per_sec);
                    } else {
                        writer.as_fast_as_possible();
                    }
                    let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5));
                })
                .map_err(|e| KafkaError::Topics(format!("load thread: {e}")))?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
            counters,
            sent,
            topic: topic.to_owned(),
            brokers: settings.brokers.clone(),
            started: Instant::now(),
        })
    }

    /// Records acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.counters.acked.load(Ordering::Relaxed)
    }

    /// The load's topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Stops writing, waits for the thread, deletes the topic.
    pub fn stop(mut self) -> LoadReport {
        self.finish()
    }

    fn finish(&mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let report = LoadReport {
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked(),
            failed: self.counters.failed.load(Ordering::Relaxed),
            seconds: self.started.elapsed().as_secs_f64(),
        };
        // Best effort: the topic's short retention bounds what is left.
        if let Ok(admin) = admin(&self.brokers) {
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            let _ = block_on(admin.delete_topics(&[self.topic.as_str()], &opts));
        }
        report
    }
}

impl Drop for BackgroundLoad {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.finish();
        }
    }
}

/// The load thread's loop.
struct LoadWriter<'a> {
    producer: &'a BaseProducer<LoadContext>,
    topic: &'a str,
    stop: &'a AtomicBool,
    sent: &'a AtomicU64,
    deadline: Instant,
}

impl LoadWriter<'_> {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// Queues record `n`; false when the queue is full (the record is
    /// dropped: load never blocks, so a slow broker bounds it).
    fn send(&self, n: u64, payloads: &[Vec<u8>]) -> bool {
        let payload = &payloads[(n % payloads.len() as u64) as usize];
        match self
            .producer
            .send(BaseRecord::<[u8], [u8]>::to(self.topic).payload(payload))
        {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => false,
            Err(_) => true,
        }
    }

    fn at_rate(&self, per_second: f64) {
        let payloads = load_payloads();
        let started = Instant::now();
        let mut n = 0u64;
        while self.running() {
            let due = (started.elapsed().as_secs_f64() * per_second) as u64;
            while n < due && !self.stop.load(Ordering::Relaxed) {
                self.send(n, &payloads);
                n += 1;
            }
            serve_then_pause(self.producer, LOAD_TICK);
        }
    }

    fn as_fast_as_possible(&self) {
        let payloads = load_payloads();
        let mut n = 0u64;
        while self.running() {
            if self.send(n, &payloads) {
                n += 1;
            } else {
                serve_then_pause(self.producer, DELIVERY_POLL_PAUSE);
            }
        }
    }
}

/// 64 different payloads of [`LOAD_RECORD_BYTES`], varied so that nothing
/// compresses them away.
fn load_payloads() -> Vec<Vec<u8>> {
    (0..64u32)
        .map(|i| {
            (0..LOAD_RECORD_BYTES as u32)
                .map(|j| (i.wrapping_mul(2_654_435_761) ^ j.wrapping_mul(40_503)) as u8)
                .collect()
        })
        .collect()
}
