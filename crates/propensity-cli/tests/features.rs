//! `propensity features` through the real binary: it lists every feature
//! of the configured spec, in vector order, each with a unit, a transform
//! and a meaning, as a table and as JSON.

use std::process::Command;

use propensity_engine::features::{FeatureSettings, FeatureSpec};

const BIN: &str = env!("CARGO_BIN_EXE_propensity");

/// The spec of the shipped configuration, compiled from its `[features]`.
fn shipped_spec() -> FeatureSpec {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/propensity.toml");
    let text = std::fs::read_to_string(path).expect("shipped config");
    let value: toml::Value = toml::from_str(&text).expect("TOML");
    let features: FeatureSettings = value
        .get("features")
        .cloned()
        .expect("[features]")
        .try_into()
        .expect("feature settings");
    FeatureSpec::compile(&features).expect("compiles")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run propensity");
    assert!(
        out.status.success(),
        "propensity {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn json_lists_every_feature_of_the_spec_in_order() {
    let spec = shipped_spec();
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&run(&["features", "--json"])).expect("JSON array");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, spec.names());
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["index"], i);
        for field in ["family", "unit", "transform", "meaning"] {
            assert!(
                r[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field} of {r}"
            );
        }
        // Every feature of the shipped spec is known: none falls back to
        // its raw name.
        assert_ne!(r["family"], "unknown", "{r}");
    }
}

#[test]
fn the_table_has_a_line_per_feature() {
    let spec = shipped_spec();
    let text = run(&["features"]);
    let lines: Vec<&str> = text.lines().collect();
    // A header, one line per feature, a count line.
    assert_eq!(lines.len(), spec.dim() + 2, "{text}");
    for (line, name) in lines[1..].iter().zip(spec.names()) {
        assert!(
            line.split_whitespace().nth(1) == Some(name.as_str()),
            "{line}"
        );
    }
    assert!(lines[lines.len() - 1].starts_with(&format!("{} features", spec.dim())));
}

/// With `--models`, the list is the trained models' features: their learned
/// vocabulary's values appear by name, every one of them labelled.
#[test]
fn with_models_the_learned_values_are_listed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("UTF-8 path");
    run(&[
        "generate",
        "--visitors",
        "600",
        "--seed",
        "5",
        "--out",
        &format!("{d}/t"),
        "-q",
    ]);
    run(&[
        "train",
        "--events",
        &format!("{d}/t/events.jsonl"),
        "--consent",
        &format!("{d}/t/consent.jsonl"),
        "--out",
        &format!("{d}/models"),
        "-q",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&run(&[
        "features",
        "--json",
        "--models",
        &format!("{d}/models"),
    ]))
    .expect("JSON array");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.len() > shipped_spec().dim(), "{names:?}");
    for learned in [
        "browser.chrome",
        "form_started.webinar-signup",
        "current_event.search",
    ] {
        assert!(names.contains(&learned), "{learned} not in {names:?}");
    }
    assert!(rows.iter().all(|r| r["family"] != "unknown"), "{rows:?}");
}
