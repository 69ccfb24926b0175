//! Font-free PNG plots of ROC and calibration curves: a tiny RGB raster with Bresenham line
//! drawing, encoded with the `png` crate.
//!
//! Layout (both plots): a `PLOT_WIDTH × PLOT_HEIGHT` white canvas; a square plot area with the
//! unit square mapped onto it (x to the right, y upwards); a light-grey grid every 0.1; black
//! x/y axes with ticks every 0.1; a mid-grey `y = x` reference line (chance for ROC, perfect
//! calibration for reliability plots); then one 2-pixel polyline per curve in
//! [`curve_color`]`(index)`. Calibration plots also mark each bin with a filled dot. There is
//! no text: callers name the colors in the accompanying report via [`curve_color_name`].
//!
//! Drawing order is fixed and there is no floating-point state beyond coordinate rounding,
//! so the same curves always give the same bytes.

use std::io::Write;

use crate::error::TrainingError;
use crate::metrics::CalibrationBin;

/// Width of every plot, in pixels.
pub const PLOT_WIDTH: u32 = 480;
/// Height of every plot, in pixels.
pub const PLOT_HEIGHT: u32 = 480;

/// Curve colors (RGB), used in order and cycled: the Tableau-10 palette without its grey,
/// which is reserved for the reference diagonal.
pub const PALETTE: [[u8; 3]; 9] = [
    [31, 119, 180],  // blue
    [255, 127, 14],  // orange
    [44, 160, 44],   // green
    [214, 39, 40],   // red
    [148, 103, 189], // purple
    [140, 86, 75],   // brown
    [227, 119, 194], // pink
    [188, 189, 34],  // olive
    [23, 190, 207],  // cyan
];

const PALETTE_NAMES: [&str; 9] = [
    "blue", "orange", "green", "red", "purple", "brown", "pink", "olive", "cyan",
];

const WHITE: [u8; 3] = [255, 255, 255];
const GRID: [u8; 3] = [225, 225, 225];
const AXIS: [u8; 3] = [0, 0, 0];
/// Colour of the `y = x` reference line.
const DIAGONAL: [u8; 3] = [128, 128, 128];

/// Blank space around the plot area (room for ticks; the area itself is square).
const MARGIN: i64 = 32;
const TICK: i64 = 5;
const DOT_RADIUS: i64 = 4;

/// The RGB color of the curve at position `index` in the slice handed to a plot function.
pub fn curve_color(index: usize) -> [u8; 3] {
    PALETTE[index % PALETTE.len()]
}

/// A human name for [`curve_color`]`(index)`, for legends written next to the image.
pub fn curve_color_name(index: usize) -> &'static str {
    PALETTE_NAMES[index % PALETTE_NAMES.len()]
}

