//! The evaluation report people look at: charts ([`charts`]: PNG files and inline SVG), a
//! self-contained `report.html` ([`report_html`]), the glossary both the HTML and the printed
//! report use ([`GLOSSARY`]), the calibration check that decides when to warn
//! ([`CalibrationCheck`]), and the business view's data ([`BusinessView`], filled by the
//! caller, which runs the engine with the models and sees the offers).
//!
//! Everything here returns bytes or strings; writing files is the caller's job.

mod charts;
mod html;
mod summaries;
#[cfg(test)]
mod tests;
mod uplift_chart;

use serde::Serialize;

pub use charts::{chart_png, chart_svg, outcome_color, ChartKind, PALETTE};
pub use html::report_html;
pub use summaries::{
    bin_is_off, expected_calibration_error, gains_by_decile, score_histogram, CalibrationCheck,
    GainsRow, ScoreHistogram, ECE_WARNING, MIN_ABSOLUTE_GAP, MIN_ROWS_FOR_CHECK,
    SCORE_HISTOGRAM_BINS, STANDARD_ERRORS,
};
pub use uplift_chart::{uplift_chart_png, UpliftRow};

use crate::evaluation::OutcomeEvaluation;

/// Terms used by the report, each with a one-line explanation (printed by `evaluate`, and
/// the HTML report's glossary).
pub const GLOSSARY: [(&str, &str); 8] = [
    (
        "AUC",
        "area under the ROC curve: the chance that a random converting event scores above a random non-converting one (0.5 = coin flip, 1.0 = perfect ranking)",
    ),
    (
        "log loss",
        "mean of -ln(probability given to what happened); lower is better, and confident mistakes cost the most",
    ),
    (
        "Brier",
        "mean squared gap between the probability and the outcome (1 or 0); lower is better, and always predicting the base rate p scores p(1-p)",
    ),
    (
        "calibration",
        "whether probabilities mean what they say: of events scored about 0.3, about 30% should convert; calibrated bins sit on the diagonal",
    ),
    (
        "ECE",
        "expected calibration error: the event-weighted mean gap between predicted and observed rate over the ten calibration bins (0 = perfect)",
    ),
    (
        "lift",
        "how many times the average conversion rate a group of events has: top-decile lift 5 means the highest-scored 10% convert five times as often",
    ),
    (
        "gains",
        "share of all converting events found by targeting the highest-scored X% of events",
    ),
    (
        "per event / per session",
        "per event: every scored event is a row; per session: one row per session, its last score before it converted or ended",
    ),
];

/// One sentence on when the report warns about calibration.
pub fn calibration_rule() -> String {
    format!(
        "a model is flagged when its ECE is above {ECE_WARNING} or a calibration bin with at least {MIN_ROWS_FOR_CHECK} events is off the diagonal by more than {MIN_ABSOLUTE_GAP} and {STANDARD_ERRORS} binomial standard errors"
    )
}

/// What the offers did, per action map, on the evaluated traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusinessView {
    /// Sessions that were scored at least once (consented sessions with an open outcome),
    /// the denominator of "offers per 1,000 sessions".
    pub sessions: u64,
    /// One row per action map, in config (priority) order.
    pub maps: Vec<MapBusiness>,
}

/// One action map's offers and the conversions of its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapBusiness {
    /// Action map name.
    pub action_map: String,
    /// Action type (`chat`, `callback`, ...).
    pub action: String,
    /// The outcome whose probability fires the map.
    pub outcome: String,
    /// Offers made.
    pub offers: u64,
    /// Sessions that got at least one offer from this map.
    pub offered_sessions: u64,
    /// ... of which achieved the map's outcome (after the offer: offers are only made while
    /// the outcome is open).
    pub offered_converted: u64,
    /// Sessions scored for the outcome that got no offer from this map.
    pub not_offered_sessions: u64,
    /// ... of which achieved the outcome.
    pub not_offered_converted: u64,
}

impl MapBusiness {
    /// Offers per 1,000 scored sessions.
    pub fn offers_per_1000_sessions(&self, sessions: u64) -> f64 {
        if sessions == 0 {
            0.0
        } else {
            self.offers as f64 * 1000.0 / sessions as f64
        }
    }

    /// Conversion rate of offered sessions (NaN when there are none).
    pub fn offered_rate(&self) -> f64 {
        self.offered_converted as f64 / self.offered_sessions as f64
    }

    /// Conversion rate of sessions not offered (NaN when there are none).
    pub fn not_offered_rate(&self) -> f64 {
        self.not_offered_converted as f64 / self.not_offered_sessions as f64
    }
}

/// Why offered sessions converting more is not the offers' effect.
pub const BUSINESS_CAVEAT: &str = "Offers go to sessions the model already rates likely to convert, so offered sessions convert more even if the offer does nothing; the offer's own effect needs a control group of eligible sessions that are not offered.";

/// Everything the HTML report shows.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// Per outcome.
    pub outcomes: &'a [OutcomeEvaluation],
    /// The offers' view; `None` leaves that section out with a note.
    pub business: Option<&'a BusinessView>,
}

/// Calibration warnings for `outcomes`, one sentence each, in outcome order.
pub fn calibration_warnings(outcomes: &[OutcomeEvaluation]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| CalibrationCheck::of(&o.per_event).warning(&o.outcome))
        .collect()
}
