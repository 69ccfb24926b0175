//! The report's charts, drawn with `plotters`: ROC, calibration (reliability), score
//! distribution by class, and cumulative gains by decile. (Why one file of this size: the
//! four charts share the frame, axes, legend and font code that is most of its length.) Each chart is drawn once, generic
//! over the backend, and rendered either to PNG (bitmap backend into an RGB buffer, encoded
//! with the `png` crate) or to SVG text for inline use in `report.html`.
//!
//! Layout choices, and why:
//! * ROC and gains put every outcome on one chart: the curves rarely cross and comparing
//!   models is the point, and AUC / top-decile lift go into the legend.
//! * Calibration and score distribution are small multiples, one panel per outcome: their
//!   marks (circles sized by rows, paired bars) would hide each other on one chart.
//! * Text uses DejaVu Sans, compiled into the binary and registered with plotters' `ab_glyph`
//!   font table, so a machine without system fonts draws the same labels. SVG text names the
//!   `sans-serif` family, which the browser resolves.

use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::ComposedElement;
use plotters::prelude::*;

use super::summaries::{bin_is_off, expected_calibration_error, ScoreHistogram};
use crate::error::TrainingError;
use crate::evaluation::OutcomeEvaluation;

/// Curve colors, used in outcome order and cycled: the Tableau-10 palette without its grey
/// (reserved for reference lines) and its red (reserved for warnings).
pub const PALETTE: [(u8, u8, u8); 8] = [
    (31, 119, 180),  // blue
    (255, 127, 14),  // orange
    (44, 160, 44),   // green
    (148, 103, 189), // purple
    (140, 86, 75),   // brown
    (227, 119, 194), // pink
    (188, 189, 34),  // olive
    (23, 190, 207),  // cyan
];

pub(super) const REFERENCE: RGBColor = RGBColor(110, 110, 110);
pub(super) const WARNING: RGBColor = RGBColor(214, 39, 40);
const NEGATIVE_CLASS: RGBColor = RGBColor(120, 144, 170);
const POSITIVE_CLASS: RGBColor = RGBColor(255, 127, 14);
pub(super) const FONT: &str = "sans-serif";
/// The vendored font (see `assets/DejaVuSans-LICENSE.txt`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Side of one small-multiple panel, in pixels.
const PANEL: u32 = 460;
/// Panels per row in small multiples.
const PANELS_PER_ROW: usize = 3;

/// The color of outcome `index`.
pub fn outcome_color(index: usize) -> RGBColor {
    let (r, g, b) = PALETTE[index % PALETTE.len()];
    RGBColor(r, g, b)
}

/// The charts in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    /// ROC curves of all outcomes, AUC in the legend, the chance diagonal.
    Roc,
    /// One reliability panel per outcome: circles sized by rows, the ideal diagonal.
    Calibration,
    /// One panel per outcome: share of each class's events per score bin.
    Scores,
    /// Cumulative gains of all outcomes by decile, with random targeting for reference.
    Gains,
}

impl ChartKind {
    /// Every chart, in report order.
    pub const ALL: [ChartKind; 4] = [
        ChartKind::Roc,
        ChartKind::Calibration,
        ChartKind::Scores,
        ChartKind::Gains,
    ];

    /// File name without extension (`roc` → `roc.png`).
    pub fn file_stem(self) -> &'static str {
        match self {
            ChartKind::Roc => "roc",
            ChartKind::Calibration => "calibration",
            ChartKind::Scores => "scores",
            ChartKind::Gains => "gains",
        }
    }

    /// The chart's title, as drawn on it.
    pub fn title(self) -> &'static str {
        match self {
            ChartKind::Roc => "ROC curve per outcome (every scored event)",
            ChartKind::Calibration => "Calibration: predicted vs observed (every scored event)",
            ChartKind::Scores => "Score distribution by class (every scored event)",
            ChartKind::Gains => "Cumulative gains by decile (every scored event)",
        }
    }

    /// Pixel size for `outcomes` outcomes.
    pub fn size(self, outcomes: usize) -> (u32, u32) {
        match self {
            ChartKind::Roc | ChartKind::Gains => (760, 640),
            ChartKind::Calibration | ChartKind::Scores => {
                let n = outcomes.max(1);
                let cols = n.min(PANELS_PER_ROW) as u32;
                let rows = n.div_ceil(PANELS_PER_ROW) as u32;
                (cols * PANEL, rows * PANEL + 50)
            }
        }
    }
}

