//! `propensity bench --kafka`: the pipeline against the local broker, in
//! the same run as its baseline. Throughput: `propensity run`'s end-to-end
//! events/s with exactly-once on vs a pass-through copy with the same client
//! settings (rounds alternate; medians and their ratio); the pipeline runs
//! once with one worker and once with `[kafka] workers` per round, so the
//! speed-up of the workers is measured in the same run. Latency: events
//! produced at a fixed rate, time from producing an event to its offer
//! becoming visible to a read_committed consumer (p50/p90/p99), quiet and,
//! with `--background-load`, again on fresh topics while a
//! [`BackgroundLoad`] writes to a scratch topic nothing reads.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use propensity_engine::replay::{merge_order, RecordKind};
use propensity_kafka::background_load::{BackgroundLoad, LOAD_RECORD_BYTES};
use propensity_kafka::passthrough::run_passthrough;
use propensity_kafka::probe::{CommitProbe, TopicTail};
use propensity_kafka::produce::{visitor_key, OutgoingRecord, TrafficProducer};
use propensity_kafka::reachability::probe_brokers;
use propensity_kafka::topics::create_topics;
use propensity_kafka::{
    run_pipeline, CancellationToken, KafkaSettings, ModelHandle, PipelineOptions, RuntimeStatus,
};
use propensity_simulator::{generate, GeneratedTraffic, SimulationParams};
use serde::Serialize;

use crate::config_file::Config;
use crate::model_files::ServedModels;
use crate::offline::train_in_memory;

/// Options.
pub struct KafkaBenchOptions {
    /// Visitors of traffic for throughput.
    pub visitors: usize,
    /// Alternating rounds.
    pub rounds: usize,
    /// Event rate of the latency run.
    pub latency_rate: f64,
    /// Duration of the latency run, seconds.
    pub latency_secs: f64,
    /// When set, the latency run is repeated while a background producer
    /// writes this many ~1 KiB records/s (0: as fast as it can) to a
    /// scratch topic of its own (see `propensity_kafka::background_load`).
    pub background_load: Option<f64>,
}

/// Event-to-offer latency of one latency run.
#[derive(Debug, Serialize)]
pub struct LatencyFigures {
    /// Offers measured.
    pub samples: usize,
    /// p50, ms.
    pub p50_ms: f64,
    /// p90, ms.
    pub p90_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
    /// max, ms.
    pub max_ms: f64,
}

impl LatencyFigures {
    fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let tenth = |v: f64| (v * 10.0).round() / 10.0;
        Self {
            samples: samples.len(),
            p50_ms: tenth(percentile(&samples, 0.5)),
            p90_ms: tenth(percentile(&samples, 0.9)),
            p99_ms: tenth(percentile(&samples, 0.99)),
            max_ms: tenth(samples.last().copied().unwrap_or(f64::NAN)),
        }
    }
}

/// The latency run repeated under background load.
#[derive(Debug, Serialize)]
pub struct LoadedLatency {
    /// Requested load, records/s (0: as fast as it could).
    pub load_rate: f64,
    /// Load records the broker acknowledged per second during the run.
    pub load_acked_per_sec: f64,
    /// Load record size, bytes.
    pub load_record_bytes: usize,
    /// Latency under the load.
    pub latency: LatencyFigures,
}

/// Results.
#[derive(Debug, Serialize)]
pub struct KafkaBenchResult {
    /// Median pipeline rate (events/s, exactly-once) with the configured
    /// workers.
    pub pipeline_events_per_sec: f64,
    /// Median pass-through rate.
    pub passthrough_events_per_sec: f64,
    /// pipeline / pass-through.
    pub ratio: f64,
    /// Workers of the pipeline runs (`[kafka] workers`, resolved).
    pub workers: usize,
    /// Median pipeline rate with one worker.
    pub one_worker_events_per_sec: f64,
    /// one worker / pass-through.
    pub one_worker_ratio: f64,
    /// Rounds with one worker.
    pub one_worker_rounds: Vec<f64>,
    /// Rounds of each.
    pub pipeline_rounds: Vec<f64>,
    /// Rounds of the baseline.
    pub passthrough_rounds: Vec<f64>,
    /// Events per round.
    pub events: usize,
    /// Partitions.
    pub partitions: i32,
    /// Commit interval, ms.
    pub commit_interval_ms: u64,
    /// Latency run rate.
    pub latency_rate: f64,
    /// Offers measured.
    pub latency_samples: usize,
    /// Event-to-offer latency p50, ms (no background load).
    pub latency_p50_ms: f64,
    /// p90, ms.
    pub latency_p90_ms: f64,
    /// p99, ms.
    pub latency_p99_ms: f64,
    /// max, ms.
    pub latency_max_ms: f64,
    /// The same latency run under background load, with
    /// `--background-load`.
    pub loaded: Option<LoadedLatency>,
}

