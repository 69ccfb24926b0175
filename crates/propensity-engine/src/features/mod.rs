//! Feature definitions: the spec compiled from `[features]`, the per-session
//! accumulators events update, and the one function that turns accumulators
//! into a feature vector. Training and scoring both go through the engine,
//! which folds every processed event into its session's accumulators with
//! [`FeatureSpec::observe_with_info`] and builds the vector with
//! [`FeatureSpec::compute_into`] (training records the engine's vectors as
//! its examples), so the features a model was trained on and the features it
//! is scored on cannot drift apart; the spec's fingerprint is stored in every
//! model artifact and checked at load. `FeatureSpec::compute` and
//! `FeatureSpec::observe`, the same two steps without reusable buffers or a
//! precomputed path, exist only for this module's unit tests.
//!
//! Counts and durations enter as `ln(1 + x)` (heavy-tailed behaviour data
//! otherwise lets one long session dominate a linear model); shares of the
//! session's page views by category as fractions; cyclic time (hour,
//! month) as points on the circle; categorical values one-hot. Open-ended
//! ones (browser, OS, traffic source, referrer host, path segments, custom
//! event names) get one feature per value of a vocabulary that training
//! learns from the data and stores in every artifact, plus "other", so the
//! vector length depends only on the settings and that vocabulary.
//!
//! This file is the façade: the module's public paths are re-exported here.
//! Each job lives in its own child module, the spec's methods as further
//! `impl FeatureSpec` blocks:
//! - `settings`: [`FeatureSettings`], the `[features]` table and its
//!   defaults;
//! - `spec`: [`FeatureSpec::compile`] — validation, the accumulator layout,
//!   the feature names and the fingerprint;
//! - `paths`: what a URL path means to the features ([`PathInfo`]);
//! - `accumulate`: the per-session [`Accumulators`] and folding events into
//!   them;
//! - `vocabulary`: the learned values of open-ended fields
//!   ([`Vocabulary`], [`VocabularyCounter`]);
//! - `vector`: turning accumulators into the feature vector
//!   ([`FeatureScratch`]);
//! - `tables`: precomputed values of the vector's hot arithmetic;
//! - `labels`: what a feature means to a person, read from its name alone
//!   ([`FeatureLabel`]: family, unit, inverse transform, labels).

mod accumulate;
mod labels;
mod paths;
mod settings;
mod spec;
mod tables;
mod vector;
mod vocabulary;

pub use accumulate::{Accumulators, INLINE_COUNTERS, INLINE_PAGES};
pub use labels::{Family, FeatureLabel, Transform, Unit};
pub use paths::PathInfo;
pub use settings::{FeatureSettings, PageCategorySettings};
pub use spec::FeatureSpec;
pub use vector::FeatureScratch;
pub use vocabulary::{Vocabulary, VocabularyCounter, VocabularyField};