pub(super) fn register_font() -> Result<(), TrainingError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(TrainingError::Chart(
            "the vendored DejaVu Sans font did not parse".into(),
        ))
    }
}

pub(super) fn chart_err<E: std::error::Error + Send + Sync>(
    e: DrawingAreaErrorKind<E>,
) -> TrainingError {
    TrainingError::Chart(e.to_string())
}

/// Draws `kind` as an RGB PNG of [`ChartKind::size`].
pub fn chart_png(
    kind: ChartKind,
    outcomes: &[OutcomeEvaluation],
) -> Result<Vec<u8>, TrainingError> {
    register_font()?;
    let (w, h) = kind.size(outcomes.len());
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(kind, outcomes, &root).map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    encode_png(&rgb, w, h)
}

/// An RGB buffer of `w` × `h` pixels as PNG bytes.
pub(super) fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, TrainingError> {
    let png_err = |e: png::EncodingError| TrainingError::Png(e.to_string());
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

/// Draws `kind` as an SVG document (for inline use in HTML).
pub fn chart_svg(kind: ChartKind, outcomes: &[OutcomeEvaluation]) -> Result<String, TrainingError> {
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, kind.size(outcomes.len())).into_drawing_area();
        draw(kind, outcomes, &root).map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(
    kind: ChartKind,
    outcomes: &[OutcomeEvaluation],
    root: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    match kind {
        ChartKind::Roc => draw_roc(outcomes, root),
        ChartKind::Gains => draw_gains(outcomes, root),
        ChartKind::Calibration | ChartKind::Scores => {
            let title = root.titled(kind.title(), (FONT, 24))?;
            if outcomes.is_empty() {
                return no_data(&title);
            }
            let n = outcomes.len();
            let cols = n.min(PANELS_PER_ROW);
            let rows = n.div_ceil(PANELS_PER_ROW);
            let panels = title.split_evenly((rows, cols));
            for (i, (o, panel)) in outcomes.iter().zip(panels.iter()).enumerate() {
                if kind == ChartKind::Calibration {
                    draw_calibration_panel(o, i, panel)?;
                } else {
                    draw_scores_panel(o, panel)?;
                }
            }
            Ok(())
        }
    }
}

fn no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    area.draw(&Text::new(
        "no outcomes were evaluated",
        (40, 40),
        (FONT, 18),
    ))
}

fn two_decimals(v: &f64) -> String {
    format!("{v:.1}")
}

fn percent(v: &f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Keeps a curve's shape with far fewer points: a point is kept when it moved at least
/// `step` from the last kept one in either coordinate (the last point is always kept). A
/// per-event ROC has one point per distinct score, tens of thousands, which would make the
/// inline SVG megabytes long for no visible difference.
fn thin(points: &[(f64, f64)], step: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, &p) in points.iter().enumerate() {
        let keep = match out.last() {
            None => true,
            Some(&(x, y)) => {
                (p.0 - x).abs() >= step || (p.1 - y).abs() >= step || i + 1 == points.len()
            }
        };
        if keep {
            out.push(p);
        }
    }
    out
}

/// The legend key of a line: two strokes, with a gap when the line is dashed (always two, so
/// both kinds are one concrete element type).
type LineKey<DB> =
    ComposedElement<(i32, i32), DB, PathElement<(i32, i32)>, PathElement<(i32, i32)>>;

fn legend_line<DB: DrawingBackend>(
    color: RGBColor,
    dashed: bool,
) -> impl Fn((i32, i32)) -> LineKey<DB> {
    move |(x, y)| {
        let (gap, width) = if dashed { (5, 2) } else { (0, 3) };
        EmptyElement::at((x, y))
            + PathElement::new(vec![(0, 0), (7, 0)], color.stroke_width(width))
            + PathElement::new(vec![(7 + gap, 0), (19, 0)], color.stroke_width(width))
    }
}

/// The dashed y = x reference line (chance, random targeting or perfect
/// calibration), with its legend entry.
fn draw_diagonal<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    label: &str,
) -> DrawResult<DB> {
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            8,
            5,
            REFERENCE.stroke_width(2),
        ))?
        .label(label)
        .legend(legend_line(REFERENCE, true));
    Ok(())
}

/// The axes, reference diagonal and text of a chart on the unit square
/// (ROC and cumulative gains share everything but these).
struct UnitSquareChart {
    kind: ChartKind,
    tick_format: fn(&f64) -> String,
    x_desc: &'static str,
    y_desc: &'static str,
    reference: &'static str,
}

