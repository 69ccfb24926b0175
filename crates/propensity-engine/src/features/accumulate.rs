//! Per-session accumulators: the raw state features are computed from, and
//! folding one event into it ([`FeatureSpec::observe_with_info`], which the
//! engine calls for every processed event).
//!
//! Invariants kept here:
//! - Accumulators of a spec hold `acc_len` counters in the spec's layout.
//!   Accumulators of another layout (state restored under another spec) are
//!   started over before an event is folded in, never misread.
//! - [`FeatureSpec::reset_accumulators`] leaves exactly what
//!   [`FeatureSpec::new_accumulators`] returns.
//! - Dwell time goes to the previous page view's category, is never
//!   negative and is capped at the spec's `max_dwell_secs`.
//! - Device, browser, OS, traffic source and referrer host come from the
//!   first event that states them and do not change for the rest of the
//!   session; open-ended values are kept as their vocabulary slot.
//! - The `session.secs_since_last_event` counter holds the gap before the
//!   latest event (0 for a session's first), never negative.
//! - At most [`MAX_DISTINCT_PAGES`] distinct pages are kept; the count
//!   saturates there, so memory per session stays bounded.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::compact::MaybeMs;
#[cfg(test)]
use crate::glob::url_path;
use crate::wire::{ChatAction, DeviceCategory, Event, EventKind, FormAction};

use super::paths::PathInfo;
use super::spec::{FeatureSpec, Scalar};
use super::vocabulary::{referrer_host, VocabularyField};

/// Distinct-page hashes kept inline in [`Accumulators`] before moving to
/// the heap.
pub const INLINE_PAGES: usize = 5;

/// Counters kept inline in [`Accumulators`] (so in the visitor's one heap
/// block: every event updates and reads them, and a separate block would
/// be one more dependent cache miss per event). The shipped `[features]`
/// (nine page categories) need 34 plus the learned path-segment and
/// custom-event groups (entries + "other" each): 48 holds the demo's 43 and
/// up to 14 entries between the two; a larger spec keeps its counters on
/// the heap, which is as correct and costs one more allocation per session.
pub const INLINE_COUNTERS: usize = 48;

/// Per-session raw state that features are computed from. Small and flat:
/// one of these lives in every active session, so it is what bounds memory
/// per visitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accumulators {
    /// Counters laid out by the spec (see `FeatureSpec::acc_*`).
    pub counters: SmallVec<[f32; INLINE_COUNTERS]>,
    /// Time of the previous page view, for dwell.
    pub last_page_view_ms: MaybeMs,
    /// Category of the previous page view.
    /// (A byte: the spec allows at most 250 categories plus "other", and
    /// the byte keeps the struct in its allocation size class.)
    pub last_page_category: u8,
    /// Category of the current page (one-hot feature).
    pub current_category: Option<u16>,
    /// Type of the latest event (`EventKind::index`; one-hot feature).
    #[serde(default)]
    pub current_kind: Option<u8>,
    /// Device category, from the first event that states it.
    pub device: Option<DeviceCategory>,
    /// Browser slot in the vocabulary group. (The aliases read state
    /// written before vocabularies; it is started over anyway, since its
    /// counters have another layout.)
    #[serde(default, alias = "browser_bucket")]
    pub browser: Option<u16>,
    /// OS slot.
    #[serde(default, alias = "os_bucket")]
    pub os: Option<u16>,
    /// Traffic source slot.
    #[serde(default, alias = "source_bucket")]
    pub source: Option<u16>,
    /// Referrer host slot (of the first event with a referrer).
    #[serde(default)]
    pub referrer: Option<u16>,
    /// Hashes of distinct page paths, capped (the feature saturates there).
    pub distinct_pages: SmallVec<[u32; INLINE_PAGES]>,
}

/// Distinct pages are counted up to this many; beyond it the count saturates
/// rather than growing memory.
const MAX_DISTINCT_PAGES: usize = 64;

impl FeatureSpec {
    /// Fresh accumulators for a new session.
    pub fn new_accumulators(&self) -> Accumulators {
        Accumulators {
            counters: SmallVec::from_elem(0.0, self.acc_len),
            ..self.empty_accumulators()
        }
    }

    /// Resets accumulators to what [`FeatureSpec::new_accumulators`]
    /// returns, reusing the counters' space (a returning visitor's new
    /// session).
    pub fn reset_accumulators(&self, acc: &mut Accumulators) {
        if acc.counters.len() == self.acc_len {
            acc.counters.fill(0.0);
            let counters = std::mem::take(&mut acc.counters);
            *acc = Accumulators {
                counters,
                ..self.empty_accumulators()
            };
        } else {
            *acc = self.new_accumulators();
        }
    }

    fn empty_accumulators(&self) -> Accumulators {
        Accumulators {
            counters: SmallVec::new(),
            last_page_view_ms: MaybeMs::NONE,
            last_page_category: 0,
            current_category: None,
            current_kind: None,
            device: None,
            browser: None,
            os: None,
            source: None,
            referrer: None,
            distinct_pages: SmallVec::new(),
        }
    }

