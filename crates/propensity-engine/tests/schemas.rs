//! The JSON Schemas of wire contract v1 (`config/schemas/*.schema.json`)
//! against the engine and the contract document:
//!
//! - each schema is a valid draft 2020-12 schema;
//! - every ```json example of `docs/wire-contract.md` (each preceded by a
//!   `<!-- schema: NAME -->` or `<!-- schema: NAME invalid: REASON -->`
//!   marker) validates, or fails to, as marked — and the engine agrees;
//! - engine-produced offers, scores and dead-letter lines validate;
//! - the input schemas accept exactly what the decoder accepts, on
//!   hand-written cases, on mutated records and on timestamp-like strings.
//!
//! Why one file of this size: every check compares the same JSON Schemas
//! with the same decoder, and most of the length is the hand-written cases.

mod common;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use common::mutate::{apply, mutation, valid_consents, valid_events};
use common::{
    bytes, config_from, consent, low_threshold_settings, page_view, proptest_cases, repo_root,
    test_models, RecordingSink, BASE_MS,
};
use jsonschema::Validator;
use propensity_engine::wire::{decode_consent, decode_event, decode_feedback, DeadLetterReason};
use propensity_engine::{Engine, Offer, Origin};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Value};

const MAX: usize = 65_536;
const SCHEMAS: [&str; 8] = [
    "visitor-event",
    "consent-record",
    "engagement-offer",
    "outcome-score",
    "decision",
    "conversion",
    "feedback",
    "dead-letter",
];

