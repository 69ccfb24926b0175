//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no external files)
//! with the calibration warnings first, then the per-outcome table, the charts, lift by
//! decile, the business view and the glossary.
//!
//! Every piece of text that comes from configuration (outcome and map names) is escaped, so
//! a name can never break the page.

use std::fmt::Write as _;

use super::charts::{chart_svg, ChartKind};
use super::summaries::CalibrationCheck;
use super::{calibration_rule, ReportInput, BUSINESS_CAVEAT, GLOSSARY};
use crate::error::TrainingError;

const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;max-width:1420px;margin:24px auto;padding:0 16px;color:#222}\
h1{font-size:26px}h2{font-size:20px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}\
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}\
.warning{border:2px solid #d62728;background:#fdecea;padding:8px 16px;margin:16px 0}\
.warning strong{color:#d62728}.ok{color:#2ca02c}.bad{color:#d62728;font-weight:bold}\
figure{margin:16px 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
figcaption{color:#555;font-size:14px;max-width:900px}dt{font-weight:bold;margin-top:8px}dd{margin-left:16px}\
.note{color:#555;font-size:14px;max-width:900px}";

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "n/a".to_owned()
    }
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        "n/a".to_owned()
    }
}

fn caption(kind: ChartKind) -> &'static str {
    match kind {
        ChartKind::Roc => "Each curve shows how many converting events a model flags (up) for how many non-converting ones (right) as its threshold drops. Further up and left is better; the dashed diagonal is guessing.",
        ChartKind::Calibration => "Events grouped by predicted probability into ten bins; each circle is one bin at its mean prediction (x) and the rate that actually converted (y). Circle area is the number of events, so small bins look small; red rings mark bins off the diagonal by more than chance explains.",
        ChartKind::Scores => "How each class's events are spread over the predicted probability (log scale, so small shares stay visible). A good model keeps the orange bars (converted) to the right of the grey-blue ones.",
        ChartKind::Gains => "Targeting the highest-scored X% of events (x) finds this share of all converting events (y); the dashed diagonal is random targeting. The legend gives the share and lift in the top 10%.",
    }
}

/// Renders the report page.
pub fn report_html(input: &ReportInput<'_>) -> Result<String, TrainingError> {
    let outcomes = input.outcomes;
    let mut h = String::new();
    // `write!` into a String cannot fail; its result is ignored throughout.
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Propensity evaluation report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>Propensity evaluation report</h1>\n"
    );
    let events: usize = outcomes
        .iter()
        .map(|o| o.per_event.count)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        h,
        "<p class=\"note\">{} outcome model(s) scored on held-out traffic by the production scoring path; up to {events} scored events per outcome. Terms are explained in the <a href=\"#glossary\">glossary</a>.</p>",
        outcomes.len()
    );

    // Warnings first: a miscalibrated model must not be missed by someone skimming.
    let checks: Vec<CalibrationCheck> = outcomes
        .iter()
        .map(|o| CalibrationCheck::of(&o.per_event))
        .collect();
    let warnings: Vec<String> = outcomes
        .iter()
        .zip(&checks)
        .filter_map(|(o, c)| c.warning(&o.outcome))
        .collect();
    if !warnings.is_empty() {
        let _ = writeln!(
            h,
            "<div class=\"warning\" id=\"calibration-warning\"><strong>Calibration warning</strong><ul>"
        );
        for w in &warnings {
            let _ = writeln!(h, "<li>{}</li>", escape(w));
        }
        let _ = writeln!(
            h,
            "</ul><p class=\"note\">Rule: {}.</p></div>",
            escape(&calibration_rule())
        );
    }

    let _ = writeln!(h, "<h2 id=\"quality\">Model quality per outcome</h2>");
    let _ = writeln!(
        h,
        "<table id=\"metrics\"><thead><tr><th>outcome</th><th>model version</th><th>scored events</th><th>sessions</th><th>base rate (events)</th><th>AUC (events)</th><th>AUC (sessions)</th><th>log loss</th><th>Brier</th><th>ECE</th><th>calibration</th></tr></thead><tbody>"
    );
    for (o, c) in outcomes.iter().zip(&checks) {
        let verdict = if c.is_off() {
            "<span class=\"bad\">off</span>"
        } else {
            "<span class=\"ok\">ok</span>"
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{verdict}</td></tr>",
            escape(&o.outcome),
            escape(&o.model_version),
            o.per_event.count,
            o.per_session.count,
            pct(o.per_event.base_rate),
            num(o.per_event.auc.unwrap_or(f64::NAN), 3),
            num(o.per_session.auc.unwrap_or(f64::NAN), 3),
            num(o.per_event.log_loss, 4),
            num(o.per_event.brier, 4),
            num(c.ece, 3),
        );
    }
    let _ = writeln!(h, "</tbody></table>");

    let _ = writeln!(h, "<h2 id=\"charts\">Charts</h2>");
    for kind in ChartKind::ALL {
        let svg = chart_svg(kind, outcomes)?;
        let _ = writeln!(
            h,
            "<figure id=\"chart-{}\">\n{}\n<figcaption><strong>{}.</strong> {}</figcaption>\n</figure>",
            kind.file_stem(),
            strip_xml_declaration(&svg),
            escape(kind.title()),
            caption(kind)
        );
    }

    let _ = writeln!(h, "<h2 id=\"lift\">Lift by decile</h2>");
    let _ = write!(h, "<table id=\"lift-table\"><thead><tr><th>outcome</th>");
    for d in 1..=10 {
        let _ = write!(h, "<th>decile {d}</th>");
    }
    let _ = writeln!(h, "</tr></thead><tbody>");
    for o in outcomes {
        let _ = write!(h, "<tr><td>{}</td>", escape(&o.outcome));
        for g in &o.gains {
            let _ = write!(h, "<td>{:.1}×</td>", g.lift);
        }
        for _ in o.gains.len()..10 {
            let _ = write!(h, "<td>n/a</td>");
        }
        let _ = writeln!(h, "</tr>");
    }
    let _ = writeln!(
        h,
        "</tbody></table><p class=\"note\">Decile 1 is the tenth of events with the highest scores.</p>"
    );

    let _ = writeln!(h, "<h2 id=\"business\">Business view: offers</h2>");
    match input.business {
        None => {
            let _ = writeln!(
                h,
                "<p class=\"note\">No offers were simulated for this report.</p>"
            );
        }
        Some(b) => {
            let _ = writeln!(
                h,
                "<p class=\"note\">The evaluation traffic replayed through the engine with these models and the configured action maps: {} scored sessions.</p>",
                b.sessions
            );
            let _ = writeln!(
                h,
                "<table id=\"business-table\"><thead><tr><th>action map</th><th>action</th><th>outcome</th><th>offers</th><th>offers per 1,000 sessions</th><th>offered sessions</th><th>offered: converted</th><th>offered: conversion rate</th><th>not offered sessions</th><th>not offered: converted</th><th>not offered: conversion rate</th></tr></thead><tbody>"
            );
            for m in &b.maps {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&m.action_map),
                    escape(&m.action),
                    escape(&m.outcome),
                    m.offers,
                    m.offers_per_1000_sessions(b.sessions),
                    m.offered_sessions,
                    m.offered_converted,
                    pct(m.offered_rate()),
                    m.not_offered_sessions,
                    m.not_offered_converted,
                    pct(m.not_offered_rate()),
                );
            }
            let _ = writeln!(
                h,
                "</tbody></table><p class=\"note\">{}</p>",
                escape(BUSINESS_CAVEAT)
            );
        }
    }

    let _ = writeln!(h, "<h2 id=\"glossary\">Glossary</h2>\n<dl>");
    for (term, meaning) in GLOSSARY {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", escape(term), escape(meaning));
    }
    let _ = writeln!(
        h,
        "<dt>calibration warning</dt><dd>{}</dd>\n</dl>\n</body>\n</html>",
        escape(&calibration_rule())
    );
    Ok(h)
}

/// Inline SVG must not carry an XML declaration.
fn strip_xml_declaration(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest.find("?>").map_or(svg, |i| rest[i + 2..].trim_start()),
        None => svg,
    }
}
