//! Tests of configuration loading: the embedded config, environment
//! overrides, errors that name the key, the line or the variable, removed
//! keys, secret masking.

use super::*;

fn load(env: &[(&str, &str)]) -> Result<Config> {
    Config::from_text(
        "test.toml",
        EMBEDDED_CONFIG,
        env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
    )
}

#[test]
fn embedded_config_is_valid() {
    let c = load(&[]).unwrap();
    assert_eq!(c.engine.outcomes.len(), 3);
    assert!(!c.engine.action_maps.is_empty());
}

#[test]
fn env_overrides_apply_with_types() {
    let c = load(&[
        ("PROPENSITY__CONSENT__MODE", "opt_out"),
        ("PROPENSITY__KAFKA__PARTITIONS", "12"),
        ("PROPENSITY__KAFKA__BROKERS", "kafka-1:9092,kafka-2:9092"),
    ])
    .unwrap();
    assert_eq!(c.file.kafka.partitions, 12);
    assert_eq!(c.engine.partitions, 12, "the engine places visitors by it");
    assert_eq!(c.engine_with_partitions(3).unwrap().partitions, 3);
    assert_eq!(c.file.kafka.brokers, "kafka-1:9092,kafka-2:9092");
    assert_eq!(
        c.engine.consent_mode,
        propensity_engine::config::ConsentMode::OptOut
    );
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let err = format!(
        "{:#}",
        load(&[("PROPENSITY__CONSENT__MODEE", "opt_out")]).unwrap_err()
    );
    assert!(err.contains("modee"), "{err}");
    let err = format!(
        "{:#}",
        load(&[("PROPENSITY__OFFERS__MIN_GAP_SECS", "-1")]).unwrap_err()
    );
    assert!(err.contains("offers.min_gap_secs"), "{err}");
    for (var, key) in [
        ("PROPENSITY__TRAINING__AUC_FLOOR", "training.auc_floor"),
        (
            "PROPENSITY__TRAINING__MIN_POSITIVES",
            "training.min_positives",
        ),
        (
            "PROPENSITY__TRAINING__MAX_CALIBRATION_ERROR",
            "training.max_calibration_error",
        ),
    ] {
        let value = if key.ends_with("auc_floor") {
            "1.5"
        } else {
            "0"
        };
        let err = format!("{:#}", load(&[(var, value)]).unwrap_err());
        assert!(err.contains(key), "{err}");
    }
    let bad = EMBEDDED_CONFIG.replace("outcome = \"purchase\"", "outcome = \"purchse\"");
    let err = format!(
        "{:#}",
        Config::from_text("x.toml", &bad, std::iter::empty()).unwrap_err()
    );
    assert!(
        err.contains("action_maps[") && err.contains("purchse") && err.contains("x.toml"),
        "{err}"
    );
}

#[test]
fn removed_bucket_keys_say_what_replaced_them() {
    let text = EMBEDDED_CONFIG.replace(
        "vocabulary_min_count = 20",
        "vocabulary_min_count = 20\nbrowser_buckets = 4",
    );
    let err = format!(
        "{:#}",
        Config::from_text("old.toml", &text, std::iter::empty()).unwrap_err()
    );
    assert!(
        err.contains("old.toml") && err.contains("`features.browser_buckets`: was removed"),
        "{err}"
    );
    assert!(err.contains("features.vocabulary_max_values"), "{err}");
}

#[test]
fn secrets_are_masked() {
    let mut c = load(&[("PROPENSITY__HTTP__ADMIN_TOKEN", "hunter2")]).unwrap();
    c.file
        .kafka
        .client
        .insert("sasl.password".into(), "s3cret".into());
    let shown = c.to_masked_toml().unwrap();
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(shown.contains("***"));
}

/// The 1-based line of the first line of `text` starting with `start`.
fn line_of(text: &str, start: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(start))
        .expect("line")
        + 1
}

