//! `propensity features`: every feature of the configured spec (with
//! `--models`, of the spec with those models' learned vocabulary), in
//! vector order, with what it means ([`FeatureLabel`]), as a table or as
//! JSON. The list is read from the compiled spec's names, so it is exactly
//! what models are trained on and what offers' explanations name.

use std::io::Write;

use anyhow::Result;
use propensity_engine::features::{FeatureLabel, FeatureSpec};
use serde::Serialize;

/// One feature as listed.
#[derive(Debug, Serialize)]
pub struct FeatureRow<'a> {
    /// Position in the vector (and in model artifacts' arrays).
    pub index: usize,
    /// Feature name.
    pub name: &'a str,
    /// Feature family.
    pub family: &'static str,
    /// Unit of the feature's own value (what offers' `value` is in).
    pub unit: &'static str,
    /// How the own value enters the vector.
    pub transform: &'static str,
    /// One sentence.
    pub meaning: String,
}

/// The rows of every feature of `spec`, in vector order.
pub fn rows(spec: &FeatureSpec) -> Vec<FeatureRow<'_>> {
    spec.names()
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let f = FeatureLabel::new(name);
            FeatureRow {
                index,
                name,
                family: f.family().as_str(),
                unit: f.unit().as_str(),
                transform: f.transform().as_str(),
                meaning: f.meaning(),
            }
        })
        .collect()
}

/// Prints the rows as an aligned table (or one JSON array with `json`).
pub fn print(spec: &FeatureSpec, json: bool, out: &mut impl Write) -> Result<()> {
    let rows = rows(spec);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let width = |f: fn(&FeatureRow<'_>) -> usize, title: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let wi = width(|r| r.index.to_string().len(), "index");
    let wn = width(|r| r.name.len(), "name");
    let wu = width(|r| r.unit.len(), "unit");
    let wt = width(|r| r.transform.len(), "transform");
    writeln!(
        out,
        "{:>wi$}  {:<wn$}  {:<wu$}  {:<wt$}  meaning",
        "index", "name", "unit", "transform"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:>wi$}  {:<wn$}  {:<wu$}  {:<wt$}  {}",
            r.index, r.name, r.unit, r.transform, r.meaning
        )?;
    }
    writeln!(
        out,
        "{} features, fingerprint {}",
        rows.len(),
        spec.fingerprint()
    )?;
    Ok(())
}