/// Row-major RGB pixel buffer.
struct Canvas {
    width: i64,
    height: i64,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        let (width, height) = (i64::from(PLOT_WIDTH), i64::from(PLOT_HEIGHT));
        let mut pixels = Vec::with_capacity((width * height * 3) as usize);
        for _ in 0..width * height {
            pixels.extend_from_slice(&WHITE);
        }
        Self {
            width,
            height,
            pixels,
        }
    }

    /// Sets one pixel; coordinates off the canvas are ignored (this is the only clipping).
    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if (0..self.width).contains(&x) && (0..self.height).contains(&y) {
            let i = ((y * self.width + x) * 3) as usize;
            self.pixels[i..i + 3].copy_from_slice(&color);
        }
    }

    #[cfg(test)]
    fn get(&self, x: i64, y: i64) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// Bresenham line from `a` to `b` inclusive, with a `thickness × thickness` square brush
    /// anchored at each point.
    fn line(&mut self, a: (i64, i64), b: (i64, i64), color: [u8; 3], thickness: i64) {
        let (mut x, mut y) = a;
        let dx = (b.0 - x).abs();
        let dy = -(b.1 - y).abs();
        let sx = if x < b.0 { 1 } else { -1 };
        let sy = if y < b.1 { 1 } else { -1 };
        let mut err = dx + dy;
        loop {
            for ox in 0..thickness {
                for oy in 0..thickness {
                    self.set(x + ox, y + oy, color);
                }
            }
            if (x, y) == b {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn dot(&mut self, center: (i64, i64), radius: i64, color: [u8; 3]) {
        for oy in -radius..=radius {
            for ox in -radius..=radius {
                if ox * ox + oy * oy <= radius * radius {
                    self.set(center.0 + ox, center.1 + oy, color);
                }
            }
        }
    }

    /// Pixel position of unit-square coordinates `(u, v)`; `None` for non-finite input.
    /// Values outside `[0, 1]` are clamped to the plot area's edge.
    fn to_px(&self, u: f64, v: f64) -> Option<(i64, i64)> {
        if !u.is_finite() || !v.is_finite() {
            return None;
        }
        let span = (self.plot_right() - MARGIN) as f64;
        let x = MARGIN + (u.clamp(0.0, 1.0) * span).round() as i64;
        let y = self.plot_bottom() - (v.clamp(0.0, 1.0) * span).round() as i64;
        Some((x, y))
    }

    /// Right edge of the square plot area (inclusive pixel column).
    fn plot_right(&self) -> i64 {
        MARGIN + (self.width.min(self.height) - 2 * MARGIN - 1)
    }

    /// Bottom edge of the square plot area (inclusive pixel row).
    fn plot_bottom(&self) -> i64 {
        MARGIN + (self.width.min(self.height) - 2 * MARGIN - 1)
    }

    /// Grid, axes with ticks, and the grey `y = x` reference line.
    fn frame(&mut self) {
        let (left, top) = (MARGIN, MARGIN);
        let (right, bottom) = (self.plot_right(), self.plot_bottom());
        for k in 0..=10 {
            let t = f64::from(k) / 10.0;
            if let (Some((gx, _)), Some((_, gy))) = (self.to_px(t, 0.0), self.to_px(0.0, t)) {
                self.line((gx, top), (gx, bottom), GRID, 1);
                self.line((left, gy), (right, gy), GRID, 1);
                self.line((gx, bottom), (gx, bottom + TICK), AXIS, 1);
                self.line((left - TICK, gy), (left, gy), AXIS, 1);
            }
        }
        self.line((left, bottom), (right, bottom), AXIS, 1);
        self.line((left, top), (left, bottom), AXIS, 1);
        self.line((left, bottom), (right, top), DIAGONAL, 1);
    }

    /// Polyline through the points that have finite coordinates (others are skipped).
    fn polyline(&mut self, points: impl IntoIterator<Item = (f64, f64)>, color: [u8; 3]) {
        let mut previous = None;
        for (u, v) in points {
            let Some(p) = self.to_px(u, v) else { continue };
            if let Some(q) = previous {
                self.line(q, p, color, 2);
            } else {
                // A single-point curve still leaves a mark.
                self.line(p, p, color, 2);
            }
            previous = Some(p);
        }
    }

    fn encode<W: Write>(&self, out: W) -> Result<(), TrainingError> {
        let png_err = |e: png::EncodingError| TrainingError::Png(e.to_string());
        let mut encoder = png::Encoder::new(out, PLOT_WIDTH, PLOT_HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_err)?;
        writer.write_image_data(&self.pixels).map_err(png_err)?;
        writer.finish().map_err(png_err)
    }
}

fn roc_canvas(curves: &[(String, Vec<(f64, f64)>)]) -> Canvas {
    let mut canvas = Canvas::new();
    canvas.frame();
    for (index, (_, points)) in curves.iter().enumerate() {
        canvas.polyline(points.iter().copied(), curve_color(index));
    }
    canvas
}

fn calibration_canvas(curves: &[(String, Vec<CalibrationBin>)]) -> Canvas {
    let mut canvas = Canvas::new();
    canvas.frame();
    for (index, (_, bins)) in curves.iter().enumerate() {
        let color = curve_color(index);
        let points = bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.mean_predicted, b.observed_rate));
        canvas.polyline(points.clone(), color);
        for (u, v) in points {
            if let Some(p) = canvas.to_px(u, v) {
                canvas.dot(p, DOT_RADIUS, color);
            }
        }
    }
    canvas
}

/// Writes a ROC plot (x = false positive rate, y = true positive rate) as PNG into `out`.
/// Curve `i` is drawn in [`curve_color`]`(i)`; the names are not rendered.
pub fn write_roc_plot_png<W: Write>(
    out: W,
    curves: &[(String, Vec<(f64, f64)>)],
) -> Result<(), TrainingError> {
    roc_canvas(curves).encode(out)
}

/// Writes a calibration (reliability) plot (x = mean predicted probability, y = observed
/// rate) as PNG into `out`: one polyline plus dots per curve, empty bins skipped.
pub fn write_calibration_plot_png<W: Write>(
    out: W,
    curves: &[(String, Vec<CalibrationBin>)],
) -> Result<(), TrainingError> {
    calibration_canvas(curves).encode(out)
}

/// [`write_roc_plot_png`] into memory.
///
/// # Panics
/// Never in practice: the writer is a `Vec` (infallible) and the image parameters are
/// constants that the encoder accepts, which the tests pin.
pub fn roc_plot_png(curves: &[(String, Vec<(f64, f64)>)]) -> Vec<u8> {
    let mut out = Vec::new();
    write_roc_plot_png(&mut out, curves)
        .expect("PNG encoding into a Vec with fixed 8-bit RGB parameters cannot fail");
    out
}

