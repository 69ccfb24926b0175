//! `propensity bench`: engine throughput against a parse-only baseline in
//! the same run, and resident memory per concurrent visitor; with
//! `--training`, the training path (split, standardization, matrix, grid,
//! refit) on generated traffic, optionally exporting the exact matrices so
//! `benches/training_vs_sklearn.py` can fit them with scikit-learn.
//!
//! Throughput is measured single-threaded on generated traffic: the
//! baseline decodes every event line into the event type; the engine run
//! does everything (decode, consent, sessions, features, scoring of every
//! outcome, action maps, encoding offers). Rounds alternate between the two
//! so machine noise hits both alike; medians are reported with their ratio.
//!
//! Per-stage cost: each round also runs cumulative pipelines, the engine
//! with parts of its work switched off by configuration (no models, no
//! action maps, offers dropped unencoded), so that each stage's cost is the
//! difference between two pipelines of the same round (see [`Stage`]).
//!
//! With `--threads N` (and no `--training`): engine-only scaling. The same
//! traffic is split by partition into one engine per partition, as `run`
//! holds them, and run with every engine on one thread, then spread over N
//! threads, in alternating rounds: the ceiling of what `[kafka] workers`
//! can give, without a broker sharing the cores.

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use propensity_engine::partitioning::partition_of_u32;
use propensity_engine::replay::{merge_order, OrderedRecord, RecordKind};
use propensity_engine::wire::decode_event;
use propensity_engine::{
    DeadLetter, Engine, EngineConfig, EngineSink, ModelSet, Offer, Origin, OutcomeScore,
};
use propensity_simulator::{generate, GeneratedTraffic, SimulationParams};
use serde::Serialize;

use crate::config_file::Config;
use crate::model_files::ServedModels;

/// Bench options.
pub struct BenchOptions {
    /// Visitors of generated traffic for throughput.
    pub visitors: usize,
    /// Alternating rounds.
    pub rounds: usize,
    /// Concurrent visitors for the memory measurement (0: skip).
    pub memory_visitors: usize,
}

/// Bench results.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// Median engine rate.
    pub engine_events_per_sec: f64,
    /// Median parse-only rate.
    pub parse_only_events_per_sec: f64,
    /// engine / parse-only.
    pub ratio: f64,
    /// Event lines per round.
    pub events: usize,
    /// Partitions the engine places visitors among (`kafka.partitions`;
    /// clocks and bounds are per partition, so each event's visitor id is
    /// hashed when there are several).
    pub partitions: u32,
    /// Consent records per round (processed by the engine too).
    pub consent_records: usize,
    /// Rounds.
    pub rounds: usize,
    /// Offers per engine round.
    pub offers_per_round: u64,
    /// Every engine round's rate.
    pub engine_rounds: Vec<f64>,
    /// Every baseline round's rate.
    pub parse_only_rounds: Vec<f64>,
    /// Concurrent visitors held in the memory measurement.
    pub memory_visitors: usize,
    /// Resident memory growth for them, MiB.
    pub memory_rss_mib: f64,
    /// Resident bytes per visitor.
    pub memory_bytes_per_visitor: f64,
    /// Median cost of each stage of the engine, in pipeline order; their
    /// sum is the median engine cost per event up to noise.
    pub stages: Vec<StageCost>,
    /// The engine with one challenger per outcome against the engine with
    /// the champions alone, in the same rounds.
    pub challengers: ChallengerCost,
}

/// The cost of one challenger per outcome (shadow scoring): the full
/// engine (`emit`) with and without challengers, alternating in each
/// round, without and with the scores published (encoded).
#[derive(Debug, Serialize)]
pub struct ChallengerCost {
    /// Median rate with the champions alone, scores not published.
    pub single_events_per_sec: f64,
    /// Median rate with a challenger per outcome, scores not published.
    pub with_challengers_events_per_sec: f64,
    /// Median of the per-round ratios with / without challengers.
    pub ratio: f64,
    /// The same with every score encoded (the challengers double them).
    pub single_scores_published_events_per_sec: f64,
    /// With challengers, every score encoded.
    pub with_challengers_scores_published_events_per_sec: f64,
    /// Median of the per-round ratios, scores published.
    pub ratio_scores_published: f64,
}

