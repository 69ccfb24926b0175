//! The CLI side of the evaluation report: writing its files (`evaluation.json`, one PNG per
//! chart, `report.html`), printing its terms, warnings and business view, and the business
//! view's data. For that, the evaluation traffic runs through an engine that has the models,
//! so the action maps fire as they would in production, and [`OfferTally`] — an
//! [`EngineSink`] that forwards everything to the [`ExampleCollector`] — counts offers per
//! action map and which sessions were offered, then which of those converted.
//!
//! Matching an offer to its session: offers carry the session id, but outcomes are reported
//! by session serial. Within one event the engine reports `achieved`, then one `example` per
//! open outcome (with the serial), then at most one offer — and an offer is only made for an
//! outcome that is still open, which always had its `example` reported just before. So the
//! serial of the last `example` is the offer's session.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use propensity_engine::drift::ModelDriftCounts;
use propensity_engine::{DeadLetter, Engine, EngineConfig, EngineSink, ModelSet, Offer};
use propensity_training::report::{
    calibration_rule, calibration_warnings, chart_png, report_html, BusinessView, ChartKind,
    MapBusiness, ReportInput, BUSINESS_CAVEAT, GLOSSARY,
};
use propensity_training::{ExampleCollector, OutcomeEvaluation};

use crate::config_file::Config;
use crate::jsonl::read_inputs;
use crate::offline::replay_inputs;
use crate::progress::Progress;

/// Forwards to an [`ExampleCollector`] and tallies offers.
pub struct OfferTally<'a> {
    collector: &'a mut ExampleCollector,
    /// Action map name → index in the config.
    map_index: HashMap<String, usize>,
    /// Per action map: offers made.
    offers: Vec<u64>,
    /// Per action map: sessions (serials) offered at least once.
    offered: Vec<HashSet<u64>>,
    /// Per outcome: sessions scored with the outcome open.
    eligible: Vec<HashSet<u64>>,
    /// Serial of the last `example` reported: the session of an offer that follows.
    last_serial: Option<u64>,
}

impl<'a> OfferTally<'a> {
    /// A tally for `config`'s action maps that forwards to `collector`.
    pub fn new(config: &EngineConfig, collector: &'a mut ExampleCollector) -> Self {
        Self {
            collector,
            map_index: config
                .action_maps
                .iter()
                .enumerate()
                .map(|(i, m)| (m.name.clone(), i))
                .collect(),
            offers: vec![0; config.action_maps.len()],
            offered: vec![HashSet::new(); config.action_maps.len()],
            eligible: vec![HashSet::new(); config.outcomes.len()],
            last_serial: None,
        }
    }

    /// The view: per action map, offers and conversions of offered and not-offered sessions.
    pub fn view(&self, config: &EngineConfig) -> BusinessView {
        let achieved = &self.collector.achieved;
        let sessions: HashSet<u64> = self
            .eligible
            .iter()
            .flatten()
            .copied()
            .chain(achieved.iter().map(|&(s, _)| s))
            .collect();
        let maps = config
            .action_maps
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let offered = &self.offered[i];
                let converted = |s: &&u64| achieved.contains(&(**s, m.outcome));
                let not_offered: Vec<u64> = self.eligible[m.outcome]
                    .iter()
                    .filter(|s| !offered.contains(s))
                    .copied()
                    .collect();
                MapBusiness {
                    action_map: m.name.clone(),
                    action: m.action.type_name().to_owned(),
                    outcome: config.outcomes[m.outcome].name.clone(),
                    offers: self.offers[i],
                    offered_sessions: offered.len() as u64,
                    offered_converted: offered.iter().filter(converted).count() as u64,
                    not_offered_sessions: not_offered.len() as u64,
                    not_offered_converted: not_offered.iter().filter(converted).count() as u64,
                }
            })
            .collect();
        BusinessView {
            sessions: sessions.len() as u64,
            maps,
        }
    }
}

