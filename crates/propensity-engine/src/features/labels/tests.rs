//! Tests of the feature labels: every family at zero, one and many, units,
//! inverse transforms, weak reasons and change phrases.

use super::*;

/// The vector value of an `ln(1 + x)` feature whose own value is `v`.
fn ln(v: f64) -> f32 {
    v.ln_1p() as f32
}

fn label(name: &str, x: f32) -> String {
    FeatureLabel::new(name).label(x)
}

#[test]
fn counts_read_with_zero_one_and_many() {
    for (name, want) in [
        (
            "views.pricing",
            [
                "has not viewed pricing pages",
                "viewed pricing pages once",
                "viewed pricing pages 3 times",
            ],
        ),
        (
            "views.other",
            [
                "has not viewed uncategorised pages",
                "viewed uncategorised pages once",
                "viewed uncategorised pages 3 times",
            ],
        ),
        ("events.search", ["no searches", "1 search", "3 searches"]),
        (
            "events.page_view",
            ["no page views", "1 page view", "3 page views"],
        ),
        (
            "events.form_fill",
            [
                "no form interactions",
                "1 form interaction",
                "3 form interactions",
            ],
        ),
        (
            "events.video_start",
            [
                "no video start events",
                "1 video start event",
                "3 video start events",
            ],
        ),
        (
            "events.total",
            [
                "no events yet",
                "1 event in this session",
                "3 events in this session",
            ],
        ),
        (
            "path_segment.blog",
            [
                "has not viewed pages under /blog",
                "viewed pages under /blog once",
                "viewed pages under /blog 3 times",
            ],
        ),
        (
            "path_segment.other",
            [
                "has not viewed pages under other paths",
                "viewed pages under other paths once",
                "viewed pages under other paths 3 times",
            ],
        ),
        (
            "custom_event.video_play",
            [
                "has not triggered `video_play`",
                "triggered `video_play` once",
                "triggered `video_play` 3 times",
            ],
        ),
        (
            "custom_event.other",
            [
                "has not triggered other custom events",
                "triggered other custom events once",
                "triggered other custom events 3 times",
            ],
        ),
        (
            "forms.started",
            ["started no forms", "started 1 form", "started 3 forms"],
        ),
        (
            "forms.submitted",
            [
                "submitted no forms",
                "submitted 1 form",
                "submitted 3 forms",
            ],
        ),
        (
            "forms.abandoned",
            [
                "abandoned no forms",
                "abandoned 1 form",
                "abandoned 3 forms",
            ],
        ),
        (
            "forms.max_fields_completed",
            [
                "completed no form fields",
                "completed 1 field of a form",
                "completed up to 3 fields of a form",
            ],
        ),
        (
            "chat.requested",
            [
                "has not asked for a chat",
                "asked for a chat",
                "asked for a chat 3 times",
            ],
        ),
        (
            "search.without_results",
            [
                "no searches without results",
                "1 search without results",
                "3 searches without results",
            ],
        ),
        (
            "session.distinct_pages",
            [
                "no pages viewed",
                "viewed 1 page",
                "viewed 3 different pages",
            ],
        ),
        (
            "form_started.webinar-signup",
            [
                "has not started the webinar signup form",
                "started the webinar signup form once",
                "started the webinar signup form 3 times",
            ],
        ),
        (
            "form_started.other",
            [
                "has not started other forms",
                "started other forms once",
                "started other forms 3 times",
            ],
        ),
    ] {
        for (v, want) in [0.0, 1.0, 3.0].into_iter().zip(want) {
            assert_eq!(label(name, ln(v)), want, "{name} at {v}");
            let f = FeatureLabel::new(name);
            assert_eq!(f.unit(), Unit::Count, "{name}");
            assert_eq!(f.transform(), Transform::Ln1p, "{name}");
        }
    }
    assert_eq!(
        label("views.pricing", ln(2.0)),
        "viewed pricing pages twice"
    );
}