fn schema_json(name: &str) -> Value {
    let path = repo_root().join(format!("config/schemas/{name}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

static VALIDATORS: LazyLock<BTreeMap<&'static str, Validator>> = LazyLock::new(|| {
    SCHEMAS
        .iter()
        .map(|name| {
            let v = jsonschema::draft202012::new(&schema_json(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (*name, v)
        })
        .collect()
});

fn validator(name: &str) -> &'static Validator {
    VALIDATORS
        .get(name)
        .unwrap_or_else(|| panic!("no schema {name}"))
}

/// Validation errors as text (empty when valid).
fn errors(name: &str, instance: &Value) -> Vec<String> {
    validator(name)
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn assert_valid(name: &str, instance: &Value) {
    let errs = errors(name, instance);
    assert!(errs.is_empty(), "{name}: {instance}\n{errs:#?}");
}

/// Whether the engine decodes the record, and the reason when it does not.
fn engine_verdict(name: &str, v: &Value) -> Result<(), DeadLetterReason> {
    let b = bytes(v);
    match name {
        "visitor-event" => decode_event(&b, MAX).map(|_| ()).map_err(|e| e.reason),
        "consent-record" => decode_consent(None, Some(&b), 0, MAX)
            .map(|_| ())
            .map_err(|e| e.reason),
        "feedback" => decode_feedback(None, &b, MAX)
            .map(|_| ())
            .map_err(|e| e.reason),
        other => panic!("{other} is not an input"),
    }
}

#[test]
fn schemas_are_valid_draft_2020_12_schemas() {
    for name in SCHEMAS {
        let schema = schema_json(name);
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        assert!(
            schema["$id"]
                .as_str()
                .is_some_and(|id| id.ends_with(&format!("/{name}.schema.json"))),
            "{name}: $id"
        );
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{name} is not a valid schema: {e}");
        }
    }
}

// ------------------------------------------------------------ the document

/// A JSON example of the contract document.
struct DocExample {
    line: usize,
    schema: String,
    /// `Some(reason)` for an example of a rejected record.
    invalid: Option<String>,
    value: Value,
}

fn doc_examples() -> Vec<DocExample> {
    let path = repo_root().join("docs/wire-contract.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut marker: Option<(String, Option<String>)> = None;
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let t = line.trim();
        if let Some(rest) = t
            .strip_prefix("<!-- schema:")
            .and_then(|r| r.strip_suffix("-->"))
        {
            let rest = rest.trim();
            marker = Some(match rest.split_once(" invalid:") {
                Some((name, reason)) => (name.trim().to_owned(), Some(reason.trim().to_owned())),
                None => (rest.to_owned(), None),
            });
            continue;
        }
        if t.starts_with("```json") {
            let (schema, invalid) = marker.take().unwrap_or_else(|| {
                panic!(
                    "wire-contract.md:{}: a json block without a `<!-- schema: … -->` marker",
                    i + 1
                )
            });
            let mut body = String::new();
            for (_, l) in lines.by_ref() {
                if l.trim_start().starts_with("```") {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            let value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("wire-contract.md:{}: not JSON: {e}", i + 1));
            out.push(DocExample {
                line: i + 1,
                schema,
                invalid,
                value,
            });
        } else if !t.is_empty() && !t.starts_with("```") {
            // A marker applies to the next block only, with at most blank
            // lines between.
            marker = None;
        }
    }
    out
}

#[test]
fn every_json_example_of_the_contract_document_validates_as_marked() {
    let examples = doc_examples();
    for name in SCHEMAS {
        assert!(
            examples
                .iter()
                .any(|e| e.schema == name && e.invalid.is_none()),
            "wire-contract.md has no valid example of {name}"
        );
    }
    for ex in &examples {
        let at = format!("wire-contract.md:{} ({})", ex.line, ex.schema);
        assert!(
            SCHEMAS.contains(&ex.schema.as_str()),
            "{at}: unknown schema"
        );
        let errs = errors(&ex.schema, &ex.value);
        match &ex.invalid {
            None => {
                assert!(errs.is_empty(), "{at}: {errs:#?}");
                match ex.schema.as_str() {
                    "visitor-event" | "consent-record" | "feedback" => {
                        if let Err(r) = engine_verdict(&ex.schema, &ex.value) {
                            panic!("{at}: the engine rejects it: {r:?}");
                        }
                    }
                    "engagement-offer" => {
                        serde_json::from_value::<Offer>(ex.value.clone())
                            .unwrap_or_else(|e| panic!("{at}: not an Offer: {e}"));
                    }
                    _ => {}
                }
            }
            Some(reason) => {
                assert!(!errs.is_empty(), "{at}: marked invalid but validates");
                let verdict = engine_verdict(&ex.schema, &ex.value);
                let code = verdict.err().map(|r| r.code());
                assert_eq!(code, Some(reason.as_str()), "{at}: engine reason");
            }
        }
    }
}

// --------------------------------------------------------- engine outputs

/// Runs journeys of two visitors under the low-threshold config, plus
/// malformed records from files, Kafka and tests, and returns the sink.
fn run_outputs(seed_events: &[(usize, u8, i64)]) -> RecordingSink {
    // Control groups on, so decisions of every kind and both arms appear.
    let mut settings = low_threshold_settings();
    // (One map: with two visitors, more would leave too few offers.)
    settings.action_maps[0].holdout_fraction = 0.5;
    let config = config_from(&settings);
    let mut engine = Engine::new(config.clone(), test_models(&config));
    let mut sink = RecordingSink::default();
    let visitors = ["ana", "ben"];
    for v in visitors {
        let c = bytes(&consent(
            v,
            BASE_MS,
            &["tracking", "support", "sales", "marketing"],
        ));
        engine.process_consent(
            Some(v.as_bytes()),
            Some(&c),
            0,
            &Origin::Unknown,
            None,
            &mut sink,
        );
    }
    let urls = [
        "/",
        "/cart",
        "/checkout",
        "/webinars/x",
        "/loans",
        "/apply/now",
        "/blog/a",
    ];
    let mut t = BASE_MS;
    for (i, (who, url, dt)) in seed_events.iter().enumerate() {
        t += dt;
        let v = visitors[who % 2];
        let e = bytes(&page_view(
            &format!("e{i}"),
            v,
            t,
            &format!("https://s{}", urls[*url as usize % urls.len()]),
        ));
        let origin = Origin::Kafka {
            topic: "visitor-events".into(),
            partition: 0,
            offset: i as i64,
        };
        engine.process_event(Some(v.as_bytes()), &e, &origin, Some(t + 5), &mut sink);
    }
    // Both visitors then buy, so the sessions decided in an arm convert.
    for v in visitors {
        t += 1_000;
        let e = bytes(&page_view(
            &format!("buy-{v}"),
            v,
            t,
            "https://s/checkout/complete",
        ));
        engine.process_event(Some(v.as_bytes()), &e, &Origin::Unknown, None, &mut sink);
    }
    let file = Origin::File {
        file: "events.jsonl".into(),
        line: 9,
    };
    for bad in [&b"{\"event_id\":\"\xff\"}"[..], b"[]", b"{}", b""] {
        engine.process_event(None, bad, &file, None, &mut sink);
    }
    engine.process_event(
        Some(b"x"),
        &bytes(&page_view("k", "ana", t, "/")),
        &Origin::Unknown,
        None,
        &mut sink,
    );
    engine.process_consent(Some(b""), None, 0, &Origin::Unknown, None, &mut sink);
    engine.process_consent(
        Some(&[0xc3, 0x28]),
        None,
        0,
        &Origin::Unknown,
        None,
        &mut sink,
    );
    sink
}

fn check_outputs(sink: &RecordingSink) -> Result<(), TestCaseError> {
    for o in sink.offers() {
        let v = serde_json::to_value(o).expect("offer serializes");
        let errs = errors("engagement-offer", &v);
        prop_assert!(errs.is_empty(), "{}\n{:#?}", v, errs);
    }
    for s in sink.scores() {
        let v: Value = serde_json::from_str(&s.json).expect("score JSON");
        let errs = errors("outcome-score", &v);
        prop_assert!(errs.is_empty(), "{}\n{:#?}", v, errs);
    }
    for d in sink.decisions() {
        let v: Value = serde_json::from_str(d).expect("decision JSON");
        let errs = errors("decision", &v);
        prop_assert!(errs.is_empty(), "{}\n{:#?}", v, errs);
    }
    for c in sink.conversions() {
        let v: Value = serde_json::from_str(c).expect("conversion JSON");
        let errs = errors("conversion", &v);
        prop_assert!(errs.is_empty(), "{}\n{:#?}", v, errs);
    }
    for d in sink.dead_letters() {
        let v: Value = serde_json::from_str(&d.line).expect("dead-letter JSON");
        let errs = errors("dead-letter", &v);
        prop_assert!(errs.is_empty(), "{}\n{:#?}", v, errs);
    }
    Ok(())
}

#[test]
fn engine_outputs_validate_against_their_schemas() {
    let journey: Vec<(usize, u8, i64)> = (0..40)
        .map(|i| (i % 3 / 2, (i * 5 % 7) as u8, 6_000))
        .collect();
    let sink = run_outputs(&journey);
    assert!(sink.offers().len() >= 4, "offers: {}", sink.offers().len());
    assert!(sink.scores().len() >= 40);
    let decisions: Vec<Value> = sink
        .decisions()
        .iter()
        .map(|d| serde_json::from_str(d).expect("JSON"))
        .collect();
    for kind in ["offered", "held_out", "capped", "lower_priority"] {
        assert!(
            decisions.iter().any(|d| d["decision"] == kind),
            "no `{kind}` decision among {}",
            decisions.len()
        );
    }
    assert!(!sink.conversions().is_empty(), "no conversion was recorded");
    assert_eq!(sink.dead_letters().len(), 7);
    let lines: Vec<Value> = sink
        .dead_letters()
        .iter()
        .map(|d| serde_json::from_str(&d.line).expect("JSON"))
        .collect();
    assert!(
        lines.iter().any(|l| l.get("payload_base64").is_some()),
        "a base64 payload"
    );
    assert!(
        lines.iter().any(|l| l["source"].is_null())
            && lines.iter().any(|l| l["source"]["file"].is_string())
    );
    check_outputs(&sink).expect("outputs validate");
    // The golden outputs (another config, other journeys) validate too.
    let golden = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (file, schema) in [
        ("offers.jsonl", "engagement-offer"),
        ("scores.jsonl", "outcome-score"),
        ("dead-letters.jsonl", "dead-letter"),
    ] {
        let text = std::fs::read_to_string(golden.join(file)).expect("golden file");
        for line in text.lines() {
            assert_valid(schema, &serde_json::from_str(line).expect("JSON line"));
        }
    }
}

#[test]
fn output_schemas_reject_what_the_engine_never_writes() {
    let sink = run_outputs(&[(0, 2, 1_000), (0, 2, 6_000), (0, 2, 6_000)]);
    let offer = serde_json::to_value(sink.offers()[0]).expect("offer");
    let score: Value = serde_json::from_str(&sink.scores()[0].json).expect("score");
    let dead: Value = serde_json::from_str(&sink.dead_letters()[0].line).expect("dead letter");
    let broken = |mut v: Value, f: &dyn Fn(&mut Value)| {
        f(&mut v);
        v
    };
    let cases: Vec<(&str, Value)> = vec![
        (
            "engagement-offer",
            broken(offer.clone(), &|v| v["offer_id"] = json!("ABC")),
        ),
        (
            "engagement-offer",
            broken(offer.clone(), &|v| v["probability"] = json!(1.5)),
        ),
        (
            "engagement-offer",
            broken(offer.clone(), &|v| {
                v["event_time"] = json!("2026-11-29T10:00:00Z")
            }),
        ),
        (
            "engagement-offer",
            broken(offer.clone(), &|v| {
                v["action"] = json!({"type": "chat", "url": "x"})
            }),
        ),
        (
            "engagement-offer",
            broken(offer.clone(), &|v| v["extra"] = json!(1)),
        ),
        (
            "engagement-offer",
            broken(offer.clone(), &|v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("decided_at");
                }
            }),
        ),
        (
            "engagement-offer",
            broken(offer.clone(), &|v| {
                if let Some(o) = v["explanation"][0].as_object_mut() {
                    o.remove("label");
                }
            }),
        ),
        (
            "engagement-offer",
            broken(offer, &|v| {
                let e = v["explanation"][0].clone();
                if let Some(a) = v["explanation"].as_array_mut() {
                    a.push(e);
                }
            }),
        ),
        (
            "outcome-score",
            broken(score.clone(), &|v| v["probability"] = json!(-0.1)),
        ),
        (
            "outcome-score",
            broken(score, &|v| v["outcome"] = json!("has space")),
        ),
        (
            "dead-letter",
            broken(dead.clone(), &|v| v["reason"] = json!("weird")),
        ),
        (
            "dead-letter",
            broken(dead.clone(), &|v| v["payload"] = json!("both")),
        ),
        (
            "dead-letter",
            broken(dead.clone(), &|v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("payload_base64");
                }
            }),
        ),
        (
            "dead-letter",
            broken(dead, &|v| v["source"] = json!({"file": "f", "line": 0})),
        ),
    ];
    for (schema, v) in cases {
        assert!(!validator(schema).is_valid(&v), "{schema} accepts {v}");
    }
}

