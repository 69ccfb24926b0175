//! Training that copes with real data: which outcomes are worth fitting, and whether the
//! fitted models are fit to ship.
//!
//! [`train_checked`] trains a selection of the configured outcomes (all, or the names
//! asked for); an outcome with fewer positive rows than [`QualityChecks::min_positives`]
//! (or with a class missing from its training rows) is skipped, not fitted, and the others
//! are trained. Each trained model's holdout is checked against
//! [`QualityChecks::auc_floor`] and [`QualityChecks::max_calibration_error`] (expected
//! calibration error, [`crate::report::expected_calibration_error`]). Skips and failed
//! checks come back as [`QualityWarning`]s; what to do with them (print, or fail a strict
//! run) is the caller's decision.

use serde::{Deserialize, Serialize};

use super::{
    prepare_one, train_prepared, validate_plans, SearchPlan, TrainedOutcome, TrainingPlan,
};
use crate::dataset::ExampleCollector;
use crate::error::TrainingError;
use crate::metrics::EvaluationReport;
use crate::report::expected_calibration_error;
use propensity_engine::EngineConfig;

/// Thresholds deciding which outcomes are trained and which models are flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QualityChecks {
    /// Outcomes with fewer positive rows (all rows, before the holdout split) are skipped;
    /// >= 1.
    pub min_positives: usize,
    /// A model whose holdout AUC is below this is flagged; within [0, 1].
    pub auc_floor: f64,
    /// A model whose holdout expected calibration error is above this is flagged; within
    /// (0, 1].
    pub max_calibration_error: f64,
}

impl Default for QualityChecks {
    fn default() -> Self {
        Self {
            min_positives: 50,
            auc_floor: 0.6,
            max_calibration_error: 0.05,
        }
    }
}

impl QualityChecks {
    /// Range checks; errors name the field.
    pub fn validate(&self) -> Result<(), TrainingError> {
        if self.min_positives == 0 {
            return Err(TrainingError::InvalidParams {
                field: "min_positives",
                reason: "must be >= 1".to_owned(),
            });
        }
        if !(0.0..=1.0).contains(&self.auc_floor) {
            return Err(TrainingError::InvalidParams {
                field: "auc_floor",
                reason: format!("must be within [0, 1], got {}", self.auc_floor),
            });
        }
        if !(self.max_calibration_error > 0.0 && self.max_calibration_error <= 1.0) {
            return Err(TrainingError::InvalidParams {
                field: "max_calibration_error",
                reason: format!("must be within (0, 1], got {}", self.max_calibration_error),
            });
        }
        Ok(())
    }
}

/// An outcome that was not trained, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedOutcome {
    /// Outcome name.
    pub outcome: String,
    /// Rows (events) collected for it.
    pub rows: usize,
    /// Positive rows among them.
    pub positives: usize,
    /// Why it was skipped.
    pub reason: String,
}

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The outcome was skipped (see [`SkippedOutcome`]).
    Skipped,
    /// Holdout AUC below the floor.
    LowAuc,
    /// Holdout expected calibration error above the threshold.
    Miscalibrated,
    /// The holdout has one class only, so the AUC cannot be checked.
    Unchecked,
}

/// A problem with one outcome that did not stop training.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityWarning {
    /// Outcome name.
    pub outcome: String,
    /// What kind of problem.
    pub kind: WarningKind,
    /// The problem in words, naming the outcome and the threshold.
    pub message: String,
}

/// What [`train_checked`] returns.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedTraining {
    /// The trained outcomes, in configuration order.
    pub trained: Vec<TrainedOutcome>,
    /// The outcomes not trained.
    pub skipped: Vec<SkippedOutcome>,
    /// Skips and failed checks, skips first.
    pub warnings: Vec<QualityWarning>,
}

/// The configured outcome indices to train: all of `names` when `only` is `None`, else the
/// named ones in configuration order. An unknown name is an error naming it and listing
/// the configured ones.
pub fn select_outcomes(
    names: &[&str],
    only: Option<&[String]>,
) -> Result<Vec<usize>, TrainingError> {
    let Some(only) = only else {
        return Ok((0..names.len()).collect());
    };
    if let Some(bad) = only.iter().find(|n| !names.contains(&n.as_str())) {
        return Err(TrainingError::UnknownOutcome {
            name: bad.clone(),
            configured: names.join(", "),
        });
    }
    Ok((0..names.len())
        .filter(|&o| only.iter().any(|n| n == names[o]))
        .collect())
}