/// One outcome's curve on a [`UnitSquareChart`].
struct Curve {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    /// Mark every point but the first (the deciles of a gains curve).
    dots: bool,
}

fn draw_unit_square<DB: DrawingBackend>(
    spec: &UnitSquareChart,
    curves: Vec<Curve>,
    root: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let mut chart = ChartBuilder::on(root)
        .caption(spec.kind.title(), (FONT, 24))
        .margin(18)
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_labels(11)
        .y_labels(11)
        .x_label_formatter(&spec.tick_format)
        .y_label_formatter(&spec.tick_format)
        .x_desc(spec.x_desc)
        .y_desc(spec.y_desc)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    draw_diagonal(&mut chart, spec.reference)?;
    let empty = curves.is_empty();
    for curve in curves {
        let color = curve.color;
        if curve.dots {
            chart.draw_series(
                curve
                    .points
                    .iter()
                    .skip(1)
                    .map(|&p| Circle::new(p, 4, color.filled())),
            )?;
        }
        chart
            .draw_series(LineSeries::new(curve.points, color.stroke_width(3)))?
            .label(curve.label)
            .legend(legend_line(color, false));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .margin(12)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.92))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    if empty {
        no_data(root)?;
    }
    Ok(())
}

fn draw_roc<DB: DrawingBackend>(
    outcomes: &[OutcomeEvaluation],
    root: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let spec = UnitSquareChart {
        kind: ChartKind::Roc,
        tick_format: two_decimals,
        x_desc: "False positive rate: share of non-converting events flagged",
        y_desc: "True positive rate: share of converting events flagged",
        reference: "chance (AUC 0.500)",
    };
    let curves = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| Curve {
            label: match o.per_event.auc {
                Some(auc) => format!("{}: AUC {auc:.3}", o.outcome),
                None => format!("{}: AUC n/a (one class only)", o.outcome),
            },
            points: thin(&o.roc, 0.002),
            color: outcome_color(i),
            dots: false,
        })
        .collect();
    draw_unit_square(&spec, curves, root)
}

fn draw_gains<DB: DrawingBackend>(
    outcomes: &[OutcomeEvaluation],
    root: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let spec = UnitSquareChart {
        kind: ChartKind::Gains,
        tick_format: percent,
        x_desc: "Events targeted, highest scores first (deciles)",
        y_desc: "Converting events captured",
        reference: "random targeting (lift 1.0×)",
    };
    let curves = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let mut points = vec![(0.0, 0.0)];
            points.extend(
                o.gains
                    .iter()
                    .map(|g| (g.decile as f64 / 10.0, g.cumulative_gain)),
            );
            Curve {
                label: match o.gains.first() {
                    Some(top) => format!(
                        "{}: top 10% holds {:.0}% (lift {:.1}×)",
                        o.outcome,
                        top.cumulative_gain * 100.0,
                        top.lift
                    ),
                    None => format!("{}: no converting events", o.outcome),
                },
                points,
                color: outcome_color(i),
                dots: true,
            }
        })
        .collect();
    draw_unit_square(&spec, curves, root)
}

/// Radius of a calibration circle: area proportional to the bin's rows, so a bin of 3 rows
/// is a dot next to a bin of 3,000.
fn bin_radius(count: usize, max_count: usize) -> i32 {
    let share = count as f64 / max_count.max(1) as f64;
    (2.0 + 20.0 * share.sqrt()).round() as i32
}

