//! Operating a running pipeline on a real broker: `/metrics` passes
//! `promtool check metrics` and its counters move exactly as the traffic
//! says; `/healthz` and `/readyz`; the admin access endpoint; erasure that
//! reaches the state changelog (a restore brings nothing of the visitor
//! back); and model hot reload that refuses a bad artifact and swaps in a
//! good one without stopping.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_system_tests::{models_dir, Deployment, Instance};
use serde_json::{json, Value};

fn promtool_check(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: apt-get install prometheus (.ci/run does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of one series in Prometheus text format (0 when absent).
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn event(visitor: &str, n: u32) -> Value {
    json!({
        "event_id": format!("{visitor}-{n}"),
        "visitor_id": visitor,
        "type": "page_view",
        "timestamp": format!("2026-11-29T10:00:{:02}.000Z", 10 + n),
        "page": {"url": "https://shop.example.com/pricing"},
        "device": {"category": "desktop"}
    })
}

fn consent(visitor: &str, tracking: bool) -> Value {
    json!({
        "visitor_id": visitor,
        "timestamp": "2026-11-29T10:00:00.000Z",
        "purposes": {"tracking": tracking, "sales": tracking, "marketing": tracking, "support": tracking}
    })
}

struct Traffic<'a> {
    producer: TrafficProducer,
    d: &'a Deployment,
}

impl Traffic<'_> {
    fn send(&self, topic: &str, key: &str, value: Option<&Value>) {
        let bytes = value.map(|v| serde_json::to_vec(v).expect("json"));
        self.producer
            .send(OutgoingRecord {
                topic,
                key: Some(key.as_bytes()),
                value: bytes.as_deref(),
            })
            .expect("send");
    }
    fn flush(&self) {
        self.producer.flush(Duration::from_secs(30)).expect("flush");
    }
    fn consent(&self, visitor: &str, v: Option<&Value>) {
        self.send(&self.d.settings.consent_topic, visitor, v);
    }
    fn event(&self, visitor: &str, v: &Value) {
        self.send(&self.d.settings.events_topic, visitor, Some(v));
    }
}

fn held(instance: &Instance, visitor: &str) -> Value {
    let (status, body) = instance.http_get(&format!("/v1/visitors/{visitor}"), Some("admin-token"));
    assert_eq!(status, 200, "access request: {body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["held"].clone()
}

#[test]
fn metrics_health_access_and_erasure() {
    let d = Deployment::new("ops", 1, false);
    let instance = d.start("a");
    let t = Traffic {
        producer: TrafficProducer::new(&d.settings).expect("producer"),
        d: &d,
    };
    for v in ["deny-1", "deny-2", "deny-3", "deny-4", "deny-5"] {
        t.consent(v, Some(&consent(v, false)));
    }
    for v in ["keep-1", "keep-2", "erase-me"] {
        t.consent(v, Some(&consent(v, true)));
    }
    t.flush();
    for n in 0..3 {
        for v in ["deny-1", "deny-2", "deny-3", "deny-4", "deny-5"] {
            t.event(v, &event(v, n));
        }
    }
    for n in 0..4 {
        for v in ["keep-1", "keep-2", "erase-me"] {
            t.event(v, &event(v, n));
        }
    }
    t.send(&d.settings.events_topic, "keep-1", None);
    t.producer
        .send(OutgoingRecord {
            topic: &d.settings.events_topic,
            key: Some(b"keep-1"),
            value: Some(b"{broken"),
        })
        .expect("send");
    t.flush();
    d.wait_processed(Duration::from_secs(60));

    // Health.
    assert_eq!(instance.http_get("/healthz", None).0, 200);
    let (status, body) = instance.http_get("/readyz", None);
    assert_eq!(status, 200, "readyz: {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["ready"],
        true
    );

    // Metrics: valid exposition format, and the counts the traffic implies.
    let mut metrics = String::new();
    wait_for(
        "metrics to reflect the traffic",
        Duration::from_secs(20),
        || {
            metrics = instance.http_get("/metrics", None).1;
            value(&metrics, "propensity_events_processed_total") >= 12.0
        },
    );
    promtool_check(&metrics);
    assert_eq!(
        value(
            &metrics,
            r#"propensity_events_dropped_total{reason="no_consent"}"#
        ),
        15.0,
        "{metrics}"
    );
    assert_eq!(value(&metrics, "propensity_events_processed_total"), 12.0);
    assert_eq!(
        value(
            &metrics,
            r#"propensity_events_consumed_total{type="page_view"}"#
        ),
        27.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"propensity_events_consumed_total{type="invalid"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"propensity_dead_letters_total{reason="invalid_json",source="events"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"propensity_consent_records_total{result="applied"}"#
        ),
        8.0
    );
    assert_eq!(value(&metrics, "propensity_ready"), 1.0);
    assert!(
        value(
            &metrics,
            r#"propensity_transactions_total{result="committed"}"#
        ) >= 1.0
    );
    assert_eq!(
        value(
            &metrics,
            "propensity_outcome_probability_count{outcome=\"purchase\"}"
        ),
        12.0
    );
    assert!(
        metrics.contains("propensity_model_info{outcome=\"purchase\",version="),
        "{metrics}"
    );
    assert!(
        !metrics.contains("keep-1") && !metrics.contains("deny-1"),
        "no visitor id in any label"
    );

    // Access: held state for a consenting visitor; the admin API needs the token.
    assert_eq!(instance.http_get("/v1/visitors/keep-1", None).0, 401);
    assert_eq!(
        instance.http_get("/v1/visitors/keep-1", Some("wrong")).0,
        401
    );
    assert!(
        held(&instance, "erase-me")["state"]["session"].is_object(),
        "erase-me has a session before erasure"
    );

    // Erasure by tombstone: forgotten now, and tombstoned in the changelog.
    t.consent("erase-me", None);
    t.flush();
    wait_for("the erasure to apply", Duration::from_secs(20), || {
        held(&instance, "erase-me")["state"].is_null()
    });
    wait_for("the erasure to be counted", Duration::from_secs(20), || {
        value(
            &instance.http_get("/metrics", None).1,
            "propensity_erasures_total",
        ) == 1.0
    });
    assert!(instance.terminate(Duration::from_secs(30)).success());
    let changelog = d.read_topic(&d.settings.changelog_topic);
    let last = changelog
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(b"erase-me".as_slice()))
        .expect("erase-me had changelog records");
    assert!(
        last.value.is_none(),
        "the visitor's last changelog record is a tombstone"
    );

    // A restore from the changelog brings nothing of the visitor back, and
    // does bring back the others (so the check can fail).
    let again = d.start("b");
    wait_for("readiness after restore", Duration::from_secs(60), || {
        again.http_get("/readyz", None).0 == 200
    });
    assert!(
        held(&again, "erase-me")["state"].is_null(),
        "erased visitor restored: {}",
        held(&again, "erase-me")
    );
    assert!(
        held(&again, "keep-1")["state"]["session"].is_object(),
        "keep-1's session was restored"
    );
    assert!(again.terminate(Duration::from_secs(30)).success());
}