/// `base` with topics and group of its own, named after `tag`.
pub(crate) fn suffixed(base: &KafkaSettings, tag: &str) -> KafkaSettings {
    let s = format!(
        "bench-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    KafkaSettings {
        group_id: format!("g-{s}"),
        events_topic: format!("events-{s}"),
        consent_topic: format!("consent-{s}"),
        offers_topic: format!("offers-{s}"),
        dead_letter_topic: format!("dlq-{s}"),
        changelog_topic: format!("changelog-{s}"),
        scores_topic: String::new(),
        decisions_topic: String::new(),
        conversions_topic: String::new(),
        feedback_topic: String::new(),
        ..base.clone()
    }
}

/// Median (NaN when empty).
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Waits until the pipeline's group has committed the whole events topic.
pub(crate) fn wait_committed(settings: &KafkaSettings, timeout: Duration) -> Result<()> {
    Ok(CommitProbe::new(settings)?.wait_until_committed(timeout)?)
}

/// A pipeline running in this process, on a thread of its own.
pub(crate) struct RunningPipeline {
    shutdown: CancellationToken,
    pub(crate) status: Arc<RuntimeStatus>,
    pub(crate) metrics: Arc<propensity_kafka::PipelineMetrics>,
    thread: std::thread::JoinHandle<Result<(), propensity_kafka::KafkaError>>,
}

/// Starts `propensity run`'s pipeline with `settings`.
pub(crate) fn start_pipeline(
    config: &Config,
    settings: &KafkaSettings,
    models: &Arc<ModelHandle>,
) -> Result<RunningPipeline> {
    let shutdown = CancellationToken::new();
    let status = Arc::new(RuntimeStatus::default());
    let metrics = Arc::new(
        propensity_kafka::PipelineMetrics::new(&config.engine)
            .map_err(|e| anyhow::anyhow!("metrics: {e}"))?,
    );
    let opts = PipelineOptions {
        settings: settings.clone(),
        instance_id: "bench".into(),
        engine_config: config.engine_with_partitions(settings.partitions)?,
        models: models.clone(),
        status: status.clone(),
        shutdown: shutdown.clone(),
        metrics: metrics.clone(),
        access: None,
    };
    let thread = std::thread::spawn(move || run_pipeline(opts));
    Ok(RunningPipeline {
        shutdown,
        status,
        metrics,
        thread,
    })
}

impl RunningPipeline {
    /// Cancels it and waits for it to end (it commits first).
    pub(crate) fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("pipeline thread panicked"))??;
        Ok(())
    }
}