impl EngineSink for OfferTally<'_> {
    fn offer(&mut self, offer: Offer) {
        if let Some(&i) = self.map_index.get(&offer.action_map) {
            self.offers[i] += 1;
            if let Some(serial) = self.last_serial {
                self.offered[i].insert(serial);
            }
        }
        self.collector.offer(offer);
    }

    fn dead_letter(&mut self, dead_letter: DeadLetter<'_>) {
        self.collector.dead_letter(dead_letter);
    }

    fn wants_scores(&self) -> bool {
        self.collector.wants_scores()
    }

    fn probability(&mut self, outcome: usize, probability: f64) {
        self.collector.probability(outcome, probability);
    }

    fn state_changed(&mut self, visitor_id: &str) {
        self.collector.state_changed(visitor_id);
    }

    fn wants_examples(&self) -> bool {
        // The serials come with examples, so the tally needs them even if the collector
        // did not.
        true
    }

    fn example(&mut self, session_serial: u64, outcome: usize, features: &[f32]) {
        self.last_serial = Some(session_serial);
        self.eligible[outcome].insert(session_serial);
        if self.collector.wants_examples() {
            self.collector.example(session_serial, outcome, features);
        }
    }

    fn achieved(&mut self, session_serial: u64, outcome: usize) {
        self.collector.achieved(session_serial, outcome);
    }
}

/// Like `offline::collect_examples`, but the engine has `models`, so offers are made and
/// tallied: the examples are the same (they do not depend on models), plus the business view.
pub fn collect_examples_and_offers(
    config: &Config,
    events: &Path,
    consent: &Path,
    models: Arc<ModelSet>,
    progress: &Progress,
) -> Result<(
    ExampleCollector,
    BusinessView,
    Vec<Option<ModelDriftCounts>>,
)> {
    let (ev, co) = read_inputs(events, consent, progress)?;
    let mut engine = Engine::new(config.engine.clone(), models);
    let mut collector =
        ExampleCollector::new(config.engine.outcomes.len(), config.engine.features.dim());
    let mut tally = OfferTally::new(&config.engine, &mut collector);
    replay_inputs(
        &mut engine,
        (&ev, &co),
        None,
        &mut tally,
        progress,
        "collecting examples and offers",
    );
    let view = tally.view(&config.engine);
    Ok((collector, view, engine.drift_counts().to_vec()))
}

