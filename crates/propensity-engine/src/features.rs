//! Feature definitions: the spec compiled from `[features]`, the per-session
//! accumulators events update, and the one function that turns accumulators
//! into a feature vector. Training and scoring both call
//! [`FeatureSpec::compute`], so the features a model was trained on and the
//! features it is scored on cannot drift apart; the spec's fingerprint is
//! stored in every model artifact and checked at load.
//!
//! Counts and durations enter as `ln(1 + x)` (heavy-tailed behaviour data
//! otherwise lets one long session dominate a linear model); categorical
//! values enter one-hot, unbounded ones (browser, OS, traffic source, path
//! segments, custom event names) through a fixed number of hashed buckets so
//! that the vector length never depends on the data.

use serde::{Deserialize, Serialize};

use crate::compact::{InlineVec, MaybeMs, Slots};
use crate::error::EngineError;
use crate::glob::url_path;
use crate::stable_hash::{bucket_of, stable_hash};
use crate::timestamp::hour_and_weekday;
use crate::wire::{ChatAction, DeviceCategory, Event, EventKind, FormAction};

/// Version tag mixed into the fingerprint: bump it whenever
/// [`FeatureSpec::compute`] changes meaning, so old models are refused.
const FEATURE_CODE_VERSION: &str = "propensity-features/v1";

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

/// Index of scalar accumulator slots after the per-kind/category/bucket runs.
#[derive(Clone, Copy)]
enum Scalar {
    FormsStarted = 0,
    FormsSubmitted,
    FormsAbandoned,
    FormFieldsMax,
    ChatRequested,
    SearchesWithoutResults,
}
const SCALARS: [(&str, Scalar); 6] = [
    ("forms.started", Scalar::FormsStarted),
    ("forms.submitted", Scalar::FormsSubmitted),
    ("forms.abandoned", Scalar::FormsAbandoned),
    ("forms.max_fields_completed", Scalar::FormFieldsMax),
    ("chat.requested", Scalar::ChatRequested),
    ("search.without_results", Scalar::SearchesWithoutResults),
];

/// The compiled feature spec: category matchers, accumulator layout and
/// feature names.
#[derive(Debug, Clone)]
pub struct FeatureSpec {
    /// `(path, category index, exact?)` sorted by path length, longest first.
    matchers: Vec<(String, u16, bool)>,
    /// Category names; index `categories.len()` is "other".
    categories: Vec<String>,
    path_buckets: usize,
    custom_buckets: usize,
    browser_buckets: usize,
    os_buckets: usize,
    source_buckets: usize,
    max_dwell_secs: f32,
    names: Vec<String>,
    fingerprint: String,
    // Accumulator layout: offsets of each run.
    acc_kinds: usize,
    acc_views: usize,
    acc_dwell: usize,
    acc_paths: usize,
    acc_custom: usize,
    acc_scalars: usize,
    acc_len: usize,
    /// Precomputed values of the hot arithmetic in [`FeatureSpec::compute`].
    tables: Tables,
}

/// Counters below this are looked up in [`Tables::ln_1p`].
const LN_1P_TABLE: usize = 256;

/// `ln(1 + n)` for small integers `n` and the time-of-day features for each
/// hour, computed once by the very expressions [`FeatureSpec::compute`]
/// would evaluate, so a lookup returns the same bits as the call (features
/// are identical with or without the tables; only libm calls are saved —
/// most counters are small whole numbers).
#[derive(Clone)]
struct Tables {
    ln_1p: Box<[f32; LN_1P_TABLE]>,
    hour_sin_cos: [(f32, f32); 24],
}

impl Tables {
    fn new() -> Self {
        let mut ln_1p = Box::new([0.0; LN_1P_TABLE]);
        for (n, v) in ln_1p.iter_mut().enumerate() {
            *v = (n as f32).ln_1p();
        }
        let mut hour_sin_cos = [(0.0, 0.0); 24];
        for (hour, v) in hour_sin_cos.iter_mut().enumerate() {
            let angle = hour as f32 / 24.0 * std::f32::consts::TAU;
            *v = (angle.sin(), angle.cos());
        }
        Self {
            ln_1p,
            hour_sin_cos,
        }
    }

