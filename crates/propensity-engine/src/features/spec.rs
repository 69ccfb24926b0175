//! The compiled feature spec: [`FeatureSpec::compile`] validates
//! `[features]` (and [`FeatureSpec::with_vocabulary`] a learned
//! [`Vocabulary`]) and fixes everything the other files of this module read
//! — the category matchers, the vocabulary groups, the accumulator layout,
//! the feature names and the fingerprint.
//!
//! Invariants kept here:
//! - A compiled spec is valid: category names are distinct, non-empty,
//!   `[A-Za-z0-9_-]` and not `other`; at most 250 categories (category
//!   indices, "other" included, are kept as `u16`); every path starts with
//!   `/`; the vocabulary settings are in range and the vocabulary is valid
//!   (see `vocabulary`); the dwell cap is positive and finite. Errors name
//!   the offending key.
//! - Every vocabulary field has a group of its entries plus "other"; a
//!   spec without a learned vocabulary (before training) has groups of one
//!   slot, "other".
//! - The matchers are sorted longest first, exact before prefix at equal
//!   length, so the first match is the longest (see `paths`).
//! - [`FeatureSpec::names`] lists the features in vector order, and its
//!   length is [`FeatureSpec::dim`]. The counters keep the vector's order
//!   too: the event kinds, then (after the vector's `events.total`) views,
//!   dwell, path segments, custom events, forms started and scalars as one
//!   contiguous run,
//!   which `vector` reads in one pass.
//! - The fingerprint is a stable hash of the feature code version, the
//!   settings, the vocabulary and the names: equal inputs give equal
//!   fingerprints, and any change to them or to [`FEATURE_CODE_VERSION`]
//!   gives another, so models trained under another spec are refused.

use crate::error::EngineError;
use crate::stable_hash::stable_hash;
use crate::wire::{DeviceCategory, EventKind};

use super::settings::FeatureSettings;
use super::tables::Tables;
use super::vocabulary::{Vocabulary, VocabularyField, MAX_VALUES_PER_FIELD};

/// Version tag mixed into the fingerprint: bump it whenever
/// [`FeatureSpec::compute_into`] changes meaning, so old models are refused.
const FEATURE_CODE_VERSION: &str = "propensity-features/v2";

/// Weekday names of the `time.weekday.*` features, Monday first.
pub(super) const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Index of scalar accumulator slots after the per-kind/category/bucket runs.
#[derive(Clone, Copy)]
pub(super) enum Scalar {
    FormsStarted = 0,
    FormsSubmitted,
    FormsAbandoned,
    FormFieldsMax,
    ChatRequested,
    SearchesWithoutResults,
    SecsSinceLastEvent,
}
pub(super) const SCALARS: [(&str, Scalar); 7] = [
    ("forms.started", Scalar::FormsStarted),
    ("forms.submitted", Scalar::FormsSubmitted),
    ("forms.abandoned", Scalar::FormsAbandoned),
    ("forms.max_fields_completed", Scalar::FormFieldsMax),
    ("chat.requested", Scalar::ChatRequested),
    ("search.without_results", Scalar::SearchesWithoutResults),
    ("session.secs_since_last_event", Scalar::SecsSinceLastEvent),
];

/// The compiled feature spec: category matchers, accumulator layout and
/// feature names.
#[derive(Debug, Clone)]
pub struct FeatureSpec {
    /// `(path, category index, exact?)` sorted by path length, longest first.
    pub(super) matchers: Vec<(String, u16, bool)>,
    /// Category names; index `categories.len()` is "other".
    pub(super) categories: Vec<String>,
    /// What the spec was compiled from, kept to recompile it with another
    /// vocabulary.
    settings: FeatureSettings,
    pub(super) vocabulary: Vocabulary,
    pub(super) max_dwell_secs: f32,
    names: Vec<String>,
    fingerprint: String,
    // Accumulator layout: offsets of each run.
    pub(super) acc_kinds: usize,
    pub(super) acc_views: usize,
    pub(super) acc_dwell: usize,
    pub(super) acc_paths: usize,
    pub(super) acc_custom: usize,
    pub(super) acc_forms: usize,
    pub(super) acc_scalars: usize,
    pub(super) acc_len: usize,
    /// Precomputed values of the hot arithmetic in
    /// [`FeatureSpec::compute_into`].
    pub(super) tables: Tables,
}

