//! Decoder robustness: arbitrary bytes, JSON-ish text and mutated valid
//! records (fields dropped, types changed, objects turned into arrays,
//! truncated, bytes inserted) fed to `decode_event`, `decode_consent` and
//! the engine. Nothing panics; every failure becomes exactly one dead letter
//! with a stable reason code whose JSON line keeps the payload whole and
//! whose message never quotes a field value; whatever decodes agrees with
//! the record's JSON.

mod common;

use std::sync::{Arc, LazyLock};

use common::mutate::{
    apply, apply_text, mutation, text_mutation, valid_consents, valid_events, MARKER,
};
use common::{proptest_cases, shipped_settings, test_models, RecordingSink};
use propensity_engine::config::ConsentMode;
use propensity_engine::timestamp::parse_rfc3339;
use propensity_engine::wire::{decode_consent, decode_event, ConsentChange, DeadLetterReason};
use propensity_engine::{Engine, EngineConfig, ModelSet, Origin};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::Value;

const MAX: usize = 65_536;

/// Opt-out, so valid events are processed at once (not buffered).
static ENGINE_PARTS: LazyLock<(Arc<EngineConfig>, Arc<ModelSet>)> = LazyLock::new(|| {
    let mut s = shipped_settings();
    s.consent.mode = ConsentMode::OptOut;
    let config = common::config_from(&s);
    let models = test_models(&config);
    (config, models)
});

fn engine() -> Engine {
    Engine::new(ENGINE_PARTS.0.clone(), ENGINE_PARTS.1.clone())
}

fn origin() -> Origin {
    Origin::Kafka {
        topic: "visitor-events".into(),
        partition: 3,
        offset: 42,
    }
}

/// Standard base64 decoding (RFC 4648 §4).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The payload a dead-letter line carries, as bytes.
fn payload_of(line: &Value) -> Option<Vec<u8>> {
    match (line.get("payload"), line.get("payload_base64")) {
        (Some(Value::String(p)), None) => Some(p.as_bytes().to_vec()),
        (None, Some(Value::String(b))) => base64_decode(b),
        _ => None,
    }
}

/// Checks one dead letter against the decode error it must mirror.
fn check_dead_letter(
    sink: &RecordingSink,
    expected: Option<DeadLetterReason>,
    payload: &[u8],
) -> Result<(), TestCaseError> {
    let dls = sink.dead_letters();
    match expected {
        None => prop_assert!(dls.is_empty(), "decoded, yet dead-lettered: {:?}", dls),
        Some(reason) => {
            prop_assert_eq!(dls.len(), 1, "one dead letter per failed record");
            let dl = dls[0];
            prop_assert_eq!(dl.reason, reason);
            prop_assert!(!dl.error.is_empty());
            prop_assert!(
                !dl.error.contains(MARKER),
                "message quotes a value: {}",
                dl.error
            );
            let line: Value = serde_json::from_str(&dl.line)
                .map_err(|e| TestCaseError::fail(format!("dead-letter line is not JSON: {e}")))?;
            prop_assert_eq!(line["reason"].as_str(), Some(reason.code()));
            prop_assert_eq!(line["error"].as_str(), Some(dl.error.as_str()));
            prop_assert_eq!(
                &line["source"],
                &serde_json::json!({"topic": "visitor-events", "partition": 3, "offset": 42})
            );
            let kept = payload_of(&line);
            prop_assert_eq!(kept.as_deref(), Some(payload), "payload kept whole");
        }
    }
    Ok(())
}

/// Decodes an event record and runs it through a fresh engine.
fn check_event(bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoded = decode_event(bytes, MAX);
    let expected = decoded.as_ref().err().map(|e| e.reason);
    if let Err(e) = &decoded {
        prop_assert!(
            !e.message.contains(MARKER),
            "message quotes a value: {}",
            e.message
        );
    }
    if let Ok(event) = &decoded {
        // What decodes is a JSON object whose fields the event mirrors.
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| TestCaseError::fail(format!("decoded, but not JSON: {e}")))?;
        prop_assert!(v.is_object(), "decoded a non-object: {}", v);
        prop_assert_eq!(v["event_id"].as_str(), Some(event.event_id.as_ref()));
        prop_assert_eq!(v["visitor_id"].as_str(), Some(event.visitor_id.as_ref()));
        prop_assert_eq!(v["session_id"].as_str(), event.session_id.as_deref());
        prop_assert_eq!(v["type"].as_str(), Some(event.kind.as_str()));
        let ts = v["timestamp"].as_str().and_then(parse_rfc3339);
        prop_assert_eq!(ts, Some(event.time));
        prop_assert_eq!(
            v.get("page")
                .and_then(|p| p.get("url"))
                .and_then(Value::as_str),
            event.page.as_ref().map(|p| p.url.as_ref())
        );
    }
    let mut engine = engine();
    let mut sink = RecordingSink::default();
    engine.process_event(None, bytes, &origin(), None, &mut sink);
    check_dead_letter(&sink, expected, bytes)?;
    let c = engine.counters();
    prop_assert_eq!(c.events_consumed, 1);
    prop_assert_eq!(c.dead_lettered_total(), u64::from(expected.is_some()));
    prop_assert!(c.reconciles(), "{:?}", c);
    Ok(())
}