fn draw_calibration_panel<DB: DrawingBackend>(
    o: &OutcomeEvaluation,
    index: usize,
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let color = outcome_color(index);
    let bins = &o.per_event.calibration;
    let ece = expected_calibration_error(bins);
    let off = bins.iter().filter(|b| bin_is_off(b)).count();
    let caption = if off > 0 {
        format!("{}: ECE {ece:.3}, {off} bin(s) off", o.outcome)
    } else {
        format!("{}: ECE {ece:.3}", o.outcome)
    };
    let caption_color = if off > 0 { WARNING } else { BLACK };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18).into_font().color(&caption_color))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&two_decimals)
        .y_label_formatter(&two_decimals)
        .x_desc("Mean predicted probability")
        .y_desc("Observed rate")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()?;
    draw_diagonal(&mut chart, "ideal: observed = predicted")?;
    let points: Vec<(f64, f64)> = bins
        .iter()
        .map(|b| (b.mean_predicted, b.observed_rate))
        .collect();
    chart.draw_series(LineSeries::new(points, color.mix(0.6).stroke_width(1)))?;
    let max_count = bins.iter().map(|b| b.count).max().unwrap_or(1);
    chart
        .draw_series(bins.iter().map(|b| {
            Circle::new(
                (b.mean_predicted, b.observed_rate),
                bin_radius(b.count, max_count),
                color.mix(0.55).filled(),
            )
        }))?
        .label("bin (area ∝ events)")
        .legend(move |(x, y)| Circle::new((x + 10, y), 6, color.mix(0.55).filled()));
    chart
        .draw_series(bins.iter().filter(|b| bin_is_off(b)).map(|b| {
            Circle::new(
                (b.mean_predicted, b.observed_rate),
                bin_radius(b.count, max_count) + 3,
                WARNING.stroke_width(2),
            )
        }))?
        .label("off the diagonal")
        .legend(|(x, y)| Circle::new((x + 10, y), 7, WARNING.stroke_width(2)));
    // Row counts centred above the circles (bins crowd near zero, but the points also climb
    // there), on a white patch so the diagonal and grid do not run through the digits; near
    // x = 0 the label starts at the point instead, to stay inside the plot.
    chart.draw_series(bins.iter().map(|b| {
        let label = format!("n={}", b.count);
        let r = bin_radius(b.count, max_count);
        let width = 6 * label.len() as i32 + 2;
        let dx = if b.mean_predicted < 0.08 {
            2
        } else {
            -width / 2
        };
        let dy = -r - 15;
        EmptyElement::at((b.mean_predicted, b.observed_rate))
            + Rectangle::new(
                [(dx - 1, dy - 1), (dx + width, dy + 12)],
                WHITE.mix(0.85).filled(),
            )
            + Text::new(
                label,
                (dx + 1, dy),
                (FONT, 11).into_font().color(&RGBColor(50, 50, 50)),
            )
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .margin(8)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .draw()?;
    Ok(())
}

/// Share of the class's rows per bin (0 when the class is empty).
fn shares(counts: &[usize]) -> Vec<f64> {
    let total: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

/// The lowest share the log axis shows; smaller non-zero shares are drawn at it.
const MIN_SHARE: f64 = 1e-4;

fn draw_scores_panel<DB: DrawingBackend>(
    o: &OutcomeEvaluation,
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let h: &ScoreHistogram = &o.scores;
    let mut chart = ChartBuilder::on(area)
        .caption(&o.outcome, (FONT, 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..1f64, (MIN_SHARE..1f64).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&two_decimals)
        .y_label_formatter(&|v| {
            if *v >= 0.01 {
                format!("{:.0}%", v * 100.0)
            } else {
                format!("{}%", v * 100.0)
            }
        })
        .x_desc("Predicted probability")
        .y_desc("Share of the class's events (log)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()?;
    let bins = h.bins().max(1) as f64;
    let neg_total: usize = h.negatives.iter().sum();
    let pos_total: usize = h.positives.iter().sum();
    for (counts, class, color, total, left) in [
        (
            &h.negatives,
            "did not convert",
            NEGATIVE_CLASS,
            neg_total,
            true,
        ),
        (&h.positives, "converted", POSITIVE_CLASS, pos_total, false),
    ] {
        let bars: Vec<Rectangle<(f64, f64)>> = shares(counts)
            .into_iter()
            .enumerate()
            .filter(|&(_, s)| s > 0.0)
            .map(|(i, s)| {
                let x0 = i as f64 / bins;
                let half = 0.5 / bins;
                let (a, b) = if left {
                    (x0 + 0.1 * half, x0 + half)
                } else {
                    (x0 + half, x0 + 1.9 * half)
                };
                Rectangle::new([(a, MIN_SHARE), (b, s.max(MIN_SHARE))], color.filled())
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(format!("{class} (n={total})"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .margin(8)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_the_shape() {
        let pts: Vec<(f64, f64)> = (0..=10_000)
            .map(|i| (f64::from(i) / 10_000.0, (f64::from(i) / 10_000.0).sqrt()))
            .collect();
        let t = thin(&pts, 0.002);
        assert!(t.len() < 1_100, "{}", t.len());
        assert_eq!(t.first(), pts.first());
        assert_eq!(t.last(), pts.last());
    }

    #[test]
    fn circle_area_grows_with_rows() {
        assert!(bin_radius(3, 3000) <= 3);
        assert_eq!(bin_radius(3000, 3000), 22);
        assert!(bin_radius(750, 3000) > bin_radius(75, 3000));
    }
}