/// Splits `selected` into the outcomes with at least `min_positives` positive rows and the
/// skipped ones.
pub fn split_by_positives(
    names: &[&str],
    examples: &ExampleCollector,
    selected: &[usize],
    min_positives: usize,
) -> (Vec<usize>, Vec<SkippedOutcome>) {
    let mut keep = Vec::new();
    let mut skipped = Vec::new();
    for &o in selected {
        let labels = examples.labels(o);
        let positives = labels.iter().filter(|&&b| b).count();
        if positives < min_positives {
            skipped.push(SkippedOutcome {
                outcome: names[o].to_owned(),
                rows: labels.len(),
                positives,
                reason: format!(
                    "{positives} positive examples in {} rows, fewer than min_positives = {min_positives}",
                    labels.len()
                ),
            });
        } else {
            keep.push(o);
        }
    }
    (keep, skipped)
}

/// The warnings of one trained outcome's holdout (none without a holdout).
pub fn holdout_warnings(
    outcome: &str,
    holdout: Option<&EvaluationReport>,
    checks: &QualityChecks,
) -> Vec<QualityWarning> {
    let Some(h) = holdout else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let warn = |kind, message| QualityWarning {
        outcome: outcome.to_owned(),
        kind,
        message,
    };
    match h.auc {
        Some(auc) if auc < checks.auc_floor => out.push(warn(
            WarningKind::LowAuc,
            format!(
                "outcome `{outcome}`: holdout AUC {auc:.3} is below auc_floor = {}",
                checks.auc_floor
            ),
        )),
        Some(_) => {}
        None => out.push(warn(
            WarningKind::Unchecked,
            format!(
                "outcome `{outcome}`: the holdout ({} rows) has one class only, so its AUC cannot be checked against auc_floor",
                h.count
            ),
        )),
    }
    let ece = expected_calibration_error(&h.calibration);
    if ece > checks.max_calibration_error {
        out.push(warn(
            WarningKind::Miscalibrated,
            format!(
                "outcome `{outcome}`: holdout expected calibration error {ece:.3} is above max_calibration_error = {}",
                checks.max_calibration_error
            ),
        ));
    }
    out
}

/// Trains the selected outcomes (`only`: names, else all) that have enough positives, and
/// checks the models: see the module docs. Fails when nothing is left to train.
pub fn train_checked(
    config: &EngineConfig,
    examples: &ExampleCollector,
    plan: &TrainingPlan,
    search: &SearchPlan,
    checks: &QualityChecks,
    only: Option<&[String]>,
    progress: impl FnMut(&str, usize, usize),
) -> Result<CheckedTraining, TrainingError> {
    validate_plans(plan, search)?;
    checks.validate()?;
    let names: Vec<&str> = config.outcomes.iter().map(|o| o.name.as_str()).collect();
    let selected = select_outcomes(&names, only)?;
    let (keep, mut skipped) = split_by_positives(&names, examples, &selected, checks.min_positives);
    let mut prepared = Vec::with_capacity(keep.len());
    for o in keep {
        match prepare_one(examples, o, names[o], plan, search) {
            Ok(p) => prepared.push(p),
            // Enough positives overall, but a class is missing from the training rows.
            Err(
                e @ (TrainingError::NoRows
                | TrainingError::NoPositives { .. }
                | TrainingError::NoNegatives { .. }),
            ) => {
                let labels = examples.labels(o);
                skipped.push(SkippedOutcome {
                    outcome: names[o].to_owned(),
                    rows: labels.len(),
                    positives: labels.iter().filter(|&&b| b).count(),
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                return Err(TrainingError::Outcome {
                    outcome: names[o].to_owned(),
                    source: Box::new(e),
                })
            }
        }
    }
    if prepared.is_empty() {
        let reasons: Vec<String> = skipped
            .iter()
            .map(|s| format!("`{}`: {}", s.outcome, s.reason))
            .collect();
        return Err(TrainingError::AllOutcomesSkipped {
            reasons: reasons.join("; "),
        });
    }
    let trained = train_prepared(config, examples, &prepared, plan, search, progress)?;
    let mut warnings: Vec<QualityWarning> = skipped
        .iter()
        .map(|s| QualityWarning {
            outcome: s.outcome.clone(),
            kind: WarningKind::Skipped,
            message: format!(
                "outcome `{}` skipped, no model written: {}",
                s.outcome, s.reason
            ),
        })
        .collect();
    for t in &trained {
        warnings.extend(holdout_warnings(
            &t.artifact.outcome,
            t.holdout.as_ref(),
            checks,
        ));
    }
    Ok(CheckedTraining {
        trained,
        skipped,
        warnings,
    })
}