#[test]
fn a_wrong_type_in_the_file_names_the_key_and_the_line() {
    let text = EMBEDDED_CONFIG.replace("partitions = 6", "partitions = \"six\"");
    let err = format!(
        "{:#}",
        Config::from_text("my.toml", &text, std::iter::empty()).unwrap_err()
    );
    let line = line_of(&text, "partitions = ");
    assert!(
        err.contains(&format!("my.toml, line {line}, column 14"))
            && err.contains("config key `kafka.partitions`")
            && err.contains("expected i32"),
        "{err}"
    );
    // A value the checks refuse, at the line of its key.
    let text = EMBEDDED_CONFIG.replace("partitions = 6", "partitions = 0");
    let err = format!(
        "{:#}",
        Config::from_text("my.toml", &text, std::iter::empty()).unwrap_err()
    );
    assert!(
        err.contains(&format!(
            "my.toml, line {line}, column 1: config key `kafka.partitions`: must be at least 1"
        )),
        "{err}"
    );
    // An unknown key, at its line.
    let text = EMBEDDED_CONFIG.replace("group_id = ", "group_idd = ");
    let err = format!(
        "{:#}",
        Config::from_text("my.toml", &text, std::iter::empty()).unwrap_err()
    );
    let line = line_of(&text, "group_idd");
    assert!(
        err.contains(&format!(
            "line {line}, column 1: config key `kafka.group_idd`: unknown field"
        )),
        "{err}"
    );
}

#[test]
fn an_environment_typo_is_blamed_on_the_variable() {
    let err = format!(
        "{:#}",
        Config::from_text(
            "<embedded default>",
            EMBEDDED_CONFIG,
            [("PROPENSITY__KAFKA__BROKER".to_owned(), "x:1".to_owned())].into_iter()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("environment variable PROPENSITY__KAFKA__BROKER (sets `kafka.broker`): unknown field `broker`"),
        "{err}"
    );
    assert!(!err.contains("<embedded default>"), "{err}");
    // A bad value from the environment, among harmless overrides.
    let err = format!(
        "{:#}",
        load(&[
            ("PROPENSITY__KAFKA__BROKERS", "k:9092"),
            ("PROPENSITY__KAFKA__PARTITIONS", "0"),
            ("PROPENSITY__CONSENT__MODE", "opt_out"),
        ])
        .unwrap_err()
    );
    assert!(
        err.contains("environment variable PROPENSITY__KAFKA__PARTITIONS (sets `kafka.partitions`): must be at least 1"),
        "{err}"
    );
    // A file error the environment does not cause stays the file's,
    // and one the environment repairs is no error.
    let text = EMBEDDED_CONFIG.replace("partitions = 6", "partitions = 0");
    let env = |v: &str| [("PROPENSITY__KAFKA__BROKERS".to_owned(), v.to_owned())].into_iter();
    let err = format!(
        "{:#}",
        Config::from_text("f.toml", &text, env("k:1")).unwrap_err()
    );
    assert!(
        err.contains("f.toml, line") && !err.contains("environment"),
        "{err}"
    );
    let fixed = [("PROPENSITY__KAFKA__PARTITIONS".to_owned(), "2".to_owned())].into_iter();
    assert_eq!(
        Config::from_text("f.toml", &text, fixed)
            .unwrap()
            .file
            .kafka
            .partitions,
        2
    );
}

#[test]
fn librdkafka_properties_from_shell_safe_variable_names() {
    let c = load(&[
        ("PROPENSITY__KAFKA__CLIENT__SASL_PASSWORD", "s3cret"),
        ("PROPENSITY__KAFKA__CLIENT__FOO_BAR", "1"),
        ("PROPENSITY__KAFKA__CLIENT__SECURITY_PROTOCOL", "SASL_SSL"),
        ("PROPENSITY__KAFKA__CLIENT__LINGER.MS", "true"),
    ])
    .unwrap();
    let client = &c.file.kafka.client;
    assert_eq!(
        client.get("sasl.password").map(String::as_str),
        Some("s3cret")
    );
    assert_eq!(
        client.get("foo.bar").map(String::as_str),
        Some("1"),
        "always a string"
    );
    assert_eq!(
        client.get("security.protocol").map(String::as_str),
        Some("SASL_SSL")
    );
    assert_eq!(client.get("linger.ms").map(String::as_str), Some("true"));
    // Properties Propensity sets itself are refused, naming the variable.
    let err = format!(
        "{:#}",
        load(&[(
            "PROPENSITY__KAFKA__CLIENT__ISOLATION_LEVEL",
            "read_uncommitted"
        )])
        .unwrap_err()
    );
    assert!(
        err.contains(
            "PROPENSITY__KAFKA__CLIENT__ISOLATION_LEVEL (sets `kafka.client.\"isolation.level\"`)"
        ),
        "{err}"
    );
}
