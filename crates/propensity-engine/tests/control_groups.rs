//! Control groups and decision records, end to end through the engine.
//!
//! - Every map whose trigger and conditions hold on an event gets exactly
//!   one decision; the records and the counters agree, kind by kind
//!   (decisions = offered + held out + capped + no purpose + lower
//!   priority), and an `offered` decision has its offer's id.
//! - Held-out decisions never produce offers, and they consume the caps
//!   exactly as an offer would: the same traffic with the control group
//!   switched off makes the treatment visitors' offers unchanged and turns
//!   each held-out decision into an offer with the same id.
//! - The control arm holds the configured share of visitors, and a
//!   visitor's arm does not change within the period.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{
    bytes, config_from, consent, low_threshold_settings, page_view, test_models, BASE_MS,
};
use propensity_engine::control_group::HoldoutPeriod;
use propensity_engine::wire::{Conversion, DeadLetter, Decision, Offer};
use propensity_engine::{Engine, EngineConfig, EngineSink, Origin};
use serde_json::Value;

const URLS: [&str; 5] = [
    "/",
    "/products/widget",
    "/cart",
    "/checkout",
    "/webinars/ai",
];

#[derive(Default)]
struct Recorder {
    offers: Vec<Offer>,
    decisions: Vec<Value>,
    conversions: Vec<Value>,
}

