//! The first of training's two replays: the engine, without models, folds
//! every record in as it will when collecting examples, and
//! [`VocabularyPass`] counts the open-ended values of the events it
//! processed. Events the consent gate drops never reach the counter, so no
//! value is learned from a visitor who did not consent.

use propensity_engine::features::{FeatureSpec, VocabularyCounter};
use propensity_engine::wire::Event;
use propensity_engine::{DeadLetter, Engine, EngineSink, ModelSet, Offer};

use anyhow::Result;

use crate::config_file::Config;

/// Counts the values of processed events (see the module comment).
pub struct VocabularyPass {
    spec: FeatureSpec,
    counter: VocabularyCounter,
}

impl EngineSink for VocabularyPass {
    fn offer(&mut self, _offer: Offer) {}
    fn dead_letter(&mut self, _dead_letter: DeadLetter<'_>) {}
    fn processed(&mut self, event: &Event<'_>, path: Option<&str>) {
        self.counter.observe(&self.spec, event, path);
    }
}

/// `config` with its features compiled with the vocabulary learned from
/// the events `replay` feeds an engine (with the configured
/// `features.vocabulary_max_values` and `features.vocabulary_min_count`).
pub fn learn_vocabulary(
    config: &Config,
    replay: impl FnOnce(&mut Engine, &mut VocabularyPass),
) -> Result<Config> {
    let spec = config.engine.features.clone();
    let (max_values, min_count) = (
        spec.settings().vocabulary_max_values,
        spec.settings().vocabulary_min_count,
    );
    let mut engine = Engine::new(
        config.engine.clone(),
        ModelSet::empty(config.engine.outcomes.len()),
    );
    let mut pass = VocabularyPass {
        spec,
        counter: VocabularyCounter::default(),
    };
    replay(&mut engine, &mut pass);
    config.with_vocabulary(pass.counter.learn(max_values, min_count))
}