/// One stage's median cost per event.
#[derive(Debug, Serialize)]
pub struct StageCost {
    /// Stage name (see [`Stage`]).
    pub stage: &'static str,
    /// Median over rounds of the difference between the pipeline ending
    /// with this stage and the one before it, nanoseconds per event line.
    pub ns_per_event: f64,
    /// That cost over the median engine cost per event.
    pub share: f64,
}

/// The cumulative pipelines the per-stage measurement runs, each doing the
/// work of the previous one and its own stage. The engine cannot be cut
/// between gate, session and features without hooks in the pure core, so
/// those three are measured together: with no models and no action maps
/// the engine still decodes, gates, folds every event into its session and
/// computes the feature vector (scoring computes it before asking the
/// models), and only skips the dot products and the decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `decode_event` alone (the parse-only baseline).
    Decode,
    /// Consent gate, session state and feature vector.
    GateSessionFeatures,
    /// Every outcome's probability.
    Score,
    /// Action maps, caps and the offer record (with its explanation).
    Decide,
    /// Encoding the offers as JSON (what an adapter sends).
    Emit,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Decode,
        Stage::GateSessionFeatures,
        Stage::Score,
        Stage::Decide,
        Stage::Emit,
    ];

    fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::GateSessionFeatures => "gate+session+features",
            Stage::Score => "score",
            Stage::Decide => "decide",
            Stage::Emit => "emit",
        }
    }
}

/// A sink that encodes offers like a real adapter, into a reused buffer;
/// and the scores too when `scores` is set (`kafka.scores_topic`).
#[derive(Default)]
struct EncodingSink {
    buf: Vec<u8>,
    offers: u64,
    scores: bool,
}

impl EngineSink for EncodingSink {
    fn offer(&mut self, offer: Offer) {
        self.buf.clear();
        if serde_json::to_writer(&mut self.buf, &offer).is_ok() {
            self.offers += 1;
        }
        black_box(&self.buf);
    }
    fn wants_scores(&self) -> bool {
        self.scores
    }
    fn score(&mut self, score: &OutcomeScore<'_>) {
        self.buf.clear();
        let _ = serde_json::to_writer(&mut self.buf, score);
        black_box(&self.buf);
    }
    fn dead_letter(&mut self, dead_letter: DeadLetter<'_>) {
        black_box(dead_letter.reason);
    }
}

/// A sink that takes offers without encoding them (the `decide` pipeline:
/// the offer record is built, the JSON is not).
#[derive(Default)]
struct DroppingSink {
    offers: u64,
}

impl EngineSink for DroppingSink {
    fn offer(&mut self, offer: Offer) {
        black_box(&offer);
        self.offers += 1;
    }
    fn dead_letter(&mut self, dead_letter: DeadLetter<'_>) {
        black_box(dead_letter.reason);
    }
}

/// The generated records of a round, in processing order.
struct Traffic<'a> {
    events: &'a [&'a [u8]],
    consent: &'a [&'a [u8]],
    order: &'a [OrderedRecord],
}

