//! Tests of the rendered report: PNGs that decode with the promised size and real content,
//! SVG charts with their titles, axis labels and legends, and `report.html` with its parts —
//! the warning shown for a miscalibrated evaluation and only then.

use super::*;
use crate::metrics::{evaluate, roc_curve};

/// A deterministic evaluation of `n` rows where the true rate is `truth(p)` for a row scored
/// `p`: scores spread over [0, 1), labels set so each score bin's observed rate is exact.
fn evaluation(name: &str, n: usize, truth: impl Fn(f64) -> f64) -> OutcomeEvaluation {
    let mut probs = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    // Skewed towards low scores, like real traffic; within each group of 20 rows of one
    // score, round(20 × truth) are positive.
    for i in 0..n / 20 {
        let u = (i as f64 + 0.5) / (n / 20) as f64;
        let p = u * u;
        let positives = (20.0 * truth(p)).round() as usize;
        for k in 0..20 {
            probs.push(p);
            labels.push(k < positives);
        }
    }
    OutcomeEvaluation {
        outcome: name.to_owned(),
        model_version: "test".to_owned(),
        per_event: evaluate(&probs, &labels, 10),
        per_session: evaluate(&probs, &labels, 10),
        roc: roc_curve(&probs, &labels),
        scores: score_histogram(&probs, &labels, SCORE_HISTOGRAM_BINS),
        gains: gains_by_decile(&probs, &labels),
        drift: None,
    }
}

fn calibrated() -> Vec<OutcomeEvaluation> {
    vec![
        evaluation("purchase", 20_000, |p| p),
        evaluation("application_complete", 10_000, |p| p),
    ]
}

/// The second outcome observes far less than it predicts above 0.5 (as `webinar_signup`
/// once did: predicted 0.64–0.84, observed 0.43–0.47).
fn miscalibrated() -> Vec<OutcomeEvaluation> {
    vec![
        evaluation("purchase", 20_000, |p| p),
        evaluation("webinar_signup", 20_000, |p| if p > 0.5 { 0.45 } else { p }),
    ]
}

fn business() -> BusinessView {
    BusinessView {
        sessions: 2000,
        maps: vec![MapBusiness {
            action_map: "checkout-assist-chat".into(),
            action: "chat".into(),
            outcome: "purchase".into(),
            offers: 150,
            offered_sessions: 140,
            offered_converted: 70,
            not_offered_sessions: 1800,
            not_offered_converted: 36,
        }],
    }
}

/// Decodes a PNG: (width, height, RGB bytes), asserting 8-bit RGB.
fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn pixels_near(rgb: &[u8], (r, g, b): (u8, u8, u8)) -> usize {
    rgb.chunks_exact(3)
        .filter(|p| p[0].abs_diff(r) <= 8 && p[1].abs_diff(g) <= 8 && p[2].abs_diff(b) <= 8)
        .count()
}

#[test]
fn every_chart_is_a_png_of_its_size_with_curves_and_text() {
    let outcomes = calibrated();
    for kind in ChartKind::ALL {
        let (w, h, rgb) = decode(&chart_png(kind, &outcomes).expect("chart"));
        assert_eq!((w, h), kind.size(outcomes.len()), "{kind:?}");
        let total = (w * h) as usize;
        let white = pixels_near(&rgb, (255, 255, 255));
        assert!(
            white < total * 97 / 100,
            "{kind:?}: blank ({white} of {total} white)"
        );
        assert!(
            white > total / 3,
            "{kind:?}: no background ({white} of {total} white)"
        );
        // Dark pixels in the top band: the title was drawn (text needs the font).
        let title_band = &rgb[..(w as usize * 3 * 34)];
        let dark = title_band
            .chunks_exact(3)
            .filter(|p| p.iter().all(|&c| c < 90))
            .count();
        assert!(dark > 100, "{kind:?}: no title text ({dark} dark pixels)");
        if kind != ChartKind::Scores {
            // Scores are coloured by class, the others by outcome.
            for (i, &(r, g, b)) in PALETTE.iter().enumerate().take(outcomes.len()) {
                // Calibration circles are drawn at 55 % opacity on white.
                let colour = if kind == ChartKind::Calibration {
                    let blend = |c: u8| (0.55 * f64::from(c) + 0.45 * 255.0).round() as u8;
                    (blend(r), blend(g), blend(b))
                } else {
                    (r, g, b)
                };
                let n = pixels_near(&rgb, colour);
                assert!(n > 50, "{kind:?}: outcome {i}'s colour has {n} pixels");
            }
        }
    }
}

#[test]
fn calibration_circles_grow_with_the_rows_in_the_bin() {
    // One outcome: count its colour's pixels with many rows in the top bins vs few.
    let many = vec![evaluation("x", 20_000, |p| p)];
    let few = {
        let mut e = evaluation("x", 20_000, |p| p);
        for b in &mut e.per_event.calibration {
            if b.lower >= 0.5 {
                b.count = 3;
            }
        }
        vec![e]
    };
    let area = |o: &[OutcomeEvaluation]| {
        let (_, _, rgb) = decode(&chart_png(ChartKind::Calibration, o).expect("chart"));
        rgb.len() - 3 * pixels_near(&rgb, (255, 255, 255))
    };
    assert!(
        area(&many) > area(&few) + 500,
        "{} vs {}",
        area(&many),
        area(&few)
    );
}