impl EngineSink for Recorder {
    fn offer(&mut self, offer: Offer) {
        self.offers.push(offer);
    }
    fn dead_letter(&mut self, _dead_letter: DeadLetter<'_>) {}
    fn wants_decisions(&self) -> bool {
        true
    }
    fn decision(&mut self, decision: &Decision<'_>) {
        self.decisions
            .push(serde_json::to_value(decision).expect("a decision serializes"));
    }
    fn wants_conversions(&self) -> bool {
        true
    }
    fn conversion(&mut self, conversion: &Conversion<'_>) {
        self.conversions
            .push(serde_json::to_value(conversion).expect("a conversion serializes"));
    }
}

fn config(holdout_fraction: f64) -> Arc<EngineConfig> {
    let mut s = low_threshold_settings();
    for m in &mut s.action_maps {
        m.holdout_fraction = holdout_fraction;
    }
    s.offers.holdout_period = HoldoutPeriod::Month;
    config_from(&s)
}

/// 600 visitors; one in five lacks the `sales` purpose; each visits the
/// site in two sessions (the second 2 h later) of 8 page views 7 s apart.
fn run(config: &Arc<EngineConfig>) -> Recorder {
    let mut engine = Engine::new(config.clone(), test_models(config));
    let mut sink = Recorder::default();
    let origin = Origin::File {
        file: "control".into(),
        line: 0,
    };
    for v in 0..600 {
        let visitor = format!("cg-{v}");
        let purposes: &[&str] = if v % 5 == 0 {
            &["tracking", "support", "marketing"]
        } else {
            &["tracking", "support", "sales", "marketing"]
        };
        let grant = bytes(&consent(&visitor, BASE_MS, purposes));
        engine.process_consent(None, Some(&grant), BASE_MS, &origin, None, &mut sink);
        for session in 0..2 {
            // A third of the first sessions end in a purchase.
            let views = if session == 0 && v % 3 == 0 { 9 } else { 8 };
            for n in 0..views {
                let t = BASE_MS + session * 7_200_000 + n * 7_000;
                let path = if n == 8 {
                    "/checkout/complete"
                } else {
                    URLS[(v + n as usize) % 5]
                };
                let url = format!("https://shop.example.com{path}");
                let event = bytes(&page_view(
                    &format!("{visitor}-{session}-{n}"),
                    &visitor,
                    t,
                    &url,
                ));
                engine.process_event(None, &event, &origin, None, &mut sink);
            }
        }
    }
    let c = engine.counters();
    // Attribution, counted from the records: per map, the sessions with an
    // offered (held-out) decision, and those of them that then completed a
    // purchase (for purchase maps; the only completions are purchases).
    for (mi, map) in config.action_maps.iter().enumerate() {
        for (kind, sessions, converted) in [
            (
                "offered",
                &c.sessions_offered_by_map,
                &c.converted_offered_by_map,
            ),
            (
                "held_out",
                &c.sessions_held_out_by_map,
                &c.converted_held_out_by_map,
            ),
        ] {
            // (visitor number, session number), from the trigger event's id
            // `cg-{v}-{session}-{n}`.
            let decided: BTreeSet<(usize, usize)> = sink
                .decisions
                .iter()
                .filter(|d| d["action_map"] == map.name.as_str() && d["decision"] == kind)
                .map(|d| {
                    let id = d["trigger_event_id"].as_str().unwrap_or_default();
                    let parts: Vec<usize> = id
                        .split('-')
                        .skip(1)
                        .take(2)
                        .map(|x| x.parse().unwrap_or(0))
                        .collect();
                    (parts[0], parts[1])
                })
                .collect();
            assert_eq!(
                sessions[mi],
                decided.len() as u64,
                "{} {kind} sessions",
                map.name
            );
            let is_purchase = config.outcomes[map.outcome].name == "purchase";
            let bought = decided
                .iter()
                .filter(|&&(v, session)| is_purchase && session == 0 && v % 3 == 0)
                .count() as u64;
            assert_eq!(converted[mi], bought, "{} {kind} converted", map.name);
        }
    }
    assert!(
        c.converted_offered_by_map.iter().sum::<u64>() > 0,
        "no offered session converted"
    );
    if config.action_maps.iter().any(|m| m.holdout_threshold > 0) {
        assert!(
            c.converted_held_out_by_map.iter().sum::<u64>() > 0,
            "no held-out session converted"
        );
    }
    // The counters and the records agree, kind by kind and map by map.
    for (mi, map) in config.action_maps.iter().enumerate() {
        let count = |kind: &str| {
            sink.decisions
                .iter()
                .filter(|d| d["action_map"] == map.name.as_str() && d["decision"] == kind)
                .count() as u64
        };
        assert_eq!(count("offered"), c.offers_by_map[mi], "{}", map.name);
        assert_eq!(count("held_out"), c.held_out_by_map[mi], "{}", map.name);
        assert_eq!(count("capped"), c.suppressed_by_cap[mi], "{}", map.name);
        assert_eq!(
            count("no_purpose"),
            c.suppressed_by_purpose[mi],
            "{}",
            map.name
        );
        assert_eq!(
            count("lower_priority"),
            c.lower_priority_by_map[mi],
            "{}",
            map.name
        );
        let all = sink
            .decisions
            .iter()
            .filter(|d| d["action_map"] == map.name.as_str())
            .count() as u64;
        assert_eq!(
            all,
            count("offered")
                + count("held_out")
                + count("capped")
                + count("no_purpose")
                + count("lower_priority"),
            "{}: a decision of another kind",
            map.name
        );
    }
    sink
}

fn ids(decisions: &[Value], kind: &str) -> BTreeSet<String> {
    decisions
        .iter()
        .filter(|d| d["decision"] == kind)
        .map(|d| d["decision_id"].as_str().expect("an id").to_owned())
        .collect()
}

#[test]
fn held_out_decisions_are_the_offers_the_control_group_would_have_had() {
    let with = run(&config(0.3));
    let without = run(&config(0.0));
    assert!(ids(&without.decisions, "held_out").is_empty());
    assert!(without.decisions.iter().all(|d| d["arm"] == "treatment"));

    let offered: BTreeSet<String> = with.offers.iter().map(|o| o.offer_id.clone()).collect();
    let held_out = ids(&with.decisions, "held_out");
    assert_eq!(
        offered,
        ids(&with.decisions, "offered"),
        "offers = offered decisions"
    );
    assert!(
        offered.is_disjoint(&held_out),
        "a held-out decision made an offer"
    );
    assert!(with
        .decisions
        .iter()
        .filter(|d| d["decision"] == "held_out")
        .all(|d| d["arm"] == "control"));
    // Caps consumed alike: without the control group, exactly these offers
    // and the held-out ones go out, with the same ids (so every decision of
    // a control visitor matches the offer it would have been).
    let all_without: BTreeSet<String> = without.offers.iter().map(|o| o.offer_id.clone()).collect();
    let expected: BTreeSet<String> = offered.union(&held_out).cloned().collect();
    assert_eq!(all_without, expected);
    for kind in ["capped", "no_purpose", "lower_priority"] {
        assert!(!ids(&with.decisions, kind).is_empty(), "no {kind} decision");
    }
    assert!(held_out.len() > 100, "held out: {}", held_out.len());
}

#[test]
fn the_control_arm_holds_the_configured_share_of_visitors_for_the_period() {
    let with = run(&config(0.3));
    // visitor → map → arms seen (all events fall in one month).
    let mut arms: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for d in &with.decisions {
        arms.entry((
            d["visitor_id"].as_str().unwrap_or_default().to_owned(),
            d["action_map"].as_str().unwrap_or_default().to_owned(),
        ))
        .or_default()
        .insert(d["arm"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        arms.values().all(|a| a.len() == 1),
        "an arm changed within the month"
    );
    let control = arms.values().filter(|a| a.contains("control")).count();
    let share = control as f64 / arms.len() as f64;
    // Over ~2,000 (visitor, map) pairs the binomial deviation is about 0.01.
    assert!(
        (share - 0.3).abs() < 0.05,
        "control share {share} of {} pairs",
        arms.len()
    );
}

#[test]
fn a_holdout_fraction_outside_zero_to_one_is_refused_naming_the_key() {
    for bad in [1.0, -0.1, f64::NAN] {
        let mut s = low_threshold_settings();
        s.action_maps[0].holdout_fraction = bad;
        let err = EngineConfig::from_settings(&s)
            .expect_err("an invalid fraction")
            .to_string();
        assert!(
            err.contains("action_maps[0].holdout_fraction") && err.contains("[0, 1)"),
            "{err}"
        );
    }
}

/// Visitors whose purchase depends on whether they got the checkout chat:
/// each browses to the checkout (where the chat map fires), then buys with
/// probability `base`, plus `effect` if an offer of that map reached them.
/// Returns the map's control-group reading.
fn measured_uplift(effect: f64, seed: u64) -> propensity_engine::control_group::Uplift {
    const BASE: f64 = 0.3;
    let mut s = low_threshold_settings();
    for m in &mut s.action_maps {
        m.holdout_fraction = if m.name == "checkout-assist-chat" {
            0.5
        } else {
            0.0
        };
    }
    let config = config_from(&s);
    let mut engine = Engine::new(config.clone(), test_models(&config));
    let mut sink = Recorder::default();
    let origin = Origin::File {
        file: "uplift".into(),
        line: 0,
    };
    // A 64-bit LCG (Knuth's MMIX constants): the draws need no quality
    // beyond uniformity, and the test must not depend on a crate's stream.
    let mut state = seed;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for v in 0..4000 {
        let visitor = format!("up-{seed}-{v}");
        let t0 = BASE_MS + v as i64 * 1_000;
        let grant = bytes(&consent(
            &visitor,
            t0,
            &["tracking", "support", "sales", "marketing"],
        ));
        engine.process_consent(None, Some(&grant), t0, &origin, None, &mut sink);
        let before = sink.offers.len();
        for (n, path) in ["/", "/products/widget", "/cart", "/checkout"]
            .iter()
            .enumerate()
        {
            let t = t0 + n as i64 * 7_000;
            let url = format!("https://shop.example.com{path}");
            let event = bytes(&page_view(&format!("{visitor}-{n}"), &visitor, t, &url));
            engine.process_event(None, &event, &origin, None, &mut sink);
        }
        let chatted = sink.offers[before..]
            .iter()
            .any(|o| o.action_map == "checkout-assist-chat");
        let p = BASE + if chatted { effect } else { 0.0 };
        if uniform() < p {
            let t = t0 + 40_000;
            let url = "https://shop.example.com/checkout/complete";
            let event = bytes(&page_view(&format!("{visitor}-buy"), &visitor, t, url));
            engine.process_event(None, &event, &origin, None, &mut sink);
        }
    }
    let summary = propensity_engine::EngineSummary::new(engine.counters(), &config);
    let group = &summary.control_groups["checkout-assist-chat"];
    assert!(
        group.offered_sessions > 1000 && group.held_out_sessions > 1000,
        "{group:?}"
    );
    // The records say what the counters say: sessions per arm are the
    // sessions with an offered (held-out) decision, conversions the
    // conversion records of the arm, each session at most once.
    let sessions = |kind: &str| {
        sink.decisions
            .iter()
            .filter(|d| d["action_map"] == "checkout-assist-chat" && d["decision"] == kind)
            .map(|d| d["session_id"].to_string())
            .collect::<BTreeSet<_>>()
    };
    let converted = |arm: &str| {
        let ids: Vec<String> = sink
            .conversions
            .iter()
            .filter(|c| c["action_map"] == "checkout-assist-chat" && c["arm"] == arm)
            .map(|c| c["session_id"].to_string())
            .collect();
        let distinct = ids.iter().collect::<BTreeSet<_>>().len();
        assert_eq!(distinct, ids.len(), "a session converted twice in {arm}");
        ids.len() as u64
    };
    assert_eq!(sessions("offered").len() as u64, group.offered_sessions);
    assert_eq!(sessions("held_out").len() as u64, group.held_out_sessions);
    assert_eq!(converted("treatment"), group.offered_converted);
    assert_eq!(converted("control"), group.held_out_converted);
    group.uplift.expect("both arms have sessions")
}

/// The measured uplift recovers a true effect of offers within its
/// interval, and with no effect the interval covers 0. Each reading is a
/// 95 % interval, so over 20 seeds per effect at least 16 must cover the
/// truth (a binomial(20, 0.95) falls below that with probability 0.016),
/// the mean of the readings must be within 0.01 of it, and a large effect
/// must be detected (interval above 0) every time.
#[test]
fn the_uplift_interval_recovers_the_true_effect() {
    for effect in [0.15, 0.05, 0.0] {
        let readings: Vec<_> = (0..20)
            .map(|seed| measured_uplift(effect, 100 + seed))
            .collect();
        let covered = readings
            .iter()
            .filter(|u| u.ci_low <= effect && effect <= u.ci_high)
            .count();
        let mean = readings.iter().map(|u| u.difference).sum::<f64>() / readings.len() as f64;
        eprintln!(
            "true {effect:.2}: {covered}/20 intervals cover it; mean measured {mean:+.4}; first {:+.4} [{:+.4}, {:+.4}], {:+.1} outcomes caused",
            readings[0].difference, readings[0].ci_low, readings[0].ci_high, readings[0].incremental_outcomes
        );
        assert!(
            covered >= 16,
            "true effect {effect}: {covered}/20 intervals cover it"
        );
        assert!(
            (mean - effect).abs() < 0.01,
            "true effect {effect}: mean measured {mean}"
        );
        if effect >= 0.15 {
            assert!(
                readings.iter().all(|u| u.ci_low > 0.0),
                "a large effect went undetected"
            );
        }
    }
}

/// `offers.attribution_window_secs`: a purchase 19 s after the session's
/// latest decision (the checkout page) counts with no window and with a
/// 30 s one, not with a 10 s one, in both arms alike; the conversion
/// records follow the counters.
#[test]
fn conversions_count_only_within_the_attribution_window() {
    for (window, counted) in [(0.0, true), (30.0, true), (10.0, false)] {
        let mut s = low_threshold_settings();
        s.offers.attribution_window_secs = window;
        for m in &mut s.action_maps {
            m.holdout_fraction = 0.5;
        }
        let config = config_from(&s);
        let mut engine = Engine::new(config.clone(), test_models(&config));
        let mut sink = Recorder::default();
        let origin = Origin::Unknown;
        for v in 0..40 {
            let visitor = format!("w-{v}");
            let t0 = BASE_MS + v * 100_000;
            common::grant_all(&mut engine, &visitor, t0, &mut sink);
            for (n, path) in ["/", "/products/widget", "/cart", "/checkout/start"]
                .iter()
                .enumerate()
            {
                let url = format!("https://shop.example.com{path}");
                let e = bytes(&page_view(
                    &format!("{visitor}-{n}"),
                    &visitor,
                    t0 + n as i64 * 7_000,
                    &url,
                ));
                engine.process_event(None, &e, &origin, None, &mut sink);
            }
            let buy = bytes(&page_view(
                &format!("{visitor}-buy"),
                &visitor,
                t0 + 40_000,
                "https://shop.example.com/checkout/complete",
            ));
            engine.process_event(None, &buy, &origin, None, &mut sink);
        }
        let summary = propensity_engine::EngineSummary::new(engine.counters(), &config);
        let converted: u64 = summary
            .control_groups
            .values()
            .map(|g| g.offered_converted + g.held_out_converted)
            .sum();
        let sessions: u64 = summary
            .control_groups
            .values()
            .map(|g| g.offered_sessions + g.held_out_sessions)
            .sum();
        assert!(
            sessions > 20,
            "window {window}: {sessions} sessions decided"
        );
        assert_eq!(sink.conversions.len() as u64, converted, "window {window}");
        if counted {
            assert!(converted > 10, "window {window}: {converted} conversions");
        } else {
            assert_eq!(converted, 0, "window {window}");
        }
    }
}