/// Runs one fresh engine over every record; returns the elapsed seconds.
fn run_engine(
    config: &Arc<EngineConfig>,
    models: &Arc<ModelSet>,
    traffic: &Traffic<'_>,
    sink: &mut impl EngineSink,
) -> f64 {
    let origin = Origin::Unknown;
    let mut engine = Engine::new(config.clone(), models.clone());
    let t0 = Instant::now();
    for rec in traffic.order {
        match rec.kind {
            RecordKind::Event => {
                engine.process_event(None, traffic.events[rec.index], &origin, None, sink)
            }
            RecordKind::Consent => engine.process_consent(
                None,
                Some(traffic.consent[rec.index]),
                rec.time_ms,
                &origin,
                None,
                sink,
            ),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    black_box(&engine);
    secs
}

/// Decodes every event line; returns the elapsed seconds.
fn run_decode(events: &[&[u8]], max: usize) -> f64 {
    let t0 = Instant::now();
    let mut ok = 0usize;
    for line in events {
        if black_box(decode_event(black_box(line), max)).is_ok() {
            ok += 1;
        }
    }
    black_box(ok);
    t0.elapsed().as_secs_f64()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Resident set size of this process, bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The models every engine benchmark scores with (trained on 3,000
/// generated visitors) and its traffic (`visitors`, another seed, 0.2 %
/// malformed lines), the same for every run of `bench`.
fn models_and_traffic(
    config: &Config,
    visitors: usize,
    log: &mut impl Write,
) -> Result<(ServedModels, GeneratedTraffic)> {
    writeln!(log, "training models on 3000 generated visitors…")?;
    let served = crate::offline::train_in_memory(config, 3000, 11)?;
    writeln!(log, "generating {visitors} visitors of traffic…")?;
    let traffic = generate(&SimulationParams {
        visitors,
        seed: 12,
        invalid_rate: 0.002,
        ..SimulationParams::default()
    })?;
    Ok((served, traffic))
}

/// Runs the benchmark.
pub fn run_bench(
    config: &Config,
    opts: &BenchOptions,
    log: &mut impl Write,
) -> Result<BenchResult> {
    let (served, traffic) = models_and_traffic(config, opts.visitors, log)?;
    let (config, models) = (&served.config, &served.models);
    let events: Vec<&[u8]> = traffic.events.iter().map(|l| l.line.as_bytes()).collect();
    let consent: Vec<&[u8]> = traffic.consent.iter().map(|l| l.line.as_bytes()).collect();
    let order = merge_order(&events, &consent);
    let max = config.engine.max_record_bytes;
    let traffic_ref = Traffic {
        events: &events,
        consent: &consent,
        order: &order,
    };
    // The configurations of the cumulative pipelines.
    let no_maps = {
        let mut c = EngineConfig::clone(&config.engine);
        c.action_maps.clear();
        Arc::new(c)
    };
    let no_models = ModelSet::empty(config.engine.outcomes.len());
    // One challenger per outcome: a copy of its champion under another
    // version, which costs what any challenger costs (the dot product runs
    // over the same non-zero features whatever the weights).
    let shadowed = models.shadowed_by(
        (0..config.engine.outcomes.len())
            .map(|i| {
                models.get(i).cloned().map(|mut m| {
                    m.version.push_str("-challenger");
                    m
                })
            })
            .collect(),
    );
    // Rates per round: [alone, with challengers] × [scores off, on].
    let mut challenger_rates: [Vec<f64>; 4] = Default::default();

    let (mut engine_rates, mut parse_rates) = (Vec::new(), Vec::new());
    // Per stage, every round's marginal cost in ns per event line.
    let mut marginal: Vec<Vec<f64>> = vec![Vec::new(); Stage::ALL.len()];
    let mut engine_ns = Vec::new();
    let mut offers_per_round = 0;
    let per_event_ns = |secs: f64| secs * 1e9 / events.len() as f64;
    for round in 0..opts.rounds.max(1) {
        let mut cumulative = [0.0f64; Stage::ALL.len()];
        for (k, stage) in Stage::ALL.iter().enumerate() {
            let secs = match stage {
                Stage::Decode => run_decode(&events, max),
                Stage::GateSessionFeatures => run_engine(
                    &no_maps,
                    &no_models,
                    &traffic_ref,
                    &mut DroppingSink::default(),
                ),
                Stage::Score => {
                    run_engine(&no_maps, models, &traffic_ref, &mut DroppingSink::default())
                }
                Stage::Decide => run_engine(
                    &config.engine,
                    models,
                    &traffic_ref,
                    &mut DroppingSink::default(),
                ),
                Stage::Emit => {
                    let mut sink = EncodingSink::default();
                    let secs = run_engine(&config.engine, models, &traffic_ref, &mut sink);
                    offers_per_round = sink.offers;
                    secs
                }
            };
            cumulative[k] = per_event_ns(secs);
            let before = if k == 0 { 0.0 } else { cumulative[k - 1] };
            marginal[k].push(cumulative[k] - before);
        }
        let (parse_secs, engine_secs) = (
            cumulative[0] * events.len() as f64 / 1e9,
            cumulative[Stage::ALL.len() - 1] * events.len() as f64 / 1e9,
        );
        parse_rates.push(events.len() as f64 / parse_secs);
        engine_rates.push(events.len() as f64 / engine_secs);
        for (k, (set, scores)) in [
            (models, false),
            (&shadowed, false),
            (models, true),
            (&shadowed, true),
        ]
        .into_iter()
        .enumerate()
        {
            let mut sink = EncodingSink {
                scores,
                ..EncodingSink::default()
            };
            let secs = run_engine(&config.engine, set, &traffic_ref, &mut sink);
            challenger_rates[k].push(events.len() as f64 / secs);
        }
        engine_ns.push(cumulative[Stage::ALL.len() - 1]);
        writeln!(
            log,
            "round {}: engine {:>10.0} events/s, parse-only {:>10.0} events/s",
            round + 1,
            engine_rates[round],
            parse_rates[round]
        )?;
    }
    let total_ns = median(&engine_ns);
    let stages: Vec<StageCost> = Stage::ALL
        .iter()
        .zip(&marginal)
        .map(|(stage, ns)| {
            let ns = median(ns);
            StageCost {
                stage: stage.name(),
                ns_per_event: (ns * 10.0).round() / 10.0,
                share: (ns / total_ns * 1000.0).round() / 1000.0,
            }
        })
        .collect();
    let engine_rate = median(&engine_rates);
    let parse_rate = median(&parse_rates);
    let ratio_of = |with: &[f64], alone: &[f64]| {
        let per_round: Vec<f64> = with.iter().zip(alone).map(|(w, a)| w / a).collect();
        (median(&per_round) * 1000.0).round() / 1000.0
    };
    let [alone, shadow, alone_scores, shadow_scores] = &challenger_rates;
    let challengers = ChallengerCost {
        single_events_per_sec: median(alone).round(),
        with_challengers_events_per_sec: median(shadow).round(),
        ratio: ratio_of(shadow, alone),
        single_scores_published_events_per_sec: median(alone_scores).round(),
        with_challengers_scores_published_events_per_sec: median(shadow_scores).round(),
        ratio_scores_published: ratio_of(shadow_scores, alone_scores),
    };

    let (mem_mib, per_visitor) = if opts.memory_visitors > 0 {
        writeln!(log, "holding {} concurrent visitors…", opts.memory_visitors)?;
        measure_memory(config, models, opts.memory_visitors)?
    } else {
        (0.0, 0.0)
    };
    Ok(BenchResult {
        engine_events_per_sec: engine_rate.round(),
        parse_only_events_per_sec: parse_rate.round(),
        ratio: (engine_rate / parse_rate * 1000.0).round() / 1000.0,
        events: events.len(),
        partitions: config.engine.partitions,
        consent_records: consent.len(),
        rounds: engine_rates.len(),
        offers_per_round,
        engine_rounds: engine_rates.iter().map(|r| r.round()).collect(),
        parse_only_rounds: parse_rates.iter().map(|r| r.round()).collect(),
        memory_visitors: opts.memory_visitors,
        memory_rss_mib: (mem_mib * 10.0).round() / 10.0,
        memory_bytes_per_visitor: per_visitor.round(),
        stages,
        challengers,
    })
}

/// Engine-only scaling options (`bench --threads N` without `--training`).
pub struct ScalingOptions {
    /// Visitors of generated traffic.
    pub visitors: usize,
    /// Alternating rounds (1 thread, then N threads).
    pub rounds: usize,
    /// Threads of the parallel runs.
    pub threads: usize,
}

/// Engine-only scaling results.
#[derive(Debug, Serialize)]
pub struct ScalingResult {
    /// Partitions the traffic is split into (one engine each, as `run`).
    pub partitions: u32,
    /// Threads of the parallel runs.
    pub threads: usize,
    /// Event lines per round.
    pub events: usize,
    /// Median rate with every partition's engine on one thread.
    pub one_thread_events_per_sec: f64,
    /// Median rate with the engines spread over `threads` threads.
    pub threads_events_per_sec: f64,
    /// Median of the per-round ratios N threads / 1 thread.
    pub speedup: f64,
    /// Per-round ratios.
    pub speedup_rounds: Vec<f64>,
}

/// One partition's records, in the merged time order, as `run` hands them
/// to its shard.
struct PartitionTraffic {
    order: Vec<OrderedRecord>,
    events: usize,
}

/// Runs every partition's engine, spread over `threads` threads (each
/// engine on one thread, as `run`'s workers do); returns the wall seconds.
fn run_partitions(
    config: &Arc<EngineConfig>,
    models: &Arc<ModelSet>,
    events: &[&[u8]],
    consent: &[&[u8]],
    parts: &[PartitionTraffic],
    threads: usize,
) -> f64 {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || loop {
        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(part) = parts.get(k) else { break };
        let traffic = Traffic {
            events,
            consent,
            order: &part.order,
        };
        run_engine(config, models, &traffic, &mut EncodingSink::default());
    };
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 1..threads.max(1) {
            scope.spawn(work);
        }
        work();
    });
    t0.elapsed().as_secs_f64()
}

/// Engine-only scaling: the same traffic, split by partition into one
/// engine per partition, run with every engine on one thread and spread
/// over `threads` threads, in alternating rounds. No Kafka: this is the
/// ceiling of what `[kafka] workers` can give on this machine.
pub fn run_scaling_bench(
    config: &Config,
    opts: &ScalingOptions,
    log: &mut impl Write,
) -> Result<ScalingResult> {
    let (served, traffic) = models_and_traffic(config, opts.visitors, log)?;
    let (config, models) = (&served.config, &served.models);
    let partitions = config.engine.partitions.max(1);
    let events: Vec<&[u8]> = traffic.events.iter().map(|l| l.line.as_bytes()).collect();
    let consent: Vec<&[u8]> = traffic.consent.iter().map(|l| l.line.as_bytes()).collect();
    let mut parts: Vec<PartitionTraffic> = (0..partitions)
        .map(|_| PartitionTraffic {
            order: Vec::new(),
            events: 0,
        })
        .collect();
    for rec in merge_order(&events, &consent) {
        let (visitor, is_event) = match rec.kind {
            RecordKind::Event => (&traffic.events[rec.index].visitor_id, true),
            RecordKind::Consent => (&traffic.consent[rec.index].visitor_id, false),
        };
        let p = partition_of_u32(visitor.as_bytes(), partitions) as usize;
        parts[p].events += usize::from(is_event);
        parts[p].order.push(rec);
    }
    // Largest first, so that the threads finish together.
    parts.sort_by_key(|p| std::cmp::Reverse(p.events));
    let threads = if opts.threads > 0 {
        opts.threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let (mut one, mut many, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..opts.rounds.max(1) {
        let single = run_partitions(&config.engine, models, &events, &consent, &parts, 1);
        let spread = run_partitions(&config.engine, models, &events, &consent, &parts, threads);
        one.push(events.len() as f64 / single);
        many.push(events.len() as f64 / spread);
        ratios.push(single / spread);
        writeln!(
            log,
            "round {}: 1 thread {:>10.0} events/s, {threads} threads {:>10.0} events/s",
            round + 1,
            one[round],
            many[round]
        )?;
    }
    Ok(ScalingResult {
        partitions,
        threads,
        events: events.len(),
        one_thread_events_per_sec: median(&one).round(),
        threads_events_per_sec: median(&many).round(),
        speedup: (median(&ratios) * 1000.0).round() / 1000.0,
        speedup_rounds: ratios
            .iter()
            .map(|r| (r * 1000.0).round() / 1000.0)
            .collect(),
    })
}

/// Resident memory of `n` visitors, each with consent and an open session
/// of three page views, held in one engine.
fn measure_memory(
    config: &Config,
    models: &std::sync::Arc<ModelSet>,
    n: usize,
) -> Result<(f64, f64)> {
    let before = rss_bytes().context("cannot read /proc/self/status")?;
    let mut engine = Engine::new(config.engine.clone(), models.clone());
    let mut sink = EncodingSink::default();
    let origin = Origin::Unknown;
    let base = 1_795_946_400_000i64;
    let mut line = String::with_capacity(256);
    for i in 0..n {
        let t = base + (i as i64 % 600_000);
        let ts = propensity_engine::timestamp::format_rfc3339_ms(t);
        line.clear();
        line.push_str(&format!(
            r#"{{"visitor_id":"visitor-{i:09}","timestamp":"{ts}","purposes":{{"tracking":true,"sales":true}}}}"#
        ));
        engine.process_consent(None, Some(line.as_bytes()), t, &origin, None, &mut sink);
        for (k, path) in ["/", "/products/widget-3", "/pricing"].iter().enumerate() {
            line.clear();
            line.push_str(&format!(
                r#"{{"event_id":"e-{i}-{k}","visitor_id":"visitor-{i:09}","type":"page_view","timestamp":"{ts}","page":{{"url":"https://shop.example.com{path}"}},"device":{{"category":"desktop","browser":"Firefox","os":"Linux"}},"traffic":{{"source":"google"}}}}"#
            ));
            engine.process_event(None, line.as_bytes(), &origin, None, &mut sink);
        }
    }
    let after = rss_bytes().context("cannot read /proc/self/status")?;
    let held = engine.counters().active_sessions;
    anyhow::ensure!(
        held as usize == n,
        "expected {n} active sessions, engine holds {held}"
    );
    black_box(&engine);
    let grown = after.saturating_sub(before) as f64;
    Ok((grown / (1024.0 * 1024.0), grown / n as f64))
}

/// `bench --training` options.
pub struct TrainingBenchOptions {
    /// Visitors of generated traffic (one data set for every round).
    pub visitors: usize,
    /// Rounds of the whole training path; medians are reported.
    pub rounds: usize,
    /// Threads running fits (0: every core).
    pub threads: usize,
    /// Write the matrices, labels and a manifest here (`.npy` files).
    pub export: Option<PathBuf>,
}

/// One outcome in the training bench.
#[derive(Debug, Serialize)]
pub struct TrainingBenchOutcome {
    /// Outcome name.
    pub outcome: String,
    /// Training rows (before undersampling).
    pub train_rows: usize,
    /// Rows of the final fit's matrix (kept by undersampling).
    pub fit_rows: usize,
    /// Leading rows the grid fits use.
    pub grid_rows: usize,
    /// Chosen L2 penalty.
    pub l2: f64,
    /// The grid and its validation AUCs.
    pub grid: Vec<propensity_training::GridPoint>,
    /// Holdout AUC of the final model.
    pub holdout_auc: Option<f64>,
    /// One cold fit (no grid, no warm start) of the full matrix at the chosen
    /// l2, one thread: the fitter alone, for a like-for-like comparison.
    pub single_fit_secs: f64,
}

/// `bench --training` results.
#[derive(Debug, Serialize)]
pub struct TrainingBenchResult {
    /// Visitors generated.
    pub visitors: usize,
    /// Threads that ran fits.
    pub threads: usize,
    /// Engine run collecting the examples, seconds (once).
    pub collect_secs: f64,
    /// Training rows over all outcomes (before undersampling).
    pub train_rows: usize,
    /// Median seconds of the training path (prepare + grid + refit +
    /// holdout evaluation), all outcomes.
    pub train_secs: f64,
    /// Median seconds of preparation (split, statistics, matrix).
    pub prepare_secs: f64,
    /// Median wall seconds of the fits (outcomes in parallel).
    pub fit_secs: f64,
    /// Median seconds of the grid fits, summed over outcomes (thread time).
    pub grid_secs: f64,
    /// Median seconds of the refits (`f32`, then the `f64` polish), summed over
    /// outcomes (thread time).
    pub refit_secs: f64,
    /// Median seconds of the `f64` polishes alone (part of `refit_secs`).
    pub polish_secs: f64,
    /// Training rows per minute of `train_secs`.
    pub rows_per_minute: f64,
    /// Every round's `train_secs`.
    pub train_rounds: Vec<f64>,
    /// Per outcome (last round; the models are identical in every round).
    pub outcomes: Vec<TrainingBenchOutcome>,
    /// Where the matrices went.
    pub export: Option<PathBuf>,
}

/// Runs `bench --training`.
pub fn run_training_bench(
    config: &Config,
    opts: &TrainingBenchOptions,
    log: &mut impl Write,
) -> Result<TrainingBenchResult> {
    use propensity_training::{prepare_outcomes, train_prepared_timed, SearchPlan};

    writeln!(log, "generating {} visitors of traffic…", opts.visitors)?;
    let traffic = generate(&SimulationParams {
        visitors: opts.visitors,
        seed: 12,
        ..SimulationParams::default()
    })?;
    let t0 = Instant::now();
    let collected = crate::offline::collect_generated(config, &traffic)?;
    let (config, examples) = (&collected.config, &collected.examples);
    let collect_secs = t0.elapsed().as_secs_f64();
    drop(traffic);
    let plan = config.training_plan();
    let search = SearchPlan {
        threads: opts.threads,
        ..SearchPlan::around(&plan.fit)
    };
    let threads = if opts.threads > 0 {
        opts.threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    writeln!(
        log,
        "collected examples in {collect_secs:.1} s; training {} round(s) on {threads} thread(s)…",
        opts.rounds.max(1)
    )?;

    let (mut totals, mut prepares, mut fits, mut grids, mut refits, mut polishes) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut last = None;
    for round in 0..opts.rounds.max(1) {
        let t0 = Instant::now();
        let prepared = prepare_outcomes(&config.engine, examples, &plan, &search)
            .context("preparing the training data")?;
        let prepare = t0.elapsed().as_secs_f64();
        let (trained, times) = train_prepared_timed(
            &config.engine,
            examples,
            &prepared,
            &plan,
            &search,
            |_, _, _| {},
        )
        .context("training failed")?;
        let total = t0.elapsed().as_secs_f64();
        let rows: usize = trained.iter().map(|t| t.train_rows).sum();
        writeln!(
            log,
            "round {}: {total:.2} s (prepare {prepare:.2}, fits {:.2} wall; thread time grid {:.2}, refit {:.2} of which polish {:.2}), {:.0} rows/min",
            round + 1,
            times.fit_secs,
            times.grid_secs,
            times.refit_secs,
            times.polish_secs,
            rows as f64 * 60.0 / total
        )?;
        totals.push(total);
        prepares.push(prepare);
        fits.push(times.fit_secs);
        grids.push(times.grid_secs);
        refits.push(times.refit_secs);
        polishes.push(times.polish_secs);
        last = Some((prepared, trained));
    }
    let (prepared, trained) = last.context("no round ran")?;

    let mut outcomes = Vec::new();
    for (p, t) in prepared.iter().zip(&trained) {
        let t0 = Instant::now();
        p.fit_once(
            examples,
            t.selection.l2,
            plan.fit.max_iterations,
            search.tolerance_per_row,
        )
        .with_context(|| format!("single fit of `{}`", p.name))?;
        outcomes.push(TrainingBenchOutcome {
            outcome: p.name.clone(),
            train_rows: t.train_rows,
            fit_rows: p.fit_rows(),
            grid_rows: p.grid_rows(),
            l2: t.selection.l2,
            grid: t.selection.grid.clone(),
            holdout_auc: t.holdout.as_ref().and_then(|h| h.auc),
            single_fit_secs: t0.elapsed().as_secs_f64(),
        });
    }
    let train_rows: usize = trained.iter().map(|t| t.train_rows).sum();
    let train_secs = median(&totals);
    let result = TrainingBenchResult {
        visitors: opts.visitors,
        threads,
        collect_secs,
        train_rows,
        train_secs,
        prepare_secs: median(&prepares),
        fit_secs: median(&fits),
        grid_secs: median(&grids),
        refit_secs: median(&refits),
        polish_secs: median(&polishes),
        rows_per_minute: (train_rows as f64 * 60.0 / train_secs).round(),
        train_rounds: totals,
        outcomes,
        export: opts.export.clone(),
    };
    if let Some(dir) = &opts.export {
        export_training(dir, examples, &prepared, &trained, &plan, &search, &result)?;
        writeln!(log, "exported the matrices to {}", dir.display())?;
    }
    Ok(result)
}

/// Writes, per outcome, the final fit's matrix and labels (grid rows first),
/// the validation and holdout rows (standardized alike), and a manifest with the
/// final model's standardized weights.
fn export_training(
    dir: &Path,
    examples: &propensity_training::ExampleCollector,
    prepared: &[propensity_training::PreparedOutcome],
    trained: &[propensity_training::TrainedOutcome],
    plan: &propensity_training::TrainingPlan,
    search: &propensity_training::SearchPlan,
    result: &TrainingBenchResult,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for (p, t) in prepared.iter().zip(trained) {
        let name = &p.name;
        let (vx, vy) = p.validation_matrix(examples);
        let (hx, hy) = p.holdout_matrix(examples);
        let y: Vec<bool> = p.matrix_labels().iter().copied().collect();
        // The `f64` matrix of the final fit (the grid reads its leading rows).
        let fx = p.exact_matrix(examples);
        let cols = fx.ncols();
        // All three are built column-major by the training crate.
        for (suffix, data, y) in [
            ("fit", fx.as_slice_memory_order(), &y),
            ("validation", vx.as_slice_memory_order(), &vy),
            ("holdout", hx.as_slice_memory_order(), &hy),
        ] {
            let data = data.context("a matrix is not column-major")?;
            let xp = dir.join(format!("{name}.{suffix}.x.npy"));
            let yp = dir.join(format!("{name}.{suffix}.y.npy"));
            write_file(&xp, &npy_f64_column_major(y.len(), cols, data))?;
            write_file(&yp, &npy_bool_vector(y))?;
        }
        files.push(serde_json::json!({
            "outcome": name,
            "prefix": name,
            "grid_rows": p.grid_rows(),
            "intercept_correction": p.intercept_correction(),
            // The final model on the exported (standardized) matrix, before the prior
            // correction: what the script checks the stopping rule on.
            "weights": t.artifact.weights,
            "intercept": t.artifact.intercept - p.intercept_correction(),
            "l2": t.selection.l2,
        }));
    }
    let manifest = serde_json::json!({
        "l2_grid": search.l2_grid,
        "max_iterations": plan.fit.max_iterations,
        "tolerance_per_row": search.tolerance_per_row,
        "outcomes": files,
        "rust": result,
    });
    write_file(
        &dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// NumPy `.npy` (format 1.0): magic, version, a little-endian u16 header
/// length, a Python-dict header padded with spaces to a multiple of 64
/// bytes and ended by a newline, then the raw data.
fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    // A 1.0 header is at most 65535 bytes; ours is a few dozen.
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A column-major matrix as `.npy` (`fortran_order`: the bytes are written as
/// they lie in memory, no reordering).
fn npy_f64_column_major(rows: usize, cols: usize, data: &[f64]) -> Vec<u8> {
    debug_assert_eq!(rows * cols, data.len());
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy("<f8", true, &format!("({rows}, {cols})"), &bytes)
}

fn npy_bool_vector(y: &[bool]) -> Vec<u8> {
    let bytes: Vec<u8> = y.iter().map(|&b| u8::from(b)).collect();
    npy("|b1", false, &format!("({},)", y.len()), &bytes)
}

/// Prints `bench --training` results as a table and a summary line.
pub fn print_training_bench(r: &TrainingBenchResult, w: &mut impl Write) -> Result<()> {
    writeln!(
        w,
        "{:<22} {:>9} {:>9} {:>8} {:>11} {:>12}  validation AUC by l2",
        "outcome", "rows", "fit rows", "l2", "holdout AUC", "1 fit (s)"
    )?;
    for o in &r.outcomes {
        let grid: Vec<String> = o
            .grid
            .iter()
            .map(|g| format!("{}: {:.4}", g.l2, g.validation_auc.unwrap_or(f64::NAN)))
            .collect();
        writeln!(
            w,
            "{:<22} {:>9} {:>9} {:>8} {:>11.4} {:>12.2}  {}",
            o.outcome,
            o.train_rows,
            o.fit_rows,
            o.l2,
            o.holdout_auc.unwrap_or(f64::NAN),
            o.single_fit_secs,
            grid.join(", ")
        )?;
    }
    writeln!(
        w,
        "training: {} rows in {:.2} s (median of {}; prepare {:.2}, fits {:.2} wall; thread time grid {:.2}, refit {:.2} of which polish {:.2}) = {:.0} rows/min on {} thread(s); collecting took {:.1} s",
        r.train_rows,
        r.train_secs,
        r.train_rounds.len(),
        r.prepare_secs,
        r.fit_secs,
        r.grid_secs,
        r.refit_secs,
        r.polish_secs,
        r.rows_per_minute,
        r.threads,
        r.collect_secs
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_data_follows_memory_order() {
        let bytes = npy_f64_column_major(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'fortran_order': True"), "{header}");
        assert!(header.contains("'shape': (3, 2)"), "{header}");
        assert!(header.ends_with('\n'));
        let at = |k: usize| {
            let start = 10 + header_len + 8 * k;
            f64::from_le_bytes(bytes[start..start + 8].try_into().unwrap())
        };
        assert_eq!((at(0), at(1), at(5)), (1.0, 2.0, 6.0));
        assert_eq!(bytes.len(), 10 + header_len + 48);
        let b = npy_bool_vector(&[true, false]);
        assert_eq!(&b[b.len() - 2..], &[1, 0]);
    }
}