    /// `x.ln_1p()`, from the table when `x` is a small whole number. The
    /// test compares bits, so `-0.0` (whose `ln_1p` is `-0.0`, not the
    /// table's `+0.0`) and NaN take the call.
    #[inline]
    fn ln_1p(&self, x: f32) -> f32 {
        let n = x as u32;
        if n < LN_1P_TABLE as u32 && (n as f32).to_bits() == x.to_bits() {
            self.ln_1p[n as usize]
        } else {
            x.ln_1p()
        }
    }

    /// `(sin, cos)` of the hour's angle on the 24-hour circle.
    fn hour_sin_cos(&self, hour: u32) -> (f32, f32) {
        match self.hour_sin_cos.get(hour as usize) {
            Some(v) => *v,
            None => {
                let angle = hour as f32 / 24.0 * std::f32::consts::TAU;
                (angle.sin(), angle.cos())
            }
        }
    }
}

/// Buffers reused across [`FeatureSpec::compute_into`] calls: the feature
/// vector and the indices of its non-zero entries.
#[derive(Debug, Clone, Default)]
pub struct FeatureScratch {
    values: Vec<f32>,
    /// Kept at the vector's length; the first `nnz` entries are valid.
    nonzero: Vec<u32>,
    nnz: usize,
}

impl FeatureScratch {
    /// Sets feature `k` (the vector is zero-filled first, so only values
    /// that may be non-zero are set) and lists it when it is non-zero, in
    /// the increasing order the callers keep.
    #[inline]
    fn set(&mut self, k: usize, v: f32) {
        if let Some(o) = self.values.get_mut(k) {
            *o = v;
        }
        if v != 0.0 {
            if let Some(slot) = self.nonzero.get_mut(self.nnz) {
                *slot = k as u32;
                self.nnz += 1;
            }
        }
    }

    /// Sets features `base..base + xs.len()` to `ln_1p` of a run of
    /// counters. Most counters are `+0.0`, whose feature is the `+0.0`
    /// already there: a bit mask of the others is built without branches
    /// and only those are computed (`-0.0` has other bits, so it is
    /// computed, and keeps its sign as `ln_1p` does).
    fn set_ln_1p_run(&mut self, tables: &Tables, base: usize, xs: &[f32]) {
        for (chunk, xs) in xs.chunks(64).enumerate() {
            let mut mask = 0u64;
            for (j, x) in xs.iter().enumerate() {
                mask |= u64::from(x.to_bits() != 0) << j;
            }
            while mask != 0 {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                if let Some(x) = xs.get(j) {
                    self.set(base + chunk * 64 + j, tables.ln_1p(*x));
                }
            }
        }
    }

    /// The feature vector of the last computation.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The indices of its non-zero entries, increasing (see
    /// [`crate::model::OutcomeModel::probability_sparse`]).
    pub fn nonzero(&self) -> &[u32] {
        self.nonzero.get(..self.nnz).unwrap_or_default()
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tables")
    }
}

/// Distinct-page hashes kept inline in [`Accumulators`] before moving to
/// the heap.
pub const INLINE_PAGES: usize = 5;

/// Counters kept inline in [`Accumulators`] (so in the visitor's one heap
/// block: every event updates and reads them, and a separate block would
/// be one more dependent cache miss per event). The shipped `[features]`
/// need 47 (nine page categories); a larger spec keeps its counters on the
/// heap, which is as correct and costs one more allocation per session.
pub const INLINE_COUNTERS: usize = 48;

/// What the features take from a URL path (see [`FeatureSpec::path_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathInfo {
    /// Page category ("other" = the number of categories).
    pub category: u16,
    /// Hashed bucket of the first path segment (meaningful for "other").
    pub other_bucket: u16,
    /// Hash identifying the page among a session's distinct pages.
    pub page_hash: u32,
}