/// Decodes a consent record and runs it through a fresh engine.
fn check_consent(key: Option<&[u8]>, bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoded = decode_consent(key, Some(bytes), 0, MAX);
    let expected = decoded.as_ref().err().map(|e| e.reason);
    if let Err(e) = &decoded {
        prop_assert!(
            !e.message.contains(MARKER),
            "message quotes a value: {}",
            e.message
        );
    }
    if let Ok(update) = &decoded {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| TestCaseError::fail(format!("decoded, but not JSON: {e}")))?;
        prop_assert!(v.is_object(), "decoded a non-object: {}", v);
        prop_assert_eq!(v["visitor_id"].as_str(), Some(update.visitor_id.as_ref()));
        let erase = v["erase"] == Value::Bool(true);
        prop_assert_eq!(erase, update.change == ConsentChange::Erase);
    }
    let mut engine = engine();
    let mut sink = RecordingSink::default();
    engine.process_consent(key, Some(bytes), 0, &origin(), None, &mut sink);
    check_dead_letter(&sink, expected, bytes)?;
    let c = engine.counters();
    prop_assert_eq!(c.consent_consumed, 1);
    prop_assert_eq!(c.consent_applied, u64::from(expected.is_none()));
    Ok(())
}

fn json_ish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[{}\\[\\]\":, a-z0-9_.eE+-]{0,80}",
        r#"\{("(event_id|visitor_id|type|timestamp|page|url|chat|action)":("[a-z_ :0-9TZ.-]{0,24}"|[0-9]{1,3}|null|true|\{\}|\[\]),?){0,8}\}"#,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(128)))]

    #[test]
    fn arbitrary_bytes_never_panic_and_dead_letter(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_event(&bytes)?;
        check_consent(None, &bytes)?;
    }

    #[test]
    fn json_ish_text_never_panics_and_dead_letters(text in json_ish()) {
        check_event(text.as_bytes())?;
        check_consent(None, text.as_bytes())?;
    }

    #[test]
    fn mutated_events_decode_or_dead_letter(
        which in 0usize..5,
        mutations in prop::collection::vec(mutation(), 1..4),
        text in text_mutation(),
    ) {
        let mut v = valid_events()[which].clone();
        for m in &mutations {
            apply(&mut v, m);
        }
        let mut bytes = serde_json::to_vec(&v).expect("serializes");
        apply_text(&mut bytes, &text);
        check_event(&bytes)?;
    }

    #[test]
    fn mutated_consent_records_decode_or_dead_letter(
        which in 0usize..3,
        mutations in prop::collection::vec(mutation(), 1..4),
        text in text_mutation(),
        keyed in any::<bool>(),
    ) {
        let mut v = valid_consents()[which].clone();
        for m in &mutations {
            apply(&mut v, m);
        }
        let key = v["visitor_id"].as_str().map(|s| s.as_bytes().to_vec());
        let mut bytes = serde_json::to_vec(&v).expect("serializes");
        apply_text(&mut bytes, &text);
        check_consent(if keyed { key.as_deref() } else { None }, &bytes)?;
    }

    #[test]
    fn tombstones_with_any_key_erase_or_dead_letter(key in prop::collection::vec(any::<u8>(), 0..140)) {
        let mut engine = engine();
        let mut sink = RecordingSink::default();
        engine.process_consent(Some(&key), None, 1_000, &origin(), None, &mut sink);
        let valid = std::str::from_utf8(&key).is_ok_and(|k| (1..=128).contains(&k.chars().count()));
        let c = engine.counters();
        prop_assert_eq!(c.erasures, u64::from(valid));
        prop_assert_eq!(sink.dead_letters().len(), usize::from(!valid));
        if let Some(dl) = sink.dead_letters().first() {
            let line: Value = serde_json::from_str(&dl.line).expect("JSON line");
            prop_assert_eq!(payload_of(&line), Some(Vec::new()), "a tombstone has an empty payload");
        }
    }
}

