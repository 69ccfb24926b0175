//! `[features]` as written in the configuration: page categories and the
//! sizes of the hashed bucket groups, with their defaults.
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
    /// Hashed buckets for the first path segment of uncategorised pages.
    #[serde(default = "default_path_buckets")]
    pub path_hash_buckets: usize,
    /// Hashed buckets for custom event names.
    #[serde(default = "default_custom_buckets")]
    pub custom_event_buckets: usize,
    /// Hashed buckets for the browser name.
    #[serde(default = "default_small_buckets")]
    pub browser_buckets: usize,
    /// Hashed buckets for the operating system.
    #[serde(default = "default_small_buckets")]
    pub os_buckets: usize,
    /// Hashed buckets for the traffic source.
    #[serde(default = "default_custom_buckets")]
    pub traffic_source_buckets: usize,
    /// Dwell time on one page is capped at this (a tab left open is not
    /// interest).
    #[serde(default = "default_max_dwell")]
    pub max_dwell_secs: f64,
}

fn default_path_buckets() -> usize {
    8
}
fn default_custom_buckets() -> usize {
    8
}
fn default_small_buckets() -> usize {
    4
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