/// Per-session raw state that features are computed from. Small and flat:
/// one of these lives in every active session, so it is what bounds memory
/// per visitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accumulators {
    /// Counters laid out by the spec (see `FeatureSpec::acc_*`).
    pub counters: Slots<f32, INLINE_COUNTERS>,
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
    pub distinct_pages: InlineVec<u32, INLINE_PAGES>,
}

/// Distinct pages are counted up to this many; beyond it the count saturates
/// rather than growing memory.
const MAX_DISTINCT_PAGES: usize = 64;

impl FeatureSpec {
    /// Compiles and validates `[features]`.
    pub fn compile(s: &FeatureSettings) -> Result<Self, EngineError> {
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
        for (key, v) in [
            ("features.path_hash_buckets", s.path_hash_buckets),
            ("features.custom_event_buckets", s.custom_event_buckets),
            ("features.browser_buckets", s.browser_buckets),
            ("features.os_buckets", s.os_buckets),
            ("features.traffic_source_buckets", s.traffic_source_buckets),
        ] {
            if !(1..=256).contains(&v) {
                return Err(EngineError::config(key, format!("must be 1-256, got {v}")));
            }
        }
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
        let acc_custom = acc_paths + s.path_hash_buckets;
        let acc_scalars = acc_custom + s.custom_event_buckets;
        let acc_len = acc_scalars + SCALARS.len();

        let mut spec = Self {
            matchers,
            categories,
            path_buckets: s.path_hash_buckets,
            custom_buckets: s.custom_event_buckets,
            browser_buckets: s.browser_buckets,
            os_buckets: s.os_buckets,
            source_buckets: s.traffic_source_buckets,
            max_dwell_secs: s.max_dwell_secs as f32,
            names: Vec::new(),
            fingerprint: String::new(),
            acc_kinds,
            acc_views,
            acc_dwell,
            acc_paths,
            acc_custom,
            acc_scalars,
            acc_len,
            tables: Tables::new(),
        };
        spec.names = spec.build_names();
        let canonical = serde_json::to_string(&(FEATURE_CODE_VERSION, s, &spec.names))
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
        n.extend((0..self.path_buckets).map(|i| format!("path_bucket.{i}")));
        n.extend((0..self.custom_buckets).map(|i| format!("custom_event_bucket.{i}")));
        n.extend(SCALARS.iter().map(|(name, _)| (*name).to_owned()));
        n.push("session.duration_secs".into());
        n.push("session.distinct_pages".into());
        n.extend(self.category_names().map(|c| format!("current_page.{c}")));
        n.extend(
            DeviceCategory::ALL
                .iter()
                .map(|d| format!("device.{}", d.as_str())),
        );
        n.extend((0..self.browser_buckets).map(|i| format!("browser_bucket.{i}")));
        n.extend((0..self.os_buckets).map(|i| format!("os_bucket.{i}")));
        n.extend((0..self.source_buckets).map(|i| format!("traffic_source_bucket.{i}")));
        n.extend(["time.hour_sin", "time.hour_cos", "time.weekend"].map(String::from));
        n
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

    /// Category index of a URL path ("other" = `categories.len()`).
    pub fn category_of(&self, path: &str) -> u16 {
        let b = path.as_bytes();
        for (p, idx, exact) in &self.matchers {
            let p = p.as_bytes();
            // Cheap rejections before comparing: the length, then the
            // byte after the leading `/`, where most matchers differ.
            let fits = if *exact {
                b.len() == p.len()
            } else {
                b.len() >= p.len()
            };
            if !fits || (p.len() > 1 && b.get(1) != p.get(1)) {
                continue;
            }
            if b.get(..p.len()) == Some(p) {
                return *idx;
            }
        }
        self.categories.len() as u16
    }

    fn other(&self) -> u16 {
        self.categories.len() as u16
    }

    /// Fresh accumulators for a new session.
    pub fn new_accumulators(&self) -> Accumulators {
        Accumulators {
            counters: Slots::from_elem(0.0, self.acc_len),
            ..self.empty_accumulators()
        }
    }

    /// Resets accumulators to what [`FeatureSpec::new_accumulators`]
    /// returns, reusing the counters' space (a returning visitor's new
    /// session).
    pub fn reset_accumulators(&self, acc: &mut Accumulators) {
        if acc.counters.len() == self.acc_len {
            acc.counters.fill(0.0);
            let counters = std::mem::replace(&mut acc.counters, Slots::from_elem(0.0, 0));
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
            counters: Slots::from_elem(0.0, 0),
            last_page_view_ms: MaybeMs::NONE,
            last_page_category: 0,
            current_category: None,
            device: None,
            browser_bucket: None,
            os_bucket: None,
            source_bucket: None,
            distinct_pages: InlineVec::new(),
        }
    }

    /// Folds one event into a session's accumulators.
    pub fn observe(&self, acc: &mut Accumulators, event: &Event<'_>) {
        let path = event.page.as_ref().map(|p| url_path(&p.url));
        self.observe_with_path(acc, event, path);
    }

    /// [`FeatureSpec::observe`] with the event's URL path already extracted
    /// (`path` must be `url_path` of the event's page URL; the engine needs
    /// it too and extracts it once).
    pub fn observe_with_path(&self, acc: &mut Accumulators, event: &Event<'_>, path: Option<&str>) {
        let info = path.map(|p| self.path_info(p));
        self.observe_with_info(acc, event, info);
    }

    /// What the features need to know about a URL path. A pure function of
    /// the path (under this spec), so callers may cache it: the engine does,
    /// since most events are page views of a site's few hundred pages.
    pub fn path_info(&self, path: &str) -> PathInfo {
        let category = self.category_of(path);
        let other_bucket = if category == self.other() {
            let segment = path.trim_start_matches('/').split('/').next().unwrap_or("");
            bucket_of(segment.as_bytes(), self.path_buckets) as u16
        } else {
            0
        };
        PathInfo {
            category,
            other_bucket,
            page_hash: stable_hash(path.as_bytes()) as u32,
        }
    }

    /// [`FeatureSpec::observe`] with [`FeatureSpec::path_info`] of the
    /// event's URL path already known.
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

    /// Computes the feature vector of a session after an event into `out`
    /// (resized to [`FeatureSpec::dim`]). `session_start_ms` and
    /// `local_event_ms` give duration and time-of-day.
    pub fn compute(
        &self,
        acc: &Accumulators,
        session_start_ms: i64,
        event_ms: i64,
        local_event_ms: i64,
        out: &mut Vec<f32>,
    ) {
        let mut scratch = FeatureScratch::default();
        self.compute_into(
            acc,
            session_start_ms,
            event_ms,
            local_event_ms,
            &mut scratch,
        );
        out.clear();
        out.extend_from_slice(scratch.values());
    }

    /// [`FeatureSpec::compute`] into reusable buffers, also listing the
    /// indices of the non-zero features ([`FeatureScratch::nonzero`]): most
    /// features are zero, and scoring can skip them. The one-hot groups are
    /// listed by their single index rather than by testing every slot.
    pub fn compute_into(
        &self,
        acc: &Accumulators,
        session_start_ms: i64,
        event_ms: i64,
        local_event_ms: i64,
        scratch: &mut FeatureScratch,
    ) {
        let dim = self.dim();
        scratch.values.clear();
        scratch.values.resize(dim, 0.0);
        scratch.nonzero.resize(dim, 0);
        scratch.nnz = 0;
        let c = &acc.counters;
        if c.len() != self.acc_len {
            return;
        }
        let ncat = self.categories.len() + 1;
        let t = &self.tables;
        let kinds = &c[self.acc_kinds..self.acc_kinds + EventKind::ALL.len()];
        let total = kinds.iter().fold(0.0, |sum, x| sum + x);
        scratch.set_ln_1p_run(t, 0, kinds);
        let mut i = kinds.len();
        scratch.set(i, t.ln_1p(total));
        i += 1;
        // Views, dwell, path and custom buckets and the scalars follow each
        // other in the accumulators exactly as in the vector (see `compile`
        // and `build_names`): one pass over the run.
        let run = &c[self.acc_views..self.acc_scalars + SCALARS.len()];
        scratch.set_ln_1p_run(t, i, run);
        i += run.len();
        scratch.set(
            i,
            t.ln_1p(((event_ms - session_start_ms).max(0)) as f32 / 1000.0),
        );
        scratch.set(i + 1, t.ln_1p(acc.distinct_pages.len() as f32));
        i += 2;
        let mut onehot = |idx: Option<u16>, n: usize, i: &mut usize| {
            if let Some(k) = idx {
                if (k as usize) < n {
                    scratch.set(*i + k as usize, 1.0);
                }
            }
            *i += n;
        };
        onehot(acc.current_category, ncat, &mut i);
        onehot(
            acc.device.map(|d| {
                DeviceCategory::ALL
                    .iter()
                    .position(|x| *x == d)
                    .unwrap_or(0) as u16
            }),
            DeviceCategory::ALL.len(),
            &mut i,
        );
        onehot(acc.browser_bucket, self.browser_buckets, &mut i);
        onehot(acc.os_bucket, self.os_buckets, &mut i);
        onehot(acc.source_bucket, self.source_buckets, &mut i);
        let (hour, weekday) = hour_and_weekday(local_event_ms);
        let (sin, cos) = t.hour_sin_cos(hour);
        scratch.set(i, sin);
        scratch.set(i + 1, cos);
        scratch.set(i + 2, if weekday >= 5 { 1.0 } else { 0.0 });
        debug_assert_eq!(i + 3, dim);
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
    use crate::wire::decode_event;

    fn settings() -> FeatureSettings {
        serde_json::from_value(serde_json::json!({
            "page_categories": [
                {"name": "product", "prefixes": ["/products"]},
                {"name": "checkout", "prefixes": ["/checkout", "/cart"]},
                {"name": "home", "exact": ["/"]}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn categories_by_longest_match() {
        let spec = FeatureSpec::compile(&settings()).unwrap();
        assert_eq!(spec.category_of("/products/x"), 0);
        assert_eq!(spec.category_of("/checkout/complete"), 1);
        assert_eq!(spec.category_of("/"), 2);
        assert_eq!(spec.category_of("/blog/x"), 3);
    }

    #[test]
    fn names_match_vector_length_and_fingerprint_tracks_spec() {
        let spec = FeatureSpec::compile(&settings()).unwrap();
        let acc = spec.new_accumulators();
        let mut out = Vec::new();
        spec.compute(&acc, 0, 0, 0, &mut out);
        assert_eq!(out.len(), spec.names().len());
        let mut other = settings();
        other.path_hash_buckets = 9;
        let spec2 = FeatureSpec::compile(&other).unwrap();
        assert_ne!(spec.fingerprint(), spec2.fingerprint());
        assert_eq!(
            spec.fingerprint(),
            FeatureSpec::compile(&settings()).unwrap().fingerprint()
        );
    }

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
    fn tables_give_the_bits_of_the_calls() {
        let t = Tables::new();
        for x in [
            0.0f32, 1.0, 2.0, 3.0, 17.0, 255.0, 256.0, 1e6, 0.5, 30.25, -0.0, 1e-30,
        ] {
            assert_eq!(t.ln_1p(x).to_bits(), x.ln_1p().to_bits(), "{x}");
        }
        for n in 0..300u32 {
            let x = n as f32;
            assert_eq!(t.ln_1p(x).to_bits(), x.ln_1p().to_bits(), "{x}");
        }
        for hour in 0..24u32 {
            let angle = hour as f32 / 24.0 * std::f32::consts::TAU;
            let (s, c) = t.hour_sin_cos(hour);
            assert_eq!(
                (s.to_bits(), c.to_bits()),
                (angle.sin().to_bits(), angle.cos().to_bits())
            );
        }
        assert_eq!(
            bucket_of_lowercase("FireFox", 7),
            bucket_of(b"firefox", 7) as u16
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        let mut s = settings();
        s.page_categories[1].prefixes.push("cart".into());
        let err = FeatureSpec::compile(&s).unwrap_err().to_string();
        assert!(err.contains("features.page_categories[1]"), "{err}");
    }
}
