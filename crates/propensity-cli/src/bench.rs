//! `propensity bench`: engine throughput against a parse-only baseline in
//! the same run, and resident memory per concurrent visitor.
//!
//! Throughput is measured single-threaded on generated traffic: the
//! baseline decodes every event line into the event type; the engine run
//! does everything (decode, consent, sessions, features, scoring of every
//! outcome, action maps, encoding offers). Rounds alternate between the two
//! so machine noise hits both alike; medians are reported with their ratio.

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use propensity_engine::replay::{merge_order, RecordKind};
use propensity_engine::wire::decode_event;
use propensity_engine::{DeadLetter, Engine, EngineSink, ModelSet, Offer, Origin};
use propensity_simulator::{generate, SimulationParams};
use serde::Serialize;

use crate::config_file::Config;

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
}

/// A sink that encodes offers like a real adapter, into a reused buffer.
#[derive(Default)]
struct EncodingSink {
    buf: Vec<u8>,
    offers: u64,
}

impl EngineSink for EncodingSink {
    fn offer(&mut self, offer: Offer) {
        self.buf.clear();
        if serde_json::to_writer(&mut self.buf, &offer).is_ok() {
            self.offers += 1;
        }
        black_box(&self.buf);
    }
    fn dead_letter(&mut self, dead_letter: DeadLetter<'_>) {
        black_box(dead_letter.reason);
    }
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

/// Runs the benchmark.
pub fn run_bench(
    config: &Config,
    opts: &BenchOptions,
    log: &mut impl Write,
) -> Result<BenchResult> {
    writeln!(log, "training models on 3000 generated visitors…")?;
    let models = crate::offline::train_in_memory(config, 3000, 11)?;

    writeln!(log, "generating {} visitors of traffic…", opts.visitors)?;
    let traffic = generate(&SimulationParams {
        visitors: opts.visitors,
        seed: 12,
        invalid_rate: 0.002,
        ..SimulationParams::default()
    })?;
    let events: Vec<&[u8]> = traffic.events.iter().map(|l| l.line.as_bytes()).collect();
    let consent: Vec<&[u8]> = traffic.consent.iter().map(|l| l.line.as_bytes()).collect();
    let order = merge_order(&events, &consent);
    let origin = Origin::Unknown;
    let max = config.engine.max_record_bytes;

    let (mut engine_rates, mut parse_rates) = (Vec::new(), Vec::new());
    let mut offers_per_round = 0;
    for round in 0..opts.rounds.max(1) {
        let t0 = Instant::now();
        let mut ok = 0usize;
        for line in &events {
            if black_box(decode_event(black_box(line), max)).is_ok() {
                ok += 1;
            }
        }
        black_box(ok);
        parse_rates.push(events.len() as f64 / t0.elapsed().as_secs_f64());

        let mut engine = Engine::new(config.engine.clone(), models.clone());
        let mut sink = EncodingSink::default();
        let t0 = Instant::now();
        for rec in &order {
            match rec.kind {
                RecordKind::Event => {
                    engine.process_event(None, events[rec.index], &origin, None, &mut sink)
                }
                RecordKind::Consent => engine.process_consent(
                    None,
                    Some(consent[rec.index]),
                    rec.time_ms,
                    &origin,
                    None,
                    &mut sink,
                ),
            }
        }
        engine_rates.push(events.len() as f64 / t0.elapsed().as_secs_f64());
        offers_per_round = sink.offers;
        writeln!(
            log,
            "round {}: engine {:>10.0} events/s, parse-only {:>10.0} events/s",
            round + 1,
            engine_rates[round],
            parse_rates[round]
        )?;
    }
    let engine_rate = median(&engine_rates);
    let parse_rate = median(&parse_rates);

    let (mem_mib, per_visitor) = if opts.memory_visitors > 0 {
        writeln!(log, "holding {} concurrent visitors…", opts.memory_visitors)?;
        measure_memory(config, &models, opts.memory_visitors)?
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