impl FeatureSpec {
    /// Compiles and validates `[features]`, with no learned vocabulary
    /// (every open-ended value is "other" until training learns one).
    pub fn compile(s: &FeatureSettings) -> Result<Self, EngineError> {
        Self::compile_with(s, Vocabulary::default())
    }

    /// The same settings compiled with a learned vocabulary (a model
    /// artifact's, or the one training just learned).
    pub fn with_vocabulary(&self, vocabulary: Vocabulary) -> Result<Self, EngineError> {
        Self::compile_with(&self.settings, vocabulary)
    }

    fn compile_with(s: &FeatureSettings, vocabulary: Vocabulary) -> Result<Self, EngineError> {
        let mut matchers = Vec::new();
        let mut categories = Vec::new();
        for (i, c) in s.page_categories.iter().enumerate() {
            let key = format!("features.page_categories[{i}]");
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(EngineError::config(
                    format!("{key}.name"),
                    "must be 1+ characters of [A-Za-z0-9_-]",
                ));
            }
            if c.name == "other" || categories.contains(&c.name) {
                return Err(EngineError::config(
                    format!("{key}.name"),
                    format!("`{}` is reserved or declared twice", c.name),
                ));
            }
            if c.prefixes.is_empty() && c.exact.is_empty() {
                return Err(EngineError::config(
                    key,
                    "give at least one of `prefixes` or `exact`",
                ));
            }
            for p in c.prefixes.iter().chain(&c.exact) {
                if !p.starts_with('/') {
                    return Err(EngineError::config(
                        format!("{key}.prefixes"),
                        format!("path `{p}` must start with `/`"),
                    ));
                }
            }
            let idx = categories.len() as u16;
            matchers.extend(c.prefixes.iter().map(|p| (p.clone(), idx, false)));
            matchers.extend(c.exact.iter().map(|p| (p.clone(), idx, true)));
            categories.push(c.name.clone());
        }
        if categories.len() > 250 {
            return Err(EngineError::config(
                "features.page_categories",
                "at most 250 categories",
            ));
        }
        // Exact matches first at equal length, then longest prefix first.
        matchers.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(b.2.cmp(&a.2)));
        if s.vocabulary_max_values > MAX_VALUES_PER_FIELD {
            return Err(EngineError::config(
                "features.vocabulary_max_values",
                format!(
                    "must be 0-{MAX_VALUES_PER_FIELD}, got {}",
                    s.vocabulary_max_values
                ),
            ));
        }
        if s.vocabulary_min_count == 0 {
            return Err(EngineError::config(
                "features.vocabulary_min_count",
                "must be at least 1",
            ));
        }
        vocabulary.validate()?;
        if !(s.max_dwell_secs.is_finite() && s.max_dwell_secs > 0.0) {
            return Err(EngineError::config(
                "features.max_dwell_secs",
                "must be a positive number",
            ));
        }

        let ncat = categories.len() + 1;
        let acc_kinds = 0;
        let acc_views = acc_kinds + EventKind::ALL.len();
        let acc_dwell = acc_views + ncat;
        let acc_paths = acc_dwell + ncat;
        let acc_custom = acc_paths + vocabulary.path_segment.len() + 1;
        let acc_forms = acc_custom + vocabulary.custom_event.len() + 1;
        let acc_scalars = acc_forms + vocabulary.form_id.len() + 1;
        let acc_len = acc_scalars + SCALARS.len();

        let mut spec = Self {
            matchers,
            categories,
            settings: s.clone(),
            vocabulary,
            max_dwell_secs: s.max_dwell_secs as f32,
            names: Vec::new(),
            fingerprint: String::new(),
            acc_kinds,
            acc_views,
            acc_dwell,
            acc_paths,
            acc_custom,
            acc_forms,
            acc_scalars,
            acc_len,
            tables: Tables::new(),
        };
        spec.names = spec.build_names();
        let canonical =
            serde_json::to_string(&(FEATURE_CODE_VERSION, s, &spec.vocabulary, &spec.names))
                .map_err(|e| EngineError::config("features", e.to_string()))?;
        spec.fingerprint = format!("{:016x}", stable_hash(canonical.as_bytes()));
        Ok(spec)
    }

    fn category_names(&self) -> impl Iterator<Item = &str> {
        self.categories
            .iter()
            .map(String::as_str)
            .chain(std::iter::once("other"))
    }

    /// `prefix.value` for each entry of a vocabulary field, then
    /// `prefix.other`.
    fn group_names(&self, field: VocabularyField) -> impl Iterator<Item = String> + '_ {
        let prefix = field.feature_prefix();
        self.vocabulary
            .values(field)
            .iter()
            .map(String::as_str)
            .chain(std::iter::once("other"))
            .map(move |v| format!("{prefix}.{v}"))
    }

    /// Slots of a vocabulary field's group (entries plus "other").
    pub(super) fn group_len(&self, field: VocabularyField) -> usize {
        self.vocabulary.values(field).len() + 1
    }

    fn build_names(&self) -> Vec<String> {
        let mut n = Vec::new();
        n.extend(
            EventKind::ALL
                .iter()
                .map(|k| format!("events.{}", k.as_str())),
        );
        n.push("events.total".into());
        n.extend(self.category_names().map(|c| format!("views.{c}")));
        n.extend(self.category_names().map(|c| format!("dwell_secs.{c}")));
        n.extend(self.group_names(VocabularyField::PathSegment));
        n.extend(self.group_names(VocabularyField::CustomEvent));
        n.extend(self.group_names(VocabularyField::FormId));
        n.extend(SCALARS.iter().map(|(name, _)| (*name).to_owned()));
        n.push("session.duration_secs".into());
        n.push("session.distinct_pages".into());
        n.extend(self.category_names().map(|c| format!("view_share.{c}")));
        n.extend(self.category_names().map(|c| format!("current_page.{c}")));
        n.extend(
            EventKind::ALL
                .iter()
                .map(|k| format!("current_event.{}", k.as_str())),
        );
        n.extend(
            DeviceCategory::ALL
                .iter()
                .map(|d| format!("device.{}", d.as_str())),
        );
        for field in [
            VocabularyField::Browser,
            VocabularyField::Os,
            VocabularyField::TrafficSource,
            VocabularyField::ReferrerHost,
        ] {
            n.extend(self.group_names(field));
        }
        n.extend(
            [
                "time.hour_sin",
                "time.hour_cos",
                "time.month_sin",
                "time.month_cos",
            ]
            .map(String::from),
        );
        n.extend(WEEKDAYS.iter().map(|d| format!("time.weekday.{d}")));
        n.push("time.weekend".into());
        n
    }

    /// The vocabulary the spec was compiled with.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// The `[features]` settings the spec was compiled from.
    pub fn settings(&self) -> &FeatureSettings {
        &self.settings
    }

    /// Feature names, in vector order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Length of the feature vector.
    pub fn dim(&self) -> usize {
        self.names.len()
    }

    /// Fingerprint of the spec (and of the feature code version): models
    /// trained under a different fingerprint are refused.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::settings::test_settings as settings;

    #[test]
    fn names_match_vector_length_and_fingerprint_tracks_spec() {
        let spec = FeatureSpec::compile(&settings()).unwrap();
        let acc = spec.new_accumulators();
        let mut out = Vec::new();
        spec.compute(&acc, 0, 0, 0, &mut out);
        assert_eq!(out.len(), spec.names().len());
        let mut other = settings();
        other.vocabulary_min_count = 9;
        let spec2 = FeatureSpec::compile(&other).unwrap();
        assert_ne!(spec.fingerprint(), spec2.fingerprint());
        assert_eq!(
            spec.fingerprint(),
            FeatureSpec::compile(&settings()).unwrap().fingerprint()
        );
        let learned = spec
            .with_vocabulary(Vocabulary {
                browser: vec!["firefox".into()],
                custom_event: vec!["video_played".into()],
                ..Vocabulary::default()
            })
            .unwrap();
        assert_ne!(learned.fingerprint(), spec.fingerprint());
        assert_eq!(learned.dim(), spec.dim() + 2);
        assert!(learned.names().iter().any(|n| n == "browser.firefox"));
        assert!(learned
            .names()
            .iter()
            .any(|n| n == "custom_event.video_played"));
        let mut out = Vec::new();
        learned.compute(&learned.new_accumulators(), 0, 0, 0, &mut out);
        assert_eq!(out.len(), learned.dim());
    }

    #[test]
    fn bad_settings_name_the_key() {
        let mut s = settings();
        s.page_categories[1].prefixes.push("cart".into());
        let err = FeatureSpec::compile(&s).unwrap_err().to_string();
        assert!(err.contains("features.page_categories[1]"), "{err}");
    }
}
