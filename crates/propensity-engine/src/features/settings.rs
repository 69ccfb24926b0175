//! `[features]` as written in the configuration: page categories, how
//! training learns vocabularies, and the dwell cap, with their defaults.
//!
//! Invariants kept here:
//! - These types are plain data; nothing is validated here.
//!   [`FeatureSpec::compile`](super::FeatureSpec::compile) validates them
//!   and refuses what it cannot use.
//! - Their serialised form (field names and order, defaults filled in) is
//!   part of the spec's fingerprint, which models store: renaming,
//!   reordering or re-defaulting a field changes every fingerprint.

use serde::{Deserialize, Serialize};

/// One page category: a URL path belongs to it when it equals one of `exact`
/// or starts with one of `prefixes` (longest match across categories wins).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageCategorySettings {
    /// Category name, used in feature names.
    pub name: String,
    /// Path prefixes.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Exact paths.
    #[serde(default)]
    pub exact: Vec<String>,
}

/// `[features]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSettings {
    /// Page categories by URL path.
    pub page_categories: Vec<PageCategorySettings>,
    /// Most values per open-ended field (browser, OS, traffic source,
    /// referrer host, path segment, custom event) that `propensity train`
    /// gives a feature of their own; the rest share "other".
    #[serde(default = "default_vocabulary_max_values")]
    pub vocabulary_max_values: usize,
    /// A value needs this many training events to get a feature of its own.
    #[serde(default = "default_vocabulary_min_count")]
    pub vocabulary_min_count: u64,
    /// Dwell time on one page is capped at this (a tab left open is not
    /// interest).
    #[serde(default = "default_max_dwell")]
    pub max_dwell_secs: f64,
}

fn default_vocabulary_max_values() -> usize {
    12
}
fn default_vocabulary_min_count() -> u64 {
    20
}
fn default_max_dwell() -> f64 {
    1800.0
}

/// The settings the unit tests of this module compile: three page
/// categories, everything else defaulted.
#[cfg(test)]
pub(super) fn test_settings() -> FeatureSettings {
    serde_json::from_value(serde_json::json!({
        "page_categories": [
            {"name": "product", "prefixes": ["/products"]},
            {"name": "checkout", "prefixes": ["/checkout", "/cart"]},
            {"name": "home", "exact": ["/"]}
        ]
    }))
    .unwrap()
}
