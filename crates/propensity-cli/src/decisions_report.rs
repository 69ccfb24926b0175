//! `propensity report`: each action map's decisions, control group and
//! offer feedback read back from the decision, conversion and feedback
//! records — JSON-lines files
//! (`replay --decisions-out/--conversions-out`) or the topics
//! (`kafka.decisions_topic`, `kafka.conversions_topic`) — printed as a
//! table, and optionally written as JSON and as an uplift chart (PNG).
//!
//! The arithmetic is `propensity_engine::decision_log`; this file owns the
//! command's options, where the records come from, and the printing. The
//! table equals the engine's own counters for the same records (the
//! Prometheus `propensity_decisions_total` and `propensity_control_group_*`
//! series), which the system tests check.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use propensity_engine::decision_log::{DecisionLog, MapReport};
use propensity_engine::wire::DecisionKind;
use propensity_kafka::inspect::probe;
use propensity_kafka::tail::read_committed_values;
use propensity_training::report::{uplift_chart_png, UpliftRow};

use crate::config_file::Config;
use crate::offline::control_group_line;
use crate::tail::PROBE_TIMEOUT;

/// How long to wait for transactions open on the topics when reading them.
const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// Options of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Decision records, JSON lines (`replay --decisions-out`); repeatable.
    #[arg(long, value_name = "FILE", required_unless_present = "from_kafka")]
    pub decisions: Vec<PathBuf>,
    /// Conversion records, JSON lines (`replay --conversions-out`);
    /// repeatable.
    #[arg(long, alias = "outcomes", value_name = "FILE")]
    pub conversions: Vec<PathBuf>,
    /// Offer feedback, JSON lines (what `replay --feedback` reads);
    /// repeatable: counts per map and status in the table.
    #[arg(long, value_name = "FILE")]
    pub feedback: Vec<PathBuf>,
    /// Read `kafka.decisions_topic` and `kafka.conversions_topic` (and
    /// `kafka.feedback_topic` when set; committed records, from the log
    /// start) instead of files.
    #[arg(long, conflicts_with_all = ["decisions", "conversions", "feedback"])]
    pub from_kafka: bool,
    /// Also write the uplift chart here (PNG).
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    /// Also write the table here as JSON (`-`: stdout, instead of the table).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs `report`.
pub fn run(config: &Config, args: &ReportArgs, out: &mut dyn Write) -> Result<()> {
    let mut log = DecisionLog::default();
    if args.from_kafka {
        read_topics(config, &mut log)?;
    } else {
        for path in &args.decisions {
            read_lines(path, |line| log.add_decision(line))?;
        }
        for path in &args.conversions {
            read_lines(path, |line| log.add_conversion(line))?;
        }
    }
    for path in &args.feedback {
        read_lines(path, |line| log.add_feedback(line))?;
    }
    let table = log.report();
    if let Some(path) = &args.chart {
        let png = uplift_chart_png(&chart_rows(&table))?;
        std::fs::write(path, png)
            .with_context(|| format!("cannot write the chart {}", path.display()))?;
    }
    match args.json.as_deref() {
        Some(p) if p == Path::new("-") => {
            serde_json::to_writer_pretty(&mut *out, &table)?;
            writeln!(out)?;
            return Ok(());
        }
        Some(p) => {
            let json = serde_json::to_vec_pretty(&table)?;
            std::fs::write(p, json).with_context(|| format!("cannot write {}", p.display()))?;
        }
        None => {}
    }
    print_table(&table, log.unreadable, out)
}

fn read_lines(path: &Path, mut add: impl FnMut(&[u8])) -> Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open records file {}", path.display()))?;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if !line.iter().all(u8::is_ascii_whitespace) {
            add(&line);
        }
    }
    Ok(())
}

fn read_topics(config: &Config, log: &mut DecisionLog) -> Result<()> {
    let settings = &config.file.kafka;
    settings.validate()?;
    let cluster = probe(settings, PROBE_TIMEOUT)?;
    for (topic, key, is_decision) in [
        (&settings.decisions_topic, "kafka.decisions_topic", true),
        (
            &settings.conversions_topic,
            "kafka.conversions_topic",
            false,
        ),
    ] {
        if topic.is_empty() {
            bail!(
                "`{key}` is empty in {}: set it (and restart `propensity run`) so the report has records to read",
                config.origin
            );
        }
        let Some(layout) = cluster.get(topic.as_str()) else {
            bail!(
                "topic `{topic}` (`{key}`) does not exist on `{}`: run `propensity topics create`",
                settings.brokers
            );
        };
        for value in read_committed_values(settings, topic, &layout.partitions, SETTLE_WAIT)? {
            if is_decision {
                log.add_decision(&value);
            } else {
                log.add_conversion(&value);
            }
        }
    }
    // Feedback, when the pipeline reads a feedback topic.
    let topic = &settings.feedback_topic;
    if let Some(layout) = cluster.get(topic.as_str()).filter(|_| !topic.is_empty()) {
        for value in read_committed_values(settings, topic, &layout.partitions, SETTLE_WAIT)? {
            log.add_feedback(&value);
        }
    }
    Ok(())
}

