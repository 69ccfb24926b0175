//! Vocabularies: which values of the open-ended categorical fields
//! (browser, OS, traffic source, referrer host, first path segment of
//! uncategorised pages, custom event name, form id) get a feature of their
//! own.
//! `propensity train` learns them from the consented events it trains on
//! ([`VocabularyCounter`]), stores them in every model artifact, and the
//! engine compiles its [`FeatureSpec`](super::FeatureSpec) with the
//! artifacts' vocabulary, so the features scored are the features trained.
//!
//! Invariants kept here:
//! - Values are normalised one way everywhere ([`normalise`]): trimmed,
//!   ASCII-lowercased, 1–[`MAX_VALUE_BYTES`] bytes; anything else is
//!   "other". Lookups compare case-insensitively against normalised
//!   entries, so no event needs a lowercased copy.
//! - A valid vocabulary ([`Vocabulary::validate`]) has, per field, at most
//!   [`MAX_VALUES_PER_FIELD`] distinct normalised entries; an entry's index
//!   is its feature's offset in the field's group, and the group's last
//!   slot (index = number of entries) is "other".
//! - Learning is deterministic: values are ranked by count, ties by value,
//!   so the same events always give the same vocabulary (and fingerprint).
//! - The counter's memory is bounded: past [`COUNTER_PRUNE_AT`] distinct
//!   values a field drops its values seen once. Only values far too rare
//!   to enter a vocabulary can be undercounted that way.

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::wire::{Event, EventKind};

use super::spec::FeatureSpec;

/// Longest value kept (longer ones are "other").
pub const MAX_VALUE_BYTES: usize = 64;
/// Most entries one field's vocabulary may hold (indices are `u16`).
pub const MAX_VALUES_PER_FIELD: usize = 250;
/// Distinct values a counter keeps per field before pruning singletons.
pub const COUNTER_PRUNE_AT: usize = 100_000;

/// The open-ended categorical fields, in feature order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabularyField {
    /// `device.browser`.
    Browser,
    /// `device.os`.
    Os,
    /// `traffic.source`.
    TrafficSource,
    /// Host of the session's first `page.referrer`.
    ReferrerHost,
    /// First path segment of page views no page category matches.
    PathSegment,
    /// `custom.name`.
    CustomEvent,
    /// `form.form_id` (the features count the forms started).
    FormId,
}

impl VocabularyField {
    /// Every field.
    pub const ALL: [VocabularyField; 7] = [
        VocabularyField::Browser,
        VocabularyField::Os,
        VocabularyField::TrafficSource,
        VocabularyField::ReferrerHost,
        VocabularyField::PathSegment,
        VocabularyField::CustomEvent,
        VocabularyField::FormId,
    ];

    /// The field's key in artifacts and error messages.
    pub fn key(self) -> &'static str {
        match self {
            VocabularyField::Browser => "browser",
            VocabularyField::Os => "os",
            VocabularyField::TrafficSource => "traffic_source",
            VocabularyField::ReferrerHost => "referrer_host",
            VocabularyField::PathSegment => "path_segment",
            VocabularyField::CustomEvent => "custom_event",
            VocabularyField::FormId => "form_id",
        }
    }

    /// The prefix of the field's feature names (`browser.firefox`).
    pub fn feature_prefix(self) -> &'static str {
        match self {
            VocabularyField::ReferrerHost => "referrer",
            VocabularyField::FormId => "form_started",
            other => other.key(),
        }
    }
}

/// Learned values per field (see the module invariants).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocabulary {
    /// Browser names.
    #[serde(default)]
    pub browser: Vec<String>,
    /// Operating systems.
    #[serde(default)]
    pub os: Vec<String>,
    /// Traffic sources.
    #[serde(default)]
    pub traffic_source: Vec<String>,
    /// Referrer hosts (`www.` removed).
    #[serde(default)]
    pub referrer_host: Vec<String>,
    /// First path segments of uncategorised pages.
    #[serde(default)]
    pub path_segment: Vec<String>,
    /// Custom event names.
    #[serde(default)]
    pub custom_event: Vec<String>,
    /// Form ids.
    #[serde(default)]
    pub form_id: Vec<String>,
}