#[test]
fn durations_read_in_seconds_minutes_and_hours() {
    for (name, secs, want) in [
        ("dwell_secs.product", 0.0, "no time on product pages"),
        ("dwell_secs.product", 45.0, "spent 45 s on product pages"),
        ("dwell_secs.product", 240.0, "spent 4 min on product pages"),
        (
            "dwell_secs.other",
            90.0,
            "spent 2 min on uncategorised pages",
        ),
        ("session.duration_secs", 0.0, "session just started"),
        ("session.duration_secs", 720.0, "session running for 12 min"),
        ("session.duration_secs", 3600.0, "session running for 1 h"),
        (
            "session.duration_secs",
            7500.0,
            "session running for 2 h 5 min",
        ),
        ("session.secs_since_last_event", 0.0, "active just now"),
        (
            "session.secs_since_last_event",
            20.0,
            "last active 20 s ago",
        ),
        (
            "session.secs_since_last_event",
            420.0,
            "no activity for 7 min",
        ),
    ] {
        assert_eq!(label(name, ln(secs)), want, "{name} at {secs}");
        assert_eq!(FeatureLabel::new(name).unit(), Unit::Seconds, "{name}");
    }
}

#[test]
fn flags_read_both_ways() {
    for (name, on, off) in [
        (
            "current_page.pricing",
            "now on a pricing page",
            "not on a pricing page now",
        ),
        (
            "current_page.about_us",
            "now on an about us page",
            "not on an about us page now",
        ),
        (
            "current_page.other",
            "now on an uncategorised page",
            "not on an uncategorised page now",
        ),
        ("device.desktop", "uses a desktop", "does not use a desktop"),
        (
            "device.mobile",
            "uses a mobile device",
            "does not use a mobile device",
        ),
        ("device.tablet", "uses a tablet", "does not use a tablet"),
        (
            "device.other",
            "uses another kind of device",
            "does not use another kind of device",
        ),
        ("browser.firefox", "uses Firefox", "does not use Firefox"),
        (
            "browser.other",
            "uses a less common browser",
            "does not use a less common browser",
        ),
        (
            "current_event.search",
            "latest event is a search",
            "latest event is not a search",
        ),
        ("os.windows", "uses Windows", "does not use Windows"),
        (
            "os.other",
            "uses a less common operating system",
            "does not use a less common operating system",
        ),
        (
            "traffic_source.google",
            "arrived from google",
            "did not arrive from google",
        ),
        (
            "traffic_source.other",
            "arrived from another source",
            "did not arrive from another source",
        ),
        (
            "referrer.news.example.com",
            "referred by news.example.com",
            "not referred by news.example.com",
        ),
        (
            "referrer.other",
            "referred by another site",
            "not referred by another site",
        ),
        ("time.weekday.mon", "on a Monday", "not on a Monday"),
        ("time.weekday.sun", "on a Sunday", "not on a Sunday"),
        ("time.weekend", "on a weekend", "on a weekday"),
    ] {
        assert_eq!(label(name, 1.0), on, "{name}");
        assert_eq!(label(name, 0.0), off, "{name}");
        let f = FeatureLabel::new(name);
        assert_eq!(
            (f.unit(), f.transform()),
            (Unit::Flag, Transform::OneHot),
            "{name}"
        );
        assert_ne!(f.family(), Family::Unknown, "{name}");
    }
}

#[test]
fn raw_features_read_as_shares_and_times() {
    assert_eq!(
        label("view_share.pricing", 0.4),
        "pricing pages are 40% of the page views"
    );
    assert_eq!(
        label("view_share.pricing", 0.0),
        "no pricing pages among the page views"
    );
    assert_eq!(label("time.hour_sin", 0.7), "the time of day");
    assert_eq!(label("time.month_cos", -0.2), "the time of year");
    let share = FeatureLabel::new("view_share.other");
    assert_eq!(
        (share.unit(), share.transform()),
        (Unit::Fraction, Transform::Raw)
    );
    assert_eq!(share.own_value(0.25), 0.25f32 as f64);
    assert_eq!(
        FeatureLabel::new("time.hour_cos").family(),
        Family::TimeOfDay
    );
    assert_eq!(
        FeatureLabel::new("time.month_sin").family(),
        Family::TimeOfYear
    );
}

