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

#[cfg(test)]
mod tests {
    use propensity_engine::replay::{replay, ReplaySources};

    use super::*;
    use crate::config_file::EMBEDDED_CONFIG;

    /// A value seen only in events of a visitor who denied consent, or who
    /// revoked it before them, is never learned, however frequent; the same
    /// value from a consenting visitor is.
    #[test]
    fn values_of_visitors_without_consent_are_not_learned() {
        let config = Config::from_text("embedded", EMBEDDED_CONFIG, std::iter::empty()).unwrap();
        let consent = [
            r#"{"visitor_id":"yes","timestamp":"2026-11-29T09:00:00Z","purposes":{"tracking":true}}"#,
            r#"{"visitor_id":"no","timestamp":"2026-11-29T09:00:00Z","purposes":{"tracking":false}}"#,
            r#"{"visitor_id":"gone","timestamp":"2026-11-29T09:00:00Z","purposes":{"tracking":true}}"#,
            r#"{"visitor_id":"gone","timestamp":"2026-11-29T09:30:00Z","purposes":{"tracking":false}}"#,
        ]
        .map(String::from);
        let mut events = Vec::new();
        for (visitor, browser, minute) in [
            ("yes", "Firefox", 0),
            ("no", "DeniedBrowser", 0),
            ("gone", "RevokedBrowser", 40),
        ] {
            for i in 0..30 {
                events.push(format!(
                    r#"{{"event_id":"{visitor}-{i}","visitor_id":"{visitor}","type":"page_view","timestamp":"2026-11-29T10:{minute:02}:{i:02}Z","page":{{"url":"https://s/x/{i}"}},"device":{{"browser":"{browser}"}}}}"#
                ));
            }
        }
        let ev: Vec<&[u8]> = events.iter().map(|l| l.as_bytes()).collect();
        let co: Vec<&[u8]> = consent.iter().map(|l| l.as_bytes()).collect();
        let sources = ReplaySources {
            events: "test",
            consent: "test",
            feedback: "",
        };
        let learned = learn_vocabulary(&config, |engine, sink| {
            replay(engine, &ev, &co, &[], &sources, sink, |_| {});
        })
        .unwrap();
        assert_eq!(
            learned.engine.features.vocabulary().browser,
            ["firefox"],
            "only the consenting visitor's browser"
        );
    }
}