/// Writes `evaluation.json`, one PNG per chart and `report.html` into `dir`, returning the
/// paths in that order.
pub fn write_report_files(
    dir: &Path,
    outcomes: &[OutcomeEvaluation],
    business: Option<&BusinessView>,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    let json = dir.join("evaluation.json");
    let doc = serde_json::json!({ "outcomes": outcomes, "business": business });
    std::fs::write(&json, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    files.push(json);
    for kind in ChartKind::ALL {
        let path = dir.join(format!("{}.png", kind.file_stem()));
        let png =
            chart_png(kind, outcomes).with_context(|| format!("cannot draw {}", path.display()))?;
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
        files.push(path);
    }
    let html = dir.join("report.html");
    let page = report_html(&ReportInput { outcomes, business })
        .with_context(|| format!("cannot render {}", html.display()))?;
    std::fs::write(&html, page).with_context(|| format!("cannot write {}", html.display()))?;
    files.push(html);
    Ok(files)
}

/// Prints the calibration warnings (if any), the business view (if any) and one line per
/// term, after `evaluate`'s table.
pub fn print_report_notes(
    outcomes: &[OutcomeEvaluation],
    business: Option<&BusinessView>,
    w: &mut impl Write,
) -> Result<()> {
    for warning in calibration_warnings(outcomes) {
        writeln!(w, "WARNING: {warning}")?;
    }
    if let Some(b) = business {
        writeln!(
            w,
            "offers on this traffic ({} scored sessions):",
            b.sessions
        )?;
        writeln!(
            w,
            "  {:<24} {:<14} {:<22} {:>7} {:>9} {:>22} {:>22}",
            "action map",
            "action",
            "outcome",
            "offers",
            "per 1,000",
            "offered: converted",
            "not offered: converted"
        )?;
        for m in &b.maps {
            writeln!(
                w,
                "  {:<24} {:<14} {:<22} {:>7} {:>9.1} {:>22} {:>22}",
                m.action_map,
                m.action,
                m.outcome,
                m.offers,
                m.offers_per_1000_sessions(b.sessions),
                share(m.offered_converted, m.offered_sessions),
                share(m.not_offered_converted, m.not_offered_sessions),
            )?;
        }
        writeln!(w, "  {BUSINESS_CAVEAT}")?;
    }
    writeln!(w, "terms:")?;
    for (term, meaning) in GLOSSARY {
        writeln!(w, "  {term}: {meaning}")?;
    }
    writeln!(w, "  calibration warning: {}", calibration_rule())?;
    Ok(())
}

/// `12/40 (30.0%)`.
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0/0".to_owned()
    } else {
        format!(
            "{part}/{whole} ({:.1}%)",
            part as f64 * 100.0 / whole as f64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_file::EMBEDDED_CONFIG;

    fn config() -> Config {
        Config::from_text("embedded", EMBEDDED_CONFIG, std::iter::empty()).unwrap()
    }

    /// Width and height from a PNG's IHDR, after checking the signature (full decoding is
    /// tested in the training crate; here: the files on disk are those PNGs).
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    /// The demo writes every chart and a self-contained report.html; the business view's
    /// offers are exactly the replay's; the engine with models collects the same examples as
    /// the engine without; the printed report explains its terms.
    #[test]
    fn demo_report_has_every_chart_and_offers_match_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let config = config();
        let mut text = Vec::new();
        crate::demo::run_demo(
            &config,
            dir.path(),
            &crate::demo::DemoSize {
                train_visitors: 800,
                eval_visitors: 300,
            },
            &mut text,
            &Progress::hidden(),
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        for (term, _) in GLOSSARY {
            assert!(
                text.contains(&format!("  {term}: ")),
                "no line for {term}:\n{text}"
            );
        }
        assert!(text.contains("offers on this traffic"), "{text}");
        // Evaluation traffic from the training traffic's generator (another
        // seed, other months): no drift, and the time features, which a
        // window of other months would always show shifted, are not
        // monitored.
        for o in &config.engine.outcomes {
            let head = format!("drift {}: score PSI ", o.name);
            let line = text
                .lines()
                .find(|l| l.starts_with(&head))
                .unwrap_or_else(|| panic!("no drift line for {}:\n{text}", o.name));
            assert!(line.contains("(stable)"), "{line}");
            assert!(!line.contains("time."), "{line}");
        }

        let report = dir.path().join("report");
        let n = config.engine.outcomes.len();
        for kind in ChartKind::ALL {
            let bytes = std::fs::read(report.join(format!("{}.png", kind.file_stem()))).unwrap();
            assert_eq!(png_size(&bytes), kind.size(n), "{kind:?}");
        }
        assert!(!report.join("legend.txt").exists());
        let html = std::fs::read_to_string(report.join("report.html")).unwrap();
        assert_eq!(html.matches("<svg").count(), ChartKind::ALL.len());
        assert!(!html.contains("<script") && !html.contains("<img"));
        for m in &config.engine.action_maps {
            assert!(html.contains(&format!("<td>{}</td>", m.name)), "{}", m.name);
        }

        // Offers per map in the report = offers per map in the replay of the same traffic.
        let eval: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(report.join("evaluation.json")).unwrap())
                .unwrap();
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        let maps = eval["business"]["maps"].as_array().unwrap();
        let total: u64 = maps.iter().map(|m| m["offers"].as_u64().unwrap()).sum();
        assert_eq!(total, summary["offers"].as_u64().unwrap(), "{summary}");
        assert!(total > 0);
        for m in maps {
            assert!(m["offered_sessions"].as_u64() <= m["offers"].as_u64());
            assert!(m["offered_converted"].as_u64() <= m["offered_sessions"].as_u64());
        }

        // With models or without, the same examples and labels.
        let events = dir.path().join("eval-traffic/events.jsonl");
        let consent = dir.path().join("eval-traffic/consent.jsonl");
        let served = crate::model_files::load_models(&dir.path().join("models"), &config).unwrap();
        let (with, view, _) = collect_examples_and_offers(
            &served.config,
            &events,
            &consent,
            served.models,
            &Progress::hidden(),
        )
        .unwrap();
        let without = crate::offline::collect_examples(
            &served.config,
            &events,
            &consent,
            crate::offline::VocabularySource::Keep,
            &Progress::hidden(),
        )
        .unwrap()
        .examples;
        assert_eq!(with.achieved, without.achieved);
        for o in 0..n {
            assert_eq!(with.outcomes[o].rows, without.outcomes[o].rows);
            assert_eq!(with.outcomes[o].sessions, without.outcomes[o].sessions);
        }
        assert_eq!(view.maps.iter().map(|m| m.offers).sum::<u64>(), total);
    }
}