#[test]
fn unknown_names_fall_back_to_themselves() {
    for name in [
        "mystery",
        "mystery.feature",
        "views.",
        "time.weekday.xyz",
        "",
    ] {
        let f = FeatureLabel::new(name);
        assert_eq!(f.family(), Family::Unknown, "{name}");
        assert_eq!(f.label(2.5), name);
        assert_eq!(f.meaning(), name);
        assert_eq!(f.own_value(2.5), 2.5);
        assert_eq!(f.unit(), Unit::Raw);
    }
}

#[test]
fn inverse_transform_round_trips() {
    // Counts and seconds: ln(1 + v) in f32 and back gives v again up to
    // 100,000 (a day is 86,400 s); beyond, f32 rounding of the log can
    // move the inverse by a unit.
    for name in [
        "views.pricing",
        "dwell_secs.pricing",
        "session.duration_secs",
    ] {
        let f = FeatureLabel::new(name);
        for v in [0u32, 1, 2, 3, 7, 10, 99, 100, 1_000, 86_400, 100_000] {
            assert_eq!(f.own_value(ln(f64::from(v))), f64::from(v), "{name} {v}");
        }
    }
    let flag = FeatureLabel::new("browser.firefox");
    assert_eq!((flag.own_value(0.0), flag.own_value(1.0)), (0.0, 1.0));
    let share = FeatureLabel::new("view_share.pricing");
    for x in [0.0f32, 0.125, 0.5, 1.0] {
        assert_eq!(share.own_value(x), f64::from(x));
    }
}

#[test]
fn weak_reasons_are_the_other_buckets_and_the_time_circles() {
    for name in [
        "views.other",
        "dwell_secs.other",
        "current_page.other",
        "browser.other",
        "path_segment.other",
        "time.hour_sin",
        "time.hour_cos",
        "time.month_sin",
        "time.month_cos",
    ] {
        assert!(FeatureLabel::new(name).is_weak_reason(), "{name}");
    }
    for name in [
        "views.pricing",
        "time.weekend",
        "time.weekday.mon",
        "browser.firefox",
        "events.total",
    ] {
        assert!(!FeatureLabel::new(name).is_weak_reason(), "{name}");
    }
}

#[test]
fn every_family_has_a_meaning() {
    for name in [
        "events.page_view",
        "events.total",
        "views.pricing",
        "views.other",
        "dwell_secs.pricing",
        "view_share.pricing",
        "path_segment.blog",
        "custom_event.x",
        "form_started.loan-application",
        "form_started.other",
        "forms.started",
        "chat.requested",
        "session.duration_secs",
        "current_page.pricing",
        "current_event.page_view",
        "device.mobile",
        "browser.firefox",
        "os.linux",
        "traffic_source.google",
        "referrer.other",
        "time.weekday.tue",
        "time.weekend",
        "time.hour_sin",
        "time.month_cos",
    ] {
        let m = FeatureLabel::new(name).meaning();
        assert!(m.ends_with('.') && m.len() > 15, "{name}: {m}");
    }
    assert_eq!(
        FeatureLabel::new("views.other").meaning(),
        "Page views of pages matching no configured category in the session."
    );
}

#[test]
fn changes_say_what_moved() {
    let f = FeatureLabel::new("current_page.product");
    assert_eq!(
        f.change_label(1.0, 0.0, 360.0),
        "last on product pages 6 min ago"
    );
    assert_eq!(f.change_label(0.0, 1.0, 10.0), "now on a product page");
    assert_eq!(
        FeatureLabel::new("time.weekend").change_label(1.0, 0.0, 10.0),
        "no longer on a weekend"
    );
    assert_eq!(
        FeatureLabel::new("views.blog").change_label(ln(2.0), ln(3.0), 120.0),
        "viewed blog pages 3 times (1 more in the last 2 min)"
    );
    assert_eq!(
        FeatureLabel::new("dwell_secs.blog").change_label(ln(60.0), ln(300.0), 0.2),
        "spent 5 min on blog pages (+4 min just now)"
    );
    assert_eq!(
        FeatureLabel::new("session.secs_since_last_event").change_label(ln(5.0), ln(420.0), 420.0),
        "no activity for 7 min"
    );
    assert_eq!(
        FeatureLabel::new("view_share.product").change_label(0.6, 0.3, 60.0),
        "product pages are 30% of the page views, down from 60%"
    );
}
