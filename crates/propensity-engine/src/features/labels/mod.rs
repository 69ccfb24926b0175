//! What a feature means to a person: its family, unit, transform, a
//! one-sentence meaning, the inverse of its transform (the value in the
//! feature's own units: 3 views, not ln 4) and a label for a value
//! ("viewed pricing pages 3 times"), all read from the feature's NAME.
//!
//! Invariants kept here:
//! - Everything is derived from the name alone, by its prefix, so this file
//!   does not depend on how `spec` lays the vector out. A name this file
//!   does not know falls back to itself (label and meaning are the raw name,
//!   the value is the vector value as it is): a new feature is never
//!   mislabelled, only unlabelled.
//! - Labels read well at every value, 0 included ("has not viewed pricing
//!   pages", "no searches without results"): a zero below the training mean
//!   is a common reason for a low score.
//! - Labels never contain anything of a visitor but the feature's value:
//!   the subject (category, browser, source, …) comes from the name, which
//!   comes from the configuration.
//!
//! The naming scheme: `ln(1 + x)` counts and durations (`events.{kind}`,
//! `events.total`, `views.{category}`, `dwell_secs.{category}`,
//! `path_segment.{segment}`, `custom_event.{name}`, `form_started.{form}`,
//! `forms.*`, `chat.requested`, `search.without_results`, `session.*`),
//! one-hot flags (`current_page.{category}`, `current_event.{kind}`,
//! `device.*`, `browser.*`, `os.*`, `traffic_source.*`, `referrer.*`,
//! `time.weekday.{mon..sun}`, `time.weekend`) and raw values
//! (`view_share.{category}`, `time.hour_sin` and friends). A final segment
//! `other` is the bucket of everything the configuration or the learned
//! vocabulary does not name (for page categories: pages matching no
//! category).
//!
//! (Over 600 lines: one `match` arm per feature family in each of the
//! family, meaning, label and change functions; splitting them by family
//! would scatter each family's wording over files.)

use std::fmt::Write as _;

/// How a feature's own value enters the vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// `ln(1 + x)` of a count or a duration.
    Ln1p,
    /// 1 when the session is in the named group, else 0.
    OneHot,
    /// The value as it is.
    Raw,
}

impl Transform {
    /// How the transform is written in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Transform::Ln1p => "ln(1+x)",
            Transform::OneHot => "one-hot",
            Transform::Raw => "raw",
        }
    }
}

/// The unit of a feature's own value (after inverting its transform).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A number of things.
    Count,
    /// Seconds.
    Seconds,
    /// 0 or 1.
    Flag,
    /// A fraction from 0 to 1.
    Fraction,
    /// A coordinate on a circle (sine or cosine of an hour or a month).
    Cycle,
    /// Unknown feature: the vector value.
    Raw,
}

impl Unit {
    /// How the unit is written in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Seconds => "seconds",
            Unit::Flag => "0/1",
            Unit::Fraction => "fraction",
            Unit::Cycle => "sin/cos",
            Unit::Raw => "raw",
        }
    }
}

/// Feature families, in the order listings and docs show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `events.{kind}`, `events.total`.
    Events,
    /// `views.{category}`.
    Views,
    /// `dwell_secs.{category}`.
    Dwell,
    /// `view_share.{category}`.
    ViewShare,
    /// `path_segment.{segment}`.
    PathSegment,
    /// `custom_event.{name}`.
    CustomEvent,
    /// `form_started.{form}`, `forms.*`.
    Forms,
    /// `chat.requested`, `search.without_results`.
    Engagement,
    /// `session.*`.
    Session,
    /// `current_page.{category}`.
    CurrentPage,
    /// `current_event.{kind}`.
    CurrentEvent,
    /// `device.*`.
    Device,
    /// `browser.*`.
    Browser,
    /// `os.*`.
    Os,
    /// `traffic_source.*`.
    TrafficSource,
    /// `referrer.*`.
    Referrer,
    /// `time.weekday.*`, `time.weekend`.
    Weekday,
    /// `time.hour_sin`, `time.hour_cos`.
    TimeOfDay,
    /// `time.month_sin`, `time.month_cos`.
    TimeOfYear,
    /// A name this file does not know.
    Unknown,
}