// ------------------------------------------------------ inputs vs decoder

/// Asserts that the schema and the decoder agree on `v`.
fn agree(schema: &str, v: &Value) -> Result<(), TestCaseError> {
    let schema_ok = validator(schema).is_valid(v);
    let engine = engine_verdict(schema, v);
    prop_assert_eq!(
        schema_ok,
        engine.is_ok(),
        "{}: schema says {}, engine says {:?} for {}\nschema errors: {:#?}",
        schema,
        schema_ok,
        engine,
        v,
        errors(schema, v)
    );
    Ok(())
}

fn event(overrides: Value) -> Value {
    let mut v = json!({"event_id": "e", "visitor_id": "v", "type": "chat", "timestamp": "2026-11-29T10:00:00Z", "chat": {"action": "started"}});
    for (k, x) in overrides.as_object().expect("object") {
        if x.is_null() && k.starts_with('-') {
            if let Some(o) = v.as_object_mut() {
                o.remove(&k[1..]);
            }
        } else {
            v[k] = x.clone();
        }
    }
    v
}

#[test]
fn hand_written_inputs_are_judged_alike() {
    let long_id = "é".repeat(128);
    let too_long_id = "é".repeat(129);
    let valid_events = vec![
        event(json!({})),
        event(json!({"event_id": long_id})),
        event(json!({"session_id": null, "device": null, "traffic": {"source": null}})),
        event(json!({"type": "page_view", "page": {"url": ""}})),
        event(json!({"page": {"url": "/x", "title": null}, "search": {"query": ""}})),
        event(
            json!({"type": "form_fill", "form": {"form_id": "", "action": "abandoned", "fields_completed": 4_294_967_295_u64}}),
        ),
        event(json!({"type": "custom", "custom": {"name": "n", "properties": null}})),
        event(json!({"timestamp": "2024-02-29T23:59:60.123456789-23:59"})),
        event(json!({"timestamp": "2000-02-29 00:00:00z"})),
        event(json!({"device": {"category": "other"}, "unknown": [1, {"x": null}]})),
    ];
    let invalid_events = vec![
        event(json!({"event_id": too_long_id})),
        event(json!({"event_id": ""})),
        event(json!({"-event_id": null})),
        event(json!({"visitor_id": null})),
        event(json!({"session_id": ""})),
        event(json!({"type": "scroll"})),
        event(json!({"type": null})),
        event(json!({"-chat": null})),
        event(json!({"chat": {"action": "typing"}})),
        event(json!({"chat": ["started"]})),
        event(json!({"type": "page_view"})),
        event(json!({"page": {"title": "no url"}})),
        event(json!({"page": {"url": "u".repeat(2049)}})),
        event(json!({"search": {"query": "q", "results": -1}})),
        event(json!({"search": {"query": "q", "results": 1.5}})),
        event(json!({"form": {"form_id": "f", "action": "sent"}})),
        event(
            json!({"form": {"form_id": "f", "action": "started", "fields_completed": 4_294_967_296_u64}}),
        ),
        event(json!({"custom": {"name": ""}})),
        event(json!({"custom": {"name": "n", "properties": {"a": null}}})),
        event(json!({"custom": {"name": "n", "properties": {"a": {"b": 1}}}})),
        event(json!({"device": {"category": "watch"}})),
        event(json!({"device": {"browser": 5}})),
        event(json!({"traffic": {"source": "s".repeat(257)}})),
        event(json!({"timestamp": "2026-02-29T10:00:00Z"})),
        event(json!({"timestamp": "1900-02-29T10:00:00Z"})),
        event(json!({"timestamp": "2026-11-31T10:00:00Z"})),
        event(json!({"timestamp": "2026-11-29T10:00:00"})),
        event(json!({"timestamp": "2026-11-29T24:00:00Z"})),
        event(json!({"timestamp": "2026-11-29T10:00:00+24:00"})),
        event(json!({"timestamp": "2026-11-29T10:00:00.Z"})),
        event(json!({"timestamp": "2026-11-29T10:00:00.12345678901234567890123Z"})),
        event(json!({"timestamp": "２０２６-11-29T10:00:00Z"})),
        event(json!({"timestamp": 1_795_946_400_000_i64})),
    ];
    for v in &valid_events {
        assert_valid("visitor-event", v);
        assert!(
            engine_verdict("visitor-event", v).is_ok(),
            "engine rejects {v}"
        );
    }
    for v in &invalid_events {
        assert!(
            !validator("visitor-event").is_valid(v),
            "schema accepts {v}"
        );
        assert!(
            engine_verdict("visitor-event", v).is_err(),
            "engine accepts {v}"
        );
    }

    let c = |extra: Value| {
        let mut v = json!({"visitor_id": "v", "timestamp": "2026-11-29T10:00:00Z"});
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    };
    let valid_consent = vec![
        c(json!({"purposes": {}})),
        c(json!({"purposes": {"tracking": null, "marketing": true}, "erase": null})),
        c(json!({"erase": true})),
        c(json!({"erase": true, "purposes": null, "source": null, "consent_id": "x"})),
        c(json!({"purposes": {"tracking": true, "other": "ignored"}, "erase": false})),
    ];
    let invalid_consent = vec![
        c(json!({})),
        c(json!({"erase": false})),
        c(json!({"purposes": null})),
        c(json!({"purposes": {"tracking": "yes"}})),
        c(json!({"purposes": [true]})),
        c(json!({"erase": true, "purposes": "all"})),
        c(json!({"erase": "true"})),
        c(json!({"purposes": {}, "source": 1})),
        c(json!({"purposes": {}, "visitor_id": ""})),
        c(json!({"purposes": {}, "timestamp": "now"})),
    ];
    for v in &valid_consent {
        assert_valid("consent-record", v);
        assert!(
            engine_verdict("consent-record", v).is_ok(),
            "engine rejects {v}"
        );
    }
    for v in &invalid_consent {
        assert!(
            !validator("consent-record").is_valid(v),
            "schema accepts {v}"
        );
        assert!(
            engine_verdict("consent-record", v).is_err(),
            "engine accepts {v}"
        );
    }
}