fn chart_rows(table: &BTreeMap<String, MapReport>) -> Vec<UpliftRow> {
    table
        .iter()
        .filter_map(|(map, r)| {
            let g = &r.control_group;
            let u = g.uplift?;
            Some(UpliftRow {
                map: map.clone(),
                difference: u.difference,
                ci_low: u.ci_low,
                ci_high: u.ci_high,
                sessions: (g.offered_sessions, g.held_out_sessions),
            })
        })
        .collect()
}

fn print_table(
    table: &BTreeMap<String, MapReport>,
    unreadable: u64,
    out: &mut dyn Write,
) -> Result<()> {
    if table.is_empty() {
        writeln!(out, "no decision records: no action map fired")?;
    }
    let width = table.keys().map(String::len).max().unwrap_or(0).max(10);
    write!(out, "{:<width$}  {:>9}", "action map", "decisions")?;
    for kind in DecisionKind::ALL {
        write!(out, "  {:>14}", kind.as_str())?;
    }
    writeln!(out)?;
    for (map, r) in table {
        let total: u64 = r.decisions.values().sum();
        write!(out, "{map:<width$}  {total:>9}")?;
        for kind in DecisionKind::ALL {
            write!(
                out,
                "  {:>14}",
                r.decisions.get(kind.as_str()).unwrap_or(&0)
            )?;
        }
        writeln!(out)?;
    }
    writeln!(out)?;
    for (map, r) in table {
        let g = &r.control_group;
        if g.held_out_sessions == 0 {
            writeln!(
                out,
                "control group {map}: none (no held-out decision; set holdout_fraction on the map to measure uplift)"
            )?;
        } else {
            writeln!(out, "{}", control_group_line(map, g))?;
        }
        if r.feedback.values().any(|n| *n > 0) {
            let counts: Vec<String> = r.feedback.iter().map(|(k, n)| format!("{k}={n}")).collect();
            let shown = r.feedback.get("shown").copied().unwrap_or(0);
            let accepted = r.feedback.get("accepted").copied().unwrap_or(0);
            let rate = if shown > 0 {
                format!(
                    "; {:.1} % of shown offers accepted",
                    100.0 * accepted as f64 / shown as f64
                )
            } else {
                String::new()
            };
            writeln!(out, "feedback {map}: {}{rate}", counts.join(", "))?;
        }
        if r.unmatched_conversions > 0 {
            writeln!(
                out,
                "  {} conversions of {map} have no offered or held-out decision in the input (older records gone, or the files do not match): left out of the rates",
                r.unmatched_conversions
            )?;
        }
    }
    if unreadable > 0 {
        writeln!(
            out,
            "{unreadable} records were not decision or conversion records and were skipped"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_file::EMBEDDED_CONFIG;
    use crate::progress::Progress;
    use serde_json::Value;

    /// The demo (generate, train, evaluate, replay) on a few hundred
    /// visitors into `dir`.
    pub(super) fn small_demo(config: &Config, dir: &Path) {
        crate::demo::run_demo(
            config,
            dir,
            &crate::demo::DemoSize {
                train_visitors: 800,
                eval_visitors: 600,
            },
            &mut Vec::new(),
            &Progress::hidden(),
        )
        .unwrap();
    }

    /// The report read back from the demo's decision and conversion files
    /// equals the engine's own counters in `summary.json`: decisions by
    /// kind per map, and both arms of each control group.
    #[test]
    fn the_report_from_records_equals_the_engine_counters() {
        // Control groups on the first two maps (the shipped config has none).
        let text = EMBEDDED_CONFIG
            .replacen("holdout_fraction = 0.0", "holdout_fraction = 0.4", 1)
            .replacen(
                "name = \"cart-rescue-offer\"",
                "name = \"cart-rescue-offer\"\nholdout_fraction = 0.25",
                1,
            );
        let config = Config::from_text("test", &text, std::iter::empty()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        small_demo(&config, dir.path());
        let json = dir.path().join("report.json");
        let chart = dir.path().join("uplift.png");
        let args = ReportArgs {
            decisions: vec![dir.path().join("decisions.jsonl")],
            conversions: vec![dir.path().join("conversions.jsonl")],
            feedback: Vec::new(),
            from_kafka: false,
            chart: Some(chart.clone()),
            json: Some(json.clone()),
        };
        let mut printed = Vec::new();
        run(&config, &args, &mut printed).unwrap();
        let printed = String::from_utf8(printed).unwrap();
        let read = |p: &Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        let (report, summary) = (read(&json), read(&dir.path().join("summary.json")));
        let groups = summary["control_groups"].as_object().unwrap();
        assert_eq!(groups.len(), 2, "{summary}");
        for (map, row) in report.as_object().unwrap() {
            for (kind, counter) in [
                ("offered", "offers_by_action_map"),
                ("held_out", "held_out_by_action_map"),
                ("capped", "suppressed_by_cap"),
                ("no_purpose", "suppressed_by_purpose"),
                ("lower_priority", "lower_priority_by_action_map"),
                ("contact_policy", "suppressed_by_contact_policy"),
            ] {
                assert_eq!(
                    row["decisions"][kind], summary[counter][map],
                    "{map} {kind}"
                );
            }
            if let Some(group) = groups.get(map) {
                assert_eq!(&row["control_group"], group, "{map}");
                assert!(group["held_out_sessions"].as_u64().unwrap() > 0, "{group}");
                assert!(
                    group["offered_converted"].as_u64().unwrap() > 0
                        || map != "checkout-assist-chat",
                    "{group}"
                );
                assert!(printed.contains(&format!("control group {map}: offered")));
            }
        }
        assert!(std::fs::read(&chart).unwrap().starts_with(b"\x89PNG"));
    }
}

#[cfg(test)]
mod feedback_tests {
    use super::*;
    use crate::config_file::EMBEDDED_CONFIG;
    use crate::offline::{replay_files, ReplayArgs};
    use crate::progress::Progress;
    use serde_json::Value;

    /// `replay --feedback` end to end: every offer of the demo's replay is
    /// declined a second later; under a policy that suppresses a map for a
    /// day after one decline, the same traffic makes fewer offers, the
    /// rest are `contact_policy` decisions, the feedback counts reconcile,
    /// and `report --feedback` counts the declines per map.
    #[test]
    fn declined_offers_suppress_their_maps_in_replay() {
        let plain = Config::from_text("test", EMBEDDED_CONFIG, std::iter::empty()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        super::tests::small_demo(&plain, d);
        let offers: Vec<Value> = std::fs::read_to_string(d.join("offers.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let at = |o: &Value| {
            propensity_engine::timestamp::parse_rfc3339(o["event_time"].as_str().unwrap())
                .unwrap()
                .epoch_ms
        };
        let lines: Vec<String> = offers
            .iter()
            .map(|o| {
                serde_json::json!({
                    "offer_id": o["offer_id"],
                    "visitor_id": o["visitor_id"],
                    "action_map": o["action_map"],
                    "status": "declined",
                    "timestamp": propensity_engine::timestamp::format_rfc3339_ms(at(o) + 1000),
                })
                .to_string()
            })
            .collect();
        let feedback = d.join("feedback.jsonl");
        std::fs::write(&feedback, lines.join("\n")).unwrap();
        let strict = Config::from_text(
            "test",
            &EMBEDDED_CONFIG.replace(
                "\nholdout_fraction = 0.0",
                "\nholdout_fraction = 0.0\ncontact_policy = { max_declines = 1, suppress_days = 1 }",
            ),
            std::iter::empty(),
        )
        .unwrap();
        let eval = d.join("eval-traffic");
        let (offers_out, decisions_out, summary_out) =
            (d.join("o2.jsonl"), d.join("d2.jsonl"), d.join("s2.json"));
        let summary = replay_files(
            &strict,
            &ReplayArgs {
                events: &eval.join("events.jsonl"),
                consent: &eval.join("consent.jsonl"),
                models: &d.join("models"),
                offers_out: &offers_out,
                scores_out: None,
                decisions_out: Some(&decisions_out),
                conversions_out: None,
                feedback: Some(&feedback),
                dead_letters_out: None,
                summary_json: Some(&summary_out),
                adaptive_out: None,
            },
            None,
            &Progress::hidden(),
        )
        .unwrap();
        let f = &summary.feedback;
        assert!(f.reconciles, "{f:?}");
        assert_eq!(f.consumed, offers.len() as u64);
        assert!(f.applied > offers.len() as u64 / 2, "{f:?}");
        let suppressed: u64 = summary.suppressed_by_contact_policy.values().sum();
        assert!(suppressed > 0, "{summary:?}");
        assert!(
            summary.offers < offers.len() as u64,
            "{} vs {}",
            summary.offers,
            offers.len()
        );
        eprintln!(
            "offers {} → {} with feedback; {suppressed} contact-policy decisions; {} of {} feedback applied",
            offers.len(),
            summary.offers,
            f.applied,
            f.consumed
        );
        let args = ReportArgs {
            decisions: vec![decisions_out],
            conversions: Vec::new(),
            feedback: vec![feedback],
            from_kafka: false,
            chart: None,
            json: None,
        };
        let mut printed = Vec::new();
        run(&strict, &args, &mut printed).unwrap();
        let printed = String::from_utf8(printed).unwrap();
        assert!(printed.contains("contact_policy"), "{printed}");
        let map = offers[0]["action_map"].as_str().unwrap();
        let declined = offers.iter().filter(|o| o["action_map"] == map).count();
        assert!(
            printed.contains(&format!("feedback {map}: "))
                && printed.contains(&format!("declined={declined}")),
            "{printed}"
        );
    }
}