#[test]
fn svg_charts_carry_titles_axis_labels_ticks_and_legends() {
    let outcomes = calibrated();
    let svg = |k| chart_svg(k, &outcomes).expect("chart");
    let roc = svg(ChartKind::Roc);
    for needle in [
        ChartKind::Roc.title(),
        "False positive rate",
        "True positive rate",
        "chance (AUC 0.500)",
        "0.5",
    ] {
        assert!(roc.contains(needle), "ROC lacks {needle:?}");
    }
    for o in &outcomes {
        let label = format!("{}: AUC {:.3}", o.outcome, o.per_event.auc.expect("auc"));
        assert!(roc.contains(&label), "ROC legend lacks {label:?}");
    }
    let cal = svg(ChartKind::Calibration);
    for needle in [
        ChartKind::Calibration.title(),
        "Mean predicted probability",
        "Observed rate",
        "ideal: observed = predicted",
        "purchase: ECE",
        "application_complete: ECE",
    ] {
        assert!(cal.contains(needle), "calibration lacks {needle:?}");
    }
    let first_bin = &outcomes[0].per_event.calibration[0];
    assert!(
        cal.contains(&format!("n={}", first_bin.count)),
        "bin counts not shown"
    );
    let scores = svg(ChartKind::Scores);
    for needle in [
        ChartKind::Scores.title(),
        "Predicted probability",
        "did not convert (n=",
        "converted (n=",
    ] {
        assert!(scores.contains(needle), "scores lacks {needle:?}");
    }
    let gains = svg(ChartKind::Gains);
    for needle in [
        ChartKind::Gains.title(),
        "Converting events captured",
        "random targeting",
        "purchase: top 10% holds",
        "50%",
    ] {
        assert!(gains.contains(needle), "gains lacks {needle:?}");
    }
}

#[test]
fn html_report_is_self_contained_with_charts_tables_and_glossary() {
    let outcomes = calibrated();
    let b = business();
    let html = report_html(&ReportInput {
        outcomes: &outcomes,
        business: Some(&b),
    })
    .expect("html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), ChartKind::ALL.len());
    assert_eq!(html.matches("</svg>").count(), ChartKind::ALL.len());
    for kind in ChartKind::ALL {
        assert!(html.contains(&format!("id=\"chart-{}\"", kind.file_stem())));
        assert!(html.contains(kind.title()), "{kind:?} title");
    }
    // Nothing loaded from elsewhere.
    for external in [
        "<script", "<link", "<img", "src=", "url(", "http://", "https://",
    ] {
        let allowed = external == "http://"
            && html.matches(external).count()
                == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
        assert!(
            !html.contains(external) || allowed,
            "report loads {external:?}"
        );
    }
    assert!(html.contains("id=\"metrics\""));
    for o in &outcomes {
        assert!(html.contains(&format!("<td>{}</td>", o.outcome)));
    }
    assert!(html.contains("id=\"glossary\""));
    for (term, meaning) in GLOSSARY {
        assert!(
            html.contains(&format!("<dt>{}</dt>", term)),
            "glossary lacks {term}"
        );
        assert!(html.contains(meaning.split(':').next().unwrap_or(meaning)));
    }
    assert!(html.contains("id=\"business-table\""));
    assert!(html.contains("<td>checkout-assist-chat</td>"));
    assert!(html.contains("<td>75.0</td>"), "offers per 1,000 sessions");
    assert!(html.contains("<td>50.0%</td>") && html.contains("<td>2.0%</td>"));
    assert!(html.contains(&BUSINESS_CAVEAT.replace('\'', "&#39;")));
    assert!(html.contains("id=\"lift-table\""));
    assert!(
        !html.contains("calibration-warning"),
        "a calibrated evaluation must not warn"
    );
}

#[test]
fn html_report_warns_about_a_miscalibrated_outcome() {
    let outcomes = miscalibrated();
    let html = report_html(&ReportInput {
        outcomes: &outcomes,
        business: None,
    })
    .expect("html");
    let start = html
        .find("id=\"calibration-warning\"")
        .expect("warning block");
    let block = &html[start..start + html[start..].find("</div>").expect("end")];
    assert!(block.contains("webinar_signup is miscalibrated"), "{block}");
    assert!(!block.contains("purchase is"), "{block}");
    assert!(block.contains("observed 0.45"), "{block}");
    assert!(html.contains("<span class=\"bad\">off</span>"));
    assert!(html.contains("No offers were simulated"));
    assert_eq!(calibration_warnings(&outcomes).len(), 1);
    assert!(calibration_warnings(&calibrated()).is_empty());
}

#[test]
fn names_from_config_are_escaped() {
    let outcomes = vec![evaluation("a<b>&\"c\"", 2_000, |p| p)];
    let html = report_html(&ReportInput {
        outcomes: &outcomes,
        business: None,
    })
    .expect("html");
    assert!(html.contains("<td>a&lt;b&gt;&amp;&quot;c&quot;</td>"));
    assert!(!html.contains("<td>a<b>"));
}

#[test]
fn no_outcomes_still_draws_and_renders() {
    for kind in ChartKind::ALL {
        let (w, h, _) = decode(&chart_png(kind, &[]).expect("chart"));
        assert_eq!((w, h), kind.size(0));
    }
    let html = report_html(&ReportInput {
        outcomes: &[],
        business: None,
    })
    .expect("html");
    assert!(html.contains("id=\"glossary\""));
}