/// Runs the pipeline with `workers` threads over the whole preloaded
/// `input` with a fresh group and outputs; returns the time from its first
/// consumed event to the group's commit of the last.
fn time_pipeline(
    config: &Config,
    base: &KafkaSettings,
    input: &KafkaSettings,
    workers: usize,
    models: &Arc<ModelHandle>,
    rt: &tokio::runtime::Runtime,
) -> Result<Duration> {
    let out = suffixed(base, "run");
    let run = KafkaSettings {
        group_id: out.group_id.clone(),
        offers_topic: out.offers_topic.clone(),
        dead_letter_topic: out.dead_letter_topic.clone(),
        changelog_topic: out.changelog_topic.clone(),
        workers,
        ..input.clone()
    };
    rt.block_on(create_topics(&run))?;
    let pipeline = start_pipeline(config, &run, models)?;
    let started = Instant::now();
    let first = loop {
        if pipeline.status.events_consumed.load(Ordering::Relaxed) > 0 {
            break Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the pipeline consumed nothing in 120 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    wait_committed(&run, Duration::from_secs(600))?;
    let took = first.elapsed();
    pipeline.stop()?;
    Ok(took)
}

/// Checks that the broker answers, then trains the benchmark's models on
/// generated traffic. Training takes a while: learn first whether there is
/// a broker to measure.
pub(crate) fn broker_and_models(
    config: &Config,
    log: &mut impl Write,
) -> Result<(ServedModels, Arc<ModelHandle>)> {
    probe_brokers(&config.file.kafka)?;
    writeln!(log, "training models…")?;
    let served = train_in_memory(config, 3000, 11)?;
    let models = Arc::new(ModelHandle::new(served.models.clone()));
    Ok((served, models))
}

/// Runs the Kafka benchmark.
pub fn run_kafka_bench(
    config: &Config,
    opts: &KafkaBenchOptions,
    log: &mut impl Write,
) -> Result<KafkaBenchResult> {
    let (served, models) = broker_and_models(config, log)?;
    let config = &served.config;
    let base = &config.file.kafka;
    writeln!(log, "generating {} visitors…", opts.visitors)?;
    let traffic = generate(&SimulationParams {
        visitors: opts.visitors,
        seed: 12,
        ..SimulationParams::default()
    })?;
    let ev: Vec<&[u8]> = traffic.events.iter().map(|l| l.line.as_bytes()).collect();
    let co: Vec<&[u8]> = traffic.consent.iter().map(|l| l.line.as_bytes()).collect();
    let order = merge_order(&ev, &co);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // One input for every round; each round gets fresh groups and outputs.
    let input = suffixed(base, "input");
    rt.block_on(create_topics(&input))
        .context("creating benchmark topics")?;
    let producer = TrafficProducer::new(&input)?;
    let keys: Vec<Option<String>> = order
        .iter()
        .map(|r| {
            visitor_key(if r.kind == RecordKind::Event {
                ev[r.index]
            } else {
                co[r.index]
            })
        })
        .collect();
    producer.send_all(
        order.iter().zip(&keys).map(|(r, k)| OutgoingRecord {
            topic: if r.kind == RecordKind::Event {
                &input.events_topic
            } else {
                &input.consent_topic
            },
            key: k.as_deref().map(str::as_bytes),
            value: Some(if r.kind == RecordKind::Event {
                ev[r.index]
            } else {
                co[r.index]
            }),
        }),
        None,
    )?;
    writeln!(
        log,
        "produced {} events and {} consent records to {} partitions",
        ev.len(),
        co.len(),
        input.partitions
    )?;

    let workers = input.worker_threads();
    let (mut pipe_rates, mut one_rates, mut pass_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..opts.rounds.max(1) {
        // Pass-through.
        let pass = KafkaSettings {
            group_id: format!("{}-pass-{round}", input.group_id),
            ..input.clone()
        };
        let target = suffixed(base, "copy");
        rt.block_on(create_topics(&target))?;
        let took = run_passthrough(
            &pass,
            &target.offers_topic,
            ev.len() as u64,
            Duration::from_secs(600),
        )?;
        pass_rates.push(ev.len() as f64 / took.as_secs_f64());

        // The pipeline with one worker, then with the configured workers.
        let took = time_pipeline(config, base, &input, 1, &models, &rt)?;
        one_rates.push(ev.len() as f64 / took.as_secs_f64());
        let took = time_pipeline(config, base, &input, workers, &models, &rt)?;
        pipe_rates.push(ev.len() as f64 / took.as_secs_f64());
        writeln!(
            log,
            "round {}: pipeline {:>8.0} events/s ({workers} workers), {:>8.0} events/s (1 worker), pass-through {:>8.0} events/s",
            round + 1,
            pipe_rates[round],
            one_rates[round],
            pass_rates[round]
        )?;
    }

    writeln!(
        log,
        "latency: {} events/s for {} s…",
        opts.latency_rate, opts.latency_secs
    )?;
    let quiet = LatencyFigures::of(measure_latency(config, base, &models, &traffic, opts, &rt)?);
    let loaded = match opts.background_load {
        Some(load_rate) => {
            writeln!(
                log,
                "latency under background load ({load_rate} records/s of {LOAD_RECORD_BYTES} bytes, 0 = as fast as it can): {} events/s for {} s…",
                opts.latency_rate, opts.latency_secs
            )?;
            let scratch = suffixed(base, "load");
            let load = BackgroundLoad::start(
                base,
                &format!("load-{}", scratch.group_id),
                load_rate,
                Duration::from_secs(3600),
            )?;
            let measured = measure_latency(config, base, &models, &traffic, opts, &rt);
            let report = load.stop();
            Some(LoadedLatency {
                load_rate,
                load_acked_per_sec: report.acked_per_sec().round(),
                load_record_bytes: LOAD_RECORD_BYTES,
                latency: LatencyFigures::of(measured?),
            })
        }
        None => None,
    };

    let pipe = median(&pipe_rates);
    let one = median(&one_rates);
    let pass = median(&pass_rates);
    Ok(KafkaBenchResult {
        pipeline_events_per_sec: pipe.round(),
        passthrough_events_per_sec: pass.round(),
        ratio: (pipe / pass * 1000.0).round() / 1000.0,
        workers,
        one_worker_events_per_sec: one.round(),
        one_worker_ratio: (one / pass * 1000.0).round() / 1000.0,
        one_worker_rounds: one_rates.iter().map(|r| r.round()).collect(),
        pipeline_rounds: pipe_rates.iter().map(|r| r.round()).collect(),
        passthrough_rounds: pass_rates.iter().map(|r| r.round()).collect(),
        events: ev.len(),
        partitions: input.partitions,
        commit_interval_ms: input.commit_interval_ms,
        latency_rate: opts.latency_rate,
        latency_samples: quiet.samples,
        latency_p50_ms: quiet.p50_ms,
        latency_p90_ms: quiet.p90_ms,
        latency_p99_ms: quiet.p99_ms,
        latency_max_ms: quiet.max_ms,
        loaded,
    })
}

/// Produces the consent, then events at `opts.latency_rate` for
/// `opts.latency_secs`, into fresh topics of a running pipeline; returns
/// each offer's time from producing its event to reading it committed, ms.
fn measure_latency(
    config: &Config,
    base: &KafkaSettings,
    models: &Arc<ModelHandle>,
    traffic: &GeneratedTraffic,
    opts: &KafkaBenchOptions,
    rt: &tokio::runtime::Runtime,
) -> Result<Vec<f64>> {
    let lat = suffixed(base, "latency");
    rt.block_on(create_topics(&lat))?;
    let pipeline = start_pipeline(config, &lat, models)?;
    let ready_wait = Instant::now();
    while !pipeline.status.ready.load(Ordering::Relaxed) {
        anyhow::ensure!(
            ready_wait.elapsed() < Duration::from_secs(60),
            "pipeline not ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let lp = TrafficProducer::new(&lat)?;
    for line in &traffic.consent {
        lp.send(OutgoingRecord {
            topic: &lat.consent_topic,
            key: Some(line.visitor_id.as_bytes()),
            value: Some(line.line.as_bytes()),
        })?;
    }
    lp.flush(Duration::from_secs(60))?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader_sent = sent.clone();
    let reader_stop = stop.clone();
    let reader_settings = lat.clone();
    let reader = std::thread::spawn(move || -> Result<Vec<f64>> {
        let tail = TopicTail::new(&reader_settings, &reader_settings.offers_topic)?;
        let mut lat = Vec::new();
        while !reader_stop.load(Ordering::Relaxed) {
            // A poll returns at its first record, so a long one delays
            // nothing but noticing `stop`; a short one busy-loops its
            // last millisecond (rdkafka rounds the time left down to whole
            // ms): 5 ms polls spun a fifth of a core beside the pipeline.
            if let Some(value) = tail.next_value(Duration::from_millis(100)) {
                let now = Instant::now();
                let offer: serde_json::Value = serde_json::from_slice(&value)?;
                if let Some(t) = offer["trigger_event_id"]
                    .as_str()
                    .and_then(|id| reader_sent.lock().ok()?.get(id).copied())
                {
                    lat.push(now.duration_since(t).as_secs_f64() * 1000.0);
                }
            }
        }
        Ok(lat)
    });
    let n = ((opts.latency_rate * opts.latency_secs) as usize).min(traffic.events.len());
    let started = Instant::now();
    for (i, line) in traffic.events.iter().take(n).enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / opts.latency_rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if let Some(id) = serde_json::from_str::<serde_json::Value>(&line.line)
            .ok()
            .and_then(|v| v["event_id"].as_str().map(str::to_owned))
        {
            if let Ok(mut s) = sent.lock() {
                s.insert(id, Instant::now());
            }
        }
        lp.send(OutgoingRecord {
            topic: &lat.events_topic,
            key: Some(line.visitor_id.as_bytes()),
            value: Some(line.line.as_bytes()),
        })?;
    }
    lp.flush(Duration::from_secs(60))?;
    wait_committed(&lat, Duration::from_secs(120))?;
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let samples = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    pipeline.stop()?;
    Ok(samples)
}
