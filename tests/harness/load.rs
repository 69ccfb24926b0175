//! Background load. `PROPENSITY_TEST_LOAD=1` makes every [`Deployment`]
//! start a [`LoadGuard`]: a [`BackgroundLoad`] (the same load as
//! `propensity bench --kafka --background-load`) in the test process that
//! writes ~1 KiB records to a throwaway topic of its own (`load-<suffix>`,
//! deleted afterwards) at `PROPENSITY_TEST_LOAD_MBPS` MB/s (default 3) for at most
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use propensity_kafka::background_load::{BackgroundLoad, LOAD_RECORD_BYTES};
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

/// Background load for the lifetime of a test (see the module doc): the
/// writing [`BackgroundLoad`] plus CPU-burning threads; stopped and
/// reported on drop.
pub struct LoadGuard {
    load: Option<BackgroundLoad>,
    stop: Arc<AtomicBool>,
    burners: Vec<std::thread::JoinHandle<()>>,
}

/// Background load for a test that always wants it, on a topic of its own.
pub fn background_load(settings: &KafkaSettings) -> LoadGuard {
    LoadGuard::start(settings, &random_suffix())
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
        let mbps = env_f64("PROPENSITY_TEST_LOAD_MBPS", mbps.unwrap_or(3.0));
        let cpu_threads = std::env::var("PROPENSITY_TEST_LOAD_CPU_THREADS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(cpu_threads.unwrap_or(0))
            .min(8);
        let max_secs = env_f64("PROPENSITY_TEST_LOAD_MAX_SECS", 600.0);
        let topic = format!("load-{suffix}");
        let load = BackgroundLoad::start(
            settings,
            &topic,
            mbps * 1_000_000.0 / LOAD_RECORD_BYTES as f64,
            Duration::from_secs_f64(max_secs),
        )
        .unwrap_or_else(|e| panic!("cannot start background load on {topic}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
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
            load: Some(load),
            stop,
            burners,
        }
    }

    /// Records acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.load.as_ref().map_or(0, BackgroundLoad::acked)
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.burners.drain(..) {
            let _ = t.join();
        }
        if let Some(load) = self.load.take() {
            let r = load.stop();
            eprintln!(
                "background load: {} records sent, {} acknowledged ({:.1} MB, {:.2} MB/s over {:.1} s), {} failed",
                r.sent,
                r.acked,
                r.acked as f64 * LOAD_RECORD_BYTES as f64 / 1e6,
                r.acked_per_sec() * LOAD_RECORD_BYTES as f64 / 1e6,
                r.seconds,
                r.failed,
            );
        }
    }
}
