//! `propensity topics describe`: one block per topic of the deployment —
//! partitions and replication, the configs that matter (compaction above
//! all), offsets per partition and, for the events topic, the group's
//! committed offsets and lag — then whether `run`'s start-up check would
//! pass. `--json` prints the same as one JSON document. The Kafka side is
//! `propensity_kafka::inspect`; this file renders it.

use std::io::Write;

use anyhow::Result;
use propensity_kafka::inspect::{describe, TopicDescription};
use propensity_kafka::topics::check_topics;
use serde::Serialize;

use crate::config_file::Config;
use crate::tail::PROBE_TIMEOUT;

/// What `--json` prints.
#[derive(Serialize)]
struct Described<'a> {
    brokers: &'a str,
    group_id: &'a str,
    topics: &'a [TopicDescription],
    /// `None` when `run`'s topic check passes, else its problems.
    check_problems: Option<String>,
}

/// `propensity topics describe [--json]`.
pub fn run(config: &Config, json: bool, out: &mut dyn Write) -> Result<()> {
    let settings = &config.file.kafka;
    settings.validate()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topics = rt.block_on(describe(settings, PROBE_TIMEOUT))?;
    // The brokers answered, so the check's own metadata requests will too.
    let check_problems = rt
        .block_on(check_topics(settings))
        .err()
        .map(|e| e.to_string());
    if json {
        let doc = Described {
            brokers: &settings.brokers,
            group_id: &settings.group_id,
            topics: &topics,
            check_problems,
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "brokers {}, group `{}`",
        settings.brokers, settings.group_id
    )?;
    for t in &topics {
        print_topic(t, out)?;
    }
    match check_problems {
        None => writeln!(out, "\ncheck: ok, `propensity run` accepts these topics")?,
        Some(p) => writeln!(out, "\ncheck: `propensity run` would refuse to start: {p}")?,
    }
    Ok(())
}

fn print_topic(t: &TopicDescription, out: &mut dyn Write) -> Result<()> {
    writeln!(out)?;
    if !t.exists {
        writeln!(
            out,
            "{} ({}): does not exist (`propensity topics create` makes it)",
            t.name, t.role
        )?;
        return Ok(());
    }
    let configs: Vec<String> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(
        out,
        "{} ({}): {} partitions, replication factor {}",
        t.name, t.role, t.partition_count, t.replication_factor
    )?;
    writeln!(out, "  {}", configs.join(" "))?;
    let grouped = t.partitions.iter().any(|p| p.lag.is_some());
    if grouped {
        writeln!(
            out,
            "  {:>9} {:>12} {:>12} {:>12} {:>10}",
            "partition", "start", "end", "committed", "lag"
        )?;
    } else {
        writeln!(out, "  {:>9} {:>12} {:>12}", "partition", "start", "end")?;
    }
    let (mut records, mut lag) = (0, 0);
    for p in &t.partitions {
        records += p.end - p.start;
        if grouped {
            let committed = p
                .committed
                .map_or_else(|| "none".to_owned(), |c| c.to_string());
            writeln!(
                out,
                "  {:>9} {:>12} {:>12} {:>12} {:>10}",
                p.partition,
                p.start,
                p.end,
                committed,
                p.lag.unwrap_or(0)
            )?;
            lag += p.lag.unwrap_or(0);
        } else {
            writeln!(out, "  {:>9} {:>12} {:>12}", p.partition, p.start, p.end)?;
        }
    }
    if grouped {
        writeln!(out, "  {records} offsets in the log, lag {lag}")?;
    } else {
        writeln!(out, "  {records} offsets in the log")?;
    }
    Ok(())
}