impl Family {
    /// Every family, in listing order.
    pub const ALL: [Family; 20] = [
        Family::Events,
        Family::Views,
        Family::Dwell,
        Family::ViewShare,
        Family::PathSegment,
        Family::CustomEvent,
        Family::Forms,
        Family::Engagement,
        Family::Session,
        Family::CurrentPage,
        Family::CurrentEvent,
        Family::Device,
        Family::Browser,
        Family::Os,
        Family::TrafficSource,
        Family::Referrer,
        Family::Weekday,
        Family::TimeOfDay,
        Family::TimeOfYear,
        Family::Unknown,
    ];

    /// Short name, as listings show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Events => "events",
            Family::Views => "page views",
            Family::Dwell => "dwell time",
            Family::ViewShare => "view share",
            Family::PathSegment => "path segments",
            Family::CustomEvent => "custom events",
            Family::Forms => "forms",
            Family::Engagement => "chat and search",
            Family::Session => "session",
            Family::CurrentPage => "current page",
            Family::CurrentEvent => "latest event",
            Family::Device => "device",
            Family::Browser => "browser",
            Family::Os => "operating system",
            Family::TrafficSource => "traffic source",
            Family::Referrer => "referrer",
            Family::Weekday => "weekday",
            Family::TimeOfDay => "time of day",
            Family::TimeOfYear => "time of year",
            Family::Unknown => "unknown",
        }
    }
}

/// `Some(subject)` for a named group, `None` for the `other` bucket.
type Named<'a> = Option<&'a str>;