/// serde accepts a JSON array for a struct (fields by position); the wire
/// contract says objects. Each of these must be dead-lettered.
#[test]
fn objects_written_as_arrays_are_dead_lettered() {
    let cases: [(&str, DeadLetterReason, &str); 4] = [
        (
            r#"{"event_id":"e","visitor_id":"v","type":"chat","timestamp":"2026-11-29T10:00:00Z","chat":["started"]}"#,
            DeadLetterReason::InvalidField,
            "`chat`",
        ),
        (
            r#"{"event_id":"e","visitor_id":"v","type":"page_view","timestamp":"2026-11-29T10:00:00Z","page":["https://s/x",null,null]}"#,
            DeadLetterReason::InvalidField,
            "`page`",
        ),
        (
            r#"["e","v",null,"chat","2026-11-29T10:00:00Z",null,null,null,{"action":"started"},null,null,null]"#,
            DeadLetterReason::InvalidJson,
            "object",
        ),
        (
            r#"{"event_id":"e","visitor_id":"v","type":"chat","timestamp":"2026-11-29T10:00:00Z","chat":{"action":"started"},"device":["mobile",null,null]}"#,
            DeadLetterReason::InvalidField,
            "`device`",
        ),
    ];
    for (record, reason, names) in cases {
        let err = decode_event(record.as_bytes(), MAX).expect_err(record);
        assert_eq!(err.reason, reason, "{record}");
        assert!(err.message.contains(names), "{record}: {}", err.message);
    }
    let consent = br#"{"visitor_id":"v","timestamp":"2026-11-29T10:00:00Z","purposes":[true,true,true,true]}"#;
    let err = decode_consent(None, Some(consent), 0, MAX).expect_err("array purposes");
    assert_eq!(err.reason, DeadLetterReason::InvalidField);
    assert!(err.message.contains("`purposes`"), "{}", err.message);
    let top = br#"["v","2026-11-29T10:00:00Z",{"tracking":true},null,null,null]"#;
    let err = decode_consent(None, Some(top), 0, MAX).expect_err("array record");
    assert_eq!(err.reason, DeadLetterReason::InvalidJson);
}

/// Every reason code is reachable through the engine, and each reaches the
/// dead-letter line unchanged.
#[test]
fn every_reason_code_is_reachable() {
    let ok = r#"{"event_id":"e","visitor_id":"v","type":"chat","timestamp":"2026-11-29T10:00:00Z","chat":{"action":"started"}}"#;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX));
    type Case<'a> = (Option<&'a [u8]>, Vec<u8>, DeadLetterReason);
    let cases: Vec<Case<'_>> = vec![
        (
            None,
            b"{\"a\":\"\xc3\x28\"}".to_vec(),
            DeadLetterReason::InvalidUtf8,
        ),
        (None, b"{".to_vec(), DeadLetterReason::InvalidJson),
        (
            None,
            ok.replace(r#""event_id":"e","#, "").into_bytes(),
            DeadLetterReason::MissingField,
        ),
        (
            None,
            ok.replace(r#""v""#, "7").into_bytes(),
            DeadLetterReason::InvalidField,
        ),
        (
            None,
            ok.replace("2026-11-29T10:00:00Z", "2026-11-29")
                .into_bytes(),
            DeadLetterReason::InvalidTimestamp,
        ),
        (
            None,
            ok.replace(r#""chat","#, r#""scroll","#).into_bytes(),
            DeadLetterReason::UnknownType,
        ),
        (None, big.into_bytes(), DeadLetterReason::TooLarge),
        (
            Some(b"w"),
            ok.as_bytes().to_vec(),
            DeadLetterReason::KeyMismatch,
        ),
    ];
    let mut seen = Vec::new();
    for (key, bytes, reason) in cases {
        let mut engine = engine();
        let mut sink = RecordingSink::default();
        engine.process_event(key, &bytes, &Origin::Unknown, None, &mut sink);
        let dls = sink.dead_letters();
        assert_eq!(dls.len(), 1, "{reason:?}");
        assert_eq!(dls[0].reason, reason);
        let line: Value = serde_json::from_str(&dls[0].line).expect("JSON line");
        assert_eq!(line["reason"], reason.code());
        assert_eq!(line["source"], Value::Null, "Origin::Unknown is null");
        seen.push(reason);
    }
    seen.sort();
    assert_eq!(seen, DeadLetterReason::ALL.to_vec());
}
