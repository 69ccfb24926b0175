//! Background load. `PROPENSITY_TEST_LOAD=1` makes every [`Deployment`]
//! start a [`LoadGuard`]: a thread in the test process that writes ~1 KiB
//! records to a throwaway topic of its own (`load-<suffix>`, deleted
//! afterwards) at `PROPENSITY_TEST_LOAD_MBPS` MB/s (default 3) for at most
//! `PROPENSITY_TEST_LOAD_MAX_SECS` seconds (default 600), loading the
//! broker and the machine for the duration of the test; it stops when the
//! deployment is dropped. `PROPENSITY_TEST_LOAD_CPU_THREADS` (default 0)
//! adds threads that burn CPU, for scheduling delays. Tests that always
//! want load use
//! [`Deployment::new_under_load`] (or hold [`background_load`]'s guard).
//! Every Kafka system test can run under it, e.g.
//! `PROPENSITY_TEST_LOAD=1 cargo test -p propensity-system-tests --test kafka_end_to_end`.
//!
//! [`Deployment`]: crate::Deployment
//! [`Deployment::new_under_load`]: crate::Deployment::new_under_load

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use propensity_kafka::KafkaSettings;

use crate::random_suffix;

/// Whether `PROPENSITY_TEST_LOAD=1` asks for background load.
pub fn load_requested() -> bool {
    std::env::var("PROPENSITY_TEST_LOAD").is_ok_and(|v| v.trim() == "1")
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .unwrap_or(default)
}

/// A current-thread runtime for the admin client's futures.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Background load for the lifetime of a test (see the module doc): a
/// thread writing ~1 KiB records to a throwaway topic at a fixed byte rate,
/// bounded in time; stopped, reported and its topic deleted on drop.
pub struct LoadGuard {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    burners: Vec<std::thread::JoinHandle<()>>,
    topic: String,
    settings: KafkaSettings,
    sent: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    started: Instant,
}

/// Background load for a test that always wants it, on a topic of its own.
pub fn background_load(settings: &KafkaSettings) -> LoadGuard {
    LoadGuard::start(settings, &random_suffix())
}

struct LoadContext {
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl rdkafka::ClientContext for LoadContext {}

impl rdkafka::producer::ProducerContext for LoadContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

impl LoadGuard {
    /// Creates `load-<suffix>` and starts writing to it.
    pub fn start(settings: &KafkaSettings, suffix: &str) -> Self {
        Self::start_at(settings, suffix, None, None)
    }

    /// Like [`LoadGuard::start`], at `mbps` MB/s and with `cpu_threads`
    /// CPU-burning threads when given (the environment's
    /// `PROPENSITY_TEST_LOAD_MBPS` / `PROPENSITY_TEST_LOAD_CPU_THREADS` win).
    pub fn start_at(
        settings: &KafkaSettings,
        suffix: &str,
        mbps: Option<f64>,
        cpu_threads: Option<usize>,
    ) -> Self {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let mbps = env_f64("PROPENSITY_TEST_LOAD_MBPS", mbps.unwrap_or(3.0));
        let cpu_threads = std::env::var("PROPENSITY_TEST_LOAD_CPU_THREADS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(cpu_threads.unwrap_or(0))
            .min(8);
        let max_secs = env_f64("PROPENSITY_TEST_LOAD_MAX_SECS", 600.0);
        let topic = format!("load-{suffix}");
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .create()
            .expect("admin client");
        let new = NewTopic::new(&topic, 3, TopicReplication::Fixed(1))
            .set("retention.ms", "60000")
            .set("segment.bytes", "8388608");
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let created = block_on(admin.create_topics([&new], &opts)).expect("create load topic");
        for r in created {
            r.unwrap_or_else(|(t, e)| panic!("cannot create load topic {t}: {e}"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, acked, failed) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let producer: rdkafka::producer::BaseProducer<LoadContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "20000")
            .create_with_context(LoadContext {
                acked: acked.clone(),
                failed: failed.clone(),
            })
            .expect("load producer");
        let thread = {
            let (stop, sent, topic) = (stop.clone(), sent.clone(), topic.clone());
            std::thread::Builder::new()
                .name("test-load".into())
                .spawn(move || {
                    use rdkafka::producer::{BaseRecord, Producer};
                    // ~1 KiB, varied so that nothing compresses it away.
                    let payloads: Vec<Vec<u8>> = (0..64u32)
                        .map(|i| {
                            (0..1024u32)
                                .map(|j| {
                                    (i.wrapping_mul(2_654_435_761) ^ j.wrapping_mul(40_503)) as u8
                                })
                                .collect()
                        })
                        .collect();
                    let per_second = mbps * 1_000_000.0 / 1024.0;
                    let started = Instant::now();
                    let deadline = started + Duration::from_secs_f64(max_secs);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let due = (started.elapsed().as_secs_f64() * per_second) as u64;
                        while n < due && !stop.load(Ordering::Relaxed) {
                            let p = &payloads[(n % 64) as usize];
                            // A full queue (slow broker) drops load, never
                            // blocks: the rate stays bounded.
                            if producer
                                .send(BaseRecord::<[u8], [u8]>::to(&topic).payload(p))
                                .is_ok()
                            {
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                            n += 1;
                        }
                        producer.poll(Duration::from_millis(10));
                    }
                    let _ = producer.flush(Duration::from_secs(5));
                })
                .expect("load thread")
        };
        let deadline = Instant::now() + Duration::from_secs_f64(max_secs);
        let burners = (0..cpu_threads)
            .map(|i| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("test-cpu-load-{i}"))
                    .spawn(move || {
                        let mut x = 0x9e37_79b9_7f4a_7c15u64;
                        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                            for _ in 0..100_000 {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                            }
                            std::hint::black_box(x);
                        }
                    })
                    .expect("cpu load thread")
            })
            .collect();
        eprintln!(
            "background load: {mbps} MB/s of 1 KiB records to {topic}, {cpu_threads} CPU-burning threads (at most {max_secs} s)"
        );
        Self {
            stop,
            thread: Some(thread),
            burners,
            topic,
            settings: settings.clone(),
            sent,
            acked,
            failed,
            started: Instant::now(),
        }
    }

    /// Records acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for t in self.burners.drain(..) {
            let _ = t.join();
        }
        let secs = self.started.elapsed().as_secs_f64();
        let acked = self.acked.load(Ordering::Relaxed);
        eprintln!(
            "background load: {} records sent, {acked} acknowledged ({:.1} MB, {:.2} MB/s over {secs:.1} s), {} failed",
            self.sent.load(Ordering::Relaxed),
            acked as f64 * 1024.0 / 1e6,
            acked as f64 * 1024.0 / 1e6 / secs.max(0.001),
            self.failed.load(Ordering::Relaxed),
        );
        if let Ok(admin) = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .create::<AdminClient<DefaultClientContext>>()
        {
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            let _ = block_on(admin.delete_topics(&[self.topic.as_str()], &opts));
        }
    }
}