/// A feature name, parsed. Borrowed from the name: parsing allocates
/// nothing, so it may run per feature on a hot path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind<'a> {
    Event(&'a str),
    EventsTotal,
    Views(Named<'a>),
    Dwell(Named<'a>),
    ViewShare(Named<'a>),
    PathSegment(Named<'a>),
    CustomEvent(Named<'a>),
    FormStarted(Named<'a>),
    FormsStarted,
    FormsSubmitted,
    FormsAbandoned,
    FormFieldsMax,
    ChatRequested,
    SearchNoResults,
    SessionDuration,
    DistinctPages,
    SinceLastEvent,
    CurrentPage(Named<'a>),
    CurrentEvent(&'a str),
    Device(Named<'a>),
    Browser(Named<'a>),
    Os(Named<'a>),
    Source(Named<'a>),
    Referrer(Named<'a>),
    /// Full English day name.
    Weekday(&'static str),
    Weekend,
    /// `(sin?, hour?)`: sine or cosine, of the hour or of the month.
    Cycle(bool, bool),
    Unknown,
}

const WEEKDAYS: [(&str, &str); 7] = [
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
];

/// A group's subject from the last part of a name: `None` when empty (no
/// such feature), `Some(None)` for the `other` bucket.
fn named(s: &str) -> Option<Named<'_>> {
    match s {
        "" => None,
        "other" => Some(None),
        s => Some(Some(s)),
    }
}

fn parse(name: &str) -> Kind<'_> {
    let Some((head, rest)) = name.split_once('.') else {
        return Kind::Unknown;
    };
    let parsed = match (head, rest) {
        ("events", "total") => Some(Kind::EventsTotal),
        ("events", k) if !k.is_empty() => Some(Kind::Event(k)),
        ("views", c) => named(c).map(Kind::Views),
        ("dwell_secs", c) => named(c).map(Kind::Dwell),
        ("view_share", c) => named(c).map(Kind::ViewShare),
        ("path_segment", s) => named(s).map(Kind::PathSegment),
        ("custom_event", s) => named(s).map(Kind::CustomEvent),
        ("form_started", s) => named(s).map(Kind::FormStarted),
        ("forms", "started") => Some(Kind::FormsStarted),
        ("forms", "submitted") => Some(Kind::FormsSubmitted),
        ("forms", "abandoned") => Some(Kind::FormsAbandoned),
        ("forms", "max_fields_completed") => Some(Kind::FormFieldsMax),
        ("chat", "requested") => Some(Kind::ChatRequested),
        ("search", "without_results") => Some(Kind::SearchNoResults),
        ("session", "duration_secs") => Some(Kind::SessionDuration),
        ("session", "distinct_pages") => Some(Kind::DistinctPages),
        ("session", "secs_since_last_event") => Some(Kind::SinceLastEvent),
        ("current_page", c) => named(c).map(Kind::CurrentPage),
        ("current_event", k) if !k.is_empty() => Some(Kind::CurrentEvent(k)),
        ("device", d) => named(d).map(Kind::Device),
        ("browser", b) => named(b).map(Kind::Browser),
        ("os", o) => named(o).map(Kind::Os),
        ("traffic_source", s) => named(s).map(Kind::Source),
        ("referrer", h) => named(h).map(Kind::Referrer),
        ("time", "weekend") => Some(Kind::Weekend),
        ("time", "hour_sin") => Some(Kind::Cycle(true, true)),
        ("time", "hour_cos") => Some(Kind::Cycle(false, true)),
        ("time", "month_sin") => Some(Kind::Cycle(true, false)),
        ("time", "month_cos") => Some(Kind::Cycle(false, false)),
        ("time", t) => t.strip_prefix("weekday.").and_then(|d| {
            WEEKDAYS
                .iter()
                .find(|(short, _)| *short == d)
                .map(|(_, long)| Kind::Weekday(long))
        }),
        _ => None,
    };
    parsed.unwrap_or(Kind::Unknown)
}

/// A feature as a person reads it, parsed from its name (see the module
/// doc). Cheap: it borrows the name and allocates only to build text.
#[derive(Debug, Clone, Copy)]
pub struct FeatureLabel<'a> {
    name: &'a str,
    kind: Kind<'a>,
}

impl<'a> FeatureLabel<'a> {
    /// Parses a feature name (any string: unknown names are kept as such).
    pub fn new(name: &'a str) -> Self {
        Self {
            name,
            kind: parse(name),
        }
    }

    /// The name it was made from.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The feature's family.
    pub fn family(&self) -> Family {
        match self.kind {
            Kind::Event(_) | Kind::EventsTotal => Family::Events,
            Kind::Views(_) => Family::Views,
            Kind::Dwell(_) => Family::Dwell,
            Kind::ViewShare(_) => Family::ViewShare,
            Kind::PathSegment(_) => Family::PathSegment,
            Kind::CustomEvent(_) => Family::CustomEvent,
            Kind::FormStarted(_)
            | Kind::FormsStarted
            | Kind::FormsSubmitted
            | Kind::FormsAbandoned
            | Kind::FormFieldsMax => Family::Forms,
            Kind::ChatRequested | Kind::SearchNoResults => Family::Engagement,
            Kind::SessionDuration | Kind::DistinctPages | Kind::SinceLastEvent => Family::Session,
            Kind::CurrentPage(_) => Family::CurrentPage,
            Kind::CurrentEvent(_) => Family::CurrentEvent,
            Kind::Device(_) => Family::Device,
            Kind::Browser(_) => Family::Browser,
            Kind::Os(_) => Family::Os,
            Kind::Source(_) => Family::TrafficSource,
            Kind::Referrer(_) => Family::Referrer,
            Kind::Weekday(_) | Kind::Weekend => Family::Weekday,
            Kind::Cycle(_, true) => Family::TimeOfDay,
            Kind::Cycle(_, false) => Family::TimeOfYear,
            Kind::Unknown => Family::Unknown,
        }
    }

    /// How the own value enters the vector.
    pub fn transform(&self) -> Transform {
        match self.kind {
            Kind::CurrentPage(_)
            | Kind::CurrentEvent(_)
            | Kind::Device(_)
            | Kind::Browser(_)
            | Kind::Os(_)
            | Kind::Source(_)
            | Kind::Referrer(_)
            | Kind::Weekday(_)
            | Kind::Weekend => Transform::OneHot,
            Kind::ViewShare(_) | Kind::Cycle(..) | Kind::Unknown => Transform::Raw,
            _ => Transform::Ln1p,
        }
    }

    /// The unit of the own value.
    pub fn unit(&self) -> Unit {
        match (self.transform(), self.kind) {
            (Transform::OneHot, _) => Unit::Flag,
            (_, Kind::Dwell(_) | Kind::SessionDuration | Kind::SinceLastEvent) => Unit::Seconds,
            (Transform::Ln1p, _) => Unit::Count,
            (_, Kind::ViewShare(_)) => Unit::Fraction,
            (_, Kind::Cycle(..)) => Unit::Cycle,
            _ => Unit::Raw,
        }
    }

    /// Whether this feature is a poor reason to give a person: the `other`
    /// bucket (it names nothing the reader can act on) or a sine/cosine of
    /// the time (it names no moment on its own). See
    /// [`crate::model::OutcomeModel::explain`] for how reasons are chosen.
    pub fn is_weak_reason(&self) -> bool {
        self.name.ends_with(".other") || matches!(self.kind, Kind::Cycle(..))
    }

    /// The value in the feature's own units: the transform inverted and
    /// rounded as the unit reads (counts to whole numbers, seconds to whole
    /// seconds, flags to 0/1). Unknown features give the vector value.
    pub fn own_value(&self, x: f32) -> f64 {
        let x = f64::from(x);
        match (self.transform(), self.unit()) {
            (Transform::Ln1p, _) => x.exp_m1().max(0.0).round(),
            (Transform::OneHot, _) => {
                if x >= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            _ => x,
        }
    }

    /// One sentence saying what the feature measures.
    pub fn meaning(&self) -> String {
        match self.kind {
            Kind::Event(k) => format!("Number of {} in the session.", kind_noun(k).1),
            Kind::EventsTotal => "Number of events of any kind in the session.".into(),
            Kind::Views(c) => format!("Page views of {} in the session.", pages_long(c)),
            Kind::Dwell(c) => format!(
                "Seconds spent on {} (time until the next page view, capped per page).",
                pages_long(c)
            ),
            Kind::ViewShare(c) => format!(
                "Fraction of the session's page views that were of {}.",
                pages_long(c)
            ),
            Kind::PathSegment(Some(s)) => {
                format!("Views of uncategorised pages under /{s}.")
            }
            Kind::PathSegment(None) => {
                "Views of uncategorised pages under a first path segment not named by any other feature.".into()
            }
            Kind::CustomEvent(Some(n)) => format!("Number of custom events named `{n}`."),
            Kind::CustomEvent(None) => {
                "Number of custom events with a name not named by any other feature.".into()
            }
            Kind::FormStarted(Some(form)) => format!("Number of times the form `{form}` was started."),
            Kind::FormStarted(None) => {
                "Number of times a form not named by any other feature was started.".into()
            }
            Kind::FormsStarted => "Number of forms started.".into(),
            Kind::FormsSubmitted => "Number of forms submitted.".into(),
            Kind::FormsAbandoned => "Number of forms abandoned.".into(),
            Kind::FormFieldsMax => "Most fields completed in any one form.".into(),
            Kind::ChatRequested => "Number of chat requests.".into(),
            Kind::SearchNoResults => "Number of searches that found nothing.".into(),
            Kind::SessionDuration => "Seconds since the session's first event.".into(),
            Kind::DistinctPages => "Number of different pages viewed in the session.".into(),
            Kind::SinceLastEvent => "Seconds since the visitor's previous event.".into(),
            Kind::CurrentPage(c) => {
                format!("1 when the current page is one of {}.", pages_long(c))
            }
            Kind::CurrentEvent(k) => format!(
                "1 when the latest event of the session is a {}.",
                kind_noun(k).0
            ),
            Kind::Device(d) => format!("1 when the device is {}.", device(d)),
            Kind::Browser(b) => format!("1 when the browser is {}.", named_or(b, "a less common one")),
            Kind::Os(o) => format!(
                "1 when the operating system is {}.",
                named_or(o, "a less common one")
            ),
            Kind::Source(s) => format!(
                "1 when the session's traffic source is {}.",
                named_or(s, "one not named by any other feature")
            ),
            Kind::Referrer(h) => format!(
                "1 when the referring site is {}.",
                named_or(h, "one not named by any other feature")
            ),
            Kind::Weekday(d) => format!("1 when the event is on a {d} (visitor's local time)."),
            Kind::Weekend => "1 when the event is on a Saturday or Sunday (visitor's local time).".into(),
            Kind::Cycle(sin, hour) => format!(
                "{} of the visitor's local {} on a circle (with its {} partner: the time of {}).",
                if sin { "Sine" } else { "Cosine" },
                if hour { "hour" } else { "month" },
                if sin { "cosine" } else { "sine" },
                if hour { "day" } else { "year" },
            ),
            Kind::Unknown => self.name.to_owned(),
        }
    }

    /// A short phrase for the feature at vector value `x`, e.g. "viewed
    /// pricing pages 3 times", "has not viewed pricing pages", "uses
    /// Firefox". Unknown features give their name.
    pub fn label(&self, x: f32) -> String {
        let v = self.own_value(x);
        let n = v as u64;
        let on = v >= 0.5;
        match self.kind {
            Kind::Event(k) => {
                let (one, many) = kind_noun(k);
                count_of(n, &one, &many)
            }
            Kind::EventsTotal => match n {
                0 => "no events yet".into(),
                1 => "1 event in this session".into(),
                n => format!("{n} events in this session"),
            },
            Kind::Views(c) => viewed(&pages(c), n),
            Kind::PathSegment(Some(s)) => viewed(&format!("pages under /{s}"), n),
            Kind::PathSegment(None) => viewed("pages under other paths", n),
            Kind::Dwell(c) => {
                if v < 0.5 {
                    format!("no time on {}", pages(c))
                } else {
                    format!("spent {} on {}", duration(v), pages(c))
                }
            }
            Kind::ViewShare(c) => {
                let pct = (f64::from(x) * 100.0).round();
                if pct <= 0.0 {
                    format!("no {} among the page views", pages(c))
                } else {
                    format!("{} are {pct}% of the page views", pages(c))
                }
            }
            Kind::CustomEvent(Some(e)) => triggered(&format!("`{e}`"), n),
            Kind::CustomEvent(None) => triggered("other custom events", n),
            Kind::FormStarted(Some(form)) => match n {
                0 => format!("has not started the {} form", words(form)),
                n => format!("started the {} form {}", words(form), times(n)),
            },
            Kind::FormStarted(None) => match n {
                0 => "has not started other forms".into(),
                n => format!("started other forms {}", times(n)),
            },
            Kind::FormsStarted => did("started", n, "form", "forms"),
            Kind::FormsSubmitted => did("submitted", n, "form", "forms"),
            Kind::FormsAbandoned => did("abandoned", n, "form", "forms"),
            Kind::FormFieldsMax => match n {
                0 => "completed no form fields".into(),
                1 => "completed 1 field of a form".into(),
                n => format!("completed up to {n} fields of a form"),
            },
            Kind::ChatRequested => match n {
                0 => "has not asked for a chat".into(),
                1 => "asked for a chat".into(),
                n => format!("asked for a chat {}", times(n)),
            },
            Kind::SearchNoResults => {
                count_of(n, "search without results", "searches without results")
            }
            Kind::SessionDuration => {
                if v < 1.0 {
                    "session just started".into()
                } else {
                    format!("session running for {}", duration(v))
                }
            }
            Kind::DistinctPages => match n {
                0 => "no pages viewed".into(),
                1 => "viewed 1 page".into(),
                n => format!("viewed {n} different pages"),
            },
            Kind::SinceLastEvent => {
                if v < 1.0 {
                    "active just now".into()
                } else if v < 60.0 {
                    format!("last active {} ago", duration(v))
                } else {
                    format!("no activity for {}", duration(v))
                }
            }
            Kind::CurrentPage(c) => {
                if on {
                    format!("now on {}", a_page(c))
                } else {
                    format!("not on {} now", a_page(c))
                }
            }
            Kind::CurrentEvent(k) => {
                let one = kind_noun(k).0;
                if on {
                    format!("latest event is a {one}")
                } else {
                    format!("latest event is not a {one}")
                }
            }
            Kind::Device(d) => flag(on, "uses", "does not use", &device(d)),
            Kind::Browser(b) => flag(
                on,
                "uses",
                "does not use",
                &named_or(b, "a less common browser"),
            ),
            Kind::Os(o) => flag(
                on,
                "uses",
                "does not use",
                &named_or(o, "a less common operating system"),
            ),
            Kind::Source(s) => flag(
                on,
                "arrived from",
                "did not arrive from",
                &named_or(s, "another source").to_lowercase(),
            ),
            Kind::Referrer(h) => flag(
                on,
                "referred by",
                "not referred by",
                &named_or(h, "another site").to_lowercase(),
            ),
            Kind::Weekday(d) => flag(on, "on", "not on", &format!("a {d}")),
            Kind::Weekend => {
                if on {
                    "on a weekend".into()
                } else {
                    "on a weekday".into()
                }
            }
            Kind::Cycle(_, true) => "the time of day".into(),
            Kind::Cycle(_, false) => "the time of year".into(),
            Kind::Unknown => self.name.to_owned(),
        }
    }

    /// A phrase for how the feature changed from vector value `before` to
    /// `now` over `gap_secs` seconds, for offers on a falling probability:
    /// "last on product pages 6 min ago", "viewed blog pages 3 times (1
    /// more in the last 2 min)", "no activity for 7 min". Only states what
    /// the two values show.
    pub fn change_label(&self, before: f32, now: f32, gap_secs: f64) -> String {
        let (b, n) = (self.own_value(before), self.own_value(now));
        let mut s = match (self.transform(), self.kind) {
            (Transform::OneHot, Kind::CurrentPage(c)) if b >= 0.5 && n < 0.5 => {
                return format!("last on {} {} ago", pages(c), duration(gap_secs.max(1.0)));
            }
            (Transform::OneHot, _) if b >= 0.5 && n < 0.5 => {
                return format!("no longer {}", self.label(1.0));
            }
            (_, Kind::ViewShare(_)) => {
                let was = (f64::from(before) * 100.0).round();
                let dir = if now < before { "down" } else { "up" };
                return format!("{}, {dir} from {was}%", self.label(now));
            }
            _ => self.label(now),
        };
        // Counts and durations that grew: say by how much. The session's
        // own clocks need no "more": their label is the news.
        let grew = n - b;
        let is_clock = matches!(self.kind, Kind::SessionDuration | Kind::SinceLastEvent);
        if self.transform() == Transform::Ln1p && grew >= 0.5 && !is_clock {
            let when = if gap_secs < 1.0 {
                "just now".to_owned()
            } else {
                format!("in the last {}", duration(gap_secs))
            };
            let _ = match self.unit() {
                Unit::Seconds => write!(s, " (+{} {when})", duration(grew)),
                _ => write!(s, " ({} more {when})", grew as u64),
            };
        }
        s
    }
}

/// "3 times", with "once" and "twice".
fn times(n: u64) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// "no searches", "1 search", "3 searches".
fn count_of(n: u64, one: &str, many: &str) -> String {
    match n {
        0 => format!("no {many}"),
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// "viewed pricing pages 3 times" / "has not viewed pricing pages".
fn viewed(what: &str, n: u64) -> String {
    if n == 0 {
        format!("has not viewed {what}")
    } else {
        format!("viewed {what} {}", times(n))
    }
}

/// "triggered `video_play` twice" / "has not triggered `video_play`".
fn triggered(what: &str, n: u64) -> String {
    if n == 0 {
        format!("has not triggered {what}")
    } else {
        format!("triggered {what} {}", times(n))
    }
}

/// "started 1 form", "started 2 forms", "started no forms".
fn did(verb: &str, n: u64, one: &str, many: &str) -> String {
    format!("{verb} {}", count_of(n, one, many))
}

fn flag(on: bool, yes: &str, no: &str, what: &str) -> String {
    format!("{} {what}", if on { yes } else { no })
}

/// A subject from a name segment: `_` and `-` read as spaces.
fn words(s: &str) -> String {
    s.replace(['_', '-'], " ")
}

/// "pricing pages", or "uncategorised pages" for the `other` category.
fn pages(c: Named<'_>) -> String {
    match c {
        Some(c) => format!("{} pages", words(c)),
        None => "uncategorised pages".into(),
    }
}

/// [`pages`] for meanings, where `other` needs its definition.
fn pages_long(c: Named<'_>) -> String {
    match c {
        Some(c) => format!("{} pages", words(c)),
        None => "pages matching no configured category".into(),
    }
}

/// "a pricing page", "an uncategorised page".
fn a_page(c: Named<'_>) -> String {
    match c {
        Some(c) => {
            let w = words(c);
            let article = if w.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {w} page")
        }
        None => "an uncategorised page".into(),
    }
}

fn device(d: Named<'_>) -> String {
    match d {
        Some("desktop") => "a desktop".into(),
        Some("mobile") => "a mobile device".into(),
        Some("tablet") => "a tablet".into(),
        Some(d) => format!("a {} device", words(d)),
        None => "another kind of device".into(),
    }
}

/// The named value with its first letter capitalised ("Firefox"), or the
/// phrase for the `other` bucket.
fn named_or(v: Named<'_>, other: &str) -> String {
    match v {
        Some(v) => {
            let mut c = v.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
        None => other.to_owned(),
    }
}

/// Singular and plural noun of an event kind.
fn kind_noun(k: &str) -> (String, String) {
    let (one, many) = match k {
        "page_view" => ("page view", "page views"),
        "search" => ("search", "searches"),
        "form_fill" | "form" => ("form interaction", "form interactions"),
        "chat" => ("chat message", "chat messages"),
        "custom" => ("custom event", "custom events"),
        k => {
            return (
                format!("{} event", words(k)),
                format!("{} events", words(k)),
            )
        }
    };
    (one.to_owned(), many.to_owned())
}

/// "45 s", "4 min", "1 h", "2 h 5 min".
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s < 60 {
        return format!("{s} s");
    }
    let m = (secs / 60.0).round() as u64;
    if m < 60 {
        return format!("{m} min");
    }
    match (m / 60, m % 60) {
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests;
