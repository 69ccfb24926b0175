//! The uplift chart of `propensity report`: one row per action map with a
//! control group, its measured uplift (treatment − control conversion) as a
//! point and its 95 % interval as a bar, against a zero line. A forest plot,
//! because the question it answers is "which intervals clear zero, and on
//! which side": a map whose bar lies right of zero caused outcomes, left of
//! zero cost them (drawn red), across zero is not shown to do either.

use plotters::prelude::*;

use super::charts::{chart_err, encode_png, register_font, FONT, REFERENCE, WARNING};
use crate::error::TrainingError;

/// One map's reading, as the chart draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpliftRow {
    /// The action map.
    pub map: String,
    /// Conversion difference, treatment − control.
    pub difference: f64,
    /// 95 % interval.
    pub ci_low: f64,
    /// 95 % interval, upper end.
    pub ci_high: f64,
    /// Sessions in treatment and control.
    pub sessions: (u64, u64),
}

const WIDTH: u32 = 900;
const ROW_HEIGHT: u32 = 56;
const FRAME_HEIGHT: u32 = 150;
const CONFIDENT: RGBColor = RGBColor(44, 160, 44);
const UNDECIDED: RGBColor = RGBColor(31, 119, 180);

/// Draws the rows as an RGB PNG (a "no control group" note when empty).
pub fn uplift_chart_png(rows: &[UpliftRow]) -> Result<Vec<u8>, TrainingError> {
    register_font()?;
    let (w, h) = (WIDTH, FRAME_HEIGHT + ROW_HEIGHT * rows.len().max(1) as u32);
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(rows, &root).map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    encode_png(&rgb, w, h)
}

fn draw<DB: DrawingBackend>(
    rows: &[UpliftRow],
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let title = root.titled(
        "Uplift per action map: treatment − control conversion, 95 % interval",
        (FONT, 20),
    )?;
    if rows.is_empty() {
        return title.draw(&Text::new(
            "no action map has sessions in both arms yet",
            (40, 40),
            (FONT, 16),
        ));
    }
    // Symmetric around zero, so the side a bar falls on reads at a glance.
    let reach = rows
        .iter()
        .flat_map(|r| [r.ci_low.abs(), r.ci_high.abs()])
        .fold(0.01_f64, f64::max)
        * 1.15;
    let n = rows.len();
    let mut chart = ChartBuilder::on(&title)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(0)
        .build_cartesian_2d(-reach..reach, -0.5..(n as f64 - 0.5))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("conversion rate difference (percentage points)")
        .x_label_formatter(&|v| format!("{:+.1}", v * 100.0))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()?;
    chart.draw_series(LineSeries::new(
        [(0.0, -0.5), (0.0, n as f64 - 0.5)],
        REFERENCE.stroke_width(2),
    ))?;
    for (i, r) in rows.iter().enumerate() {
        // The first map on top.
        let y = (n - 1 - i) as f64;
        let color = if r.ci_high < 0.0 {
            WARNING
        } else if r.ci_low > 0.0 {
            CONFIDENT
        } else {
            UNDECIDED
        };
        chart.draw_series(LineSeries::new(
            [(r.ci_low, y), (r.ci_high, y)],
            color.stroke_width(4),
        ))?;
        chart.draw_series([Circle::new((r.difference, y), 7, color.filled())])?;
        let label = format!(
            "{}: {:+.1} pp [{:+.1}, {:+.1}]  ({} treated, {} control)",
            r.map,
            r.difference * 100.0,
            r.ci_low * 100.0,
            r.ci_high * 100.0,
            r.sessions.0,
            r.sessions.1
        );
        chart.draw_series([Text::new(label, (-reach * 0.97, y + 0.38), (FONT, 14))])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_a_png_whose_height_grows_with_the_maps() {
        let row = |map: &str, d: f64| UpliftRow {
            map: map.into(),
            difference: d,
            ci_low: d - 0.02,
            ci_high: d + 0.02,
            sessions: (1000, 1000),
        };
        let one = uplift_chart_png(&[row("chat", 0.1)]).expect("png");
        let three = uplift_chart_png(&[
            row("chat", 0.1),
            row("callback", -0.05),
            row("content", 0.0),
        ])
        .expect("png");
        let empty = uplift_chart_png(&[]).expect("png");
        for png in [&one, &three, &empty] {
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        }
        // The IHDR height field (bytes 20..24, big-endian).
        let height = |png: &[u8]| u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        assert_eq!(height(&one), FRAME_HEIGHT + ROW_HEIGHT);
        assert_eq!(height(&three), FRAME_HEIGHT + 3 * ROW_HEIGHT);
    }
}
