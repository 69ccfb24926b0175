//! `propensity bench --restore`: how long one partition holding many
//! visitors takes to restore, against the time a plain reader takes to read
//! the same changelog (the floor, measured in the same run: a ratio), and
//! against reading the whole consent topic (what a restore read before
//! snapshots carried consent).
//!
//! The state is built by the pipeline itself: every visitor grants consent
//! and sends two page views (an open session each), the pipeline processes
//! them and is stopped; then, each round, a tail of consent changes is
//! produced and the pipeline restarts in the same group, and its restore is
//! timed by `propensity_restore_seconds`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use propensity_engine::timestamp::format_rfc3339_ms;
use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_kafka::reader::PartitionReader;
use propensity_kafka::topics::create_topics;
use propensity_kafka::{CancellationToken, KafkaSettings};
use serde::Serialize;
use serde_json::json;

use crate::config_file::Config;
use crate::kafka_bench::{broker_and_models, median, start_pipeline, suffixed, wait_committed};

/// Options.
pub struct RestoreBenchOptions {
    /// Visitors held by the partition.
    pub visitors: usize,
    /// Restarts measured.
    pub rounds: usize,
}

/// Results.
#[derive(Debug, Serialize)]
pub struct RestoreBenchResult {
    /// Visitors held by the one partition.
    pub visitors: usize,
    /// Seconds the pipeline took to build that state (produce excluded).
    pub build_seconds: f64,
    /// Median restore time (`propensity_restore_seconds`), s.
    pub restore_seconds: f64,
    /// Every round's restore time, s.
    pub restore_rounds: Vec<f64>,
    /// Changelog records the last restore read.
    pub changelog_records: u64,
    /// Consent records the last restore read (the tail since the commit).
    pub consent_records: u64,
    /// Consent changes produced before each restart.
    pub consent_tail_per_round: usize,
    /// Records in the consent topic at the end (what a restore of a
    /// changelog without consent reads).
    pub consent_topic_records: i64,
    /// Median time of a plain read of the changelog partition, s.
    pub changelog_read_seconds: f64,
    /// restore / plain changelog read.
    pub ratio_to_changelog_read: f64,
    /// Median time of a plain read of the whole consent partition, s.
    pub consent_topic_read_seconds: f64,
}

/// Seconds a plain reader takes to read a partition of `topic` to its end.
fn read_partition(settings: &KafkaSettings, topic: &str) -> Result<(f64, u64)> {
    let mut reader = PartitionReader::new(settings, "bench-restore-read", topic)?;
    let started = Instant::now();
    reader.assign(&[(0, None)])?;
    let ends = reader.end_offsets(&[0])?;
    let mut records = 0u64;
    reader.read_until(&ends, &CancellationToken::new(), |_, _| records += 1)?;
    Ok((started.elapsed().as_secs_f64(), records))
}

/// Runs the restore benchmark.
pub fn run_restore_bench(
    config: &Config,
    opts: &RestoreBenchOptions,
    out: &mut impl Write,
) -> Result<RestoreBenchResult> {
    let (served, models) = broker_and_models(config, out)?;
    let config = &served.config;
    let settings = KafkaSettings {
        partitions: 1,
        ..suffixed(&config.file.kafka, "restore")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(create_topics(&settings))
        .context("creating benchmark topics")?;

    writeln!(
        out,
        "building the state of {} visitors in one partition…",
        opts.visitors
    )?;
    let producer = TrafficProducer::new(&settings)?;
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        - 600_000;
    let send = |topic: &str, visitor: &str, value: &serde_json::Value| -> Result<()> {
        let bytes = serde_json::to_vec(value)?;
        producer.send(OutgoingRecord {
            topic,
            key: Some(visitor.as_bytes()),
            value: Some(&bytes),
        })?;
        Ok(())
    };
    let consent = |visitor: &str, time_ms: i64, others: bool| {
        json!({
            "visitor_id": visitor,
            "timestamp": format_rfc3339_ms(time_ms),
            "purposes": {"tracking": true, "sales": others, "marketing": others, "support": others}
        })
    };
    for i in 0..opts.visitors {
        let visitor = format!("restore-{i}");
        send(
            &settings.consent_topic,
            &visitor,
            &consent(&visitor, t0, true),
        )?;
        for (n, path) in ["/products/widget-1", "/pricing"].iter().enumerate() {
            let view = json!({
                "event_id": format!("{visitor}-{n}"),
                "visitor_id": visitor,
                "type": "page_view",
                "timestamp": format_rfc3339_ms(t0 + 1_000 * (n as i64 + 1)),
                "page": {"url": format!("https://shop.example.com{path}")},
                "device": {"category": "desktop"}
            });
            send(&settings.events_topic, &visitor, &view)?;
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let started = Instant::now();
    let pipeline = start_pipeline(config, &settings, &models)?;
    wait_committed(&settings, Duration::from_secs(1200))?;
    let build_seconds = started.elapsed().as_secs_f64();
    pipeline.stop()?;

    // One percent of the visitors change their consent between restarts:
    // the tail a restore applies.
    let tail = (opts.visitors / 100).max(1);
    let mut restore_rounds = Vec::new();
    let mut changelog_reads = Vec::new();
    let mut consent_reads = Vec::new();
    let mut last = (0, 0);
    for round in 0..opts.rounds {
        for i in 0..tail {
            let visitor = format!("restore-{}", (round * tail + i) % opts.visitors);
            let time = t0 + 10_000 + round as i64;
            send(
                &settings.consent_topic,
                &visitor,
                &consent(&visitor, time, round % 2 == 1),
            )?;
        }
        producer.flush(Duration::from_secs(60))?;
        let pipeline = start_pipeline(config, &settings, &models)?;
        let waiting = Instant::now();
        while pipeline.metrics.restore_seconds.get_sample_count() == 0 {
            anyhow::ensure!(
                waiting.elapsed() < Duration::from_secs(300),
                "no restore finished in 300 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let seconds = pipeline.metrics.restore_seconds.get_sample_sum();
        last = (
            pipeline
                .status
                .restored_records
                .load(std::sync::atomic::Ordering::Relaxed),
            pipeline.metrics.consent_restored_records.get(),
        );
        pipeline.stop()?;
        restore_rounds.push(seconds);
        changelog_reads.push(read_partition(&settings, &settings.changelog_topic)?.0);
        consent_reads.push(read_partition(&settings, &settings.consent_topic)?.0);
        writeln!(
            out,
            "round {}: restore {seconds:.3} s ({} changelog records, {} consent records)",
            round + 1,
            last.0,
            last.1
        )?;
    }
    let consent_topic_records = read_partition(&settings, &settings.consent_topic)?.1 as i64;
    let restore_seconds = median(&restore_rounds);
    let changelog_read_seconds = median(&changelog_reads);
    Ok(RestoreBenchResult {
        visitors: opts.visitors,
        build_seconds,
        restore_seconds,
        restore_rounds,
        changelog_records: last.0,
        consent_records: last.1,
        consent_tail_per_round: tail,
        consent_topic_records,
        changelog_read_seconds,
        ratio_to_changelog_read: restore_seconds / changelog_read_seconds,
        consent_topic_read_seconds: median(&consent_reads),
    })
}