/// [`write_calibration_plot_png`] into memory.
///
/// # Panics
/// Never in practice, for the same reason as [`roc_plot_png`].
pub fn calibration_plot_png(curves: &[(String, Vec<CalibrationBin>)]) -> Vec<u8> {
    let mut out = Vec::new();
    write_calibration_plot_png(&mut out, curves)
        .expect("PNG encoding into a Vec with fixed 8-bit RGB parameters cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG and returns (width, height, RGB bytes), asserting 8-bit RGB.
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(rgb: &[u8], x: i64, y: i64) -> [u8; 3] {
        let i = ((y * i64::from(PLOT_WIDTH) + x) * 3) as usize;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }

    fn count_color(rgb: &[u8], color: [u8; 3]) -> usize {
        rgb.chunks_exact(3).filter(|p| *p == color).count()
    }

    #[test]
    fn roc_plot_has_diagonal_axes_and_curves() {
        let curves = vec![
            (
                "purchase".to_owned(),
                vec![(0.0, 0.0), (0.1, 0.6), (0.4, 0.9), (1.0, 1.0)],
            ),
            (
                "signup".to_owned(),
                vec![(0.0, 0.0), (0.05, 0.3), (1.0, 1.0)],
            ),
        ];
        let bytes = roc_plot_png(&curves);
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let (w, h, rgb) = decode(&bytes);
        assert_eq!((w, h), (PLOT_WIDTH, PLOT_HEIGHT));

        let canvas = Canvas::new();
        // A diagonal point off the grid lines and away from both curves (which lie above it).
        let (dx, dy) = canvas.to_px(0.75, 0.75).unwrap();
        assert_eq!(pixel(&rgb, dx, dy), DIAGONAL);
        // Both axes are black (away from the origin, where the curves start); a corner
        // outside the plot is white.
        let (ax, ay) = canvas.to_px(0.55, 0.0).unwrap();
        assert_eq!(pixel(&rgb, ax, ay), AXIS);
        let (ax, ay) = canvas.to_px(0.0, 0.45).unwrap();
        assert_eq!(pixel(&rgb, ax, ay), AXIS);
        assert_eq!(pixel(&rgb, 2, 2), WHITE);
        // A grid line crossing.
        let (gx, gy) = canvas.to_px(0.5, 0.2).unwrap();
        assert_eq!(pixel(&rgb, gx, gy), GRID);
        // Both curves are drawn, in their palette colors.
        assert!(count_color(&rgb, curve_color(0)) > 300);
        assert!(count_color(&rgb, curve_color(1)) > 300);
        assert_eq!(count_color(&rgb, curve_color(2)), 0);
        // Deterministic bytes.
        assert_eq!(bytes, roc_plot_png(&curves));
    }

    #[test]
    fn calibration_plot_marks_bins() {
        let bin = |m: f64, o: f64| CalibrationBin {
            lower: 0.0,
            upper: 1.0,
            count: 10,
            mean_predicted: m,
            observed_rate: o,
        };
        let curves = vec![(
            "purchase".to_owned(),
            vec![bin(0.05, 0.2), bin(0.3, 0.5), bin(0.7, 0.95)],
        )];
        let (w, h, rgb) = decode(&calibration_plot_png(&curves));
        assert_eq!((w, h), (PLOT_WIDTH, PLOT_HEIGHT));
        let canvas = Canvas::new();
        let (cx, cy) = canvas.to_px(0.3, 0.5).unwrap();
        // The dot's center and a pixel 3 px off-center (beyond the 2 px line) are colored.
        assert_eq!(pixel(&rgb, cx, cy), curve_color(0));
        assert_eq!(pixel(&rgb, cx - 3, cy), curve_color(0));
        let (dx, dy) = canvas.to_px(0.85, 0.85).unwrap();
        assert_eq!(pixel(&rgb, dx, dy), DIAGONAL);
    }

    #[test]
    fn empty_and_degenerate_input_still_encodes() {
        let (w, h, rgb) = decode(&roc_plot_png(&[]));
        assert_eq!((w, h), (PLOT_WIDTH, PLOT_HEIGHT));
        assert!(PALETTE.iter().all(|&c| count_color(&rgb, c) == 0));
        let odd = vec![(
            "x".to_owned(),
            vec![(f64::NAN, 0.5), (-3.0, 7.0), (0.5, f64::INFINITY)],
        )];
        let (_, _, rgb) = decode(&roc_plot_png(&odd));
        assert!(count_color(&rgb, curve_color(0)) > 0);
        assert_eq!(curve_color(PALETTE.len()), curve_color(0));
        assert_eq!(curve_color_name(1), "orange");
    }

    #[test]
    fn writer_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = write_roc_plot_png(Broken, &[]).unwrap_err();
        assert!(matches!(err, TrainingError::Png(_)), "{err}");
    }

    #[test]
    fn line_endpoints_and_clipping() {
        let mut c = Canvas::new();
        c.line((10, 10), (20, 15), [1, 2, 3], 1);
        assert_eq!(c.get(10, 10), [1, 2, 3]);
        assert_eq!(c.get(20, 15), [1, 2, 3]);
        // Off-canvas segments are clipped, not a panic.
        c.line((-50, -50), (1000, 1000), [9, 9, 9], 2);
        assert_eq!(c.get(0, 0), [9, 9, 9]);
    }
}
