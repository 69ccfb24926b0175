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
//! - Device, browser, OS and traffic source come from the first event that
//!   states them and do not change for the rest of the session.
//! - At most [`MAX_DISTINCT_PAGES`] distinct pages are kept; the count
//!   saturates there, so memory per session stays bounded.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::compact::MaybeMs;
#[cfg(test)]
use crate::glob::url_path;
use crate::stable_hash::bucket_of;
use crate::wire::{ChatAction, DeviceCategory, Event, EventKind, FormAction};

use super::paths::PathInfo;
use super::spec::{FeatureSpec, Scalar};

/// Distinct-page hashes kept inline in [`Accumulators`] before moving to
/// the heap.
pub const INLINE_PAGES: usize = 5;

/// Counters kept inline in [`Accumulators`] (so in the visitor's one heap
/// block: every event updates and reads them, and a separate block would
/// be one more dependent cache miss per event). The shipped `[features]`
/// need 47 (nine page categories); a larger spec keeps its counters on the
/// heap, which is as correct and costs one more allocation per session.
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
    pub last_page_category: u16,
    /// Category of the current page (one-hot feature).
    pub current_category: Option<u16>,
    /// Device category, from the first event that states it.
    pub device: Option<DeviceCategory>,
    /// Browser bucket.
    pub browser_bucket: Option<u16>,
    /// OS bucket.
    pub os_bucket: Option<u16>,
    /// Traffic source bucket.
    pub source_bucket: Option<u16>,
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
            device: None,
            browser_bucket: None,
            os_bucket: None,
            source_bucket: None,
            distinct_pages: SmallVec::new(),
        }
    }

    /// Folds one event into a session's accumulators. Only unit tests call
    /// this; the engine calls [`FeatureSpec::observe_with_info`].
    #[cfg(test)]
    pub fn observe(&self, acc: &mut Accumulators, event: &Event<'_>) {
        let path = event.page.as_ref().map(|p| url_path(&p.url));
        self.observe_with_path(acc, event, path);
    }

    /// Folds one event into a session's accumulators, with the event's URL
    /// path already extracted (`path` must be `url_path` of the event's page
    /// URL).
    pub fn observe_with_path(&self, acc: &mut Accumulators, event: &Event<'_>, path: Option<&str>) {
        let info = path.map(|p| self.path_info(p));
        self.observe_with_info(acc, event, info);
    }

    /// Folds one event into a session's accumulators, with
    /// [`FeatureSpec::path_info`] of the event's URL path already known
    /// (`None` when the event has no page).
    pub fn observe_with_info(
        &self,
        acc: &mut Accumulators,
        event: &Event<'_>,
        info: Option<PathInfo>,
    ) {
        if acc.counters.len() != self.acc_len {
            // State restored under another spec: start over rather than
            // misread counters (models check the fingerprint the same way).
            *acc = self.new_accumulators();
        }
        let c = &mut acc.counters;
        c[self.acc_kinds + event.kind.index()] += 1.0;
        if let Some(info) = info {
            let cat = info.category;
            acc.current_category = Some(cat);
            if event.kind == EventKind::PageView {
                c[self.acc_views + cat as usize] += 1.0;
                if let Some(prev) = acc.last_page_view_ms.get() {
                    let secs = ((event.time.epoch_ms - prev).max(0) as f32 / 1000.0)
                        .min(self.max_dwell_secs);
                    c[self.acc_dwell + acc.last_page_category as usize] += secs;
                }
                acc.last_page_view_ms = MaybeMs::new(Some(event.time.epoch_ms));
                acc.last_page_category = cat;
                if cat == self.other() {
                    c[self.acc_paths + usize::from(info.other_bucket)] += 1.0;
                }
                let h = info.page_hash;
                if acc.distinct_pages.len() < MAX_DISTINCT_PAGES && !acc.distinct_pages.contains(&h)
                {
                    acc.distinct_pages.push(h);
                }
            }
        }
        let s = self.acc_scalars;
        if let Some(form) = &event.form {
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
        if let Some(custom) = &event.custom {
            c[self.acc_custom + bucket_of(custom.name.as_bytes(), self.custom_buckets)] += 1.0;
        }
        if let Some(d) = &event.device {
            if acc.device.is_none() {
                acc.device = d.category;
            }
            if acc.browser_bucket.is_none() {
                acc.browser_bucket = d
                    .browser
                    .as_ref()
                    .map(|b| bucket_of_lowercase(b, self.browser_buckets));
            }
            if acc.os_bucket.is_none() {
                acc.os_bucket =
                    d.os.as_ref()
                        .map(|o| bucket_of_lowercase(o, self.os_buckets));
            }
        }
        if acc.source_bucket.is_none() {
            if let Some(src) = event.traffic.as_ref().and_then(|t| t.source.as_ref()) {
                acc.source_bucket = Some(bucket_of_lowercase(src, self.source_buckets));
            }
        }
    }
}

/// `bucket_of(s.to_ascii_lowercase())` without the temporary `String` for
/// values within the wire limit (256 bytes for browser, OS and source).
fn bucket_of_lowercase(s: &str, buckets: usize) -> u16 {
    let mut buf = [0u8; 256];
    let bucket = match buf.get_mut(..s.len()) {
        Some(lower) => {
            for (d, c) in lower.iter_mut().zip(s.bytes()) {
                *d = c.to_ascii_lowercase();
            }
            bucket_of(lower, buckets)
        }
        None => bucket_of(s.to_ascii_lowercase().as_bytes(), buckets),
    };
    bucket as u16
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
        spec.observe(&mut acc, &decode_event(a, 65536).unwrap());
        spec.observe(&mut acc, &decode_event(b, 65536).unwrap());
        let mut out = Vec::new();
        spec.compute(&acc, 0, 0, 0, &mut out);
        let idx = |n: &str| spec.names().iter().position(|x| x == n).unwrap();
        assert!((out[idx("dwell_secs.product")] - 31f32.ln()).abs() < 1e-5);
        assert_eq!(out[idx("dwell_secs.checkout")], 0.0);
        assert_eq!(out[idx("current_page.checkout")], 1.0);
        assert!((out[idx("session.distinct_pages")] - 3f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn lowercase_buckets_without_the_string() {
        assert_eq!(
            bucket_of_lowercase("FireFox", 7),
            bucket_of(b"firefox", 7) as u16
        );
    }
}