#[test]
fn models_hot_reload_refuses_bad_artifacts() {
    let mut d = Deployment::new("reload", 1, false);
    let dir = d.dir.path().join("models");
    std::fs::create_dir_all(&dir).expect("dir");
    for entry in std::fs::read_dir(models_dir()).expect("models") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    d.env.retain(|(k, _)| k != "PROPENSITY__MODELS__DIR");
    d.env.push((
        "PROPENSITY__MODELS__DIR".into(),
        format!("\"{}\"", dir.display()),
    ));
    d.env.push((
        "PROPENSITY__MODELS__WATCH_INTERVAL_SECS".into(),
        "0.5".into(),
    ));
    let instance = d.start("a");
    wait_for("readiness", Duration::from_secs(60), || {
        instance.http_get("/readyz", None).0 == 200
    });
    let purchase = dir.join("purchase.json");
    let good = std::fs::read_to_string(&purchase).expect("model");

    std::fs::write(&purchase, good.replace("\"weights\"", "\"wrong\"")).expect("write");
    wait_for(
        "the bad model to be refused",
        Duration::from_secs(20),
        || {
            value(
                &instance.http_get("/metrics", None).1,
                r#"propensity_model_reloads_total{result="failure"}"#,
            ) >= 1.0
        },
    );
    let metrics = instance.http_get("/metrics", None).1;
    assert!(!metrics.contains("version=\"purchase-v2\""));
    assert_eq!(
        instance.http_get("/readyz", None).0,
        200,
        "still serving with the old model"
    );

    let mut v: Value = serde_json::from_str(&good).expect("json");
    v["model_version"] = json!("purchase-v2");
    std::fs::write(&purchase, serde_json::to_string_pretty(&v).expect("json")).expect("write");
    wait_for(
        "the new model to be swapped in",
        Duration::from_secs(20),
        || {
            instance
                .http_get("/metrics", None)
                .1
                .contains(r#"propensity_model_info{outcome="purchase",version="purchase-v2"} 1"#)
        },
    );
    assert!(
        instance.log_text().contains("model reload refused"),
        "the refusal is logged"
    );
    assert!(instance.terminate(Duration::from_secs(30)).success());
}