    /// Folds one event into a session's accumulators. Only unit tests call
    /// this; the engine calls [`FeatureSpec::observe_with_info`].
    #[cfg(test)]
    pub fn observe(
        &self,
        acc: &mut Accumulators,
        event: &Event<'_>,
        previous_event_ms: Option<i64>,
    ) {
        let path = event.page.as_ref().map(|p| url_path(&p.url));
        let info = path.map(|p| self.path_info(p));
        self.observe_with_info(acc, event, info, previous_event_ms);
    }

    /// Folds one event into a session's accumulators, with
    /// [`FeatureSpec::path_info`] of the event's URL path already known
    /// (`None` when the event has no page). `previous_event_ms` is the
    /// session's latest event time before this one (`None` for its first).
    pub fn observe_with_info(
        &self,
        acc: &mut Accumulators,
        event: &Event<'_>,
        info: Option<PathInfo>,
        previous_event_ms: Option<i64>,
    ) {
        if acc.counters.len() != self.acc_len {
            // State restored under another spec: start over rather than
            // misread counters (models check the fingerprint the same way).
            *acc = self.new_accumulators();
        }
        let c = &mut acc.counters;
        c[self.acc_kinds + event.kind.index()] += 1.0;
        acc.current_kind = Some(event.kind.index() as u8);
        if let Some(info) = info {
            let cat = info.category;
            acc.current_category = Some(cat);
            if event.kind == EventKind::PageView {
                c[self.acc_views + cat as usize] += 1.0;
                if let Some(prev) = acc.last_page_view_ms.get() {
                    let secs = ((event.time.epoch_ms - prev).max(0) as f32 / 1000.0)
                        .min(self.max_dwell_secs);
                    if let Some(dwell) =
                        c.get_mut(self.acc_dwell + usize::from(acc.last_page_category))
                    {
                        *dwell += secs;
                    }
                }
                acc.last_page_view_ms = MaybeMs::new(Some(event.time.epoch_ms));
                acc.last_page_category = u8::try_from(cat).unwrap_or(u8::MAX);
                if cat == self.other() {
                    c[self.acc_paths + usize::from(info.segment)] += 1.0;
                }
                let h = info.page_hash;
                if acc.distinct_pages.len() < MAX_DISTINCT_PAGES && !acc.distinct_pages.contains(&h)
                {
                    acc.distinct_pages.push(h);
                }
            }
        }
        let s = self.acc_scalars;
        c[s + Scalar::SecsSinceLastEvent as usize] =
            previous_event_ms.map_or(0.0, |p| (event.time.epoch_ms - p).max(0) as f32 / 1000.0);
        if let Some(form) = &event.form {
            if form.action == FormAction::Started {
                let slot = self
                    .vocabulary
                    .index_of(VocabularyField::FormId, &form.form_id);
                c[self.acc_forms + usize::from(slot)] += 1.0;
            }
            match form.action {
                FormAction::Started => c[s + Scalar::FormsStarted as usize] += 1.0,
                FormAction::Submitted => c[s + Scalar::FormsSubmitted as usize] += 1.0,
                FormAction::Abandoned => c[s + Scalar::FormsAbandoned as usize] += 1.0,
            }
            if let Some(n) = form.fields_completed {
                let slot = &mut c[s + Scalar::FormFieldsMax as usize];
                *slot = slot.max(n as f32);
            }
        }
        if event.chat == Some(ChatAction::Requested) {
            c[s + Scalar::ChatRequested as usize] += 1.0;
        }
        if let Some(search) = &event.search {
            if search.results == Some(0) {
                c[s + Scalar::SearchesWithoutResults as usize] += 1.0;
            }
        }
        let vocabulary = &self.vocabulary;
        if let Some(custom) = &event.custom {
            let slot = vocabulary.index_of(VocabularyField::CustomEvent, &custom.name);
            c[self.acc_custom + usize::from(slot)] += 1.0;
        }
        let slot = |field, v: Option<&str>| v.map(|v| vocabulary.index_of(field, v));
        if let Some(d) = &event.device {
            if acc.device.is_none() {
                acc.device = d.category;
            }
            if acc.browser.is_none() {
                acc.browser = slot(VocabularyField::Browser, d.browser.as_deref());
            }
            if acc.os.is_none() {
                acc.os = slot(VocabularyField::Os, d.os.as_deref());
            }
        }
        if acc.source.is_none() {
            let source = event.traffic.as_ref().and_then(|t| t.source.as_deref());
            acc.source = slot(VocabularyField::TrafficSource, source);
        }
        if acc.referrer.is_none() {
            let referrer = event.page.as_ref().and_then(|p| p.referrer.as_deref());
            acc.referrer = slot(
                VocabularyField::ReferrerHost,
                referrer.and_then(referrer_host),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::settings::test_settings as settings;
    use crate::wire::decode_event;

    #[test]
    fn dwell_goes_to_the_previous_page() {
        let spec = FeatureSpec::compile(&settings()).unwrap();
        let mut acc = spec.new_accumulators();
        let a = br#"{"event_id":"1","visitor_id":"v","type":"page_view","timestamp":"2026-11-29T10:00:00Z","page":{"url":"https://s/products/a"}}"#;
        let b = br#"{"event_id":"2","visitor_id":"v","type":"page_view","timestamp":"2026-11-29T10:00:30Z","page":{"url":"https://s/cart"}}"#;
        spec.observe(&mut acc, &decode_event(a, 65536).unwrap(), None);
        let second = decode_event(b, 65536).unwrap();
        spec.observe(&mut acc, &second, Some(second.time.epoch_ms - 30_000));
        let mut out = Vec::new();
        spec.compute(&acc, 0, 0, 0, &mut out);
        let idx = |n: &str| spec.names().iter().position(|x| x == n).unwrap();
        assert!((out[idx("dwell_secs.product")] - 31f32.ln()).abs() < 1e-5);
        assert_eq!(out[idx("dwell_secs.checkout")], 0.0);
        assert_eq!(out[idx("current_page.checkout")], 1.0);
        assert!((out[idx("session.distinct_pages")] - 3f32.ln()).abs() < 1e-6);
        assert!((out[idx("session.secs_since_last_event")] - 31f32.ln()).abs() < 1e-5);
        assert_eq!(out[idx("view_share.product")], 0.5);
        assert_eq!(out[idx("view_share.checkout")], 0.5);
    }

    #[test]
    fn open_ended_values_take_their_vocabulary_slot() {
        let spec = FeatureSpec::compile(&settings())
            .unwrap()
            .with_vocabulary(crate::features::Vocabulary {
                browser: vec!["firefox".into(), "safari".into()],
                referrer_host: vec!["google.com".into()],
                path_segment: vec!["blog".into()],
                custom_event: vec!["video_played".into()],
                form_id: vec!["webinar-signup".into()],
                ..Default::default()
            })
            .unwrap();
        let mut acc = spec.new_accumulators();
        let lines: [&[u8]; 6] = [
            br#"{"event_id":"1","visitor_id":"v","type":"page_view","timestamp":"2026-11-29T10:00:00Z","page":{"url":"https://s/blog/a","referrer":"https://www.google.com/"},"device":{"browser":"Safari"},"traffic":{"source":"newsletter"}}"#,
            br#"{"event_id":"2","visitor_id":"v","type":"page_view","timestamp":"2026-11-29T10:00:05Z","page":{"url":"https://s/careers"},"device":{"browser":"Firefox"}}"#,
            br#"{"event_id":"3","visitor_id":"v","type":"custom","timestamp":"2026-11-29T10:00:06Z","custom":{"name":"Video_Played"}}"#,
            br#"{"event_id":"4","visitor_id":"v","type":"form_fill","timestamp":"2026-11-29T10:00:07Z","form":{"form_id":"webinar-signup","action":"started"}}"#,
            br#"{"event_id":"5","visitor_id":"v","type":"form_fill","timestamp":"2026-11-29T10:00:08Z","form":{"form_id":"webinar-signup","action":"abandoned"}}"#,
            br#"{"event_id":"6","visitor_id":"v","type":"form_fill","timestamp":"2026-11-29T10:00:09Z","form":{"form_id":"Webinar-Signup","action":"started"}}"#,
        ];
        for line in lines {
            spec.observe(&mut acc, &decode_event(line, 65536).unwrap(), None);
        }
        let mut out = Vec::new();
        spec.compute(&acc, 0, 0, 0, &mut out);
        let at = |n: &str| out[spec.names().iter().position(|x| x == n).unwrap()];
        // The first browser stated holds for the session.
        assert_eq!(at("browser.safari"), 1.0);
        assert_eq!(at("browser.firefox"), 0.0);
        assert_eq!(at("referrer.google.com"), 1.0);
        assert_eq!(at("traffic_source.other"), 1.0);
        assert_eq!(at("os.other"), 0.0, "no OS stated: no slot set");
        assert!((at("path_segment.blog") - 2f32.ln()).abs() < 1e-6);
        assert!((at("path_segment.other") - 2f32.ln()).abs() < 1e-6);
        assert!((at("custom_event.video_played") - 2f32.ln()).abs() < 1e-6);
        assert_eq!(at("custom_event.other"), 0.0);
        // Forms count their starts only; the latest event's type is one-hot.
        assert!((at("form_started.webinar-signup") - 3f32.ln()).abs() < 1e-6);
        assert_eq!(at("form_started.other"), 0.0);
        assert_eq!(at("current_event.form_fill"), 1.0);
        assert_eq!(at("current_event.custom"), 0.0);
    }
}