impl Vocabulary {
    /// The entries of one field.
    pub fn values(&self, field: VocabularyField) -> &[String] {
        match field {
            VocabularyField::Browser => &self.browser,
            VocabularyField::Os => &self.os,
            VocabularyField::TrafficSource => &self.traffic_source,
            VocabularyField::ReferrerHost => &self.referrer_host,
            VocabularyField::PathSegment => &self.path_segment,
            VocabularyField::CustomEvent => &self.custom_event,
            VocabularyField::FormId => &self.form_id,
        }
    }

    fn values_mut(&mut self, field: VocabularyField) -> &mut Vec<String> {
        match field {
            VocabularyField::Browser => &mut self.browser,
            VocabularyField::Os => &mut self.os,
            VocabularyField::TrafficSource => &mut self.traffic_source,
            VocabularyField::ReferrerHost => &mut self.referrer_host,
            VocabularyField::PathSegment => &mut self.path_segment,
            VocabularyField::CustomEvent => &mut self.custom_event,
            VocabularyField::FormId => &mut self.form_id,
        }
    }

    /// Checks the invariants; errors name `vocabulary.<field>[i]`.
    pub fn validate(&self) -> Result<(), EngineError> {
        for field in VocabularyField::ALL {
            let values = self.values(field);
            let key = format!("vocabulary.{}", field.key());
            if values.len() > MAX_VALUES_PER_FIELD {
                return Err(EngineError::config(
                    key,
                    format!(
                        "at most {MAX_VALUES_PER_FIELD} values, got {}",
                        values.len()
                    ),
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if normalise(v) != Some(v.as_str()) {
                    return Err(EngineError::config(
                        format!("{key}[{i}]"),
                        "must be 1-64 bytes, trimmed and lowercase",
                    ));
                }
                if values[..i].contains(v) {
                    return Err(EngineError::config(
                        format!("{key}[{i}]"),
                        format!("`{v}` is listed twice"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Index of `raw` in a field's group: its entry, or the number of
    /// entries ("other") when it has none. A linear scan: vocabularies are
    /// a dozen entries by default, and it runs once per session for the
    /// device and traffic fields.
    pub fn index_of(&self, field: VocabularyField, raw: &str) -> u16 {
        let values = self.values(field);
        let position = trimmed(raw)
            .and_then(|v| values.iter().position(|e| e.eq_ignore_ascii_case(v)))
            .unwrap_or(values.len());
        position as u16
    }
}

fn trimmed(raw: &str) -> Option<&str> {
    let v = raw.trim();
    (!v.is_empty() && v.len() <= MAX_VALUE_BYTES).then_some(v)
}

/// The normal form of a value: `Some(v)` only when `v` is already trimmed,
/// lowercase and 1–[`MAX_VALUE_BYTES`] bytes (what a vocabulary may hold).
pub fn normalise(v: &str) -> Option<&str> {
    trimmed(v).filter(|t| t.len() == v.len() && !t.bytes().any(|b| b.is_ascii_uppercase()))
}

/// The host of a referrer URL, without a leading `www.`; `None` when the
/// referrer has no `scheme://host`.
pub fn referrer_host(referrer: &str) -> Option<&str> {
    let rest = referrer.split_once("://")?.1;
    let end = rest.find(['/', ':', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("www."))
        .map_or(host, |_| &host[4..]);
    (!host.is_empty()).then_some(host)
}

/// The first segment of a URL path (`/blog/x` → `blog`); `None` for `/`.
pub fn first_segment(path: &str) -> Option<&str> {
    let segment = path.trim_start_matches('/').split('/').next()?;
    (!segment.is_empty()).then_some(segment)
}

/// Counts field values of the events training replays, to learn a
/// [`Vocabulary`] from them.
#[derive(Debug, Default)]
pub struct VocabularyCounter {
    counts: [AHashMap<String, u64>; 7],
}

impl VocabularyCounter {
    /// Counts the values an event states. `path` is the URL path of its page.
    pub fn observe(&mut self, spec: &FeatureSpec, event: &Event<'_>, path: Option<&str>) {
        if let Some(d) = &event.device {
            self.count(VocabularyField::Browser, d.browser.as_deref());
            self.count(VocabularyField::Os, d.os.as_deref());
        }
        if let Some(t) = &event.traffic {
            self.count(VocabularyField::TrafficSource, t.source.as_deref());
        }
        if let Some(page) = &event.page {
            let host = page.referrer.as_deref().and_then(referrer_host);
            self.count(VocabularyField::ReferrerHost, host);
        }
        if event.kind == EventKind::PageView {
            if let Some(path) = path.filter(|p| spec.category_of(p) == spec.other()) {
                self.count(VocabularyField::PathSegment, first_segment(path));
            }
        }
        if let Some(c) = &event.custom {
            self.count(VocabularyField::CustomEvent, Some(&c.name));
        }
        if let Some(form) = &event.form {
            self.count(VocabularyField::FormId, Some(&form.form_id));
        }
    }

    fn count(&mut self, field: VocabularyField, raw: Option<&str>) {
        let Some(v) = raw.and_then(trimmed) else {
            return;
        };
        let counts = &mut self.counts[field as usize];
        let key = v.to_ascii_lowercase();
        *counts.entry(key).or_insert(0) += 1;
        if counts.len() > COUNTER_PRUNE_AT {
            counts.retain(|_, n| *n > 1);
        }
    }

    /// The vocabulary: per field, the values counted at least `min_count`
    /// times, the `max_values` most frequent (ties by value).
    pub fn learn(&self, max_values: usize, min_count: u64) -> Vocabulary {
        let mut vocabulary = Vocabulary::default();
        for field in VocabularyField::ALL {
            let mut ranked: Vec<(&String, u64)> = self.counts[field as usize]
                .iter()
                .filter(|(_, n)| **n >= min_count)
                .map(|(v, n)| (v, *n))
                .collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            *vocabulary.values_mut(field) = ranked
                .into_iter()
                .take(max_values.min(MAX_VALUES_PER_FIELD))
                .map(|(v, _)| v.clone())
                .collect();
        }
        vocabulary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::settings::test_settings as settings;
    use crate::glob::url_path;
    use crate::wire::decode_event;

    fn observe(counter: &mut VocabularyCounter, spec: &FeatureSpec, line: &str) {
        let e = decode_event(line.as_bytes(), 65536).unwrap();
        let path = e.page.as_ref().map(|p| url_path(&p.url));
        counter.observe(spec, &e, path);
    }

    #[test]
    fn learns_the_frequent_values_in_a_stable_order() {
        let spec = FeatureSpec::compile(&settings()).unwrap();
        let mut counter = VocabularyCounter::default();
        let line = |i: usize, browser: &str, url: &str| {
            format!(
                r#"{{"event_id":"{i}","visitor_id":"v","type":"page_view","timestamp":"2026-11-29T10:00:00Z","page":{{"url":"https://s{url}","referrer":"https://www.Google.com/search?q=x"}},"device":{{"browser":"{browser}"}}}}"#
            )
        };
        for i in 0..5 {
            observe(&mut counter, &spec, &line(i, "FireFox", "/blog/a"));
            observe(&mut counter, &spec, &line(i, " chrome ", "/products/x"));
        }
        observe(&mut counter, &spec, &line(9, "Opera", "/careers"));
        let v = counter.learn(10, 2);
        assert_eq!(v.browser, ["chrome", "firefox"]);
        assert_eq!(v.referrer_host, ["google.com"]);
        // Categorised pages (/products) give no path segment.
        assert_eq!(v.path_segment, ["blog"]);
        assert_eq!(counter.learn(1, 1).browser, ["chrome"]);
        assert_eq!(counter.learn(10, 1).path_segment, ["blog", "careers"]);
        v.validate().unwrap();
        assert_eq!(v.index_of(VocabularyField::Browser, "Firefox"), 1);
        assert_eq!(v.index_of(VocabularyField::Browser, "opera"), 2);
        assert_eq!(v.index_of(VocabularyField::Browser, ""), 2);
    }

    #[test]
    fn invalid_vocabularies_name_the_entry() {
        let mut v = Vocabulary {
            os: vec!["linux".into(), "linux".into()],
            ..Vocabulary::default()
        };
        let err = v.validate().unwrap_err().to_string();
        assert!(err.contains("vocabulary.os[1]"), "{err}");
        v.os = vec!["Linux".into()];
        let err = v.validate().unwrap_err().to_string();
        assert!(err.contains("vocabulary.os[0]"), "{err}");
    }

    #[test]
    fn referrer_hosts_and_segments() {
        assert_eq!(
            referrer_host("https://www.google.com/x?q"),
            Some("google.com")
        );
        assert_eq!(
            referrer_host("http://u@news.example:8080"),
            Some("news.example")
        );
        assert_eq!(referrer_host("android-app://com.x/"), Some("com.x"));
        assert_eq!(referrer_host("not a url"), None);
        assert_eq!(first_segment("/blog/post"), Some("blog"));
        assert_eq!(first_segment("/"), None);
    }
}