fn timestamp_like() -> impl Strategy<Value = String> {
    prop_oneof![
        // Mostly well-formed shapes with out-of-range parts.
        "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,22})?([Zz]|[+-][0-2][0-9]:[0-6][0-9])",
        // Valid calendar, random leap days and offsets.
        "(19|20|21|24)[0-9]{2}-02-(28|29|30)T12:00:00(\\.5)?(Z|[+-](0[0-9]|1[0-9]|2[0-4]):[0-5][0-9])",
        // Anything close to the format.
        "[0-9TZtz:. +-]{18,42}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(128)))]

    /// The input schemas accept exactly the records the decoder accepts.
    #[test]
    fn input_schemas_and_decoder_agree_on_mutated_records(
        which in 0usize..8,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let (schema, mut v) = if which < 5 {
            ("visitor-event", valid_events()[which].clone())
        } else {
            ("consent-record", valid_consents()[which - 5].clone())
        };
        agree(schema, &v)?;
        for m in &mutations {
            apply(&mut v, m);
        }
        agree(schema, &v)?;
    }

    /// The schemas' timestamp pattern is the decoder's RFC 3339 grammar.
    #[test]
    fn timestamp_pattern_matches_the_parser(ts in timestamp_like()) {
        agree("visitor-event", &event(json!({"timestamp": ts.clone()})))?;
        let consent = json!({"visitor_id": "v", "timestamp": ts, "erase": true});
        agree("consent-record", &consent)?;
    }

    /// Offers, scores and dead letters of random journeys validate.
    #[test]
    fn outputs_of_random_journeys_validate(
        journey in prop::collection::vec((0usize..2, any::<u8>(), 0i64..12_000), 1..40),
    ) {
        check_outputs(&run_outputs(&journey))?;
    }
}
